//! oidc-bff: an OAuth2/OpenID Connect backend-for-frontend gateway.
//!
//! The crate map:
//! - [`config`]. The typed configuration, loaded and validated once.
//! - [`app`]. The state every request shares.
//! - [`router`]. The one place routes and layers are assembled.
//! - [`error`]. The one error type and its HTML/JSON rendering.
//! - [`oidc`]. The identity provider: metadata, login flow, tokens, JWKS, JWTs, logout.
//! - [`session`]. Sealed server-side sessions, the key ring, the stores.
//! - [`auth`]. The `/auth/*` handlers, the session extractor, CSRF.
//! - [`proxy`]. The route table, header hygiene and forwarding to upstreams.
//! - [`request_path`]. The one canonical request path every check and the upstream use.
//! - [`policy`]. Per-route authorization (groups, scopes, claims) as pure decisions.
//! - [`telemetry`]. Logs.
//! - [`demo`]. `oidc-bff demo` and the development IdP (local work only).
//!

pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod request_path;
pub mod router;
pub mod session;
pub mod telemetry;

use app::AppState;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// reqwest and hyper-rustls both use rustls; one process-wide crypto provider
/// must be chosen before the first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A running gateway: where it listens, and the state it serves from.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `count` listening sockets on `addr` for [`serve_workers`]: with more
/// than one, each gets `SO_REUSEPORT` and the kernel spreads new connections
/// over them. A port another process listens on is refused (`SO_REUSEPORT`
/// alone would let a stale gateway of the same user share it silently), and
/// port 0 is resolved once, so every socket listens on the same port.
pub fn bind_workers(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let count = count.max(1);
    let bind = |addr: SocketAddr, reuse_port: bool| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    let mut addr = addr;
    if count > 1 && addr.port() != 0 {
        // Fails with "address in use" while anyone listens there.
        drop(bind(addr, false)?);
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = bind(addr, count > 1)?;
        socket.set_nonblocking(true)?;
        socket.listen(1024)?;
        if let Some(bound) = socket.local_addr()?.as_socket() {
            addr = bound;
        }
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// Serves the gateway and the admin listener on the given sockets until
/// `shutdown` resolves, then drains in-flight requests. One serving thread:
/// the calling runtime's (tests, `demo`).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    serve_workers(state, vec![listener.into_std()?], admin_listener, shutdown).await
}

/// Serves the gateway on `listeners` and the admin listener until `shutdown`
/// resolves, then drains in-flight requests.
///
/// The first listener is served on the calling runtime, each further one by
/// a thread of its own running a current-thread runtime. A connection, its
/// requests and their upstream connections stay on one thread, as with nginx
/// or Envoy workers: no request is handed between threads (on the
/// work-stealing runtime that hand-off cost a quarter of a proxied request).
pub async fn serve_workers(
    state: Arc<AppState>,
    listeners: Vec<std::net::TcpListener>,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    let mut listeners = listeners.into_iter();
    let first = listeners
        .next()
        .ok_or_else(|| std::io::Error::other("no listener to serve on"))?;
    first.set_nonblocking(true)?;
    let first = TcpListener::from_std(first)?;
    let addr = first.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    // Warm the provider so the first sign-in does not wait; failures retry on use.
    let warm = state.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.provider.warm().await {
            tracing::warn!(error = %e, "identity provider not reachable yet; will retry on demand");
        }
    });
    // Histogram samples are buffered until drained; drain them regularly, not
    // only at scrape time, or they pile up (about 50 bytes per request).
    let metrics = Arc::downgrade(&state.metrics);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            match metrics.upgrade() {
                Some(m) => m.upkeep(),
                None => break,
            }
        }
    });
    let app = router::build(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let admin = router::admin(state.clone());
    // Shutdown in order: readiness fails at once; after `shutdown_delay` (time
    // for load balancers to stop sending) the listeners close; in-flight
    // requests, downloads and WebSocket tunnels get `shutdown_timeout` to
    // finish; the admin listener goes last.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let signal_state = state.clone();
    let delay = state.config.server.shutdown_delay;
    let drain = state.config.server.shutdown_timeout;
    tokio::spawn(async move {
        shutdown.await;
        signal_state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(delay = ?delay, "shutting down: not ready any more; closing the listener after the delay");
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(Some(std::time::Instant::now() + drain));
    });
    let (admin_tx, mut admin_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(async move {
        axum::serve(admin_listener, admin)
            .with_graceful_shutdown(async move {
                let _ = admin_rx.wait_for(|v| *v).await;
            })
            .await
    });
    let mut workers = Vec::new();
    for (index, listener) in listeners.enumerate().map(|(i, l)| (i + 1, l)) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (app, stop, tunnels) = (app.clone(), stop_rx.clone(), state.tunnels.clone());
        std::thread::Builder::new()
            .name(format!("oidc-bff-{index}"))
            .spawn(move || {
                proxy::set_worker(index);
                let served = runtime.block_on(async move {
                    listener.set_nonblocking(true)?;
                    let listener = TcpListener::from_std(listener)?;
                    serve_listener(listener, app, stop, tunnels).await
                });
                let _ = done_tx.send(served);
            })?;
        workers.push(done_rx);
    }
    let tunnels = state.tunnels.clone();
    let task = tokio::spawn(async move {
        let mut result = serve_listener(first, app, stop_rx, tunnels).await;
        for worker in workers {
            let served = worker
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
            result = result.and(served);
        }
        let _ = admin_tx.send(true);
        let _ = admin_task.await;
        result
    });
    tracing::info!(%addr, %admin_addr, "oidc-bff listening");
    Ok(Running {
        addr,
        admin_addr,
        state,
        task,
    })
}

/// One serving thread's loop: accept and serve until the stop signal (the
/// drain deadline), then let requests and the WebSocket tunnels finish until
/// that deadline. Every thread waits for every tunnel: a tunnel's task runs
/// on the runtime of the thread that opened it, which must live until it ends.
async fn serve_listener(
    listener: TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    stop: tokio::sync::watch::Receiver<Option<std::time::Instant>>,
    tunnels: tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    async fn deadline(
        mut stop: tokio::sync::watch::Receiver<Option<std::time::Instant>>,
    ) -> tokio::time::Instant {
        let at = stop.wait_for(|v| v.is_some()).await.ok().and_then(|at| *at);
        match at {
            Some(at) => tokio::time::Instant::from_std(at),
            // The sender is gone without a stop: serve on.
            None => std::future::pending().await,
        }
    }
    let graceful = {
        let stop = stop.clone();
        async move {
            deadline(stop).await;
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let result = tokio::select! {
        r = server.into_future() => r,
        _ = async { tokio::time::sleep_until(deadline(stop.clone()).await).await } => {
            tracing::warn!("requests still running at the shutdown deadline; stopping anyway");
            Ok(())
        }
    };
    tunnels.close();
    let at = deadline(stop).await;
    if tokio::time::timeout_at(at, tunnels.wait()).await.is_err() {
        tracing::warn!(
            open = tunnels.len(),
            "WebSocket tunnels still open at the shutdown deadline"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::bind_workers;

    #[test]
    fn worker_sockets_share_one_port_and_refuse_a_taken_one() {
        let any = "127.0.0.1:0".parse().unwrap();
        let sockets = bind_workers(any, 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert!(
            ports[0] != 0 && ports.iter().all(|p| *p == ports[0]),
            "{ports:?}"
        );
        // A second gateway on the same port: refused, though both would set SO_REUSEPORT.
        let taken = sockets[0].local_addr().unwrap();
        let err = bind_workers(taken, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // Also when the port is held by a plain listener.
        let plain = std::net::TcpListener::bind(any).unwrap();
        let err = bind_workers(plain.local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // Once they are gone, the port is free again.
        let port = plain.local_addr().unwrap();
        drop((sockets, plain));
        assert_eq!(bind_workers(port, 2).unwrap().len(), 2);
    }
}

/// The layering rule, checked on the source: the core (`config`, `policy`,
/// `oidc`, `session`, `request_path`) knows nothing of HTTP handlers, the
/// proxy, the router, the error pages or the demo. Upper layers may use the
/// core; the core never uses them.
#[cfg(test)]
mod layering {
    const CORE: [&str; 5] = ["config", "policy", "oidc", "session", "request_path"];
    const UPPER: [&str; 8] = [
        "app",
        "auth",
        "proxy",
        "router",
        "error",
        "demo",
        "telemetry",
        "serve",
    ];

    fn sources(module: &str) -> Vec<(std::path::PathBuf, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            out.push(file);
        }
        let mut dirs = vec![src.join(module)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        out.into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect()
    }

    #[test]
    fn the_core_never_imports_an_upper_layer() {
        let mut seen = 0;
        let mut violations = Vec::new();
        for module in CORE {
            for (path, text) in sources(module) {
                seen += 1;
                for (n, line) in text.lines().enumerate() {
                    for upper in UPPER {
                        if line.contains(&format!("crate::{upper}::"))
                            || line.contains(&format!("crate::{upper};"))
                            || line.contains(&format!("crate::{upper}}}"))
                            || line.contains(&format!("crate::{{{upper}"))
                        {
                            violations.push(format!("{}:{}: {line}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        assert!(seen >= 20, "the core's files were not found ({seen})");
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }
}
