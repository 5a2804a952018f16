//! Application state shared by every request: the validated config, the
//! provider (metadata, JWKS, client credentials), sessions, cookies, the route
//! table and the upstream HTTP client.

use crate::auth::cookies::CookieSpec;
use crate::config::{Config, RouteConfig, StoreKind};
use crate::oidc::Provider;
use crate::proxy::{routes::RouteTable, upstream_client, UpstreamClient};
use crate::session::{KeyRing, MemoryStore, SessionStore, Sessions};
use std::path::PathBuf;
use std::sync::Arc;

pub struct AppState {
    pub config: Arc<Config>,
    pub provider: Arc<Provider>,
    pub sessions: Arc<Sessions>,
    pub cookies: CookieSpec,
    pub routes: RouteTable,
    pub upstream: UpstreamClient,
    pub spa_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl AppState {
    /// Builds the state with the session store the config names.
    pub fn new(config: Config) -> Result<Arc<Self>, BuildError> {
        let store: Arc<dyn SessionStore> = match config.session.store {
            StoreKind::Memory => Arc::new(MemoryStore::new(config.session.max_sessions)),
            // Validation refuses other stores until they exist.
            StoreKind::Redis => unreachable!("rejected by config validation"),
        };
        Self::with_store(config, store)
    }

    /// Builds the state around a given store (tests inspect what it holds).
    pub fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Result<Arc<Self>, BuildError> {
        crate::install_crypto_provider();
        let config = Arc::new(config);
        let http = reqwest::Client::builder()
            // The IdP's answers are read as they are; a redirect is not followed to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.provider.http_timeout)
            .user_agent(concat!("oidc-bff/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let keys: Vec<[u8; 32]> = config
            .session
            .keys
            .iter()
            .filter_map(|k| crate::config::decode_key(k.expose()))
            .collect();
        let ring = Arc::new(KeyRing::new(&keys));
        let sessions = Arc::new(Sessions::new(
            ring,
            store,
            config.session.idle_timeout,
            config.session.absolute_timeout,
        ));
        let mut route_configs = config.routes.clone();
        if let Some(up) = config.spa.as_ref().and_then(|s| s.upstream.clone()) {
            // A development server behind the gateway: public, catch-all, last in line.
            route_configs.push(RouteConfig {
                path: "/".into(),
                upstream: up,
                strip_prefix: false,
                auth: crate::config::AuthMode::Public,
                token: crate::config::TokenKind::None,
                csrf: false,
                methods: vec![],
                timeout: std::time::Duration::from_secs(60),
            });
        }
        Ok(Arc::new(AppState {
            provider: Arc::new(Provider::new(config.clone(), http)),
            sessions,
            cookies: CookieSpec::from_config(&config),
            routes: RouteTable::new(&route_configs),
            upstream: upstream_client(),
            spa_dir: config.spa.as_ref().and_then(|s| s.dir.clone()),
            config,
        }))
    }
}
