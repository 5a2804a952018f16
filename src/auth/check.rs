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
//! examples in docs/forward-auth.md, which block it).

use crate::app::AppState;
use crate::auth::gate::{self, Ask};
use crate::auth::Identity;
use crate::claims::header_groups;
use crate::config::TokenKind;
use crate::error::{json_response, wants_html, AppError};
use crate::oidc::return_to::login_url;
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
        self.target.split('?').next().unwrap_or("")
    }

    /// The query of the target, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Why the original request cannot be read from the forwarding headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedError {
    /// No target header at all: a misconfigured ingress.
    Missing,
    /// A target or method header that cannot be read, or several that
    /// disagree. An ingress sets its own header and passes the client's
    /// others along, so a second opinion may be the client's: never chosen from.
    Ambiguous,
}

/// The headers that carry the original target: nginx's `X-Original-URI`
/// (as docs/forward-auth.md configures it), Traefik's `X-Forwarded-Uri`,
/// ingress-nginx's `X-Original-URL` (a full URL).
const TARGET_HEADERS: [&str; 3] = ["x-original-uri", "x-forwarded-uri", "x-original-url"];
const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

/// Every value of `names`, each read by `read`; they must all agree.
fn one_value<T: PartialEq>(
    headers: &HeaderMap,
    names: &[&str],
    read: impl Fn(&str, &str) -> Option<T>,
) -> Result<Option<T>, ForwardedError> {
    let mut found: Option<T> = None;
    for name in names {
        for value in headers.get_all(*name) {
            let text = value
                .to_str()
                .map_err(|_| ForwardedError::Ambiguous)?
                .trim();
            let v = read(name, text).ok_or(ForwardedError::Ambiguous)?;
            match &found {
                Some(f) if *f != v => return Err(ForwardedError::Ambiguous),
                Some(_) => {}
                None => found = Some(v),
            }
        }
    }
    Ok(found)
}

/// The path and query of an `X-Original-URL`, as written: a URL parser would
/// resolve dot segments and re-encode, and the path must be judged as it came.
fn target_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let end = rest.find('/').unwrap_or(rest.len());
    // Only a host and port: `?`, `#`, `\`, `@` or `%` there is no URL an
    // ingress sends, and each would make parsers disagree on where the path starts.
    let authority_ok = rest[..end]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if !authority_ok {
        return None;
    }
    match &rest[end..] {
        "" => Some("/".to_string()),
        target => Some(target.to_string()),
    }
}

/// Reads the original request from the forwarding headers.
pub fn forwarded(headers: &HeaderMap) -> Result<Forwarded, ForwardedError> {
    let target = one_value(headers, &TARGET_HEADERS, |name, text| {
        let target = match name {
            "x-original-url" => target_of_url(text)?,
            _ => text.to_string(),
        };
        // A fragment is never part of a request target (RFC 9112 §3.2); one
        // sent anyway would be judged without what follows it.
        (!target.is_empty() && !target.contains('#')).then_some(target)
    })?
    .ok_or(ForwardedError::Missing)?;
    let method = one_value(headers, &METHOD_HEADERS, |_, text| {
        Method::from_bytes(text.to_ascii_uppercase().as_bytes()).ok()
    })?
    .unwrap_or(Method::GET);
    let host = header_str(headers, "x-forwarded-host").map(str::to_string);
    Ok(Forwarded {
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
    let fwd = forwarded(headers).map_err(|e| match e {
        ForwardedError::Missing => AppError::BadRequest(
            "forward-auth needs X-Original-URI, X-Forwarded-Uri or X-Original-URL",
        ),
        ForwardedError::Ambiguous => {
            tracing::warn!("forward-auth: the forwarding headers are unreadable or disagree");
            AppError::Forbidden("The forwarded request is ambiguous.".into())
        }
    })?;
    // The same canonical path the proxy would route and forward; a path the
    // proxy would refuse is refused here too.
    let path = canonicalize(fwd.path()).map_err(|e| {
        tracing::info!(error = %crate::claims::log_text(&e), "forward-auth: the original request's path is refused");
        AppError::Forbidden("The request path is not allowed.".into())
    })?;
    let choice = state.routes.choose(&path);
    let route = choice.map(|c| c.route);
    // A path no route claims needs a session and nothing more.
    let unrouted = Access::signed_in();
    let access = route.map_or(&unrouted, |r| &r.access);
    let exact = choice.and_then(|c| c.exact).map(|r| &r.access);
    // Forward-auth has no WebSocket step: the ingress upgrades, and the
    // request is judged like any other (the X-CSRF rule where the route asks).
    let ask = Ask {
        method: &fwd.method,
        headers,
        websocket: false,
    };
    match gate::pass_choice(state, access, exact, ask).await {
        Ok(passed) => {
            let mut resp = allowed(
                &passed.identity,
                access.token,
                state.config.provider.groups_claim(),
            );
            // A `token = "client"` route: the gateway's machine token, for the
            // ingress to send on as it would the session's; never the user's.
            if let Some(grant) = route.and_then(|r| r.machine.as_ref()) {
                let value = state.machine.authorization(grant).await?;
                resp.headers_mut().insert(header::AUTHORIZATION, value);
            }
            Ok(resp)
        }
        Err(gate::Refused {
            error: AppError::Unauthenticated,
            ..
        }) => {
            let idp = route.and_then(|r| r.login_idp.as_deref());
            Ok(unauthenticated(state, req, &fwd, &path, idp))
        }
        // Ingresses understand 2xx, 401 and 403 only.
        Err(gate::Refused {
            error: AppError::MethodNotAllowed,
            ..
        }) => Err(AppError::Forbidden(
            "This method is not allowed here.".into(),
        )),
        Err(refused) => Err(refused.error),
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
    // The one groups rule; a name this `,`-joined header cannot carry is left out.
    if let Some(gs) = header_groups(claims, groups_claim) {
        set(GROUPS_HEADER, &gs);
    }
    if let Some(name) = text("preferred_username")
        .or_else(|| text("cognito:username"))
        .or_else(|| text("username"))
    {
        set(USERNAME_HEADER, name);
    }
    // A session's token, or an API client's own verified one: the ingress may
    // replace the request's Authorization with this answer's (docs/forward-auth.md's nginx does).
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
    // Back to the canonical path (and the query as sent) after signing in.
    let target = match fwd.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut login = login_url(&state.config.server.auth_prefix, Some(&target), idp);
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
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn reads_each_ingress_shape() {
        use ForwardedError::*;
        type Want = Result<(&'static str, &'static str, Option<&'static str>), ForwardedError>;
        let cases: &[(&[(&str, &str)], Want)] = &[
            // nginx auth_request, as docs/forward-auth.md configures it.
            (
                &[
                    ("x-original-uri", "/app/x?a=1"),
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-host", "app.example.com"),
                ],
                Ok(("POST", "/app/x?a=1", Some("app.example.com"))),
            ),
            // Traefik ForwardAuth.
            (
                &[
                    ("x-forwarded-uri", "/api/orders"),
                    ("x-forwarded-method", "DELETE"),
                    ("x-forwarded-host", "h"),
                ],
                Ok(("DELETE", "/api/orders", Some("h"))),
            ),
            // ingress-nginx: a full URL and X-Original-Method.
            (
                &[
                    ("x-original-url", "https://app.example.com/p/q?x=%2F"),
                    ("x-original-method", "put"),
                ],
                Ok(("PUT", "/p/q?x=%2F", None)),
            ),
            (&[("x-original-url", "https://h")], Ok(("GET", "/", None))),
            // Two headers that agree are one target; no method means GET.
            (
                &[("x-original-uri", "/a"), ("x-original-url", "http://h/a")],
                Ok(("GET", "/a", None)),
            ),
            // A second opinion (the client's, passed along) is never chosen from.
            (
                &[("x-original-uri", "/a"), ("x-forwarded-uri", "/b")],
                Err(Ambiguous),
            ),
            (
                &[("x-forwarded-uri", "/b"), ("x-forwarded-uri", "/a")],
                Err(Ambiguous),
            ),
            (
                &[
                    ("x-original-url", "http://h/admin/x"),
                    ("x-original-uri", "/x"),
                ],
                Err(Ambiguous),
            ),
            (
                &[
                    ("x-original-uri", "/a"),
                    ("x-forwarded-method", "GET"),
                    ("x-original-method", "DELETE"),
                ],
                Err(Ambiguous),
            ),
            // Unreadable, empty or odd values are no target.
            (&[("x-original-uri", "")], Err(Ambiguous)),
            (&[("x-original-uri", "/x#/../admin")], Err(Ambiguous)),
            (&[("x-original-url", "not a url")], Err(Ambiguous)),
            (&[("x-original-url", "http://h#/admin/x")], Err(Ambiguous)),
            (&[("x-original-url", "http://h?/admin/x")], Err(Ambiguous)),
            (&[("x-original-url", "http://h%2f/admin/x")], Err(Ambiguous)),
            (&[("x-original-url", "http://u@h/admin/x")], Err(Ambiguous)),
            (&[("x-original-url", "http://h\\admin/x")], Err(Ambiguous)),
            (
                &[("x-original-uri", "/a"), ("x-forwarded-method", "G E T")],
                Err(Ambiguous),
            ),
            (&[("x-forwarded-host", "h")], Err(Missing)),
        ];
        for (headers, want) in cases {
            let got = forwarded(&h(headers));
            let got = got
                .as_ref()
                .map(|f| (f.method.as_str(), f.target.as_str(), f.host.as_deref()))
                .map_err(|e| *e);
            assert_eq!(got, *want, "{headers:?}");
        }
        // A value that is not visible ASCII does not count as absent.
        let mut m = h(&[("x-forwarded-uri", "/x")]);
        m.append(
            "x-original-uri",
            HeaderValue::from_bytes(b"/admin/x\xff").unwrap(),
        );
        assert_eq!(forwarded(&m).map(|f| f.target), Err(Ambiguous));
        let f = forwarded(&h(&[("x-original-uri", "/app/x?a=1")])).unwrap();
        assert_eq!((f.path(), f.query()), ("/app/x", Some("a=1")));
    }

    /// The shared groups table, through `X-Auth-Request-Groups`.
    #[test]
    fn groups_header_follows_the_shared_groups_table() {
        for case in crate::claims::GROUP_CASES {
            let mut c = crate::oidc::jwt::Claims::new();
            c.insert("sub".into(), "u1".into());
            c.insert("g".into(), (case.claim)());
            let identity = Identity::Bearer(crate::auth::bearer::BearerIdentity {
                authorization: HeaderValue::from_static("Bearer t"),
                claims: Arc::new(c),
            });
            let resp = allowed(&identity, TokenKind::None, "g");
            let got = resp
                .headers()
                .get(GROUPS_HEADER)
                .map(|v| std::str::from_utf8(v.as_bytes()).unwrap());
            assert_eq!(got, case.header, "{}", case.name);
            assert_eq!(resp.headers()[USER_HEADER], "u1");
        }
    }
}
