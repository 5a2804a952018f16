//! The whole sign-in, proxy and sign-out flow against the real test IdP.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const API_ROUTE: &str = r#"
[[route]]
path = "/api/"
upstream = "UPSTREAM"
token = "access"
"#;

struct Stack {
    idp: Idp,
    upstream: Upstream,
    gw: Gateway,
}

async fn stack() -> Stack {
    let reserved = reserve().await;
    let idp = Idp::for_gateway(&reserved.url, json!({}));
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let toml = config_toml(
        &reserved.url,
        &idp.issuer,
        &API_ROUTE.replace("UPSTREAM", &upstream.url),
    );
    let gw = Gateway::start(reserved, &toml).await;
    Stack { idp, upstream, gw }
}

#[tokio::test]
async fn sign_in_call_api_and_sign_out() {
    let s = stack().await;
    let b = browser();

    // Not signed in: an API call gets 401 JSON, a navigation is sent to sign in.
    let r = b
        .get(format!("{}/api/orders", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(body["login_url"], "/auth/login");
    let r = b
        .get(format!("{}/api/orders?x=1", s.gw.url))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        location(&r),
        "/auth/login?return_to=%2Fapi%2Forders%3Fx%3D1"
    );
    assert_eq!(s.upstream.count(), 0);

    // The authorize request carries PKCE S256, state and nonce.
    let r = b
        .get(format!("{}/auth/login?return_to=/orders/7", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let authorize = location(&r);
    assert!(
        authorize.starts_with(&format!("{}/auth?", s.idp.issuer)),
        "{authorize}"
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        param(&authorize, "code_challenge").map(|c| c.len()),
        Some(43)
    );
    assert_eq!(param(&authorize, "state").map(|c| c.len()), Some(43));
    assert_eq!(param(&authorize, "nonce").map(|c| c.len()), Some(43));
    assert_eq!(param(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&authorize, "redirect_uri"),
        Some(format!("{}/auth/callback", s.gw.url))
    );

    // Sign in for real: the callback lands on return_to with a session cookie.
    let r = sign_in(&b, &s.gw.url, "alice", "/orders/7").await;
    assert_eq!(
        r.status(),
        200,
        "with SameSite=Strict the callback answers a landing page"
    );
    let set_cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session_cookie = set_cookies
        .iter()
        .find(|c| c.starts_with("oidc_bff="))
        .expect("session cookie set");
    assert!(
        session_cookie.contains("HttpOnly")
            && session_cookie.contains("SameSite=Strict")
            && session_cookie.contains("Path=/")
    );
    // The consumed login is dropped from the login cookie (one earlier login is still pending).
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with("oidc_bff_login=") && !c.contains("Max-Age=0")),
        "{set_cookies:?}"
    );
    assert_eq!(landing_page(r).await, "/orders/7");
    assert_eq!(s.gw.session_count(), 1);

    // /auth/user needs X-CSRF, then shows the claims.
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["sub"], "alice");
    assert_eq!(user["claims"]["email"], "alice@example.test");
    assert_eq!(user["claims"]["groups"], json!(["admins"]));
    assert!(user["expires_at"].as_i64().unwrap() > now());
    let logout_url = user["logout_url"].as_str().unwrap().to_string();
    assert!(logout_url.starts_with("/auth/logout?sid="));
    assert!(
        !user.to_string().contains("eyJ"),
        "no token in /auth/user: {user}"
    );

    // A proxied API call: the upstream gets a Bearer access token it verifies against the JWKS.
    let r = b
        .get(format!("{}/api/orders?page=2", s.gw.url))
        .header("x-csrf", "1")
        .header("x-forwarded-user", "mallory")
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let api: Value = r.json().await.unwrap();
    assert_eq!(api["verified"], true, "{api}");
    assert_eq!(api["claims"]["sub"], "alice");
    assert_eq!(api["claims"]["aud"], "urn:oidc-bff:api");
    let seen = s.upstream.last();
    assert_eq!(seen.uri, "/api/orders?page=2");
    assert_eq!(seen.header("x-forwarded-user"), None);
    assert_eq!(seen.all("authorization").len(), 1);
    assert_ne!(seen.header("authorization"), Some("Bearer forged"));
    assert!(
        seen.header("cookie")
            .is_none_or(|c| !c.contains("oidc_bff")),
        "gateway cookie forwarded"
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen.header("x-request-id").is_some());

    // Without X-CSRF the same call is refused.
    let r = b
        .get(format!("{}/api/orders", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Sign out (GET with the session's sid): record gone, IdP logout reached.
    let before = s.idp.stats().await;
    let r = b
        .get(format!("{}{logout_url}", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let idp_logout = location(&r);
    assert!(
        idp_logout.starts_with(&format!("{}/session/end?", s.idp.issuer)),
        "{idp_logout}"
    );
    assert!(param(&idp_logout, "id_token_hint").is_some());
    assert_eq!(
        param(&idp_logout, "post_logout_redirect_uri"),
        Some(format!("{}/auth/signed-out", s.gw.url))
    );
    assert_eq!(s.gw.session_count(), 0, "session record deleted");
    let r = b.get(&idp_logout).send().await.unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "IdP logout answered {}",
        r.status()
    );
    let after = s.idp.stats().await;
    assert!(
        after["end_session"].as_i64() > before["end_session"].as_i64(),
        "IdP logout endpoint reached"
    );
    // The refresh token is revoked in the background.
    let mut revoked = false;
    for _ in 0..50 {
        let count = |stats: &Value| stats["revocation"].as_i64().expect("IdP stats: revocation");
        if count(&s.idp.stats().await) > count(&before) {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "refresh token revoked at the IdP");

    // The signed-out page; the old cookie now gets 401.
    let r = b
        .get(format!("{}/auth/signed-out", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn post_logout_and_the_old_cookie_is_dead() {
    let s = stack().await;
    let b = browser();
    let r = sign_in(&b, &s.gw.url, "bob", "/").await;
    let cookie = set_cookie_value(&r, "oidc_bff").expect("session cookie");
    // Keep a copy of the cookie, as someone who stole it would, and use it from elsewhere.
    let thief = browser();
    let with_stolen = || {
        thief
            .get(format!("{}/api/x", s.gw.url))
            .header("x-csrf", "1")
            .header("cookie", format!("oidc_bff={cookie}"))
    };
    assert_eq!(with_stolen().send().await.unwrap().status(), 200);
    // POST logout from the SPA needs X-CSRF; it answers JSON with the IdP URL.
    let r = b
        .post(format!("{}/auth/logout", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        s.gw.session_count(),
        1,
        "a refused logout keeps the session"
    );
    let r = b
        .post(format!("{}/auth/logout", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get_all("set-cookie").iter().any(|c| c
        .to_str()
        .unwrap()
        .starts_with("oidc_bff=;")
        && c.to_str().unwrap().contains("Max-Age=0")));
    let body: Value = r.json().await.unwrap();
    assert!(body["redirect"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/session/end?", s.idp.issuer)));
    assert_eq!(s.gw.session_count(), 0);
    // The same cookie value now gets 401.
    let r = with_stolen().send().await.unwrap();
    assert_eq!(r.status(), 401);
    let upstream_calls = s.upstream.count();
    assert_eq!(with_stolen().send().await.unwrap().status(), 401);
    assert_eq!(
        s.upstream.count(),
        upstream_calls,
        "nothing reached the upstream"
    );
}

/// `GET /auth/logout?sid=…` ends the session only with that session's own
/// `sid`: a wrong one, or another session's (a link a third party could
/// plant), gets the confirmation page and the session lives on. The page's
/// form, posted as a browser posts it (no `X-CSRF`), does end it.
#[tokio::test]
async fn logout_link_needs_its_own_sid_and_the_confirmation_form_ends_it() {
    let s = stack().await;
    let (alice, mallory) = (browser(), browser());
    sign_in(&alice, &s.gw.url, "alice", "/").await;
    sign_in(&mallory, &s.gw.url, "mallory", "/").await;
    assert_eq!(s.gw.session_count(), 2);
    let logout_url = |b: &reqwest::Client| {
        let b = b.clone();
        let gw = s.gw.url.clone();
        async move {
            let (status, user) = api(&b, &format!("{gw}/auth/user")).await;
            assert_eq!(status, 200);
            user["logout_url"].as_str().unwrap().to_string()
        }
    };
    let mallorys = logout_url(&mallory).await;
    let foreign_sid = param(&format!("http://x{mallorys}"), "sid").unwrap();
    let form_re = regex::Regex::new(
        r#"<form method="post" action="([^"]+)">\s*<input type="hidden" name="sid" value="([^"]+)">"#,
    )
    .unwrap();
    let mut form = None;
    for sid in ["", "wrong", "AAAA", foreign_sid.as_str()] {
        let r = alice
            .get(format!("{}/auth/logout?sid={}", s.gw.url, urlencode(sid)))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "sid {sid:?}: the confirmation page");
        assert!(
            r.headers().get_all("set-cookie").iter().next().is_none(),
            "sid {sid:?}: no cookie cleared"
        );
        let page = r.text().await.unwrap();
        let found = form_re
            .captures(&page)
            .unwrap_or_else(|| panic!("no confirmation form: {page}"));
        assert_ne!(&found[2], foreign_sid, "the page offers alice's own sid");
        // askama escapes `/` in the action.
        let action = found[1].replace("&#x2f;", "/").replace("&#47;", "/");
        form = Some((action, found[2].to_string()));
        assert_eq!(s.gw.session_count(), 2, "sid {sid:?} ended a session");
        assert_eq!(api(&alice, &format!("{}/auth/user", s.gw.url)).await.0, 200);
        assert_eq!(
            api(&mallory, &format!("{}/auth/user", s.gw.url)).await.0,
            200
        );
    }
    // The form posted with a wrong sid and no X-CSRF is a cross-site POST:
    // refused, nothing ended.
    let (action, sid) = form.unwrap();
    let r = alice
        .post(format!("{}{action}", s.gw.url))
        .header("accept", "text/html")
        .form(&[("sid", foreign_sid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.gw.session_count(), 2);
    // The form as the page holds it: alice's session ends, mallory's lives.
    let r = alice
        .post(format!("{}{action}", s.gw.url))
        .header("accept", "text/html")
        .form(&[("sid", sid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        location(&r).starts_with(&format!("{}/session/end?", s.idp.issuer)),
        "{}",
        location(&r)
    );
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("oidc_bff=;")));
    assert_eq!(s.gw.session_count(), 1);
    assert_eq!(api(&alice, &format!("{}/auth/user", s.gw.url)).await.0, 401);
    assert_eq!(
        api(&mallory, &format!("{}/auth/user", s.gw.url)).await.0,
        200
    );
    // Mallory's own link ends her own session (the link works, for its owner).
    let r = mallory
        .get(format!("{}{mallorys}", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test]
async fn concurrent_logins_from_several_tabs() {
    let s = stack().await;
    let b = browser();
    // Three tabs start a login; they finish in reverse order and each lands where it began.
    let mut authorize = Vec::new();
    for tab in ["/one", "/two", "/three"] {
        let r = b
            .get(format!("{}/auth/login?return_to={tab}", s.gw.url))
            .send()
            .await
            .unwrap();
        authorize.push((tab, location(&r)));
        // One login cookie, however many tabs.
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies.len(), 1);
        assert!(cookies[0].len() < 3500, "login cookie stays small");
    }
    let mut last = None;
    let mut session_cookies = Vec::new();
    for (tab, url) in authorize.into_iter().rev() {
        let r = sign_in_from(&b, &url, &format!("{}/auth/callback", s.gw.url), "carol").await;
        session_cookies.push(set_cookie_value(&r, "oidc_bff").expect("a session cookie"));
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().to_string())
            .collect();
        assert_eq!(landing_page(r).await, tab);
        last = Some(cookies);
        // Each sign-in in this browser replaced the session it had: one remains.
        assert_eq!(s.gw.session_count(), 1, "after signing in at {tab}");
    }
    // Signing in again rotated the session id: every earlier cookie value,
    // presented alone, is dead; the last one lives.
    let (current, earlier) = session_cookies.split_last().unwrap();
    assert_eq!(earlier.len(), 2);
    let with_cookie = |value: &str| {
        reqwest::Client::new()
            .get(format!("{}/auth/user", s.gw.url))
            .header("x-csrf", "1")
            .header("cookie", format!("oidc_bff={value}"))
            .send()
    };
    for old in earlier {
        assert_ne!(old, current, "a sign-in kept the session id");
        assert_eq!(with_cookie(old).await.unwrap().status(), 401);
    }
    assert_eq!(with_cookie(current).await.unwrap().status(), 200);
    // The last pending login consumed: the login cookie is cleared, nothing piles up.
    let cleared = last
        .unwrap()
        .iter()
        .any(|c| c.starts_with("oidc_bff_login=;") && c.contains("Max-Age=0"));
    assert!(cleared, "login cookie cleared after the last pending login");
}

#[tokio::test]
async fn stored_record_holds_no_token_in_clear() {
    let s = stack().await;
    let b = browser();
    let r = sign_in(&b, &s.gw.url, "alice", "/").await;
    let cookie = set_cookie_value(&r, "oidc_bff").expect("session cookie");
    let keys = s.gw.store.keys();
    assert_eq!(keys.len(), 1);
    let raw = s.gw.store.raw(&keys[0]).unwrap();
    // JWTs start with "eyJ"; the claims would show the user and email.
    for needle in [
        "eyJ",
        "alice",
        "example.test",
        "access_token",
        "refresh_token",
        "sub",
    ] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} visible in the stored record"
        );
    }
    // And the store key is not the cookie value.
    let cookie_header = {
        let r = b
            .get(format!("{}/api/x", s.gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        s.upstream.last()
    };
    assert!(cookie_header
        .header("cookie")
        .is_none_or(|c| !c.contains(&keys[0])));
    // Where it can fail: the store itself. The cookie is `id.mac`; the one
    // record is keyed by a hash of the id, and neither the cookie nor its id
    // is a key or inside the record.
    let (id, _mac) = cookie.split_once('.').expect("cookie is id.mac");
    let id_bytes = B64.decode(id).expect("the cookie's id is base64url");
    assert_eq!(
        keys,
        [B64.encode(Sha256::digest(&id_bytes))],
        "the record this cookie names"
    );
    for key in &keys {
        assert!(
            *key != cookie && !key.contains(id) && !cookie.contains(key.as_str()),
            "the store key is (part of) the cookie value"
        );
    }
    for needle in [cookie.as_bytes(), id.as_bytes(), id_bytes.as_slice()] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "the cookie value (or its id) is inside the stored record"
        );
    }
}

/// A revocation endpoint that accepts the connection and never answers:
/// logout must not wait for it, and the background revocation must give up
/// after `provider.http_timeout` (a refused port would fail at once and
/// prove neither).
#[tokio::test]
async fn logout_completes_when_revocation_never_answers() {
    use tokio::io::AsyncReadExt;
    let http_timeout = Duration::from_secs(2);
    let margin = Duration::from_secs(2);
    let hold = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hold_addr = hold.local_addr().unwrap();
    // Each connection: the request bytes it carried, and how long after the
    // accept the gateway closed it (None: still open when the test gave up).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Option<Duration>)>();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = hold.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let accepted = Instant::now();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let closed = loop {
                    match tokio::time::timeout(Duration::from_secs(15), sock.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break Some(accepted.elapsed()),
                        Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                        Err(_) => break None,
                    }
                };
                let _ = tx.send((String::from_utf8_lossy(&seen).into_owned(), closed));
                // Never answered; the socket drops only now.
                drop(sock);
            });
        }
    });

    let reserved = reserve().await;
    let idp = Idp::for_gateway(&reserved.url, json!({}));
    let toml = config_toml(&reserved.url, &idp.issuer, "").replace(
        "insecure_allow_http = true",
        &format!(
            "insecure_allow_http = true\nhttp_timeout = \"{}s\"\nrevocation_endpoint = \"http://{hold_addr}/revoke\"",
            http_timeout.as_secs()
        ),
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    assert_eq!(gw.session_count(), 1);

    let started = Instant::now();
    let r = tokio::time::timeout(
        http_timeout + margin,
        b.post(format!("{}/auth/logout", gw.url))
            .header("x-csrf", "1")
            .send(),
    )
    .await
    .expect("logout answered within provider.http_timeout plus a margin")
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < http_timeout + margin,
        "logout took {:?}",
        started.elapsed()
    );
    let body: Value = r.json().await.unwrap();
    assert!(body["redirect"].as_str().unwrap().contains("/session/end?"));
    assert_eq!(gw.session_count(), 0, "the session record is gone");
    let r = b
        .get(format!("{}/auth/user", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The revocation did go out, to the endpoint that never answers, and
    // the gateway dropped it after http_timeout rather than holding it.
    let (request, closed) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the gateway connected to the revocation endpoint")
        .unwrap();
    assert!(
        request.starts_with("POST /revoke "),
        "not a revocation request: {:?}",
        request.lines().next()
    );
    let closed = closed.expect("the gateway held the revocation connection open for 15 s");
    assert!(
        closed < http_timeout + margin,
        "the revocation connection was dropped after {closed:?}, not within http_timeout ({http_timeout:?}) plus {margin:?}"
    );
}

#[tokio::test]
async fn readiness_and_health() {
    let s = stack().await;
    let r = reqwest::get(format!("{}/healthz", s.gw.admin_url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(format!("{}/readyz", s.gw.admin_url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    // Every response carries x-request-id, errors included.
    let r = reqwest::get(format!("{}/nothing-here", s.gw.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
}
