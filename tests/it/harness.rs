//! Test harness: starts the real test IdP (`tests/idp`, oidc-provider), an
//! upstream that verifies the bearer tokens it receives, a test-controlled
//! "rogue" IdP that mints ID tokens with a key the test holds, and the gateway
//! itself on free ports. Everything fails loudly when it cannot start.

#![allow(dead_code)]

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use oidc_bff::app::AppState;
use oidc_bff::session::MemoryStore;
use regex::Regex;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A real oidc-provider process. Dropping it ends the process.
pub struct Idp {
    pub issuer: String,
    child: Child,
    _stdin: ChildStdin,
}

impl Idp {
    /// Starts `tests/idp/server.mjs` with `config` (see tests/idp/README.md).
    pub fn start(config: Value) -> Idp {
        let dir = repo_root().join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test IdP is not installed: run `npm ci --prefix tests/idp` (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `node`: install Node.js (scripts/test does)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the IdP's ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the test IdP did not start (ready line: {line:?})"));
        Idp {
            issuer: ready["issuer"].as_str().unwrap().to_string(),
            child,
            _stdin: stdin,
        }
    }

    /// The usual test IdP for a gateway at `gateway` (origin).
    pub fn for_gateway(gateway: &str, extra: Value) -> Idp {
        let mut cfg = json!({
            "clients": [{
                "client_id": "bff",
                "client_secret": "bff-secret",
                "redirect_uris": [format!("{gateway}/auth/callback")],
                "post_logout_redirect_uris": [format!("{gateway}/auth/signed-out")],
            }],
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        Idp::start(cfg)
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/test/stats", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream API that records every request and verifies its bearer token
/// against the IdP's JWKS, answering `{ "verified": bool, "claims": … }`.
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct UpstreamState {
    seen: Arc<Mutex<Vec<Seen>>>,
    jwks_url: Option<String>,
}

impl Upstream {
    pub async fn start(jwks_url: Option<String>) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = UpstreamState { seen: seen.clone(), jwks_url };
        let app = Router::new().fallback(any(upstream_handler)).with_state(st);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream { url: format!("http://{addr}"), seen }
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn upstream_handler(State(st): State<UpstreamState>, req: axum::extract::Request) -> impl IntoResponse {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").to_string()))
            .collect(),
    };
    st.seen.lock().unwrap().push(seen.clone());
    let mut verified = false;
    let mut claims = Value::Null;
    if let (Some(jwks_url), Some(token)) = (&st.jwks_url, seen.header("authorization").and_then(|a| a.strip_prefix("Bearer "))) {
        if let Ok(c) = verify_with_jwks(jwks_url, token).await {
            verified = true;
            claims = c;
        }
    }
    Json(json!({ "verified": verified, "claims": claims, "path": seen.uri }))
}

/// Verifies an RS256/ES256 JWT with a standard library against a JWKS URL.
pub async fn verify_with_jwks(jwks_url: &str, token: &str) -> Result<Value, String> {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, DecodingKey, Validation};
    let set: JwkSet = reqwest::get(jwks_url).await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let jwk = set.find(header.kid.as_deref().unwrap_or("")).ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(header.alg);
    v.validate_aud = false;
    decode::<Value>(token, &key, &v).map(|d| d.claims).map_err(|e| e.to_string())
}

/// The gateway, in-process, on free ports, with a memory store the test can inspect.
pub struct Gateway {
    pub url: String,
    pub admin_url: String,
    pub state: Arc<AppState>,
    pub store: Arc<MemoryStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A bound-but-not-serving listener, so the IdP can learn the gateway's URL first.
pub struct Reserved {
    listener: TcpListener,
    admin: TcpListener,
    pub url: String,
}

pub async fn reserve() -> Reserved {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    Reserved { listener, admin, url }
}

pub fn test_key() -> String {
    oidc_bff::session::generate_key()
}

/// A complete gateway config for `issuer`, with `routes` appended as TOML.
pub fn config_toml(public_url: &str, issuer: &str, routes: &str) -> String {
    format!(
        r#"
[server]
public_url = "{public_url}"

[provider]
issuer = "{issuer}"
client_id = "bff"
client_secret = "bff-secret"
scopes = ["openid", "email", "profile", "groups", "offline_access", "api:read"]
insecure_allow_http = true

[session]
keys = ["{key}"]

{routes}
"#,
        key = test_key()
    )
}

impl Gateway {
    pub async fn start(reserved: Reserved, toml: &str) -> Gateway {
        let config = oidc_bff::config::load_from_str(toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let store = Arc::new(MemoryStore::new(1000));
        let state = AppState::with_store(config, store.clone()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = oidc_bff::serve(state, reserved.listener, reserved.admin, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Gateway {
            url: format!("http://{}", running.addr),
            admin_url: format!("http://{}", running.admin_addr),
            state: running.state,
            store,
            shutdown: Some(tx),
        }
    }

    /// Live session records in the store.
    pub fn session_count(&self) -> usize {
        self.store.keys().len()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A cookie-keeping HTTP client that does not follow redirects by itself.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {} {}", resp.status(), resp.url()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Resolves a Location against the URL that answered.
pub fn resolve(base: &reqwest::Url, loc: &str) -> String {
    base.join(loc).unwrap().to_string()
}

/// Walks the whole sign-in as a browser would: `/auth/login` -> the IdP's
/// login form -> consent form -> `/auth/callback`. Returns the callback's
/// response (a redirect to `return_to`).
pub async fn sign_in(b: &reqwest::Client, gateway: &str, user: &str, return_to: &str) -> reqwest::Response {
    let form_re = Regex::new(r#"<form autocomplete="off" action="([^"]+)" method="post">"#).unwrap();
    let prompt_re = Regex::new(r#"<input type="hidden" name="prompt" value="(login|consent)"/>"#).unwrap();
    let mut url = format!("{gateway}/auth/login?return_to={}", urlencode(return_to));
    let mut method_post: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        let resp = match method_post.take() {
            Some(form) => b.post(&url).form(&form).send().await.unwrap(),
            None => b.get(&url).header("accept", "text/html").send().await.unwrap(),
        };
        if url.starts_with(&format!("{gateway}/auth/callback")) {
            return resp;
        }
        if resp.status().is_redirection() {
            url = resolve(resp.url(), &location(&resp));
            continue;
        }
        assert_eq!(resp.status(), 200, "unexpected answer at {url}");
        let page = resp.text().await.unwrap();
        let action = form_re.captures(&page).unwrap_or_else(|| panic!("no form at {url}: {page}"))[1].to_string();
        let prompt = prompt_re.captures(&page).expect("no prompt input")[1].to_string();
        let mut form = vec![("prompt".to_string(), prompt.clone())];
        if prompt == "login" {
            form.push(("login".into(), user.into()));
            form.push(("password".into(), "any-password".into()));
        }
        url = action;
        method_post = Some(form);
    }
    panic!("sign-in did not reach the callback");
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An IdP whose keys the test holds: discovery, JWKS and a token endpoint
/// that answers with whatever ID token the test mints next.
pub struct RogueIdp {
    pub issuer: String,
    pub key: TestKey,
    next: Arc<Mutex<Option<Value>>>,
}

#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pkcs8: Vec<u8>,
    pub jwk: Value,
}

impl TestKey {
    /// A fresh ES256 (P-256) key.
    pub fn es256(kid: &str) -> TestKey {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        TestKey {
            kid: kid.into(),
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": B64.encode(x), "y": B64.encode(y)}),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

#[derive(Clone)]
struct RogueState {
    issuer: String,
    jwks: Value,
    next: Arc<Mutex<Option<Value>>>,
}

impl RogueIdp {
    pub async fn start() -> RogueIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let key = TestKey::es256("rogue-1");
        let next = Arc::new(Mutex::new(None));
        let st = RogueState {
            issuer: issuer.clone(),
            jwks: json!({ "keys": [key.jwk.clone()] }),
            next: next.clone(),
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<RogueState>| async move {
                    Json(json!({
                        "issuer": s.issuer,
                        "authorization_endpoint": format!("{}/authorize", s.issuer),
                        "token_endpoint": format!("{}/token", s.issuer),
                        "jwks_uri": format!("{}/jwks", s.issuer),
                    }))
                }),
            )
            .route("/jwks", get(|State(s): State<RogueState>| async move { Json(s.jwks) }))
            .route(
                "/token",
                post(|State(s): State<RogueState>| async move {
                    match s.next.lock().unwrap().take() {
                        Some(body) => Json(body).into_response(),
                        None => (http::StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response(),
                    }
                }),
            )
            .with_state(st);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RogueIdp { issuer, key, next }
    }

    /// The next token request answers with an ID token of these claims.
    pub fn answer_with_id_token(&self, claims: Value) {
        let token = self.key.sign(&claims);
        *self.next.lock().unwrap() = Some(json!({
            "access_token": "opaque-access",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": token,
        }));
    }

    pub fn answer_with(&self, body: Value) {
        *self.next.lock().unwrap() = Some(body);
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A query parameter of a URL.
pub fn param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The value a response sets for cookie `name`.
pub fn set_cookie_value(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
    })
}
