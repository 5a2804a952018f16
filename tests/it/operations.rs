//! Running it in production: Prometheus metrics after a real flow, JSON logs
//! that never hold a secret, and a graceful shutdown on SIGTERM.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// `name{labels} value` lines of a Prometheus exposition.
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{'))
                .then(|| (rest, value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| labels.iter().all(|want| l.contains(want)))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn metrics_after_a_real_flow() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, serde_json::json!({}));
    let upstream = Upstream::start(None).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, &routes)).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    assert_eq!(
        b.get(format!("{}/api/orders/42?x=1", gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Requests to paths no route claims, with ids in them, must not become labels.
    for p in ["/nothing/12345", "/user/alice/secret", "/api"] {
        b.get(format!("{}{p}", gw.url)).send().await.unwrap();
    }
    let text = reqwest::get(format!("{}/metrics", gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(
        value(&text, "oidc_bff_logins_total", &["outcome=\"success\""]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "oidc_bff_requests_total",
            &["route=\"/api/\"", "method=\"GET\"", "status=\"2xx\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "oidc_bff_requests_total",
            &["route=\"/auth/callback\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "oidc_bff_requests_total",
            &["route=\"unmatched\"", "status=\"4xx\""]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "oidc_bff_requests_total",
            &["route=\"/api/\"", "status=\"4xx\""]
        ),
        1.0,
        "errors keep their route: {text}"
    );
    assert_eq!(
        value(
            &text,
            "oidc_bff_upstream_duration_seconds_count",
            &["route=\"/api/\""]
        ),
        1.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "oidc_bff_request_duration_seconds_count",
            &["route=\"/api/\""]
        ) >= 1.0
    );
    assert_eq!(
        value(
            &text,
            "oidc_bff_jwt_verifications_total",
            &["kind=\"id_token\"", "outcome=\"valid\""]
        ),
        1.0
    );
    assert_eq!(value(&text, "oidc_bff_sessions_active", &[]), 1.0, "{text}");
    assert!(
        value(
            &text,
            "oidc_bff_session_store_duration_seconds_count",
            &["op=\"load\""]
        ) >= 1.0
    );

    // Logout counts, too.
    b.post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    let text = reqwest::get(format!("{}/metrics", gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        value(&text, "oidc_bff_logouts_total", &["kind=\"user\""]),
        1.0
    );

    // Every route label is a configured route id, a gateway endpoint or a fixed word.
    let allowed = ["/api/", "spa", "unmatched"];
    let re = regex::Regex::new(r#"route="([^"]*)""#).unwrap();
    let labels: BTreeSet<String> = re.captures_iter(&text).map(|c| c[1].to_string()).collect();
    for l in &labels {
        assert!(
            allowed.contains(&l.as_str()) || l.starts_with("/auth/"),
            "route label {l:?} is not bounded"
        );
        assert!(
            !l.contains("12345") && !l.contains("alice") && !l.contains("orders/42"),
            "raw path in {l:?}"
        );
    }
}

#[tokio::test]
async fn json_logs_never_hold_secrets() {
    let ports = ProcessPorts::new();
    let idp = idp_for_gateways(&[&ports.url]);
    let upstream = Upstream::start(None).await;
    let key = test_key();
    let toml = format!(
        "{server}log_format = \"json\"\nlog_level = \"debug\"\n\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"offline_access\", \"api:read\"]\ninsecure_allow_http = true\n\
         [session]\nkeys = [\"{key}\"]\n[[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        up = upstream.url
    );
    let gw = GatewayProcess::start(&ports, &toml).await;
    gw.wait_ready(Duration::from_secs(10)).await;
    let b = browser();
    let r = sign_in(&b, &gw.url, "alice", "/").await;
    let code = param(r.url().as_str(), "code").unwrap();
    let cookie = set_cookie_value(&r, "oidc_bff").unwrap();
    assert_eq!(
        b.get(format!("{}/api/x", gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let access = upstream
        .last()
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    let r = b
        .post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let id_token = param(body["redirect"].as_str().unwrap(), "id_token_hint").unwrap();
    // Let background work (revocation) log too.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log = gw.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5, "too few log lines: {log}");
    let mut request_lines = 0;
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "request" || v["fields"]["message"] == "request" {
            request_lines += 1;
        }
    }
    assert!(request_lines >= 4, "one line per request: {log}");
    // A request line names the request id, route, status, latency and user.
    let api_line = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["route"] == "/api/")
        .unwrap_or_else(|| panic!("no request line for /api/: {log}"));
    for field in ["status", "latency_ms", "sub"] {
        assert!(!api_line[field].is_null(), "{field} missing in {api_line}");
    }
    assert_eq!(api_line["sub"], "alice");
    assert!(api_line.to_string().contains("request_id"), "{api_line}");

    let cookie_id = cookie.split('.').next().unwrap();
    for (what, secret) in [
        ("authorization code", code.as_str()),
        ("session cookie", cookie.as_str()),
        ("session id", cookie_id),
        ("access token", access.as_str()),
        ("ID token", id_token.as_str()),
        ("client secret", "bff-secret"),
        ("session key", key.as_str()),
    ] {
        assert!(!log.contains(secret), "the log holds the {what}");
    }
    assert!(!log.contains("eyJ"), "the log holds something JWT-shaped");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_on_every_thread() {
    // Requests stay in flight until the test lets them finish.
    let slow = GatedUpstream::start().await;
    let ports = ProcessPorts::new();
    let idp = RogueIdp::start().await;
    // Three serving threads: the in-flight requests below come on six
    // connections, which the kernel spreads over the threads' sockets.
    let toml = format!(
        "{server}shutdown_delay = \"1s\"\nshutdown_timeout = \"10s\"\nworkers = 3\n\n[provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\ninsecure_allow_http = true\n\
         [session]\nkeys = [\"{key}\"]\n[[route]]\npath = \"/slow\"\nupstream = \"{slow}\"\nauth = \"public\"\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        key = test_key(),
        slow = slow.url,
    );
    let mut gw = GatewayProcess::start(&ports, &toml).await;
    gw.wait_ready(Duration::from_secs(10)).await;

    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            // A client each: a connection each.
            let url = format!("{}/slow", gw.url);
            tokio::spawn(async move {
                let r = reqwest::Client::new().get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    slow.until_arrived(6).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    // Readiness fails first ...
    let mut not_ready = false;
    while signalled.elapsed() < Duration::from_millis(800) {
        if gw.readyz().await == 503 {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(not_ready, "/readyz did not fail right after SIGTERM");
    // ... after the delay (1 s, not before), new connections are refused ...
    while tokio::net::TcpStream::connect(("127.0.0.1", ports.port))
        .await
        .is_ok()
    {
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "new connections are still accepted long after the delay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        signalled.elapsed() >= Duration::from_millis(1000),
        "connections refused {:?} after the signal, before the delay",
        signalled.elapsed()
    );
    // ... the requests in flight complete, and the process exits 0.
    slow.open();
    for request in in_flight {
        let (status, body) = request.await.unwrap();
        assert_eq!((status, body.as_str()), (200, "done"));
    }
    let exit = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the process exits");
    assert!(exit.success(), "exit status {exit:?}; log:\n{}", gw.log());
}
