//! OpenID Connect Back-Channel Logout 1.0: the IdP POSTs a `logout_token` (a
//! signed JWT) when a user's IdP session ends; every gateway session created
//! in that IdP session (`sid`), or else every session of the user (`sub`), ends
//! at once, on every replica sharing the store. Each `jti` is accepted once.

use crate::app::AppState;
use crate::error::{json_response, AppError};
use crate::oidc::jwt::{self, Claims};
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The event a logout token must carry (§2.4).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a `jti` is remembered: longer than any logout token lives.
const JTI_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// What a valid logout token asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum LogoutTarget {
    Sid(String),
    Sub(String),
}

/// The claim rules of §2.6 on top of signature, `iss`, `aud` and `exp`; and
/// `azp`, when present, names this client (OIDC Core §2: the party the token
/// was issued to; a token issued to another client is not ours to act on).
pub fn check_logout_claims(
    claims: &Claims,
    client_id: &str,
) -> Result<(String, LogoutTarget), &'static str> {
    if !claims.get("iat").is_some_and(Value::is_number) {
        return Err("iat is missing");
    }
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .ok_or("events is missing")?;
    if !events.get(LOGOUT_EVENT).is_some_and(Value::is_object) {
        return Err("events holds no back-channel logout event");
    }
    match claims.get("azp") {
        None => {}
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return Err("azp names another client"),
    }
    // A nonce here would mean an ID token is being passed off as a logout token.
    if claims.contains_key("nonce") {
        return Err("a logout token must not carry a nonce");
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or("jti is missing")?;
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let target = match (text("sid"), text("sub")) {
        (Some(sid), _) => LogoutTarget::Sid(sid),
        (None, Some(sub)) => LogoutTarget::Sub(sub),
        (None, None) => return Err("neither sid nor sub is present"),
    };
    Ok((jti.to_string(), target))
}

/// `POST /auth/backchannel-logout` (form field `logout_token`). 200 when the
/// sessions are gone; 400 for anything malformed, forged or replayed (§2.8).
/// A logout token is a few hundred bytes; this is generous.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub async fn backchannel_logout(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    // Public and unauthenticated until the token is verified: a body that
    // trickles in, or is larger than any logout token, must not hold a
    // connection (the serving loop bounds request heads, not bodies). The
    // IdP calls here, so its own timeout bounds the body too.
    let body = super::small_body(
        req.into_body(),
        MAX_BODY_BYTES,
        state.config.provider.http_timeout,
    )
    .await?;
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .ok_or(AppError::BadRequest("logout_token is missing"))?;
    let md = state.provider.metadata().await?;
    let jwks = state.provider.jwks().await?;
    let audience = [state.config.provider.client_id.clone()];
    let expect = jwt::Expect {
        issuer: md.issuer(),
        audience: jwt::Audience::Any(&audience),
        token_use: None,
        leeway: state.provider.leeway(),
        now: state.clock.now_secs(),
    };
    // The header's `typ` first (§2.4): an access token or other JWT signed
    // by the same IdP is not a logout token.
    let verified = match jwt::check_type(&token, jwt::LOGOUT_TOKEN_TYPES) {
        Ok(()) => jwt::verify(&jwks, &token, &expect).await,
        Err(e) => Err(e),
    };
    let claims = verified.map_err(|e| {
        state.metrics.count(
            "oidc_bff_jwt_verifications_total",
            &[("kind", "logout_token"), ("outcome", "invalid")],
        );
        tracing::info!(error = %crate::claims::log_text(&e), "back-channel logout token rejected");
        AppError::BadRequest("the logout token is invalid")
    })?;
    let (jti, target) =
        check_logout_claims(&claims, &state.config.provider.client_id).map_err(|why| {
            tracing::info!(why, "back-channel logout token rejected");
            AppError::BadRequest("the logout token is invalid")
        })?;
    if !state
        .sessions
        .claim_once(&format!("jti:{jti}"), JTI_MEMORY)
        .await?
    {
        tracing::info!("back-channel logout token replayed");
        return Err(AppError::BadRequest("the logout token was already used"));
    }
    state.metrics.count(
        "oidc_bff_jwt_verifications_total",
        &[("kind", "logout_token"), ("outcome", "valid")],
    );
    let ended = match &target {
        LogoutTarget::Sid(sid) => state.sessions.delete_by_sid(sid).await?,
        LogoutTarget::Sub(sub) => state.sessions.delete_all_of_sub(sub).await?,
    };
    for _ in 0..ended {
        state
            .metrics
            .count("oidc_bff_logouts_total", &[("kind", "backchannel")]);
    }
    tracing::info!(
        ended,
        by = if matches!(target, LogoutTarget::Sid(_)) {
            "sid"
        } else {
            "sub"
        },
        "back-channel logout"
    );
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "ended": ended }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn logout_claims_rules() {
        let ev = json!({ LOGOUT_EVENT: {} });
        let cases: Vec<(&str, Value, Result<LogoutTarget, &str>)> = vec![
            (
                "sid wins",
                json!({"iat": 1, "jti": "a", "events": ev, "sid": "s1", "sub": "u1"}),
                Ok(LogoutTarget::Sid("s1".into())),
            ),
            (
                "sub alone",
                json!({"iat": 1, "jti": "a", "events": ev, "sub": "u1"}),
                Ok(LogoutTarget::Sub("u1".into())),
            ),
            (
                "neither",
                json!({"iat": 1, "jti": "a", "events": ev}),
                Err("neither sid nor sub is present"),
            ),
            (
                "no events",
                json!({"iat": 1, "jti": "a", "sid": "s"}),
                Err("events is missing"),
            ),
            (
                "wrong event",
                json!({"iat": 1, "jti": "a", "sid": "s", "events": {"urn:other": {}}}),
                Err("events holds no back-channel logout event"),
            ),
            (
                "event not an object",
                json!({"iat": 1, "jti": "a", "sid": "s", "events": {LOGOUT_EVENT: "yes"}}),
                Err("events holds no back-channel logout event"),
            ),
            (
                "nonce",
                json!({"iat": 1, "jti": "a", "sid": "s", "events": ev, "nonce": "n"}),
                Err("a logout token must not carry a nonce"),
            ),
            (
                "no jti",
                json!({"iat": 1, "sid": "s", "events": ev}),
                Err("jti is missing"),
            ),
            (
                "no iat",
                json!({"jti": "a", "sid": "s", "events": ev}),
                Err("iat is missing"),
            ),
            (
                "azp ours",
                json!({"iat": 1, "jti": "a", "events": ev, "sid": "s", "azp": "us"}),
                Ok(LogoutTarget::Sid("s".into())),
            ),
            (
                "azp foreign",
                json!({"iat": 1, "jti": "a", "events": ev, "sid": "s", "azp": "them"}),
                Err("azp names another client"),
            ),
            (
                "azp not a string",
                json!({"iat": 1, "jti": "a", "events": ev, "sid": "s", "azp": ["us"]}),
                Err("azp names another client"),
            ),
            (
                "empty sid falls back to sub",
                json!({"iat": 1, "jti": "a", "events": ev, "sid": "", "sub": "u"}),
                Ok(LogoutTarget::Sub("u".into())),
            ),
        ];
        for (name, c, want) in cases {
            let got = check_logout_claims(&claims(c), "us").map(|(_, t)| t);
            assert_eq!(got, want, "{name}");
        }
    }
}
