//! Bearer routes: API clients' JWT access tokens verified against the IdP's
//! keys (tokens minted by the test), including Cognito's access-token shape,
//! the JWKS refetch cooldown and key rotation at the IdP.

use crate::harness::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

const AUD: &str = "urn:orders-api";

struct Stack {
    idp: RogueIdp,
    upstream: Upstream,
    gw: Gateway,
}

async fn generic() -> Stack {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{0}\"\nauth = \"bearer\"\n\
         [[route]]\npath = \"/mixed/\"\nupstream = \"{0}\"\nauth = \"session_or_bearer\"\n\
         [[route]]\npath = \"/web/\"\nupstream = \"{0}\"\n",
        upstream.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replace(
        "insecure_allow_http = true",
        &format!("insecure_allow_http = true\naudiences = [\"{AUD}\"]\njwks_cooldown = \"1s\""),
    );
    let gw = Gateway::start(reserved, &toml).await;
    Stack { idp, upstream, gw }
}

fn access_claims(iss: &str) -> Value {
    json!({ "iss": iss, "aud": AUD, "sub": "client-7", "scope": "orders:read", "iat": now(), "exp": now() + 300 })
}

async fn call(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    call_with(gw, path, token.map(|t| format!("Bearer {t}"))).await
}

/// A GET with this `Authorization` value, as the client wrote it.
async fn call_with(gw: &Gateway, path: &str, authorization: Option<String>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gw.url));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn valid_tokens_pass_and_bad_ones_get_invalid_token() {
    let s = generic().await;
    let good = s.idp.key.sign(&access_claims(&s.idp.issuer));
    let r = call(&s.gw, "/api/orders", Some(&good)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some(format!("Bearer {good}").as_str()),
        "forwarded with the same token"
    );
    // The scheme is case-insensitive on the way in (RFC 6750 §2.1) and
    // canonical on the way out.
    let r = call_with(&s.gw, "/api/orders", Some(format!("bEARER   {good} "))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some(format!("Bearer {good}").as_str()),
        "forwarded as `Bearer <token>`"
    );

    // No token: a challenge without an error code (RFC 6750 §3.1).
    let r = call(&s.gw, "/api/orders", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), "Bearer");

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = access_claims(&s.idp.issuer);
        f(&mut c);
        s.idp.key.sign(&c)
    };
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(s.idp.key.kid.clone());
        jsonwebtoken::encode(
            &h,
            &access_claims(&s.idp.issuer),
            &jsonwebtoken::EncodingKey::from_secret(s.idp.key.jwk.to_string().as_bytes()),
        )
        .unwrap()
    };
    let bad: Vec<(&str, String)> = vec![
        ("expired", with(&|c| c["exp"] = json!(now() - 600))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 600))),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example.com")),
        ),
        ("wrong aud", with(&|c| c["aud"] = json!("urn:other-api"))),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "aud is our client id (an ID token)",
            with(&|c| c["aud"] = json!("bff")),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": s.idp.key.kid})),
                b64(&access_claims(&s.idp.issuer))
            ),
        ),
        ("HS256 with the public key", hs256),
        ("garbage", "not-a-jwt".to_string()),
        ("three dots", "a.b.c".to_string()),
        (
            "foreign key, same kid",
            TestKey::es256(&s.idp.key.kid).sign(&access_claims(&s.idp.issuer)),
        ),
    ];
    for (name, token) in bad {
        let r = call(&s.gw, "/api/orders", Some(&token)).await;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(challenge(&r), "Bearer error=\"invalid_token\"", "{name}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token", "{name}");
    }
    assert_eq!(
        s.upstream.count(),
        2,
        "only the good token (sent twice) reached the upstream"
    );
}

#[tokio::test]
async fn unknown_kid_floods_cause_few_jwks_fetches_and_rotation_is_picked_up() {
    let s = generic().await;
    // Warm up: one good call loads the keys.
    let good = s.idp.key.sign(&access_claims(&s.idp.issuer));
    assert_eq!(call(&s.gw, "/api/x", Some(&good)).await.status(), 200);
    let before = s.idp.jwks_hits.load(Ordering::SeqCst);

    let ghost = TestKey::es256("ghost-kid");
    let forged = ghost.sign(&access_claims(&s.idp.issuer));
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let c = client.clone();
        let url = format!("{}/api/x", s.gw.url);
        let t = forged.clone();
        tasks.push(tokio::spawn(async move {
            c.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let fetched = s.idp.jwks_hits.load(Ordering::SeqCst) - before;
    assert!(
        fetched <= 3,
        "1000 unknown-kid tokens caused {fetched} JWKS fetches"
    );

    // The IdP rotates: a new key, published first. After the cooldown (1 s
    // on the gateway's clock), tokens signed with it pass.
    let next = TestKey::es256("rotated-2");
    s.idp.publish(&next);
    s.gw.clock().advance(Duration::from_millis(1100));
    let r = call(
        &s.gw,
        "/api/x",
        Some(&next.sign(&access_claims(&s.idp.issuer))),
    )
    .await;
    assert_eq!(r.status(), 200, "rotated key picked up without restart");
    // The old key still works while it is published.
    assert_eq!(call(&s.gw, "/api/x", Some(&good)).await.status(), 200);
}

#[tokio::test]
async fn session_or_bearer_and_session_routes() {
    let s = generic().await;
    let good = s.idp.key.sign(&access_claims(&s.idp.issuer));
    // session_or_bearer: a bearer token is enough ...
    assert_eq!(call(&s.gw, "/mixed/x", Some(&good)).await.status(), 200);
    // ... a bad one is judged as such, not ignored in favour of a session ...
    let r = call(&s.gw, "/mixed/x", Some("garbage")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), "Bearer error=\"invalid_token\"");
    // ... and neither gives 401 unauthenticated.
    let r = call(&s.gw, "/mixed/x", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthenticated");
    // A session route does not accept bearer tokens.
    assert_eq!(call(&s.gw, "/web/x", Some(&good)).await.status(), 401);
}

#[tokio::test]
async fn cognito_access_tokens_by_token_use_and_client_id() {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST";
    let toml = format!(
        r#"
[server]
public_url = "{gw}"
[provider]
cognito = {{ region = "eu-west-1", user_pool_id = "eu-west-1_TEST", domain = "{idp}" }}
jwks_url = "{idp}/jwks"
client_id = "bff"
client_secret = "bff-secret"
insecure_allow_http = true
[session]
keys = ["{key}"]
[[route]]
path = "/api/"
upstream = "{up}"
auth = "bearer"
"#,
        gw = reserved.url,
        idp = idp.issuer,
        key = test_key(),
        up = upstream.url
    );
    let gw = Gateway::start(reserved, &toml).await;
    // Cognito's shapes: the access token has no aud, but client_id and token_use.
    let access = json!({
        "iss": issuer, "sub": "u-1", "client_id": "bff", "token_use": "access",
        "scope": "openid orders/read", "username": "alice", "iat": now(), "exp": now() + 300,
        "cognito:groups": ["admins"],
    });
    let id = json!({
        "iss": issuer, "sub": "u-1", "aud": "bff", "token_use": "id", "cognito:username": "alice",
        "email_verified": "true", "iat": now(), "exp": now() + 300, "custom:tenant": "acme",
    });
    let sign = |c: &Value| idp.key.sign(c);
    assert_eq!(
        call(&gw, "/api/x", Some(&sign(&access))).await.status(),
        200
    );
    let mut other_client = access.clone();
    other_client["client_id"] = json!("another-app");
    let mut no_use = access.clone();
    no_use.as_object_mut().unwrap().remove("token_use");
    let mut other_pool = access.clone();
    other_pool["iss"] = json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_OTHER");
    for (name, claims) in [
        ("Cognito ID token on an access-token route", id),
        ("access token of another app client", other_client),
        ("no token_use", no_use),
        ("another user pool", other_pool),
    ] {
        let r = call(&gw, "/api/x", Some(&sign(&claims))).await;
        assert_eq!(r.status(), 401, "{name}");
    }
}
