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

/// Serves the gateway and the admin listener on the given sockets until
/// `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
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
    // for load balancers to stop sending) the listener closes; in-flight
    // requests, downloads and WebSocket tunnels get `shutdown_timeout` to
    // finish; the admin listener goes last.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_state = state.clone();
    let delay = state.config.server.shutdown_delay;
    tokio::spawn(async move {
        shutdown.await;
        signal_state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(delay = ?delay, "shutting down: not ready any more; closing the listener after the delay");
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(true);
    });
    let (admin_tx, mut admin_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(async move {
        axum::serve(admin_listener, admin)
            .with_graceful_shutdown(async move {
                let _ = admin_rx.wait_for(|v| *v).await;
            })
            .await
    });
    let drain = state.config.server.shutdown_timeout;
    let tunnels = state.tunnels.clone();
    let task = tokio::spawn(async move {
        let mut main_rx = stop_rx.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = main_rx.wait_for(|v| *v).await;
        });
        let mut deadline_rx = stop_rx;
        let deadline = async move {
            let _ = deadline_rx.wait_for(|v| *v).await;
            tokio::time::sleep(drain).await;
        };
        let started = tokio::time::Instant::now();
        let r = tokio::select! {
            r = server.into_future() => r,
            _ = deadline => {
                tracing::warn!("requests still running at the shutdown deadline; stopping anyway");
                Ok(())
            }
        };
        tunnels.close();
        let left = drain.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, tunnels.wait()).await.is_err() {
            tracing::warn!(
                open = tunnels.len(),
                "WebSocket tunnels still open at the shutdown deadline"
            );
        }
        let _ = admin_tx.send(true);
        let _ = admin_task.await;
        r
    });
    tracing::info!(%addr, %admin_addr, "oidc-bff listening");
    Ok(Running {
        addr,
        admin_addr,
        state,
        task,
    })
}
