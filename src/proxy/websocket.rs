//! WebSocket handshakes: recognised strictly (RFC 6455 §4.1), authenticated
//! like any request by the caller, forwarded, and on 101 both upgraded
//! connections spliced together for as long as they live, and, for a tunnel
//! opened on a session, no longer than the session: a tunnel would otherwise
//! outlive a logout, the admin API ending the session, or a revoked grant.

use super::headers::{clean_response, drop_gateway_cookies};
use super::routes::Route;
use super::{client_info, machine_token, rewrite, send, watch_body};
use crate::app::AppState;
use crate::auth::refresh::Refresher;
use crate::auth::Identity;
use crate::error::AppError;
use crate::session::{Session, Sessions};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header;
use std::sync::Arc;
use std::time::Duration;

/// How often an open tunnel looks whether its session still exists.
pub const SESSION_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Is this a WebSocket opening handshake (RFC 6455 §4.1: a GET with
/// `Upgrade: websocket`, `Connection: upgrade` and a `Sec-WebSocket-Key`)?
/// Anything else is an ordinary request, CSRF rule and all.
pub fn is_websocket_upgrade(method: &http::Method, headers: &http::HeaderMap) -> bool {
    if method != http::Method::GET || !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        return false;
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

/// The WebSocket path: authenticated like any request, then the handshake is
/// forwarded and, on 101, both upgraded connections are spliced together.
pub(super) async fn forward_websocket(
    state: &AppState,
    route: &Route,
    identity: &Identity,
    user: Option<&str>,
    mut req: Request,
) -> Result<Response, AppError> {
    // A handshake has no body (RFC 6455 §4.1). One that declares a body
    // would leave it unread on a pooled upstream connection when the upstream
    // declines the upgrade: the next request on it would be the client's.
    let h = req.headers();
    let declares_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if declares_body {
        return Err(AppError::BadRequest("a WebSocket handshake has no body"));
    }
    let client = client_info(state, &req);
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    let machine = machine_token(state, route, user).await?;
    rewrite(state, route, identity, machine, &client, &mut parts, true)?;
    let (mut resp, slot) = send(
        state,
        route,
        user,
        http::Request::from_parts(parts, Body::empty()),
    )
    .await?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        // The upstream declined: pass its answer on as an ordinary response.
        let (mut parts, body) = resp.into_parts();
        clean_response(&mut parts.headers, &state.cookies.names());
        return Ok(Response::from_parts(
            parts,
            watch_body(state, route, user, body, slot),
        ));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let route_id = route.id.clone();
    let ended = identity
        .session()
        .map(|s| session_ended(state.sessions.clone(), state.refresher.clone(), s.clone()));
    state.tunnels.spawn(async move {
        // The tunnel holds its upstream slot until it closes.
        let _slot = slot;
        match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => {
                let mut c = hyper_util::rt::TokioIo::new(c);
                let mut u = hyper_util::rt::TokioIo::new(u);
                let splice = tokio::io::copy_bidirectional(&mut c, &mut u);
                // Both connections are dropped (closed) when the session ends.
                let spliced = match ended {
                    Some(ended) => tokio::select! {
                        r = splice => Some(r),
                        () = ended => None,
                    },
                    None => Some(splice.await),
                };
                match spliced {
                    Some(Err(e)) => {
                        tracing::debug!(route = %route_id, error = %crate::claims::log_text(&e), "websocket tunnel closed")
                    }
                    None => {
                        tracing::info!(route = %route_id, "websocket tunnel closed: its session ended")
                    }
                    Some(Ok(_)) => {}
                }
            }
            (c, u) => {
                tracing::warn!(route = %route_id, client = c.is_ok(), upstream = u.is_ok(), "websocket upgrade failed")
            }
        }
    });
    let mut out = Response::new(Body::empty());
    *out.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    drop_gateway_cookies(out.headers_mut(), &state.cookies.names());
    Ok(out)
}

/// Resolves when a tunnel's session has ended: its record is gone (logout,
/// the admin API, back-channel logout, its idle or absolute timeout; on any
/// replica sharing the store), or a revalidation (`session.revalidate_every`)
/// found its grant revoked. A store or IdP that cannot answer ends nothing.
async fn session_ended(sessions: Arc<Sessions>, refresher: Refresher, session: Session) {
    let id = session.id;
    loop {
        tokio::time::sleep(SESSION_CHECK_EVERY).await;
        let data = match sessions.reload(&id).await {
            Ok(Some(data)) => data,
            Ok(None) => return,
            Err(_) => continue,
        };
        if refresher.revalidation_due(&data) {
            let session = Session {
                id: id.clone(),
                data: Arc::new(data),
                reissue_cookie: None,
            };
            if let Err(AppError::Unauthenticated) = refresher.ensure_fresh(session).await {
                return;
            }
        }
    }
}
