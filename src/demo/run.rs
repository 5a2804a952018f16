//! `oidc-bff demo`: the development IdP, the echo API, the sample SPA and the
//! gateway, in one process on 127.0.0.1, with nothing to set up. The gateway
//! runs the real code with `config/demo.toml` (ports and a fresh session key
//! filled in) and serves the sample SPA from a scratch directory.

use super::dev_idp::{self, DevIdpConfig};
use super::echo;
use crate::app::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;
use url::Url;

/// The gateway config template, `config/demo.toml`.
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// The sample SPA, embedded so the demo works from the binary alone.
const SPA_FILES: [(&str, &str); 3] = [
    ("index.html", include_str!("spa/index.html")),
    ("app.js", include_str!("spa/app.js")),
    ("app.css", include_str!("spa/app.css")),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cannot write the sample SPA to {0}: {1}")]
    Spa(PathBuf, std::io::Error),
    #[error("the demo config is invalid: {0}")]
    Config(String),
    #[error("{0}")]
    Start(String),
}

/// What a running demo offers (printed by the CLI, used by tests).
pub struct Demo {
    pub url: String,
    pub idp_url: String,
    pub api_url: String,
    pub users: Vec<(String, String)>,
    pub running: crate::Running,
    pub idp: dev_idp::DevIdpHandle,
    _spa_dir: ScratchDir,
}

/// The sample SPA's scratch directory, removed when the demo ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DemoError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| DemoError::Listen(addr, e))
}

/// Starts everything; the gateway listens on `port` (0 picks a free one) and
/// stops when `shutdown` resolves.
pub async fn start(
    port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Demo, DemoError> {
    crate::install_crypto_provider();
    let loopback = |p| SocketAddr::from(([127, 0, 0, 1], p));
    let gateway = bind(loopback(port)).await?;
    let admin = bind(loopback(0)).await?;
    let idp = bind(loopback(0)).await?;
    let api = bind(loopback(0)).await?;
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| DemoError::Start(e.to_string()));
    let gateway_url = format!("http://{}", addr(&gateway)?);
    // The IdP answers as `localhost`, the gateway as `127.0.0.1`: browsers keep
    // cookies per host (not per port), so neither sees the other's cookies.
    let idp_url = format!("http://localhost:{}", addr(&idp)?.port());
    let api_url = format!("http://{}", addr(&api)?);

    let idp_config = DevIdpConfig::demo(
        Some(Url::parse(&idp_url).expect("loopback URL")),
        &Url::parse(&gateway_url).expect("loopback URL"),
    );
    let users = idp_config
        .users
        .iter()
        .map(|u| (u.username.clone(), u.password.clone()))
        .collect();
    // The API accepts access tokens of every app client: the user's and the gateway's machine client's.
    let client_ids = idp_config
        .clients
        .iter()
        .map(|c| c.client_id.clone())
        .collect();
    let idp_handle = dev_idp::start(idp_config, idp)
        .await
        .map_err(|e| DemoError::Start(format!("development IdP: {e}")))?;

    let spa_dir = std::env::temp_dir().join(format!(
        "oidc-bff-demo-spa-{}-{}",
        std::process::id(),
        addr(&gateway)?.port()
    ));
    std::fs::create_dir_all(&spa_dir).map_err(|e| DemoError::Spa(spa_dir.clone(), e))?;
    let spa_guard = ScratchDir(spa_dir.clone());
    for (name, body) in SPA_FILES {
        std::fs::write(spa_dir.join(name), body).map_err(|e| DemoError::Spa(spa_dir.clone(), e))?;
    }

    let toml = DEMO_TOML
        .replace("@LISTEN@", &addr(&gateway)?.to_string())
        .replace("@ADMIN@", &addr(&admin)?.to_string())
        .replace("@GATEWAY@", &gateway_url)
        .replace("@IDP@", &idp_url)
        .replace("@API@", &api_url)
        .replace("@KEY@", &crate::session::generate_key())
        .replace("@SPA@", &spa_dir.display().to_string());
    let config =
        crate::config::load_from_str(&toml).map_err(|e| DemoError::Config(e.to_string()))?;

    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| DemoError::Start(e.to_string()))?;
    let echo_app = echo::router(
        http,
        idp_handle.jwks_url(),
        idp_handle.issuer().to_string(),
        client_ids,
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(api, echo_app).await {
            tracing::error!(error = %e, "echo API stopped");
        }
    });

    let state = AppState::new(config).map_err(|e| DemoError::Start(e.to_string()))?;
    let running = crate::serve(state, gateway, admin, shutdown)
        .await
        .map_err(|e| DemoError::Start(e.to_string()))?;
    Ok(Demo {
        url: gateway_url,
        idp_url,
        api_url,
        users,
        running,
        idp: idp_handle,
        _spa_dir: spa_guard,
    })
}
