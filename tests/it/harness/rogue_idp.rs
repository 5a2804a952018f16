//! A "rogue" IdP in-process whose signing keys the test holds: discovery,
//! JWKS and a token endpoint answering with whatever the test mints next. It
//! binds `127.0.0.1:0` and keeps the socket; a failed bind panics.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// An IdP whose keys the test holds: discovery, JWKS and a token endpoint
/// that answers with whatever ID token the test mints next.
pub struct RogueIdp {
    pub issuer: String,
    pub key: TestKey,
    next: Arc<Mutex<Option<Value>>>,
    jwks: Arc<Mutex<Value>>,
    /// How many times its JWKS was fetched.
    pub jwks_hits: Arc<std::sync::atomic::AtomicUsize>,
    raw: Arc<Mutex<Option<Queued>>>,
    last_form: Arc<Mutex<Option<String>>>,
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

/// OIDC Core §3.1.3.6 `at_hash` of `access_token` for an ES256 ID token: the
/// left half of its SHA-256, base64url.
pub fn at_hash(access_token: &str) -> String {
    use sha2::{Digest, Sha256};
    B64.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

#[derive(Clone)]
struct RogueState {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    next: Arc<Mutex<Option<Value>>>,
    jwks_hits: Arc<std::sync::atomic::AtomicUsize>,
    discovery_extra: Value,
    raw: Arc<Mutex<Option<Queued>>>,
    last_form: Arc<Mutex<Option<String>>>,
}

/// A raw answer waiting for the next token request, and how to trickle it.
type Queued = (RawAnswer, Option<std::time::Duration>);

/// A token-endpoint answer written by hand: status, headers and body bytes.
#[derive(Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl RogueIdp {
    pub async fn start() -> RogueIdp {
        Self::start_with(json!({})).await
    }

    /// The same, with `discovery_extra`'s fields added to (or replacing
    /// those of) its discovery document; `ISSUER` in a string value stands
    /// for its issuer.
    pub async fn start_with(discovery_extra: Value) -> RogueIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let key = TestKey::es256("rogue-1");
        let next = Arc::new(Mutex::new(None));
        let jwks = Arc::new(Mutex::new(json!({ "keys": [key.jwk.clone()] })));
        let jwks_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let discovery_extra: Value =
            serde_json::from_str(&discovery_extra.to_string().replace("ISSUER", &issuer)).unwrap();
        let raw = Arc::new(Mutex::new(None));
        let last_form = Arc::new(Mutex::new(None));
        let st = RogueState {
            issuer: issuer.clone(),
            jwks: jwks.clone(),
            next: next.clone(),
            jwks_hits: jwks_hits.clone(),
            discovery_extra,
            raw: raw.clone(),
            last_form: last_form.clone(),
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<RogueState>| async move {
                    let mut doc = json!({
                        "issuer": s.issuer,
                        "authorization_endpoint": format!("{}/authorize", s.issuer),
                        "token_endpoint": format!("{}/token", s.issuer),
                        "jwks_uri": format!("{}/jwks", s.issuer),
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["ES256"],
                    });
                    for (k, v) in s.discovery_extra.as_object().unwrap() {
                        doc[k] = v.clone();
                    }
                    Json(doc)
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
                post(|State(s): State<RogueState>, form: String| async move {
                    *s.last_form.lock().unwrap() = Some(form);
                    let raw = s.raw.lock().unwrap().take();
                    if let Some((raw, trickle)) = raw {
                        let mut r = http::Response::builder().status(raw.status);
                        for (k, v) in raw.headers {
                            r = r.header(k, v);
                        }
                        let body = match trickle {
                            None => axum::body::Body::from(raw.body),
                            // Chunked, 64 KiB at a time, `every` apart.
                            Some(every) => {
                                let chunks: Vec<Vec<u8>> =
                                    raw.body.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
                                axum::body::Body::from_stream(futures_util::stream::unfold(
                                    chunks.into_iter(),
                                    move |mut rest| async move {
                                        let next = rest.next()?;
                                        tokio::time::sleep(every).await;
                                        Some((Ok::<_, std::io::Error>(next), rest))
                                    },
                                ))
                            }
                        };
                        return r.body(body).unwrap();
                    }
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
            raw,
            last_form,
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

    /// The next token request answers with `access_token` and an ID token of
    /// these claims signed under a hand-written `header` (see `TestKey::header`).
    pub fn answer_with_tokens(&self, header: &Value, claims: &Value, access_token: &str) {
        let token = self.key.sign_with_header(header, claims);
        *self.next.lock().unwrap() = Some(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": token,
        }));
    }

    pub fn answer_with(&self, body: Value) {
        *self.next.lock().unwrap() = Some(body);
    }

    /// A form parameter of the last token request (`grant_type`, `refresh_token`, …).
    pub fn last_token_param(&self, name: &str) -> Option<String> {
        let form = self.last_form.lock().unwrap().clone()?;
        url::form_urlencoded::parse(form.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The next token request gets this answer, byte for byte.
    pub fn answer_raw(&self, raw: RawAnswer) {
        *self.raw.lock().unwrap() = Some((raw, None));
    }

    /// The same, its body sent chunked (no `Content-Length`), 64 KiB every
    /// `every`.
    pub fn answer_trickled(&self, raw: RawAnswer, every: std::time::Duration) {
        *self.raw.lock().unwrap() = Some((raw, Some(every)));
    }
}
