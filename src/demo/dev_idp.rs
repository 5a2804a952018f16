//! The development IdP: a stand-in for AWS Cognito's hosted UI, for local
//! work and tests only. It serves Cognito's surface (`/oauth2/authorize` with a
//! login page, `/oauth2/token`, `/oauth2/userInfo`, `/oauth2/revoke`,
//! `/logout?client_id&logout_uri`, discovery and JWKS) and issues
//! Cognito-shaped RS256 tokens: ID tokens with `aud` and `token_use: "id"`,
//! access tokens without `aud` but with `client_id` and `token_use: "access"`.
//!
//! It enforces what a real IdP enforces (PKCE S256, exact redirect and logout
//! URIs, single-use codes, expiries, client secrets) so the gateway is tested
//! against the strict behaviour. Users, clients and passwords come from its
//! config; keys are generated at start and live in memory. It refuses a
//! non-loopback listen address unless told `insecure_listen_any`.

mod config;
mod flow;
mod keys;
mod pages;
mod params;
mod token;

pub use config::{DevClient, DevIdpConfig, DevUser};

use crate::clock::Clock;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use keys::SigningKey;

/// The name of the IdP's own sign-in cookie. Every demo server runs on
/// 127.0.0.1 and cookies ignore ports, so the name must not collide with the
/// gateway's.
pub const SESSION_COOKIE: &str = "dev_idp_session";

/// What can stop the development IdP from starting.
#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error("invalid dev IdP config:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    #[error("dev IdP key: {0}")]
    Key(&'static str),
}

impl From<DevIdpError> for io::Error {
    fn from(e: DevIdpError) -> io::Error {
        let kind = match e {
            DevIdpError::Config(_) => io::ErrorKind::InvalidInput,
            DevIdpError::Key(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// An authorization code waiting to be redeemed.
#[derive(Clone)]
struct CodeRecord {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: Vec<String>,
    nonce: Option<String>,
    username: String,
    auth_time: u64,
    /// Ties the tokens of one sign-in together (Cognito's `origin_jti`).
    origin: String,
    expires: Instant,
    used: bool,
}

struct RefreshRecord {
    client_id: String,
    username: String,
    scope: Vec<String>,
    auth_time: u64,
    origin: String,
    expires: Instant,
}

struct SessionRecord {
    username: String,
    auth_time: u64,
    expires: Instant,
}

/// Everything the IdP remembers; in memory, gone at restart.
#[derive(Default)]
struct Store {
    codes: HashMap<String, CodeRecord>,
    refresh_tokens: HashMap<String, RefreshRecord>,
    sessions: HashMap<String, SessionRecord>,
    /// Origins whose tokens were revoked: their access tokens stop working
    /// at userInfo, as Cognito's revocation does.
    revoked_origins: HashSet<String>,
}

impl Store {
    fn purge(&mut self, now: Instant) {
        self.codes.retain(|_, c| c.expires > now);
        self.refresh_tokens.retain(|_, r| r.expires > now);
        self.sessions.retain(|_, s| s.expires > now);
    }

    /// Ends every refresh token of a sign-in (revocation, or a replayed code:
    /// RFC 6749 §4.1.2 says the tokens of a reused code should be revoked).
    fn revoke_origin(&mut self, origin: &str) {
        self.refresh_tokens.retain(|_, r| r.origin != origin);
        self.revoked_origins.insert(origin.to_string());
    }
}

/// The shared state of a running development IdP.
pub struct DevIdpState {
    config: DevIdpConfig,
    /// The public URL without a trailing slash.
    base_url: String,
    /// The path part of the public URL without a trailing slash ("" at the root).
    base_path: String,
    secure_cookie: bool,
    jwks_url: Url,
    discovery_url: Url,
    id_key: SigningKey,
    access_key: SigningKey,
    store: Mutex<Store>,
    /// What codes, sessions and tokens expire by (tests move it).
    clock: Clock,
}

impl DevIdpState {
    /// Validates the config and generates the signing keys (one for ID tokens,
    /// one for access tokens: Cognito's JWKS has two `kid`s too).
    pub fn new(config: DevIdpConfig, public_url: Url) -> Result<DevIdpState, DevIdpError> {
        config.validate()?;
        let base_url = public_url.as_str().trim_end_matches('/').to_string();
        let base_path = public_url.path().trim_end_matches('/').to_string();
        let url = |path: &str| {
            Url::parse(&format!("{base_url}{path}"))
                .map_err(|e| DevIdpError::Config(vec![format!("public_url: {e}")]))
        };
        Ok(DevIdpState {
            secure_cookie: public_url.scheme() == "https",
            jwks_url: url("/.well-known/jwks.json")?,
            discovery_url: url("/.well-known/openid-configuration")?,
            config,
            base_url,
            base_path,
            id_key: SigningKey::generate()?,
            access_key: SigningKey::generate()?,
            store: Mutex::new(Store::default()),
            clock: Clock::system(),
        })
    }

    /// Unix seconds by the IdP's clock (`iat`, `exp`, `auth_time`).
    fn unix_now(&self) -> u64 {
        self.clock.now_secs().max(0) as u64
    }

    /// An instant of the IdP's clock, for the expiry of what it stores.
    fn instant(&self) -> Instant {
        self.clock.instant()
    }

    pub fn config(&self) -> &DevIdpConfig {
        &self.config
    }

    /// The public URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A poisoned lock only means a handler panicked mid-update; the maps
    /// are still usable, and a dev IdP must keep answering.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stable, UUID-shaped `sub` of a user (Cognito's subs are UUIDs).
    fn sub(&self, username: &str) -> String {
        let digest = Sha256::digest(format!("{}\0{username}", self.config.issuer).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// The development IdP's routes, Cognito's paths.
pub fn router(state: Arc<DevIdpState>) -> Router {
    Router::new()
        .route("/oauth2/authorize", get(flow::authorize).post(flow::login))
        .route("/login", get(flow::authorize).post(flow::login))
        .route("/oauth2/token", post(token::token))
        .route(
            "/oauth2/userInfo",
            get(token::userinfo).post(token::userinfo),
        )
        .route("/oauth2/revoke", post(token::revoke))
        .route("/logout", get(flow::logout))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(not_found)
        // Forms and token requests are small; anything bigger is not OAuth.
        .layer(DefaultBodyLimit::max(64 * 1024))
        // A bug must answer 500, not drop the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// OpenID Connect Discovery 1.0 §3, with Cognito's endpoint paths.
async fn discovery(State(s): State<Arc<DevIdpState>>) -> Json<Value> {
    let scopes: Vec<&str> = {
        let mut all: Vec<&str> = s
            .config
            .clients
            .iter()
            .flat_map(|c| c.allowed_scopes.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    Json(json!({
        "issuer": s.config.issuer,
        "authorization_endpoint": s.endpoint("/oauth2/authorize"),
        "token_endpoint": s.endpoint("/oauth2/token"),
        "userinfo_endpoint": s.endpoint("/oauth2/userInfo"),
        "revocation_endpoint": s.endpoint("/oauth2/revoke"),
        "jwks_uri": s.jwks_url.as_str(),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "token_use",
            "cognito:username", "cognito:groups", "email", "email_verified"
        ],
    }))
}

async fn jwks(State(s): State<Arc<DevIdpState>>) -> Json<Value> {
    Json(json!({ "keys": [s.id_key.jwk, s.access_key.jwk] }))
}

async fn not_found() -> Response {
    pages::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "The development IdP has no such page.",
    )
}

/// A running development IdP. Dropping it (or [`DevIdpHandle::shutdown`])
/// stops the server.
pub struct DevIdpHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The `iss` of its tokens.
    pub issuer: String,
    state: Arc<DevIdpState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl DevIdpHandle {
    /// The public URL, without a trailing slash (endpoints hang off it).
    pub fn base_url(&self) -> &str {
        self.state.base_url()
    }

    /// The `iss` of its tokens (also the `issuer` field).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jwks_url(&self) -> Url {
        self.state.jwks_url.clone()
    }

    pub fn discovery_url(&self) -> Url {
        self.state.discovery_url.clone()
    }

    pub fn state(&self) -> &Arc<DevIdpState> {
        &self.state
    }

    /// Stops accepting, finishes in-flight requests, and returns the server's result.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for DevIdpHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn refuse_non_loopback(addr: SocketAddr, config: &DevIdpConfig) -> io::Result<()> {
    if addr.ip().is_loopback() || config.insecure_listen_any {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the development IdP will not listen on {addr}: it is not a loopback address. \
             It is for local development only; pass --insecure-listen-any \
             (insecure_listen_any = true) to override"
        ),
    ))
}

/// Serves the development IdP on `listener`. Refuses (`InvalidInput`) a
/// non-loopback address unless `config.insecure_listen_any`, and an invalid
/// config.
pub async fn start(config: DevIdpConfig, listener: TcpListener) -> io::Result<DevIdpHandle> {
    start_with_clock(config, listener, Clock::system()).await
}

/// [`start`] on a given clock (tests move it to let codes and tokens expire).
pub async fn start_with_clock(
    config: DevIdpConfig,
    listener: TcpListener,
    clock: Clock,
) -> io::Result<DevIdpHandle> {
    let addr = listener.local_addr()?;
    refuse_non_loopback(addr, &config)?;
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{addr}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
    };
    let mut state = DevIdpState::new(config, public_url)?;
    state.clock = clock;
    let state = Arc::new(state);
    let issuer = state.config.issuer.clone();
    tracing::warn!(
        %addr,
        url = %state.base_url,
        "Development IdP — for local development only. Never use it in production: \
         users and passwords come from a config file and keys live in memory"
    );
    for user in &state.config.users {
        tracing::info!(username = %user.username, groups = ?user.groups, "dev IdP user");
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(DevIdpHandle {
        addr,
        issuer,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Binds `config.listen` (after the loopback check) and starts; for
/// `oidc-bff dev-idp`.
pub async fn run(config: DevIdpConfig) -> io::Result<DevIdpHandle> {
    refuse_non_loopback(config.listen, &config)?;
    config.validate()?;
    let listener = TcpListener::bind(config.listen).await?;
    start(config, listener).await
}

/// A 302 that caches must not keep (it carries codes and errors).
fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "Bad redirect",
                "The redirect target is not valid.",
            )
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
