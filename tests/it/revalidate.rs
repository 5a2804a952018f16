//! `session.revalidate_every` against the real test IdP: a grant revoked at
//! the IdP (as Cognito's AdminUserGlobalSignOut, a disabled user or a changed
//! password do) ends the gateway's session within the window, though its
//! access token is still valid; without the setting the session lives on
//! until the access token expires. Time moves on the test clocks.

use crate::harness::*;
use crate::lifecycle::{advance, refreshes, reset_stats};
use crate::promises::with;
use serde_json::{json, Value};
use std::time::Duration;

/// Access tokens live an hour: nothing here expires by itself.
fn long_tokens() -> Value {
    json!({ "access_token_ttl": 3600, "rotate_refresh_tokens": true })
}

/// A gateway with an API route (sends the access token), a page route and a
/// route that sends no token at all, and `session_line` in `[session]`.
async fn gateway(session_line: &str) -> (Idp, Upstream, Gateway) {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, long_tokens());
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n\n\
         [[route]]\npath = \"/app/\"\nupstream = \"{up}\"\ncsrf = false\n\n\
         [[route]]\npath = \"/plain/\"\nupstream = \"{up}\"\ntoken = \"none\"\n",
        up = upstream.url
    );
    let mut toml = config_toml(&url, &idp.issuer, &routes);
    if !session_line.is_empty() {
        toml = with(&toml, "session", session_line);
    }
    let gw = Gateway::start(reserved, &toml).await;
    (idp, upstream, gw)
}

async fn revoke(idp: &Idp, sub: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/test/revoke-grants?sub={sub}", idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn call(b: &reqwest::Client, url: &str) -> reqwest::Response {
    b.get(url).header("x-csrf", "1").send().await.unwrap()
}

async fn metrics(gw: &Gateway) -> String {
    reqwest::get(format!("{}/metrics", gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_revoked_grant_ends_the_session_within_the_window() {
    let (idp, _upstream, gw) = gateway("revalidate_every = \"5s\"").await;
    let (xhr, nav, plain, app) = (browser(), browser(), browser(), browser());
    sign_in(&xhr, &gw.url, "alice", "/").await;
    sign_in(&nav, &gw.url, "alice", "/").await;
    sign_in(&plain, &gw.url, "alice", "/").await;
    sign_in(&app, &gw.url, "alice", "/").await;
    assert_eq!(gw.session_count(), 4);
    assert_eq!(call(&xhr, &format!("{}/api/x", gw.url)).await.status(), 200);

    revoke(&idp, "alice").await;
    // Inside the window the session goes on: its access token is valid.
    advance(&idp, &[gw.clock()], Duration::from_secs(2)).await;
    assert_eq!(call(&xhr, &format!("{}/api/x", gw.url)).await.status(), 200);

    // Past the window, the next request revalidates and ends it: 401 JSON
    // for an API call, a sign-in redirect for a navigation, and on a route
    // that sends no token upstream as well.
    advance(&idp, &[gw.clock()], Duration::from_secs(4)).await;
    let r = call(&xhr, &format!("{}/api/x", gw.url)).await;
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
    let r = call(&plain, &format!("{}/plain/x", gw.url)).await;
    assert_eq!(r.status(), 401, "a token-less route revalidates too");
    let r = call(&app, &format!("{}/auth/user", gw.url)).await;
    assert_eq!(r.status(), 401, "the app's /auth/user says signed out too");
    assert_eq!(gw.session_count(), 0, "every session record is gone");
    // Still 401 after: no loop, no second call to the IdP for a dead session.
    let before = idp.stats().await["token_requests"].as_i64().unwrap();
    assert_eq!(call(&xhr, &format!("{}/api/x", gw.url)).await.status(), 401);
    assert_eq!(
        idp.stats().await["token_requests"].as_i64().unwrap(),
        before
    );
    let text = metrics(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("oidc_bff_token_refreshes_total")
                && l.contains("outcome=\"invalid_grant\"")
                && l.contains("reason=\"revalidate\"")
                && l.ends_with(" 4")),
        "four sessions ended by revalidation:\n{text}"
    );

    // Signing in again works: a new grant, a new session.
    assert_signs_in_again(&nav, &gw.url, "alice").await;
}

/// The control: the same revocation without `revalidate_every` goes unseen
/// while the access token is valid (the gap the setting closes).
#[tokio::test]
async fn without_revalidation_a_revoked_grant_goes_unseen_until_expiry() {
    let (idp, _upstream, gw) = gateway("").await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    revoke(&idp, "alice").await;
    reset_stats(&idp).await;
    advance(&idp, &[gw.clock()], Duration::from_secs(30 * 60)).await;
    assert_eq!(call(&b, &format!("{}/api/x", gw.url)).await.status(), 200);
    assert_eq!(call(&b, &format!("{}/plain/x", gw.url)).await.status(), 200);
    assert_eq!(refreshes(&idp).await, 0, "nothing asked the IdP");
    assert_eq!(gw.session_count(), 1);
}

/// A live grant is revalidated once per window, single-flight under 50
/// concurrent requests; the session goes on.
#[tokio::test]
async fn a_live_grant_is_revalidated_once_per_window() {
    let (idp, _upstream, gw) = gateway("revalidate_every = \"5s\"").await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    reset_stats(&idp).await;
    let fifty = || async {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let b = b.clone();
            let url = format!("{}/api/call/{i}", gw.url);
            tasks.push(tokio::spawn(async move {
                b.get(url)
                    .header("x-csrf", "1")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
    };
    fifty().await;
    assert_eq!(refreshes(&idp).await, 0, "inside the window: no refresh");
    advance(&idp, &[gw.clock()], Duration::from_secs(6)).await;
    fifty().await;
    assert_eq!(refreshes(&idp).await, 1, "one revalidation for 50 requests");
    advance(&idp, &[gw.clock()], Duration::from_secs(6)).await;
    fifty().await;
    assert_eq!(refreshes(&idp).await, 2, "and one per window");
    assert_eq!(gw.session_count(), 1);
    let text = metrics(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("oidc_bff_token_refreshes_total")
                && l.contains("outcome=\"success\"")
                && l.contains("reason=\"revalidate\"")),
        "{text}"
    );
}

/// Across two replicas sharing Redis, a revalidation is one refresh at the
/// IdP, and a revoked grant ends the session on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revalidation_is_single_flight_across_replicas() {
    use crate::lifecycle::redis_replica;
    use oidc_bff::clock::TestClock;
    let redis = RedisServer::start();
    let (la, lb) = (reserve().await, reserve().await);
    let (url_a, url_b) = (la.url.clone(), lb.url.clone());
    let mut cfg = long_tokens();
    cfg["clients"] = json!([{
        "client_id": "bff", "client_secret": "bff-secret",
        "redirect_uris": [format!("{url_a}/auth/callback"), format!("{url_b}/auth/callback")],
    }]);
    let idp = Idp::start(cfg);
    let upstream = Upstream::start(None).await;
    let key = test_key();
    let toml = |public_url: &str| {
        format!(
            "[server]\npublic_url = \"{public_url}\"\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
             scopes = [\"openid\", \"email\", \"offline_access\", \"api:read\"]\ninsecure_allow_http = true\n\
             [session]\nstore = \"redis\"\nredis_url = \"{redis}\"\nredis_timeout = \"10s\"\nkeys = [\"{key}\"]\nrevalidate_every = \"5s\"\n\
             [[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n",
            iss = idp.issuer,
            redis = redis.url(),
            up = upstream.url
        )
    };
    let (clock_a, clock_b) = (TestClock::new(), TestClock::new());
    let _a = redis_replica(la, &toml(&url_a), &clock_a).await;
    let _b = redis_replica(lb, &toml(&url_b), &clock_b).await;
    let b = browser();
    sign_in(&b, &url_a, "alice", "/").await;
    reset_stats(&idp).await;
    let fifty = |want: u16| {
        let b = b.clone();
        let (url_a, url_b) = (url_a.clone(), url_b.clone());
        async move {
            let mut tasks = Vec::new();
            for i in 0..50 {
                let b = b.clone();
                let url = format!("{}/api/call/{i}", [&url_a, &url_b][i % 2]);
                tasks.push(tokio::spawn(async move {
                    call(&b, &url).await.status().as_u16()
                }));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap(), want);
            }
        }
    };
    advance(&idp, &[&clock_a, &clock_b], Duration::from_secs(6)).await;
    fifty(200).await;
    assert_eq!(
        refreshes(&idp).await,
        1,
        "one revalidation across both replicas"
    );
    revoke(&idp, "alice").await;
    advance(&idp, &[&clock_a, &clock_b], Duration::from_secs(6)).await;
    fifty(401).await;
    assert_eq!(
        idp.stats().await["token_error"]["refresh_token"],
        1,
        "one refused revalidation ended it for both"
    );
}
