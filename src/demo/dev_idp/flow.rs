//! The browser side: `/oauth2/authorize` (and Cognito's `/login`), the login
//! form, and `/logout`. Request checks follow RFC 6749 §4.1.2.1: a bad client
//! or redirect URI gets an error page and never a redirect; every other error
//! goes back to the client's redirect URI.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use url::Url;

use super::pages::{self, LoginPage, UserRow};
use super::params::{describe, Params};
use super::{random_token, redirect, CodeRecord, DevIdpState, SessionRecord, SESSION_COOKIE};

/// The parameters the login form carries from the authorize request to its POST.
const CARRIED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "identity_provider",
    "lang",
];

/// A checked authorize request.
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    redirect: Url,
    scope: Vec<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    identity_provider: Option<String>,
    prompt_login: bool,
}

enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: tell the user, do not redirect.
    Page(&'static str, String),
    /// RFC 6749 §4.1.2.1: back to the client with `error` (and `state`).
    Redirect {
        to: Box<Url>,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

impl IntoResponse for AuthorizeError {
    fn into_response(self) -> Response {
        match self {
            AuthorizeError::Page(title, message) => {
                pages::error_page(StatusCode::BAD_REQUEST, title, &message)
            }
            AuthorizeError::Redirect {
                mut to,
                error,
                description,
                state,
            } => {
                {
                    let mut q = to.query_pairs_mut();
                    q.append_pair("error", error)
                        .append_pair("error_description", &description);
                    if let Some(state) = &state {
                        q.append_pair("state", state);
                    }
                }
                redirect(to.as_str())
            }
        }
    }
}

fn page_error(message: impl Into<String>) -> AuthorizeError {
    AuthorizeError::Page("Invalid sign-in request", message.into())
}

/// RFC 7636 §4.2: an S256 challenge is the base64url SHA-256, 43 characters.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate(s: &DevIdpState, p: &Params) -> Result<AuthorizeRequest, AuthorizeError> {
    let client_id = match p.get("client_id") {
        Ok(Some(c)) => c,
        Ok(None) => return Err(page_error("The request has no client_id.")),
        Err(e) => return Err(page_error(describe("client_id", e))),
    };
    let Some(client) = s.config.client(client_id) else {
        return Err(page_error("The client_id is not a client of this IdP."));
    };
    if !client.allows("code") {
        return Err(page_error(
            "This client may not sign users in (its allowed flow is client_credentials).",
        ));
    }
    let redirect_uri = match p.get("redirect_uri") {
        Ok(Some(r)) => r,
        Ok(None) => return Err(page_error("The request has no redirect_uri.")),
        Err(e) => return Err(page_error(describe("redirect_uri", e))),
    };
    // Exact string comparison (RFC 6749 §3.1.2.3, OAuth 2.0 Security BCP).
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(page_error(
            "The redirect_uri is not registered for this client.",
        ));
    }
    let Ok(redirect) = Url::parse(redirect_uri) else {
        return Err(page_error("The redirect_uri is not a URL."));
    };
    let state = match p.get("state") {
        Ok(s) => s.map(str::to_string),
        Err(e) => {
            return Err(AuthorizeError::Redirect {
                to: Box::new(redirect),
                error: "invalid_request",
                description: describe("state", e),
                state: None,
            })
        }
    };
    let fail = |error: &'static str, description: String| AuthorizeError::Redirect {
        to: Box::new(redirect.clone()),
        error,
        description,
        state: state.clone(),
    };
    let get = |name: &str| {
        p.get(name)
            .map_err(|e| fail("invalid_request", describe(name, e)))
    };

    match get("response_type")? {
        None => return Err(fail("invalid_request", "response_type is required".into())),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ))
        }
    }
    match get("code_challenge_method")? {
        Some("S256") => {}
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256".into(),
            ))
        }
        None => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge_method=S256".into(),
            ))
        }
    }
    let code_challenge = match get("code_challenge")? {
        Some(c) if is_s256_challenge(c) => c.to_string(),
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "code_challenge is not an S256 challenge".into(),
            ))
        }
        None => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge".into(),
            ))
        }
    };
    let scope = match get("scope")? {
        None => client.allowed_scopes.clone(),
        Some(requested) => {
            let mut scope: Vec<String> = Vec::new();
            for item in requested.split(' ').filter(|i| !i.is_empty()) {
                if !client.allowed_scopes.iter().any(|a| a == item) {
                    return Err(fail(
                        "invalid_scope",
                        format!("scope {item} is not allowed for this client"),
                    ));
                }
                if !scope.iter().any(|s| s == item) {
                    scope.push(item.to_string());
                }
            }
            if scope.is_empty() {
                return Err(fail("invalid_scope", "scope is empty".into()));
            }
            scope
        }
    };
    let nonce = get("nonce")?.map(str::to_string);
    let identity_provider = get("identity_provider")?.map(str::to_string);
    get("lang")?;
    // Only `prompt=login` changes anything: it asks for the form even with a
    // live IdP session. Other values are ignored.
    let prompt_login = matches!(p.get("prompt"), Ok(Some(v)) if v.split(' ').any(|x| x == "login"));
    Ok(AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        redirect,
        scope,
        state,
        nonce,
        code_challenge,
        identity_provider,
        prompt_login,
    })
}

fn login_page(
    s: &DevIdpState,
    req: &AuthorizeRequest,
    p: &Params,
    error: Option<&str>,
    username: &str,
) -> Response {
    let users = s
        .config
        .users
        .iter()
        .map(|u| UserRow {
            username: u.username.clone(),
            password: u.password.clone(),
            groups: if u.groups.is_empty() {
                "—".into()
            } else {
                u.groups.join(", ")
            },
            email: u.email.clone().unwrap_or_else(|| "—".into()),
        })
        .collect();
    let page = LoginPage {
        action: format!("{}/login", s.base_path),
        client_id: req.client_id.clone(),
        hidden: p.pairs(CARRIED),
        error: error.map(str::to_string),
        username: username.to_string(),
        federated: req.identity_provider.clone().filter(|idp| idp != "COGNITO"),
        users,
    };
    pages::html(StatusCode::OK, &page)
}

/// Issues a code for `username` and sends the browser back to the client.
/// Cognito sends `code` and `state` only (no `iss`).
fn code_redirect(
    s: &DevIdpState,
    req: AuthorizeRequest,
    username: &str,
    auth_time: u64,
) -> Response {
    let code = random_token();
    let now = s.instant();
    {
        let mut store = s.store();
        store.purge(now);
        store.codes.insert(
            code.clone(),
            CodeRecord {
                client_id: req.client_id,
                redirect_uri: req.redirect_uri,
                code_challenge: req.code_challenge,
                scope: req.scope,
                nonce: req.nonce,
                username: username.to_string(),
                auth_time,
                origin: uuid::Uuid::new_v4().to_string(),
                expires: now + s.config.code_ttl,
                used: false,
            },
        );
    }
    let mut to = req.redirect;
    {
        let mut q = to.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(state) = &req.state {
            q.append_pair("state", state);
        }
    }
    redirect(to.as_str())
}

/// The signed-in user of the IdP's own session cookie, if still valid.
fn current_session(s: &DevIdpState, headers: &HeaderMap) -> Option<(String, u64)> {
    let id = super::params::cookie(headers, SESSION_COOKIE)?;
    let store = s.store();
    let session = store.sessions.get(id).filter(|r| r.expires > s.instant())?;
    s.config.user(&session.username)?;
    Some((session.username.clone(), session.auth_time))
}

fn session_cookie(s: &DevIdpState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if s.secure_cookie { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// `GET /oauth2/authorize` (and `/login`): the login page, or straight back
/// with a code when the IdP session is still signed in.
pub(super) async fn authorize(
    State(s): State<Arc<DevIdpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::from_query(query.as_deref());
    let req = match validate(&s, &p) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if !req.prompt_login {
        if let Some((username, auth_time)) = current_session(&s, &headers) {
            return code_redirect(&s, req, &username, auth_time);
        }
    }
    login_page(&s, &req, &p, None, "")
}

/// `POST /login` (and `/oauth2/authorize`): checks the password. The carried
/// request is checked again: hidden fields are whatever the browser sends.
pub(super) async fn login(State(s): State<Arc<DevIdpState>>, body: Bytes) -> Response {
    let p = Params::parse(&body);
    let req = match validate(&s, &p) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let username = p.get("username").ok().flatten().unwrap_or("");
    let password = p.get("password").ok().flatten().unwrap_or("");
    let user = s.config.user(username);
    // Compare even for an unknown user, and answer the same way: no enumeration.
    let expected = user
        .map(|u| u.password.as_bytes())
        .unwrap_or(b"\0no such user\0");
    let ok = bool::from(password.as_bytes().ct_eq(expected)) && user.is_some();
    if !ok {
        return login_page(
            &s,
            &req,
            &p,
            Some("Incorrect username or password."),
            username,
        );
    }
    let auth_time = s.unix_now();
    let mut cookie = None;
    if !s.config.session_ttl.is_zero() {
        let id = random_token();
        let now = s.instant();
        let mut store = s.store();
        store.purge(now);
        store.sessions.insert(
            id.clone(),
            SessionRecord {
                username: username.to_string(),
                auth_time,
                expires: now + s.config.session_ttl,
            },
        );
        cookie = session_cookie(&s, &id, s.config.session_ttl.as_secs());
    }
    let mut resp = code_redirect(&s, req, username, auth_time);
    if let Some(cookie) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    resp
}

/// `GET /logout?client_id=…&logout_uri=…`: ends the IdP session and returns
/// to `logout_uri`, which must be registered for the client exactly (no
/// `state` is appended, like Cognito). Cognito's other form,
/// `?client_id&redirect_uri&response_type=code…`, signs out and shows the
/// login page again.
pub(super) async fn logout(
    State(s): State<Arc<DevIdpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::from_query(query.as_deref());
    let bad = |message: &str| {
        pages::error_page(StatusCode::BAD_REQUEST, "Invalid sign-out request", message)
    };
    let client = match p.get("client_id") {
        Ok(Some(id)) => match s.config.client(id) {
            Some(c) => c,
            None => return bad("The client_id is not a client of this IdP."),
        },
        Ok(None) => return bad("The request has no client_id."),
        Err(e) => return bad(&describe("client_id", e)),
    };
    let target = match (p.get("logout_uri"), p.get("redirect_uri")) {
        (Ok(Some(uri)), _) => {
            if !client.logout_uris.iter().any(|u| u == uri) {
                return bad("The logout_uri is not registered for this client.");
            }
            uri.to_string()
        }
        (Ok(None), Ok(Some(uri))) => {
            if !client.redirect_uris.iter().any(|u| u == uri) {
                return bad("The redirect_uri is not registered for this client.");
            }
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(p.pairs(CARRIED))
                .finish();
            format!("{}/oauth2/authorize?{query}", s.base_path)
        }
        (Err(e), _) => return bad(&describe("logout_uri", e)),
        (_, Err(e)) => return bad(&describe("redirect_uri", e)),
        (Ok(None), Ok(None)) => return bad("The request has neither logout_uri nor redirect_uri."),
    };
    if let Some(id) = super::params::cookie(&headers, SESSION_COOKIE) {
        s.store().sessions.remove(id);
    }
    let mut resp = redirect(&target);
    if let Some(cookie) = session_cookie(&s, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    resp
}
