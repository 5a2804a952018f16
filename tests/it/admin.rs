//! The admin sessions API (`/admin/sessions` on the admin listener): off
//! without a token, 401 for every wrong way of sending one, a listing that
//! carries nothing to ride a session with, ending one or all sessions of a
//! user (with the memory store, and across two gateway processes sharing
//! Redis), audit lines without the token, and nothing of it on the public
//! listener, however the path is spelled.

use crate::harness::*;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "adm1n-T0ken-0123456789abcdefghijklmnopqrstuvwxyz";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1";

/// A browser that says it is `user_agent`.
fn browser_as(user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .user_agent(user_agent)
        .build()
        .unwrap()
}

/// `[server]` lines naming the admin token file (written with the final
/// newline editors and `kubectl create secret --from-file` leave).
fn token_file(dir: &ScratchDir) -> String {
    let path = dir.write("admin-token", &format!("{TOKEN}\n"));
    format!("admin_token_file = {:?}\n", path.display().to_string())
}

fn routes(upstream: &str) -> String {
    format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{upstream}\"\n\
         [[route]]\npath = \"/app/\"\nupstream = \"{upstream}\"\ncsrf = false\n"
    )
}

/// An admin call with the right token.
async fn admin(method: reqwest::Method, url: String) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

async fn list(admin_url: &str, sub_query: &str) -> Value {
    let r = admin(
        reqwest::Method::GET,
        format!("{admin_url}/admin/sessions?sub={sub_query}"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

struct Signed {
    browser: reqwest::Client,
    cookie: String,
}

async fn signed_in(gw: &str, user: &str, user_agent: &str) -> Signed {
    let browser = browser_as(user_agent);
    let r = sign_in(&browser, gw, user, "/").await;
    let cookie = set_cookie_value(&r, "oidc_bff").expect("a session cookie");
    assert_eq!(api(&browser, &format!("{}/api/x", gw)).await.0, 200);
    Signed { browser, cookie }
}

/// An in-process gateway with the admin API on (its token file in a scratch
/// directory) in front of the test IdP and an upstream.
async fn admin_gateway() -> (ScratchDir, Idp, Upstream, Gateway) {
    let dir = ScratchDir::new("admin");
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, serde_json::json!({}));
    let upstream = Upstream::start(None).await;
    let toml = config_toml(&url, &idp.issuer, &routes(&upstream.url)).replacen(
        "[server]\n",
        &format!("[server]\n{}", token_file(&dir)),
        1,
    );
    let gw = Gateway::start(reserved, &toml).await;
    (dir, idp, upstream, gw)
}

#[tokio::test]
async fn off_without_a_token_file() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, serde_json::json!({}));
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, "")).await;
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = admin(method, format!("{}/admin/sessions?sub=alice", gw.admin_url)).await;
        assert_eq!(r.status(), 404);
    }
    // The rest of the admin listener is there.
    assert_eq!(
        reqwest::get(format!("{}/healthz", gw.admin_url))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn wrong_or_missing_admin_tokens_are_refused() {
    let (_dir, _idp, _upstream, gw) = admin_gateway().await;
    let alice = signed_in(&gw.url, "alice", FIREFOX).await;
    let target = format!("{}/admin/sessions?sub=alice", gw.admin_url);
    let right = format!("Bearer {TOKEN}");
    let refused: Vec<Vec<String>> = vec![
        vec![],
        vec![format!("Bearer {TOKEN}x")],
        vec![format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])],
        vec![format!("Bearer {}", TOKEN.to_uppercase())],
        vec![TOKEN.to_string()],
        vec![format!("Basic {TOKEN}")],
        vec![format!("Token {TOKEN}")],
        vec![format!("Bearer{TOKEN}")],
        vec![format!("Bearer {TOKEN} {TOKEN}")],
        vec![format!("Bearer {TOKEN},Bearer {TOKEN}")],
        vec!["Bearer".into()],
        // Two headers: refused even when both (or one) carry the token.
        vec![right.clone(), right.clone()],
        vec![right.clone(), "Bearer nope".into()],
        vec!["Bearer nope".into(), right.clone()],
    ];
    for headers in &refused {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let mut req = reqwest::Client::new().request(method.clone(), &target);
            for h in headers {
                req = req.header("authorization", h);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {headers:?}");
            assert_eq!(
                r.headers()["www-authenticate"],
                "Bearer realm=\"oidc-bff admin\""
            );
            assert!(r.headers().contains_key("x-request-id"));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{body}");
            assert!(!body.to_string().contains(TOKEN), "{body}");
        }
    }
    // Also on the single-session route.
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/sessions/x?sub=alice", gw.admin_url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Not as a query parameter or form field (RFC 6750 §2.2, §2.3), nor in a cookie.
    let r = reqwest::Client::new()
        .delete(format!("{target}&access_token={TOKEN}"))
        .header("cookie", format!("access_token={TOKEN}"))
        .form(&[("access_token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A huge header is refused, not a crash.
    let r = reqwest::Client::new()
        .get(&target)
        .header("authorization", format!("Bearer {}", "A".repeat(60_000)))
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 401 | 431), "{}", r.status());
    assert_eq!(
        reqwest::get(format!("{}/healthz", gw.admin_url))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        api(&alice.browser, &format!("{}/api/x", &gw.url)).await.0,
        200,
        "still signed in"
    );
    // The scheme is case-insensitive (RFC 9110 §11.1), and only the scheme.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = reqwest::Client::new()
            .get(&target)
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn list_and_end_sessions_with_the_memory_store() {
    let (_dir, _idp, _upstream, gw) = admin_gateway().await;
    let laptop = signed_in(&gw.url, "alice", FIREFOX).await;
    let phone = signed_in(&gw.url, "alice", SAFARI).await;
    let bob = signed_in(&gw.url, "bob", FIREFOX).await;
    let odd_sub = "ödd/üser+1 %2F";
    let odd = signed_in(&gw.url, odd_sub, FIREFOX).await;
    assert_eq!(gw.session_count(), 4);

    let listing = list(&gw.admin_url, "alice").await;
    assert_eq!(listing["sub"], "alice");
    assert_eq!(listing["count"], 2);
    let sessions = listing["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let agents: Vec<&str> = sessions
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    assert!(agents.contains(&"Firefox 128 on Linux"), "{agents:?}");
    assert!(agents.contains(&"Safari 17 on iOS"), "{agents:?}");
    let now = now();
    for s in sessions {
        let fields: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "created_at",
                "expires_at",
                "handle",
                "idle_expires_at",
                "last_seen",
                "user_agent"
            ],
            "{s}"
        );
        let created = s["created_at"].as_i64().unwrap();
        assert!((now - 60..=now + 5).contains(&created), "{s}");
        assert!(s["last_seen"].as_i64().unwrap() >= created);
        assert!(s["expires_at"].as_i64().unwrap() > now);
        assert!(s["idle_expires_at"].as_i64().unwrap() > now);
    }

    // Nothing in the listing lets anyone ride a session: no token, no
    // cookie value or part of it, no store key.
    let text = listing.to_string();
    for signed in [&laptop, &phone] {
        let session = gw
            .state
            .sessions
            .load(&signed.cookie)
            .await
            .unwrap()
            .expect("a live session");
        let d = &session.data;
        let mut secrets = vec![d.access_token.clone(), d.id_token.clone()];
        secrets.extend(d.refresh_token.clone());
        secrets.push(signed.cookie.clone());
        secrets.extend(signed.cookie.split('.').map(str::to_string));
        secrets.push(session.id.store_key());
        for secret in secrets {
            assert!(secret.len() >= 16);
            assert!(!text.contains(&secret), "listing holds {secret}: {text}");
        }
    }
    for key in gw.store.keys() {
        assert!(!text.contains(&key), "listing holds a store key: {text}");
    }
    for name in ["token", "cookie", "session_id", "\"id\""] {
        assert!(!text.contains(name), "{name} in {text}");
    }
    let handle = |i: usize| sessions[i]["handle"].as_str().unwrap().to_string();
    let laptop_handle = sessions
        .iter()
        .find(|s| s["user_agent"] == "Firefox 128 on Linux")
        .unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_string();
    // A handle is no cookie: as one, it is refused.
    for h in [handle(0), handle(1)] {
        let r = reqwest::Client::new()
            .get(format!("{}/api/x", gw.url))
            .header("x-csrf", "1")
            .header("cookie", format!("oidc_bff={h}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    // End one: that browser is signed out, alice's other one and bob are not.
    let one = |h: &str, sub: &str| format!("{}/admin/sessions/{h}?sub={sub}", gw.admin_url);
    // Another user's handle does not end alice's session.
    let r = admin(reqwest::Method::DELETE, one(&laptop_handle, "bob")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    let r = admin(reqwest::Method::DELETE, one(&laptop_handle, "alice")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ended"], 1);
    assert_eq!(body["handle"], laptop_handle.as_str());
    assert_signed_out(&laptop.browser, &gw.url, "/api/x").await;
    assert_eq!(
        api(&phone.browser, &format!("{}/api/x", &gw.url)).await.0,
        200
    );
    assert_eq!(
        api(&bob.browser, &format!("{}/api/x", &gw.url)).await.0,
        200
    );
    assert_eq!(list(&gw.admin_url, "alice").await["count"], 1);
    // Ending it again, or a session that never was: 404.
    for h in [
        laptop_handle.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        "..",
        "%2F",
    ] {
        let r = admin(reqwest::Method::DELETE, one(h, "alice")).await;
        assert_eq!(r.status(), 404, "{h}");
    }

    // End all of alice's: the phone goes too; bob stays.
    let r = admin(
        reqwest::Method::DELETE,
        format!("{}/admin/sessions?sub=alice", gw.admin_url),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"sub": "alice", "ended": 1})
    );
    assert_signed_out(&phone.browser, &gw.url, "/api/x").await;
    assert_eq!(
        api(&bob.browser, &format!("{}/api/x", &gw.url)).await.0,
        200
    );
    assert_eq!(list(&gw.admin_url, "alice").await["count"], 0);

    // A sub with odd characters, percent-encoded: found and ended; a
    // near-miss spelling is another user.
    let encoded = urlencode(odd_sub);
    let listing = list(&gw.admin_url, &encoded).await;
    assert_eq!(listing["sub"], odd_sub);
    assert_eq!(listing["count"], 1);
    for near in ["%C3%B6dd", "%C3%B6dd%2F%C3%BCser", "odd%2Fuser%2B1"] {
        assert_eq!(list(&gw.admin_url, near).await["count"], 0, "{near}");
    }
    let r = admin(
        reqwest::Method::DELETE,
        format!("{}/admin/sessions?sub={encoded}", gw.admin_url),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["ended"], 1);
    assert_signed_out(&odd.browser, &gw.url, "/api/x").await;

    // Bad requests: no sub, an empty one, two.
    for q in ["", "?sub=", "?sub=bob&sub=alice", "?user=bob"] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let r = admin(
                method.clone(),
                format!("{}/admin/sessions{q}", gw.admin_url),
            )
            .await;
            assert_eq!(r.status(), 400, "{method} {q}");
            assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request");
        }
    }
    assert_eq!(
        api(&bob.browser, &format!("{}/api/x", &gw.url)).await.0,
        200,
        "bob untouched"
    );
    assert_eq!(gw.session_count(), 1);
}

#[tokio::test]
async fn nothing_of_it_on_the_public_listener() {
    let (_dir, _idp, upstream, gw) = admin_gateway().await;
    let alice = signed_in(&gw.url, "alice", FIREFOX).await;
    let handle = list(&gw.admin_url, "alice").await["sessions"][0]["handle"]
        .as_str()
        .unwrap()
        .to_string();
    let spellings = [
        "/admin/sessions".to_string(),
        "/admin/sessions/".into(),
        format!("/admin/sessions/{handle}"),
        "//admin/sessions".into(),
        "///admin//sessions".into(),
        "/%2Fadmin/sessions".into(),
        "/%2fadmin%2fsessions".into(),
        "/admin%2Fsessions".into(),
        "/%61dmin/sessions".into(),
        "/./admin/sessions".into(),
        "/x/../admin/sessions".into(),
        "/ADMIN/SESSIONS".into(),
        "/Admin/Sessions".into(),
        "/auth/admin/sessions".into(),
        "/auth//admin/sessions".into(),
        "/AUTH/admin/sessions".into(),
        "/auth/%2e%2e/admin/sessions".into(),
        "/auth/admin%2Fsessions".into(),
        "/api/../admin/sessions".into(),
    ];
    for path in &spellings {
        for method in ["GET", "DELETE"] {
            let request = format!(
                "{method} {path}?sub=alice HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
                host = gw.url.trim_start_matches("http://")
            );
            let (status, text) = raw_exchange(&gw.url, request.as_bytes()).await;
            // Refused before routing (a path without a canonical form) or
            // not found; never the API.
            assert!(
                status == 404 || status == 400,
                "{method} {path}: {status}\n{text}"
            );
            assert!(!text.contains("\"sessions\""), "{method} {path}: {text}");
            assert!(!text.contains("\"ended\""), "{method} {path}: {text}");
        }
    }
    // The plain spellings are 404s.
    for path in ["/admin/sessions", "/auth/admin/sessions", "/Admin/Sessions"] {
        let r = reqwest::Client::new()
            .delete(format!("{}{path}?sub=alice", gw.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(
        upstream.count(),
        1,
        "nothing reached the upstream but alice's call"
    );
    assert_eq!(
        api(&alice.browser, &format!("{}/api/x", &gw.url)).await.0,
        200,
        "still signed in"
    );
    assert_eq!(list(&gw.admin_url, "alice").await["count"], 1);
}

/// Two gateway processes sharing Redis: a user's sessions, made on either,
/// ended through one's admin API, are refused by both on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_all_across_two_gateway_processes_sharing_redis() {
    let redis = RedisServer::start();
    let dir = ScratchDir::new("admin");
    let (pa, pb) = (ProcessPorts::new(), ProcessPorts::new());
    let idp = idp_for_gateways(&[&pa.url, &pb.url]);
    let upstream = Upstream::start(None).await;
    let key = test_key();
    let toml = |ports: &ProcessPorts| {
        format!(
            "{server}{admin}log_format = \"json\"\n\
             [provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
             scopes = [\"openid\", \"email\", \"offline_access\", \"api:read\"]\ninsecure_allow_http = true\n\
             [session]\nstore = \"redis\"\nredis_url = \"{redis}\"\nredis_timeout = \"10s\"\nkeys = [\"{key}\"]\n{routes}",
            server = ports.server_toml(),
            admin = token_file(&dir),
            iss = idp.issuer,
            redis = redis.url(),
            routes = routes(&upstream.url),
        )
    };
    let a = GatewayProcess::start(&pa, &toml(&pa)).await;
    let b = GatewayProcess::start(&pb, &toml(&pb)).await;
    a.wait_ready(Duration::from_secs(20)).await;
    b.wait_ready(Duration::from_secs(20)).await;

    let on_a = signed_in(&a.url, "alice", FIREFOX).await;
    let on_b = signed_in(&b.url, "alice", SAFARI).await;
    let bob = signed_in(&b.url, "bob", FIREFOX).await;
    // Sessions are shared: each works on the other replica too.
    assert_eq!(
        api(&on_a.browser, &format!("{}/api/x", &b.url)).await.0,
        200
    );
    assert_eq!(
        api(&on_b.browser, &format!("{}/api/x", &a.url)).await.0,
        200
    );
    assert_eq!(list(&b.admin_url, "alice").await["count"], 2);

    // A wrong token first: refused and logged without any token.
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/sessions?sub=alice", a.admin_url))
        .bearer_auth(format!("{TOKEN}-not"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = admin(
        reqwest::Method::DELETE,
        format!("{}/admin/sessions?sub=alice", a.admin_url),
    )
    .await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.json::<Value>().await.unwrap()["ended"], 2);
    // Each replica refuses each browser on its next request.
    for gw in [&a.url, &b.url] {
        assert_signed_out(&on_a.browser, gw, "/api/x").await;
        assert_signed_out(&on_b.browser, gw, "/api/x").await;
        assert_eq!(
            api(&bob.browser, &format!("{}/api/x", gw)).await.0,
            200,
            "bob untouched"
        );
    }
    assert_eq!(list(&b.admin_url, "alice").await["count"], 0);
    assert!(
        redis.dump("*").iter().all(|(k, _)| !k.contains("alice")),
        "nothing in Redis names the user"
    );

    // One audit line per admin action, with action, sub, count and request
    // id; no log line of either replica holds the admin token.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = a.log();
    let audit: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "admin action" || v["message"] == "admin request refused")
        .collect();
    let ended: Vec<&Value> = audit
        .iter()
        .filter(|v| v["action"] == "end_all_sessions")
        .collect();
    assert_eq!(ended.len(), 1, "{log}");
    let line = ended[0];
    assert_eq!(line["sub"], "alice", "{line}");
    assert_eq!(line["count"], 2, "{line}");
    assert_eq!(line["request_id"], request_id.as_str(), "{line}");
    assert_eq!(line["level"], "INFO");
    let refused: Vec<&Value> = audit.iter().filter(|v| v["action"] == "refused").collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(refused[0]["level"], "WARN");
    assert_eq!(refused[0]["reason"], "wrong token");
    for (name, log) in [("a", a.log()), ("b", b.log())] {
        assert!(
            !log.contains(TOKEN),
            "replica {name} logged the admin token"
        );
        assert!(
            !log.contains(&TOKEN[..20]),
            "replica {name} logged part of it"
        );
    }
    let b_log = b.log();
    assert!(
        b_log.contains("\"action\":\"list_sessions\""),
        "the listing on b is audited: {b_log}"
    );
}
