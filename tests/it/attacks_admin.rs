//! Attack round on the admin sessions API, machine tokens and session
//! revalidation: each probe an attacker (or a hostile or broken IdP) would
//! try, as a table where it fits. The ones that broke something carry the
//! fix's commit ("attack: ..."); the rest show the defence holds.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn call_mm(gw: &Gateway, caller: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/mm/x", gw.url))
        .header("authorization", format!("Bearer {caller}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `expires_in` as a hostile or broken token endpoint sends it: every answer
/// gives a usable token, kept as long as it says within bounds (a day at
/// most; what is no count of seconds counts as 60 s; a string is its number,
/// as some IdPs send it and the sign-in reads it); none makes the gateway
/// panic or wedges the grant.
#[tokio::test]
async fn machine_token_expires_in_of_any_shape() {
    // (what, expires_in, kept past a minute, kept past a day)
    for (what, expires_in, minute, day) in [
        ("huge", json!(u64::MAX), true, false),
        ("i64 max", json!(i64::MAX), true, false),
        ("a century", json!(3_153_600_000u64), true, false),
        ("a string", json!("300"), true, false),
        ("zero", json!(0), false, false),
        ("absent", Value::Null, false, false),
        ("negative", json!(-5), false, false),
        ("a float", json!(1.5), false, false),
        ("a word", json!("soon"), false, false),
    ] {
        let (idp, upstream, gw, caller) = crate::machine::machine_gateway().await;
        let mut answer = json!({"access_token": "machine-1", "token_type": "Bearer"});
        if !expires_in.is_null() {
            answer["expires_in"] = expires_in;
        }
        idp.answer_with(answer);
        let sent =
            |upstream: &Upstream| upstream.last().header("authorization").map(str::to_string);
        assert_eq!(call_mm(&gw, &caller).await, 200, "{what}");
        assert_eq!(
            sent(&upstream).as_deref(),
            Some("Bearer machine-1"),
            "{what}"
        );
        for (by, kept, next) in [(61, minute, "machine-2"), (86_400, day, "machine-3")] {
            gw.clock().advance(Duration::from_secs(by));
            idp.answer_with(
                json!({"access_token": next, "token_type": "Bearer", "expires_in": 300}),
            );
            assert_eq!(call_mm(&gw, &caller).await, 200, "{what} after {by} s");
            let want = if kept {
                "Bearer machine-1"
            } else {
                &*format!("Bearer {next}")
            };
            assert_eq!(
                sent(&upstream).as_deref(),
                Some(want),
                "{what} after {by} s"
            );
        }
    }
}

const ADMIN_TOKEN: &str = "attack-admin-T0ken-0123456789abcdefghijklmnop";

/// A WebSocket upstream that echoes text messages.
async fn ws_echo() -> String {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A gateway in front of a [`RogueIdp`] with the admin API on, a WebSocket
/// route and `session_lines` in `[session]`.
async fn ws_gateway(session_lines: &str) -> (RogueIdp, Gateway, ScratchDir) {
    let idp = RogueIdp::start().await;
    let echo = ws_echo().await;
    let reserved = reserve().await;
    let dir = ScratchDir::new("attack-admin");
    let token = dir.write("admin-token", ADMIN_TOKEN);
    let routes = format!("[[route]]\npath = \"/live/\"\nupstream = \"{echo}\"\nwebsocket = true\n");
    let mut toml = crate::promises::with(
        &config_toml(&reserved.url, &idp.issuer, &routes),
        "server",
        &format!("admin_token_file = {:?}", token.display().to_string()),
    );
    if !session_lines.is_empty() {
        toml = crate::promises::with(&toml, "session", session_lines);
    }
    let gw = Gateway::start(reserved, &toml).await;
    (idp, gw, dir)
}

/// Signs `sub` in through the rogue IdP (with a refresh token); the session cookie.
async fn sign_in_as(idp: &RogueIdp, gw: &Gateway, sub: &str) -> String {
    let b = browser();
    let (state, nonce) = crate::negative::start_login(&b, &gw.url, "/").await;
    let mut claims = crate::negative::good_claims(&idp.issuer, &nonce);
    claims["sub"] = sub.into();
    idp.answer_with(json!({
        "access_token": "opaque-access",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": format!("refresh-{sub}"),
        "id_token": idp.key.sign(&claims),
    }));
    let r = crate::negative::callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    set_cookie_value(&r, "oidc_bff").expect("signed in")
}

async fn open_ws(
    gw: &Gateway,
    cookie: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let mut req = format!("{}/live/ws", gw.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", gw.url.parse().unwrap());
    req.headers_mut()
        .insert("cookie", format!("oidc_bff={cookie}").parse().unwrap());
    let (mut ws, resp) = ws_connect(req).await.expect("handshake");
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(
        ws_next(&mut ws, "echo").await,
        Message::Text("hello".into())
    );
    ws
}

/// Whether the tunnel is closed within `within`: a message sent gets no echo
/// and the stream ends (or errs).
async fn ws_closed_within<S>(ws: &mut S, within: Duration) -> bool
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + futures_util::Sink<tokio_tungstenite::tungstenite::Message>
        + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if ws.send(Message::Text("ping".into())).await.is_err() {
            return true;
        }
        let next = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        if let Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) = next {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A session ended by the admin API (an offboarding, an incident) must not
/// keep an open WebSocket tunnel: it is closed within the tunnel's session
/// check interval; another user's tunnel is not.
#[tokio::test]
async fn ending_a_session_closes_its_websocket_tunnels() {
    let (idp, gw, _dir) = ws_gateway("").await;
    let alice = sign_in_as(&idp, &gw, "alice").await;
    let bob = sign_in_as(&idp, &gw, "bob").await;
    let mut ended = open_ws(&gw, &alice).await;
    let mut live = open_ws(&gw, &bob).await;
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/sessions?sub=alice", gw.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        ws_closed_within(&mut ended, Duration::from_secs(20)).await,
        "the tunnel of an ended session is still open"
    );
    assert!(
        !ws_closed_within(&mut live, Duration::from_secs(2)).await,
        "a live session's tunnel was closed"
    );
}

/// With `revalidate_every`, a grant revoked at the IdP ends the session even
/// when its only use is an open WebSocket (no request to revalidate on).
#[tokio::test]
async fn a_revoked_grant_closes_its_websocket_tunnel() {
    let (idp, gw, _dir) = ws_gateway("revalidate_every = \"1m\"").await;
    let alice = sign_in_as(&idp, &gw, "alice").await;
    let mut ws = open_ws(&gw, &alice).await;
    // Past the window: the next check refreshes, and the rogue IdP answers
    // invalid_grant (revoked).
    gw.clock().advance(Duration::from_secs(61));
    assert!(
        ws_closed_within(&mut ws, Duration::from_secs(20)).await,
        "the tunnel of a revoked session is still open"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/admin/sessions?sub=alice", gw.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let listing: Value = r.json().await.unwrap();
    assert_eq!(listing["count"], 0, "{listing}");
}

/// The machine token's record in the gateway's memory store.
fn machine_record(gw: &Gateway) -> String {
    let keys: Vec<String> = gw
        .store
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("machine-token:"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

/// What another replica (or an attacker with write access to the store) may
/// leave under the machine token's key: a record that does not open is no
/// token (never sent upstream, never a panic); a new one is fetched and
/// saved over it. A lock left by a replica that crashed holds only for its TTL.
#[tokio::test]
async fn poisoned_machine_token_records_and_stuck_locks() {
    use oidc_bff::session::SessionStore;
    let (idp, upstream, gw, caller) = crate::machine::machine_gateway().await;
    idp.answer_with(
        json!({"access_token": "machine-0", "token_type": "Bearer", "expires_in": 300}),
    );
    assert_eq!(call_mm(&gw, &caller).await, 200);
    let key = machine_record(&gw);
    let good = gw.store.raw(&key).unwrap();
    let session_record = {
        // A genuine sealed record, of another purpose (a session's).
        let b = browser();
        let (state, nonce) = crate::negative::start_login(&b, &gw.url, "/").await;
        idp.answer_with_id_token(crate::negative::good_claims(&idp.issuer, &nonce));
        crate::negative::callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
        let k = gw
            .store
            .keys()
            .into_iter()
            .find(|k| !k.starts_with("machine-token:"))
            .unwrap();
        gw.store.raw(&k).unwrap()
    };
    let poisons: Vec<(&str, Vec<u8>)> = vec![
        ("not UTF-8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("empty", vec![]),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte flipped", {
            let mut g = good.clone();
            let i = g.len() - 5;
            g[i] = if g[i] == b'A' { b'B' } else { b'A' };
            g
        }),
        ("another purpose's seal", session_record),
        (
            "a plaintext token",
            br#"{"token":"planted","obtained_at":0,"expires_at":9999999999}"#.to_vec(),
        ),
        ("huge", vec![b'A'; 1 << 20]),
    ];
    for (i, (what, poison)) in poisons.into_iter().enumerate() {
        // Past this process's cached copy: the next request reads the store.
        gw.clock().advance(Duration::from_secs(280));
        gw.store
            .save(&key, poison, Duration::from_secs(3600))
            .await
            .unwrap();
        let fresh = format!("machine-{}", i + 1);
        idp.answer_with(json!({"access_token": fresh, "token_type": "Bearer", "expires_in": 300}));
        assert_eq!(call_mm(&gw, &caller).await, 200, "{what}");
        assert_eq!(
            upstream.last().header("authorization"),
            Some(format!("Bearer {fresh}").as_str()),
            "{what}: a new token, not the poison"
        );
        assert_ne!(gw.store.raw(&key).unwrap(), good, "{what}: saved over");
    }
    // A lock a crashed replica left (2 s to live): waited out, then fetched.
    gw.clock().advance(Duration::from_secs(280));
    assert!(gw
        .store
        .claim(
            &format!("{key}:lock"),
            "crashed-replica",
            Duration::from_secs(2)
        )
        .await
        .unwrap());
    gw.store.delete(&key).await.unwrap();
    idp.answer_with(
        json!({"access_token": "after-lock", "token_type": "Bearer", "expires_in": 300}),
    );
    let started = std::time::Instant::now();
    assert_eq!(call_mm(&gw, &caller).await, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the lock was honoured"
    );
    assert_eq!(
        upstream.last().header("authorization"),
        Some("Bearer after-lock")
    );
}

/// The admin token sent every way a proxy or client library might mangle or
/// an attacker might smuggle it, byte for byte on the admin listener; and
/// the API asked for through the public listener with request-target and
/// header tricks. Only the one clean header passes; nothing reaches the API
/// from the public side; the session lives on.
#[tokio::test]
async fn admin_api_smuggling_and_header_tricks() {
    let (idp, gw, _dir) = ws_gateway("").await;
    let cookie = sign_in_as(&idp, &gw, "alice").await;
    let admin_host = gw.admin_url.trim_start_matches("http://").to_string();
    let public_host = gw.url.trim_start_matches("http://").to_string();
    let t = ADMIN_TOKEN;
    let raw = |target: &str, host: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")
            .into_bytes()
    };
    let listing = "/admin/sessions?sub=alice";
    // On the admin listener: (what, extra header bytes, answered 200?).
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "clean",
            format!("Authorization: Bearer {t}\r\n").into_bytes(),
            true,
        ),
        // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
        (
            "trailing OWS",
            format!("Authorization: Bearer {t}  \r\n").into_bytes(),
            true,
        ),
        (
            "obs-fold",
            format!("Authorization: Bearer\r\n {t}\r\n").into_bytes(),
            false,
        ),
        (
            "NUL inside",
            format!("Authorization: Bearer {t}\0\r\n").into_bytes(),
            false,
        ),
        (
            "tab separator",
            format!("Authorization: Bearer\t{t}\r\n").into_bytes(),
            false,
        ),
        (
            "prefix only",
            format!("Authorization: Bearer {}\r\n", &t[..8]).into_bytes(),
            false,
        ),
        (
            "token as scheme",
            format!("Authorization: {t}\r\n").into_bytes(),
            false,
        ),
        (
            "non-UTF-8 suffix",
            [format!("Authorization: Bearer {t}").as_bytes(), b"\xff\r\n"].concat(),
            false,
        ),
        (
            "two names differing in case",
            format!("Authorization: Bearer {t}\r\nAUTHORIZATION: Bearer nope\r\n").into_bytes(),
            false,
        ),
        (
            "X-Forwarded-Authorization",
            format!("X-Forwarded-Authorization: Bearer {t}\r\n").into_bytes(),
            false,
        ),
        (
            "Proxy-Authorization",
            format!("Proxy-Authorization: Bearer {t}\r\n").into_bytes(),
            false,
        ),
    ];
    for (what, headers, ok) in cases {
        let mut req = raw(listing, &admin_host, "");
        let at = req.len() - "Connection: close\r\n\r\n".len();
        req.splice(at..at, headers);
        let (status, text) = raw_exchange(&gw.admin_url, &req).await;
        if ok {
            assert_eq!(status, 200, "{what}: {text}");
            assert!(text.contains("\"count\":1"), "{what}: {text}");
        } else {
            assert!(matches!(status, 400 | 401), "{what}: {status} {text}");
            assert!(!text.contains("\"sessions\""), "{what}: {text}");
        }
    }
    // On the public listener, with the right token: never the API.
    let auth = format!("Authorization: Bearer {t}\r\n");
    for (what, target, host, headers) in [
        ("absolute-form at the admin address", format!("http://{admin_host}{listing}"), public_host.clone(), auth.clone()),
        ("Host of the admin listener", listing.to_string(), admin_host.clone(), auth.clone()),
        ("X-Original-URL", "/".to_string(), public_host.clone(), format!("{auth}X-Original-URL: {listing}\r\n")),
        ("X-Rewrite-URL", "/".to_string(), public_host.clone(), format!("{auth}X-Rewrite-URL: {listing}\r\n")),
        ("X-Forwarded-Prefix", listing.to_string(), public_host.clone(), format!("{auth}X-Forwarded-Prefix: /admin\r\n")),
        ("forward-auth", "/auth/check".to_string(), public_host.clone(), format!("{auth}X-Forwarded-Uri: {listing}\r\nX-Forwarded-Method: DELETE\r\n")),
        ("a WebSocket upgrade", listing.to_string(), public_host.clone(), format!("{auth}Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")),
        ("the live route's prefix", "/live/../admin/sessions?sub=alice".to_string(), public_host.clone(), auth.clone()),
    ] {
        let (status, text) = raw_exchange(&gw.url, &raw(&target, &host, &headers)).await;
        assert!(
            matches!(status, 400 | 401 | 403 | 404),
            "{what}: {status} {text}"
        );
        assert!(!text.contains("\"sessions\""), "{what}: {text}");
        assert!(!text.contains("\"ended\""), "{what}: {text}");
    }
    // alice is still signed in: nothing above ended anything.
    let mut ws = open_ws(&gw, &cookie).await;
    assert!(!ws_closed_within(&mut ws, Duration::from_millis(600)).await);
}

/// With `revalidate_every`, a session whose grant the IdP revoked (the rogue
/// IdP answers every refresh `invalid_grant`) gets through nowhere once the
/// window has passed, whichever way it asks: a session route, `/auth/user`,
/// an optional route (401 as for a session whose refresh ended it, never
/// served with the stale identity), a `token = "client"` route (no
/// machine token is fetched for it), forward-auth, a WebSocket handshake.
/// Each is first shown to pass while the session is young.
#[tokio::test]
async fn a_revoked_grant_gets_through_nowhere() {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let echo = ws_echo().await;
    let reserved = reserve().await;
    let dir = ScratchDir::new("attack-revalidate");
    let token = dir.write("admin-token", ADMIN_TOKEN);
    let up = &upstream.url;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n\n\
         [[route]]\npath = \"/opt/\"\nupstream = \"{up}\"\nauth = \"optional\"\n\
         identity_headers = {{ user = \"X-Forwarded-User\" }}\n\n\
         [[route]]\npath = \"/m2m/\"\nupstream = \"{up}\"\ntoken = \"client\"\nclient_scopes = [\"api:read\"]\n\n\
         [[route]]\npath = \"/live/\"\nupstream = \"{echo}\"\nwebsocket = true\n"
    );
    let mut toml = crate::promises::with(
        &config_toml(&reserved.url, &idp.issuer, &routes),
        "server",
        &format!(
            "admin_token_file = {:?}\ntrusted_proxies = [\"127.0.0.1/32\"]",
            token.display().to_string()
        ),
    );
    toml = crate::promises::with(&toml, "session", "revalidate_every = \"1m\"");
    let gw = Gateway::start(reserved, &toml).await;
    let count = |sub: &str| {
        let url = format!("{}/admin/sessions?sub={sub}", gw.admin_url);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["count"].as_u64().unwrap()
        }
    };
    let ask = |what: &'static str, cookie: String| {
        let gw_url = gw.url.clone();
        async move {
            let c = reqwest::Client::new();
            let cookie = format!("oidc_bff={cookie}");
            let r = match what {
                "session route" => c.get(format!("{gw_url}/api/x")),
                "/auth/user" => c.get(format!("{gw_url}/auth/user")),
                "optional route" => c.get(format!("{gw_url}/opt/x")),
                "machine route" => c.get(format!("{gw_url}/m2m/x")),
                "forward-auth" => c
                    .get(format!("{gw_url}/auth/check"))
                    .header("x-forwarded-method", "GET")
                    .header("x-forwarded-proto", "http")
                    .header("x-forwarded-host", "127.0.0.1")
                    .header("x-forwarded-uri", "/api/x"),
                "websocket handshake" => c
                    .get(format!("{gw_url}/live/ws"))
                    .header("origin", &gw_url)
                    .header("upgrade", "websocket")
                    .header("connection", "Upgrade")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                    .header("sec-websocket-version", "13"),
                _ => unreachable!(),
            };
            r.header("cookie", cookie)
                .header("x-csrf", "1")
                .send()
                .await
                .unwrap()
        }
    };
    for (i, (what, young, revoked)) in [
        ("session route", 200, 401),
        ("/auth/user", 200, 401),
        ("optional route", 200, 401),
        ("machine route", 502, 401),
        ("forward-auth", 200, 401),
        ("websocket handshake", 101, 401),
    ]
    .into_iter()
    .enumerate()
    {
        let sub = format!("user-{i}");
        let cookie = sign_in_as(&idp, &gw, &sub).await;
        // Young: passes (the machine route's token request is refused by the
        // rogue IdP: 502, which shows the gate let the session through).
        let r = ask(what, cookie.clone()).await;
        assert_eq!(r.status().as_u16(), young, "{what}, young");
        if what == "optional route" {
            assert_eq!(
                upstream.last().header("x-forwarded-user"),
                Some(sub.as_str())
            );
        }
        gw.clock().advance(Duration::from_secs(61));
        let seen = upstream.count();
        let r = ask(what, cookie).await;
        assert_eq!(r.status().as_u16(), revoked, "{what}, revoked");
        assert_eq!(
            upstream.count(),
            seen,
            "{what}: nothing reached the upstream"
        );
        assert_eq!(count(&sub).await, 0, "{what}: the session is ended");
    }
}

/// A token endpoint that answers with a huge body (a hostile or broken IdP,
/// a captive proxy) is refused once the answer passes the limit, not read
/// into memory whole: 502, nothing upstream; a normal answer afterwards works.
#[tokio::test]
async fn a_huge_token_answer_is_refused() {
    let (idp, upstream, gw, caller) = crate::machine::machine_gateway().await;
    idp.answer_with(json!({
        "access_token": "machine-huge",
        "token_type": "Bearer",
        "expires_in": 300,
        "padding": "x".repeat(4 << 20),
    }));
    assert_eq!(call_mm(&gw, &caller).await, 502);
    assert_eq!(upstream.count(), 0);
    gw.clock().advance(Duration::from_secs(61));
    idp.answer_with(
        json!({"access_token": "machine-ok", "token_type": "Bearer", "expires_in": 300}),
    );
    assert_eq!(call_mm(&gw, &caller).await, 200);
    assert_eq!(
        upstream.last().header("authorization"),
        Some("Bearer machine-ok")
    );
}

/// The admin API ends a session while its revalidation refresh is in flight
/// at a stalled IdP: when the IdP answers (new tokens, a rotated refresh
/// token), the late write does not bring the session back, on the next
/// request or in the listing. The same body on both stores.
#[tokio::test]
async fn admin_end_during_an_in_flight_refresh_stays_ended() {
    admin_end_during_an_in_flight_refresh(None).await;
}

#[tokio::test]
async fn admin_end_during_an_in_flight_refresh_stays_ended_on_redis() {
    let redis = RedisServer::start();
    admin_end_during_an_in_flight_refresh(Some(&redis)).await;
}

/// The in-process gateway on the memory store, or one on `redis`.
enum Store {
    Memory(Gateway),
    Redis {
        port: u16,
        clock: oidc_bff::clock::TestClock,
        _stop: tokio::sync::oneshot::Sender<()>,
    },
}

impl Store {
    fn clock(&self) -> &oidc_bff::clock::TestClock {
        match self {
            Store::Memory(gw) => gw.clock(),
            Store::Redis { clock, .. } => clock,
        }
    }

    /// Session records in the store.
    fn session_count(&self) -> usize {
        match self {
            Store::Memory(gw) => gw.session_count(),
            Store::Redis { port, .. } => dump_node(*port, "oidc-bff:s:*").len(),
        }
    }
}

async fn admin_end_during_an_in_flight_refresh(redis: Option<&RedisServer>) {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let admin_url = format!("http://{}", reserved.admin.local_addr().unwrap());
    let idp = Idp::for_gateway(
        &url,
        json!({ "access_token_ttl": 3600, "rotate_refresh_tokens": true }),
    );
    // No token check upstream: it would ask the paused IdP for keys.
    let upstream = Upstream::start(None).await;
    let dir = ScratchDir::new("attack-inflight");
    let token = dir.write("admin-token", ADMIN_TOKEN);
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let mut toml = crate::promises::with(
        &config_toml(&url, &idp.issuer, &routes),
        "server",
        &format!("admin_token_file = {:?}", token.display().to_string()),
    );
    toml = crate::promises::with(&toml, "session", "revalidate_every = \"5s\"");
    toml = crate::promises::with(&toml, "provider", "http_timeout = \"2s\"");
    let gw = match redis {
        None => Store::Memory(Gateway::start(reserved, &toml).await),
        Some(redis) => {
            let toml = crate::promises::with(
                &toml,
                "session",
                &format!(
                    "store = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"10s\"",
                    redis.url()
                ),
            );
            let clock = oidc_bff::clock::TestClock::new();
            let stop = crate::lifecycle::redis_replica(reserved, &toml, &clock).await;
            Store::Redis {
                port: redis.port,
                clock,
                _stop: stop,
            }
        }
    };
    let admin = |method: reqwest::Method| {
        reqwest::Client::new()
            .request(method, format!("{admin_url}/admin/sessions?sub=alice"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    // The gateway's count of revalidation refreshes that came back with
    // tokens: counted once the refresh's write is done.
    let refreshed = || async {
        let m = reqwest::get(format!("{admin_url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = "oidc_bff_token_refreshes_total{outcome=\"success\",reason=\"revalidate\"} ";
        m.lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    let b = browser();
    sign_in(&b, &url, "alice", "/").await;
    let api = || b.get(format!("{url}/api/x")).header("x-csrf", "1").send();
    assert_eq!(api().await.unwrap().status(), 200);
    assert_eq!(gw.session_count(), 1);
    assert_eq!(refreshed().await, 0);

    crate::lifecycle::advance(&idp, &[gw.clock()], Duration::from_secs(6)).await;
    idp.pause();
    // Due for revalidation: the refresh starts and hangs at the IdP; the
    // request gives up waiting after http_timeout and goes on with its
    // still-valid token.
    assert_eq!(api().await.unwrap().status(), 200);
    let r = admin(reqwest::Method::DELETE).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["ended"], 1);
    assert_eq!(gw.session_count(), 0);
    idp.resume();
    // The refresh completes at the IdP and the gateway has written what it
    // got (the event, not a guess at how long that takes) ...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while refreshed().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never came back from the IdP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and its write found no session to write over.
    assert_eq!(gw.session_count(), 0, "resurrected by the late write");
    let listing: Value = admin(reqwest::Method::GET)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["count"], 0, "{listing}");
    assert_eq!(api().await.unwrap().status(), 401);
}

/// Revalidation is also how a changed grant shows: a user removed from the
/// route's group at the IdP is refused on the very request whose
/// revalidation learned it, not let through once more on the claims of the
/// refresh token's past.
#[tokio::test]
async fn the_revalidating_request_is_judged_by_the_new_claims() {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/ops/\"\nupstream = \"{}\"\nallow_groups = [\"ops\"]\n",
        upstream.url
    );
    let toml = crate::promises::with(
        &config_toml(&reserved.url, &idp.issuer, &routes),
        "session",
        "revalidate_every = \"1m\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let (state, nonce) = crate::negative::start_login(&b, &gw.url, "/").await;
    let mut claims = crate::negative::good_claims(&idp.issuer, &nonce);
    claims["groups"] = json!(["ops"]);
    idp.answer_with(json!({
        "access_token": "opaque-access",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "refresh-1",
        "id_token": idp.key.sign(&claims),
    }));
    let r = crate::negative::callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200);
    let ops = || {
        b.get(format!("{}/ops/x", gw.url))
            .header("x-csrf", "1")
            .send()
    };
    assert_eq!(ops().await.unwrap().status(), 200);
    assert_eq!(upstream.count(), 1);

    // Removed from "ops" at the IdP; the window passes; the next refresh
    // brings an ID token without the group.
    gw.clock().advance(Duration::from_secs(61));
    let now = now() + 61;
    idp.answer_with(json!({
        "access_token": "opaque-access-2",
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": idp.key.sign(&json!({
            "iss": idp.issuer, "aud": "bff", "sub": "user-1",
            "iat": now, "exp": now + 300, "groups": ["staff"],
        })),
    }));
    let r = ops().await.unwrap();
    assert_eq!(r.status(), 403, "let through on the old groups");
    assert_eq!(upstream.count(), 1, "nothing reached the upstream");
    assert_eq!(ops().await.unwrap().status(), 403);
}

/// A revoked grant while the IdP is down: the session is not ended (the
/// gateway cannot know), but it lives no longer than its access token; past
/// that every request fails (502), and once the IdP answers again the
/// revalidation ends it. Never 200 on an expired token, never forever.
#[tokio::test]
async fn a_revoked_grant_during_an_idp_outage_lives_no_longer_than_its_token() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({ "access_token_ttl": 120 }));
    let upstream = Upstream::start(None).await;
    let routes = format!(
        "[[route]]\npath = \"/plain/\"\nupstream = \"{}\"\ntoken = \"none\"\n",
        upstream.url
    );
    let mut toml = crate::promises::with(
        &config_toml(&url, &idp.issuer, &routes),
        "session",
        "revalidate_every = \"5s\"",
    );
    toml = crate::promises::with(&toml, "provider", "http_timeout = \"1s\"");
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let call = || async {
        b.get(format!("{}/plain/x", gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(call().await, 200);
    let r = reqwest::Client::new()
        .post(format!("{}/test/revoke-grants?sub=alice", idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    crate::lifecycle::advance(&idp, &[gw.clock()], Duration::from_secs(6)).await;
    idp.pause();
    // Inside the token's life: on, as documented (the IdP cannot be asked).
    assert_eq!(call().await, 200);
    // Past it: refused, whatever the backoff says, as often as asked.
    gw.clock().advance(Duration::from_secs(120));
    for _ in 0..3 {
        assert_eq!(call().await, 502);
    }
    let seen = upstream.count();
    idp.resume();
    // The IdP is back: past the backoff, the revalidation ends the session.
    gw.clock().advance(Duration::from_secs(61));
    let deadline = std::time::Instant::now() + Duration::from_secs(70);
    let status = loop {
        let s = call().await;
        if s != 502 || std::time::Instant::now() > deadline {
            break s;
        }
        gw.clock().advance(Duration::from_secs(61));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 401);
    assert_eq!(
        upstream.count(),
        seen,
        "no request of the revoked session got through"
    );
    assert_eq!(gw.session_count(), 0);
}
