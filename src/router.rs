//! The one place routes and layers are assembled. The gateway's own endpoints
//! (public, under `auth_prefix`) are one group; everything else is the
//! protected proxy (routes decide their own authentication) as the fallback.

use crate::app::AppState;
use crate::auth::{backchannel, handlers};
use crate::error::{AppError, ErrorContext, ErrorRequest};
use crate::telemetry;
use axum::extract::{Request, State};
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
    let shared = state.clone();
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
                // A request id is believed only from a trusted proxy ...
                .map_request(untrusted_request_id(shared.clone()))
                // ... every request gets one ...
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                // ... and every response carries it back.
                .layer(PropagateRequestIdLayer::x_request_id())
                // A span per request (method, path without the query, request id) ...
                .layer(telemetry::trace_layer())
                // ... errors become HTML pages or JSON with the request id, then
                // one log line and the metrics per request, with route and user.
                .layer(tower::layer::layer_fn(move |inner| Finish {
                    inner,
                    state: shared.clone(),
                    errors: errors.clone(),
                }))
                // A panic becomes a 500 page, not a dropped connection.
                .layer(CatchPanicLayer::custom(|_| {
                    AppError::Internal("panic".into()).into_response()
                }))
                // Oversized headers are refused before any work is done.
                .layer(tower::layer::layer_fn(LimitHeaderSize)),
        )
}

/// Drops a client's `X-Request-Id` unless the peer is a trusted proxy (a
/// client must not choose the id that correlates log lines).
fn untrusted_request_id(state: Arc<AppState>) -> impl Fn(Request) -> Request + Clone {
    move |mut req: Request| {
        if !crate::proxy::peer_is_trusted(&state, req.extensions()) {
            req.headers_mut().remove("x-request-id");
        }
        req
    }
}

/// The end of every request: an error response gets its body (HTML page or
/// JSON, [`crate::error`]), then the log line and the metrics. The route label
/// is the configured route id, the matched gateway endpoint, "spa" or
/// "unmatched": never a raw path. A plain service with one boxed future (it
/// runs on every request; `from_fn` would also clone and box the rest of the
/// stack).
#[derive(Clone)]
struct Finish<S> {
    inner: S,
    state: Arc<AppState>,
    errors: ErrorContext,
}

impl<S> tower::Service<Request> for Finish<S>
where
    S: tower::Service<Request> + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = std::time::Instant::now();
        let method = telemetry::method_class(req.method());
        let matched = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str().to_string());
        let error_request = ErrorRequest::of(&req);
        let (state, errors) = (self.state.clone(), self.errors.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = error_request.finish(&errors, fut.await?.into_response());
            observe(&state, start, method, matched, &resp);
            Ok(resp)
        })
    }
}

fn observe(
    state: &AppState,
    start: std::time::Instant,
    method: &'static str,
    matched: Option<String>,
    resp: &Response,
) {
    let elapsed = start.elapsed();
    let route = resp
        .extensions()
        .get::<telemetry::RouteLabel>()
        .map(|r| r.0.clone())
        .or(matched)
        .unwrap_or_else(|| "unmatched".into());
    let status = resp.status();
    let user = resp
        .extensions()
        .get::<telemetry::RequestUser>()
        .map(|u| u.0.as_str())
        .unwrap_or("-");
    tracing::info!(
        route = %route,
        status = status.as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        sub = %user,
        "request"
    );
    let m = &state.metrics;
    m.count(
        "oidc_bff_requests_total",
        &[
            ("route", &route),
            ("method", method),
            ("status", telemetry::status_class(status)),
        ],
    );
    m.observe(
        "oidc_bff_request_duration_seconds",
        &[("route", &route)],
        elapsed.as_secs_f64(),
    );
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = axum::Json(state.assertions.jwks()).into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// Answers 431 when the request headers are over [`MAX_HEADER_BYTES`]; a
/// plain service (no boxing): it runs on every request.
#[derive(Clone)]
struct LimitHeaderSize<S>(S);

impl<S> tower::Service<Request> for LimitHeaderSize<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let size: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if size > MAX_HEADER_BYTES {
            return futures_util::future::Either::Left(std::future::ready(Ok(
                AppError::HeadersTooLarge.into_response(),
            )));
        }
        futures_util::future::Either::Right(self.0.call(req))
    }
}

/// The admin router: liveness and readiness, on its own listener.
pub fn admin(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        // Every response carries a request id, here too.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(n) = state.sessions.store().len_hint() {
        state.metrics.gauge("oidc_bff_sessions_active", n as f64);
    }
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
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
