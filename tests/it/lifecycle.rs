//! Token lifecycle against the real test IdP (oidc-provider): refresh driven
//! by the access token's expiry, single-flight in one gateway and across two
//! gateways sharing Redis, revoked grants, back-channel logout (real and with
//! minted logout tokens), and logout with an unreachable revocation endpoint.
//! Tokens expire by moving the IdP's and the gateways' clocks, not by waiting.

use crate::harness::*;
use crate::negative::{callback, start_login};
use oidc_bff::clock::TestClock;
use serde_json::{json, Value};
use std::time::Duration;

/// Moves the IdP's clock and the gateways' clocks forward together, so a
/// token the IdP mints afterwards is as fresh for the gateways as before.
pub async fn advance(idp: &Idp, clocks: &[&TestClock], by: Duration) {
    idp.advance_clock(by).await;
    for clock in clocks {
        clock.advance(by);
    }
}

pub async fn reset_stats(idp: &Idp) {
    reqwest::Client::new()
        .post(format!("{}/test/stats/reset", idp.issuer))
        .send()
        .await
        .unwrap();
}

pub async fn refreshes(idp: &Idp) -> i64 {
    idp.stats().await["token"]["refresh_token"]
        .as_i64()
        .unwrap_or(0)
}

/// 50 API calls at once, all of which must succeed with a token the upstream
/// verifies and that has not expired at `now` (the gateways' clock, which the
/// upstream's own check, on real time, does not follow).
async fn fifty_calls(b: &reqwest::Client, gateways: &[&str], now: i64) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let b = b.clone();
        let url = format!("{}/api/call/{i}", gateways[i % gateways.len()]);
        tasks.push(tokio::spawn(async move {
            let r = b.get(url).header("x-csrf", "1").send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (
                status,
                body["verified"] == true,
                body["claims"]["exp"].as_i64(),
                body,
            )
        }));
    }
    for t in tasks {
        let (status, verified, exp, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(verified, "the upstream verified a fresh access token");
        assert!(
            exp.is_some_and(|exp| exp > now),
            "the access token sent upstream expired at {exp:?}, before {now}"
        );
    }
}

/// Access tokens live 5 minutes: they never expire while a test runs, only
/// when the test moves the clocks past [`TOKEN_EXPIRED`].
const SHORT_TOKENS: &str = r#"{"access_token_ttl": 300, "rotate_refresh_tokens": true}"#;
const TOKEN_EXPIRED: Duration = Duration::from_secs(301);

#[tokio::test]
async fn one_refresh_for_fifty_concurrent_calls() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&reserved.url, serde_json::from_str(SHORT_TOKENS).unwrap());
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, &routes)).await;
    let now = || gw.state.clock.now_secs();
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    reset_stats(&idp).await;
    fifty_calls(&b, &[&gw.url], now()).await;
    assert_eq!(refreshes(&idp).await, 0, "a fresh token is not refreshed");
    // The access token (5 min) expires; the session (hours) does not.
    advance(&idp, &[gw.clock()], TOKEN_EXPIRED).await;
    fifty_calls(&b, &[&gw.url], now()).await;
    assert_eq!(refreshes(&idp).await, 1, "exactly one refresh at the IdP");
    // The user endpoint says the token was refreshed.
    let user: Value = b
        .get(format!("{}/auth/user", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        user["access_token_refreshed_at"].as_i64().is_some(),
        "{user}"
    );
    // And with rotation, the next expiry refreshes again with the rotated token.
    advance(&idp, &[gw.clock()], TOKEN_EXPIRED).await;
    fifty_calls(&b, &[&gw.url], now()).await;
    assert_eq!(refreshes(&idp).await, 2);
}

/// One replica for [`one_refresh_across_two_gateways_sharing_redis`]: an
/// in-process gateway on `listeners` whose session store is the Redis its
/// config names; nothing but Redis is shared with the other. Serves until
/// the returned sender is dropped.
pub async fn redis_replica(
    listeners: Reserved,
    toml: &str,
    clock: &TestClock,
) -> tokio::sync::oneshot::Sender<()> {
    let config = oidc_bff::config::load_from_str(toml).unwrap();
    let state = oidc_bff::app::AppState::new_with_clock(config, clock.clock()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = oidc_bff::serve(state, listeners.listener, listeners.admin, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    // Ready as a load balancer would see it: Redis connected, IdP keys loaded
    // (the store connects in the background; until then requests get 503).
    let readyz = format!("http://{}/readyz", running.admin_addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = reqwest::get(&readyz).await.map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a replica did not become ready: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop
}

// Two gateways and fifty clients share the test's runtime: give it threads,
// and Redis calls the time a busy machine needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refresh_across_two_gateways_sharing_redis() {
    let redis = RedisServer::start();
    let (la, lb) = (reserve().await, reserve().await);
    let (url_a, url_b) = (la.url.clone(), lb.url.clone());
    let mut cfg: Value = serde_json::from_str(SHORT_TOKENS).unwrap();
    cfg["clients"] = json!([{
        "client_id": "bff", "client_secret": "bff-secret",
        "redirect_uris": [format!("{url_a}/auth/callback"), format!("{url_b}/auth/callback")],
        "post_logout_redirect_uris": [format!("{url_a}/auth/signed-out")],
    }]);
    let idp = Idp::start(cfg);
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let key = test_key();
    let toml = |public_url: &str| {
        format!(
            "[server]\npublic_url = \"{public_url}\"\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
             scopes = [\"openid\", \"email\", \"offline_access\", \"api:read\"]\ninsecure_allow_http = true\n\
             [session]\nstore = \"redis\"\nredis_url = \"{redis}\"\nredis_timeout = \"10s\"\nkeys = [\"{key}\"]\n\
             [[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n",
            iss = idp.issuer,
            redis = redis.url(),
            up = upstream.url
        )
    };
    // Two replicas, each with a clock of its own, moved together.
    let (clock_a, clock_b) = (TestClock::new(), TestClock::new());
    let _a = redis_replica(la, &toml(&url_a), &clock_a).await;
    let _b = redis_replica(lb, &toml(&url_b), &clock_b).await;
    let now = || clock_a.clock().now_secs();
    let b = browser();
    sign_in(&b, &url_a, "alice", "/").await;
    reset_stats(&idp).await;
    fifty_calls(&b, &[&url_a, &url_b], now()).await;
    assert_eq!(refreshes(&idp).await, 0, "a fresh token is not refreshed");
    advance(&idp, &[&clock_a, &clock_b], TOKEN_EXPIRED).await;
    fifty_calls(&b, &[&url_a, &url_b], now()).await;
    assert_eq!(
        refreshes(&idp).await,
        1,
        "exactly one refresh across both replicas"
    );
}

#[tokio::test]
async fn revoked_grant_ends_the_session_without_a_loop() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&reserved.url, serde_json::from_str(SHORT_TOKENS).unwrap());
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!("[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n[[route]]\npath = \"/app/\"\nupstream = \"{}\"\ncsrf = false\n", upstream.url, upstream.url);
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, &routes)).await;
    let xhr = browser();
    let nav = browser();
    sign_in(&xhr, &gw.url, "alice", "/").await;
    sign_in(&nav, &gw.url, "alice", "/").await;
    assert_eq!(gw.session_count(), 2);
    let r = reqwest::Client::new()
        .post(format!("{}/test/revoke-grants?sub=alice", idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    advance(&idp, &[gw.clock()], TOKEN_EXPIRED).await;

    let r = xhr
        .get(format!("{}/api/x", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthenticated");
    let r = nav
        .get(format!("{}/app/page", gw.url))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/auth/login?return_to=%2Fapp%2Fpage");
    assert_eq!(gw.session_count(), 0, "both session records are gone");
    // Signing in again works (no loop): the IdP session still exists, the grant is new.
    assert_signs_in_again(&nav, &gw.url, "alice").await;
}

#[tokio::test]
async fn backchannel_logout_from_the_real_idp() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let gw_url = url.clone();
    let idp = Idp::start(json!({
        "clients": [{
            "client_id": "bff", "client_secret": "bff-secret",
            "redirect_uris": [format!("{gw_url}/auth/callback")],
            "post_logout_redirect_uris": [format!("{gw_url}/auth/signed-out")],
            "backchannel_logout_uri": format!("{gw_url}/auth/backchannel-logout"),
            "backchannel_logout_session_required": true,
        }],
    }));
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, "")).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    assert_eq!(gw.session_count(), 1);
    // The user signs out at the IdP directly (another app, the IdP's own page).
    let r = b
        .get(format!("{}/session/end", idp.issuer))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    let xsrf = regex::Regex::new(r#"name="xsrf" value="([^"]+)""#)
        .unwrap()
        .captures(&page)
        .expect("logout form")[1]
        .to_string();
    let r = b
        .post(format!("{}/session/end/confirm", idp.issuer))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection() || r.status().is_success());
    for _ in 0..50 {
        if gw.session_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        gw.session_count(),
        0,
        "the IdP's logout token ended the session"
    );
    assert_eq!(idp.stats().await["backchannel_error"].as_i64(), Some(0));
    let r = b
        .get(format!("{}/auth/user", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn minted_logout_tokens_replays_and_malformed() {
    let s = crate::negative::rogue_stack("").await;
    let iss = s.idp.issuer.clone();
    // Two sessions in IdP session "sess-1" (two browsers), one in "sess-2".
    let mut sessions = Vec::new();
    for sid in ["sess-1", "sess-1", "sess-2"] {
        let b = browser();
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        let mut claims = crate::negative::good_claims(&iss, &nonce);
        claims["sid"] = json!(sid);
        s.idp.answer_with_id_token(claims);
        callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        sessions.push(b);
    }
    assert_eq!(s.gw.session_count(), 3);
    let event = json!({ "http://schemas.openid.net/event/backchannel-logout": {} });
    let token = |extra: Value| {
        let mut c = json!({ "iss": iss, "aud": "bff", "iat": now(), "exp": now() + 120, "jti": uuid::Uuid::new_v4().to_string(), "events": event, "sid": "sess-1" });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        s.idp.key.sign(&c)
    };
    let post = |t: String| {
        let url = format!("{}/auth/backchannel-logout", s.gw.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&[("logout_token", t)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let bad = [
        ("garbage", "garbage".to_string()),
        ("no events", token(json!({"events": null}))),
        ("other event", token(json!({"events": {"urn:other": {}}}))),
        ("nonce", token(json!({"nonce": "n"}))),
        ("no jti", token(json!({"jti": null}))),
        ("neither sid nor sub", token(json!({"sid": null}))),
        ("wrong aud", token(json!({"aud": "other"}))),
        ("wrong iss", token(json!({"iss": "https://evil.example.com"}))),
        ("expired", token(json!({"exp": now() - 600}))),
        ("foreign key", TestKey::es256(&s.idp.key.kid).sign(&json!({"iss": iss, "aud": "bff", "iat": now(), "exp": now() + 60, "jti": "x", "events": event, "sid": "sess-1"}))),
    ];
    for (name, t) in bad {
        assert_eq!(post(t).await, 400, "{name}");
    }
    assert_eq!(
        reqwest::Client::new()
            .post(format!("{}/auth/backchannel-logout", s.gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        400,
        "no token"
    );
    assert_eq!(s.gw.session_count(), 3, "nothing ended by bad tokens");

    let good = token(json!({}));
    assert_eq!(post(good.clone()).await, 200);
    assert_eq!(
        s.gw.session_count(),
        1,
        "both sessions of sess-1 ended, sess-2 kept"
    );
    assert_eq!(post(good).await, 400, "replayed jti");
    // By sub: every session of the user.
    assert_eq!(
        post(token(json!({"sid": null, "sub": "user-1"}))).await,
        200
    );
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test]
async fn logout_completes_when_revocation_is_unreachable() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&reserved.url, json!({}));
    let (_held, closed) = closed_port();
    let toml = config_toml(&url, &idp.issuer, "").replace(
        "insecure_allow_http = true",
        &format!("insecure_allow_http = true\nrevocation_endpoint = \"http://127.0.0.1:{closed}/revoke\""),
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let started = std::time::Instant::now();
    let r = b
        .post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "logout does not wait for the IdP"
    );
    let body: Value = r.json().await.unwrap();
    assert!(body["redirect"].as_str().unwrap().contains("/session/end?"));
    assert_eq!(gw.session_count(), 0);
}

#[tokio::test]
async fn backchannel_logout_ends_the_session_on_every_replica() {
    let redis = RedisServer::start();
    let idp = RogueIdp::start().await;
    let (pa, pb) = (ProcessPorts::new(), ProcessPorts::new());
    let key = test_key();
    let toml = |p: &ProcessPorts| {
        format!(
            "{server}\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\ninsecure_allow_http = true\n\
             [session]\nstore = \"redis\"\nredis_url = \"{redis}\"\nkeys = [\"{key}\"]\n",
            server = p.server_toml(),
            iss = idp.issuer,
            redis = redis.url(),
        )
    };
    let a = GatewayProcess::start(&pa, &toml(&pa)).await;
    let b_gw = GatewayProcess::start(&pb, &toml(&pb)).await;
    a.wait_ready(Duration::from_secs(10)).await;
    b_gw.wait_ready(Duration::from_secs(10)).await;
    // Signed in through A (IdP session "idp-sess-9"), served by both.
    let b = browser();
    let (state, nonce) = start_login(&b, &a.url, "/").await;
    let mut claims = crate::negative::good_claims(&idp.issuer, &nonce);
    claims["sid"] = json!("idp-sess-9");
    idp.answer_with_id_token(claims);
    callback(&b, &a.url, &format!("code=abc&state={state}")).await;
    let user = |gw: String| {
        let b = b.clone();
        async move {
            b.get(format!("{gw}/auth/user"))
                .header("x-csrf", "1")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(user(a.url.clone()).await, 200);
    assert_eq!(user(b_gw.url.clone()).await, 200);
    // The IdP tells replica B; the session ends on A too.
    let logout = idp.key.sign(&json!({
        "iss": idp.issuer, "aud": "bff", "iat": now(), "exp": now() + 60, "jti": "bcl-1",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sid": "idp-sess-9",
    }));
    let r = reqwest::Client::new()
        .post(format!("{}/auth/backchannel-logout", b_gw.url))
        .form(&[("logout_token", logout.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(user(a.url.clone()).await, 401);
    assert_eq!(user(b_gw.url.clone()).await, 401);
    // The same token replayed at the other replica is refused there too.
    let r = reqwest::Client::new()
        .post(format!("{}/auth/backchannel-logout", a.url))
        .form(&[("logout_token", logout)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A gateway on the rogue IdP with these session timeouts, and a browser
/// signed in to it. The access token outlives every test below (no refresh
/// token): only the session's own timeouts can end it.
async fn session_with_timeouts(idle: &str, absolute: &str) -> (RogueIdp, Gateway, reqwest::Client) {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/app/\"\nupstream = \"{}\"\ncsrf = false\n",
        upstream.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replace(
        "[session]\n",
        &format!("[session]\nidle_timeout = \"{idle}\"\nabsolute_timeout = \"{absolute}\"\n"),
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    idp.answer_with(json!({
        "access_token": "opaque-access",
        "token_type": "Bearer",
        "expires_in": 7 * 86_400,
        "id_token": idp.key.sign(&crate::negative::good_claims(&idp.issuer, &nonce)),
    }));
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(gw.session_count(), 1);
    (idp, gw, b)
}

/// The documented refusal of an ended session: 401 `unauthenticated` to an
/// API client, a redirect to sign-in for a navigation; the record is gone.
async fn assert_ended(b: &reqwest::Client, gw: &Gateway) {
    assert_signed_out(b, &gw.url, "/auth/user").await;
    assert_eq!(gw.session_count(), 0, "the session record is gone");
}

#[tokio::test]
async fn a_session_idle_longer_than_idle_timeout_ends() {
    let (_idp, gw, b) = session_with_timeouts("10m", "1h").await;
    let minute = Duration::from_secs(60);
    // Used every 9 minutes: alive well past 10 minutes after sign-in, as
    // each use moves the idle window on.
    for _ in 0..3 {
        gw.clock().advance(9 * minute);
        assert_eq!(api(&b, &format!("{}/auth/user", &gw.url)).await.0, 200);
    }
    // Then 10 minutes without a request: over.
    gw.clock().advance(10 * minute);
    assert_ended(&b, &gw).await;
}

#[tokio::test]
async fn a_session_older_than_absolute_timeout_ends_however_active() {
    let (_idp, gw, b) = session_with_timeouts("10m", "30m").await;
    let minute = Duration::from_secs(60);
    for _ in 0..3 {
        gw.clock().advance(9 * minute);
        assert_eq!(api(&b, &format!("{}/auth/user", &gw.url)).await.0, 200);
    }
    // 27 minutes in, used 9 minutes ago at most; at 30 minutes it ends.
    gw.clock().advance(3 * minute + Duration::from_secs(1));
    assert_ended(&b, &gw).await;
}
