//! Micro-benchmarks of what every proxied request pays for: opening the
//! session behind a cookie, sealing a session record, verifying a JWT (RS256
//! and ES256), evaluating a route policy, and header hygiene.
//!
//! `cargo bench --bench hot_path` (add `-- session` to run one group).
//! The load test of the whole gateway is `bench/run`.

#[path = "common/mod.rs"]
mod common;

use aws_lc_rs::encoding::AsDer;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use oidc_bff::oidc::jwks::{JwksCache, JwksSource};
use oidc_bff::oidc::jwt::{verify, Audience, Expect};
use oidc_bff::oidc::OidcError;
use oidc_bff::policy::{authorize, evaluate, session_caller, Caller, ClaimRule, RoutePolicy};
use oidc_bff::proxy::headers::{
    clean_response, set_forwarded, strip_cookies, strip_hop_by_hop, strip_protected, ClientInfo,
    ProtectedHeaders,
};
use oidc_bff::session::{KeyRing, MemoryStore, SessionStore, Sessions};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn sessions(store: Arc<dyn SessionStore>) -> Sessions {
    Sessions::new(
        Arc::new(KeyRing::new(&[[7; 32], [8; 32]])),
        store,
        Duration::from_secs(8 * 3600),
        Duration::from_secs(24 * 3600),
    )
}

/// Opening a session from a cookie (cookie decode + MAC check, store lookup,
/// unseal, JSON decode) in a store holding 10 000 other sessions; and sealing
/// one (JSON encode, seal, index, store write).
fn session(c: &mut Criterion) {
    let rt = runtime();
    let store = Arc::new(MemoryStore::new(100_000));
    let s = sessions(store.clone());
    let (id, cookie) = rt.block_on(async {
        for i in 0..10_000 {
            s.create(common::session_data(&format!("user-{i}")))
                .await
                .unwrap();
        }
        s.create(common::session_data("alice")).await.unwrap()
    });
    let data = common::session_data("alice");
    let plain = serde_json::to_vec(&data).unwrap();
    let ring = KeyRing::new(&[[7; 32]]);
    let sealed = ring.seal(&plain, b"aad");

    let mut g = c.benchmark_group("session");
    g.bench_function("open_from_cookie", |b| {
        b.to_async(&rt).iter(|| async {
            let got = s.load(black_box(&cookie)).await.unwrap();
            assert!(got.is_some());
            got
        })
    });
    g.bench_function("open_unknown_cookie", |b| {
        // A well-formed cookie whose MAC does not verify: refused before the store.
        let forged = format!("{}.{}", B64.encode([1u8; 32]), B64.encode([2u8; 16]));
        b.to_async(&rt)
            .iter(|| async { s.load(black_box(&forged)).await.unwrap() })
    });
    g.bench_function("save (encode + seal + index + store)", |b| {
        b.to_async(&rt)
            .iter(|| async { s.save(black_box(&id), black_box(&data)).await.unwrap() })
    });
    g.bench_function("seal record (AES-256-GCM)", |b| {
        b.iter(|| ring.seal(black_box(&plain), b"aad"))
    });
    g.bench_function("unseal record (AES-256-GCM)", |b| {
        b.iter(|| ring.open(black_box(&sealed), b"aad").unwrap())
    });
    g.bench_function("decode record (JSON)", |b| {
        b.iter(|| {
            serde_json::from_slice::<oidc_bff::session::SessionData>(black_box(&plain)).unwrap()
        })
    });
    g.finish();
}

struct StaticJwks(Value);

#[async_trait::async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<Value, OidcError> {
        Ok(self.0.clone())
    }
}

/// An RS256 key: (signing key, public JWK).
fn rsa_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().unwrap();
    let b64 = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
        "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
    });
    (
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk,
    )
}

/// An ES256 (P-256) key: (signing key, public JWK).
fn ec_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": B64.encode(x), "y": B64.encode(y),
    });
    (jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

/// Verifying an access token: header, `kid` lookup in the cached JWKS,
/// signature, `iss`/`exp`/`nbf`/`aud`.
fn jwt(c: &mut Criterion) {
    let rt = runtime();
    let (rsa, rsa_jwk) = rsa_key("rsa-1");
    let (ec, ec_jwk) = ec_key("ec-1");
    let jwks = JwksCache::new(Box::new(StaticJwks(json!({ "keys": [rsa_jwk, ec_jwk] }))));
    rt.block_on(jwks.warm()).unwrap();
    let now = oidc_bff::clock::Clock::system().now_secs();
    let claims = json!({
        "iss": "https://idp.example.test", "sub": "alice", "aud": "urn:oidc-bff:api",
        "client_id": "bff", "scope": "api:read api:write", "jti": "pT0a8pYq2tCq3g5t7kMR1",
        "iat": now, "exp": now + 3600,
    });
    let sign = |alg, kid: &str, key| {
        let mut h = jsonwebtoken::Header::new(alg);
        h.kid = Some(kid.to_string());
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&h, &claims, key).unwrap()
    };
    let rs256 = sign(jsonwebtoken::Algorithm::RS256, "rsa-1", &rsa);
    let es256 = sign(jsonwebtoken::Algorithm::ES256, "ec-1", &ec);
    let audiences = vec!["urn:oidc-bff:api".to_string()];
    let expect = Expect {
        issuer: "https://idp.example.test",
        audience: Audience::AnyOrClientId(&audiences),
        token_use: None,
        leeway: Duration::from_secs(60),
        now: oidc_bff::clock::Clock::system().now_secs(),
    };
    let mut g = c.benchmark_group("jwt");
    for (name, token) in [("verify RS256", &rs256), ("verify ES256", &es256)] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { verify(&jwks, black_box(token), &expect).await.unwrap() })
        });
    }
    g.finish();
}

/// A route with all three rules, against a caller who meets them; and the
/// whole authorize step for a session (claims and scopes gathered from it).
fn policy(c: &mut Criterion) {
    let claims = common::id_claims("alice");
    let scopes: Vec<String> = ["openid", "email", "profile", "groups"]
        .map(String::from)
        .to_vec();
    let policy = RoutePolicy {
        allow_groups: vec!["admins".into(), "ops".into()],
        require_scopes: vec!["email".into()],
        require_claims: [
            (
                "email_verified".to_string(),
                ClaimRule::Equals("true".into()),
            ),
            (
                "email".to_string(),
                ClaimRule::OneOf(vec!["alice@example.test".into(), "bob@example.test".into()]),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let caller = Caller {
        claims: &claims,
        groups_claim: "groups",
        scopes: &scopes,
    };
    let rt = runtime();
    let s = sessions(Arc::new(MemoryStore::new(10)));
    let session = rt.block_on(async {
        let (_, cookie) = s.create(common::session_data("alice")).await.unwrap();
        s.load(&cookie).await.unwrap().unwrap()
    });
    let d = session.data.clone();
    let facts = || session_caller(&d.claims, &d.access_token, d.scope.as_deref(), "groups");

    let mut g = c.benchmark_group("policy");
    g.bench_function("evaluate (groups + scope + 2 claims)", |b| {
        b.iter(|| evaluate(black_box(&caller), black_box(&policy)))
    });
    g.bench_function("authorize session", |b| {
        b.iter(|| authorize(Some(black_box(&policy)), Some(facts()), "groups").unwrap())
    });
    g.bench_function("authorize, route without policy", |b| {
        b.iter(|| authorize(None, Some(facts()), "groups").unwrap())
    });
    g.finish();
}

/// A typical browser API call, as it reaches the gateway.
fn browser_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.7"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/orders"),
        ("x-csrf", "1"),
        ("connection", "keep-alive"),
        ("cookie", "theme=dark; oidc_bff=Y2Fm2Dk5NzQ4YjQxZDQ1NDhhOGU3YjY0NmE2OGQ1Yzk.Q2ZDcx2YzQ1Nzg5MGFi; _ga=GA1.1.123456789.1700000000"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-origin"),
        ("priority", "u=4"),
        ("te", "trailers"),
    ] {
        h.append(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn upstream_response() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("date", "Mon, 01 Jan 2026 00:00:00 GMT"),
        ("server", "nginx"),
        ("connection", "keep-alive"),
        ("cache-control", "no-store"),
        ("set-cookie", "app_pref=1; Path=/; HttpOnly"),
    ] {
        h.append(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Header hygiene on a typical request and response (the map is cloned in
/// the setup, outside the measurement).
fn headers(c: &mut Criterion) {
    let req = browser_request();
    let resp = upstream_response();
    let client = ClientInfo {
        peer: "10.1.2.3".parse().unwrap(),
        trusted_peer: false,
        public_proto: "https".into(),
        public_host: "app.example.com".into(),
    };
    let names = ["oidc_bff", "oidc_bff_login"];
    let protected = ProtectedHeaders::new(["x-bff-identity"]);
    let mut g = c.benchmark_group("headers");
    g.bench_function(
        "request hygiene (hop-by-hop, cookies, identity, forwarded)",
        |b| {
            b.iter_batched_ref(
                || req.clone(),
                |h| {
                    strip_hop_by_hop(h);
                    strip_cookies(h, &names);
                    strip_protected(h, &protected, true);
                    set_forwarded(h, &client);
                },
                BatchSize::SmallInput,
            )
        },
    );
    g.bench_function("response hygiene", |b| {
        b.iter_batched_ref(
            || resp.clone(),
            |h| clean_response(h, &names),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, session, jwt, policy, headers);
criterion_main!(benches);
