//! The admin sessions API: an operator's handle on sessions ("how many
//! sessions does this user have", "sign this user out everywhere", "end that
//! one session"), for incidents and offboarding, and the answer to IdPs
//! without back-channel logout (Cognito).
//!
//! It lives on the admin listener only ([`crate::router::admin`]), and only
//! when `server.admin_token_file` is set; every call needs
//! `Authorization: Bearer <that token>`, compared in constant time. It works
//! on the session store, so an ended session is refused by every replica
//! sharing the store on its next request. Each action writes one audit line
//! (target `oidc_bff::audit`) with the action, the `sub`, the count and the
//! request id; never the admin token.
//!
//! Sessions are named by an opaque handle (a keyed hash of the store key,
//! [`crate::session::SessionSummary`]): knowing one lets you end the session,
//! never use it. The listing carries no token, no session id and no cookie.

use crate::app::AppState;
use crate::error::AppError;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use http::HeaderMap;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Longest `sub` accepted (OIDC: at most 255 ASCII characters; room for more).
const MAX_SUB_BYTES: usize = 1024;

/// The API's routes, behind the admin token. Empty when no token is configured.
pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    if state.config.server.admin_token.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/admin/sessions", get(list).delete(end_all))
        .route("/admin/sessions/{handle}", delete(end_one))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
}

/// Refuses every call without the admin token (401, `WWW-Authenticate: Bearer`).
async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.config.server.admin_token else {
        return AppError::NotFound.into_response();
    };
    match bearer_matches(req.headers(), expected.expose()) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            tracing::warn!(
                target: "oidc_bff::audit",
                action = "refused",
                reason = why,
                method = %req.method(),
                request_id = %crate::claims::log_text(request_id(req.headers())),
                "admin request refused"
            );
            AppError::AdminUnauthorized.into_response()
        }
    }
}

/// Whether `headers` carry exactly one `Authorization: Bearer <expected>`.
/// The scheme is case-insensitive (RFC 9110 §11.1), nothing else is lenient.
/// The token is compared as SHA-256 digests in constant time, so neither its
/// bytes nor its length show in the timing. The error says why, for the log.
fn bearer_matches(headers: &HeaderMap, expected: &str) -> Result<(), &'static str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err("no Authorization header"),
        (Some(_), Some(_)) => return Err("several Authorization headers"),
        (Some(v), None) => v,
    };
    let value = value.to_str().map_err(|_| "not a bearer token")?;
    let (scheme, token) = value.split_once(' ').ok_or("not a bearer token")?;
    // RFC 9110: credentials = auth-scheme [ 1*SP token68 ].
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("not a bearer token");
    }
    let given = Sha256::digest(token.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    if bool::from(given.ct_eq(&expected)) {
        Ok(())
    } else {
        Err("wrong token")
    }
}

/// The request id the admin listener's middleware set on the request.
fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// The one `sub` query parameter, percent-decoded (so any character can be
/// sent: `%2F`, `%2B`, UTF-8). Missing, empty, repeated (which one would be
/// meant?) or overlong is a 400.
fn sub_param(query: Option<&str>) -> Result<String, AppError> {
    let mut subs = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "sub")
        .map(|(_, v)| v.into_owned());
    match (subs.next(), subs.next()) {
        (Some(sub), None) if !sub.is_empty() && sub.len() <= MAX_SUB_BYTES => Ok(sub),
        (Some(_), Some(_)) => Err(AppError::BadRequest("give the sub parameter once")),
        _ => Err(AppError::BadRequest(
            "the sub query parameter (the user's subject, percent-encoded) is required",
        )),
    }
}

/// `GET /admin/sessions?sub=…`: the user's live sessions, oldest first.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let sub = sub_param(query.as_deref())?;
    let sessions = state.sessions.list_of_sub(&sub).await?;
    audit("list_sessions", &sub, sessions.len(), &headers);
    Ok(Json(json!({
        "sub": sub,
        "count": sessions.len(),
        "sessions": sessions,
    }))
    .into_response())
}

/// `DELETE /admin/sessions?sub=…`: ends every session of the user, on every
/// replica sharing the store.
async fn end_all(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let sub = sub_param(query.as_deref())?;
    let ended = state.sessions.delete_all_of_sub(&sub).await?;
    audit("end_all_sessions", &sub, ended, &headers);
    Ok(Json(json!({ "sub": sub, "ended": ended })).into_response())
}

/// `DELETE /admin/sessions/{handle}?sub=…`: ends one session of the user;
/// 404 when the user has no live session with that handle.
async fn end_one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let sub = sub_param(query.as_deref())?;
    let ended = state.sessions.delete_by_handle(&sub, &handle).await?;
    audit("end_session", &sub, usize::from(ended), &headers);
    if !ended {
        return Err(AppError::NotFound);
    }
    Ok(Json(json!({ "sub": sub, "handle": handle, "ended": 1 })).into_response())
}

/// The audit line of an admin action. `sub` is chosen by whoever calls: it
/// is written by the one escaping rule for log text (`claims::log_text`), so
/// it cannot forge log lines in text format.
fn audit(action: &'static str, sub: &str, count: usize, headers: &HeaderMap) {
    tracing::info!(
        target: "oidc_bff::audit",
        action,
        sub = %crate::claims::log_text(sub),
        count,
        request_id = %crate::claims::log_text(request_id(headers)),
        "admin action"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn auth(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_one_bearer_header_with_the_token_passes() {
        for ok in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER {TOKEN}"),
            format!("bEaReR  {TOKEN}"),
        ] {
            assert_eq!(
                bearer_matches(&auth(&[ok.as_bytes()]), TOKEN),
                Ok(()),
                "{ok}"
            );
        }
        let right = format!("Bearer {TOKEN}");
        for bad in [
            vec![],
            vec![format!("Bearer {TOKEN}x")],
            vec![format!("Bearer {}", &TOKEN[1..])],
            vec![format!("Bearer {}", TOKEN.to_uppercase())],
            vec![TOKEN.to_string()],
            vec![format!("Basic {TOKEN}")],
            vec![format!("Bearer{TOKEN}")],
            vec![format!("Bearer\t{TOKEN}")],
            vec![format!("Bearer {TOKEN} extra")],
            vec![format!("Token {TOKEN}")],
            vec!["Bearer".to_string()],
            vec!["Bearer ".to_string()],
            vec![format!("Bearer {TOKEN},Bearer {TOKEN}")],
            vec![right.clone(), right.clone()],
            vec![right.clone(), "Bearer nope".into()],
            vec!["Bearer nope".into(), right.clone()],
        ] {
            let bytes: Vec<&[u8]> = bad.iter().map(|s| s.as_bytes()).collect();
            assert!(bearer_matches(&auth(&bytes), TOKEN).is_err(), "{bad:?}");
        }
        let mut non_ascii = format!("Bearer {TOKEN}").into_bytes();
        non_ascii.push(0xe9);
        assert!(bearer_matches(&auth(&[&non_ascii]), TOKEN).is_err());
    }

    #[test]
    fn sub_is_one_decoded_parameter() {
        assert_eq!(sub_param(Some("sub=alice")).unwrap(), "alice");
        assert_eq!(sub_param(Some("sub=a%2Fb%2Bc+d")).unwrap(), "a/b+c d");
        assert_eq!(sub_param(Some("x=1&sub=%C3%A9l%C3%A8ve")).unwrap(), "élève");
        for bad in [
            None,
            Some(""),
            Some("sub="),
            Some("sub=a&sub=b"),
            Some("sub=a&sub=a"),
            Some("Sub=alice"),
        ] {
            assert!(sub_param(bad).is_err(), "{bad:?}");
        }
        let long = format!("sub={}", "a".repeat(MAX_SUB_BYTES + 1));
        assert!(sub_param(Some(&long)).is_err());
    }
}
