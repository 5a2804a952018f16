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
    let edge = Edge {
        state: state.clone(),
        errors,
    };
    let routes = Router::new()
        .nest(
            &state.config.server.auth_prefix,
            // The metrics label of the gateway's own endpoints: the matched route.
            auth.route_layer(axum::middleware::from_fn(label_matched)),
        )
        .fallback(crate::proxy::handle)
        .with_state(state);
    // The edge wraps the routes rather than being layered onto them: it
    // replaces the request path with the canonical one, and routing must see
    // that path (a `Router::layer` runs after routing).
    Router::new().fallback_service(routes).layer(
        ServiceBuilder::new()
            // What every request goes through: header limit, canonical path,
            // request id, span, error pages, log line, metrics (see `Edge`) ...
            .layer(tower::layer::layer_fn(move |inner| edge.wrap(inner)))
            // ... and a panic becomes a 500 page, not a dropped connection.
            .layer(CatchPanicLayer::custom(|_| {
                AppError::Internal("panic".into()).into_response()
            })),
    )
}

/// Labels a response of the gateway's own endpoints with the matched route.
async fn label_matched(
    matched: axum::extract::MatchedPath,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    resp.extensions_mut()
        .insert(telemetry::RouteLabel(matched.as_str().to_string()));
    resp
}

/// The per-request edge of the gateway, in one service (one boxed future per
/// request, where separate tower layers would each wrap the future, and
/// `from_fn` would also clone and box the rest of the stack):
/// 1. request headers over [`MAX_HEADER_BYTES`] are answered 431 before any work;
///    a request whose framing the gateway would pass on changed ([`framing`])
///    is refused; a path that has no canonical form ([`crate::request_path`]) is answered
///    400; otherwise the request's path becomes the canonical one, which
///    routing, the gate and the upstream all see;
/// 2. `Authorization` and `Cookie` are marked sensitive (never in a log line);
/// 3. `X-Request-Id` is believed only from a trusted proxy (a client must not
///    choose the id that correlates log lines); otherwise a new one is made;
///    it goes upstream and back on the response;
/// 4. a span per request (method, path without the query, request id);
/// 5. an error response gets its body (HTML page or JSON, [`crate::error`]);
///    an answer that sets one of the gateway's cookies gets
///    `Cache-Control: no-store`, whatever the upstream said;
/// 6. the log line and the metrics. The route label is the configured route
///    id, the matched gateway endpoint, "spa" or "unmatched": never a raw path.
///
/// It wraps the routes (see [`build`]), so the request is not routed yet here.
#[derive(Clone)]
struct Edge {
    state: Arc<AppState>,
    errors: ErrorContext,
}

impl Edge {
    fn wrap<S>(&self, inner: S) -> EdgeService<S> {
        EdgeService {
            inner,
            edge: self.clone(),
        }
    }
}

#[derive(Clone)]
struct EdgeService<S> {
    inner: S,
    edge: Edge,
}

impl<S> tower::Service<Request> for EdgeService<S>
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

    fn call(&mut self, mut req: Request) -> Self::Future {
        use tracing::Instrument;
        let start = std::time::Instant::now();
        let state = self.edge.state.clone();
        let errors = self.edge.errors.clone();
        let refused = if header_bytes(req.headers()) > MAX_HEADER_BYTES {
            Some(AppError::HeadersTooLarge)
        } else {
            framing(&req)
                .and_then(|()| canonical_target(req.uri_mut()))
                .err()
        };
        mark_sensitive(req.headers_mut());
        let trusted = crate::proxy::peer_is_trusted(&state, req.extensions());
        let request_id = request_id(req.headers_mut(), trusted);
        let method = telemetry::method_class(req.method());
        let span = telemetry::make_span(&req);
        let error_request = ErrorRequest::of(&req);
        let inner = match refused {
            None => Ok(self.inner.call(req)),
            Some(e) => Err(e),
        };
        Box::pin(
            async move {
                let resp = match inner {
                    Ok(fut) => fut.await?.into_response(),
                    Err(e) => e.into_response(),
                };
                let mut resp = error_request.finish(&errors, resp);
                // Whoever set it (a sign-in, a re-sealed cookie on a proxied
                // answer, a logout), no cache keeps an answer that carries
                // the gateway's cookie.
                crate::proxy::headers::no_store_with_gateway_cookie(
                    resp.headers_mut(),
                    &state.cookies.names(),
                );
                resp.headers_mut().entry(X_REQUEST_ID).or_insert(request_id);
                observe(&state, start, method, &resp);
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// Refuses what the upstream would receive other than the client sent:
/// - a body in a transfer coding other than `chunked` (`gzip, chunked`):
///   hyper removes the chunking, and the coding would be lost on the way
///   (RFC 9112 §6.1: 501 for a coding the server does not understand);
/// - a `Host` that names another authority than the request target's: an
///   HTTP/2 `:authority` (RFC 9113 §8.3.1: malformed) or an HTTP/1.1
///   absolute-form target (RFC 9112 §3.2.2 lets the target win, some servers
///   read `Host`), so `preserve_host` never sends a host the gateway did not
///   judge.
fn framing(req: &Request) -> Result<(), AppError> {
    let codings = req.headers().get_all(http::header::TRANSFER_ENCODING);
    let only_chunked = codings
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .all(|c| c.eq_ignore_ascii_case(b"chunked"));
    if !only_chunked {
        return Err(AppError::UnsupportedTransferCoding);
    }
    if let Some(authority) = req.uri().authority() {
        let disagrees = req.headers().get_all(http::header::HOST).iter().any(|h| {
            !h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        });
        if disagrees {
            return Err(AppError::BadRequest(
                "the Host header disagrees with the request's authority",
            ));
        }
    }
    Ok(())
}

/// Replaces the path of `uri` with its canonical form (the query is kept as
/// sent), or says why the target is refused.
fn canonical_target(uri: &mut http::Uri) -> Result<(), AppError> {
    use std::borrow::Cow;
    let canonical = match crate::request_path::canonicalize(uri.path()) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(path)) => path,
        Err(e) => {
            tracing::info!(error = %crate::claims::log_text(&e), "request path refused");
            return Err(AppError::BadRequest("the request path is not allowed"));
        }
    };
    let target = match uri.query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(
        target
            .parse()
            .map_err(|_| AppError::BadRequest("the request path is not allowed"))?,
    );
    *uri = http::Uri::from_parts(parts)
        .map_err(|_| AppError::BadRequest("the request path is not allowed"))?;
    Ok(())
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Request header bytes as the 431 limit counts them.
fn header_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// Marks credentials sensitive, so that no `Debug` of the headers shows them.
fn mark_sensitive(headers: &mut http::HeaderMap) {
    for name in [http::header::AUTHORIZATION, http::header::COOKIE] {
        if let http::header::Entry::Occupied(mut e) = headers.entry(name) {
            e.iter_mut().for_each(|v| v.set_sensitive(true));
        }
    }
}

/// The request's id: a trusted proxy's `X-Request-Id` if it sent a usable
/// one, else a new UUID; set on the request for the upstream.
fn request_id(headers: &mut http::HeaderMap, trusted: bool) -> http::HeaderValue {
    // Usable: short and of id characters only. Proxies often pass a client's
    // id through, and it lands in every log line of the request.
    let usable = |v: &&http::HeaderValue| {
        (1..=128).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    if let Some(id) = headers.get(X_REQUEST_ID).filter(|_| trusted).filter(usable) {
        return id.clone();
    }
    let id = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .expect("a UUID is a valid header value");
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

fn observe(state: &AppState, start: std::time::Instant, method: &'static str, resp: &Response) {
    let elapsed = start.elapsed();
    let route = resp
        .extensions()
        .get::<telemetry::RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str());
    let status = resp.status();
    let user = resp
        .extensions()
        .get::<telemetry::RequestUser>()
        .map(|u| u.0.as_str())
        .unwrap_or("-");
    // What went wrong, when the gateway answered with an error: tells a 502
    // of an unreachable upstream from one of the IdP, a 503 of the session
    // store, a 504 of a slow upstream. "none" for everything else, including
    // an upstream's own error answers.
    let error = crate::error::error_code(resp).unwrap_or("none");
    if status.is_server_error() && error != "none" {
        tracing::warn!(
            route = %route,
            status = status.as_u16(),
            error,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            sub = %crate::claims::log_text(user),
            "request"
        );
    } else {
        tracing::info!(
            route = %route,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            sub = %crate::claims::log_text(user),
            "request"
        );
    }
    let m = &state.metrics;
    m.count(
        "oidc_bff_requests_total",
        &[
            ("route", route),
            ("method", method),
            ("status", telemetry::status_class(status)),
            ("error", error),
        ],
    );
    m.observe(
        "oidc_bff_request_duration_seconds",
        &[("route", route)],
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

/// The admin router, on its own listener: liveness, readiness, metrics and,
/// when `server.admin_token_file` is set, the admin sessions API
/// ([`crate::admin`]). Never part of [`build`]: the public listener has none of it.
pub fn admin(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::admin::routes(&state))
        // Every response carries a request id, by the same rule as the main
        // listener, and an error its JSON body.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin_request_id,
        ))
        .with_state(state)
}

async fn admin_request_id(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let trusted = crate::proxy::peer_is_trusted(&state, req.extensions());
    let id = request_id(req.headers_mut(), trusted);
    let errors = ErrorContext {
        auth_prefix: state.config.server.auth_prefix.clone(),
    };
    let error_request = ErrorRequest::json(&req);
    let resp = next.run(req).await;
    let mut resp = error_request.finish(&errors, resp);
    resp.headers_mut().entry(X_REQUEST_ID).or_insert(id);
    resp
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn request_ids_come_from_trusted_proxies_only() {
        let client_id = HeaderValue::from_static("chosen-by-the-client");
        let mut from_client = HeaderMap::new();
        from_client.insert(X_REQUEST_ID, client_id.clone());
        let id = request_id(&mut from_client, false);
        assert_ne!(id, client_id);
        assert_eq!(from_client.get(X_REQUEST_ID), Some(&id), "sent upstream");
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());

        let mut from_proxy = HeaderMap::new();
        from_proxy.insert(X_REQUEST_ID, client_id.clone());
        assert_eq!(request_id(&mut from_proxy, true), client_id);

        let mut none = HeaderMap::new();
        let (a, b) = (
            request_id(&mut none.clone(), true),
            request_id(&mut none, false),
        );
        assert_ne!(a, b, "a new id each time");
    }

    #[test]
    fn credentials_are_marked_sensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        h.append(http::header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(http::header::COOKIE, HeaderValue::from_static("b=2"));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        mark_sensitive(&mut h);
        assert!(h
            .get_all(http::header::COOKIE)
            .iter()
            .all(|v| v.is_sensitive()));
        assert!(h[http::header::AUTHORIZATION].is_sensitive());
        assert!(!h[http::header::ACCEPT].is_sensitive());
        assert!(!format!("{h:?}").contains("Bearer t"));
    }

    #[test]
    fn framing_that_would_change_on_the_way_is_refused() {
        let req = |version, headers: &[(&str, &str)], uri: &str| {
            let mut b = http::Request::builder().version(version).uri(uri);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        use http::Version;
        let h1 = Version::HTTP_11;
        let h2 = Version::HTTP_2;
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let ok: &[(Version, Headers, &str)] = &[
            (h1, &[], "/"),
            (h1, &[("transfer-encoding", "chunked")], "/"),
            (h1, &[("transfer-encoding", "Chunked")], "/"),
            (h2, &[], "http://gw.example/"),
            (h2, &[("host", "gw.example")], "http://gw.example/"),
            (h2, &[("host", "GW.example")], "http://gw.example/"),
            (h2, &[("host", "anything")], "/"),
            (h1, &[("host", "gw.example")], "http://gw.example/"),
        ];
        for (v, h, uri) in ok {
            assert!(framing(&req(*v, h, uri)).is_ok(), "{v:?} {h:?} {uri}");
        }
        let refused: &[(Version, Headers, &str, u16)] = &[
            (h1, &[("transfer-encoding", "gzip, chunked")], "/", 501),
            (
                h1,
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked"),
                ],
                "/",
                501,
            ),
            (
                h1,
                &[("transfer-encoding", "chunked, chunked, identity")],
                "/",
                501,
            ),
            (h1, &[("transfer-encoding", "deflate")], "/", 501),
            (h2, &[("host", "evil.example")], "http://gw.example/", 400),
            (
                h2,
                &[("host", "gw.example"), ("host", "evil.example")],
                "http://gw.example/",
                400,
            ),
            (
                h2,
                &[("host", "gw.example:8443")],
                "http://gw.example/",
                400,
            ),
        ];
        for (v, h, uri, status) in refused {
            let e = framing(&req(*v, h, uri)).expect_err(&format!("{v:?} {h:?}"));
            assert_eq!(e.into_response().status().as_u16(), *status, "{h:?}");
        }
    }

    #[test]
    fn header_bytes_count_names_values_and_separators() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("12345"));
        assert_eq!(header_bytes(&h), 3 + 5 + 4);
    }

    #[test]
    fn a_trusted_proxys_request_id_must_be_usable() {
        // nginx, HAProxy and most load balancers pass a client's
        // `X-Request-Id` through unless told otherwise, so "from a trusted
        // proxy" often means "from the client". The id lands in the request
        // span, the error page, the upstream and every log line of the request.
        for forged in [
            "x".repeat(30 * 1024),
            "abc request_id=admin-audit method=DELETE path=/admin status=200".to_string(),
            "\"} {\"level\":\"INFO\",\"msg\":\"forged\"".to_string(),
            "a\tb".to_string(),
        ] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_str(&forged).unwrap());
            let id = request_id(&mut h, true);
            assert!(
                id.as_bytes() != forged.as_bytes(),
                "believed ({} bytes): {:?}",
                forged.len(),
                &forged[..forged.len().min(40)]
            );
        }
    }

    #[test]
    fn an_untrusted_peer_cannot_set_the_request_id_even_twice() {
        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, HeaderValue::from_static("one"));
        h.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        let id = request_id(&mut h, false);
        let sent: Vec<_> = h.get_all(X_REQUEST_ID).iter().collect();
        assert_eq!(sent, [&id], "only the gateway's id goes upstream");
    }
}
