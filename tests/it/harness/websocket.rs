//! WebSocket clients for tests, bounded: a handshake or a message that never
//! comes fails the test within 10 s instead of hanging it.

use std::time::Duration;

/// The WebSocket's next message; a panic naming `what` if none comes within
/// 10 s (a hung tunnel must fail the test, not hang it).
pub async fn ws_next<S>(ws: &mut S, what: &str) -> tokio_tungstenite::tungstenite::Message
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap_or_else(|_| panic!("no WebSocket message within 10 s: {what}"))
        .unwrap_or_else(|| panic!("the WebSocket ended: {what}"))
        .unwrap_or_else(|e| panic!("WebSocket error ({e}): {what}"))
}

/// `connect_async`, bounded: a handshake that never answers fails the test.
pub async fn ws_connect(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("the WebSocket handshake is answered within 10 s")
}
