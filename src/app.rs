//! Application state shared by every request: the validated config, the
//! provider (metadata, JWKS, client credentials), sessions, cookies, the route
//! table and the upstream HTTP client.

use crate::auth::cookies::CookieSpec;
use crate::clock::Clock;
use crate::config::{Config, RouteConfig, StoreKind};
use crate::oidc::Provider;
use crate::proxy::{routes::RouteTable, UpstreamClients};
use crate::session::{KeyRing, MemoryStore, RedisOptions, RedisStore, SessionStore, Sessions};

use std::sync::Arc;

pub struct AppState {
    pub config: Arc<Config>,
    pub provider: Arc<Provider>,
    pub sessions: Arc<Sessions>,
    pub cookies: CookieSpec,
    pub routes: RouteTable,
    pub upstream: UpstreamClients,
    pub spa: Option<crate::proxy::spa::Spa>,
    pub bearer: crate::auth::bearer::BearerVerifier,
    /// Single-flight token refresh with backoff when the IdP fails.
    pub refresher: crate::auth::refresh::Refresher,
    /// Machine tokens (client-credentials grant) for `token = "client"` routes.
    pub machine: crate::auth::machine::MachineTokens,
    /// Signs identity assertions; its public key is at `<auth_prefix>/jwks.json`.
    pub assertions: crate::proxy::identity::AssertionSigner,
    pub assertion_header: http::HeaderName,
    /// Headers no client may send upstream: the built-in identity and
    /// route-override set, every identity header configured on a route, the
    /// assertion header and `server.protected_headers`.
    pub protected_headers: crate::proxy::headers::ProtectedHeaders,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Set when shutdown begins: `/readyz` fails from then on.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// Upstream requests in flight (a response body or a tunnel holds its
    /// slot): as many as the open-file budget gives client connections, so
    /// HTTP/2's many streams per connection cannot exhaust file descriptors;
    /// one client connection holds at most its share of them.
    pub upstream_slots: crate::proxy::bounds::UpstreamSlots,
    /// Open WebSocket tunnels, so shutdown can let them finish.
    pub tunnels: tokio_util::task::TaskTracker,
    /// The time every expiry is judged by; the sessions, the refresher, the
    /// provider and the bearer cache hold clones of it. The system clock
    /// unless a test built the state with a clock it moves.
    pub clock: Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Identity(#[from] crate::proxy::identity::IdentityError),
    #[error("cannot set up the Redis session store: {0}")]
    Redis(String),
    #[error("cannot use spa.dir {0}: {1}")]
    SpaDir(String, std::io::Error),
}

impl AppState {
    /// Builds the state with the session store the config names. With Redis
    /// the client connects in the background (call inside a Tokio runtime):
    /// the gateway starts even while Redis is down, and `/readyz` tells.
    pub fn new(config: Config) -> Result<Arc<Self>, BuildError> {
        Self::new_with_clock(config, Clock::system())
    }

    /// [`AppState::new`] on a given clock (tests move it).
    pub fn new_with_clock(config: Config, clock: Clock) -> Result<Arc<Self>, BuildError> {
        // fred's TLS needs the process-wide provider before its first handshake.
        crate::install_crypto_provider();
        let store: Arc<dyn SessionStore> = match config.session.store {
            StoreKind::Memory => {
                if config.session.redis_url.is_some()
                    || !config.session.redis_cluster_urls.is_empty()
                {
                    tracing::warn!("session.redis_url is set but session.store = \"memory\": sessions are not shared between replicas");
                }
                Arc::new(MemoryStore::with_clock(
                    config.session.max_sessions,
                    clock.clone(),
                ))
            }
            StoreKind::Redis => Arc::new(redis_store(&config)?),
        };
        Self::with_store_and_clock(config, store, clock)
    }

    /// Builds the state around a given store (tests inspect what it holds).
    pub fn with_store(
        config: Config,
        store: Arc<dyn SessionStore>,
    ) -> Result<Arc<Self>, BuildError> {
        Self::with_store_and_clock(config, store, Clock::system())
    }

    /// [`AppState::with_store`] on a given clock (tests move it).
    pub fn with_store_and_clock(
        config: Config,
        store: Arc<dyn SessionStore>,
        clock: Clock,
    ) -> Result<Arc<Self>, BuildError> {
        crate::install_crypto_provider();
        let config = Arc::new(config);
        let metrics = Arc::new(crate::telemetry::Metrics::default());
        let store: Arc<dyn SessionStore> = Arc::new(crate::telemetry::InstrumentedStore {
            inner: store,
            metrics: metrics.clone(),
        });
        let http = reqwest::Client::builder()
            // The IdP's answers are read as they are; a redirect is not followed to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.provider.http_timeout)
            .user_agent(concat!("oidc-bff/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let keys: Vec<[u8; 32]> = config.session.decoded_keys.iter().map(|k| k.0).collect();
        let ring = Arc::new(KeyRing::new(&keys));
        let sessions = Arc::new(
            Sessions::new(
                ring,
                store,
                config.session.idle_timeout,
                config.session.absolute_timeout,
            )
            .with_clock(clock.clone()),
        );
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
                methods: Default::default(),
                timeout: std::time::Duration::from_secs(60),
                // The dev server's hot-reload channel.
                websocket: true,
                max_body_bytes: None,
                audiences: vec![],
                allow_groups: vec![],
                require_scopes: vec![],
                require_claims: Default::default(),
                login_idp: None,
                // A dev server (Vite, webpack) checks Host for its hot-reload socket.
                preserve_host: true,
                cache_private: true,
                identity_headers: None,
                identity_assertion: false,
                assertion_audience: None,
                client_scopes: vec![],
                client_resource: None,
            });
        }
        let upstream = UpstreamClients::new(
            config.server.upstream_ca_pem.as_deref(),
            config.server.worker_count(),
        )
        .map_err(BuildError::Http)?;
        let assertions = crate::proxy::identity::AssertionSigner::new(
            config.server.assertion_key_pem.as_ref().map(|pem| {
                let name = config.server.assertion_key_file.as_deref();
                (
                    name.map_or_else(String::new, |p| p.display().to_string()),
                    pem.expose(),
                )
            }),
            config.public_origin(),
        )?;
        let assertion_header = config.server.assertion_header.0.clone();
        let configured = config
            .routes
            .iter()
            .filter_map(|r| r.identity_headers.as_ref())
            .flat_map(|spec| [&spec.user, &spec.email, &spec.groups])
            .flatten()
            .chain(&config.server.protected_headers)
            .map(|h| h.as_str());
        let protected_headers = crate::proxy::headers::ProtectedHeaders::new(
            configured.chain([assertion_header.as_str()]),
        );
        let provider = Arc::new(Provider::new(config.clone(), http).with_clock(clock.clone()));
        let refresher = crate::auth::refresh::Refresher::new(
            sessions.clone(),
            provider.clone(),
            metrics.clone(),
            config.provider.refresh_before,
            config.session.revalidate_every,
            config.provider.http_timeout,
        );
        let machine = crate::auth::machine::MachineTokens::new(
            sessions.clone(),
            provider.clone(),
            metrics.clone(),
            &config.provider,
        );
        let spa = match config.spa.as_ref().and_then(|s| Some((s, s.dir.clone()?))) {
            Some((s, dir)) => Some(
                crate::proxy::spa::Spa::new(dir.clone(), s, config.is_https())
                    .map_err(|e| BuildError::SpaDir(dir.display().to_string(), e))?,
            ),
            None => None,
        };
        Ok(Arc::new(AppState {
            provider,
            sessions,
            cookies: CookieSpec::from_config(&config),
            routes: RouteTable::new(&route_configs, config.server.max_body_bytes),
            upstream,
            spa,
            bearer: Default::default(),
            refresher,
            machine,
            assertions,
            assertion_header,
            protected_headers,
            metrics,
            upstream_slots: crate::proxy::bounds::UpstreamSlots::new(
                upstream_slots(&config),
                config.server.max_upstream_per_connection,
            ),
            shutting_down: Default::default(),
            tunnels: Default::default(),
            clock,
            config,
        }))
    }
}

/// The number of upstream requests that may be in flight: the main
/// listener's connection cap as the serving loop computes it.
fn upstream_slots(config: &Config) -> usize {
    let soft = crate::serve::raise_nofile_limit().map_or(None, |(soft, _)| soft);
    let s = &config.server;
    crate::serve::connection_caps(s.max_connections, s.admin_max_connections, soft)
        .main
        .min(tokio::sync::Semaphore::MAX_PERMITS)
}

/// The Redis store from a validated config.
fn redis_store(config: &Config) -> Result<RedisStore, BuildError> {
    let s = &config.session;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(BuildError::Redis("needs a Tokio runtime".into()));
    }
    RedisStore::connect(RedisOptions {
        endpoints: s.redis_endpoints.clone(),
        // Validation parsed `redis_url` or else `redis_cluster_urls`.
        cluster: s.redis_url.is_none(),
        username: s.redis_username.clone(),
        password: s.redis_password.as_ref().map(|p| p.expose().to_string()),
        ca_pem: s.redis_ca_pem.clone(),
        key_prefix: s.redis_key_prefix.clone(),
        timeout: s.redis_timeout,
    })
    .map_err(|e| BuildError::Redis(e.to_string()))
}
