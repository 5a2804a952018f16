//! Typed configuration: the file format of `config/oidc-bff.example.toml`, loaded
//! once at start-up (file + `OIDC_BFF__SECTION__KEY` environment overrides +
//! `*_file` secrets) and validated before anything listens. Nothing reads the
//! environment after [`load`] returns.

mod files;
mod load;
mod secret;
mod types;
mod validate;

pub use load::{load, load_from_str, ConfigError, Problem};
pub use secret::{KeyBytes, Secret};
pub use types::{Header, Methods};
#[cfg(test)]
pub(crate) use validate::decode_key;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The whole configuration. Section names are part of the contract (the
/// README, the Helm chart and the tests rely on them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub provider: ProviderConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub spa: Option<SpaConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the gateway listens on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The origin the browser sees, e.g. `https://app.example.com`.
    pub public_url: Url,
    /// Address of the admin listener (`/healthz`, `/readyz`).
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: SocketAddr,
    /// Peers whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Prefix of the gateway's own endpoints.
    #[serde(default = "defaults::auth_prefix")]
    pub auth_prefix: String,
    /// `text` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `oidc_bff=debug`; `RUST_LOG` wins when set.
    #[serde(default = "defaults::log_level")]
    pub log_level: String,
    /// Header that carries the signed identity assertion on routes with `identity_assertion`.
    #[serde(default = "defaults::assertion_header")]
    pub assertion_header: Header,
    /// PKCS#8 PEM file with the P-256 key that signs identity assertions
    /// (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    /// Without it a key is generated at start: fine for one replica, but
    /// replicas would each publish their own, so set it when running several.
    #[serde(default)]
    pub assertion_key_file: Option<PathBuf>,
    /// PEM file of extra CA certificates trusted for https upstreams (besides the public roots).
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
    /// `assertion_key_file`'s contents, read when the config is loaded.
    #[serde(skip)]
    pub assertion_key_pem: Option<Secret>,
    /// `upstream_ca_file`'s contents, read when the config is loaded.
    #[serde(skip)]
    pub upstream_ca_pem: Option<Vec<u8>>,
    /// At shutdown, how long readiness fails before the listener closes (load
    /// balancers need a moment to stop sending).
    #[serde(default = "defaults::shutdown_delay", with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// At shutdown, how long in-flight requests and WebSocket tunnels may take to finish.
    #[serde(default = "defaults::shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Largest request body forwarded upstream, in bytes.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Where `<auth_prefix>/signed-out` sends the browser after the IdP's
    /// logout: a path on this origin. Default: none (the signed-out page).
    #[serde(default)]
    pub logout_return_to: Option<String>,
    /// Request headers removed before forwarding, on top of the built-in set
    /// of identity and route-override headers (compared case-insensitively,
    /// `_` read as `-`).
    #[serde(default)]
    pub protected_headers: Vec<Header>,
    /// Serving threads, each with its own listening socket (`SO_REUSEPORT`)
    /// and upstream connections; 0 means one per CPU core available to the
    /// process (cgroup quotas count).
    #[serde(default)]
    pub workers: usize,
    /// How long a client has to send a complete request head (request line
    /// and headers): from the accept, and from the first byte of each later
    /// request on a keep-alive connection. Silent and slow clients are cut off.
    #[serde(default = "defaults::header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight and nothing received
    /// for this long is closed (not to be confused with `session.idle_timeout`).
    #[serde(default = "defaults::keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// A response the client accepts no bytes of for this long (a peer that
    /// stopped reading, or an HTTP/2 stream whose window stays shut) ends:
    /// the HTTP/2 stream is reset, an HTTP/1.1 connection closed, and its
    /// upstream slot comes back. A client that keeps reading, however
    /// slowly, is not cut; WebSocket tunnels are not subject to it.
    #[serde(default = "defaults::write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// A request body that delivers no bytes for this long while the upstream
    /// waits for it gets 408, and the upstream request is abandoned.
    #[serde(default = "defaults::body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Upstream requests one client connection (all its HTTP/2 streams
    /// together) may have in flight; default a quarter of the upstream slots
    /// (which are `max_connections` as in force), at least 1.
    #[serde(default)]
    pub max_upstream_per_connection: Option<usize>,
    /// Streams one HTTP/2 connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`, RFC 9113 §6.5.2).
    #[serde(default = "defaults::http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Client connections open at once on `listen`, all serving threads
    /// together; lowered at start to fit the open-file limit (`RLIMIT_NOFILE`).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections open at once on `admin_listen`, apart from `max_connections`,
    /// so probes and scrapes are answered while the main listener is full.
    #[serde(default = "defaults::admin_max_connections")]
    pub admin_max_connections: usize,
    /// File holding the bearer token of the admin sessions API (at least 32
    /// bytes; surrounding whitespace is trimmed). The API (`/admin/sessions`
    /// on `admin_listen`) exists only when this is set.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// `admin_token_file`'s contents, read when the config is loaded.
    #[serde(skip)]
    pub admin_token: Option<Secret>,
}

impl ServerConfig {
    /// The number of serving threads `workers` asks for.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Issuer of a generic OIDC provider; metadata comes from its discovery document.
    #[serde(default)]
    pub issuer: Option<String>,
    /// AWS Cognito shorthand: derives issuer, JWKS and hosted-UI endpoints.
    #[serde(default)]
    pub cognito: Option<CognitoConfig>,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// How the client authenticates at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth: TokenEndpointAuth,
    #[serde(default = "defaults::scopes")]
    pub scopes: Vec<String>,
    /// Overrides, for private endpoints and emulators.
    #[serde(default)]
    pub discovery_url: Option<Url>,
    #[serde(default)]
    pub jwks_url: Option<Url>,
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    #[serde(default)]
    pub token_endpoint: Option<Url>,
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    #[serde(default)]
    pub end_session_endpoint: Option<Url>,
    /// Where the IdP sends the browser after logout; default `public_url` + `<auth_prefix>/signed-out`.
    #[serde(default)]
    pub post_logout_redirect_uri: Option<Url>,
    /// Extra query parameters for the authorize request (e.g. `prompt`, `audience`).
    #[serde(default)]
    pub extra_auth_params: BTreeMap<String, String>,
    /// The claim listing the caller's groups, for `allow_groups` and
    /// `X-Auth-Request-Groups`; default `cognito:groups` with `cognito`, else `groups`.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Allowed clock difference when checking `exp`, `nbf` and `iat`.
    #[serde(default = "defaults::leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Accepted `aud` values of bearer access tokens (API clients). Cognito
    /// access tokens carry no `aud`: their `client_id` must be `client_id` or
    /// one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// After a JWKS fetch, an unknown `kid` waits this long before the next
    /// fetch (a flood of bad tokens cannot become a flood of fetches).
    #[serde(default = "defaults::jwks_cooldown", with = "humantime_serde")]
    pub jwks_cooldown: Duration,
    /// Refresh the access token this long before it expires.
    #[serde(default = "defaults::refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
    /// Timeout for every call to the IdP (discovery, JWKS, token, revocation).
    #[serde(default = "defaults::http_timeout", with = "humantime_serde")]
    pub http_timeout: Duration,
    /// How long a login may take between `/auth/login` and the callback.
    #[serde(default = "defaults::login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Talk to an `http://` IdP. For local development and tests only.
    #[serde(default)]
    pub insecure_allow_http: bool,
    /// The client that obtains machine tokens (client-credentials grant) for
    /// routes with `token = "client"`; default the gateway's own client.
    /// Cognito needs a separate app client for them.
    #[serde(default)]
    pub machine: Option<MachineClientConfig>,
}

/// Credentials of the client used for the client-credentials grant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MachineClientConfig {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// How this client authenticates at the token endpoint; default `provider.token_endpoint_auth`.
    #[serde(default)]
    pub token_endpoint_auth: Option<TokenEndpointAuth>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CognitoConfig {
    pub region: String,
    pub user_pool_id: String,
    /// Hosted-UI domain, e.g. `auth.example.com` or `myapp.auth.eu-west-1.amazoncognito.com`.
    pub domain: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default)]
    pub store: StoreKind,
    /// One Redis server for `store = "redis"`: `redis://[[user]:password@]host[:port][/db]`,
    /// or `rediss://…` for TLS.
    #[serde(default)]
    pub redis_url: Option<Secret>,
    /// Seed nodes of a Redis Cluster (instead of `redis_url`), e.g.
    /// `["redis://node-1:6379", "redis://node-2:6379"]`; the rest is discovered.
    #[serde(default)]
    pub redis_cluster_urls: Vec<Secret>,
    /// ACL user for Redis; overrides the user in the URL.
    #[serde(default)]
    pub redis_username: Option<String>,
    /// Redis password; overrides the password in the URL.
    #[serde(default)]
    pub redis_password: Option<Secret>,
    /// A file holding the Redis password, used when `redis_password` is not set.
    #[serde(default)]
    pub redis_password_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) of a `rediss://` server, trusted
    /// instead of the system roots.
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    /// `redis_ca_file`'s contents, read when the config is loaded.
    #[serde(skip)]
    pub redis_ca_pem: Option<Vec<u8>>,
    /// `redis_url` or `redis_cluster_urls`, parsed by validation.
    #[serde(skip)]
    pub redis_endpoints: Vec<crate::session::redis::RedisEndpoint>,
    /// Prefix of every Redis key, so one Redis can serve several gateways.
    #[serde(default = "defaults::redis_key_prefix")]
    pub redis_key_prefix: String,
    /// Bound of every Redis call; past it the request gets 503.
    #[serde(default = "defaults::redis_timeout", with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Base64url-encoded 32-byte keys: the first seals, all open (rotation).
    #[serde(default)]
    pub keys: Vec<Secret>,
    /// `keys` decoded by validation, in the same order.
    #[serde(skip)]
    pub decoded_keys: Vec<KeyBytes>,
    /// A file with one key per line, used when `keys` is empty.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default = "defaults::absolute_timeout", with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// Base cookie name; `__Host-` is prefixed when `public_url` is https.
    #[serde(default = "defaults::cookie_name")]
    pub cookie_name: String,
    #[serde(default)]
    pub same_site: SameSite,
    /// Upper bound of sessions held by the memory store.
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: u64,
    /// A session whose tokens were last obtained longer ago than this is
    /// refreshed before it is used, even while its access token is valid, so
    /// a grant revoked at the IdP ends the session within this window.
    /// `"off"` (the default): only the access token's expiry drives refresh.
    #[serde(default, with = "types::off_or_duration")]
    pub revalidate_every: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            store: StoreKind::default(),
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            redis_username: None,
            redis_password: None,
            redis_password_file: None,
            redis_ca_file: None,
            redis_ca_pem: None,
            redis_endpoints: Vec::new(),
            redis_key_prefix: defaults::redis_key_prefix(),
            redis_timeout: defaults::redis_timeout(),
            keys: Vec::new(),
            decoded_keys: Vec::new(),
            keys_file: None,
            idle_timeout: defaults::idle_timeout(),
            absolute_timeout: defaults::absolute_timeout(),
            cookie_name: defaults::cookie_name(),
            same_site: SameSite::default(),
            max_sessions: defaults::max_sessions(),
            revalidate_every: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    #[default]
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, e.g. `/api/`. The longest matching prefix wins.
    pub path: String,
    /// Base URL of the upstream, e.g. `http://orders:8080`.
    pub upstream: Url,
    /// Remove `path` from the request path before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub auth: AuthMode,
    #[serde(default)]
    pub token: TokenKind,
    /// Require the `X-CSRF` header on requests that carry the session cookie.
    #[serde(default = "defaults::yes")]
    pub csrf: bool,
    /// Allowed methods; empty means any.
    #[serde(default)]
    pub methods: Methods,
    /// Upstream response timeout (until the response headers arrive).
    #[serde(default = "defaults::route_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Accept WebSocket handshakes (authenticated, same-origin only) and tunnel them.
    #[serde(default)]
    pub websocket: bool,
    /// Largest request body for this route, in bytes; default `server.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Accepted `aud` of bearer tokens on this route; default `provider.audiences`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Send the client's `Host` header upstream instead of the upstream's own authority.
    #[serde(default)]
    pub preserve_host: bool,
    /// Answers to a signed-in caller that carry no caching headers of their
    /// own get `Cache-Control: private` (no shared cache keeps one user's
    /// answer for another). `false` passes them on as they are.
    #[serde(default = "defaults::yes")]
    pub cache_private: bool,
    /// Identity headers to send upstream, from the caller's claims, e.g.
    /// `{ user = "X-Forwarded-User", email = "X-Forwarded-Email", groups = "X-Forwarded-Groups" }`.
    /// Copies a client sends are always removed.
    #[serde(default)]
    pub identity_headers: Option<IdentityHeaders>,
    /// Send a short-lived ES256 JWT about the caller in `server.assertion_header`,
    /// verifiable with the keys at `<auth_prefix>/jwks.json`.
    #[serde(default)]
    pub identity_assertion: bool,
    /// `aud` of that assertion; default the upstream's origin.
    #[serde(default)]
    pub assertion_audience: Option<String>,
    /// Authorization: the caller must be in at least one of these groups (`provider.groups_claim`).
    #[serde(default)]
    pub allow_groups: Vec<String>,
    /// Authorization: every one of these scopes must have been granted.
    #[serde(default)]
    pub require_scopes: Vec<String>,
    /// Authorization: claim name -> value (equals) or list (one of); a list claim must contain it.
    #[serde(default)]
    pub require_claims: BTreeMap<String, crate::policy::ClaimRule>,
    /// Navigations that must sign in go to this federated IdP (`/auth/login?idp=…`).
    #[serde(default)]
    pub login_idp: Option<String>,
    /// With `token = "client"`: the scopes of the machine token (client-credentials grant).
    #[serde(default)]
    pub client_scopes: Vec<String>,
    /// With `token = "client"`: the `resource` (RFC 8707) of the machine token, if any.
    #[serde(default)]
    pub client_resource: Option<String>,
}

/// Header names for the caller's identity on a route; unset ones are not sent.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    /// The caller's `sub`.
    #[serde(default)]
    pub user: Option<Header>,
    /// The `email` claim, when there is one.
    #[serde(default)]
    pub email: Option<Header>,
    /// The groups (`provider.groups_claim`), comma-separated.
    #[serde(default)]
    pub groups: Option<Header>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A browser session is required.
    #[default]
    Session,
    /// A session is used when present.
    Optional,
    /// No authentication; the client's own `Authorization` passes through.
    Public,
    /// A JWT access token from an API client (`Authorization: Bearer`), verified against the IdP's keys.
    Bearer,
    /// A session, or else a bearer JWT.
    SessionOrBearer,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    #[default]
    Access,
    Id,
    None,
    /// The gateway's own machine token (client-credentials grant), on behalf of the signed-in user.
    Client,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpaConfig {
    /// Directory with the built SPA; unknown paths fall back to `index.html`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A development server to proxy to instead of `dir`.
    #[serde(default)]
    pub upstream: Option<Url>,
    /// `Content-Security-Policy` for the app's files; none by default (an
    /// app's needs vary), set one.
    #[serde(default)]
    pub content_security_policy: Option<String>,
    /// `Referrer-Policy` for the app's files.
    #[serde(default = "defaults::referrer_policy")]
    pub referrer_policy: String,
    /// `Strict-Transport-Security` on the app's files when `public_url` is https.
    #[serde(default = "defaults::yes")]
    pub hsts: bool,
}

impl ProviderConfig {
    /// The client that requests machine tokens: `provider.machine`, else the gateway's own.
    pub fn machine_client(&self) -> (String, Option<Secret>, TokenEndpointAuth) {
        match &self.machine {
            Some(m) => (
                m.client_id.clone(),
                m.client_secret.clone(),
                m.token_endpoint_auth.unwrap_or(self.token_endpoint_auth),
            ),
            None => (
                self.client_id.clone(),
                self.client_secret.clone(),
                self.token_endpoint_auth,
            ),
        }
    }

    /// The claim listing the caller's groups.
    pub fn groups_claim(&self) -> &str {
        match (&self.groups_claim, &self.cognito) {
            (Some(c), _) => c,
            (None, Some(_)) => "cognito:groups",
            (None, None) => "groups",
        }
    }
}

impl Config {
    /// `true` when the browser talks https to the gateway: cookies get `Secure` and `__Host-`.
    pub fn is_https(&self) -> bool {
        self.server.public_url.scheme() == "https"
    }

    /// The public origin without a trailing slash, e.g. `https://app.example.com`.
    pub fn public_origin(&self) -> String {
        self.server
            .public_url
            .origin()
            .ascii_serialization()
            .trim_end_matches('/')
            .to_string()
    }

    /// The redirect URI registered at the IdP.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}{}/callback",
            self.public_origin(),
            self.server.auth_prefix
        )
    }

    pub fn signed_out_uri(&self) -> String {
        match &self.provider.post_logout_redirect_uri {
            Some(u) => u.to_string(),
            None => format!(
                "{}{}/signed-out",
                self.public_origin(),
                self.server.auth_prefix
            ),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9090))
    }
    pub fn auth_prefix() -> String {
        "/auth".into()
    }
    pub fn log_level() -> String {
        "info".into()
    }
    pub fn max_body_bytes() -> u64 {
        10 * 1024 * 1024
    }
    pub fn scopes() -> Vec<String> {
        vec!["openid".into(), "email".into(), "profile".into()]
    }
    pub fn leeway() -> Duration {
        Duration::from_secs(60)
    }
    pub fn http_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn jwks_cooldown() -> Duration {
        Duration::from_secs(30)
    }
    pub fn refresh_before() -> Duration {
        Duration::from_secs(60)
    }
    pub fn login_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(8 * 3600)
    }
    pub fn absolute_timeout() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn cookie_name() -> String {
        "oidc_bff".into()
    }
    pub fn max_sessions() -> u64 {
        100_000
    }
    pub fn redis_key_prefix() -> String {
        "oidc-bff:".into()
    }
    pub fn redis_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn route_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn shutdown_delay() -> Duration {
        Duration::from_secs(2)
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn write_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn body_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn http2_max_concurrent_streams() -> u32 {
        100
    }
    pub fn admin_max_connections() -> usize {
        64
    }
    pub fn assertion_header() -> super::Header {
        super::Header::from_static("x-bff-identity")
    }
    pub fn referrer_policy() -> String {
        "strict-origin-when-cross-origin".into()
    }
    pub fn yes() -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
