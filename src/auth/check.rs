//! `GET /auth/check`: forward-auth for ingresses that do their own proxying
//! (nginx `auth_request`, Traefik ForwardAuth, Envoy ext_authz). The ingress
//! asks about the request it is holding; the answer is 200 with identity
//! headers, 401 (not signed in) or 403 (signed in, not allowed).
//!
//! The original request is read from the forwarding headers: the target from
//! `X-Original-URI` (nginx, path and query), `X-Forwarded-Uri` (Traefik) or
//! `X-Original-URL` (ingress-nginx, a full URL); the method from
//! `X-Forwarded-Method` or `X-Original-Method`; the host from
//! `X-Forwarded-Host`. The `[[route]]` whose prefix matches the path decides,
//! with the same steps as the proxy: authenticate (the route's `auth`; the
//! cookie and `Authorization` are the original request's, which ingresses
//! pass along), authorize (`allow_groups`, `require_scopes`,
//! `require_claims`), CSRF. A path no route claims needs a session and
//! nothing more.
//!
//! Those headers are believed only from `server.trusted_proxies`; any other
//! peer gets 403. The endpoint is for the ingress alone: it can answer with
//! the session's token, so it must not be reachable from browsers (see the
//! README's forward-auth examples, which block it).

use crate::app::AppState;
use crate::auth::gate::{self, Ask};
use crate::auth::return_to::safe_return_to;
use crate::auth::Identity;
use crate::config::TokenKind;
use crate::error::{json_response, wants_html, AppError};
use crate::policy::groups;
use crate::proxy::routes::Access;
use crate::request_path::canonicalize;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use std::sync::Arc;

/// Headers of a 200 answer, for the ingress to pass upstream.
pub const USER_HEADER: &str = "x-auth-request-user";
pub const EMAIL_HEADER: &str = "x-auth-request-email";
pub const GROUPS_HEADER: &str = "x-auth-request-groups";
pub const USERNAME_HEADER: &str = "x-auth-request-preferred-username";

/// The request the ingress is asking about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub method: Method,
    /// Path and query, as the browser sent them.
    pub target: String,
    pub host: Option<String>,
}

impl Forwarded {
    /// The path of the target, as sent (not yet canonical).
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// The query of the target, if any.
    pub fn query(&self) -> Option<&str> {
        let rest = self.target.split('#').next().unwrap_or("");
        rest.split_once('?').map(|(_, q)| q)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Reads the original request from the forwarding headers; `None` when no
/// target header is present (a misconfigured ingress).
pub fn forwarded(headers: &HeaderMap) -> Option<Forwarded> {
    let target = match (
        header_str(headers, "x-original-uri"),
        header_str(headers, "x-forwarded-uri"),
        header_str(headers, "x-original-url"),
    ) {
        (Some(t), _, _) | (None, Some(t), _) => t.to_string(),
        // The target as written in the URL: a URL parser would resolve dot
        // segments and re-encode, and the path must be judged as it came.
        (None, None, Some(url)) => {
            let (scheme, rest) = url.split_once("://")?;
            if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            // A `\` ends the authority too (URL parsers read it as `/`); the
            // target then starts with it, and is refused.
            let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
            let authority_ok = rest[..end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
            if !authority_ok {
                // Not a URL an ingress would send: judged as a target that is
                // no path at all, and refused.
                return Some(Forwarded {
                    method: Method::GET,
                    target: rest.to_string(),
                    host: None,
                });
            }
            let target = &rest[end..];
            match target.strip_prefix('?') {
                Some(query) => format!("/?{query}"),
                None if target.is_empty() || target.starts_with('#') => "/".to_string(),
                None => target.to_string(),
            }
        }
        (None, None, None) => return None,
    };
    let method = header_str(headers, "x-forwarded-method")
        .or_else(|| header_str(headers, "x-original-method"))
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or(Method::GET);
    let host = header_str(headers, "x-forwarded-host").map(str::to_string);
    Some(Forwarded {
        method,
        target,
        host,
    })
}

/// `GET /auth/check` (any method: ingresses differ). `?redirect=true` answers
/// navigations 302 to sign in instead of 401, for ingresses that hand the
/// answer to the browser as it is (Traefik ForwardAuth).
pub async fn check(State(state): State<Arc<AppState>>, req: Request) -> Response {
    // The body is never read; the head is all the ingress asks about.
    let (req, _) = req.into_parts();
    match decide(&state, &req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn decide(state: &AppState, req: &Parts) -> Result<Response, AppError> {
    let peer = crate::proxy::peer_ip(&req.extensions);
    if !crate::proxy::peer_is_trusted(state, &req.extensions) {
        tracing::warn!(peer = ?peer, "forward-auth request from a peer not in server.trusted_proxies");
        return Err(AppError::Forbidden(
            "Forward-auth answers only the proxies listed in server.trusted_proxies.".into(),
        ));
    }
    let headers = &req.headers;
    let fwd = forwarded(headers).ok_or(AppError::BadRequest(
        "forward-auth needs X-Original-URI, X-Forwarded-Uri or X-Original-URL",
    ))?;
    // The same canonical path the proxy would route and forward; a path the
    // proxy would refuse is refused here too.
    let path = canonicalize(fwd.path()).map_err(|e| {
        tracing::info!(error = %e, "forward-auth: the original request's path is refused");
        AppError::Forbidden("The request path is not allowed.".into())
    })?;
    let route = state.routes.find(&path);
    // A path no route claims needs a session and nothing more.
    let unrouted = Access::signed_in();
    let access = route.map_or(&unrouted, |r| &r.access);
    // Forward-auth has no WebSocket step: the ingress upgrades, and the
    // request is judged like any other (the X-CSRF rule where the route asks).
    let ask = Ask {
        method: &fwd.method,
        headers,
        websocket: false,
    };
    match gate::pass(state, access, ask).await {
        Ok(passed) => Ok(allowed(
            &passed.identity,
            access.token,
            state.config.provider.groups_claim(),
        )),
        Err(AppError::Unauthenticated) => {
            let idp = route.and_then(|r| r.login_idp.as_deref());
            Ok(unauthenticated(state, req, &fwd, &path, idp))
        }
        // Ingresses understand 2xx, 401 and 403 only.
        Err(AppError::MethodNotAllowed) => Err(AppError::Forbidden(
            "This method is not allowed here.".into(),
        )),
        Err(e) => Err(e),
    }
}

/// 200 with the identity headers (none for an anonymous caller on a public or
/// optional route).
fn allowed(identity: &Identity, token: TokenKind, groups_claim: &str) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let Some(claims) = identity.claims() else {
        return resp;
    };
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        // Claims are the IdP's text; a value that is not valid header text is left out.
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    if let Some(sub) = text("sub") {
        set(USER_HEADER, sub);
    }
    if let Some(email) = text("email") {
        set(EMAIL_HEADER, email);
    }
    let gs = groups(claims, groups_claim);
    if !gs.is_empty() {
        set(GROUPS_HEADER, &gs.join(","));
    }
    if let Some(name) = text("preferred_username")
        .or_else(|| text("cognito:username"))
        .or_else(|| text("username"))
    {
        set(USERNAME_HEADER, name);
    }
    // A session's token, or an API client's own verified one: the ingress may
    // replace the request's Authorization with this answer's (the README's nginx does).
    if let Some(v) = identity.authorization(token) {
        h.insert(header::AUTHORIZATION, v);
    }
    resp
}

/// 401 with where to sign in: JSON `login_url` always; for navigations also a
/// `Location` hint (nginx: `auth_request_set … $upstream_http_location`), or,
/// with `?redirect=true`, a 302 there.
fn unauthenticated(
    state: &AppState,
    req: &Parts,
    fwd: &Forwarded,
    path: &str,
    idp: Option<&str>,
) -> Response {
    let prefix = &state.config.server.auth_prefix;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // Back to the canonical path (and the query as sent) after signing in.
    let target = match fwd.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let return_to = safe_return_to(Some(&target), prefix);
    let mut login = format!("{prefix}/login?return_to={}", enc(&return_to));
    if let Some(idp) = idp {
        login.push_str(&format!("&idp={}", enc(idp)));
    }
    // Signing in happens on the gateway's origin; from another host, say so in full.
    let public = &state.config.server.public_url;
    let same_host = fwd.host.as_deref().is_none_or(|h| {
        // `$host` in nginx has no port; a port, when given, must match too.
        h.parse::<http::uri::Authority>().is_ok_and(|a| {
            a.host()
                .eq_ignore_ascii_case(public.host_str().unwrap_or_default())
                && a.port_u16()
                    .is_none_or(|p| Some(p) == public.port_or_known_default())
        })
    });
    if !same_host {
        login = format!("{}{login}", state.config.public_origin());
    }
    let navigation = wants_html(&req.headers);
    let redirect_mode = req.uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "redirect" && v == "true")
    });
    let location = HeaderValue::from_str(&login).ok();
    if navigation && redirect_mode {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::FOUND;
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(l) = location {
            h.insert(header::LOCATION, l);
        }
        return resp;
    }
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "unauthenticated",
            "message": "You are not signed in.",
            "login_url": login,
        }),
    );
    if navigation {
        if let Some(l) = location {
            resp.headers_mut().insert(header::LOCATION, l);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn reads_each_ingress_shape() {
        type Want = Option<(&'static str, &'static str, Option<&'static str>)>;
        let cases: &[(&[(&str, &str)], Want)] = &[
            // nginx auth_request, as the README configures it.
            (
                &[
                    ("x-original-uri", "/app/x?a=1"),
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-host", "app.example.com"),
                ],
                Some(("POST", "/app/x?a=1", Some("app.example.com"))),
            ),
            // Traefik ForwardAuth.
            (
                &[
                    ("x-forwarded-uri", "/api/orders"),
                    ("x-forwarded-method", "DELETE"),
                    ("x-forwarded-host", "h"),
                ],
                Some(("DELETE", "/api/orders", Some("h"))),
            ),
            // ingress-nginx: a full URL and X-Original-Method.
            (
                &[
                    ("x-original-url", "https://app.example.com/p/q?x=%2F"),
                    ("x-original-method", "put"),
                ],
                Some(("PUT", "/p/q?x=%2F", None)),
            ),
            // X-Original-URI wins over the others; no method means GET.
            (
                &[
                    ("x-original-uri", "/a"),
                    ("x-forwarded-uri", "/b"),
                    ("x-original-url", "http://h/c"),
                ],
                Some(("GET", "/a", None)),
            ),
            (&[("x-forwarded-host", "h")], None),
            (&[("x-original-url", "not a url")], None),
        ];
        for (headers, want) in cases {
            let got = forwarded(&h(headers));
            let got = got
                .as_ref()
                .map(|f| (f.method.as_str(), f.target.as_str(), f.host.as_deref()));
            assert_eq!(got, *want, "{headers:?}");
        }
        let f = forwarded(&h(&[("x-original-uri", "/app/x?a=1#f")])).unwrap();
        assert_eq!(f.path(), "/app/x");
    }
}
