//! The reverse proxy: every request that is not the gateway's own goes through
//! named steps in a fixed order: match route -> authenticate -> authorize ->
//! CSRF -> refresh the token if due -> rewrite headers -> send -> stream back.
//! Requests no route claims are served from the SPA directory (or answered 404).

pub mod bounds;
mod client;
pub mod headers;
pub mod identity;
pub mod routes;
pub mod spa;
mod websocket;

pub use client::{set_worker, UpstreamClient, UpstreamClients};
use websocket::forward_websocket;
pub use websocket::is_websocket_upgrade;

use crate::app::AppState;
use crate::auth::gate::{self, Ask, Passed, Refused};
use crate::auth::Identity;
use crate::config::AuthMode;
use crate::error::AppError;
use crate::oidc::return_to::login_url;
use crate::telemetry::{RequestUser, RouteLabel};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use headers::{
    clean_response, set_forwarded, strip_cookies, strip_hop_by_hop, strip_protected, ClientInfo,
};
use http::{header, HeaderValue, Uri, Version};
use routes::Route;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Fallback handler: everything outside `/auth`. The request's path is
/// canonical already (the router's edge made it so); the route is looked up
/// once, here.
pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let choice = state.routes.choose(req.uri().path());
    let route = choice.map(|c| c.route);
    // The metrics label: the route's configured id, never the raw path.
    let label = match route {
        Some(route) => route.id.clone(),
        None if state.spa.is_some() => "spa".into(),
        None => "unmatched".into(),
    };
    let mut resp = match route {
        Some(route) => {
            let exact = choice.and_then(|c| c.exact).map(|r| &r.access);
            proxy(&state, route, exact, req).await
        }
        None => serve_spa(&state, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

/// For a navigation to a route with `login_idp`: its sign-in URL.
fn idp_login_url(state: &AppState, route: &Route, req: &Request) -> Option<String> {
    let idp = route.login_idp.as_deref()?;
    if !crate::error::wants_html(req.headers()) {
        return None;
    }
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Some(login_url(
        &state.config.server.auth_prefix,
        Some(target),
        Some(idp),
    ))
}

/// The proxy's steps for a routed request: the gate (method, authenticate,
/// authorize, CSRF, refresh; for `route`, and for `exact`, the route of the
/// path's exact spelling where that is another), then rewrite, send and
/// stream back.
async fn proxy(
    state: &Arc<AppState>,
    route: &Route,
    exact: Option<&routes::Access>,
    req: Request,
) -> Response {
    let websocket = is_websocket_upgrade(req.method(), req.headers());
    let ask = Ask {
        method: req.method(),
        headers: req.headers(),
        websocket,
    };
    let Passed { identity, reissue } =
        match gate::pass_choice(state, &route.access, exact, ask).await {
            Ok(passed) => passed,
            // A route with `login_idp` sends navigations to that federated IdP.
            Err(Refused {
                error: AppError::Unauthenticated,
                ..
            }) if idp_login_url(state, route, &req).is_some() => {
                return crate::error::redirect_response(
                    http::StatusCode::FOUND,
                    &idp_login_url(state, route, &req).unwrap_or_default(),
                    &http::HeaderMap::new(),
                );
            }
            Err(Refused { error, user }) => return with_user(error.into_response(), user),
        };
    let user = identity
        .claims()
        .and_then(|c| c.get("sub"))
        .and_then(|s| s.as_str())
        .map(str::to_string);
    let forwarded = if websocket {
        forward_websocket(state, route, &identity, user.as_deref(), req).await
    } else {
        forward(state, route, &identity, user.as_deref(), req).await
    };
    let mut resp = match forwarded {
        Ok(mut resp) => {
            // Who may keep the upstream's answer (the gateway's own errors say no-store).
            let rule = headers::CacheRule {
                signed_in: !matches!(identity, Identity::Anonymous),
                private: route.cache_private,
                varies_with_cookie: route.access.auth == AuthMode::Optional,
            };
            headers::apply_cache_rule(resp.headers_mut(), rule);
            resp
        }
        Err(e) => e.into_response(),
    };
    // The re-sealed cookie makes the answer uncacheable: the edge's rule
    // (`no_store_with_gateway_cookie`) sees it there.
    if let Some(cookie) = reissue {
        resp.headers_mut()
            .append(header::SET_COOKIE, state.cookies.session(&cookie));
    }
    with_user(resp, user)
}

/// Names the caller for the request's log line, whatever the answer.
fn with_user(mut resp: Response, user: Option<String>) -> Response {
    if let Some(sub) = user {
        resp.extensions_mut().insert(RequestUser(sub));
    }
    resp
}

/// The address of the connection's peer (the client, or a proxy in front).
pub fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Whether the peer is one of `server.trusted_proxies`, whose `X-Forwarded-*`
/// (and request id) are believed.
pub fn peer_is_trusted(state: &AppState, extensions: &http::Extensions) -> bool {
    peer_ip(extensions).is_some_and(|ip| {
        state
            .config
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip))
    })
}

fn client_info(state: &AppState, req: &Request) -> ClientInfo {
    let peer = peer_ip(req.extensions()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let url = &state.config.server.public_url;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    ClientInfo {
        peer,
        trusted_peer: peer_is_trusted(state, req.extensions()),
        public_proto: url.scheme().to_string(),
        public_host: host,
    }
}

/// Steps 4-6 for a plain request: rewrite, send with the route's timeout, stream back.
async fn forward(
    state: &AppState,
    route: &Route,
    identity: &Identity,
    user: Option<&str>,
    req: Request,
) -> Result<Response, AppError> {
    let client = client_info(state, &req);
    let (mut parts, body) = req.into_parts();
    let max = route.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(AppError::BodyTooLarge);
    }
    let machine = machine_token(state, route, user).await?;
    rewrite(state, route, identity, machine, &client, &mut parts, false)?;
    // Bodies stream; one larger than declared (or chunked past the limit) is
    // cut off, and one that stops arriving ends the request (408).
    let body = bounds::IdleBody::new(body, state.config.server.body_timeout);
    let body = Body::new(http_body_util::Limited::new(body, max as usize));
    let (resp, slot) = send(state, route, user, http::Request::from_parts(parts, body)).await?;
    let (mut parts, body) = resp.into_parts();
    clean_response(&mut parts.headers, &state.cookies.names());
    Ok(Response::from_parts(
        parts,
        watch_body(state, route, user, body, slot),
    ))
}

/// The upstream's response body, streamed on as it comes. One that ends
/// early (the upstream closed or reset mid-body) is counted and logged: the
/// status line went out long before, so the request's own line says 200.
fn watch_body(
    state: &AppState,
    route: &Route,
    user: Option<&str>,
    body: hyper::body::Incoming,
    slot: bounds::Slot,
) -> Body {
    use http_body_util::BodyExt;
    let metrics = state.metrics.clone();
    let route = route.id.clone();
    let user = user.map(str::to_string);
    Body::new(body.map_err(move |e| {
        // The upstream slot is held for as long as the body streams.
        let _ = &slot;
        metrics.count("oidc_bff_upstream_bodies_cut_total", &[("route", &route)]);
        tracing::warn!(
            route = %route,
            sub = %crate::claims::log_text(user.as_deref().unwrap_or("-")),
            error = %crate::claims::log_text(&e),
            "upstream response body cut short"
        );
        e
    }))
}

/// For a `token = "client"` route: the gateway's machine token, as an
/// `Authorization` value. A token endpoint that fails fails the request
/// (502): nothing else is sent in its place.
async fn machine_token(
    state: &AppState,
    route: &Route,
    user: Option<&str>,
) -> Result<Option<HeaderValue>, AppError> {
    let Some(grant) = &route.machine else {
        return Ok(None);
    };
    let value = state.machine.authorization(grant).await.inspect_err(|e| {
        tracing::warn!(route = %route.id, sub = %crate::claims::log_text(user.unwrap_or("-")), error = %crate::claims::log_text(&e), "no machine token for the upstream");
    })?;
    Ok(Some(value))
}

/// Step 4: the upstream URI and the request headers, cleaned and with identity attached.
fn rewrite(
    state: &AppState,
    route: &Route,
    identity: &Identity,
    machine: Option<HeaderValue>,
    client: &ClientInfo,
    parts: &mut http::request::Parts,
    websocket: bool,
) -> Result<(), AppError> {
    // The host the client asked for: an HTTP/2 request's `:authority` (or
    // an absolute-form target's; the edge made sure a `Host` agrees), else `Host`.
    let client_host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let target = route.upstream_url(parts.uri.path(), parts.uri.query());
    parts.uri = target
        .parse::<Uri>()
        .map_err(|_| AppError::BadRequest("the request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    if websocket {
        h.remove(header::CONTENT_LENGTH);
        // RFC 6455 §4.1: the handshake needs these two hop-by-hop headers end to end.
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    strip_cookies(h, &state.cookies.names());
    // Identity and route-override headers, as any server would spell them,
    // never come from the client, on any route.
    strip_protected(
        h,
        &state.protected_headers,
        route.access.auth != AuthMode::Public,
    );
    set_forwarded(h, client);
    // The upstream's own authority, from the URI (hyper sets it), unless the
    // upstream needs the name the browser used.
    h.remove(header::HOST);
    if route.preserve_host {
        if let Some(host) = client_host {
            h.insert(header::HOST, host);
        }
    }
    if let Some(claims) = identity.claims() {
        let groups_claim = state.config.provider.groups_claim();
        if let Some(spec) = &route.identity_headers {
            for (name, value) in identity::identity_headers(spec, claims, groups_claim) {
                h.insert(name, value);
            }
        }
        if let Some(aud) = &route.assertion_audience {
            let signed = state
                .assertions
                .sign(claims, groups_claim, aud, state.clock.now_secs());
            if let Some(mut value) = signed.and_then(|t| HeaderValue::from_str(&t).ok()) {
                value.set_sensitive(true);
                h.insert(state.assertion_header.clone(), value);
            }
        }
    }
    // A session's token (as the route says), or the gateway's machine token;
    // a verified API client's own header goes on unchanged.
    if let Some(value) = machine.or_else(|| identity.authorization(route.access.token)) {
        h.insert(header::AUTHORIZATION, value);
    }
    Ok(())
}

/// Step 5: send, bounded by the route's timeout (until the response head
/// arrives), holding an upstream slot of the client connection's share.
async fn send(
    state: &AppState,
    route: &Route,
    user: Option<&str>,
    req: http::Request<Body>,
) -> Result<(http::Response<hyper::body::Incoming>, bounds::Slot), AppError> {
    let conn = req.extensions().get::<bounds::ConnectionShare>();
    let slot = state.upstream_slots.take(conn).inspect_err(|_| {
        tracing::warn!(route = %route.id, "no upstream slot for this request");
    })?;
    let start = std::time::Instant::now();
    let result = tokio::time::timeout(route.timeout, state.upstream.here().request(req)).await;
    state.metrics.observe(
        "oidc_bff_upstream_duration_seconds",
        &[("route", &route.id)],
        start.elapsed().as_secs_f64(),
    );
    match result {
        Err(_) => Err(AppError::UpstreamTimeout),
        Ok(Err(e)) if caused_by_body_limit(&e) => Err(AppError::BodyTooLarge),
        Ok(Err(e)) if caused_by::<bounds::BodyIdle>(&e) => {
            tracing::info!(route = %route.id, error = %e, "request body stopped arriving; upstream request abandoned");
            Err(AppError::RequestTimeout)
        }
        // The client's own body broke off or was malformed: its fault, not the upstream's.
        Ok(Err(e)) if caused_by_client_body(&e) => {
            tracing::info!(route = %route.id, error = %crate::claims::log_text(&e), "request body could not be read");
            Err(AppError::BadRequest("the request body could not be read"))
        }
        Ok(Err(e)) => {
            tracing::warn!(route = %route.id, sub = %crate::claims::log_text(user.unwrap_or("-")), error = %crate::claims::log_text(&e), "upstream request failed");
            Err(AppError::UpstreamUnreachable(route.id.clone()))
        }
        Ok(Ok(r)) => Ok((r, slot)),
    }
}

/// A streamed body that went past the route's limit aborts the upstream request.
fn caused_by_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<http_body_util::LengthLimitError>(e)
}

/// Whether an error of type `T` is anywhere in `e`'s source chain.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error polling the request body (hyper's "user" errors): the client's
/// body ended early or was malformed.
fn caused_by_client_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

async fn serve_spa(state: &AppState, req: Request) -> Result<Response, AppError> {
    match &state.spa {
        Some(spa) => spa.serve(req).await,
        None => Err(AppError::NotFound),
    }
}
