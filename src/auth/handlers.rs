//! Handlers for the gateway's endpoints: login (authorization request with
//! PKCE, state and nonce), callback (state first, then code exchange and ID
//! token verification, then a fresh session), logout (local session, token
//! revocation, IdP logout), the user endpoint and the signed-out page.

use super::{Authenticated, CsrfHeader, MaybeSession};
use crate::app::AppState;
use crate::auth::cookies::request_cookies;
use crate::config::SameSite;
use crate::error::{
    html_response, json_response, redirect_response, wants_html, AppError, LoginError,
};
use crate::oidc::flow::{authorization_url, PendingLogin, PendingLogins};
use crate::oidc::hints::LoginHints;
use crate::oidc::return_to::{login_url, safe_return_to};
use crate::oidc::{client, logout::logout_url, OidcError};
use crate::session::{Session, SessionData};
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// AEAD associated data of the pending-login cookie: it cannot be swapped for another sealed value.
const LOGIN_COOKIE_PURPOSE: &str = "oidc-bff pending logins v1";

fn query(uri: &Uri) -> HashMap<String, String> {
    // First value wins; repeated parameters (RFC 6749 §3.1) carry no second meaning here.
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

fn pending_logins(state: &AppState, headers: &HeaderMap) -> PendingLogins {
    request_cookies(headers, &state.cookies.login_name)
        .find_map(|v| state.sessions.open_from_cookie(v, LOGIN_COOKIE_PURPOSE))
        .map(|plain| PendingLogins::decode(&plain))
        .unwrap_or_default()
}

fn pending_cookie(state: &AppState, pending: &mut PendingLogins) -> HeaderValue {
    if pending.0.is_empty() {
        state.cookies.clear_login()
    } else {
        let value = pending.encode(|b| state.sessions.seal_for_cookie(b, LOGIN_COOKIE_PURPOSE));
        state.cookies.login(&value)
    }
}

/// `GET /auth/login?return_to=/path`: starts an authorization-code flow.
pub async fn login(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let md = state.provider.metadata().await?;
    let cfg = &state.config;
    let params = query(&uri);
    let return_to = safe_return_to(
        params.get("return_to").map(String::as_str),
        &cfg.server.auth_prefix,
    );
    // `idp` and `lang` go to the hosted UI (Cognito: identity_provider, lang).
    let hints = LoginHints::from_query(&params).map_err(|e| AppError::BadRequest(e.message()))?;
    let hint_params = hints.auth_params(md.is_cognito);
    let now = state.clock.now_secs();
    let mut pending = pending_logins(&state, &headers);
    pending.prune(now, cfg.provider.login_timeout.as_secs() as i64);
    let login = PendingLogin::new(return_to, now);

    // A hint on this login wins over the configured default.
    let mut extra: Vec<(String, String)> = cfg
        .provider
        .extra_auth_params
        .iter()
        .filter(|(k, _)| !hint_params.iter().any(|(h, _)| h == k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    extra.extend(
        hint_params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let client = state.provider.oidc_client(&md)?;
    let url = authorization_url(&client, &login, &cfg.provider.scopes, &extra);
    pending.push(login);
    let mut resp = redirect_response(StatusCode::FOUND, url.as_str(), &HeaderMap::new());
    resp.headers_mut()
        .append(header::SET_COOKIE, pending_cookie(&state, &mut pending));
    Ok(resp)
}

/// `GET /auth/callback`: the IdP's answer to a login.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params = query(&uri);
    let mut pending = pending_logins(&state, &headers);
    pending.prune(
        state.clock.now_secs(),
        state.config.provider.login_timeout.as_secs() as i64,
    );
    // State is checked first and consumed whatever happens next: single use.
    let login = params.get("state").and_then(|s| pending.take(s));
    let login_cookie = pending_cookie(&state, &mut pending);
    let mut resp = match finish_login(&state, &headers, &params, login).await {
        Ok(r) => {
            state
                .metrics
                .count("oidc_bff_logins_total", &[("outcome", "success")]);
            r
        }
        Err(e) => {
            state
                .metrics
                .count("oidc_bff_logins_total", &[("outcome", "failure")]);
            e.into_response()
        }
    };
    resp.headers_mut().append(header::SET_COOKIE, login_cookie);
    resp
}

async fn finish_login(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    login: Option<PendingLogin>,
) -> Result<Response, AppError> {
    if !params.contains_key("state") {
        return Err(AppError::Login(LoginError::MissingState));
    }
    let login = login.ok_or(AppError::Login(LoginError::UnknownState))?;
    let md = state.provider.metadata().await?;
    // RFC 9207: when the IdP names itself, it must be the one we asked (mix-up defence).
    // When the IdP says it always sends `iss`, a callback without one may
    // come from another IdP the attacker steered the browser to (RFC 9207 §2.4).
    match params.get("iss") {
        Some(iss) if iss != md.issuer() => {
            return Err(AppError::Login(LoginError::Idp("issuer_mismatch".into())));
        }
        None if md.requires_iss_in_callback() => {
            return Err(AppError::Login(LoginError::Idp("issuer_missing".into())));
        }
        _ => {}
    }
    if let Some(error) = params.get("error") {
        // Only the error code is kept: a safe, short token per RFC 6749 §4.1.2.1.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(AppError::Login(LoginError::Idp(code)));
    }
    let code = params
        .get("code")
        .ok_or(AppError::Login(LoginError::MissingCode))?;
    let oidc = state.provider.oidc_client(&md)?;
    let tokens = client::exchange_code(state.provider.http(), &oidc, code, &login.verifier).await?;
    let id_token = tokens.id_token_str().map(str::to_string).ok_or_else(|| {
        OidcError::Protocol(
            "the token response has no id_token (is the openid scope granted?)".into(),
        )
    })?;
    let verified = state
        .provider
        .verify_id_token(
            &id_token,
            Some(&login.nonce),
            Some(tokens.access_token_str()),
        )
        .await;
    let outcome = if verified.is_ok() { "valid" } else { "invalid" };
    state.metrics.count(
        "oidc_bff_jwt_verifications_total",
        &[("kind", "id_token"), ("outcome", outcome)],
    );
    let claims = verified?;
    // With Cognito this also verifies the access token as one (token_use, client_id).
    let scope = state
        .provider
        .granted_scope(&tokens, &state.config.provider.scopes)
        .await?;
    let sub = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let sid = claims
        .get("sid")
        .and_then(|s| s.as_str())
        .map(str::to_string);

    // A session the browser already had is ended: the new login gets a new id.
    if let Some(old) = super::session_of(state, headers).await? {
        state.sessions.delete(&old.id).await?;
    }
    let now = state.clock.now_secs();
    let data = SessionData {
        sub: sub.clone(),
        sid,
        claims,
        id_token,
        access_token: tokens.access_token_str().to_string(),
        refresh_token: tokens.refresh_token_str().map(str::to_string),
        access_expires_at: tokens.access_expires_at(now),
        created_at: now,
        expires_at: state.sessions.absolute_deadline(),
        last_seen: now,
        scope: Some(scope),
        refreshed_at: None,
        user_agent: Some(crate::session::user_agent_summary(
            headers.get(header::USER_AGENT),
        )),
    };
    let (_, cookie) = state.sessions.create(data).await?;
    tracing::info!(sub = %crate::claims::log_text(&sub), "signed in");
    let user = crate::telemetry::RequestUser(sub.clone());
    let mut resp = landing(state, &login.return_to)?;
    resp.headers_mut()
        .append(header::SET_COOKIE, state.cookies.session(&cookie));
    resp.extensions_mut().insert(user);
    Ok(resp)
}

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing<'a> {
    target: &'a str,
}

/// Where the callback sends the browser. The callback is reached by a
/// cross-site navigation (from the IdP), and browsers keep treating a redirect
/// chain that started cross-site as cross-site: a `SameSite=Strict` cookie would
/// not come along to `return_to`, and a server-rendered protected page would
/// bounce back to login. With Strict, a tiny same-origin page navigates on
/// instead, which is a same-site navigation; with Lax or None a 302 does.
fn landing(state: &AppState, return_to: &str) -> Result<Response, AppError> {
    if state.config.session.same_site != SameSite::Strict {
        return Ok(redirect_response(
            StatusCode::FOUND,
            return_to,
            &HeaderMap::new(),
        ));
    }
    let page = Landing { target: return_to };
    Ok(html_response(
        StatusCode::OK,
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}

#[derive(Template)]
#[template(path = "logout_confirm.html")]
struct LogoutConfirm<'a> {
    action: &'a str,
    sid: &'a str,
}

/// `GET /auth/logout?sid=…`: logs out when `sid` proves the link is the
/// session's own; otherwise asks for confirmation (a cross-site GET must not
/// end a session).
pub async fn logout_get(
    State(state): State<Arc<AppState>>,
    MaybeSession(session): MaybeSession,
    uri: Uri,
) -> Result<Response, AppError> {
    let Some(session) = session else {
        return Ok(redirect_response(
            StatusCode::FOUND,
            &state.config.signed_out_uri(),
            &HeaderMap::new(),
        ));
    };
    let params = query(&uri);
    if params
        .get("sid")
        .is_some_and(|sid| state.sessions.check_logout_token(&session.id, sid))
    {
        let target = end_session(&state, session).await?;
        return Ok(with_cleared_cookie(
            &state,
            redirect_response(StatusCode::FOUND, &target, &HeaderMap::new()),
        ));
    }
    let action = format!("{}/logout", state.config.server.auth_prefix);
    let token = state.sessions.logout_token(&session.id);
    let page = LogoutConfirm {
        action: &action,
        sid: &token,
    };
    let mut resp = html_response(
        StatusCode::OK,
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    );
    allow_form_redirect_to_logout(&state, &mut resp).await;
    Ok(resp)
}

/// The confirmation form's answer is a redirect to the IdP's logout, and
/// browsers hold the redirects that follow a form submission to the page's
/// CSP `form-action` (CSP Level 3 §6.3.3): `'self'` alone would block the
/// sign-out. Adds the IdP logout's origin (and that of where it returns).
async fn allow_form_redirect_to_logout(state: &AppState, resp: &mut Response) {
    use crate::oidc::LogoutStyle;
    let mut origins = Vec::new();
    if let Ok(md) = state.provider.metadata().await {
        if let LogoutStyle::EndSession(u) | LogoutStyle::Cognito(u) = &md.logout {
            origins.push(u.origin().ascii_serialization());
        }
    }
    if let Ok(u) = url::Url::parse(&state.config.signed_out_uri()) {
        origins.push(u.origin().ascii_serialization());
    }
    let own = state.config.public_origin();
    origins.retain(|o| *o != own && o != "null");
    origins.dedup();
    let Some(csp) = resp
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if origins.is_empty() {
        return;
    }
    let csp = csp.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origins.join(" ")),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// `POST /auth/logout`: needs `X-CSRF` (from the SPA) or the form's `sid`
/// (from the confirmation page). Navigations get 303 to the IdP's logout;
/// API calls get JSON `{ "redirect": … }` to navigate to.
pub async fn logout_post(
    State(state): State<Arc<AppState>>,
    MaybeSession(session): MaybeSession,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    // The confirm page's form: a few dozen bytes.
    let body = super::small_body(body, 4096, std::time::Duration::from_secs(10)).await?;
    let target = match session {
        None => state.config.signed_out_uri(),
        Some(session) => {
            let form_ok = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "sid")
                .is_some_and(|(_, sid)| state.sessions.check_logout_token(&session.id, &sid));
            if !form_ok && !super::has_csrf_header(&headers) {
                return Err(AppError::CsrfMissing);
            }
            end_session(&state, session).await?
        }
    };
    let resp = if wants_html(&headers) {
        redirect_response(StatusCode::SEE_OTHER, &target, &HeaderMap::new())
    } else {
        json_response(StatusCode::OK, &serde_json::json!({ "redirect": target }))
    };
    Ok(with_cleared_cookie(&state, resp))
}

fn with_cleared_cookie(state: &AppState, mut resp: Response) -> Response {
    resp.headers_mut()
        .append(header::SET_COOKIE, state.cookies.clear_session());
    resp
}

/// Ends a session: the record goes now; the refresh token is revoked in the
/// background with a deadline (logout must not wait on a slow IdP). Returns
/// where to send the browser next.
async fn end_session(state: &AppState, session: Session) -> Result<String, AppError> {
    state.sessions.delete(&session.id).await?;
    state
        .metrics
        .count("oidc_bff_logouts_total", &[("kind", "user")]);
    tracing::info!(sub = %crate::claims::log_text(&session.data.sub), "signed out");
    let after = state.config.signed_out_uri();
    let md = match state.provider.metadata().await {
        Ok(md) => md,
        // The IdP is unreachable: the local session is gone, which is what matters most.
        Err(_) => return Ok(after),
    };
    // Revocation is best effort: nothing here may fail the logout.
    let revocation = md
        .revocation_endpoint()
        .cloned()
        .zip(state.provider.oidc_client(&md).ok());
    if let Some((endpoint, oidc)) = revocation {
        use openidconnect::core::CoreRevocableToken;
        use openidconnect::{AccessToken, RefreshToken};
        let token = match &session.data.refresh_token {
            Some(rt) => CoreRevocableToken::from(RefreshToken::new(rt.clone())),
            None => CoreRevocableToken::from(AccessToken::new(session.data.access_token.clone())),
        };
        let http = state.provider.http().clone();
        tokio::spawn(async move {
            let call = client::revoke(&http, oidc, &endpoint, token);
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Ok(())) => tracing::debug!("token revoked"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %crate::claims::log_text(&e), "token revocation failed")
                }
                Err(_) => tracing::warn!("token revocation timed out"),
            }
        });
    }
    Ok(logout_url(
        &md.logout,
        &state.config.provider.client_id,
        Some(&session.data.id_token),
        &after,
    ))
}

/// `GET /auth/user`: who is signed in (needs `X-CSRF`, so a cross-site page cannot read it).
pub async fn user(
    _: CsrfHeader,
    State(state): State<Arc<AppState>>,
    Authenticated(session): Authenticated,
) -> Response {
    let d = &session.data;
    let idle_end = d.last_seen + state.config.session.idle_timeout.as_secs() as i64;
    let body = serde_json::json!({
        "sub": d.sub,
        "claims": d.claims,
        "expires_at": d.expires_at.min(idle_end),
        "access_token_expires_at": d.access_expires_at,
        "access_token_refreshed_at": d.refreshed_at,
        "logout_url": format!("{}/logout?sid={}", state.config.server.auth_prefix, state.sessions.logout_token(&session.id)),
    });
    let mut resp = json_response(StatusCode::OK, &body);
    if let Some(cookie) = &session.reissue_cookie {
        resp.headers_mut()
            .append(header::SET_COOKIE, state.cookies.session(cookie));
    }
    resp
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOut<'a> {
    login_url: &'a str,
}

/// `GET /auth/signed-out`: where the IdP sends the browser after logout. With
/// `server.logout_return_to` it sends the browser on there: Cognito's
/// `/logout` returns no `state`, so the destination is kept in the config.
pub async fn signed_out(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    if let Some(to) = &state.config.server.logout_return_to {
        return Ok(redirect_response(StatusCode::FOUND, to, &HeaderMap::new()));
    }
    let login_url = login_url(&state.config.server.auth_prefix, None, None);
    let page = SignedOut {
        login_url: &login_url,
    };
    Ok(html_response(
        StatusCode::OK,
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}
