//! What upstreams get and what the SPA gets: static hosting (deep links,
//! caching, precompressed files, ETag/304, security headers), identity for
//! upstreams (headers and the signed assertion), `X-Forwarded-*` trust,
//! `preserve_host`, and https upstreams with a private CA.

use crate::harness::*;
use crate::negative::{rogue_stack, Rogue};
use serde_json::Value;
use std::sync::Arc;

const INDEX: &str = "<!doctype html><title>app</title><div id=app></div>";

fn spa_dir() -> ScratchDir {
    let dir = ScratchDir::new("spa");
    dir.write("index.html", INDEX);
    std::fs::create_dir_all(dir.0.join("assets")).unwrap();
    dir.write("assets/app-3f2a9c1b.js", "console.log('app')");
    // A precompressed twin (its bytes need not really be brotli for this test).
    dir.write("assets/app-3f2a9c1b.js.br", "BROTLI-BYTES");
    dir.write("logo.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>");
    dir
}

#[tokio::test]
async fn spa_hosting() {
    let dir = spa_dir();
    let spa = format!(
        "[spa]\ndir = \"{}\"\ncontent_security_policy = \"default-src 'self'\"\n",
        dir.0.display()
    );
    let s = rogue_stack(&spa).await;
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(format!("{}{path}", s.gw.url));

    // Deep links to client-side routes get the app, never cached without revalidation.
    for path in ["/", "/orders/42", "/profile"] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(
            r.headers()["referrer-policy"],
            "strict-origin-when-cross-origin"
        );
        assert_eq!(r.headers()["content-security-policy"], "default-src 'self'");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(r.text().await.unwrap(), INDEX);
    }
    // Hashed assets are immutable; others revalidate.
    let r = get("/assets/app-3f2a9c1b.js").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let r = get("/logo.svg").send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    // The precompressed twin for clients that accept it.
    let r = get("/assets/app-3f2a9c1b.js")
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"BROTLI-BYTES");
    // ETag and 304.
    let r = get("/").send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = get("/")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get("/")
        .header("if-none-match", "W/\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A missing file is 404, not the app; writes are refused.
    assert_eq!(get("/missing.js").send().await.unwrap().status(), 404);
    assert_eq!(
        c.post(format!("{}/", s.gw.url))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

async fn identity_stack() -> (Rogue, Upstream, reqwest::Client) {
    let upstream = Upstream::start(None).await;
    let routes = format!(
        "[[route]]\npath = \"/orders/\"\nupstream = \"{0}\"\nidentity_assertion = true\npreserve_host = true\n\
         identity_headers = {{ user = \"X-Forwarded-User\", email = \"X-Forwarded-Email\", groups = \"X-Forwarded-Groups\" }}\n\
         [[route]]\npath = \"/open/\"\nupstream = \"{0}\"\nauth = \"public\"\n",
        upstream.url
    );
    let s = rogue_stack(&routes).await;
    let b = browser();
    let (state, nonce) = crate::negative::start_login(&b, &s.gw.url, "/").await;
    let mut claims = crate::negative::good_claims(&s.idp.issuer, &nonce);
    claims["groups"] = serde_json::json!(["admins", "ops"]);
    s.idp.answer_with_id_token(claims);
    crate::negative::callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    (s, upstream, b)
}

#[tokio::test]
async fn identity_headers_and_signed_assertion() {
    let (s, upstream, b) = identity_stack().await;
    let r = b
        .get(format!("{}/orders/7", s.gw.url))
        .header("x-csrf", "1")
        .header("x-forwarded-user", "mallory")
        .header("x-bff-identity", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.all("x-forwarded-user"), ["user-1"]);
    assert_eq!(seen.header("x-forwarded-email"), Some("u@example.test"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admins,ops"));
    // preserve_host: the upstream sees the name the browser used.
    assert_eq!(
        seen.header("host"),
        Some(s.gw.url.trim_start_matches("http://"))
    );

    // The assertion verifies with a standard library against /auth/jwks.json.
    let assertion = seen.all("x-bff-identity");
    assert_eq!(assertion.len(), 1);
    assert_ne!(assertion[0], "forged");
    let claims = verify_with_jwks(&format!("{}/auth/jwks.json", s.gw.url), assertion[0])
        .await
        .expect("assertion verifies");
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["iss"], s.gw.url.as_str());
    assert_eq!(
        claims["aud"],
        upstream.url.as_str(),
        "the route's audience: the upstream's origin"
    );
    assert_eq!(claims["groups"], serde_json::json!(["admins", "ops"]));
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now() && exp <= now() + 60, "exp within 60 s: {exp}");

    // Forged copies never pass, on public routes either.
    let r = reqwest::Client::new()
        .get(format!("{}/open/x", s.gw.url))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-groups", "admins")
        .header("x-bff-identity", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    for h in ["x-forwarded-user", "x-forwarded-groups", "x-bff-identity"] {
        assert_eq!(seen.header(h), None, "{h}");
    }
}

#[tokio::test]
async fn forwarded_headers_trust_only_trusted_peers() {
    for trusted in [false, true] {
        let upstream = Upstream::start(None).await;
        let idp = RogueIdp::start().await;
        let reserved = reserve().await;
        let url = reserved.url.clone();
        let mut toml = config_toml(
            &url,
            &idp.issuer,
            &format!(
                "[[route]]\npath = \"/p/\"\nupstream = \"{}\"\nauth = \"public\"\n",
                upstream.url
            ),
        );
        if trusted {
            toml = toml.replace("[server]", "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]");
        }
        let gw = Gateway::start(reserved, &toml).await;
        let r = reqwest::Client::new()
            .get(format!("{}/p/x", gw.url))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let seen = upstream.last();
        if trusted {
            assert_eq!(
                seen.header("x-forwarded-for"),
                Some("203.0.113.9, 127.0.0.1")
            );
            assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
            assert_eq!(seen.header("x-forwarded-host"), Some("app.example.com"));
        } else {
            assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
            assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
            assert_eq!(
                seen.header("x-forwarded-host"),
                Some(url.trim_start_matches("http://"))
            );
        }
    }
}

/// An https upstream whose certificate a private CA signed.
async fn tls_upstream(certs: &TestCerts) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    oidc_bff::install_crypto_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        axum::Json(serde_json::json!({ "tls": true, "path": req.uri().path() }))
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

#[tokio::test]
async fn https_upstream_with_a_private_ca() {
    let certs = TestCerts::generate();
    let upstream = tls_upstream(&certs).await;
    for (ca, want) in [(Some(certs.ca_cert.clone()), 200), (None, 502)] {
        let idp = RogueIdp::start().await;
        let reserved = reserve().await;
        let url = reserved.url.clone();
        let mut toml = config_toml(
            &url,
            &idp.issuer,
            &format!(
                "[[route]]\npath = \"/secure/\"\nupstream = \"{upstream}\"\nauth = \"public\"\n"
            ),
        );
        if let Some(ca) = &ca {
            toml = toml.replace(
                "[server]",
                &format!("[server]\nupstream_ca_file = \"{ca}\""),
            );
        }
        let gw = Gateway::start(reserved, &toml).await;
        let r = reqwest::get(format!("{}/secure/x", gw.url)).await.unwrap();
        assert_eq!(r.status(), want, "CA configured: {}", ca.is_some());
        if want == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["tls"], true);
        }
    }
}
