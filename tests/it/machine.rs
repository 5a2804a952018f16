//! Routes with `token = "client"` against the real test IdP: the upstream
//! receives the gateway's own client-credentials token (verified against the
//! IdP's keys; `sub`/`client_id` the gateway's client, not the user), fetched
//! once for many requests and two replicas sharing Redis, replaced near its
//! expiry, sealed at rest, and never replaced by the user's token when the
//! token endpoint fails.

use crate::harness::*;
use crate::lifecycle::{advance, redis_replica, reset_stats};
use crate::promises::with;
use oidc_bff::clock::TestClock;
use serde_json::{json, Value};
use std::time::Duration;

/// The machine-token route and a user-token route on the same upstream.
fn routes(upstream: &str) -> String {
    format!(
        "[[route]]\npath = \"/m2m/\"\nupstream = \"{upstream}\"\ntoken = \"client\"\n\
         client_scopes = [\"api:read\"]\nidentity_headers = {{ user = \"X-Forwarded-User\" }}\n\n\
         [[route]]\npath = \"/api/\"\nupstream = \"{upstream}\"\n"
    )
}

async fn machine_grants(idp: &Idp) -> i64 {
    idp.stats().await["token"]["client_credentials"]
        .as_i64()
        .unwrap_or(0)
}

/// A gateway with [`routes`]; `provider_lines` go into `[provider]`, `tail`
/// at the end of the config.
async fn one_gateway(
    idp_extra: Value,
    provider_lines: &str,
    tail: &str,
) -> (Idp, Upstream, Gateway) {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, idp_extra);
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let mut toml = config_toml(&url, &idp.issuer, &routes(&upstream.url));
    if !provider_lines.is_empty() {
        toml = with(&toml, "provider", provider_lines);
    }
    toml.push_str(tail);
    let gw = Gateway::start(reserved, &toml).await;
    (idp, upstream, gw)
}

#[tokio::test]
async fn the_upstream_receives_the_gateways_own_token_on_behalf_of_the_user() {
    let (idp, upstream, gw) = one_gateway(json!({}), "", "").await;
    let b = browser();
    // No signed-in user: no token is fetched, nothing reaches the upstream.
    let (status, _) = api(&b, &format!("{}/m2m/x", gw.url)).await;
    assert_eq!(status, 401);
    assert_eq!(upstream.count(), 0);
    assert_eq!(machine_grants(&idp).await, 0);

    sign_in(&b, &gw.url, "alice", "/").await;
    let (status, body) = api(&b, &format!("{}/m2m/x", gw.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verified"], true, "signed with the IdP's keys: {body}");
    let claims = &body["claims"];
    assert_eq!(claims["sub"], "bff", "the gateway's client, not the user");
    assert_eq!(claims["client_id"], "bff");
    assert_eq!(claims["token_use"], "access");
    assert_eq!(claims["scope"], "api:read");
    assert!(claims.get("email").is_none(), "no user claims: {claims}");
    // On whose behalf: the identity header names the user.
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    let machine = seen.header("authorization").unwrap().to_string();

    // The user's own route still gets the user's token.
    let (status, body) = api(&b, &format!("{}/api/x", gw.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["claims"]["sub"], "alice");
    assert_ne!(upstream.last().header("authorization").unwrap(), machine);

    // A header the client sends does not replace the gateway's token.
    let r = b
        .get(format!("{}/m2m/y", gw.url))
        .header("x-csrf", "1")
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last().header("authorization"),
        Some(machine.as_str())
    );
    assert_eq!(machine_grants(&idp).await, 1, "the token is cached");
}

#[tokio::test]
async fn a_token_near_its_expiry_is_replaced() {
    // Machine tokens live 300 s: replaced in their last 30 s (10%).
    let (idp, upstream, gw) = one_gateway(json!({ "client_credentials_ttl": 300 }), "", "").await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let jti = |body: &Value| body["claims"]["jti"].as_str().unwrap().to_string();
    let (_, first) = api(&b, &format!("{}/m2m/x", gw.url)).await;
    advance(&idp, &[gw.clock()], Duration::from_secs(260)).await;
    let (status, same) = api(&b, &format!("{}/m2m/x", gw.url)).await;
    assert_eq!(status, 200);
    assert_eq!(jti(&same), jti(&first), "still well before expiry: reused");
    assert_eq!(machine_grants(&idp).await, 1);
    advance(&idp, &[gw.clock()], Duration::from_secs(15)).await;
    let (status, next) = api(&b, &format!("{}/m2m/x", gw.url)).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["verified"], true);
    assert_ne!(jti(&next), jti(&first), "near expiry: a new token");
    assert_eq!(machine_grants(&idp).await, 2);
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn a_failing_token_endpoint_gives_502_and_never_the_users_token() {
    // The IdP refuses the machine client's credentials (invalid_client).
    let (idp, upstream, gw) = one_gateway(
        json!({}),
        "http_timeout = \"2s\"",
        "\n[provider.machine]\nclient_id = \"bff\"\nclient_secret = \"wrong\"\n",
    )
    .await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let (status, body) = api(&b, &format!("{}/m2m/x", gw.url)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "machine_token_unavailable");
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    assert_eq!(idp.stats().await["token_error"]["client_credentials"], 1);
    // It backs off: the next requests fail at once, without asking the IdP,
    // until the backoff (5 s) has passed; then one more attempt.
    for _ in 0..3 {
        assert_eq!(api(&b, &format!("{}/m2m/x", gw.url)).await.0, 502);
    }
    assert_eq!(idp.stats().await["token_error"]["client_credentials"], 1);
    gw.clock().advance(Duration::from_secs(6));
    assert_eq!(api(&b, &format!("{}/m2m/x", gw.url)).await.0, 502);
    assert_eq!(api(&b, &format!("{}/m2m/x", gw.url)).await.0, 502);
    assert_eq!(idp.stats().await["token_error"]["client_credentials"], 2);
    // The user's own token still works on the user's route.
    assert_eq!(api(&b, &format!("{}/api/x", gw.url)).await.0, 200);
    assert_eq!(upstream.count(), 1);

    // The IdP gone altogether: 502 as well.
    let (idp2, upstream2, gw2) = one_gateway(json!({}), "http_timeout = \"2s\"", "").await;
    let b2 = browser();
    sign_in(&b2, &gw2.url, "alice", "/").await;
    drop(idp2);
    let (status, body) = api(&b2, &format!("{}/m2m/x", gw2.url)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "machine_token_unavailable");
    assert_eq!(upstream2.count(), 0, "the user's token never reached it");
    drop(idp);
}

// Two gateways and fifty clients share the test's runtime: give it threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_requests_on_two_replicas_fetch_one_token() {
    let redis = RedisServer::start();
    let (la, lb) = (reserve().await, reserve().await);
    let (url_a, url_b) = (la.url.clone(), lb.url.clone());
    let idp = Idp::start(json!({
        "clients": [{
            "client_id": "bff", "client_secret": "bff-secret",
            "redirect_uris": [format!("{url_a}/auth/callback"), format!("{url_b}/auth/callback")],
        }],
    }));
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let key = test_key();
    let toml = |public_url: &str| {
        format!(
            "[server]\npublic_url = \"{public_url}\"\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
             scopes = [\"openid\", \"email\", \"offline_access\", \"api:read\"]\ninsecure_allow_http = true\n\
             [session]\nstore = \"redis\"\nredis_url = \"{redis}\"\nredis_timeout = \"10s\"\nkeys = [\"{key}\"]\n{routes}",
            iss = idp.issuer,
            redis = redis.url(),
            routes = routes(&upstream.url),
        )
    };
    let (clock_a, clock_b) = (TestClock::new(), TestClock::new());
    let _a = redis_replica(la, &toml(&url_a), &clock_a).await;
    let _b = redis_replica(lb, &toml(&url_b), &clock_b).await;
    let b = browser();
    sign_in(&b, &url_a, "alice", "/").await;
    reset_stats(&idp).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let b = b.clone();
        let url = format!("{}/m2m/call/{i}", [&url_a, &url_b][i % 2]);
        tasks.push(tokio::spawn(async move { api(&b, &url).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["verified"], true);
        assert_eq!(body["claims"]["sub"], "bff");
        tokens.insert(body["claims"]["jti"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 1, "one token for every request");
    assert_eq!(
        idp.stats().await["token"]["client_credentials"],
        1,
        "exactly one token request at the IdP across both replicas"
    );
    // At rest in Redis the token is sealed: neither it nor its claims in the clear.
    let sent = upstream.last().header("authorization").unwrap().to_string();
    let token = sent.strip_prefix("Bearer ").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let saved = redis.dump("*machine-token*");
    assert!(!saved.is_empty(), "the token is shared through Redis");
    for (k, v) in saved {
        let text = String::from_utf8_lossy(&v);
        assert!(
            !text.contains(payload) && !text.contains("\"token\""),
            "{k} holds a readable token: {text}"
        );
    }
}

/// Forward-auth on a `token = "client"` route answers with the machine
/// token for the ingress to send on, and the user's identity headers.
#[tokio::test]
async fn forward_auth_answers_with_the_machine_token() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({}));
    let upstream = Upstream::start(None).await;
    let toml = with(
        &config_toml(&url, &idp.issuer, &routes(&upstream.url)),
        "server",
        "trusted_proxies = [\"127.0.0.1/32\"]",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let check = |uri: &'static str| {
        b.get(format!("{}/auth/check", gw.url))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "127.0.0.1")
            .header("x-forwarded-uri", uri)
            .header("x-csrf", "1")
    };
    let r = check("/m2m/x").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let token = r.headers()["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let claims = verify_with_jwks(&format!("{}/jwks", idp.issuer), &token)
        .await
        .unwrap();
    assert_eq!(claims["sub"], "bff");
    assert_eq!(claims["client_id"], "bff");
    assert!(r
        .headers()
        .values()
        .any(|v| v.to_str().is_ok_and(|v| v == "alice")));
    // The user's route answers with the user's token.
    let r = check("/api/x").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let user_token = r.headers()["authorization"].to_str().unwrap().to_string();
    assert_ne!(user_token, format!("Bearer {token}"));
    assert_eq!(machine_grants(&idp).await, 1);
}

/// A gateway in front of a [`RogueIdp`] with one `token = "client"` route
/// (callers authenticate with a bearer token the rogue IdP signs).
pub async fn machine_gateway() -> (RogueIdp, Upstream, Gateway, String) {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/mm/\"\nupstream = \"{}\"\nauth = \"bearer\"\ntoken = \"client\"\nclient_scopes = [\"x/y\"]\n",
        upstream.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replace(
        "insecure_allow_http = true",
        "insecure_allow_http = true\naudiences = [\"urn:orders-api\"]",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let caller = idp.key.sign(&json!({
        "iss": idp.issuer, "aud": "urn:orders-api", "sub": "client-7",
        "iat": now(), "exp": now() + 10 * 86_400,
    }));
    (idp, upstream, gw, caller)
}

/// Against an IdP whose answers the test writes: an API client (bearer) on a
/// `token = "client"` route is not forwarded with its own token but with the
/// machine token; answers that are no usable bearer token give 502 and
/// reach no upstream.
#[tokio::test]
async fn hostile_or_broken_token_answers_never_reach_the_upstream() {
    let (idp, upstream, gw, caller) = machine_gateway().await;
    let call = || async {
        reqwest::Client::new()
            .get(format!("{}/mm/x", gw.url))
            .header("authorization", format!("Bearer {caller}"))
            .send()
            .await
            .unwrap()
    };
    for (what, answer) in [
        ("an error", None),
        (
            "a header injection",
            Some(
                json!({"access_token": "m\r\nx-injected: 1", "token_type": "Bearer", "expires_in": 300}),
            ),
        ),
        (
            "another token type",
            Some(json!({"access_token": "m", "token_type": "mac", "expires_in": 300})),
        ),
        ("no access token", Some(json!({"token_type": "Bearer"}))),
    ] {
        if let Some(a) = answer {
            idp.answer_with(a);
        }
        let r = call().await;
        assert_eq!(r.status(), 502, "{what}");
        assert_eq!(upstream.count(), 0, "{what}: nothing reached the upstream");
        // Past the failure's backoff (at most 60 s), the next case is asked.
        gw.clock().advance(Duration::from_secs(61));
    }
    idp.answer_with(
        json!({"access_token": "machine-xyz", "token_type": "Bearer", "expires_in": 300}),
    );
    let r = call().await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last().header("authorization"),
        Some("Bearer machine-xyz"),
        "the machine token, not the caller's"
    );
    // Cached: the next call needs no answer from the IdP.
    assert_eq!(call().await.status(), 200);
    assert_eq!(upstream.count(), 2);
}

/// A WebSocket handshake on a `token = "client"` route carries the machine
/// token upstream too (here the upstream declines the upgrade and answers
/// as to any request, which shows what it received).
#[tokio::test]
async fn a_websocket_handshake_carries_the_machine_token() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({}));
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/live/\"\nupstream = \"{}\"\ntoken = \"client\"\nclient_scopes = [\"api:read\"]\nwebsocket = true\n",
        upstream.url
    );
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, &routes)).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let r = b
        .get(format!("{}/live/feed", gw.url))
        .header("origin", &gw.url)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["verified"], true, "{body}");
    assert_eq!(body["claims"]["sub"], "bff");
    assert_eq!(upstream.last().header("upgrade"), Some("websocket"));
}
