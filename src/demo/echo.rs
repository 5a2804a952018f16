//! The demo's echo API: verifies the bearer access token the gateway attaches
//! (against the development IdP's JWKS, Cognito rules: no `aud`, `client_id`
//! and `token_use = "access"`) and answers with the verified claims and the
//! request headers it received, the token itself redacted.

use crate::oidc::jwks::{HttpJwksSource, JwksCache};
use crate::oidc::jwt::{self, Audience, Expect};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use http::{header, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

struct Echo {
    jwks: JwksCache,
    issuer: String,
    client_ids: Vec<String>,
}

/// The echo API's router.
pub fn router(
    http: reqwest::Client,
    jwks_url: Url,
    issuer: String,
    client_ids: Vec<String>,
) -> Router {
    let echo = Arc::new(Echo {
        jwks: JwksCache::new(Box::new(HttpJwksSource {
            http,
            url: jwks_url,
        })),
        issuer,
        client_ids,
    });
    Router::new().fallback(any(handle)).with_state(echo)
}

async fn handle(State(echo): State<Arc<Echo>>, req: Request) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return unauthorized("no bearer token");
    };
    let expect = Expect {
        issuer: &echo.issuer,
        audience: Audience::ClientId(&echo.client_ids),
        token_use: Some("access"),
        leeway: Duration::from_secs(30),
        now: crate::clock::Clock::system().now_secs(),
    };
    let claims = match jwt::verify(&echo.jwks, token, &expect).await {
        Ok(c) => c,
        Err(e) => return unauthorized(&e.to_string()),
    };
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        let shown = if name == header::AUTHORIZATION {
            "Bearer [verified access token, not shown]".to_string()
        } else {
            value.to_str().unwrap_or("[binary]").to_string()
        };
        headers.insert(name.to_string(), Value::String(shown));
    }
    Json(json!({
        "verified": true,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "claims": claims,
        "headers": headers,
    }))
    .into_response()
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        Json(json!({ "verified": false, "error": why })),
    )
        .into_response()
}
