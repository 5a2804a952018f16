//! The serving loop under hostile and long-running traffic: a flood of idle
//! and half-sent connections under a 1024-file limit locks nobody out; the
//! header-read and keep-alive timeouts close what they should, when they
//! should, and nothing else (long downloads, slow uploads, WebSockets); and a
//! SIGTERM under keep-alive load resets no connection.
//!
//! The HTTP/1.1 clients here are raw TCP, so that every connection reuse,
//! reset and `Connection: close` is seen (pooled clients retry silently).

use crate::harness::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One HTTP/1.1 response, read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server said this is the connection's last response.
    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// A raw HTTP/1.1 client connection that keeps its read buffer between
/// responses (keep-alive) and counts its requests.
#[derive(Debug)]
struct Http1 {
    io: BufReader<TcpStream>,
    requests: usize,
}

impl Http1 {
    async fn connect(addr: &str) -> std::io::Result<Http1> {
        Ok(Http1 {
            io: BufReader::new(TcpStream::connect(addr).await?),
            requests: 0,
        })
    }

    /// Sends `GET path` with `headers` (each "Name: value") and reads the answer.
    async fn get(&mut self, path: &str, headers: &[&str]) -> std::io::Result<Reply> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send(req.as_bytes()).await?;
        self.read_reply().await
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.requests += 1;
        self.io.get_mut().write_all(bytes).await
    }

    async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let eof =
            || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF before a response");
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            return Err(eof());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(eof());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("a header line");
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = reply.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.io.read_exact(&mut body).await?;
            reply.body = body;
        } else if reply
            .header("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                line.clear();
                self.io.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|_| eof())?;
                let mut chunk = vec![0; size + 2];
                self.io.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                reply.body.extend_from_slice(&chunk[..size]);
            }
        }
        Ok(reply)
    }

    /// Waits for the server to close the connection: how long it took and
    /// whether it was a clean EOF (not a reset), or `None` if it did not
    /// close within `within`. Panics on data.
    async fn closed_within(&mut self, within: Duration) -> Option<(Duration, bool)> {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        match tokio::time::timeout(within, self.io.read(&mut buf)).await {
            Ok(Ok(0)) => Some((start.elapsed(), true)),
            Ok(Err(_)) => Some((start.elapsed(), false)),
            Ok(Ok(n)) => panic!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => None,
        }
    }
}

/// The gateway's open file descriptors, from /proc.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Polls `check` every 20 ms until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes sure this test process may open `files` files.
fn allow_open_files(files: u64) {
    let (soft, _) = oidc_bff::serve::raise_nofile_limit().expect("getrlimit");
    assert!(
        soft.is_none_or(|s| s >= files),
        "this test needs {files} open files; the hard limit allows {soft:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_half_sent_connections_locks_nobody_out() {
    const FLOOD: usize = 1500;
    allow_open_files(FLOOD as u64 + 500);
    let ports = ProcessPorts::new();
    let idp = idp_for_gateways(&[&ports.url]);
    let upstream = Upstream::start(None).await;
    // Two serving threads: each gets half the cap, and its own accept queue.
    let toml = format!(
        "{server}workers = 2\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"30s\"\nlog_format = \"json\"\n\n\
         [provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
         scopes = [\"openid\", \"email\", \"profile\"]\ninsecure_allow_http = true\n\
         [session]\nkeys = [\"{key}\"]\n[[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        key = test_key(),
        up = upstream.url
    );
    let mut gw = GatewayProcess::start_with_nofile(&ports, &toml, 1024).await;
    gw.wait_ready(Duration::from_secs(10)).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("1024")),
        "prlimit did not apply:\n{limits}"
    );
    // 1024 files: (1024 - 64 reserved - 64 admin) / 2 = 448, 224 per thread.
    let log = gw.log();
    let limits_line: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("connection limits"))
        })
        .unwrap_or_else(|| panic!("no `connection limits` line in the log:\n{log}"));
    assert_eq!(limits_line["max_connections"], 10_000, "{limits_line}");
    assert_eq!(limits_line["effective"], 448, "{limits_line}");
    assert_eq!(limits_line["per_thread"], "[224, 224]", "{limits_line}");
    assert_eq!(limits_line["admin_effective"], 64, "{limits_line}");
    assert_eq!(limits_line["open_files_soft"], "1024", "{limits_line}");

    // A signed-in user, with a keep-alive connection that has served a request.
    let b = browser();
    let r = sign_in(&b, &gw.url, "alice", "/").await;
    let cookie = format!(
        "Cookie: oidc_bff={}",
        set_cookie_value(&r, "oidc_bff").unwrap()
    );
    let api = [cookie.as_str(), "X-CSRF: 1"];
    let addr = format!("127.0.0.1:{}", ports.port);
    let mut kept = Http1::connect(&addr).await.unwrap();
    assert_eq!(kept.get("/api/before", &api).await.unwrap().status, 200);

    // The flood: half connect and send nothing, half send a request head
    // without its final CRLF. Each reconnects once the gateway closes it.
    let stop = Arc::new(AtomicBool::new(false));
    let (connected, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let attackers: Vec<_> = (0..FLOOD)
        .map(|i| {
            let (addr, stop) = (addr.clone(), stop.clone());
            let (connected, closed) = (connected.clone(), closed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Ok(mut s)) =
                        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&addr))
                            .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    connected.fetch_add(1, Ordering::Relaxed);
                    if i % 2 == 1 && s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                        continue;
                    }
                    let mut buf = [0u8; 256];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    closed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    // Flooded: every attacker connected once, and the gateway is shedding them.
    eventually(Duration::from_secs(30), "the flood to connect", || {
        connected.load(Ordering::Relaxed) >= FLOOD && closed.load(Ordering::Relaxed) >= 500
    })
    .await;
    // At its cap: 448 client connections, plus listeners, upstream
    // connections, the log file.
    let flooded_files = open_files(gw.pid());
    assert!(
        flooded_files >= 448,
        "not flooded: {flooded_files} files open"
    );

    // (i) The signed-in user's keep-alive connection answers promptly ...
    let start = Instant::now();
    let r = kept.get("/api/kept", &api).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    // ... and so does a fresh connection: idle ones make room for it.
    let start = Instant::now();
    let mut fresh = tokio::time::timeout(Duration::from_secs(2), Http1::connect(&addr))
        .await
        .expect("connect within 2s")
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), fresh.get("/api/fresh", &api))
        .await
        .expect("an answer within 2s")
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let seen: Vec<String> = upstream
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.uri.clone())
        .collect();
    for uri in ["/api/kept", "/api/fresh"] {
        assert!(
            seen.iter().any(|u| u == uri),
            "the upstream did not see {uri}: {seen:?}"
        );
    }
    // The pooled client of the browser gets through too.
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        b.get(format!("{}/api/pooled", gw.url))
            .header("x-csrf", "1")
            .send(),
    )
    .await
    .expect("an answer within 3s")
    .unwrap();
    assert_eq!(r.status(), 200);

    // (ii) The admin listener answers on a fresh connection.
    let start = Instant::now();
    let mut admin = Http1::connect(&format!("127.0.0.1:{}", ports.admin_port))
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), admin.get("/healthz", &[]))
        .await
        .expect("/healthz within 2s")
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    // The cap kept the gateway inside its file limit: accept() never failed.
    assert!(gw.alive(), "the gateway died; log:\n{}", gw.log());
    assert!(flooded_files < 1024, "{flooded_files} files open");
    assert!(
        !gw.log().contains("accept failed"),
        "the gateway ran out of files; log:\n{}",
        gw.log()
    );

    // (iii) Without the flood, the header timeout itself: a half-sent
    // request and a silent connection are closed after 1 s, not before.
    stop.store(true, Ordering::Relaxed);
    for a in &attackers {
        a.abort();
    }
    for a in attackers {
        let _ = a.await;
    }
    let pid = gw.pid();
    eventually(
        Duration::from_secs(15),
        "the gateway to shed the flood",
        || open_files(pid) < 100,
    )
    .await;
    let mut half = Http1::connect(&addr).await.unwrap();
    half.send(b"GET /api/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = Http1::connect(&addr).await.unwrap();
    let (half_closed, silent_closed) = tokio::join!(
        half.closed_within(Duration::from_secs(5)),
        silent.closed_within(Duration::from_secs(5))
    );
    for (what, took) in [("half-sent", half_closed), ("silent", silent_closed)] {
        let (took, _) =
            took.unwrap_or_else(|| panic!("the {what} connection was not closed within 5s"));
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_millis(2500),
            "the {what} connection was closed after {took:?}, not about 1s"
        );
    }
    // The kept connection is still good: it was never idle for 30 s.
    assert_eq!(kept.get("/api/after", &api).await.unwrap().status, 200);
}

/// The size of `/big`: 50 MB.
const BIG: usize = 800 * 64 * 1024;

/// An upstream for long-running requests: a download that trickles, a
/// large download, an upload sink, and a WebSocket echo.
async fn slow_upstream() -> String {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::routing::{any, get, post};
    use futures_util::StreamExt;
    let app = axum::Router::new()
        .route(
            "/trickle",
            get(|| async {
                // Ten events, 300 ms apart: 2.7 s, past both timeouts below.
                let events = futures_util::stream::unfold(0u32, |i| async move {
                    if i == 10 {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(format!("data: {i}\n\n"))),
                        i + 1,
                    ))
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(events),
                )
            }),
        )
        .route("/quick", get(|| async { "quick" }))
        .route(
            "/big",
            get(|| async {
                // 50 MB in 64 KiB chunks, made as they are read.
                let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = futures_util::stream::iter(
                    (0..BIG / (64 * 1024)).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                (
                    [("content-length", BIG.to_string())],
                    axum::body::Body::from_stream(chunks),
                )
            }),
        )
        .route(
            "/upload",
            post(|req: axum::extract::Request| async move {
                let mut body = req.into_body().into_data_stream();
                let mut n = 0usize;
                // A body the gateway abandons ends in an error here.
                while let Some(Ok(chunk)) = body.next().await {
                    n += chunk.len();
                }
                n.to_string()
            }),
        )
        .route(
            "/ws",
            any(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        if let Message::Text(t) = msg {
                            let echo = Message::Text(format!("echo: {}", t.as_str()).into());
                            if socket.send(echo).await.is_err() {
                                break;
                            }
                        }
                    }
                })
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

#[tokio::test]
async fn long_requests_outlive_short_timeouts() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let up = slow_upstream().await;
    let idp = RogueIdp::start().await;
    let routes = format!(
        "[[route]]\npath = \"/slow/\"\nupstream = \"{up}\"\nstrip_prefix = true\nauth = \"public\"\ntimeout = \"10s\"\n\
         [[route]]\npath = \"/live/\"\nupstream = \"{up}\"\nstrip_prefix = true\nwebsocket = true\n"
    );
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replace(
        "[server]\n",
        "[server]\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"2s\"\n\
         write_timeout = \"1s\"\nbody_timeout = \"1s\"\n",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let (state, nonce) = crate::negative::start_login(&b, &gw.url, "/").await;
    idp.answer_with_id_token(crate::negative::good_claims(&idp.issuer, &nonce));
    let r = crate::negative::callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    let cookie = set_cookie_value(&r, "oidc_bff").unwrap();
    let addr = gw.url.trim_start_matches("http://").to_string();

    // A download that trickles for 2.7 s: nothing cuts it.
    let download = async {
        let start = Instant::now();
        let mut c = Http1::connect(&addr).await.unwrap();
        let r = c.get("/slow/trickle", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(text.matches("data: ").count(), 10, "{text}");
        assert!(start.elapsed() >= Duration::from_millis(2500));
    };
    // 50 MB read slowly but steadily (512 KiB every 50 ms, over 5 s): the
    // write timeout (1 s) never cuts a client that keeps reading.
    let big = async {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /slow/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let (mut got, mut first) = (0usize, Vec::new());
        let mut buf = vec![0u8; 64 * 1024];
        'reading: loop {
            let mut tick = 0;
            while tick < 512 * 1024 {
                let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
                    .await
                    .expect("the download stalled")
                    .expect("the download was cut");
                if n == 0 {
                    break 'reading;
                }
                if first.len() < 64 {
                    first.extend_from_slice(&buf[..n.min(64)]);
                }
                tick += n;
                got += n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            first.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&first)
        );
        assert!(got > BIG, "only {got} of {BIG} bytes arrived");
        assert!(
            start.elapsed() >= Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
    };
    // An upload that trickles for 2.7 s (the head came at once), 300 ms
    // between pieces: under the body timeout (1 s).
    let upload = async {
        let mut c = Http1::connect(&addr).await.unwrap();
        c.send(b"POST /slow/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
            .await
            .unwrap();
        for i in 0..10 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            c.io.get_mut().write_all(&[b'x'; 1000]).await.unwrap();
        }
        let r = c.read_reply().await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"10000".as_slice()));
    };
    // A WebSocket that stays quiet past all three timeouts, then still echoes.
    let websocket = async {
        let mut req = format!("{}/live/ws", gw.url.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("origin", gw.url.parse().unwrap());
        req.headers_mut()
            .insert("cookie", format!("oidc_bff={cookie}").parse().unwrap());
        let (mut ws, resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .expect("the WebSocket handshake is answered within 10 s")
        .expect("handshake");
        assert_eq!(resp.status(), 101);
        ws.send(Message::Text("one".into())).await.unwrap();
        assert_eq!(
            ws_next(&mut ws, "the echo of the first message").await,
            Message::Text("echo: one".into())
        );
        let quiet = tokio::time::timeout(Duration::from_millis(2700), ws.next()).await;
        assert!(quiet.is_err(), "the tunnel ended while quiet: {quiet:?}");
        ws.send(Message::Text("two".into())).await.unwrap();
        assert_eq!(
            ws_next(&mut ws, "the echo after the quiet spell").await,
            Message::Text("echo: two".into())
        );
    };
    // A keep-alive connection between requests: open past the header
    // timeout (1 s), closed by the keep-alive timeout (2 s).
    let keepalive = async {
        let mut c = Http1::connect(&addr).await.unwrap();
        let r = c.get("/slow/quick", &[]).await.unwrap();
        assert!(r.status == 200 && !r.closes(), "{r:?}");
        let (took, clean) = c
            .closed_within(Duration::from_secs(5))
            .await
            .expect("the idle connection was not closed within 5s");
        assert!(clean, "the idle connection was reset, not closed");
        assert!(
            took >= Duration::from_millis(1800) && took <= Duration::from_millis(3500),
            "the idle keep-alive connection closed after {took:?}, not about 2s"
        );
    };
    tokio::join!(download, big, upload, websocket, keepalive);
}

/// A gateway in front of [`slow_upstream`] at `/slow/` (public), with
/// `server` added to its `[server]` section.
async fn slow_gateway(server: &str) -> (Gateway, RogueIdp) {
    let up = slow_upstream().await;
    let idp = RogueIdp::start().await;
    let routes = format!(
        "[[route]]\npath = \"/slow/\"\nupstream = \"{up}\"\nstrip_prefix = true\nauth = \"public\"\n"
    );
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, &routes)
        .replace("[server]\n", &format!("[server]\n{server}\n"));
    (Gateway::start(reserved, &toml).await, idp)
}

#[tokio::test]
async fn one_h2_connection_with_shut_windows_holds_only_its_share() {
    let (gw, _idp) = slow_gateway("write_timeout = \"1s\"\nmax_upstream_per_connection = 3").await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let slots = gw.state.upstream_slots.clone();
    let total = slots.total();
    assert_eq!(slots.per_connection(), 3);

    // A client that never opens its stream windows: no DATA can reach it.
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (mut h2c, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = |path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap()
    };
    let mut pending = Vec::new();
    for _ in 0..8 {
        h2c = h2c.ready().await.unwrap();
        pending.push(h2c.send_request(req("/slow/big"), true).unwrap().0);
    }
    let (mut held, mut busy) = (Vec::new(), 0);
    for resp in pending {
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("a response head within 10 s")
            .unwrap();
        match resp.status().as_u16() {
            200 => held.push(resp.into_body()),
            503 => busy += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((held.len(), busy), (3, 5), "the connection's share is 3");
    assert_eq!(slots.available(), total - 3);
    // The listener's SETTINGS: a stream cap, and no RFC 8441 extended CONNECT.
    assert_eq!(h2c.current_max_send_streams(), 100);
    assert!(!h2c.is_extended_connect_protocol_enabled());

    // Every other client is served meanwhile.
    let mut other = Http1::connect(&addr).await.unwrap();
    assert_eq!(other.get("/slow/quick", &[]).await.unwrap().status, 200);

    // Past the write timeout the stalled streams are reset, their slots
    // come back, and the connection itself goes on.
    let start = Instant::now();
    for mut body in held {
        let end = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .expect("the stalled stream was not ended within 10 s");
        match end {
            Some(Err(e)) => assert_eq!(e.reason(), Some(h2::Reason::CANCEL), "{e}"),
            other => panic!("the stalled stream ended with {other:?}, not a reset"),
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    eventually(Duration::from_secs(5), "the slots come back", || {
        slots.available() == total
    })
    .await;
    h2c = h2c.ready().await.unwrap();
    let resp = h2c.send_request(req("/slow/quick"), true).unwrap().0;
    assert_eq!(resp.await.unwrap().status(), 200);
}

#[tokio::test]
async fn http1_clients_that_stop_reading_are_cut_after_the_write_timeout() {
    let (gw, _idp) = slow_gateway("write_timeout = \"3s\"\nmax_connections = 4").await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let slots = gw.state.upstream_slots.clone();
    // As many clients as the listener takes ask for 50 MB and, once their
    // download has begun, read nothing more.
    let mut stalled = Vec::new();
    for i in 0..4 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /slow/big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut head))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "download {i}");
        stalled.push(c);
    }
    assert_eq!(
        slots.total() - slots.available(),
        4,
        "the four downloads hold a slot each"
    );
    // A new client waits in the backlog until a stalled one is cut.
    let fifth = tokio::time::timeout(Duration::from_secs(15), async {
        let mut c = Http1::connect(&addr).await?;
        c.get("/slow/quick", &[]).await
    })
    .await
    .expect("a new client was not served within 15 s")
    .unwrap();
    assert_eq!(fifth.status, 200);
    // The stalled connections were closed: what is buffered drains, then EOF.
    let mut buf = vec![0u8; 256 * 1024];
    for mut c in stalled {
        let mut got = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
                .await
                .expect("a stalled connection was left open")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(
            got < BIG,
            "a stalled client got the whole body ({got} bytes)"
        );
    }
    eventually(Duration::from_secs(5), "the slots come back", || {
        slots.available() == slots.total()
    })
    .await;
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_gets_408() {
    let (gw, _idp) = slow_gateway("body_timeout = \"1s\"").await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let slots = gw.state.upstream_slots.clone();
    let mut c = Http1::connect(&addr).await.unwrap();
    c.send(b"POST /slow/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
        .await
        .unwrap();
    c.io.get_mut().write_all(&[b'x'; 1000]).await.unwrap();
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), c.read_reply())
        .await
        .expect("no answer within 10 s")
        .unwrap();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("request_timeout"),
        "{r:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    eventually(Duration::from_secs(5), "the slot comes back", || {
        slots.available() == slots.total()
    })
    .await;
}

/// What one request of the drain test came to.
#[derive(Debug, Clone)]
enum Outcome {
    /// A full response; whether it said `Connection: close`.
    Answered { close: bool },
    /// The connection attempt was refused: the listener is closed.
    Refused,
    /// Anything else: a reset, an EOF before the response, a timeout.
    Failed(String),
}

#[derive(Debug, Clone)]
struct Attempt {
    sent: Instant,
    reused: bool,
    outcome: Outcome,
}

impl Attempt {
    /// When it was sent, in seconds since `signal` (negative: before).
    fn at(&self, signal: Instant) -> f64 {
        if self.sent >= signal {
            (self.sent - signal).as_secs_f64()
        } else {
            -(signal - self.sent).as_secs_f64()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_keepalive_load_resets_no_connection() {
    let upstream = Upstream::start(None).await;
    let ports = ProcessPorts::new();
    let idp = RogueIdp::start().await;
    let toml = format!(
        "{server}shutdown_delay = \"1s\"\nshutdown_timeout = \"5s\"\nworkers = 2\n\n\
         [provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\ninsecure_allow_http = true\n\
         [session]\nkeys = [\"{key}\"]\n[[route]]\npath = \"/api/\"\nupstream = \"{up}\"\nauth = \"public\"\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        key = test_key(),
        up = upstream.url,
    );
    let mut gw = GatewayProcess::start(&ports, &toml).await;
    gw.wait_ready(Duration::from_secs(10)).await;
    let addr = format!("127.0.0.1:{}", ports.port);

    // A keep-alive connection that goes quiet: closed with a FIN once the
    // listener closes, never reset.
    let mut idle = Http1::connect(&addr).await.unwrap();
    assert_eq!(idle.get("/api/idle", &[]).await.unwrap().status, 200);
    // An h2c connection: it gets GOAWAY at the stop signal and ends cleanly.
    let h2 = TcpStream::connect(&addr).await.unwrap();
    let (mut h2_send, h2_conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let h2_req = || {
        http::Request::get(format!("http://127.0.0.1:{}/api/h2", ports.port))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(h2_send.send_request(h2_req()).await.unwrap().status(), 200);

    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut log = Vec::new();
                let mut conn: Option<Http1> = None;
                let give_up = Instant::now() + Duration::from_secs(20);
                while Instant::now() < give_up {
                    let c = match conn.take() {
                        Some(c) => c,
                        None => {
                            let sent = Instant::now();
                            match tokio::time::timeout(
                                Duration::from_secs(5),
                                Http1::connect(&addr),
                            )
                            .await
                            {
                                Ok(Ok(c)) => c,
                                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                    log.push(Attempt {
                                        sent,
                                        reused: false,
                                        outcome: Outcome::Refused,
                                    });
                                    break;
                                }
                                other => {
                                    log.push(Attempt {
                                        sent,
                                        reused: false,
                                        outcome: Outcome::Failed(format!("connect: {other:?}")),
                                    });
                                    break;
                                }
                            }
                        }
                    };
                    let mut c = c;
                    let (sent, reused) = (Instant::now(), c.requests > 0);
                    match tokio::time::timeout(Duration::from_secs(5), c.get("/api/loop", &[]))
                        .await
                    {
                        Ok(Ok(r)) if r.status == 200 => {
                            let close = r.closes();
                            log.push(Attempt {
                                sent,
                                reused,
                                outcome: Outcome::Answered { close },
                            });
                            if !close {
                                conn = Some(c);
                            }
                        }
                        other => {
                            log.push(Attempt {
                                sent,
                                reused,
                                outcome: Outcome::Failed(format!("{other:?}")),
                            });
                            break;
                        }
                    }
                }
                log
            })
        })
        .collect();
    // Load first: the clients reuse their connections.
    let start = Instant::now();
    eventually(
        Duration::from_secs(10),
        "requests before the signal",
        || upstream.count() >= 200 || start.elapsed() > Duration::from_secs(3),
    )
    .await;
    let signalled = Instant::now();
    gw.signal("TERM");

    // HTTP/2: GOAWAY, and the connection ends without an error.
    let h2_end = tokio::time::timeout(Duration::from_millis(900), h2_conn)
        .await
        .expect("the h2c connection did not end during the delay")
        .unwrap();
    assert!(h2_end.is_ok(), "the h2c connection ended with {h2_end:?}");
    // The quiet keep-alive connection: a clean EOF once the listener closes.
    let (_, clean) = idle
        .closed_within(Duration::from_secs(5))
        .await
        .expect("the idle keep-alive connection was not closed");
    assert!(clean, "the idle connection was reset, not closed");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "the idle connection closed {took:?} after SIGTERM, before the listener"
    );

    let mut attempts = Vec::new();
    for c in clients {
        attempts.extend(c.await.unwrap());
    }
    let exit = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the process exits");
    assert!(exit.success(), "exit status {exit:?}; log:\n{}", gw.log());

    let failed: Vec<String> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Failed(why) => Some(format!(
                "sent {:.3}s after SIGTERM on a {} connection: {why}",
                a.at(signalled),
                if a.reused { "reused" } else { "new" }
            )),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "requests failed: {failed:#?}");
    let before: Vec<_> = attempts.iter().filter(|a| a.at(signalled) < 0.0).collect();
    assert!(
        before.iter().filter(|a| a.reused).count() >= 20,
        "too little keep-alive reuse before the signal: {} requests",
        before.len()
    );
    // (A request sent just before the signal may be answered after it.)
    assert!(
        before
            .iter()
            .filter(|a| a.at(signalled) < -0.2)
            .all(|a| matches!(a.outcome, Outcome::Answered { close: false })),
        "Connection: close before the signal"
    );
    // From the signal on (give it 200 ms to arrive), every response closes
    // its connection, during the whole delay.
    let during: Vec<_> = attempts
        .iter()
        .filter(|a| a.at(signalled) > 0.2 && matches!(a.outcome, Outcome::Answered { .. }))
        .collect();
    assert!(
        during
            .iter()
            .all(|a| matches!(a.outcome, Outcome::Answered { close: true })),
        "a response during the delay kept its connection open: {during:#?}"
    );
    assert!(
        during.iter().any(|a| a.at(signalled) > 0.7),
        "no response late in the delay: {during:#?}"
    );
    // After the delay, new connections are refused; every client saw it.
    let refused: Vec<_> = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Refused))
        .collect();
    assert_eq!(refused.len(), 4, "{attempts:#?}");
    assert!(
        refused.iter().all(|a| a.at(signalled) > 0.8),
        "refused too early: {refused:#?}"
    );
}
