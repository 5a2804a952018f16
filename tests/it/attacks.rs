//! An attacker's round on the sign-in protocol (issue #16's move onto
//! `openidconnect`/`oauth2`): a rogue IdP shaping token-endpoint answers,
//! leaving `iss` off the callback, and swapping users on refresh. Each case
//! asserts the exact outcome and that no session was created (or switched).

use crate::harness::*;
use crate::negative::{callback, good_claims, rogue_stack, start_login, Rogue};
use serde_json::{json, Value};
use std::time::Duration;

fn token_body(s: &Rogue, nonce: &str) -> Value {
    json!({
        "access_token": "access-1", "token_type": "Bearer", "expires_in": 300,
        "id_token": s.idp.key.sign(&good_claims(&s.idp.issuer, nonce)),
    })
}

fn json_answer(status: u16, body: Vec<u8>) -> RawAnswer {
    RawAnswer {
        status,
        headers: vec![("content-type", "application/json".into())],
        body,
    }
}

/// Token-endpoint answers a rogue IdP can shape: a success status other
/// than 200, a redirect (never followed), a body past the size bound, the
/// wrong media type, duplicated fields. None signs anyone in.
#[tokio::test]
async fn shaped_token_answers_sign_no_one_in() {
    let s = rogue_stack("").await;
    let b = browser();
    type Shape = fn(Vec<u8>) -> RawAnswer;
    let control: Shape = |body| json_answer(200, body);
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp
        .answer_raw(control(token_body(&s, &nonce).to_string().into_bytes()));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/", "control: a plain 200 signs in");
    assert_eq!(s.gw.session_count(), 1);

    let cases: Vec<(&str, Shape)> = vec![
        ("201 with a token body", |body| json_answer(201, body)),
        ("204 with a token body", |body| json_answer(204, body)),
        ("302 to elsewhere", |_| RawAnswer {
            status: 302,
            headers: vec![("location", "http://127.0.0.1:9/token".into())],
            body: vec![],
        }),
        ("text/html", |body| RawAnswer {
            status: 200,
            headers: vec![("content-type", "text/html".into())],
            body,
        }),
        ("a valid answer padded past 1 MiB", |body| {
            let mut padded = b" ".repeat(2 * 1024 * 1024);
            padded.extend(body);
            json_answer(200, padded)
        }),
        ("access_token twice", |body| {
            let text = String::from_utf8(body).unwrap();
            let dup = text.replacen('{', "{\"access_token\":\"other\",", 1);
            json_answer(200, dup.into_bytes())
        }),
        ("id_token twice", |body| {
            let text = String::from_utf8(body).unwrap();
            let dup = text.replacen('{', "{\"id_token\":\"a.b.c\",", 1);
            json_answer(200, dup.into_bytes())
        }),
    ];
    for (name, shape) in cases {
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        s.idp
            .answer_raw(shape(token_body(&s, &nonce).to_string().into_bytes()));
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        let status = r.status().as_u16();
        assert!(matches!(status, 401 | 502), "{name}: {status}");
        assert_eq!(s.gw.session_count(), 1, "{name}: no new session");
    }
}

/// Bodies that never end or never stop: a chunked answer past the size
/// bound (no `Content-Length` to refuse it by), and a valid answer that
/// trickles in for longer than `provider.http_timeout`.
#[tokio::test]
async fn endless_and_slow_token_answers_are_cut_off() {
    let idp = RogueIdp::start().await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "").replace(
        "insecure_allow_http = true",
        "insecure_allow_http = true\nhttp_timeout = \"1s\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let body = |nonce: &str| {
        json!({"access_token": "a", "token_type": "Bearer",
            "id_token": idp.key.sign(&good_claims(&idp.issuer, nonce))})
        .to_string()
        .into_bytes()
    };
    // Control: the same valid answer, chunked and quick, signs in.
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    idp.answer_trickled(json_answer(200, body(&nonce)), Duration::ZERO);
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/", "control");
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    let mut big = b" ".repeat(2 * 1024 * 1024);
    big.extend(body(&nonce));
    idp.answer_trickled(json_answer(200, big), Duration::ZERO);
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 502, "chunked past 1 MiB");
    // 5 chunks of whitespace 400 ms apart, then the answer: over 2 s in all.
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    let mut slow = b" ".repeat(5 * 64 * 1024);
    slow.extend(body(&nonce));
    idp.answer_trickled(json_answer(200, slow), Duration::from_millis(400));
    let start = std::time::Instant::now();
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 502, "trickled past http_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(gw.session_count(), 1, "only the control's");
}

/// RFC 9207: an IdP that advertises `authorization_response_iss_parameter_supported`
/// always names itself on the callback; one without `iss` (a mix-up attack's
/// answer from another IdP) or with another issuer redeems no code.
#[tokio::test]
async fn callbacks_without_the_advertised_iss_are_refused() {
    let idp =
        RogueIdp::start_with(json!({"authorization_response_iss_parameter_supported": true})).await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "");
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let iss = urlencode(&idp.issuer);
    for (name, query) in [
        ("no iss", String::new()),
        ("iss with a trailing slash", format!("&iss={iss}%2F")),
        (
            "iss of another IdP",
            "&iss=https%3A%2F%2Fevil.example".into(),
        ),
        ("iss empty", "&iss=".into()),
    ] {
        let (state, nonce) = start_login(&b, &gw.url, "/").await;
        idp.answer_with_id_token(good_claims(&idp.issuer, &nonce));
        let r = callback(&b, &gw.url, &format!("code=abc&state={state}{query}")).await;
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(gw.session_count(), 0, "{name}");
        // The code was not redeemed: the queued answer is still there; drop it.
        idp.answer_with(json!({}));
    }
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    idp.answer_with_id_token(good_claims(&idp.issuer, &nonce));
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}&iss={iss}")).await;
    assert_eq!(
        landing_page(r).await,
        "/",
        "control: the right iss signs in"
    );
    assert_eq!(gw.session_count(), 1);
}

/// Refresh answers a rogue IdP can shape: an ID token of another `sub` ends
/// the session (never switches users); one without `id_token` or without a
/// rotated refresh token (or with an empty one) keeps the user and the
/// refresh token it has.
#[tokio::test]
async fn refresh_never_switches_users_and_keeps_the_refresh_token() {
    let s = rogue_stack("").await;
    let b = browser();
    let gw_now = || now() + s.gw.clock().offset().as_secs() as i64;
    let id = |sub: &str| {
        s.idp
            .key
            .sign(&json!({"iss": s.idp.issuer, "aud": "bff", "sub": sub,
            "iat": gw_now(), "exp": gw_now() + 600}))
    };
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp.answer_with(json!({
        "access_token": "access-1", "token_type": "Bearer", "expires_in": 300,
        "refresh_token": "refresh-1",
        "id_token": s.idp.key.sign(&good_claims(&s.idp.issuer, &nonce)),
    }));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/");
    let call = || async {
        b.get(format!("{}/api/x", s.gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap()
            .status()
    };
    // No id_token and no refresh_token in the answer: same user, old refresh token kept.
    s.gw.clock().advance(Duration::from_secs(301));
    s.idp.answer_with(
        json!({"access_token": "access-2", "token_type": "Bearer", "expires_in": 300}),
    );
    assert_eq!(call().await, 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some("Bearer access-2")
    );
    assert_eq!(
        s.idp.last_token_param("refresh_token").as_deref(),
        Some("refresh-1")
    );
    // An empty refresh token in the answer is none: the next refresh still
    // sends refresh-1 (checked below).
    s.gw.clock().advance(Duration::from_secs(301));
    s.idp.answer_with(json!({
        "access_token": "access-2b", "token_type": "Bearer", "expires_in": 300,
        "refresh_token": "",
    }));
    assert_eq!(call().await, 200);
    // Another user's ID token: the session ends, nothing goes upstream as them.
    s.gw.clock().advance(Duration::from_secs(301));
    s.idp.answer_with(json!({
        "access_token": "access-3", "token_type": "Bearer", "expires_in": 300,
        "refresh_token": "refresh-3", "id_token": id("user-2"),
    }));
    let seen = s.upstream.count();
    assert_eq!(call().await, 401);
    assert_eq!(
        s.idp.last_token_param("refresh_token").as_deref(),
        Some("refresh-1"),
        "the old refresh token was kept, not lost to a non-rotating answer"
    );
    assert_eq!(s.upstream.count(), seen);
    assert_eq!(s.gw.session_count(), 0, "ended, not switched");
}

/// PKCE downgrade: an IdP that offers only `plain` still gets S256, and the
/// verifier the code is redeemed with is the one the challenge commits to.
#[tokio::test]
async fn pkce_stays_s256_whatever_the_idp_offers() {
    let idp = RogueIdp::start_with(json!({"code_challenge_methods_supported": ["plain"]})).await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "");
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let r = b
        .get(format!("{}/auth/login", gw.url))
        .send()
        .await
        .unwrap();
    let loc = location(&r);
    assert_eq!(
        param(&loc, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = param(&loc, "code_challenge").unwrap();
    let (state, nonce) = (param(&loc, "state").unwrap(), param(&loc, "nonce").unwrap());
    idp.answer_with_id_token(good_claims(&idp.issuer, &nonce));
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/");
    let verifier = idp.last_token_param("code_verifier").unwrap();
    use base64::Engine;
    use sha2::Digest;
    let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(challenge, want);
    assert_ne!(challenge, verifier, "not plain");
    assert_eq!(
        idp.last_token_param("grant_type").as_deref(),
        Some("authorization_code")
    );
}

/// Revocation at sign-out (best effort, in the background) with an `http://`
/// endpoint (`provider.insecure_allow_http`): the request goes to that
/// endpoint, and a redirect from it to an internal host is not followed.
#[tokio::test]
async fn revocation_follows_no_redirect_to_internal_hosts() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let internal = Upstream::start(None).await;
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let to = format!("{}/internal-admin", internal.url);
    let app = axum::Router::new().route(
        "/revoke",
        post(move |form: String| {
            let seen = seen.clone();
            let to = to.clone();
            async move {
                seen.lock().unwrap().push(form);
                (http::StatusCode::TEMPORARY_REDIRECT, [("location", to)])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let revoke = format!("http://{}/revoke", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let idp = RogueIdp::start_with(json!({ "revocation_endpoint": revoke })).await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "");
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    idp.answer_with(json!({
        "access_token": "access-1", "token_type": "Bearer", "refresh_token": "refresh-1",
        "id_token": idp.key.sign(&good_claims(&idp.issuer, &nonce)),
    }));
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/");
    let r = b
        .post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the logout does not wait on revocation");
    for _ in 0..50 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let forms = got.lock().unwrap().clone();
    assert_eq!(
        forms.len(),
        1,
        "one revocation, at the http endpoint: {forms:?}"
    );
    assert!(forms[0].contains("token=refresh-1"), "{}", forms[0]);
    assert_eq!(internal.count(), 0, "the redirect was not followed");
    assert_eq!(gw.session_count(), 0);
}

/// An access token the gateway could not send on as `Authorization: Bearer`
/// text (RFC 6750 §2.1 `b64token`), or not a Bearer token at all: refused at
/// sign-in and at refresh, as machine tokens are, rather than sent on broken,
/// dropped from requests, or sent as what it is not.
#[tokio::test]
async fn access_tokens_that_are_not_bearer_tokens_sign_no_one_in() {
    let s = rogue_stack("").await;
    let b = browser();
    for bad in ["", "a b", "a\r\nX-Evil: 1", "a,Bearer b", "\u{e9}"] {
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        s.idp.answer_with(json!({
            "access_token": bad, "token_type": "Bearer", "expires_in": 300,
            "id_token": s.idp.key.sign(&good_claims(&s.idp.issuer, &nonce)),
        }));
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 502, "{bad:?}");
        assert_eq!(s.gw.session_count(), 0, "{bad:?}");
    }
    // Not a Bearer token (the answer is otherwise fine).
    for token_type in ["DPoP", "mac", "N_A"] {
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        s.idp.answer_with(json!({
            "access_token": "a", "token_type": token_type, "expires_in": 300,
            "id_token": s.idp.key.sign(&good_claims(&s.idp.issuer, &nonce)),
        }));
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 502, "{token_type}");
        assert_eq!(s.gw.session_count(), 0, "{token_type}");
    }
    // At refresh: the session does not go on with it.
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp.answer_with(json!({
        "access_token": "access-1", "token_type": "bearer", "expires_in": 300,
        "refresh_token": "refresh-1",
        "id_token": s.idp.key.sign(&good_claims(&s.idp.issuer, &nonce)),
    }));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(
        landing_page(r).await,
        "/",
        "control: lower-case bearer signs in"
    );
    let call = || async {
        b.get(format!("{}/api/x", s.gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(call().await, 200);
    let seen = s.upstream.count();
    s.gw.clock().advance(Duration::from_secs(400));
    s.idp
        .answer_with(json!({"access_token": "a\nb", "token_type": "Bearer", "expires_in": 300}));
    assert_ne!(call().await, 200);
    assert_eq!(s.upstream.count(), seen, "nothing went upstream");
}

/// Discovery that names another issuer than the configured one (a trailing
/// `/`, a path more, another host) is refused: no login starts (503, the
/// provider is unavailable).
#[tokio::test]
async fn discovery_naming_another_issuer_starts_no_login() {
    for (issuer, want) in [
        ("ISSUER", 302), // control
        ("ISSUER/", 503),
        ("ISSUER/tenant", 503),
        ("https://evil.example", 503),
    ] {
        let idp = RogueIdp::start_with(json!({ "issuer": issuer })).await;
        let reserved = reserve().await;
        let toml = config_toml(&reserved.url, &idp.issuer, "");
        let gw = Gateway::start(reserved, &toml).await;
        let r = browser()
            .get(format!("{}/auth/login", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{issuer}");
    }
}
