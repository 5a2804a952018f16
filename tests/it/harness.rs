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

    /// Stops the IdP process (SIGSTOP): connections are still accepted by
    /// the kernel, nothing is answered, as with a stalled IdP.
    pub fn pause(&self) {
        assert!(signal(self.child.id(), "-STOP"), "cannot pause the IdP");
    }

    /// Lets a paused IdP go on (SIGCONT); it answers what queued meanwhile.
    pub fn resume(&self) {
        assert!(signal(self.child.id(), "-CONT"), "cannot resume the IdP");
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

/// Sends a signal with kill(1); `true` when it was delivered.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("cannot run `kill`")
        .success()
}

impl Drop for Idp {
    fn drop(&mut self) {
        // A paused process must go on to die.
        signal(self.child.id(), "-CONT");
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
        let st = UpstreamState {
            seen: seen.clone(),
            jwks_url,
        };
        let app = Router::new().fallback(any(upstream_handler)).with_state(st);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream {
            url: format!("http://{addr}"),
            seen,
        }
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn upstream_handler(
    State(st): State<UpstreamState>,
    req: axum::extract::Request,
) -> impl IntoResponse {
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
    if let (Some(jwks_url), Some(token)) = (
        &st.jwks_url,
        seen.header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ")),
    ) {
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
    let set: JwkSet = reqwest::get(jwks_url)
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let jwk = set
        .find(header.kid.as_deref().unwrap_or(""))
        .ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(header.alg);
    v.validate_aud = false;
    decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
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
    Reserved {
        listener,
        admin,
        url,
    }
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
        Self::start_with_store(reserved, toml, Arc::new(MemoryStore::new(1000))).await
    }

    /// A gateway on a given memory store (several gateways may share one, as
    /// replicas share Redis).
    pub async fn start_with_store(
        reserved: Reserved,
        toml: &str,
        store: Arc<MemoryStore>,
    ) -> Gateway {
        let config = oidc_bff::config::load_from_str(toml)
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
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
pub async fn sign_in(
    b: &reqwest::Client,
    gateway: &str,
    user: &str,
    return_to: &str,
) -> reqwest::Response {
    let start = format!("{gateway}/auth/login?return_to={}", urlencode(return_to));
    sign_in_from(b, &start, &format!("{gateway}/auth/callback"), user).await
}

/// Follows a sign-in from `start` (the gateway's login URL, or an authorize
/// URL already issued) through the test IdP's login and consent forms, until
/// the request to `callback`; returns the callback's answer.
pub async fn sign_in_from(
    b: &reqwest::Client,
    start: &str,
    callback: &str,
    user: &str,
) -> reqwest::Response {
    let form_re =
        Regex::new(r#"<form autocomplete="off" action="([^"]+)" method="post">"#).unwrap();
    let prompt_re =
        Regex::new(r#"<input type="hidden" name="prompt" value="(login|consent)"/>"#).unwrap();
    let mut url = start.to_string();
    let mut method_post: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        let resp = match method_post.take() {
            Some(form) => b.post(&url).form(&form).send().await.unwrap(),
            None => b
                .get(&url)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap(),
        };
        if url.starts_with(callback) {
            return resp;
        }
        if resp.status().is_redirection() {
            url = resolve(resp.url(), &location(&resp));
            continue;
        }
        assert_eq!(resp.status(), 200, "unexpected answer at {url}");
        let page = resp.text().await.unwrap();
        let action = form_re
            .captures(&page)
            .unwrap_or_else(|| panic!("no form at {url}: {page}"))[1]
            .to_string();
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

/// Sends `request` to the gateway byte for byte (no client library
/// normalises the target or the header names) and reads the answer to the
/// end; returns its status and text. The request should ask for
/// `Connection: close`.
pub async fn raw_exchange(gw: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("the gateway answers within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
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
    jwks: Arc<Mutex<Value>>,
    /// How many times its JWKS was fetched.
    pub jwks_hits: Arc<std::sync::atomic::AtomicUsize>,
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
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        TestKey {
            kid: kid.into(),
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": B64.encode(x), "y": B64.encode(y)}),
        }
    }

    /// Signs `claims` under a JOSE header written by hand (ES256), for
    /// headers jsonwebtoken's `Header` cannot express (`"crit": null`, …).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8).unwrap();
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// The header `sign` writes, as JSON, to start a hand-made one from.
    pub fn header(&self) -> Value {
        json!({ "typ": "JWT", "alg": "ES256", "kid": self.kid })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &h,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

#[derive(Clone)]
struct RogueState {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    next: Arc<Mutex<Option<Value>>>,
    jwks_hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl RogueIdp {
    pub async fn start() -> RogueIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let key = TestKey::es256("rogue-1");
        let next = Arc::new(Mutex::new(None));
        let jwks = Arc::new(Mutex::new(json!({ "keys": [key.jwk.clone()] })));
        let jwks_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let st = RogueState {
            issuer: issuer.clone(),
            jwks: jwks.clone(),
            next: next.clone(),
            jwks_hits: jwks_hits.clone(),
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
            .route(
                "/jwks",
                get(|State(s): State<RogueState>| async move {
                    s.jwks_hits
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let keys = s.jwks.lock().unwrap().clone();
                    Json(keys)
                }),
            )
            .route(
                "/token",
                post(|State(s): State<RogueState>| async move {
                    match s.next.lock().unwrap().take() {
                        Some(body) => Json(body).into_response(),
                        None => (
                            http::StatusCode::BAD_REQUEST,
                            Json(json!({"error": "invalid_grant"})),
                        )
                            .into_response(),
                    }
                }),
            )
            .with_state(st);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RogueIdp {
            issuer,
            key,
            next,
            jwks,
            jwks_hits,
        }
    }

    /// Publishes another key (first in the set, as an IdP rotating keys does).
    pub fn publish(&self, key: &TestKey) {
        let mut jwks = self.jwks.lock().unwrap();
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .insert(0, key.jwk.clone());
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

// ------------------------------------------------------------------ Redis ---

/// A scratch directory, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "oidc-bff-{what}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require_redis() {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "cannot run `redis-server`: install redis-server (scripts/test does)"
    );
}

/// `redis-cli -p port args…`, raw stdout (values may be binary). Panics
/// with its stderr when it fails (e.g. no server answers).
pub fn redis_cli(port: u16, args: &[&str]) -> Vec<u8> {
    let out = redis_cli_output(port, args);
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn redis_cli_output(port: u16, args: &[&str]) -> std::process::Output {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run `redis-cli`: install redis-server (scripts/test does)")
}

fn redis_cli_text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&redis_cli(port, args))
        .trim()
        .to_string()
}

/// One `redis-server` on a free port with its own directory (no saving,
/// no append-only file). Stopped on drop. `kill` and `restart` simulate an outage
/// on the same port; `pause`/`resume` a server that stops answering.
pub struct RedisServer {
    pub port: u16,
    dir: ScratchDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (cluster mode, TLS, passwords).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        require_redis();
        let s = RedisServer {
            port: free_port(),
            dir: ScratchDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.launch();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir.0
    }

    fn launch(&self) {
        let dir = self.dir.0.display().to_string();
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--daemonize",
                "yes",
                "--pidfile",
                &format!("{dir}/redis.pid"),
                "--logfile",
                &format!("{dir}/redis.log"),
                "--dir",
                &dir,
            ])
            .args(&self.extra)
            .status()
            .expect("cannot run `redis-server`: install redis-server (scripts/test does)");
        assert!(status.success(), "redis-server did not start");
        self.wait_until(|| self.answers(), "redis-server to answer PING");
    }

    /// Whether the server answers (on the plain port; TLS-only servers use `ping_with`).
    pub fn answers(&self) -> bool {
        // Not answering is an outcome here, not a failure.
        let out = redis_cli_output(self.port, &["ping"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "PONG"
    }

    fn wait_until(&self, ok: impl Fn() -> bool, what: &str) {
        for _ in 0..100 {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.0.join("redis.log")).unwrap_or_default();
        panic!(
            "timed out waiting for {what} on port {}; redis.log:\n{log}",
            self.port
        );
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.0.join("redis.pid"))
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid]).status();
        }
    }

    /// Kills the server outright (no shutdown, no save): an outage.
    pub fn kill(&self) {
        self.signal("-KILL");
        let pidfile = self.dir.0.join("redis.pid");
        for _ in 0..100 {
            let alive = self
                .pid()
                .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = std::fs::remove_file(&pidfile);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not die", self.port);
    }

    /// Starts it again on the same port and directory, empty.
    pub fn restart(&self) {
        self.launch();
    }

    /// SIGSTOP: the server keeps its connections but stops answering.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Every key under `pattern` with its value: strings as stored, sets as
    /// their members joined by newlines.
    pub fn dump(&self, pattern: &str) -> Vec<(String, Vec<u8>)> {
        dump_node(self.port, pattern)
    }
}

/// `RedisServer::dump` for one node, by port.
pub fn dump_node(port: u16, pattern: &str) -> Vec<(String, Vec<u8>)> {
    let keys = redis_cli_text(port, &["--scan", "--pattern", pattern]);
    keys.lines()
        .filter(|k| !k.is_empty())
        .filter_map(|k| {
            let value = match redis_cli_text(port, &["type", k]).as_str() {
                "string" => {
                    let mut v = redis_cli(port, &["get", k]);
                    // redis-cli adds one newline after a raw value.
                    if v.last() == Some(&b'\n') {
                        v.pop();
                    }
                    v
                }
                "set" => redis_cli(port, &["smembers", k]),
                // Expired between KEYS and TYPE: gone.
                "none" => return None,
                other => panic!("unexpected Redis type {other} for {k}"),
            };
            Some((k.to_string(), value))
        })
        .collect()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.signal("-KILL");
    }
}

/// A 3-node Redis Cluster (3 primaries, no replicas), each node a `RedisServer`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run `redis-cli`: install redis-server (scripts/test does)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for n in &nodes {
            n.wait_until(
                || redis_cli_text(n.port, &["cluster", "info"]).contains("cluster_state:ok"),
                "the cluster to be ok",
            );
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// Every key under `pattern`, from every node.
    pub fn dump(&self, pattern: &str) -> Vec<(String, Vec<u8>)> {
        self.nodes
            .iter()
            .flat_map(|n| dump_node(n.port, pattern))
            .collect()
    }
}

/// The real `oidc-bff` binary, `serve --config <file>`, on ports chosen
/// beforehand (the IdP must know the redirect URI first). Killed on drop.
pub struct GatewayProcess {
    pub url: String,
    pub admin_url: String,
    child: Child,
    dir: ScratchDir,
}

/// Ports for a gateway process, and the `[server]` lines that use them.
pub struct ProcessPorts {
    pub port: u16,
    pub admin_port: u16,
    pub url: String,
}

impl ProcessPorts {
    pub fn new() -> ProcessPorts {
        let port = free_port();
        let admin_port = free_port();
        ProcessPorts {
            port,
            admin_port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The `[server]` section for these ports.
    pub fn server_toml(&self) -> String {
        format!(
            "[server]\npublic_url = \"{}\"\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n",
            self.url, self.port, self.admin_port
        )
    }
}

impl GatewayProcess {
    /// Starts the binary with `toml` and waits for `/healthz`.
    pub async fn start(ports: &ProcessPorts, toml: &str) -> GatewayProcess {
        Self::launch(ports, toml, Command::new(env!("CARGO_BIN_EXE_oidc-bff"))).await
    }

    /// Like [`GatewayProcess::start`], with the open-file limit (soft and
    /// hard) set to `nofile` by `prlimit` (util-linux), which then runs the
    /// binary in its place (so [`GatewayProcess::signal`] reaches it).
    pub async fn start_with_nofile(
        ports: &ProcessPorts,
        toml: &str,
        nofile: u64,
    ) -> GatewayProcess {
        let ok = Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "cannot run `prlimit`: install util-linux");
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_oidc-bff"));
        Self::launch(ports, toml, cmd).await
    }

    async fn launch(ports: &ProcessPorts, toml: &str, mut cmd: Command) -> GatewayProcess {
        // This process's reqwest clients (the "browser") need one too.
        oidc_bff::install_crypto_provider();
        let dir = ScratchDir::new("gateway");
        let config = dir.write("oidc-bff.toml", toml);
        let log = std::fs::File::create(dir.0.join("gateway.log")).unwrap();
        let child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("OIDC_BFF_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run the oidc-bff binary");
        let mut gw = GatewayProcess {
            url: ports.url.clone(),
            admin_url: format!("http://127.0.0.1:{}", ports.admin_port),
            child,
            dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("oidc-bff exited at start ({status}); log:\n{}", gw.log());
            }
            if client
                .get(format!("{}/healthz", gw.admin_url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-bff did not answer /healthz; log:\n{}", gw.log());
    }

    /// Waits until `/readyz` is 200 (IdP metadata loaded, session store reachable).
    pub async fn wait_ready(&self, within: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if self.readyz().await == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-bff not ready within {within:?}; log:\n{}", self.log());
    }

    pub async fn readyz(&self) -> u16 {
        match reqwest::get(format!("{}/readyz", self.admin_url)).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it must never crash).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("gateway.log")).unwrap_or_default()
    }

    /// Sends a signal (e.g. "TERM") to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("cannot run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `within` for the process to exit; its status if it did.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test IdP that accepts the redirect URIs of several gateways.
pub fn idp_for_gateways(gateways: &[&str]) -> Idp {
    oidc_bff::install_crypto_provider();
    Idp::start(json!({
        "clients": [{
            "client_id": "bff",
            "client_secret": "bff-secret",
            "redirect_uris": gateways.iter().map(|g| format!("{g}/auth/callback")).collect::<Vec<_>>(),
            "post_logout_redirect_uris": gateways.iter().map(|g| format!("{g}/auth/signed-out")).collect::<Vec<_>>(),
        }],
    }))
}

/// Where a callback response sends the browser: the `Location` of a redirect,
/// or the target of the same-origin landing page used with `SameSite=Strict`.
pub async fn landing_page(r: reqwest::Response) -> String {
    if r.status().is_redirection() {
        return location(&r);
    }
    assert_eq!(r.status(), 200, "callback answered {}", r.status());
    let page = r.text().await.unwrap();
    let re = regex::Regex::new(r#"<meta http-equiv="refresh" content="0;url=([^"]*)">"#).unwrap();
    let target = re
        .captures(&page)
        .unwrap_or_else(|| panic!("no landing target in {page}"))[1]
        .to_string();
    target
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA,
/// made with the `openssl` command line.
pub struct TestCerts {
    pub dir: ScratchDir,
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        let dir = ScratchDir::new("redis-tls");
        let p = |n: &str| dir.0.join(n).display().to_string();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("cannot run `openssl`: install openssl for the TLS test");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=test {ca}"),
                "-keyout",
                &p(&format!("{ca}.key")),
                "-out",
                &p(&format!("{ca}.pem")),
            ]);
        }
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        std::fs::write(
            dir.0.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p("server.pem"),
        ]);
        TestCerts {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            dir,
        }
    }

    pub fn other_ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.0.join("other-ca.pem")).unwrap()
    }
}
