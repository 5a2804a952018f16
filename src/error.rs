//! The one error type, and the one place that turns errors into HTTP answers:
//! an HTML page for browser navigations, JSON for everything else, each with
//! the request id. Clients get a short message; details go to the log.

use crate::oidc::return_to::login_url;
use crate::oidc::OidcError;
use crate::session::SessionError;
use askama::Template;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

/// Why a sign-in could not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// The callback carried no `state`.
    MissingState,
    /// No pending login matches `state`: expired, replayed, or another browser's.
    UnknownState,
    /// The callback carried neither `code` nor `error`.
    MissingCode,
    /// The IdP redirected back with an error (OAuth 2.0 error code only).
    Idp(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not signed in")]
    Unauthenticated,
    /// Cookies of the gateway's name that belong to different sessions: one
    /// may have been planted (cookie tossing), so none is believed. Carries
    /// the `Set-Cookie` that clears the gateway's own.
    #[error("the request carries cookies of different sessions")]
    ConflictingSessions(HeaderValue),
    /// A bearer route called without a token (RFC 6750 §3.1: no error code).
    #[error("a bearer token is required")]
    BearerRequired,
    #[error("invalid bearer token: {0}")]
    InvalidToken(crate::oidc::jwt::JwtError),
    /// The admin API called without its bearer token, or with a wrong one.
    #[error("admin token missing or wrong")]
    AdminUnauthorized,
    #[error("the X-CSRF header is required")]
    CsrfMissing,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    /// A request body in a transfer coding other than `chunked` (RFC 9112
    /// §6.1): passing it on de-chunked would change it silently.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// The request body stopped arriving (`server.body_timeout`).
    #[error("request body timed out")]
    RequestTimeout,
    #[error("sign-in failed: {0:?}")]
    Login(LoginError),
    #[error("session store: {0}")]
    Session(#[from] SessionError),
    #[error("identity provider: {0}")]
    Provider(#[from] OidcError),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// A `token = "client"` route's machine token could not be obtained.
    #[error("machine token unavailable: {0}")]
    MachineToken(String),
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// Every upstream connection the open-file budget allows is in use.
    #[error("too many upstream requests in flight")]
    UpstreamBusy,
    #[error("internal error: {0}")]
    Internal(String),
}

struct Rendered {
    status: StatusCode,
    /// Stable machine-readable code for the JSON body.
    code: &'static str,
    /// Short, safe message for people.
    message: String,
    /// Offer "sign in again" on the page.
    sign_in: bool,
}

impl AppError {
    fn rendered(&self) -> Rendered {
        use AppError::*;
        let r = |status, code, message: &str, sign_in| Rendered {
            status,
            code,
            message: message.to_string(),
            sign_in,
        };
        match self {
            Unauthenticated => r(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "You are not signed in.",
                true,
            ),
            ConflictingSessions(_) => r(
                StatusCode::UNAUTHORIZED,
                "conflicting_sessions",
                "The browser sent several sign-ins at once, so none was used. Please sign in again.",
                true,
            ),
            BearerRequired => r(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "A bearer access token is required.",
                false,
            ),
            InvalidToken(_) => r(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is invalid or expired.",
                false,
            ),
            AdminUnauthorized => r(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "The admin bearer token is missing or wrong.",
                false,
            ),
            CsrfMissing => r(
                StatusCode::FORBIDDEN,
                "csrf_required",
                "This request needs the X-CSRF header.",
                false,
            ),
            Forbidden(why) => r(StatusCode::FORBIDDEN, "forbidden", why, false),
            NotFound => r(StatusCode::NOT_FOUND, "not_found", "Nothing here.", false),
            MethodNotAllowed => r(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This method is not allowed here.",
                false,
            ),
            BadRequest(why) => r(StatusCode::BAD_REQUEST, "bad_request", why, false),
            HeadersTooLarge => r(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "The request headers are too large.",
                false,
            ),
            BodyTooLarge => r(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The request body is too large.",
                false,
            ),
            UnsupportedTransferCoding => r(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported_transfer_coding",
                "Only the chunked transfer coding is accepted.",
                false,
            ),
            Login(e) => {
                let msg = match e {
                    LoginError::MissingState | LoginError::UnknownState => {
                        "This sign-in link has expired or was already used. Please sign in again."
                    }
                    LoginError::MissingCode => "The identity provider sent an incomplete answer.",
                    LoginError::Idp(_) => "The identity provider did not complete the sign-in.",
                };
                r(StatusCode::BAD_REQUEST, "login_failed", msg, true)
            }
            Session(_) => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_store_unavailable",
                "Sessions are unavailable right now. Please try again shortly.",
                false,
            ),
            Provider(OidcError::Token(_)) => r(
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "The identity provider's token could not be verified.",
                true,
            ),
            Provider(OidcError::InvalidGrant) => r(
                StatusCode::BAD_REQUEST,
                "login_failed",
                "The sign-in could not be completed. Please sign in again.",
                true,
            ),
            Provider(OidcError::Metadata(_) | OidcError::Jwks(_)) => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unavailable",
                "The identity provider is unavailable right now.",
                false,
            ),
            Provider(OidcError::Unreachable(_)) => r(
                StatusCode::BAD_GATEWAY,
                "idp_unavailable",
                "The identity provider is unavailable right now. Please try again shortly.",
                false,
            ),
            Provider(_) => r(
                StatusCode::BAD_GATEWAY,
                "idp_error",
                "The identity provider could not complete the request.",
                true,
            ),
            UpstreamUnreachable(_) => r(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "The service behind this path is unreachable.",
                false,
            ),
            MachineToken(_) => r(
                StatusCode::BAD_GATEWAY,
                "machine_token_unavailable",
                "The gateway could not obtain its own token for this service from the identity provider. Please try again shortly.",
                false,
            ),
            // RFC 9110 §15.5.9.
            RequestTimeout => r(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body stopped arriving.",
                false,
            ),
            UpstreamBusy => r(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_busy",
                "Too many requests are in progress. Please try again shortly.",
                false,
            ),
            UpstreamTimeout => r(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "The service behind this path did not answer in time.",
                false,
            ),
            Internal(_) => r(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.",
                false,
            ),
        }
    }
}

/// Carried in a response's extensions until [`ErrorRequest::finish`] writes the body.
#[derive(Clone)]
struct ErrorMarker(Arc<AppError>);

/// The error code of a response the gateway answered with an error (the
/// JSON body's `error`, a bounded set: metrics label it), if it is one.
pub fn error_code(resp: &Response) -> Option<&'static str> {
    resp.extensions()
        .get::<ErrorMarker>()
        .map(|ErrorMarker(e)| e.rendered().code)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.rendered().status;
        let mut resp = status.into_response();
        // RFC 6750 §3: tell API clients how to authenticate.
        let challenge = match &self {
            AppError::BearerRequired => Some("Bearer"),
            AppError::InvalidToken(_) => Some("Bearer error=\"invalid_token\""),
            AppError::AdminUnauthorized => Some("Bearer realm=\"oidc-bff admin\""),
            _ => None,
        };
        if let Some(c) = challenge {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let AppError::ConflictingSessions(clear) = &self {
            resp.headers_mut().append(header::SET_COOKIE, clear.clone());
        }
        resp.extensions_mut().insert(ErrorMarker(Arc::new(self)));
        resp
    }
}

/// What the renderer needs from the config.
#[derive(Clone)]
pub struct ErrorContext {
    pub auth_prefix: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    request_id: &'a str,
    sign_in_url: Option<String>,
}

/// What rendering an error needs from its request: cheap clones, taken before
/// the request goes on.
pub struct ErrorRequest {
    html: bool,
    request_id: Option<HeaderValue>,
    uri: http::Uri,
}

impl ErrorRequest {
    pub fn of<B>(req: &http::Request<B>) -> Self {
        ErrorRequest {
            html: wants_html(req.headers()),
            request_id: req.headers().get("x-request-id").cloned(),
            uri: req.uri().clone(),
        }
    }

    /// The same for an API that answers JSON whatever the client accepts
    /// (the admin listener).
    pub fn json<B>(req: &http::Request<B>) -> Self {
        ErrorRequest {
            html: false,
            ..Self::of(req)
        }
    }

    /// Finishes an error response (one carrying an [`AppError`]) with the
    /// right body for the client; any other response passes unchanged.
    pub fn finish(self, ctx: &ErrorContext, resp: Response) -> Response {
        finish_error(ctx, self.html, self.request_id, &self.uri, resp)
    }
}

fn finish_error(
    ctx: &ErrorContext,
    html: bool,
    request_id: Option<HeaderValue>,
    uri: &http::Uri,
    resp: Response,
) -> Response {
    let Some(ErrorMarker(err)) = resp.extensions().get::<ErrorMarker>().cloned() else {
        return resp;
    };
    let request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let return_to = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let r = err.rendered();
    if r.status.is_server_error() {
        tracing::error!(request_id, error = %crate::claims::log_text(&err), "request failed");
    } else {
        tracing::info!(request_id, error = %crate::claims::log_text(&err), "request refused");
    }
    let login = login_url(&ctx.auth_prefix, None, None);
    // Navigations to protected pages are sent to sign in; APIs get 401 JSON.
    if matches!(*err, AppError::Unauthenticated) && html {
        let target = login_url(&ctx.auth_prefix, Some(&return_to), None);
        let mut redirect = redirect_response(StatusCode::FOUND, &target, resp.headers());
        redirect
            .extensions_mut()
            .extend(resp.into_parts().0.extensions);
        return redirect;
    }
    let mut out = if html {
        let page = ErrorPage {
            title: r.status.canonical_reason().unwrap_or("Error"),
            message: &r.message,
            request_id: &request_id,
            sign_in_url: r.sign_in.then(|| login.clone()),
        };
        html_response(
            r.status,
            page.render().unwrap_or_else(|_| r.message.clone()),
        )
    } else {
        let mut body =
            serde_json::json!({ "error": r.code, "message": r.message, "request_id": request_id });
        if r.sign_in {
            body["login_url"] = login.into();
        }
        json_response(r.status, &body)
    };
    // Keep headers the handler set (Set-Cookie clearing a login cookie,
    // WWW-Authenticate…) and the extensions (route and user for the log line).
    let (parts, _) = resp.into_parts();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out.extensions_mut().extend(parts.extensions);
    out
}

/// A redirect that keeps the headers already set (cookies). Never framed,
/// like every answer of the gateway's own.
pub fn redirect_response(status: StatusCode, location: &str, keep: &HeaderMap) -> Response {
    let mut resp = Response::builder()
        .status(status)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .body(Body::empty())
        .expect("static response");
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    for (name, value) in keep {
        if name == header::SET_COOKIE {
            resp.headers_mut().append(name.clone(), value.clone());
        }
    }
    resp
}

/// An HTML page of the gateway's own: never cached, never framed, no scripts.
pub fn html_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(Body::from(body))
        .expect("static response")
}

/// A JSON answer of the gateway's own: never cached, never framed (OWASP's
/// REST guidance: `X-Frame-Options: DENY` on API answers too).
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .body(Body::from(body.to_string()))
        .expect("static response")
}

/// Is this a browser navigation (wanting a page) rather than an API call?
/// `Sec-Fetch-Mode` decides when present; otherwise `Accept` must rank
/// `text/html` above JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    if let Some(mode) = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok()) {
        return mode.eq_ignore_ascii_case("navigate");
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html_q = None;
    let mut json_q: Option<f32> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html_q = Some(html_q.unwrap_or(0.0f32).max(q)),
            "application/json" => json_q = Some(json_q.unwrap_or(0.0).max(q)),
            _ => {}
        }
    }
    match (html_q, json_q) {
        (Some(h), Some(j)) => h > 0.0 && h >= j,
        (Some(h), None) => h > 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigation_detection() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("sec-fetch-mode", "navigate")], true),
            (
                &[("sec-fetch-mode", "cors"), ("accept", "text/html")],
                false,
            ),
            (&[("sec-fetch-mode", "no-cors")], false),
            (
                &[(
                    "accept",
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                )],
                true,
            ),
            (&[("accept", "application/json")], false),
            (&[("accept", "application/json, text/html;q=0.5")], false),
            (&[("accept", "text/html;q=0")], false),
            (&[("accept", "*/*")], false),
            (&[], false),
        ];
        for (headers, want) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in *headers {
                h.insert(*k, HeaderValue::from_static(v));
            }
            assert_eq!(wants_html(&h), *want, "{headers:?}");
        }
    }
}
