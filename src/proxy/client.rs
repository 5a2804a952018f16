//! The upstream client pool: one pooled keep-alive client per serving thread
//! (so a request and its upstream connection stay on one thread), with TLS to
//! https upstreams on the system's roots plus any private CA from the config.

use axum::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Pooled, keep-alive HTTP/1.1 client for upstreams (http and https).
pub type UpstreamClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

thread_local! {
    /// Which serving thread this is (see [`set_worker`]); 0 elsewhere.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as serving thread `index`: its requests use
/// upstream client `index`.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// One upstream client per serving thread. A pooled connection is driven by
/// a task on the runtime that opened it; with a client per thread, a request
/// and its upstream connection stay on one thread instead of handing every
/// request to another thread and back.
pub struct UpstreamClients(Vec<UpstreamClient>);

impl UpstreamClients {
    /// `count` clients (at least one) sharing one TLS configuration;
    /// `extra_ca_pem` adds private CAs to the public roots.
    pub fn new(extra_ca_pem: Option<&[u8]>, count: usize) -> Result<Self, String> {
        let connector = upstream_connector(extra_ca_pem)?;
        Ok(Self(
            (0..count.max(1))
                .map(|_| {
                    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(60))
                        .build(connector.clone())
                })
                .collect(),
        ))
    }

    /// The client of the calling thread.
    pub fn here(&self) -> &UpstreamClient {
        &self.0[WORKER.with(|w| w.get()) % self.0.len()]
    }
}

/// The upstream connector: TCP with nodelay and a connect timeout, TLS with
/// the system's roots (else the bundled Mozilla roots) plus `extra_ca_pem`.
fn upstream_connector(
    extra_ca_pem: Option<&[u8]>,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    // The system's trust store (what operators manage), else the bundled
    // Mozilla roots; then any private CA from the config.
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(pem) = extra_ca_pem {
        for cert in crate::session::redis::parse_ca_pem(pem)? {
            roots
                .add(cert)
                .map_err(|e| format!("a CA certificate is not usable: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}
