//! Fixes from an outside attack report, each refusal checked by its status
//! and by what did not happen (no upstream request, no session, no secret in
//! the body), each next to a control that passes through the same path:
//! SPA hosting confined to its directory (no dotfiles, no symlinks out, no
//! listings, percent-encoded spellings), JWTs with `iat` in the future or a
//! `crit` header (ID tokens, bearer tokens, logout tokens), Cognito access
//! tokens without `client_id`, and the bearer cache by audience and `exp`.

use crate::harness::*;
use crate::negative::{callback, good_claims, rogue_stack, start_login, Rogue};
use serde_json::{json, Value};
use std::os::unix::fs::symlink;
use std::time::Duration;

const INDEX: &str = "<!doctype html><title>app</title><div id=app></div>";
const APP_JS: &str = "console.log('app')";
/// Every file the SPA must never serve holds this.
const SECRET: &str = "SECRET-must-not-be-served";

/// `[spa] dir` for `dir`, on the usual rogue stack (whose `/api/` upstream
/// must see nothing of any of this).
async fn spa_stack(dir: &ScratchDir) -> Rogue {
    rogue_stack(&format!("[spa]\ndir = \"{}\"\n", dir.0.display())).await
}

/// GET (or HEAD) with optional extra headers; status and body.
async fn fetch(gw: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{gw}{path}"),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// GET with `target` as the raw request target: HTTP clients would resolve
/// `%2e%2e` and `..` before sending (WHATWG URL). Status and whole answer.
async fn raw_get(gw: &str, target: &str) -> (u16, String) {
    let addr = gw.trim_start_matches("http://");
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw_exchange(gw, req.as_bytes()).await
}

fn dotfile_tree() -> ScratchDir {
    let dir = ScratchDir::new("spa-dot");
    dir.write("index.html", INDEX);
    for d in [".git", "sub", ".well-known", "emptydir", ".hidden-dir"] {
        std::fs::create_dir_all(dir.0.join(d)).unwrap();
    }
    dir.write(".env", SECRET);
    dir.write(".git/config", SECRET);
    dir.write(".git/HEAD", SECRET);
    dir.write("sub/.hidden", SECRET);
    dir.write("sub/page.txt", "a page");
    dir.write(".hidden-dir/index.html", SECRET);
    dir.write(".hidden-dir/file.txt", SECRET);
    dir.write(".well-known/x", "well-known x");
    dir.write(".well-known/.y", SECRET);
    dir.write("emptydir/data.json", "{}");
    dir
}

#[tokio::test]
async fn spa_serves_no_dotfile_and_no_dot_directory() {
    let dir = dotfile_tree();
    let s = spa_stack(&dir).await;
    let refused = [
        "/.env",
        "/.git/config",
        "/.git/HEAD",
        "/.git/",
        "/.git",
        "/.hidden-dir/",
        "/.hidden-dir/file.txt",
        "/sub/.hidden",
        "/.well-known/.y",
    ];
    for path in refused {
        for method in ["GET", "HEAD"] {
            let (status, body) = fetch(&s.gw.url, method, path, &[]).await;
            assert_eq!(status, 404, "{method} {path}");
            assert!(!body.contains(SECRET), "{method} {path}: {body}");
            assert!(!body.contains(INDEX), "{method} {path}: not even the app");
        }
    }
    // Escaped dots are dots: the canonical path is a dotfile's, refused by the SPA.
    for path in [
        "/%2eenv",
        "/%2Eenv",
        "/%2egit/config",
        "/sub/%2ehidden",
        "/%2Ewell-known/../.env",
    ] {
        let (status, answer) = raw_get(&s.gw.url, path).await;
        let want = if path.contains("..") { 400 } else { 404 };
        assert_eq!(status, want, "{path}");
        assert!(!answer.contains(SECRET), "{path}: {answer}");
        assert!(!answer.contains(INDEX), "{path}: not even the app");
    }
    // Encoded separators and dot segments: the gateway refuses them before
    // the SPA (the SPA's own check, which holds without it, is tested in
    // src/proxy/spa.rs).
    for path in [
        "/.git%2fconfig",
        "/sub%2f.hidden",
        "/a/%2e%2e/.env",
        "/a/%2e%2e/%2eenv",
        "/sub/..%2f.git/config",
        "/sub/../.env",
        "/./.env",
        "//.env",
    ] {
        let (status, answer) = raw_get(&s.gw.url, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(!answer.contains(SECRET), "{path}: {answer}");
    }
    assert_eq!(s.upstream.count(), 0, "nothing reached the upstream");

    // Controls: the same tree's other files are served.
    for (path, want) in [
        ("/", INDEX),
        ("/index.html", INDEX),
        ("/sub/page.txt", "a page"),
        ("/.well-known/x", "well-known x"),
        // Deep links get the app.
        ("/orders/42", INDEX),
        ("/sub/profile", INDEX),
    ] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[]).await;
        assert_eq!((status, body.as_str()), (200, want), "{path}");
    }
    // A directory without index.html is the app (a client route), never a listing.
    let (status, body) = fetch(&s.gw.url, "GET", "/emptydir/", &[]).await;
    assert_eq!((status, body.as_str()), (200, INDEX), "/emptydir/");
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn spa_follows_no_symlink_out_of_its_directory() {
    let outside = ScratchDir::new("spa-outside");
    outside.write("secret.txt", SECRET);
    outside.write("index.html", SECRET);
    let dir = ScratchDir::new("spa-links");
    dir.write("index.html", INDEX);
    dir.write(".env", SECRET);
    std::fs::create_dir_all(dir.0.join("assets")).unwrap();
    dir.write("assets/app.js", APP_JS);
    let link = |target: &std::path::Path, name: &str| symlink(target, dir.0.join(name)).unwrap();
    // Out of the directory: a file, a directory, precompressed twins.
    link(&outside.0.join("secret.txt"), "passwd.txt");
    link(&outside.0, "outdir");
    link(&outside.0.join("secret.txt"), "assets/app.js.br");
    link(&outside.0.join("secret.txt"), "index.html.gz");
    // Inside, but onto a dotfile.
    link(std::path::Path::new(".env"), "env.txt");
    // Inside: followed.
    link(std::path::Path::new("assets/app.js"), "alias.js");
    link(std::path::Path::new("assets"), "static");
    let s = spa_stack(&dir).await;

    for (method, path) in [
        ("GET", "/passwd.txt"),
        ("HEAD", "/passwd.txt"),
        ("GET", "/outdir/secret.txt"),
        ("HEAD", "/outdir/secret.txt"),
        ("GET", "/outdir/index.html"),
        ("GET", "/env.txt"),
        ("GET", "/%70asswd.txt"),
    ] {
        let (status, body) = fetch(&s.gw.url, method, path, &[]).await;
        assert_eq!(status, 404, "{method} {path}");
        assert!(!body.contains(SECRET), "{method} {path}: {body}");
    }
    let (status, answer) = raw_get(&s.gw.url, "/outdir%2fsecret.txt").await;
    assert_eq!(status, 400, "refused by the gateway before the SPA");
    assert!(!answer.contains(SECRET));
    // A symlinked directory out is a missing directory: the app for a
    // client route, never the target's index.html or a listing.
    for path in ["/outdir/", "/outdir"] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[]).await;
        assert_eq!((status, body.as_str()), (200, INDEX), "{path}");
    }
    // A precompressed twin that leads out is skipped: the plain file is served.
    let r = reqwest::Client::new()
        .get(format!("{}/assets/app.js", s.gw.url))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.text().await.unwrap(), APP_JS);
    // So is the deep-link index.html's.
    for path in ["/", "/orders/42"] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[("accept-encoding", "gzip")]).await;
        assert_eq!((status, body.as_str()), (200, INDEX), "{path}");
    }
    assert_eq!(s.upstream.count(), 0, "nothing reached the upstream");

    // Controls: symlinks that stay inside are followed.
    for path in ["/alias.js", "/static/app.js", "/assets/app.js"] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[]).await;
        assert_eq!((status, body.as_str()), (200, APP_JS), "{path}");
    }
}

// ------------------------------------------------------------------ JWTs ---

/// A header naming an extension nobody understands as critical (RFC 7515
/// §4.1.11), with the parameter itself present.
fn crit_header(key: &TestKey) -> Value {
    let mut h = key.header();
    h["crit"] = json!(["exp-unknown"]);
    h["exp-unknown"] = json!(true);
    h
}

const YEAR: i64 = 365 * 24 * 3600;

#[tokio::test]
async fn id_tokens_issued_in_the_future_or_with_crit_create_no_session() {
    let s = rogue_stack("").await;
    let key = s.idp.key.clone();
    type Mint = fn(&TestKey, Value) -> String;
    let cases: [(&str, Mint); 4] = [
        ("iat a year ahead", |k, mut c| {
            c["iat"] = json!(now() + YEAR);
            k.sign(&c)
        }),
        ("crit names an unknown extension", |k, c| {
            k.sign_with_header(&crit_header(k), &c)
        }),
        ("crit is empty", |k, c| {
            let mut h = k.header();
            h["crit"] = json!([]);
            k.sign_with_header(&h, &c)
        }),
        ("crit is null", |k, c| {
            let mut h = k.header();
            h["crit"] = Value::Null;
            k.sign_with_header(&h, &c)
        }),
    ];
    for (name, mint) in cases {
        let b = browser();
        let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
        let id_token = mint(&key, good_claims(&s.idp.issuer, &nonce));
        s.idp.answer_with(
            json!({"access_token": "opaque-access", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}),
        );
        let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(s.gw.session_count(), 0, "{name}");
        let r = b
            .get(format!("{}/api/x", s.gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}: no session");
    }
    assert_eq!(s.upstream.count(), 0, "nothing reached the upstream");

    // Control: the same hand-made signing, a plain header and `iat` now, signs in.
    let b = browser();
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    let id_token = key.sign_with_header(&key.header(), &good_claims(&s.idp.issuer, &nonce));
    s.idp.answer_with(
        json!({"access_token": "opaque-access", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}),
    );
    let r = callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(landing_page(r).await, "/");
    assert_eq!(s.gw.session_count(), 1);
    let r = b
        .get(format!("{}/api/x", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.upstream.count(), 1);
}

const AUD: &str = "urn:orders-api";

/// A rogue IdP and a gateway whose routes are `routes` (TOML, `UP` standing
/// for the upstream's URL), with `provider_extra` in `[provider]`.
async fn bearer_stack(provider_extra: &str, routes: &str) -> (RogueIdp, Upstream, Gateway) {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let toml = config_toml(
        &reserved.url,
        &idp.issuer,
        &routes.replace("UP", &upstream.url),
    )
    .replace(
        "insecure_allow_http = true",
        &format!("insecure_allow_http = true\n{provider_extra}"),
    );
    let gw = Gateway::start(reserved, &toml).await;
    (idp, upstream, gw)
}

async fn bearer_call(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", gw.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn access_claims(iss: &str, aud: &str) -> Value {
    json!({ "iss": iss, "aud": aud, "sub": "client-7", "scope": "orders:read", "iat": now(), "exp": now() + 300 })
}

#[tokio::test]
async fn bearer_tokens_issued_in_the_future_or_with_crit_are_refused() {
    let (idp, upstream, gw) = bearer_stack(
        &format!("audiences = [\"{AUD}\"]"),
        "[[route]]\npath = \"/api/\"\nupstream = \"UP\"\nauth = \"bearer\"\n",
    )
    .await;
    let k = &idp.key;
    let claims = access_claims(&idp.issuer, AUD);
    let mut future = claims.clone();
    future["iat"] = json!(now() + YEAR);
    let mut null_crit = k.header();
    null_crit["crit"] = Value::Null;
    let cases = [
        ("iat a year ahead", k.sign(&future)),
        (
            "crit names an unknown extension",
            k.sign_with_header(&crit_header(k), &claims),
        ),
        ("crit is null", k.sign_with_header(&null_crit, &claims)),
    ];
    for (name, token) in cases {
        let r = bearer_call(&gw, "/api/orders", &token).await;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\"",
            "{name}"
        );
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");

    // Controls: `iat` now, through both signing paths; a generic provider's
    // access token with `aud` (and no `client_id`) passes.
    for token in [k.sign(&claims), k.sign_with_header(&k.header(), &claims)] {
        assert_eq!(bearer_call(&gw, "/api/orders", &token).await.status(), 200);
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn logout_tokens_issued_in_the_future_or_with_crit_end_nothing() {
    let s = rogue_stack("").await;
    let b = browser();
    let (state, nonce) = start_login(&b, &s.gw.url, "/").await;
    let mut claims = good_claims(&s.idp.issuer, &nonce);
    claims["sid"] = json!("idp-sess-1");
    s.idp.answer_with_id_token(claims);
    callback(&b, &s.gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(s.gw.session_count(), 1);
    let k = &s.idp.key;
    let logout = |iat: i64| {
        json!({
            "iss": s.idp.issuer, "aud": "bff", "iat": iat, "exp": now() + 120,
            "jti": uuid::Uuid::new_v4().to_string(), "sid": "idp-sess-1",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        })
    };
    let post = |token: String| {
        let url = format!("{}/auth/backchannel-logout", s.gw.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for (name, token) in [
        ("iat a year ahead", k.sign(&logout(now() + YEAR))),
        (
            "crit names an unknown extension",
            k.sign_with_header(&crit_header(k), &logout(now())),
        ),
    ] {
        assert_eq!(post(token).await, 400, "{name}");
        assert_eq!(s.gw.session_count(), 1, "{name}: the session lives on");
    }
    // Control: the same hand-made signing, a plain header, `iat` now.
    assert_eq!(
        post(k.sign_with_header(&k.header(), &logout(now()))).await,
        200
    );
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test]
async fn cognito_bearer_tokens_need_client_id_not_just_aud() {
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
audiences = ["m2m-client"]
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
    let access = |client: &str| {
        json!({
            "iss": issuer, "sub": "u-1", "client_id": client, "token_use": "access",
            "scope": "openid", "iat": now(), "exp": now() + 300,
        })
    };
    let aud_only = |aud: &str| {
        let mut c = access("x");
        c.as_object_mut().unwrap().remove("client_id");
        c["aud"] = json!(aud);
        c
    };
    let mut aud_other = access("bff");
    aud_other["aud"] = json!("someone-else");
    for (name, claims) in [
        ("aud = our client id, no client_id", aud_only("bff")),
        (
            "aud = a configured audience, no client_id",
            aud_only("m2m-client"),
        ),
        ("client_id ours, aud someone else's", aud_other),
    ] {
        let r = bearer_call(&gw, "/api/x", &idp.key.sign(&claims)).await;
        assert_eq!(r.status(), 401, "{name}");
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    // Controls: Cognito's real shape, for our app client and a configured one.
    for client in ["bff", "m2m-client"] {
        let r = bearer_call(&gw, "/api/x", &idp.key.sign(&access(client))).await;
        assert_eq!(r.status(), 200, "{client}");
    }
    assert_eq!(upstream.count(), 2);
}

// ---------------------------------------------------------- bearer cache ---

#[tokio::test]
async fn a_cached_verification_never_answers_for_other_audiences() {
    let idp = RogueIdp::start().await;
    let (a, b) = (Upstream::start(None).await, Upstream::start(None).await);
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/a/\"\nupstream = \"{}\"\nauth = \"bearer\"\naudiences = [\"a\"]\n\
         [[route]]\npath = \"/b/\"\nupstream = \"{}\"\nauth = \"bearer\"\naudiences = [\"b\"]\n",
        a.url, b.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes);
    let gw = Gateway::start(reserved, &toml).await;
    let token = idp.key.sign(&access_claims(&idp.issuer, "a"));
    let (for_a, for_b) = (vec!["a".to_string()], vec!["b".to_string()]);

    assert_eq!(bearer_call(&gw, "/a/x", &token).await.status(), 200);
    assert_eq!(a.count(), 1);
    assert!(
        gw.state.bearer.is_cached(&token, &for_a),
        "the first use cached the verification"
    );
    // Twice, so a verification cached by the first refusal would show.
    for _ in 0..2 {
        let r = bearer_call(&gw, "/b/x", &token).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    assert_eq!(b.count(), 0, "route b's upstream saw nothing");
    assert!(!gw.state.bearer.is_cached(&token, &for_b));
    // Route a still answers from its own entry.
    assert_eq!(bearer_call(&gw, "/a/x", &token).await.status(), 200);
    assert_eq!(a.count(), 2);
}

#[tokio::test]
async fn a_cached_verification_never_answers_after_exp() {
    // No leeway: past `exp`, a fresh verification refuses too, so any 200
    // after `exp` could only come from the cache.
    let (idp, upstream, gw) = bearer_stack(
        &format!("audiences = [\"{AUD}\"]\nleeway = \"0s\""),
        "[[route]]\npath = \"/api/\"\nupstream = \"UP\"\nauth = \"bearer\"\n",
    )
    .await;
    // Metadata and keys loaded first.
    let warm = idp.key.sign(&access_claims(&idp.issuer, AUD));
    assert_eq!(bearer_call(&gw, "/api/x", &warm).await.status(), 200);

    // `exp` 100 s ahead of the gateway's clock, which the test then moves.
    let mut claims = access_claims(&idp.issuer, AUD);
    let exp = gw.state.clock.now_secs() + 100;
    claims["exp"] = json!(exp);
    let token = idp.key.sign(&claims);
    assert_eq!(bearer_call(&gw, "/api/x", &token).await.status(), 200);
    assert!(
        gw.state.bearer.is_cached(&token, &[]),
        "the first use cached the verification"
    );
    // Before `exp`: served.
    gw.clock().advance(Duration::from_secs(50));
    let asked_at = gw.state.clock.now_secs();
    assert!(asked_at < exp);
    assert_eq!(bearer_call(&gw, "/api/x", &token).await.status(), 200);
    let served = 3; // the warm-up and the two uses above
                    // Past `exp`: refused, though the cache still holds the entry (its
                    // eviction runs on real time): the entry's `exp` is what refuses it.
    gw.clock().advance(Duration::from_secs(60));
    let asked_at = gw.state.clock.now_secs();
    assert!(asked_at > exp, "asked at {asked_at}, exp {exp}");
    assert!(gw.state.bearer.is_cached(&token, &[]));
    assert_eq!(bearer_call(&gw, "/api/x", &token).await.status(), 401);
    assert_eq!(upstream.count(), served, "the refusal reached no upstream");
    // And it stays refused.
    assert_eq!(bearer_call(&gw, "/api/x", &token).await.status(), 401);
    assert_eq!(upstream.count(), served);
}
