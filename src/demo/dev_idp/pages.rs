//! The development IdP's HTML pages (askama, `templates/dev_idp_*.html`).
//! Every page carries the "development only" banner.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One row of the demo-user list on the login page.
pub(super) struct UserRow {
    pub username: String,
    pub password: String,
    pub groups: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "dev_idp_login.html")]
pub(super) struct LoginPage {
    pub action: String,
    pub client_id: String,
    pub hidden: Vec<(String, String)>,
    pub error: Option<String>,
    pub username: String,
    pub federated: Option<String>,
    pub users: Vec<UserRow>,
}

#[derive(Template)]
#[template(path = "dev_idp_error.html")]
pub(super) struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// An HTML answer that frames cannot embed and caches do not keep.
pub(super) fn html(status: StatusCode, page: &impl Template) -> Response {
    let Ok(body) = page.render() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response();
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        // No form-action: browsers apply it to the redirect after the login
        // POST, which leaves for the client's redirect_uri on another origin.
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// An error page; never a redirect (RFC 6749 §4.1.2.1 for bad clients and
/// redirect URIs, and `/logout` for unregistered logout URIs).
pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, &ErrorPage { title, message })
}
