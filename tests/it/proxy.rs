//! The proxy under real traffic: large bodies both ways without buffering,
//! chunked encoding, Server-Sent Events, WebSockets, failure answers, and
//! hostile request targets sent byte for byte over TCP.

use crate::harness::*;
use crate::negative::{rogue_stack, Rogue};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MB: usize = 1024 * 1024;

/// An upstream with the endpoints these tests need; counts every request.
struct Streamer {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn streamer() -> Streamer {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new()
        .route(
            "/big/{mb}",
            get(
                |axum::extract::Path(mb): axum::extract::Path<usize>| async move {
                    let chunks = futures_util::stream::iter((0..mb * 16).map(|_| {
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))
                    }));
                    Body::from_stream(chunks)
                },
            ),
        )
        .route(
            "/upload",
            post(|req: Request| async move {
                let te = req
                    .headers()
                    .get("transfer-encoding")
                    .map(|v| v.to_str().unwrap().to_string());
                let mut body = req.into_body().into_data_stream();
                let mut n = 0usize;
                while let Some(chunk) = body.next().await {
                    n += chunk.unwrap().len();
                }
                Json(json!({ "bytes": n, "transfer_encoding": te }))
            }),
        )
        .route(
            "/sse",
            get(|| async {
                let events = futures_util::stream::unfold(0u32, |i| async move {
                    if i == 5 {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(format!(
                            "id: {i}\ndata: event {i}\n\n"
                        ))),
                        i + 1,
                    ))
                });
                (
                    [
                        ("content-type", "text/event-stream"),
                        ("cache-control", "no-cache"),
                    ],
                    Body::from_stream(events),
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/ws",
            any(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        let reply = match msg {
                            Message::Text(t) => {
                                Message::Text(format!("echo: {}", t.as_str()).into())
                            }
                            Message::Binary(b) => Message::Binary(b),
                            Message::Close(_) => break,
                            other => other,
                        };
                        if socket.send(reply).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
        .fallback(|req: Request| async move {
            Json(json!({ "path": req.uri().to_string() })).into_response()
        })
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let c = counted.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Streamer { url, hits }
}

async fn stack(routes: &str) -> (Rogue, reqwest::Client) {
    let s = rogue_stack(routes).await;
    let b = browser();
    s.sign_in(&b).await;
    (s, b)
}

/// A memory figure (`VmRSS`, `VmHWM`, in KiB) of process `pid`, from /proc.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = streamer().await;
    // The gateway runs as its own process, so its memory is measured alone
    // (not this test process's, which holds the upstream and the client).
    let idp = RogueIdp::start().await;
    let ports = ProcessPorts::new();
    let toml = format!(
        "{server}\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
         insecure_allow_http = true\n[session]\nkeys = [\"{key}\"]\n\
         [[route]]\npath = \"/files/\"\nupstream = \"{up}\"\nstrip_prefix = true\nmax_body_bytes = {max}\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        key = test_key(),
        up = up.url,
        max = 300 * MB
    );
    let mut gw = GatewayProcess::start(&ports, &toml).await;
    gw.wait_ready(Duration::from_secs(10)).await;
    let b = browser();
    let (state, nonce) = crate::negative::start_login(&b, &gw.url, "/").await;
    idp.answer_with_id_token(crate::negative::good_claims(&idp.issuer, &nonce));
    let r = crate::negative::callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200, "sign-in; log:\n{}", gw.log());
    let before = proc_kib(gw.pid(), "VmRSS");

    // 200 MB down, read as it arrives.
    let r = b
        .get(format!("{}/files/big/200", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, 200 * MB);

    // 200 MB up, chunked (no Content-Length), produced as it is sent.
    let chunks = futures_util::stream::iter(
        (0..200 * 16).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 64 * 1024]))),
    );
    let r = b
        .post(format!("{}/files/upload", gw.url))
        .header("x-csrf", "1")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["bytes"], 200 * MB);
    assert_eq!(got["transfer_encoding"], "chunked");

    // The peak (VmHWM), not the RSS now: a body buffered whole and freed
    // since would no longer show in VmRSS.
    let grown_mb = proc_kib(gw.pid(), "VmHWM").saturating_sub(before) / 1024;
    assert!(
        grown_mb < 50,
        "resident memory grew by {grown_mb} MB while streaming 400 MB"
    );
    assert!(gw.alive(), "the gateway is still running");
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one() {
    let up = streamer().await;
    let (s, b) = stack(&format!(
        "[[route]]\npath = \"/events\"\nupstream = \"{}/sse\"\nstrip_prefix = true\n",
        up.url
    ))
    .await;
    let r = b
        .get(format!("{}/events", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut buf = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            arrivals.push(start.elapsed());
            buf.drain(..end + 2);
        }
    }
    assert_eq!(arrivals.len(), 5, "all events arrived");
    // The upstream sends one every 300 ms: buffering would deliver them together.
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(150),
            "events arrived together: {arrivals:?}"
        );
    }
}

#[tokio::test]
async fn websocket_after_sign_in_only_from_our_origin() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};
    let up = streamer().await;
    let routes = format!(
        "[[route]]\npath = \"/live/\"\nupstream = \"{}\"\nstrip_prefix = true\nwebsocket = true\n",
        up.url
    );
    let (s, b) = stack(&routes).await;
    // The session cookie, as the browser holds it.
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = {
        let (st, n) = crate::negative::start_login(&b, &s.gw.url, "/").await;
        s.idp
            .answer_with_id_token(crate::negative::good_claims(&s.idp.issuer, &n));
        let r = crate::negative::callback(&b, &s.gw.url, &format!("code=abc&state={st}")).await;
        set_cookie_value(&r, "oidc_bff").unwrap()
    };
    let ws_url = format!("{}/live/ws", s.gw.url.replace("http://", "ws://"));
    let request = |origin: &str, with_cookie: bool| {
        let mut req = ws_url.clone().into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        if with_cookie {
            req.headers_mut()
                .insert("cookie", format!("oidc_bff={cookie}").parse().unwrap());
        }
        req
    };

    let (mut ws, resp) = ws_connect(request(&s.gw.url, true))
        .await
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    ws.send(WsMessage::Text("hello".into())).await.unwrap();
    assert_eq!(
        ws_next(&mut ws, "the echo of a text message").await,
        WsMessage::Text("echo: hello".into())
    );
    ws.send(WsMessage::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut ws, "the echo of a binary message").await,
        WsMessage::Binary(vec![0u8, 1, 2, 255].into())
    );
    ws.close(None).await.unwrap();

    let hits_before = up.hits.load(Ordering::SeqCst);
    // No session: refused at the handshake.
    match ws_connect(request(&s.gw.url, false)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // A foreign page's handshake (cross-site WebSocket hijacking): refused.
    match ws_connect(request("https://evil.example.com", true)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    // An opaque origin (`Origin: null`: sandboxed frames, data: URLs, some
    // redirects; RFC 6454 §7.3) and no Origin at all (a non-browser client
    // holding a stolen cookie, or a browser that omits it) prove nothing
    // about the page: refused too.
    match ws_connect(request("null", true)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403 for Origin: null, got {other:?}"),
    }
    let mut without_origin = request(&s.gw.url, true);
    without_origin.headers_mut().remove("origin");
    match ws_connect(without_origin).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403 without Origin, got {other:?}"),
    }
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        hits_before,
        "refused handshakes never reach the upstream"
    );
}

#[tokio::test]
async fn failure_answers_hide_internal_addresses() {
    let up = streamer().await;
    // A port nothing listens on.
    let (_held, closed) = closed_port();
    let routes = format!(
        "[[route]]\npath = \"/down/\"\nupstream = \"http://127.0.0.1:{closed}\"\n\
         [[route]]\npath = \"/slow\"\nupstream = \"{}\"\ntimeout = \"500ms\"\n\
         [[route]]\npath = \"/small/\"\nupstream = \"{}\"\nmax_body_bytes = 1024\n\
         [[route]]\npath = \"/ro/\"\nupstream = \"{}\"\nmethods = [\"GET\"]\n",
        up.url, up.url, up.url
    );
    let (s, b) = stack(&routes).await;
    let cases = [
        ("GET", "/down/x", 502, "upstream_unreachable"),
        ("GET", "/slow", 504, "upstream_timeout"),
        ("DELETE", "/ro/x", 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        let req = b
            .request(method.parse().unwrap(), format!("{}{path}", s.gw.url))
            .header("x-csrf", "1");
        let r = req.try_clone().unwrap().send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], code);
        assert!(
            !text.contains("127.0.0.1") && !text.contains(&closed.to_string()),
            "{text}"
        );
        // The same failure for a navigation is a page.
        let r = req.header("accept", "text/html").send().await.unwrap();
        assert_eq!(r.status(), status);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Request id") && !page.contains("127.0.0.1"),
            "{page}"
        );
    }
    // Body limits per route, declared by Content-Length (streamed without
    // one: `chunked_body_past_the_route_limit_is_cut_off`).
    let r = b
        .post(format!("{}/small/x", s.gw.url))
        .header("x-csrf", "1")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = b
        .post(format!("{}/small/x", s.gw.url))
        .header("x-csrf", "1")
        .body(vec![0u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// (bytes received, Transfer-Encoding) of each request a [`Sink`] saw.
type Received = Arc<std::sync::Mutex<Vec<(usize, Option<String>)>>>;

/// An upstream that reads each request body to its end (or until it breaks
/// off) and records how many body bytes it got, and whether they came chunked.
struct Sink {
    url: String,
    /// (bytes received, Transfer-Encoding) per request, once it is over.
    got: Received,
}

async fn sink() -> Sink {
    /// Records on drop too: a handler whose connection the gateway aborts
    /// may be dropped before it returns.
    struct Record {
        got: Received,
        bytes: usize,
        te: Option<String>,
    }
    impl Drop for Record {
        fn drop(&mut self) {
            self.got.lock().unwrap().push((self.bytes, self.te.take()));
        }
    }
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = got.clone();
    let app = Router::new().fallback(move |req: Request| {
        let got = shared.clone();
        async move {
            let te = req
                .headers()
                .get("transfer-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            let mut record = Record { got, bytes: 0, te };
            let mut body = req.into_body().into_data_stream();
            while let Some(Ok(chunk)) = body.next().await {
                record.bytes += chunk.len();
            }
            Json(json!({ "bytes": record.bytes }))
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Sink { url, got }
}

#[tokio::test]
async fn chunked_body_past_the_route_limit_is_cut_off() {
    let up = sink().await;
    let (s, b) = stack(&format!(
        "[[route]]\npath = \"/small/\"\nupstream = \"{}\"\nmax_body_bytes = 1024\n",
        up.url
    ))
    .await;
    // Bodies with no Content-Length: the gateway learns the size only as
    // the chunks arrive. (Small enough to be sent whole before any answer.)
    let chunked = |chunks: usize| {
        reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..chunks).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'z'; 256]))),
        ))
    };
    let wait_for = |n: usize| {
        let got = up.got.clone();
        async move {
            let start = Instant::now();
            while got.lock().unwrap().len() < n {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the upstream request did not end within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            got.lock().unwrap()[n - 1].clone()
        }
    };

    // Under the limit: all of it arrives, chunked.
    let r = b
        .post(format!("{}/small/x", s.gw.url))
        .header("x-csrf", "1")
        .body(chunked(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (bytes, te) = wait_for(1).await;
    assert_eq!(bytes, 768);
    assert_eq!(te.as_deref(), Some("chunked"), "the upstream saw no length");

    // 4 KiB streamed at a 1 KiB route: 413, and the upstream got at most 1 KiB.
    let r = b
        .post(format!("{}/small/x", s.gw.url))
        .header("x-csrf", "1")
        .body(chunked(16))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large");
    let (bytes, _) = wait_for(2).await;
    assert!(
        bytes <= 1024,
        "the upstream got {bytes} bytes past a 1024-byte limit"
    );
    assert_eq!(up.got.lock().unwrap().len(), 2, "one upstream request each");
}

/// Sends `method` with `target` as the raw request target (an empty body);
/// returns the status code.
async fn raw_request(gateway: &str, method: &str, target: &str, cookie: &str) -> u16 {
    let addr = gateway.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nX-CSRF: 1\r\nCookie: oidc_bff={cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_request_targets_reach_no_other_upstream() {
    let api = streamer().await;
    let admin = streamer().await;
    let routes = format!(
        "[[route]]\npath = \"/svc/\"\nupstream = \"{}\"\nstrip_prefix = true\n\
         [[route]]\npath = \"/admin/\"\nupstream = \"{}\"\nauth = \"public\"\nmethods = [\"POST\"]\n",
        api.url, admin.url
    );
    let (s, b) = stack(&routes).await;
    let cookie = {
        let (st, n) = crate::negative::start_login(&b, &s.gw.url, "/").await;
        s.idp
            .answer_with_id_token(crate::negative::good_claims(&s.idp.issuer, &n));
        let r = crate::negative::callback(&b, &s.gw.url, &format!("code=abc&state={st}")).await;
        set_cookie_value(&r, "oidc_bff").unwrap()
    };
    let addr = s.gw.url.trim_start_matches("http://").to_string();
    let hostile = [
        "/svc/../admin/x",
        "/svc/..%2fadmin/x",
        "/svc/..%2Fadmin/x",
        "/svc/%2e%2e/admin/x",
        "/svc/%2E%2E/admin/x",
        "/svc/.%2e/admin/x",
        "/svc/%2e./admin/x",
        "/svc/..%5cadmin/x",
        "/svc/..\\admin/x",
        "/svc/%252e%252e/admin/x",
        "/svc//admin/x",
        "//admin/x",
        "/svc/./../admin/x",
        "/svc/..;/admin/x",
        "/svc/x/../../admin/x",
        "/svc/%00/../admin/x",
        "/svc/%2fadmin/x",
        "/./admin/x",
        "/../admin/x",
        "/%2e%2e/admin/x",
        "/svc/..",
        "/svc/.",
    ];
    // The admin route takes only POST: a GET that slipped through would be
    // refused there (405) before its upstream, so each target goes as POST too.
    for target in hostile {
        for method in ["GET", "POST"] {
            let status = raw_request(&s.gw.url, method, target, &cookie).await;
            assert_eq!(status, 400, "{method} {target}");
        }
    }
    // Absolute-form and authority tricks: the path decides, never the host in the target.
    for target in [
        format!("http://{}/admin/x", admin.url.trim_start_matches("http://")),
        "http://evil.example.com/svc/x".to_string(),
        format!("http://{addr}@evil.example.com/svc/x"),
        "/svc/x@evil.example.com/y".to_string(),
        "/svc/@evil.example.com".to_string(),
    ] {
        let status = raw_request(&s.gw.url, "GET", &target, &cookie).await;
        assert!(
            status == 200 || status == 400 || status == 405,
            "{target}: {status}"
        );
    }
    // An overlong path.
    for method in ["GET", "POST"] {
        assert_eq!(
            raw_request(
                &s.gw.url,
                method,
                &format!("/svc/{}", "a".repeat(5000)),
                &cookie
            )
            .await,
            400,
            "{method}"
        );
    }
    assert_eq!(
        admin.hits.load(Ordering::SeqCst),
        0,
        "no hostile target reached the admin upstream"
    );
    // The API upstream only ever saw paths under its own root.
    assert!(api.hits.load(Ordering::SeqCst) >= 1);
    // And a normal request still works.
    assert_eq!(
        raw_request(&s.gw.url, "GET", "/svc/orders", &cookie).await,
        200
    );
    // The same raw POST does reach the admin upstream by its own path: the
    // zero above was the isolation, not a request the route refuses anyway.
    assert_eq!(
        raw_request(&s.gw.url, "POST", "/admin/x", &cookie).await,
        200
    );
    assert_eq!(admin.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn responses_that_try_to_set_gateway_cookies_are_cleaned() {
    let app = Router::new().fallback(|| async {
        Response::builder()
            .header("set-cookie", "oidc_bff=stolen; Path=/")
            .header("set-cookie", "app_pref=1; Path=/")
            .body(Body::from("ok"))
            .unwrap()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (s, b) = stack(&format!(
        "[[route]]\npath = \"/app/\"\nupstream = \"{url}\"\n"
    ))
    .await;
    let r = b
        .get(format!("{}/app/x", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, ["app_pref=1; Path=/"]);
    // The session survived.
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn spa_dev_server_upstream_with_hot_reload_socket() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};
    let dev = streamer().await;
    let s = rogue_stack(&format!("[spa]\nupstream = \"{}\"\n", dev.url)).await;
    // Pages come from the dev server, without a session.
    let r = reqwest::get(format!("{}/src/main.ts", s.gw.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["path"], "/src/main.ts");
    // Its hot-reload WebSocket is tunnelled (same origin, no session needed).
    let mut req = format!("{}/ws", s.gw.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", s.gw.url.parse().unwrap());
    let (mut ws, _) = ws_connect(req).await.expect("hot-reload socket");
    ws.send(WsMessage::Text("ping".into())).await.unwrap();
    assert_eq!(
        ws_next(&mut ws, "the dev server's echo").await,
        WsMessage::Text("echo: ping".into())
    );
    // Configured routes still win over the catch-all dev server.
    let r = reqwest::Client::new()
        .get(format!("{}/api/x", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
