//! The gate: the one sequence of checks that decides whether a request may
//! reach a route, for the proxy and for forward-auth (`/auth/check`) alike.
//! Its steps run in a fixed order, each with one job:
//!
//! 1. method: the route's `methods`;
//! 2. authenticate: the route's `auth` (session cookie, bearer token, both, or none);
//! 3. authorize: the route's `allow_groups`, `require_scopes`, `require_claims`;
//! 4. cross-site defence: on a request that rides on the session cookie, the
//!    `X-CSRF` header where the route asks for it; on a WebSocket handshake
//!    (which a browser cannot add headers to) an `Origin` that is ours;
//! 5. refresh: a session's access token is renewed when due, when the route
//!    sends the user's token on; and on any route, a session due for
//!    revalidation (`session.revalidate_every`) is refreshed, so a revoked
//!    grant ends it. Refreshed tokens are authorized again (step 3): their
//!    claims may have changed.
//!
//! The route was found from the canonical path ([`crate::request_path`]), so
//! the gate judges exactly the path the upstream will receive. When the
//! path's exact spelling lies under another route than its case-folded match
//! ([`crate::proxy::routes::Choice`]), [`pass_choice`] runs the steps for
//! both routes, the exact spelling's first: route choice can only get
//! stricter. Callers decide only what their answer looks like (a forwarded
//! request, or forward-auth's 200 with identity headers).

use super::{authenticate, has_csrf_header, has_session_cookie, Identity};
use crate::app::AppState;
use crate::config::TokenKind;
use crate::error::AppError;
use crate::policy;
use crate::proxy::routes::Access;
use http::{header, HeaderMap, Method};

/// What the gate looks at of a request.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// A WebSocket opening handshake (RFC 6455 §4.1) the caller will upgrade.
    pub websocket: bool,
}

/// A request that did not pass, and who was asking when the gate knew it
/// (a refresh that failed for a signed-in user): the log line names them.
#[derive(Debug)]
pub struct Refused {
    pub error: AppError,
    pub user: Option<String>,
}

impl From<AppError> for Refused {
    fn from(error: AppError) -> Self {
        Refused { error, user: None }
    }
}

/// A request that passed: who is asking, with a fresh token when the route sends one.
pub struct Passed {
    pub identity: Identity,
    /// A new session cookie value for the browser (the session key rotated).
    pub reissue: Option<String>,
}

/// Runs the gate's steps for the rules of the route that serves the request
/// (`access`) and, when the exact spelling of the path belongs to another
/// route, that route's rules (`exact`) too: both must pass. The identity is
/// the serving route's (it decides what goes upstream).
pub async fn pass_choice(
    state: &AppState,
    access: &Access,
    exact: Option<&Access>,
    ask: Ask<'_>,
) -> Result<Passed, Refused> {
    let earlier = match exact {
        Some(exact) => pass(state, exact, ask).await?.reissue,
        None => None,
    };
    let mut passed = pass(state, access, ask).await?;
    passed.reissue = passed.reissue.or(earlier);
    Ok(passed)
}

/// Runs the gate's steps for `access` (a route's rules) on `ask`.
pub async fn pass(state: &AppState, access: &Access, ask: Ask<'_>) -> Result<Passed, Refused> {
    // Step 1: method.
    if !access.allows(ask.method) {
        return Err(AppError::MethodNotAllowed.into());
    }
    // Step 2: authenticate.
    let identity = authenticate(state, access.auth, &access.audiences, ask.headers).await?;
    // Step 3: authorize.
    authorize(state, access, &identity)?;
    // Step 4: cross-site defence.
    let session = identity.session();
    if ask.websocket {
        if !access.websocket {
            return Err(
                AppError::BadRequest("this route does not accept WebSocket connections").into(),
            );
        }
        // Cross-site WebSocket hijacking: the handshake carries the cookie
        // whatever page opened it; only our own pages may.
        let origin = ask
            .headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if origin != Some(state.config.public_origin().as_str()) {
            return Err(AppError::Forbidden(
                "the WebSocket handshake comes from another origin".into(),
            )
            .into());
        }
    } else if access.csrf
        && session.is_some()
        && has_session_cookie(state, ask.headers)
        && !has_csrf_header(ask.headers)
    {
        return Err(AppError::CsrfMissing.into());
    }
    let reissue = session.and_then(|s| s.reissue_cookie.clone());
    // Step 5: refresh the access token when it is about to expire and the
    // route sends it on, or revalidate (single-flight).
    let identity = match identity {
        Identity::Session(s)
            if matches!(access.token, TokenKind::Access | TokenKind::Id)
                || state.refresher.revalidation_due(&s.data) =>
        {
            let user = s.data.sub.clone();
            let before = s.data.clone();
            let refused = |error| Refused {
                error,
                user: Some(user.clone()),
            };
            let s = state.refresher.ensure_fresh(*s).await.map_err(refused)?;
            let refreshed = Identity::Session(Box::new(s));
            // New tokens may carry other claims (a group taken away at the
            // IdP is what revalidation is for): this request is judged by them.
            if let Identity::Session(s) = &refreshed {
                if !std::sync::Arc::ptr_eq(&before, &s.data) {
                    authorize(state, access, &refreshed).map_err(|r| refused(r.error))?;
                }
            }
            refreshed
        }
        other => other,
    };
    Ok(Passed { identity, reissue })
}

/// Step 3: the route's `allow_groups`, `require_scopes`, `require_claims`
/// for `identity`.
fn authorize(state: &AppState, access: &Access, identity: &Identity) -> Result<(), Refused> {
    let groups_claim = state.config.provider.groups_claim();
    let caller = match identity {
        Identity::Anonymous => None,
        Identity::Bearer(b) => Some(policy::bearer_caller(&b.claims)),
        Identity::Session(s) => Some(policy::session_caller(
            &s.data.claims,
            &s.data.access_token,
            s.data.scope.as_deref(),
            groups_claim,
        )),
    };
    match policy::authorize(access.policy.as_ref(), caller, groups_claim) {
        Ok(()) => Ok(()),
        Err(policy::Denial::Anonymous) => Err(AppError::Unauthenticated.into()),
        Err(policy::Denial::Missing(what)) => Err(AppError::Forbidden(what).into()),
    }
}
