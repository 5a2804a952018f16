//! The gateway's own endpoints under `/auth` and the pieces every protected
//! request goes through: finding the session behind a cookie (the
//! [`Authenticated`] extractor and [`session_of`]) and the CSRF header rule.

pub mod backchannel;
pub mod bearer;
pub mod check;
pub mod cookies;
pub mod flight;
pub mod gate;
pub mod handlers;
pub mod machine;
pub mod refresh;

use crate::app::AppState;
use crate::error::AppError;
use crate::session::Session;
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::HeaderMap;
use std::sync::Arc;

/// The header an SPA sends to prove the request is its own (a cross-site page
/// cannot add a custom header without a CORS preflight that we never allow).
pub const CSRF_HEADER: &str = "x-csrf";

/// Whether the request carries `X-CSRF` with a value (any value but blank).
pub fn has_csrf_header(headers: &HeaderMap) -> bool {
    headers
        .get_all(CSRF_HEADER)
        .iter()
        .any(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
}

/// Whether the request carries any gateway session cookie (valid or not).
pub fn has_session_cookie(state: &AppState, headers: &HeaderMap) -> bool {
    cookies::request_cookies(headers, &state.cookies.session_name)
        .next()
        .is_some()
}

/// The form body of one of the gateway's own endpoints: at most `limit`
/// bytes, arriving within `within`. The serving loop bounds request heads,
/// not bodies, and these endpoints answer before anyone is authenticated: a
/// body that trickles in or floods must not hold a connection or memory.
pub async fn small_body(
    body: axum::body::Body,
    limit: usize,
    within: std::time::Duration,
) -> Result<bytes::Bytes, AppError> {
    tokio::time::timeout(within, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| AppError::BadRequest("the request body did not arrive in time"))?
        .map_err(|_| AppError::BadRequest("the request body is too large or broken"))
}

/// More cookies of the session cookie's name than this are refused outright.
const MAX_SESSION_COOKIES: usize = 4;

/// The session behind the request's cookie, if any. Bad cookies are simply no
/// session; an unavailable store is an error, and so are cookies of the
/// gateway's name that open different sessions: with a cookie planted by a
/// sibling origin (cookie tossing), believing the first valid one would let
/// the planter choose who the user is.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, AppError> {
    let conflict = || AppError::ConflictingSessions(state.cookies.clear_session());
    let mut found: Option<Session> = None;
    for (i, value) in cookies::request_cookies(headers, &state.cookies.session_name).enumerate() {
        // Bounded: a browser sends one; more are an attack or a mess.
        if i == MAX_SESSION_COOKIES {
            return Err(conflict());
        }
        if let Some(s) = state.sessions.load(value).await? {
            match &found {
                Some(first) if first.id != s.id => return Err(conflict()),
                Some(_) => {}
                None => found = Some(s),
            }
        }
    }
    Ok(found)
}

/// Who is making a request, as far as the route's `auth` mode looked.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    // Boxed: a session record is much larger than the other variants.
    Session(Box<Session>),
    Bearer(bearer::BearerIdentity),
}

impl Identity {
    pub fn session(&self) -> Option<&Session> {
        match self {
            Identity::Session(s) => Some(s),
            _ => None,
        }
    }

    /// The claims that describe the caller: the ID token's for a session, the
    /// access token's for a bearer.
    pub fn claims(&self) -> Option<&crate::oidc::jwt::Claims> {
        match self {
            Identity::Session(s) => Some(&s.data.claims),
            Identity::Bearer(b) => Some(&b.claims),
            Identity::Anonymous => None,
        }
    }

    /// The `Authorization` value for an upstream (or an ingress): a session's
    /// access or ID token as `Bearer` (`kind`), or a verified API client's own
    /// header whatever `kind` says.
    pub fn authorization(&self, kind: crate::config::TokenKind) -> Option<http::HeaderValue> {
        use crate::config::TokenKind;
        let mut value = match (self, kind) {
            // The gateway's own token goes instead (`auth::machine`), never the caller's.
            (_, TokenKind::Client) => return None,
            (Identity::Session(s), TokenKind::Access) => bearer_value(&s.data.access_token)?,
            (Identity::Session(s), TokenKind::Id) => bearer_value(&s.data.id_token)?,
            (Identity::Bearer(b), _) => b.authorization.clone(),
            _ => return None,
        };
        value.set_sensitive(true);
        Some(value)
    }
}

fn bearer_value(token: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(&format!("Bearer {token}")).ok()
}

/// Authenticates a request the way a route's `auth` mode says.
pub async fn authenticate(
    state: &AppState,
    mode: crate::config::AuthMode,
    audiences: &[String],
    headers: &HeaderMap,
) -> Result<Identity, AppError> {
    use crate::config::AuthMode::*;
    let bearer = || async {
        match bearer::bearer_token(headers).zip(headers.get(http::header::AUTHORIZATION)) {
            Some((token, authorization)) => {
                // Passed on as it came when already canonical (`Bearer <token>`),
                // else rewritten so: upstreams may compare the scheme exactly.
                let canonical =
                    authorization.as_bytes().strip_prefix(b"Bearer ") == Some(token.as_bytes());
                let authorization = match canonical {
                    true => authorization.clone(),
                    false => bearer_value(token).unwrap_or_else(|| authorization.clone()),
                };
                let verified = state
                    .bearer
                    .verify(&state.provider, &authorization, token, audiences)
                    .await;
                let outcome = if verified.is_ok() { "valid" } else { "invalid" };
                state.metrics.count(
                    "oidc_bff_jwt_verifications_total",
                    &[("kind", "access_token"), ("outcome", outcome)],
                );
                verified.map(Identity::Bearer)
            }
            None => Err(AppError::BearerRequired),
        }
    };
    match mode {
        Public => Ok(Identity::Anonymous),
        Optional => Ok(session_of(state, headers)
            .await?
            .map_or(Identity::Anonymous, |s| Identity::Session(Box::new(s)))),
        Session => session_of(state, headers)
            .await?
            .map(|s| Identity::Session(Box::new(s)))
            .ok_or(AppError::Unauthenticated),
        Bearer => bearer().await,
        // An explicit bearer token wins: an API client's request is judged by its token.
        SessionOrBearer if bearer::bearer_token(headers).is_some() => bearer().await,
        SessionOrBearer => session_of(state, headers)
            .await?
            .map(|s| Identity::Session(Box::new(s)))
            .ok_or(AppError::Unauthenticated),
    }
}

/// Extractor: a signed-in session, or 401 (302 for navigations).
pub struct Authenticated(pub Session);

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, AppError> {
        let session = session_of(state, &parts.headers)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        // Due for revalidation: revalidated here too, so `/auth/user` does
        // not report a user whose grant the IdP has revoked.
        if state.refresher.revalidation_due(&session.data) {
            return Ok(Authenticated(state.refresher.ensure_fresh(session).await?));
        }
        Ok(Authenticated(session))
    }
}

/// Extractor: the session if there is one.
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<Arc<AppState>> for MaybeSession {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, AppError> {
        Ok(MaybeSession(session_of(state, &parts.headers).await?))
    }
}

/// Extractor: fails with 403 unless the `X-CSRF` header is present.
pub struct CsrfHeader;

impl<S: Send + Sync> FromRequestParts<S> for CsrfHeader {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        if has_csrf_header(&parts.headers) {
            Ok(CsrfHeader)
        } else {
            Err(AppError::CsrfMissing)
        }
    }
}
