//! One rule per concept, seen from outside: the groups claim is judged by
//! `allow_groups` and forwarded (identity headers, the signed assertion,
//! forward-auth's answer) alike, a name a comma-joined header cannot carry
//! is left out of it; and a `sub` holding CR LF or ESC cannot forge or colour
//! a line of the text log.

use crate::harness::*;
use crate::negative::{callback, good_claims, start_login};
use serde_json::{json, Value};
use std::time::Duration;

/// A gateway (trusting 127.0.0.1 for forward-auth) in front of `upstream`:
/// `/admin/` needs group `admins`, `/api/` only a session; both send the
/// groups header and the assertion.
async fn groups_stack() -> (RogueIdp, Upstream, Gateway) {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/admin/\"\nupstream = \"{0}\"\nallow_groups = [\"admins\"]\nidentity_assertion = true\n\
         identity_headers = {{ groups = \"X-Forwarded-Groups\" }}\n\
         [[route]]\npath = \"/api/\"\nupstream = \"{0}\"\nidentity_assertion = true\n\
         identity_headers = {{ groups = \"X-Forwarded-Groups\" }}\n",
        upstream.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    );
    let gw = Gateway::start(reserved, &toml).await;
    (idp, upstream, gw)
}

/// Signs a fresh browser in with `groups` as the ID token's `groups` claim.
async fn signed_in_with(idp: &RogueIdp, gw: &Gateway, groups: Value) -> reqwest::Client {
    let b = browser();
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    let mut claims = good_claims(&idp.issuer, &nonce);
    claims["groups"] = groups;
    idp.answer_with_id_token(claims);
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200, "signed in");
    b
}

#[tokio::test]
async fn groups_are_judged_and_forwarded_alike() {
    let (idp, upstream, gw) = groups_stack().await;
    // (groups claim, allowed on /admin/, the groups header upstream and from /auth/check)
    let cases = [
        (json!(["admins", "ops"]), true, Some("admins,ops")),
        (json!(["devs", "x,admins"]), false, Some("devs")),
        (json!([" admins", "ops"]), false, Some("ops")),
        (json!("admins staff"), false, Some("admins staff")),
        (json!(["admins\t"]), false, None),
    ];
    for (groups, admin, header) in cases {
        let b = signed_in_with(&idp, &gw, groups.clone()).await;
        let get = |path: &str| b.get(format!("{}{path}", gw.url)).header("x-csrf", "1");

        // The proxy: /admin/ as allow_groups decides, and nothing upstream when refused.
        let before = upstream.count();
        let r = get("/admin/x").send().await.unwrap();
        assert_eq!(r.status(), if admin { 200 } else { 403 }, "{groups}");
        assert_eq!(upstream.count(), before + usize::from(admin), "{groups}");
        if admin {
            assert_eq!(upstream.last().header("x-forwarded-groups"), header);
        }
        // A route with no policy: the header carries exactly the names it can.
        let r = get("/api/x").send().await.unwrap();
        assert_eq!(r.status(), 200, "{groups}");
        let seen = upstream.last();
        assert_eq!(
            seen.all("x-forwarded-groups").first().copied(),
            header,
            "{groups}"
        );
        // The assertion carries the names authorization judged, whole.
        let assertion = seen.header("x-bff-identity").expect("an assertion");
        let claims = verify_with_jwks(&format!("{}/auth/jwks.json", gw.url), assertion)
            .await
            .expect("assertion verifies");
        let judged = if groups.is_string() {
            json!([groups])
        } else {
            groups.clone()
        };
        assert_eq!(claims["groups"], judged, "{groups}");

        // Forward-auth: the same decision and the same header.
        let check = |uri: &str| {
            b.get(format!("{}/auth/check", gw.url))
                .header("x-original-uri", uri.to_string())
                .header("accept", "application/json")
        };
        // The routes keep the default `csrf = true`: the X-CSRF rule applies here too.
        let r = check("/admin/x")
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if admin { 200 } else { 403 }, "{groups}");
        let r = check("/api/x").header("x-csrf", "1").send().await.unwrap();
        assert_eq!(r.status(), 200, "{groups}");
        assert_eq!(
            r.headers()
                .get("x-auth-request-groups")
                .map(|v| v.to_str().unwrap()),
            header,
            "{groups}"
        );
    }
}

/// A `sub` that would forge a line and colour the terminal, in the default
/// text log of the real binary: the request line, "signed in", "signed out".
#[tokio::test]
async fn a_hostile_sub_cannot_forge_text_log_lines() {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let ports = ProcessPorts::new();
    let toml = format!(
        "{server}log_format = \"text\"\n\
         [provider]\nissuer = \"{iss}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
         insecure_allow_http = true\n\
         [session]\nkeys = [\"{key}\"]\n\
         [[route]]\npath = \"/api/\"\nupstream = \"{up}\"\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        key = test_key(),
        up = upstream.url,
    );
    let gw = GatewayProcess::start(&ports, &toml).await;
    gw.wait_ready(Duration::from_secs(20)).await;

    let forged = "FORGED-LINE 2026-01-01T00:00:00Z  INFO oidc_bff: signed in sub=admin";
    let sub = format!("evil\r\n{forged}\u{1b}[31m\u{1b}]0;title\u{7}\n");
    let b = browser();
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    let mut claims = good_claims(&idp.issuer, &nonce);
    claims["sub"] = sub.clone().into();
    idp.answer_with_id_token(claims);
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200, "signed in");
    let r = b
        .get(format!("{}/api/x", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = b
        .post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_redirection() || r.status().is_success(),
        "{}",
        r.status()
    );

    // The lines are written by a background writer: wait for the last one.
    let mut log = String::new();
    for _ in 0..200 {
        log = gw.log();
        if log.contains("signed out") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let escaped = "evil\\r\\nFORGED-LINE";
    for what in ["signed in", "signed out", "request"] {
        assert!(
            log.lines().any(|l| l.contains(what) && l.contains(escaped)),
            "a {what:?} line names the sub, escaped; log:\n{log}"
        );
    }
    assert!(!log.contains('\u{1b}'), "no ESC byte reaches the log");
    assert!(!log.contains('\u{7}'), "no BEL byte reaches the log");
    assert!(!log.contains('\r'), "no CR in the log");
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED-LINE")),
        "no forged line; log:\n{log}"
    );
}
