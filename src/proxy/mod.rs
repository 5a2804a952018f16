//! The reverse proxy: every request that is not the gateway's own goes through
//! named steps in a fixed order: match route -> authenticate -> CSRF ->
//! rewrite headers -> send -> stream back. Requests no route claims are
//! served from the SPA directory (or answered 404).

pub mod headers;
pub mod routes;

use crate::app::AppState;
use crate::auth::{has_csrf_header, has_session_cookie, session_of};
use crate::config::{AuthMode, TokenKind};
use crate::error::AppError;
use crate::session::Session;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use headers::{clean_response, set_forwarded, strip_cookies, strip_hop_by_hop, strip_identity, ClientInfo};
use http::{header, HeaderValue, Method, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use routes::{check_path, Route};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Pooled, keep-alive HTTP/1.1 client for upstreams (http and https).
pub type UpstreamClient = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

pub fn upstream_client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}

/// Fallback handler: everything outside `/auth`.
pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match proxy(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn proxy(state: &Arc<AppState>, req: Request) -> Result<Response, AppError> {
    // Step 1: match route (after refusing ambiguous targets).
    check_path(req.uri().path()).map_err(|_| AppError::BadRequest("the request path is not allowed"))?;
    let Some(route) = state.routes.find(req.uri().path()) else {
        return serve_spa(state, req).await;
    };
    if !route.allows(req.method()) {
        return Err(AppError::MethodNotAllowed);
    }
    // Step 2: authenticate.
    let session = match route.auth {
        AuthMode::Public => None,
        AuthMode::Optional => session_of(state, req.headers()).await?,
        AuthMode::Session => Some(session_of(state, req.headers()).await?.ok_or(AppError::Unauthenticated)?),
    };
    // Step 3: CSRF, for requests that ride on the session cookie.
    if route.csrf && route.auth != AuthMode::Public && has_session_cookie(state, req.headers()) && !has_csrf_header(req.headers()) {
        return Err(AppError::CsrfMissing);
    }
    // Steps 4-6: rewrite, send, stream back.
    let reissue = session.as_ref().and_then(|s| s.reissue_cookie.clone());
    let mut resp = forward(state, route, session.as_ref(), req).await?;
    if let Some(cookie) = reissue {
        resp.headers_mut().append(header::SET_COOKIE, state.cookies.session(&cookie));
    }
    Ok(resp)
}

fn client_info(state: &AppState, req: &Request) -> ClientInfo {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let url = &state.config.server.public_url;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    ClientInfo {
        peer,
        trusted_peer: state.config.server.trusted_proxies.iter().any(|n| n.contains(&peer)),
        public_proto: url.scheme().to_string(),
        public_host: host,
    }
}

async fn forward(state: &AppState, route: &Route, session: Option<&Session>, req: Request) -> Result<Response, AppError> {
    let client = client_info(state, &req);
    let (mut parts, body) = req.into_parts();
    let max = state.config.server.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(AppError::BodyTooLarge);
    }
    let target = route.upstream_url(parts.uri.path(), parts.uri.query());
    parts.uri = target
        .parse::<Uri>()
        .map_err(|_| AppError::BadRequest("the request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;

    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    strip_cookies(h, &state.cookies.names());
    strip_identity(h, route.auth != AuthMode::Public);
    set_forwarded(h, &client);
    // The upstream's own authority, from the URI (hyper sets it).
    h.remove(header::HOST);
    if let Some(s) = session {
        let token = match route.token {
            TokenKind::Access => Some(&s.data.access_token),
            TokenKind::Id => Some(&s.data.id_token),
            TokenKind::None => None,
        };
        if let Some(t) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            let mut t = t;
            t.set_sensitive(true);
            h.insert(header::AUTHORIZATION, t);
        }
    }
    let body = Body::new(http_body_util::Limited::new(body, max as usize));
    let upstream_req = http::Request::from_parts(parts, body);

    let resp = match tokio::time::timeout(route.timeout, state.upstream.request(upstream_req)).await {
        Err(_) => return Err(AppError::UpstreamTimeout),
        Ok(Err(e)) => {
            tracing::warn!(route = %route.id, error = %e, "upstream request failed");
            return Err(AppError::UpstreamUnreachable(route.id.clone()));
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = resp.into_parts();
    clean_response(&mut parts.headers, &state.cookies.names());
    Ok(Response::from_parts(parts, Body::new(body)))
}

async fn serve_spa(state: &AppState, req: Request) -> Result<Response, AppError> {
    let Some(dir) = &state.spa_dir else {
        return Err(AppError::NotFound);
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(AppError::MethodNotAllowed);
    }
    // Client-side routes (deep links) fall back to index.html.
    let svc = tower_http::services::ServeDir::new(dir)
        .fallback(tower_http::services::ServeFile::new(dir.join("index.html")));
    let resp = svc
        .oneshot(req)
        .await
        .map_err(|e| AppError::Internal(format!("static files: {e}")))?;
    Ok(resp.map(Body::new))
}
