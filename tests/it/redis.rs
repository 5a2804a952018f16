//! Sessions across replicas: real `oidc-bff` processes sharing a real
//! `redis-server` (and a 3-node Redis Cluster). A user signs in through one
//! gateway and is served by the other; logout on one ends the session on
//! both; nothing readable is left in Redis; keys rotate without signing
//! anyone out; a Redis outage gives 503s and heals by itself.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Where the gateways keep sessions.
enum Target<'a> {
    Single(&'a RedisServer),
    Cluster(&'a RedisCluster),
}

impl Target<'_> {
    fn session_toml(&self, prefix: &str, keys: &[&str], timeout: &str) -> String {
        let server = match self {
            Target::Single(r) => format!("redis_url = \"{}\"", r.url()),
            Target::Cluster(c) => format!(
                "redis_cluster_urls = [{}]",
                c.urls()
                    .iter()
                    .map(|u| format!("\"{u}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let keys = keys
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!("[session]\nstore = \"redis\"\n{server}\nredis_key_prefix = \"{prefix}\"\nredis_timeout = \"{timeout}\"\nkeys = [{keys}]\n")
    }

    fn dump(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let pattern = format!("{prefix}*");
        match self {
            Target::Single(r) => r.dump(&pattern),
            Target::Cluster(c) => c.dump(&pattern),
        }
    }
}

fn gateway_toml(ports: &ProcessPorts, issuer: &str, upstream: &str, session: &str) -> String {
    format!(
        r#"{server}
[provider]
issuer = "{issuer}"
client_id = "bff"
client_secret = "bff-secret"
scopes = ["openid", "email", "profile", "groups", "offline_access", "api:read"]
insecure_allow_http = true

{session}

[[route]]
path = "/api/"
upstream = "{upstream}"
token = "access"

[[route]]
path = "/public/"
upstream = "{upstream}"
auth = "public"
"#,
        server = ports.server_toml()
    )
}

fn prefix() -> String {
    format!("it-{}:", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Whether the callback's answer completed a sign-in (whatever way it lands
/// the browser on `return_to`: a redirect or a page).
fn signed_in(r: &reqwest::Response) -> bool {
    (r.status().is_success() || r.status().is_redirection())
        && set_cookie_value(r, "oidc_bff").is_some()
}

async fn user(b: &reqwest::Client, gateway: &str) -> reqwest::Response {
    b.get(format!("{gateway}/auth/user"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap()
}

/// Done-means 1 and 3: sign in through A, served by B, logout on B ends it
/// on A, and nothing readable under the prefix.
async fn two_gateways_share_sessions(target: Target<'_>) {
    let (pa, pb) = (ProcessPorts::new(), ProcessPorts::new());
    let idp = idp_for_gateways(&[&pa.url, &pb.url]);
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let prefix = prefix();
    let key = test_key();
    let session = target.session_toml(&prefix, &[&key], "2s");
    let ga = GatewayProcess::start(
        &pa,
        &gateway_toml(&pa, &idp.issuer, &upstream.url, &session),
    )
    .await;
    let gb = GatewayProcess::start(
        &pb,
        &gateway_toml(&pb, &idp.issuer, &upstream.url, &session),
    )
    .await;
    ga.wait_ready(Duration::from_secs(10)).await;
    gb.wait_ready(Duration::from_secs(10)).await;

    // Sign in through A. The cookie jar is keyed by host (127.0.0.1), not
    // port, as a browser's is: B receives the cookie A set.
    let b = browser();
    let r = sign_in(&b, &ga.url, "alice", "/orders").await;
    assert!(
        signed_in(&r),
        "sign-in through A: {}; log:\n{}",
        r.status(),
        ga.log()
    );
    let code = param(r.url().as_str(), "code").expect("the callback carried a code");
    let cookie = set_cookie_value(&r, "oidc_bff").expect("session cookie");
    let cookie_id = cookie
        .split_once('.')
        .expect("cookie is id.mac")
        .0
        .to_string();

    let r = user(&b, &gb.url).await;
    assert_eq!(
        r.status(),
        200,
        "B serves A's session; B log:\n{}",
        gb.log()
    );
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["sub"], "alice");
    let r = b
        .get(format!("{}/api/orders", gb.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let api: Value = r.json().await.unwrap();
    assert_eq!(
        api["verified"], true,
        "B sends A's access token upstream: {api}"
    );
    let access_token = upstream
        .last()
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    assert_eq!(
        user(&b, &ga.url).await.status(),
        200,
        "and A still serves it"
    );

    // Everything under the prefix: opaque keys, sealed values.
    let dump = target.dump(&prefix);
    let records = dump
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}s:")))
        .count();
    assert_eq!(
        records,
        1,
        "{:?}",
        dump.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(
        dump.iter()
            .any(|(k, _)| k.starts_with(&format!("{prefix}sub:"))),
        "a sub index"
    );
    // The record is found by a hash of the cookie's id: neither the cookie
    // nor its id is a key or inside a value.
    assert!(
        dump.iter().any(|(k, _)| *k == record_key(&prefix, &cookie)),
        "no record under the cookie's hashed id"
    );
    for (k, v) in &dump {
        for needle in [
            "alice",
            "example.test",
            "eyJ",
            &access_token,
            &code,
            &cookie,
            &cookie_id,
        ] {
            assert!(!k.contains(needle), "{needle:?} in key {k}");
            assert!(
                !v.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} in clear under {k}"
            );
        }
    }

    // Logout on B ends the session on A too, and leaves nothing behind.
    let r = b
        .post(format!("{}/auth/logout", gb.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        user(&b, &ga.url).await.status(),
        401,
        "A still knows a session B ended"
    );
    assert_eq!(user(&b, &gb.url).await.status(), 401);
    let left: Vec<String> = target.dump(&prefix).into_iter().map(|(k, _)| k).collect();
    assert!(left.is_empty(), "left in Redis after logout: {left:?}");
}

#[tokio::test]
async fn two_gateways_share_one_redis() {
    let redis = RedisServer::start();
    two_gateways_share_sessions(Target::Single(&redis)).await;
}

#[tokio::test]
async fn two_gateways_share_a_redis_cluster() {
    let cluster = RedisCluster::start();
    two_gateways_share_sessions(Target::Cluster(&cluster)).await;
}

/// The id a session cookie names, as its Redis record key.
fn record_key(prefix: &str, cookie: &str) -> String {
    use sha2::{Digest, Sha256};
    let id = B64.decode(cookie.split_once('.').unwrap().0).unwrap();
    format!("{prefix}s:{}", B64.encode(Sha256::digest(id)))
}

/// The 4-byte key id a sealed record starts with (after the version byte).
fn key_id(key: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let raw = B64.decode(key).unwrap();
    Sha256::new_with_prefix(b"oidc-bff key id\0")
        .chain_update(raw)
        .finalize()[..4]
        .to_vec()
}

/// Done-means 4: rotate (new key first, old kept), then remove the old key.
/// With several replicas the new key is staged first (second in the ring, so
/// every replica can open what any other seals), then promoted: a rolling
/// deploy of each step keeps every session working on every replica.
async fn rotation(target: Target<'_>) {
    let ports: Vec<ProcessPorts> = (0..4).map(|_| ProcessPorts::new()).collect();
    let idp = idp_for_gateways(&[&ports[0].url]);
    let upstream = Upstream::start(None).await;
    let prefix = prefix();
    let (old, new) = (test_key(), test_key());
    let toml = |ports: &ProcessPorts, keys: &[&str]| {
        gateway_toml(
            ports,
            &idp.issuer,
            &upstream.url,
            &target.session_toml(&prefix, keys, "2s"),
        )
    };
    let sealed_by = |cookie: &str| {
        let key = record_key(&prefix, cookie);
        let dump = target.dump(&prefix);
        let (_, v) = dump
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("no record {key}"));
        v[1..5].to_vec()
    };

    // Two users sign in while only the old key exists.
    let g1 = GatewayProcess::start(&ports[0], &toml(&ports[0], &[&old])).await;
    g1.wait_ready(Duration::from_secs(10)).await;
    let (used, unused) = (browser(), browser());
    let r = sign_in(&used, &g1.url, "alice", "/").await;
    let cookie = set_cookie_value(&r, "oidc_bff").expect("session cookie");
    sign_in(&unused, &g1.url, "bob", "/").await;
    assert_eq!(sealed_by(&cookie), key_id(&old));

    // Staged: the new key known to every replica, not yet sealing.
    let staged = GatewayProcess::start(&ports[1], &toml(&ports[1], &[&old, &new])).await;
    staged.wait_ready(Duration::from_secs(10)).await;
    drop(g1);
    let r = user(&used, &staged.url).await;
    assert_eq!(r.status(), 200);
    assert!(
        set_cookie_value(&r, "oidc_bff").is_none(),
        "nothing to re-issue yet"
    );

    // Promoted: the new key first, the old one kept. The session works, its
    // cookie is re-issued and its record re-sealed under the new key ...
    let promoted = GatewayProcess::start(&ports[2], &toml(&ports[2], &[&new, &old])).await;
    promoted.wait_ready(Duration::from_secs(10)).await;
    let r = user(&used, &promoted.url).await;
    assert_eq!(r.status(), 200, "log:\n{}", promoted.log());
    let reissued = set_cookie_value(&r, "oidc_bff").expect("cookie re-issued under the new key");
    assert_ne!(reissued, cookie);
    assert_eq!(
        sealed_by(&cookie),
        key_id(&new),
        "record re-sealed under the new key"
    );
    // ... and a replica not yet promoted still serves it during the rollout.
    assert_eq!(user(&used, &staged.url).await.status(), 200);
    drop(staged);
    assert_eq!(user(&used, &promoted.url).await.status(), 200);
    assert_eq!(sealed_by(&cookie), key_id(&new));
    drop(promoted);

    // The old key leaves the ring: the re-sealed session lives on, the one
    // sealed only with the old key is signed out cleanly (401 / re-login).
    let last = GatewayProcess::start(&ports[3], &toml(&ports[3], &[&new])).await;
    last.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(user(&used, &last.url).await.status(), 200);
    let r = user(&unused, &last.url).await;
    assert_eq!(r.status(), 401, "not a 500; log:\n{}", last.log());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthenticated");
    let r = unused
        .get(format!("{}/api/x", last.url))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a navigation is sent to sign in again");
    assert!(location(&r).starts_with("/auth/login"));
}

#[tokio::test]
async fn key_rotation_without_signing_anyone_out() {
    let redis = RedisServer::start();
    rotation(Target::Single(&redis)).await;
}

#[tokio::test]
async fn key_rotation_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    rotation(Target::Cluster(&cluster)).await;
}

async fn one_gateway(redis: &RedisServer, timeout: &str) -> (Idp, Upstream, GatewayProcess) {
    let ports = ProcessPorts::new();
    let idp = idp_for_gateways(&[&ports.url]);
    let upstream = Upstream::start(None).await;
    let session = Target::Single(redis).session_toml(&prefix(), &[&test_key()], timeout);
    let gw = GatewayProcess::start(
        &ports,
        &gateway_toml(&ports, &idp.issuer, &upstream.url, &session),
    )
    .await;
    gw.wait_ready(Duration::from_secs(10)).await;
    (idp, upstream, gw)
}

/// While the store is down: 503 JSON for APIs, 503 HTML for navigations,
/// public routes and `/healthz` fine, `/readyz` failing.
async fn assert_store_down(b: &reqwest::Client, gw: &GatewayProcess, bound: Duration) {
    let t = Instant::now();
    let r = user(b, &gw.url).await;
    assert_eq!(r.status(), 503, "log:\n{}", gw.log());
    eprintln!("503 after {:?}", t.elapsed());
    assert!(t.elapsed() < bound, "answer took {:?}", t.elapsed());
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "session_store_unavailable", "{body}");

    let r = b
        .get(format!("{}/api/orders", gw.url))
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Sessions are unavailable right now"));

    let r = b
        .get(format!("{}/public/hello", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "public routes keep working");
    assert_eq!(
        reqwest::get(format!("{}/healthz", gw.admin_url))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(gw.readyz().await, 503);
}

/// Done-means 5: kill Redis mid-run, get 503s, restart it, and within 5 s
/// new sign-ins work again, with no gateway restart.
#[tokio::test]
async fn redis_outage_gives_503_and_heals_by_itself() {
    let redis = RedisServer::start();
    let (_idp, _up, mut gw) = one_gateway(&redis, "1s").await;
    let b = browser();
    assert!(signed_in(&sign_in(&b, &gw.url, "alice", "/").await));
    assert_eq!(user(&b, &gw.url).await.status(), 200);

    redis.kill();
    assert_store_down(&b, &gw, Duration::from_secs(3)).await;
    // A sign-in cannot complete without a store: 503, not a crash.
    let late = browser();
    let r = sign_in(&late, &gw.url, "carol", "/").await;
    assert_eq!(r.status(), 503);

    redis.restart();
    let back = Instant::now();
    let fresh = browser();
    loop {
        let r = sign_in(&fresh, &gw.url, "bob", "/").await;
        if signed_in(&r) && user(&fresh, &gw.url).await.status() == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no sign-in within 5 s of Redis returning; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "sign-in works again {:?} after Redis returned",
        back.elapsed()
    );
    assert_eq!(gw.readyz().await, 200);
    // The old session died with Redis' memory: a clean 401, not an error.
    assert_eq!(user(&b, &gw.url).await.status(), 401);
    assert!(gw.alive(), "the gateway process died");
    assert!(!gw.log().contains("panicked"), "log:\n{}", gw.log());
}

/// A Redis that stops answering (SIGSTOP) is bounded by `redis_timeout`, and
/// sessions come back when it answers again.
#[tokio::test]
async fn slow_redis_is_bounded_by_the_timeout() {
    let redis = RedisServer::start();
    let (_idp, _up, mut gw) = one_gateway(&redis, "500ms").await;
    let b = browser();
    assert!(signed_in(&sign_in(&b, &gw.url, "alice", "/").await));

    redis.pause();
    assert_store_down(&b, &gw, Duration::from_secs(2)).await;

    redis.resume();
    let back = Instant::now();
    while user(&b, &gw.url).await.status() != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "session not back within 5 s; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "session back {:?} after Redis answered again",
        back.elapsed()
    );
    assert_eq!(gw.readyz().await, 200);
    assert!(gw.alive());
}

/// A gateway that starts before Redis (a fresh deployment, a Redis restart
/// racing a rollout) starts anyway, is not ready, and becomes ready by itself.
#[tokio::test]
async fn gateway_starts_before_redis_and_becomes_ready() {
    let redis = RedisServer::start();
    redis.kill();
    let ports = ProcessPorts::new();
    let idp = idp_for_gateways(&[&ports.url]);
    let upstream = Upstream::start(None).await;
    let session = Target::Single(&redis).session_toml(&prefix(), &[&test_key()], "1s");
    let mut gw = GatewayProcess::start(
        &ports,
        &gateway_toml(&ports, &idp.issuer, &upstream.url, &session),
    )
    .await;
    let b = browser();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.readyz().await, 503);
    assert_eq!(
        b.get(format!("{}/public/x", gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // No cookie, no store lookup: plainly not signed in.
    assert_eq!(user(&b, &gw.url).await.status(), 401);

    redis.restart();
    gw.wait_ready(Duration::from_secs(5)).await;
    assert!(signed_in(&sign_in(&b, &gw.url, "alice", "/").await));
    assert_eq!(user(&b, &gw.url).await.status(), 200);
    assert!(gw.alive());
}
