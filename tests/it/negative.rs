//! What must fail, fails: bad state, replayed codes, forged ID tokens, bad
//! cookies, open redirects. Each asserts the exact status and that no session
//! was created (or lost).

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

pub struct Rogue {
    pub idp: RogueIdp,
    pub upstream: Upstream,
    pub gw: Gateway,
}

impl Rogue {
    /// Signs `b` in through the rogue IdP (fast; no IdP pages involved).
    pub async fn sign_in(&self, b: &reqwest::Client) {
        let (state, nonce) = start_login(b, &self.gw.url, "/").await;
        self.idp
            .answer_with_id_token(good_claims(&self.idp.issuer, &nonce));
        let r = callback(b, &self.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 200);
    }
}

pub async fn rogue_stack(extra: &str) -> Rogue {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "{extra}\n[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes);
    let gw = Gateway::start(reserved, &toml).await;
    Rogue { idp, upstream, gw }
}

/// Starts a login; returns (state, nonce) from the authorize redirect.
pub async fn start_login(b: &reqwest::Client, gw: &str, return_to: &str) -> (String, String) {
    let r = b
        .get(format!(
            "{gw}/auth/login?return_to={}",
            urlencode(return_to)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = location(&r);
    (param(&loc, "state").unwrap(), param(&loc, "nonce").unwrap())
}

pub fn good_claims(issuer: &str, nonce: &str) -> Value {
    json!({
        "iss": issuer, "aud": "bff", "sub": "user-1", "nonce": nonce,
        "iat": now(), "exp": now() + 300, "email": "u@example.test",
    })
}

pub async fn callback(b: &reqwest::Client, gw: &str, query: &str) -> reqwest::Response {
    b.get(format!("{gw}/auth/callback?{query}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn baseline_rogue_login_works() {
    // The negative tests below only mean something if the same setup can succeed.
    let s = rogue_stack("").await;
    let b = browser();
    let (state, nonce) = start_login(&b, &s.gw.url, "/home").await;
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/home");
    assert_eq!(s.gw.session_count(), 1);
    let r = b
        .get(format!("{}/api/x", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some("Bearer opaque-access")
    );
}

#[tokio::test]
async fn bad_state_never_redeems_the_code() {
    let s = rogue_stack("").await;
    let b = browser();
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;

    for (name, query) in [
        ("missing state", "code=abc".to_string()),
        ("empty state", "code=abc&state=".to_string()),
        ("wrong state", "code=abc&state=not-the-state".to_string()),
        (
            "truncated state",
            format!("code=abc&state={}", &state[..20]),
        ),
    ] {
        s.idp
            .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
        let r = callback(&b, &s.gw.url, &query).await;
        assert_eq!(r.status(), 400, "{name}");
        assert!(r.headers().contains_key("x-request-id"));
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Sign in again") && page.contains("Request id"),
            "{name}: {page}"
        );
        assert!(
            !page.contains("panicked") && !page.contains("src/"),
            "{name}"
        );
        assert_eq!(s.gw.session_count(), 0, "{name}");
    }
    // A state from another browser's login does not work in this one.
    let other = browser();
    let (other_state, _) = start_login(&other, &s.gw.url, "/").await;
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={other_state}")).await;
    assert_eq!(r.status(), 400);
    // Without the login cookie at all (e.g. a forged link).
    let r = callback(&browser(), &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(s.gw.session_count(), 0);

    // The real state still works: the failures above consumed nothing of it.
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.gw.session_count(), 1);

    // Replayed: the same callback again is refused, and the token endpoint is not asked.
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(s.gw.session_count(), 1);
}

#[tokio::test]
async fn expired_state_is_refused() {
    // The login cookie's Max-Age is the login timeout, so a browser's jar
    // drops it once it expires and the server never sees it. This client
    // keeps it and sends it by hand, so the server's own expiry check is
    // what is tested.
    let idp = RogueIdp::start().await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "");
    let gw = Gateway::start(reserved, &toml).await;
    let timeout = gw.state.config.provider.login_timeout;
    let name = gw.state.cookies.login_name.clone();
    let no_jar = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (no_jar, name, gw) = (&no_jar, &name, &gw);
    let login = move || async move {
        let r = no_jar
            .get(format!("{}/auth/login?return_to=%2Fhome", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let cookie = set_cookie_value(&r, name).expect("a login cookie");
        let loc = location(&r);
        (
            param(&loc, "state").unwrap(),
            param(&loc, "nonce").unwrap(),
            cookie,
        )
    };
    // An ID token that is valid at the gateway's (moved) time: only the
    // login state's age can fail the callback.
    let answer = |nonce: &str| {
        let at = gw.state.clock.now_secs();
        let mut claims = good_claims(&idp.issuer, nonce);
        claims["iat"] = json!(at);
        claims["exp"] = json!(at + 300);
        idp.answer_with_id_token(claims);
    };
    let callback = |state: String, cookie: String| {
        no_jar
            .get(format!("{}/auth/callback?code=abc&state={state}", gw.url))
            .header("accept", "text/html")
            .header("cookie", format!("{name}={cookie}"))
            .send()
    };

    // The control: just inside the timeout, the same hand-sent cookie signs in.
    let (state, nonce, cookie) = login().await;
    gw.clock().advance(timeout - Duration::from_secs(5));
    answer(&nonce);
    let r = callback(state, cookie).await.unwrap();
    assert_eq!(landing_page(r).await, "/home");
    assert_eq!(gw.session_count(), 1);

    // Past the timeout: the server refuses the state it sealed itself.
    let (state, nonce, cookie) = login().await;
    gw.clock().advance(timeout + Duration::from_secs(1));
    answer(&nonce);
    let r = callback(state, cookie).await.unwrap();
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign in again"), "{page}");
    assert_eq!(gw.session_count(), 1, "no session for the expired login");
}

#[tokio::test]
async fn idp_error_answers_show_a_page() {
    let s = rogue_stack("").await;
    let b = browser();
    let (state, _) = start_login(&b, &s.gw.url, "/").await;
    let r = callback(
        &b,
        &s.gw.url,
        &format!("error=access_denied&error_description=%3Cscript%3E&state={state}"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>"), "description is never echoed");
    assert!(page.contains("Sign in again"));
    // As JSON for API clients.
    let (state, _) = start_login(&b, &s.gw.url, "/").await;
    let r = b
        .get(format!(
            "{}/auth/callback?error=access_denied&state={state}",
            s.gw.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "login_failed");
    assert!(body["request_id"].is_string());
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test]
async fn forged_id_tokens_create_no_session() {
    let s = rogue_stack("").await;
    let other_key = TestKey::es256("rogue-1"); // same kid, different key
    type MakeClaims = fn(&str, &str) -> Value;
    let cases: Vec<(&str, MakeClaims)> = vec![
        ("wrong nonce", |iss: &str, _n: &str| {
            good_claims(iss, "another-nonce")
        }),
        ("missing nonce", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c.as_object_mut().unwrap().remove("nonce");
            c
        }),
        ("wrong aud", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c["aud"] = json!("someone-else");
            c
        }),
        ("aud list without us", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c["aud"] = json!(["a", "b"]);
            c
        }),
        ("several aud, no azp", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c["aud"] = json!(["bff", "other"]);
            c
        }),
        ("azp of another client", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c["azp"] = json!("other");
            c
        }),
        ("wrong iss", |_iss: &str, n: &str| {
            good_claims("https://evil.example.com", n)
        }),
        ("iss with trailing slash", |iss: &str, n: &str| {
            good_claims(&format!("{iss}/"), n)
        }),
        ("expired", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c["exp"] = json!(now() - 3600);
            c
        }),
        ("not yet valid", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c["nbf"] = json!(now() + 3600);
            c
        }),
        ("no sub", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c.as_object_mut().unwrap().remove("sub");
            c
        }),
        ("no iat", |iss: &str, n: &str| {
            let mut c = good_claims(iss, n);
            c.as_object_mut().unwrap().remove("iat");
            c
        }),
    ];
    let b = browser();
    for (name, make) in &cases {
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        s.idp.answer_with_id_token(make(&s.idp.issuer, &nonce));
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(s.gw.session_count(), 0, "{name}");
    }

    // Signed by a key the IdP never published (same kid).
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    let forged = other_key.sign(&good_claims(&s.idp.issuer, &nonce));
    s.idp
        .answer_with(json!({"access_token": "a", "token_type": "Bearer", "id_token": forged}));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 401, "foreign key");

    // alg none, and HS256 "signed" with the public key material.
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    let claims = good_claims(&s.idp.issuer, &nonce);
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rogue-1"})),
        b64(&claims)
    );
    s.idp
        .answer_with(json!({"access_token": "a", "token_type": "Bearer", "id_token": none}));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 401, "alg none");

    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("rogue-1".into());
    let hs = jsonwebtoken::encode(
        &h,
        &good_claims(&s.idp.issuer, &nonce),
        &jsonwebtoken::EncodingKey::from_secret(s.idp.key.jwk.to_string().as_bytes()),
    )
    .unwrap();
    s.idp
        .answer_with(json!({"access_token": "a", "token_type": "Bearer", "id_token": hs}));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 401, "HS256");

    // Garbage instead of a token, and no ID token at all.
    for body in [
        json!({"access_token": "a", "token_type": "Bearer", "id_token": "garbage"}),
        json!({"access_token": "a", "token_type": "Bearer", "id_token": "a.b.c"}),
        json!({"access_token": "a", "token_type": "Bearer"}),
    ] {
        let (state, _) = start_login(&b, &s.gw.url, "/").await;
        s.idp.answer_with(body.clone());
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert!(
            matches!(r.status().as_u16(), 401 | 502),
            "{body}: {}",
            r.status()
        );
        assert_eq!(s.gw.session_count(), 0, "{body}");
    }
}

/// What the ID-token checks gained with `openidconnect`: `at_hash` bound to
/// the access token of the same answer, audiences we do not trust, and a JOSE
/// `typ` that is not a JWT's (an access token's `at+jwt`); plus `azp` naming
/// another client among several audiences, and our rules the crate lacks
/// (`iat` ahead, `crit: null`). The controls sign in with the same signing.
#[tokio::test]
async fn id_tokens_the_crate_refuses() {
    let s = rogue_stack("").await;
    let b = browser();
    let header = s.idp.key.header();
    let with_typ = |typ: &str| {
        let mut h = header.clone();
        h["typ"] = json!(typ);
        h
    };
    let claims_with = |nonce: &str, extra: Value| {
        let mut c = good_claims(&s.idp.issuer, nonce);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Controls: a matching at_hash, and an explicit `typ: JWT`.
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp.answer_with_tokens(
        &header,
        &claims_with(&nonce, json!({"at_hash": at_hash("access-1")})),
        "access-1",
    );
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/", "a matching at_hash signs in");
    assert_eq!(s.gw.session_count(), 1);
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp
        .answer_with_tokens(&with_typ("JWT"), &claims_with(&nonce, json!({})), "a");
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/", "typ JWT signs in");

    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "at_hash of another access token",
            header.clone(),
            json!({"at_hash": at_hash("access-2")}),
            "access-1",
        ),
        (
            "at_hash garbage",
            header.clone(),
            json!({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}),
            "access-1",
        ),
        (
            "several audiences, azp another client",
            header.clone(),
            json!({"aud": ["bff", "other"], "azp": "other"}),
            "a",
        ),
        (
            "several audiences, azp ours, the other untrusted",
            header.clone(),
            json!({"aud": ["bff", "other"], "azp": "bff"}),
            "a",
        ),
        ("typ of an access token", with_typ("at+jwt"), json!({}), "a"),
        (
            "typ of a logout token",
            with_typ("logout+jwt"),
            json!({}),
            "a",
        ),
        // Ours, kept next to the crate's verifier (stricter than it).
        (
            "iat a day ahead",
            header.clone(),
            json!({"iat": now() + 86_400}),
            "a",
        ),
        (
            "crit null (the crate lets it pass)",
            {
                let mut h = header.clone();
                h["crit"] = Value::Null;
                h
            },
            json!({}),
            "a",
        ),
    ];
    for (name, header, extra, access) in cases {
        let before = s.gw.session_count();
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        s.idp
            .answer_with_tokens(&header, &claims_with(&nonce, extra), access);
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(s.gw.session_count(), before, "{name}");
    }
}

#[tokio::test]
async fn replayed_code_at_the_real_idp() {
    let reserved = reserve().await;
    let idp = Idp::for_gateway(&reserved.url, json!({}));
    let toml = config_toml(&reserved.url, &idp.issuer, "");
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let r = sign_in(&b, &gw.url, "alice", "/").await;
    assert_eq!(r.status(), 200);
    let used_code = param(r.url().as_str(), "code").expect("callback had a code");
    assert_eq!(gw.session_count(), 1);
    // A fresh, valid state with the already-used code: the IdP refuses, no session.
    let fresh = browser();
    let (state, _) = start_login(&fresh, &gw.url, "/").await;
    let r = callback(
        &fresh,
        &gw.url,
        &format!("code={}&state={state}", urlencode(&used_code)),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(gw.session_count(), 1);
}

#[tokio::test]
async fn bad_cookies_get_401_and_lose_nothing() {
    let s = rogue_stack("").await;
    let b = browser();
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    let good = set_cookie_value(&r, "oidc_bff").unwrap();
    let (id, tag) = good.split_once('.').unwrap();
    let mut flipped = id.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    // A cookie made by another deployment (another key) for a random id.
    let foreign = {
        let other_gw = rogue_stack("").await;
        let ob = browser();
        let (st, n) = start_login(&ob, &other_gw.gw.url, "/").await;
        other_gw
            .idp
            .answer_with_id_token(good_claims(&other_gw.idp.issuer, &n));
        let r = callback(&ob, &other_gw.gw.url, &format!("code=abc&state={st}")).await;
        set_cookie_value(&r, "oidc_bff").unwrap()
    };
    let bad = [
        String::new(),
        "garbage".into(),
        "....".into(),
        id.to_string(),
        format!("{id}."),
        format!(".{tag}"),
        good[..good.len() - 2].to_string(),
        good[..10].to_string(),
        format!("{flipped}.{tag}"),
        format!("{id}.{}", "A".repeat(tag.len())),
        format!("{good}x"),
        foreign,
        "%00%ff".into(),
        "A".repeat(4000),
    ];
    let anon = browser();
    for value in &bad {
        let r = anon
            .get(format!("{}/api/x", s.gw.url))
            .header("x-csrf", "1")
            .header("cookie", format!("oidc_bff={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{value:?}");
        let r = anon
            .get(format!("{}/auth/user", s.gw.url))
            .header("x-csrf", "1")
            .header("cookie", format!("oidc_bff={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{value:?}");
    }
    // Oversized headers: 431, not a crash.
    let r = anon
        .get(format!("{}/api/x", s.gw.url))
        .header("cookie", format!("oidc_bff={}", "A".repeat(40_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // The real session is untouched by all of that.
    assert_eq!(s.gw.session_count(), 1);
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A garbage login cookie at the callback is just "no pending login".
    let r = anon
        .get(format!("{}/auth/callback?code=a&state=b", s.gw.url))
        .header("cookie", "oidc_bff_login=%%%garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn open_redirect_payloads_land_on_this_origin() {
    let s = rogue_stack("").await;
    let payloads = [
        "//evil.com",
        "//evil.com/%2F..",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https://evil.com",
        "https:evil.com",
        "http:/evil.com",
        "%2F%2Fevil.com",
        "/%2F%2Fevil.com",
        "/%5Cevil.com",
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/\tevil.com",
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r\n/evil.com",
        "/%09/evil.com",
        "/%0d%0a/evil.com",
        "//user:pass@evil.com",
        "//evil.com@good.example",
        "/@evil.com/..//evil.com",
        "evil.com",
        "/ /evil.com",
        "/auth/login",
        "/auth/logout?sid=x",
    ];
    assert!(payloads.len() >= 25);
    let b = browser();
    for p in payloads {
        let (state, nonce) = start_login(&b, &s.gw.url, p).await;
        s.idp
            .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(landing_page(r).await, "/", "{p:?}");
    }
    // A normal path survives intact.
    let (state, nonce) = start_login(&b, &s.gw.url, "/orders/42?tab=items#top").await;
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/orders/42?tab=items#top");
}

#[tokio::test]
async fn csrf_and_identity_headers_on_routes() {
    let extra = r#"
[[route]]
path = "/open/"
upstream = "UP"
auth = "public"

[[route]]
path = "/nocsrf/"
upstream = "UP"
csrf = false
token = "none"
"#;
    let upstream = Upstream::start(None).await;
    let s = rogue_stack(&extra.replace("UP", &upstream.url)).await;
    let b = browser();
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;

    // csrf = true (the default): the session cookie without X-CSRF is refused.
    let r = b
        .post(format!("{}/api/orders", s.gw.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "csrf_required");
    // csrf = false: allowed, and token = "none" sends no Authorization.
    let r = b
        .post(format!("{}/nocsrf/x", s.gw.url))
        .header("authorization", "Bearer client-sent")
        .header("x-forwarded-email", "admin@evil.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(
        seen.header("authorization"),
        None,
        "client Authorization removed on session routes"
    );
    assert_eq!(seen.header("x-forwarded-email"), None);
    // Public routes pass the client's own Authorization (the upstream may use it) but never identity headers.
    let r = browser()
        .get(format!("{}/open/x", s.gw.url))
        .header("authorization", "Basic dXNlcjpwdw==")
        .header("x-forwarded-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwdw=="));
    assert_eq!(seen.header("x-forwarded-user"), None);
}

#[tokio::test]
async fn lax_sessions_land_with_a_plain_redirect() {
    // Strict cookies need the landing page (tested above); Lax ones are sent on
    // a cross-site top-level redirect, so a 302 does.
    let idp = RogueIdp::start().await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "")
        .replace("[session]", "[session]\nsame_site = \"lax\"");
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let (state, nonce) = start_login(&b, &gw.url, "/orders").await;
    idp.answer_with_id_token(good_claims(&idp.issuer, &nonce));
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/orders");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("oidc_bff="))
        .unwrap();
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
}

/// The crate's verifier runs on refreshed ID tokens too: one whose `at_hash`
/// is not the new access token's, or that names an audience we do not trust,
/// is refused, the access token that came with it is never used, and the
/// session goes on with what it had. A genuine refresh before them is the control.
#[tokio::test]
async fn refreshed_id_tokens_meet_the_same_rules() {
    let s = rogue_stack("").await;
    let b = browser();
    let header = s.idp.key.header();
    // The gateway's clock is moved; claims are minted at its time.
    let gw_now = || now() + s.gw.clock().offset().as_secs() as i64;
    let claims = |extra: Value| {
        let mut c = json!({"iss": s.idp.issuer, "aud": "bff", "sub": "user-1",
            "iat": gw_now(), "exp": gw_now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let answer = |access: &str, id_claims: &Value| {
        json!({
            "access_token": access, "token_type": "Bearer", "expires_in": 300,
            "refresh_token": format!("refresh-for-{access}"),
            "id_token": s.idp.key.sign_with_header(&header, id_claims),
        })
    };
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    s.idp
        .answer_with(answer("access-1", &claims(json!({"nonce": nonce}))));
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
    assert_eq!(call().await, 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some("Bearer access-1")
    );

    // Control: past access-1's expiry, a refresh whose ID token is right.
    s.gw.clock().advance(Duration::from_secs(301));
    s.idp.answer_with(answer(
        "access-2",
        &claims(json!({"at_hash": at_hash("access-2")})),
    ));
    assert_eq!(call().await, 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some("Bearer access-2")
    );

    for (name, access, extra) in [
        (
            "at_hash of another access token",
            "access-3",
            json!({"at_hash": at_hash("access-2")}),
        ),
        (
            "an audience we do not trust",
            "access-4",
            json!({"aud": ["bff", "other"], "azp": "bff"}),
        ),
    ] {
        // Past the expiry and any backoff of the failure before.
        s.gw.clock().advance(Duration::from_secs(400));
        s.idp.answer_with(answer(access, &claims(extra)));
        let seen = s.upstream.count();
        let status = call().await;
        assert_ne!(status, 200, "{name}");
        assert_eq!(s.upstream.count(), seen, "{name}: nothing went upstream");
        assert_eq!(s.gw.session_count(), 1, "{name}: the session stays");
    }
}

/// Every answer of the gateway's own is never cached and never framed:
/// `Cache-Control: no-store` (it may carry a cookie or who is signed in),
/// `X-Frame-Options: DENY`, and on its HTML pages CSP `frame-ancestors
/// 'none'` (clickjacking the sign-out or sign-in). One row per page.
#[tokio::test]
async fn gateway_pages_are_never_cached_and_never_framed() {
    let s = rogue_stack(
        "[[route]]\npath = \"/ops/\"\nupstream = \"http://127.0.0.1:9\"\nallow_groups = [\"ops\"]\n",
    )
    .await;
    let signed_in = browser();
    s.sign_in(&signed_in).await;
    let anon = browser();
    let gw = &s.gw.url;
    // (page, client, path, navigation?, status, HTML?)
    let mut rows: Vec<(&str, &reqwest::Client, String, bool, u16, bool)> = vec![
        (
            "login redirect",
            &anon,
            "/auth/login?return_to=/x".into(),
            true,
            302,
            false,
        ),
        (
            "sign-in redirect of a protected page",
            &anon,
            "/api/x".into(),
            true,
            302,
            false,
        ),
        (
            "callback error: no state",
            &anon,
            "/auth/callback?code=abc".into(),
            true,
            400,
            true,
        ),
        (
            "callback error: unknown state",
            &anon,
            "/auth/callback?code=abc&state=nope".into(),
            true,
            400,
            true,
        ),
        (
            "callback error, as JSON",
            &anon,
            "/auth/callback?code=abc&state=nope".into(),
            false,
            400,
            false,
        ),
        (
            "error page: forbidden",
            &signed_in,
            "/ops/x".into(),
            true,
            403,
            true,
        ),
        (
            "error page: 401 JSON",
            &anon,
            "/api/x".into(),
            false,
            401,
            false,
        ),
        (
            "signed-out page",
            &anon,
            "/auth/signed-out".into(),
            true,
            200,
            true,
        ),
        (
            "logout confirmation",
            &signed_in,
            "/auth/logout".into(),
            true,
            200,
            true,
        ),
        (
            "logout without a session",
            &anon,
            "/auth/logout".into(),
            true,
            302,
            false,
        ),
        (
            "/auth/user JSON",
            &signed_in,
            "/auth/user".into(),
            false,
            200,
            false,
        ),
        (
            "/auth/user JSON, signed out",
            &anon,
            "/auth/user".into(),
            false,
            401,
            false,
        ),
    ];
    // The IdP's error answer at the callback, on a state that is pending.
    let (state, _) = start_login(&anon, gw, "/").await;
    rows.push((
        "callback error: the IdP's error",
        &anon,
        format!("/auth/callback?error=access_denied&state={state}"),
        true,
        400,
        true,
    ));
    for (page, client, path, navigation, status, html) in rows {
        let mut req = client.get(format!("{gw}{path}")).header("x-csrf", "1");
        if navigation {
            req = req
                .header("sec-fetch-mode", "navigate")
                .header("accept", "text/html");
        }
        let r = req.send().await.unwrap();
        let h = r.headers();
        let one = |name: &str| {
            let all: Vec<_> = h
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert!(all.len() <= 1, "{page}: {name} {all:?}");
            all.first().map(|v| v.to_string())
        };
        assert_eq!(r.status(), status, "{page}");
        assert_eq!(one("cache-control").as_deref(), Some("no-store"), "{page}");
        assert_eq!(one("x-frame-options").as_deref(), Some("DENY"), "{page}");
        let ctype = one("content-type").unwrap_or_default();
        assert_eq!(ctype.starts_with("text/html"), html, "{page}: {ctype}");
        if html {
            let csp = one("content-security-policy").unwrap_or_default();
            assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp:?}");
        }
    }
    // And the landing page after a sign-in (it sets the session cookie).
    let b = browser();
    let (state, nonce) = start_login(&b, gw, "/").await;
    s.idp
        .answer_with_id_token(good_claims(&s.idp.issuer, &nonce));
    let r = callback(&b, gw, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200);
    assert!(set_cookie_value(&r, "oidc_bff").is_some());
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}
