//! The one place routes and layers are assembled. The gateway's own endpoints
//! (public, under `auth_prefix`) are one group; everything else is the
//! protected proxy (routes decide their own authentication) as the fallback.

use crate::app::AppState;
use crate::auth::{backchannel, handlers};
use crate::error::{render_errors, AppError, ErrorContext};
use crate::telemetry;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use http::StatusCode;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

/// Total size of request headers above which the answer is 431.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The gateway's public router.
pub fn build(state: Arc<AppState>) -> Router {
    let auth = Router::new()
        .route("/login", get(handlers::login))
        .route("/callback", get(handlers::callback))
        .route(
            "/logout",
            get(handlers::logout_get).post(handlers::logout_post),
        )
        .route("/user", get(handlers::user))
        .route("/signed-out", get(handlers::signed_out))
        // Forward-auth for ingresses (nginx auth_request, Traefik ForwardAuth);
        // answers only server.trusted_proxies.
        .route("/check", any(crate::auth::check::check))
        // Public keys of the gateway's identity assertions, for upstreams.
        .route("/jwks.json", get(jwks))
        // Called by the IdP, server to server: no cookie, no CSRF header.
        .route("/backchannel-logout", post(backchannel::backchannel_logout));
    let errors = ErrorContext {
        auth_prefix: state.config.server.auth_prefix.clone(),
    };
    Router::new()
        .nest(&state.config.server.auth_prefix, auth)
        .fallback(crate::proxy::handle)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // Tokens and cookies never reach a log line through the trace layer.
                .layer(SetSensitiveRequestHeadersLayer::new([
                    http::header::AUTHORIZATION,
                    http::header::COOKIE,
                ]))
                // Every request gets an id (kept from the client if sent) ...
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                // ... and every response carries it back.
                .layer(PropagateRequestIdLayer::x_request_id())
                // One log line per request: method, path (never the query), status, latency.
                .layer(telemetry::trace_layer())
                // Errors become HTML pages or JSON, with the request id.
                .layer(middleware::from_fn_with_state(errors, render_errors))
                // A panic becomes a 500 page, not a dropped connection.
                .layer(CatchPanicLayer::custom(|_| {
                    AppError::Internal("panic".into()).into_response()
                }))
                // Oversized headers are refused before any work is done.
                .layer(middleware::from_fn(limit_header_size)),
        )
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = axum::Json(state.assertions.jwks()).into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

async fn limit_header_size(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return AppError::HeadersTooLarge.into_response();
    }
    next.run(req).await
}

/// The admin router: liveness and readiness, on its own listener.
pub fn admin(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.provider.is_ready() {
        if let Err(e) = state.provider.warm().await {
            tracing::warn!(error = %e, "not ready: identity provider");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "identity provider metadata not loaded\n",
            )
                .into_response();
        }
    }
    if let Err(e) = state.sessions.store().ping().await {
        tracing::warn!(error = %e, "not ready: session store");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "session store unreachable\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}
