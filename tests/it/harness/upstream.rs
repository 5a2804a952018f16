//! An in-process upstream API (axum on a tokio listener it keeps) that
//! records every request and verifies bearer tokens against a JWKS. It binds
//! `127.0.0.1:0` and keeps the socket, so its port cannot be taken; a failed
//! bind panics.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

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

/// An upstream whose answers ("done") are held until the test opens the gate:
/// a request "in flight" for exactly as long as a test needs, with no sleep.
pub struct GatedUpstream {
    pub url: String,
    open: tokio::sync::watch::Sender<bool>,
    arrived: Arc<std::sync::atomic::AtomicUsize>,
}

impl GatedUpstream {
    pub async fn start() -> GatedUpstream {
        let (open, opened) = tokio::sync::watch::channel(false);
        let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = arrived.clone();
        let app = Router::new().fallback(move || {
            let (mut opened, counted) = (opened.clone(), counted.clone());
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // An error means the test is over: answer anyway.
                let _ = opened.wait_for(|open| *open).await;
                "done"
            }
        });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        GatedUpstream { url, open, arrived }
    }

    /// Waits (at most 10 s) until `n` requests are held at the gate.
    pub async fn until_arrived(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.arrived.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} requests reached the upstream",
                self.arrived.load(std::sync::atomic::Ordering::SeqCst)
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Lets every held request, and every later one, through.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }
}
