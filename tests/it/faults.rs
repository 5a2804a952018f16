//! Faults as an operator meets them: an IdP that stalls (accepts, answers
//! nothing) or fails while sessions need a token refresh. Requests must get
//! their answer within `provider.http_timeout`, one refresh at a time may
//! reach the IdP, a failure backs off, and the session survives the stall.

use crate::harness::*;
use axum::routing::post;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHORT_TOKENS: &str = r#"{"access_token_ttl": 5, "rotate_refresh_tokens": true}"#;

async fn refreshes(idp: &Idp) -> i64 {
    idp.stats().await["token"]["refresh_token"]
        .as_i64()
        .unwrap_or(0)
}

/// `n` API calls at once; each one's status and how long it took.
async fn calls(b: &reqwest::Client, gw: &str, n: usize) -> Vec<(u16, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (b, url) = (b.clone(), format!("{gw}/api/call/{i}"));
            tokio::spawn(async move {
                let start = Instant::now();
                let r = b.get(url).header("x-csrf", "1").send().await.unwrap();
                (r.status().as_u16(), start.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The session's access token expiry, as `/auth/user` tells it.
async fn token_expiry(b: &reqwest::Client, gw: &str) -> i64 {
    let user: Value = b
        .get(format!("{gw}/auth/user"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    user["access_token_expires_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no access token expiry in {user}"))
}

/// Moves the gateway's and the IdP's clocks past the session's access token
/// expiry (no waiting for it).
async fn expire_token(b: &reqwest::Client, gw: &Gateway, idp: &Idp) {
    let exp = token_expiry(b, &gw.url).await;
    let ahead = (exp + 1 - gw.clock().clock().now_secs()).max(0) as u64;
    crate::lifecycle::advance(idp, &[gw.clock()], Duration::from_secs(ahead)).await;
}

#[tokio::test]
async fn a_stalled_idp_neither_queues_requests_nor_signs_the_user_out() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&reserved.url, serde_json::from_str(SHORT_TOKENS).unwrap());
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let toml = config_toml(&url, &idp.issuer, &routes).replace(
        "insecure_allow_http = true",
        "insecure_allow_http = true\nhttp_timeout = \"1s\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    assert!(calls(&b, &gw.url, 1).await.iter().all(|(s, _)| *s == 200));
    let before = refreshes(&idp).await;
    expire_token(&b, &gw, &idp).await;

    // The IdP stalls: it accepts connections and answers nothing.
    idp.pause();
    let answers = calls(&b, &gw.url, 20).await;
    for (status, took) in &answers {
        assert_eq!(
            *status, 502,
            "an expired token is never sent on: {answers:?}"
        );
        // Each waits for the one refresh at most http_timeout (1 s), not n x 1 s.
        assert!(*took < Duration::from_millis(2500), "{answers:?}");
    }
    // More requests while the refresh is still out: no new refresh, same answer.
    let answers = calls(&b, &gw.url, 5).await;
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == 502 && *t < Duration::from_millis(2500)),
        "{answers:?}"
    );

    // The IdP comes back and answers the refresh that was queued: the
    // gateway was still waiting for it, and keeps the rotated refresh token.
    idp.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = calls(&b, &gw.url, 1).await[0];
        if status == 200 {
            break;
        }
        assert_eq!(status, 502);
        assert!(Instant::now() < deadline, "the session did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        refreshes(&idp).await - before,
        1,
        "one refresh reached the IdP for all 25 requests"
    );
    assert!(upstream.last().header("authorization").is_some());
    // The rotated refresh token works at the next expiry: nothing was lost.
    expire_token(&b, &gw, &idp).await;
    let answers = calls(&b, &gw.url, 10).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(refreshes(&idp).await - before, 2);
}

/// A token endpoint that fails every call with 503, counting them.
async fn failing_token_endpoint() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/token",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "down for maintenance",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/token"), hits)
}

#[tokio::test]
async fn a_failing_idp_is_asked_once_per_backoff_interval() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&reserved.url, serde_json::from_str(SHORT_TOKENS).unwrap());
    let upstream = Upstream::start(None).await;
    let (token_endpoint, hits) = failing_token_endpoint().await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    // Sign in at the real IdP, then send refreshes to the failing endpoint.
    let real = config_toml(&url, &idp.issuer, &routes).replace(
        "insecure_allow_http = true",
        "insecure_allow_http = true\nhttp_timeout = \"1s\"",
    );
    let failing = real.replace(
        "insecure_allow_http = true",
        &format!("insecure_allow_http = true\ntoken_endpoint = \"{token_endpoint}\""),
    );
    // One store shared by two gateways: the first signs in, the second refreshes.
    let gw = Gateway::start(reserved, &real).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let failing_gw = Gateway::start_replica(reserve().await, &failing, &gw).await;
    // Cookies ignore ports: the browser sends its session cookie to both.
    let fb = b.clone();
    expire_token(&b, &gw, &idp).await;

    let answers = calls(&fb, &failing_gw.url, 20).await;
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == 502 && *t < Duration::from_millis(2500)),
        "{answers:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "20 requests, one refresh");
    // During the backoff (5 s): answered at once, nothing sent to the IdP.
    let answers = calls(&fb, &failing_gw.url, 10).await;
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == 502 && *t < Duration::from_millis(300)),
        "{answers:?}"
    );
    gw.clock().advance(Duration::from_millis(4500));
    calls(&fb, &failing_gw.url, 5).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no refresh during the backoff"
    );
    // After the backoff, one more attempt, and again only one.
    gw.clock().advance(Duration::from_millis(600));
    let answers = calls(&fb, &failing_gw.url, 5).await;
    assert!(answers.iter().all(|(s, _)| *s == 502), "{answers:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let m = reqwest::get(format!("{}/metrics", failing_gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("oidc_bff_token_refresh_backoffs_total 2"), "{m}");
    assert!(
        m.contains("oidc_bff_token_refreshes_total{outcome=\"error\",reason=\"expiry\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("oidc_bff_token_refresh_skipped_total{reason=\"backoff\"}"),
        "{m}"
    );
}

/// An upstream that accepts connections and never answers; its sockets are
/// kept open for as long as the test holds the handle.
async fn hanging_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

/// An upstream that promises 1000 bytes, sends 10 and hangs up.
async fn cutting_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                .await;
            let _ = socket.shutdown().await;
        }
    });
    (url, task)
}

/// A port nothing listens on.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn metrics_and_logs_tell_faults_apart() {
    let redis = RedisServer::start();
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let (slow, _slow) = hanging_upstream().await;
    let (cut, _cut) = cutting_upstream().await;
    let down = closed_port_url();
    let (pa, pb) = (ProcessPorts::new(), ProcessPorts::new());
    let key = test_key();
    let toml = |p: &ProcessPorts, provider_extra: &str| {
        format!(
            "{server}log_format = \"json\"\n\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\n\
             client_secret = \"bff-secret\"\ninsecure_allow_http = true\nhttp_timeout = \"1s\"\n{provider_extra}\n\
             [session]\nstore = \"redis\"\nredis_url = \"{redis}\"\nkeys = [\"{key}\"]\n\
             [[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n\
             [[route]]\npath = \"/slow/\"\nupstream = \"{slow}\"\ntimeout = \"300ms\"\n\
             [[route]]\npath = \"/down/\"\nupstream = \"{down}\"\n\
             [[route]]\npath = \"/cut/\"\nupstream = \"{cut}\"\n",
            server = p.server_toml(),
            iss = idp.issuer,
            redis = redis.url(),
            up = upstream.url,
        )
    };
    // A signs in; B shares its sessions and reaches the IdP's token endpoint nowhere.
    let a = GatewayProcess::start(&pa, &toml(&pa, "")).await;
    let gw_b = GatewayProcess::start(
        &pb,
        &toml(
            &pb,
            &format!("token_endpoint = \"{}/token\"", closed_port_url()),
        ),
    )
    .await;
    a.wait_ready(Duration::from_secs(10)).await;
    gw_b.wait_ready(Duration::from_secs(10)).await;
    // Alice signs in twice at A: one session's access token lives an hour,
    // the other's has already expired (`expires_in` 0), so its next request
    // needs a refresh, which B cannot get.
    let sign_in_alice = |expires_in: u64| {
        let (a, idp) = (&a, &idp);
        async move {
            let b = browser();
            let (state, nonce) = crate::negative::start_login(&b, &a.url, "/").await;
            let mut claims = crate::negative::good_claims(&idp.issuer, &nonce);
            claims["sub"] = "alice".into();
            idp.answer_with(serde_json::json!({
                "access_token": "opaque-access",
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": "refresh-1",
                "id_token": idp.key.sign(&claims),
            }));
            let r = crate::negative::callback(&b, &a.url, &format!("code=abc&state={state}")).await;
            assert_eq!(r.status(), 200);
            b
        }
    };
    let b = sign_in_alice(3600).await;
    let expired = sign_in_alice(0).await;
    let call = |path: &'static str| {
        let (b, url) = (b.clone(), format!("{}{path}", gw_b.url));
        async move { b.get(url).header("x-csrf", "1").send().await.unwrap() }
    };
    assert_eq!(call("/slow/x").await.status(), 504);
    assert_eq!(call("/down/x").await.status(), 502);
    let r = call("/cut/x").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.is_err(),
        "a cut body is not passed off as complete"
    );
    // An expired access token: the refresh cannot reach the IdP.
    let r = expired
        .get(format!("{}/api/x", gw_b.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "idp_unavailable");
    // The session store goes away.
    redis.kill();
    assert_eq!(call("/api/x").await.status(), 503);

    let m = reqwest::get(format!("{}/metrics", gw_b.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |route: &str, error: &str| {
        m.lines().any(|l| {
            l.starts_with("oidc_bff_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("error=\"{error}\""))
                && l.ends_with(" 1")
        })
    };
    for (route, error) in [
        ("/slow/", "upstream_timeout"),
        ("/down/", "upstream_unreachable"),
        ("/api/", "idp_unavailable"),
        ("/api/", "session_store_unavailable"),
        ("/cut/", "none"),
    ] {
        assert!(series(route, error), "no {error} on {route}:\n{m}");
    }
    assert!(
        m.contains("oidc_bff_upstream_bodies_cut_total{route=\"/cut/\"} 1"),
        "{m}"
    );

    // Each fault has a warn line naming the route and the signed-in user.
    let log = gw_b.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warned = |route: &str, what: &str| {
        lines.iter().any(|v| {
            v["level"] == "WARN"
                && v["route"] == route
                && v["sub"] == "alice"
                && v.to_string().contains(what)
        })
    };
    assert!(warned("/cut/", "upstream response body cut short"), "{log}");
    assert!(warned("/slow/", "upstream_timeout"), "{log}");
    assert!(warned("/down/", "upstream_unreachable"), "{log}");
    assert!(warned("/api/", "idp_unavailable"), "{log}");
}

#[tokio::test]
async fn http2_streams_cannot_take_more_upstream_connections_than_the_budget() {
    let idp = RogueIdp::start().await;
    let (slow, _slow) = hanging_upstream().await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/slow/\"\nupstream = \"{slow}\"\nauth = \"public\"\ntimeout = \"1500ms\"\n"
    );
    // Two client connections' worth of upstream connections; the one
    // connection's share is the whole pool, so the pool's bound is what is
    // tested here (`connections::one_h2_connection_with_shut_windows_holds_only_its_share`
    // tests the share).
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replace(
        "[server]\n",
        "[server]\nmax_connections = 2\nmax_upstream_per_connection = 2\n",
    );
    let gw = Gateway::start(reserved, &toml).await;
    // One HTTP/2 connection, many streams.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let (h2, url) = (h2.clone(), format!("{}/slow/{i}", gw.url));
            tokio::spawn(async move { h2.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [503, 503, 503, 504, 504],
        "two reach the upstream, the rest are refused"
    );
    // The slots come back when the requests end.
    let r = h2
        .get(format!("{}/slow/again", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}
