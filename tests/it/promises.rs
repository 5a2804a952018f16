//! What the docs and `config/oidc-bff.example.toml` promise, end to end,
//! for settings nothing else exercises: `token = "id"`, `auth = "optional"`,
//! `client_secret_post`, `session.max_sessions`, refresh without rotation,
//! Redis over TLS with an ACL user from the TOML file, `same_site = "none"`,
//! `auth_prefix`, `cookie_name`, `/readyz` while the IdP is down, SIGINT, and
//! every metric docs/operations.md names. Real IdP (oidc-provider), real Redis, the
//! gateway in-process or as its binary.

use crate::harness::*;
use oidc_bff::app::AppState;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

// ------------------------------------------------------------- helpers ---

/// Inserts `line` right after the `[section]` header of a config.
pub fn with(toml: &str, section: &str, line: &str) -> String {
    let header = format!("[{section}]\n");
    assert!(toml.contains(&header), "no [{section}] in the config");
    toml.replacen(&header, &format!("{header}{line}\n"), 1)
}

/// A test IdP whose one client `bff` knows the given redirect URIs, with
/// `client` and `extra` merged into the client and the top level.
fn idp_with(callbacks: &[String], signed_out: &[String], client: Value, extra: Value) -> Idp {
    let mut c = json!({
        "client_id": "bff",
        "client_secret": "bff-secret",
        "redirect_uris": callbacks,
        "post_logout_redirect_uris": signed_out,
    });
    for (k, v) in client.as_object().unwrap() {
        c[k] = v.clone();
    }
    let mut cfg = json!({ "clients": [c] });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Idp::start(cfg)
}

/// A client that keeps no cookies and follows no redirects: the test sends
/// the gateway's cookies itself (for `Secure` cookies on a plain listener).
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Every `Set-Cookie` of a response, as text.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The `Set-Cookie` line for cookie `name`.
fn set_cookie_line(r: &reqwest::Response, name: &str) -> String {
    set_cookies(r)
        .into_iter()
        .find(|c| c.split('=').next() == Some(name))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", set_cookies(r)))
}

/// The attributes of a `Set-Cookie` line, lower-cased names, values as sent.
fn attributes(line: &str) -> Vec<(String, String)> {
    line.split(';')
        .skip(1)
        .map(|a| {
            let (k, v) = a.trim().split_once('=').unwrap_or((a.trim(), ""));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect()
}

/// Walks the test IdP's login and consent pages from `authorize` until it
/// sends the browser to `callback`; returns that URL without requesting it
/// (the gateway behind it may not speak the URL's scheme).
async fn through_idp(b: &reqwest::Client, authorize: &str, callback: &str, user: &str) -> String {
    let form_re =
        regex::Regex::new(r#"<form autocomplete="off" action="([^"]+)" method="post">"#).unwrap();
    let prompt_re =
        regex::Regex::new(r#"<input type="hidden" name="prompt" value="(login|consent)"/>"#)
            .unwrap();
    let mut url = authorize.to_string();
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..20 {
        if url.starts_with(callback) {
            return url;
        }
        let r = match form.take() {
            Some(f) => b.post(&url).form(&f).send().await.unwrap(),
            None => b.get(&url).send().await.unwrap(),
        };
        if r.status().is_redirection() {
            url = resolve(r.url(), &location(&r));
            continue;
        }
        assert_eq!(r.status(), 200, "unexpected answer at {url}");
        let page = r.text().await.unwrap();
        let action = form_re.captures(&page).expect("a form")[1].to_string();
        let prompt = prompt_re.captures(&page).expect("a prompt")[1].to_string();
        let mut f = vec![("prompt", prompt.clone())];
        if prompt == "login" {
            f.push(("login", user.to_string()));
            f.push(("password", "any-password".to_string()));
        }
        url = action;
        form = Some(f);
    }
    panic!("the IdP never sent the browser to {callback}");
}

/// A gateway in-process whose session store is the one its config names
/// (the harness' `Gateway` always uses a memory store of 1000).
struct ConfiguredGateway {
    url: String,
    admin_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn listeners() -> (TcpListener, TcpListener, String) {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", main.local_addr().unwrap());
    (main, admin, url)
}

async fn start_configured(main: TcpListener, admin: TcpListener, toml: &str) -> ConfiguredGateway {
    let config = oidc_bff::config::load_from_str(toml)
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let state = AppState::new(config).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = oidc_bff::serve(state, main, admin, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    ConfiguredGateway {
        url: format!("http://{}", running.addr),
        admin_url: format!("http://{}", running.admin_addr),
        _stop: tx,
    }
}

async fn get_user(b: &reqwest::Client, gw: &str) -> reqwest::Response {
    b.get(format!("{gw}/auth/user"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap()
}

fn bearer(seen: &Seen) -> Option<String> {
    seen.header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string)
}

// ------------------------------------------------------ 1. token = "id" ---

/// A route with `token = "id"` sends the session's ID token upstream: a JWT
/// the upstream verifies with the IdP's keys, whose `aud` is the client id
/// and whose `sub` is the user (the access token's `aud` is the API).
#[tokio::test]
async fn token_id_route_sends_the_id_token() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({}));
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/id/\"\nupstream = \"{up}\"\ntoken = \"id\"\n\n\
         [[route]]\npath = \"/access/\"\nupstream = \"{up}\"\n",
        up = upstream.url
    );
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, &routes)).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;

    let (status, body) = api(&b, &format!("{}/id/whoami", gw.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verified"], true, "the IdP's keys verify it: {body}");
    let claims = &body["claims"];
    let aud_is_client = claims["aud"] == "bff"
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "bff"));
    assert!(aud_is_client, "aud is the client id: {claims}");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], idp.issuer.as_str());
    assert!(claims["nonce"].is_string(), "an ID token: {claims}");
    let id_token = bearer(&upstream.last()).unwrap();

    // The default route gets the access token, which is another token.
    let (status, body) = api(&b, &format!("{}/access/x", gw.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["claims"]["aud"], "urn:oidc-bff:api", "{body}");
    assert_ne!(bearer(&upstream.last()).unwrap(), id_token);
}

// -------------------------------------------------- 2. auth = "optional" ---

/// `auth = "optional"`: anonymous requests pass with neither `Authorization`
/// nor identity headers (not even ones the client forged); signed-in requests
/// carry the access token and the identity headers.
#[tokio::test]
async fn optional_route_passes_anonymous_and_signed_in_requests() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({}));
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/maybe/\"\nupstream = \"{}\"\nauth = \"optional\"\n\
         identity_headers = {{ user = \"X-Forwarded-User\", email = \"X-Forwarded-Email\" }}\n",
        upstream.url
    );
    let gw = Gateway::start(reserved, &config_toml(&url, &idp.issuer, &routes)).await;

    let anonymous = browser();
    let r = anonymous
        .get(format!("{}/maybe/page", gw.url))
        .header("authorization", "Bearer forged-by-the-client")
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-email", "mallory@example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/maybe/page");
    for h in ["authorization", "x-forwarded-user", "x-forwarded-email"] {
        assert_eq!(seen.header(h), None, "{h} reached the upstream: {seen:?}");
    }

    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let (status, body) = api(&b, &format!("{}/maybe/page", gw.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["verified"], true, "{body}");
    assert_eq!(body["claims"]["sub"], "alice");
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.test"));
    // It is not `public`: a request with the session cookie needs X-CSRF.
    let r = b
        .get(format!("{}/maybe/page", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// ---------------------------------------------- 3. client_secret_post ---

/// `token_endpoint_auth = "client_secret_post"` against an IdP that only
/// accepts that method: sign-in completes, the secret went in the form
/// body (never a Basic header), and so does logout's revocation.
#[tokio::test]
async fn client_secret_post_signs_in_and_revokes() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = idp_with(
        &[format!("{url}/auth/callback")],
        &[format!("{url}/auth/signed-out")],
        json!({ "token_endpoint_auth_method": "client_secret_post" }),
        json!({}),
    );
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let toml = with(
        &config_toml(&url, &idp.issuer, &routes),
        "provider",
        "token_endpoint_auth = \"client_secret_post\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    let r = sign_in(&b, &gw.url, "alice", "/").await;
    assert_eq!(landing_page(r).await, "/");
    let r = get_user(&b, &gw.url).await;
    assert_eq!(r.status(), 200);
    let (status, body) = api(&b, &format!("{}/api/x", gw.url)).await;
    assert_eq!((status, &body["verified"]), (200, &json!(true)), "{body}");

    let stats = idp.stats().await;
    assert_eq!(stats["token"]["authorization_code"], 1, "{stats}");
    assert_eq!(stats["client_auth"]["client_secret_post"], 1, "{stats}");
    assert_eq!(stats["client_auth"]["client_secret_basic"], 0, "{stats}");

    // Logout revokes in the background, with the same client authentication.
    let r = b
        .post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let start = Instant::now();
    loop {
        let stats = idp.stats().await;
        if stats["revocation"] == 1 {
            assert_eq!(stats["client_auth"]["client_secret_post"], 2, "{stats}");
            assert_eq!(stats["client_auth"]["client_secret_basic"], 0, "{stats}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no revocation: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --------------------------------------------------- 4. max_sessions ---

/// `session.max_sessions` bounds the memory store: signing in once more
/// than the bound evicts the least recently used session, whose cookie then
/// gets 401; the others go on.
#[tokio::test]
async fn max_sessions_evicts_the_oldest_session() {
    let (main, admin, url) = listeners().await;
    let idp = Idp::for_gateway(&url, json!({}));
    let toml = with(
        &config_toml(&url, &idp.issuer, ""),
        "session",
        "store = \"memory\"\nmax_sessions = 2",
    );
    let gw = start_configured(main, admin, &toml).await;
    let mut browsers = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let b = browser();
        let r = sign_in(&b, &gw.url, user, "/").await;
        assert!(
            set_cookie_value(&r, "oidc_bff").is_some_and(|v| !v.is_empty()),
            "{user} signed in"
        );
        browsers.push((user, b));
    }
    // The store's bookkeeping runs at least every 300 ms; let it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = reqwest::get(format!("{}/metrics", gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let active = metrics
        .lines()
        .find(|l| l.starts_with("oidc_bff_sessions_active "))
        .unwrap_or("oidc_bff_sessions_active ?")
        .to_string();
    // The two newest sessions go on ...
    for (user, b) in &browsers[1..] {
        let r = get_user(b, &gw.url).await;
        assert_eq!(r.status(), 200, "{user}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["sub"], *user);
    }
    // ... and the oldest one is over.
    let r = get_user(&browsers[0].1, &gw.url).await;
    assert_eq!(
        r.status(),
        401,
        "alice's session outlived max_sessions = 2 ({active})"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
}

// ------------------------------------------ 5. refresh without rotation ---

/// A token endpoint in front of the IdP's that records the refresh tokens
/// the gateway sends, and can drop `refresh_token` from refresh answers as
/// Cognito does when it does not rotate.
struct TokenProxy {
    url: String,
    /// Refresh tokens received, in order.
    refresh_tokens_sent: Arc<Mutex<Vec<String>>>,
    /// Refresh tokens handed to the gateway, in order.
    refresh_tokens_issued: Arc<Mutex<Vec<String>>>,
}

async fn token_proxy(idp_token_endpoint: String, strip_on_refresh: bool) -> TokenProxy {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let issued = Arc::new(Mutex::new(Vec::new()));
    let (s, i) = (sent.clone(), issued.clone());
    let client = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let (s, i, client, target) = (
                s.clone(),
                i.clone(),
                client.clone(),
                idp_token_endpoint.clone(),
            );
            async move {
                let form: Vec<(String, String)> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let refreshing = field("grant_type").as_deref() == Some("refresh_token");
                if let Some(rt) = field("refresh_token") {
                    s.lock().unwrap().push(rt);
                }
                let mut req = client
                    .post(&target)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.to_vec());
                if let Some(a) = headers.get("authorization") {
                    req = req.header("authorization", a.clone());
                }
                let r = req.send().await.unwrap();
                let status = r.status();
                let mut json: Value = r.json().await.unwrap();
                if refreshing && strip_on_refresh {
                    json.as_object_mut().unwrap().remove("refresh_token");
                }
                if let Some(rt) = json["refresh_token"].as_str() {
                    i.lock().unwrap().push(rt.to_string());
                }
                (status, axum::Json(json))
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    TokenProxy {
        url,
        refresh_tokens_sent: sent,
        refresh_tokens_issued: issued,
    }
}

async fn refreshes(idp: &Idp) -> (i64, i64) {
    let s = idp.stats().await;
    (
        s["token"]["refresh_token"].as_i64().unwrap(),
        s["token_error"]["refresh_token"].as_i64().unwrap(),
    )
}

/// Calls the API until the IdP has answered at least `n` refreshes, moving
/// the IdP's and the gateway's clocks past the access token's lifetime
/// between calls; every call must succeed with a token the upstream
/// verifies. Returns the `jti` of the last access token sent.
async fn call_until_refreshed(b: &reqwest::Client, gw: &Gateway, idp: &Idp, n: i64) -> String {
    for _ in 0..4 {
        let (status, body) = api(b, &format!("{}/api/x", gw.url)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["verified"], true, "{body}");
        let (ok, failed) = refreshes(idp).await;
        assert_eq!(failed, 0, "the IdP refused a refresh");
        if ok >= n {
            return body["claims"]["jti"].as_str().unwrap().to_string();
        }
        // Past the 2 s access token's expiry.
        crate::lifecycle::advance(idp, &[gw.clock()], Duration::from_secs(3)).await;
    }
    panic!("no refresh #{n} after the access token expired three times");
}

/// Refresh without rotation (oidc-provider `rotate_refresh_tokens: false`,
/// Cognito's default): after a refresh, the same refresh token works for
/// the next one, and the session goes on. With `cognito_shape`, the refresh
/// answers carry no `refresh_token` at all, as Cognito's do, and the
/// gateway must keep the one it has.
async fn refresh_without_rotation(cognito_shape: bool) {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(
        &url,
        json!({ "access_token_ttl": 2, "rotate_refresh_tokens": false }),
    );
    let proxy = token_proxy(format!("{}/token", idp.issuer), cognito_shape).await;
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let toml = with(
        &config_toml(&url, &idp.issuer, &routes),
        "provider",
        &format!("token_endpoint = \"{}\"", proxy.url),
    );
    let gw = Gateway::start(reserved, &toml).await;
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    let first = call_until_refreshed(&b, &gw, &idp, 1).await;
    let second = call_until_refreshed(&b, &gw, &idp, 2).await;

    let (ok, _) = refreshes(&idp).await;
    let sent = proxy.refresh_tokens_sent.lock().unwrap().clone();
    let issued = proxy.refresh_tokens_issued.lock().unwrap().clone();
    assert!(
        ok >= 2 && sent.len() as i64 == ok,
        "{ok} refreshes, {sent:?}"
    );
    if ok == 2 {
        assert_ne!(first, second, "a new access token after each refresh");
    }
    assert!(
        sent.iter().all(|t| *t == sent[0]),
        "the same refresh token every time"
    );
    assert_eq!(sent[0], issued[0], "the one issued at sign-in");
    if cognito_shape {
        assert_eq!(issued.len(), 1, "refresh answers carried none");
    }
    let r = get_user(&b, &gw.url).await;
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert!(user["access_token_refreshed_at"].is_i64(), "{user}");
}

#[tokio::test]
async fn refresh_without_rotation_reuses_the_refresh_token() {
    refresh_without_rotation(false).await;
}

#[tokio::test]
async fn refresh_answer_without_refresh_token_keeps_the_old_one() {
    refresh_without_rotation(true).await;
}

// ----------------------------------------- 6. Redis TLS + ACL from TOML ---

/// A TLS-only Redis port (plus the plain one the harness inspects through),
/// and an ACL user `app` with a password.
fn tls_redis(certs: &TestCerts) -> (RedisServer, u16) {
    let server = RedisServer::start_tls(&[
        "--tls-cert-file",
        &certs.server_cert,
        "--tls-key-file",
        &certs.server_key,
        "--tls-ca-cert-file",
        &certs.ca_cert,
        "--tls-auth-clients",
        "no",
        "--user",
        "app",
        "on",
        ">app-pass-42",
        "~*",
        "+@all",
    ]);
    let tls_port = server.tls_port.expect("a TLS port");
    (server, tls_port)
}

fn redis_gateway_toml(ports: &ProcessPorts, issuer: &str, upstream: &str, session: &str) -> String {
    format!(
        "{server}\n[provider]\nissuer = \"{issuer}\"\nclient_id = \"bff\"\nclient_secret = \"bff-secret\"\n\
         scopes = [\"openid\", \"email\", \"offline_access\", \"api:read\"]\ninsecure_allow_http = true\n\n\
         [session]\nkeys = [\"{key}\"]\n{session}\n\n[[route]]\npath = \"/api/\"\nupstream = \"{upstream}\"\n",
        server = ports.server_toml(),
        key = test_key(),
    )
}

/// `rediss://` with `redis_ca_file`, `redis_username` and
/// `redis_password_file` from the TOML file: sessions live in that Redis
/// across sign-in and API calls. A wrong password: the gateway says so
/// (`/readyz` 503, sign-in 503) and never logs either password.
#[tokio::test]
async fn redis_over_tls_with_acl_user_from_the_config_file() {
    let certs = TestCerts::generate();
    let (redis, tls_port) = tls_redis(&certs);
    let secrets = ScratchDir::new("redis-secrets");
    let good = secrets.write("good", "app-pass-42\n");
    let bad = secrets.write("bad", "not-the-password-7\n");
    let prefix = format!("prom-{}:", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let session = |password_file: &std::path::Path| {
        format!(
            "store = \"redis\"\nredis_url = \"rediss://127.0.0.1:{tls_port}/0\"\n\
             redis_username = \"app\"\nredis_password_file = \"{}\"\nredis_ca_file = \"{}\"\n\
             redis_key_prefix = \"{prefix}\"\nredis_timeout = \"1s\"",
            password_file.display(),
            certs.ca_cert
        )
    };
    let (pa, pb) = (ProcessPorts::new(), ProcessPorts::new());
    let idp = idp_for_gateways(&[&pa.url, &pb.url]);
    let upstream = Upstream::start(Some(format!("{}/jwks", idp.issuer))).await;

    let gw = GatewayProcess::start(
        &pa,
        &redis_gateway_toml(&pa, &idp.issuer, &upstream.url, &session(&good)),
    )
    .await;
    gw.wait_ready(Duration::from_secs(10)).await;
    let b = browser();
    let r = sign_in(&b, &gw.url, "alice", "/").await;
    assert!(set_cookie_value(&r, "oidc_bff").is_some(), "{}", gw.log());
    let (status, body) = api(&b, &format!("{}/api/x", gw.url)).await;
    assert_eq!((status, &body["verified"]), (200, &json!(true)), "{body}");
    assert_eq!(get_user(&b, &gw.url).await.status(), 200);
    assert!(
        !redis.dump(&format!("{prefix}*")).is_empty(),
        "the session lives in Redis"
    );

    let wrong = GatewayProcess::start(
        &pb,
        &redis_gateway_toml(&pb, &idp.issuer, &upstream.url, &session(&bad)),
    )
    .await;
    // Not ready, and saying why, once its first attempt at Redis failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = reqwest::get(format!("{}/readyz", wrong.admin_url))
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 503, "{body}; log:\n{}", wrong.log());
        if body.contains("session store") {
            break;
        }
        assert!(Instant::now() < deadline, "{body}; log:\n{}", wrong.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = sign_in(&browser(), &wrong.url, "bob", "/").await;
    assert_eq!(r.status(), 503, "no session without the store");
    let log = format!("{}{}", gw.log(), wrong.log());
    assert!(log.contains("session store"), "log:\n{log}");
    for secret in ["app-pass-42", "not-the-password-7"] {
        assert!(!log.contains(secret), "a Redis password in the log");
    }
}

// -------------------------------------------------- 7. same_site = none ---

/// `same_site = "none"` (which needs an https `public_url`): the session
/// cookie is `__Host-` prefixed, `SameSite=None`, `Secure`, `HttpOnly`,
/// `Path=/`, no `Domain`, `Max-Age` = `absolute_timeout`; the pending-login
/// cookie stays `Lax`; the callback answers with a 302, not the landing
/// page used with `strict`.
#[tokio::test]
async fn same_site_none_cookie_attributes() {
    let reserved = reserve().await;
    let plain = reserved.url.clone();
    // TLS ends in front of the gateway; the browser sees https.
    let public = plain.replace("http://", "https://");
    let idp = idp_with(
        &[format!("{public}/auth/callback")],
        &[format!("{public}/auth/signed-out")],
        json!({}),
        json!({}),
    );
    let toml = with(
        &config_toml(&public, &idp.issuer, ""),
        "session",
        "same_site = \"none\"\nabsolute_timeout = \"12h\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let gateway = bare();

    let r = gateway
        .get(format!("{plain}/auth/login?return_to=%2Fdeep%2Flink"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login_line = set_cookie_line(&r, "__Host-oidc_bff_login");
    let login_attrs = attributes(&login_line);
    assert!(
        login_attrs.contains(&("samesite".into(), "Lax".into())),
        "{login_line}"
    );
    assert!(
        login_attrs.iter().any(|(k, _)| k == "secure"),
        "{login_line}"
    );
    let login_cookie = set_cookie_value(&r, "__Host-oidc_bff_login").unwrap();
    let authorize = location(&r);

    let callback = through_idp(
        &browser(),
        &authorize,
        &format!("{public}/auth/callback"),
        "alice",
    )
    .await;
    let r = gateway
        .get(callback.replacen(&public, &plain, 1))
        .header("accept", "text/html")
        .header("cookie", format!("__Host-oidc_bff_login={login_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "lax/none redirect straight to return_to");
    assert_eq!(location(&r), "/deep/link");
    let line = set_cookie_line(&r, "__Host-oidc_bff");
    let attrs = attributes(&line);
    let has = |k: &str, v: &str| attrs.contains(&(k.to_string(), v.to_string()));
    assert!(has("samesite", "None"), "{line}");
    assert!(has("secure", ""), "{line}");
    assert!(has("httponly", ""), "{line}");
    assert!(has("path", "/"), "{line}");
    assert!(
        has("max-age", "43200"),
        "Max-Age = absolute_timeout: {line}"
    );
    assert!(!attrs.iter().any(|(k, _)| k == "domain"), "{line}");
    assert!(
        !set_cookies(&r).iter().any(|c| c.starts_with("oidc_bff")),
        "no unprefixed cookie on https"
    );

    // The cookie is the session.
    let session = set_cookie_value(&r, "__Host-oidc_bff").unwrap();
    let r = gateway
        .get(format!("{plain}/auth/user"))
        .header("x-csrf", "1")
        .header("cookie", format!("__Host-oidc_bff={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["sub"], "alice");
    drop(gw);
}

// ------------------------------------------------------ 8. auth_prefix ---

/// `server.auth_prefix = "/bff"`: login, callback, user, logout and
/// signed-out live under it, the redirect URIs and `login_url`s say so, and
/// nothing answers under `/auth` any more.
#[tokio::test]
async fn auth_prefix_moves_every_gateway_endpoint() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = idp_with(
        &[format!("{url}/bff/callback")],
        &[format!("{url}/bff/signed-out")],
        json!({}),
        json!({}),
    );
    let upstream = Upstream::start(None).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let toml = with(
        &config_toml(&url, &idp.issuer, &routes),
        "server",
        "auth_prefix = \"/bff\"",
    );
    let gw = Gateway::start(reserved, &toml).await;

    let anonymous = browser();
    let (status, body) = api(&anonymous, &format!("{}/api/x", gw.url)).await;
    assert_eq!(status, 401);
    assert!(
        body["login_url"]
            .as_str()
            .unwrap()
            .starts_with("/bff/login"),
        "{body}"
    );
    let r = anonymous
        .get(format!("{}/bff/login?return_to=%2Fapi%2Fx", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        param(&location(&r), "redirect_uri").unwrap(),
        format!("{}/bff/callback", gw.url)
    );
    for path in [
        "/auth/login",
        "/auth/callback?code=x&state=y",
        "/auth/user",
        "/auth/signed-out",
    ] {
        let r = anonymous
            .get(format!("{}{path}", gw.url))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} answered");
    }

    let b = browser();
    let r = sign_in_from(
        &b,
        &format!("{}/bff/login?return_to=%2Fapi%2Fx", gw.url),
        &format!("{}/bff/callback", gw.url),
        "alice",
    )
    .await;
    assert_eq!(landing_page(r).await, "/api/x");
    let r = b
        .get(format!("{}/bff/user", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["sub"], "alice");
    assert!(
        user["logout_url"]
            .as_str()
            .unwrap()
            .starts_with("/bff/logout?"),
        "{user}"
    );
    assert_eq!(get_user(&b, &gw.url).await.status(), 404);
    assert_eq!(api(&b, &format!("{}/api/x", gw.url)).await.0, 200);

    let r = b
        .post(format!("{}/bff/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        param(
            body["redirect"].as_str().unwrap(),
            "post_logout_redirect_uri"
        )
        .unwrap(),
        format!("{}/bff/signed-out", gw.url)
    );
    let r = b
        .get(format!("{}/bff/user", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = b
        .get(format!("{}/bff/signed-out", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/bff/login"));
}

// ------------------------------------------------------ 9. cookie_name ---

/// `session.cookie_name`: the session and pending-login cookies take the
/// name; the default name is neither set nor read, and to upstreams it is
/// just another cookie of the app, passed on.
#[tokio::test]
async fn cookie_name_replaces_the_default_name() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({}));
    let upstream = Upstream::start(None).await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n",
        upstream.url
    );
    let toml = with(
        &config_toml(&url, &idp.issuer, &routes),
        "session",
        "cookie_name = \"shop_sid\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let no_default = |r: &reqwest::Response| {
        let cookies = set_cookies(r);
        assert!(
            !cookies.iter().any(|c| c.starts_with("oidc_bff")),
            "the default name was set: {cookies:?}"
        );
    };

    let b = browser();
    let r = b
        .get(format!("{}/auth/login", gw.url))
        .send()
        .await
        .unwrap();
    assert!(set_cookie_value(&r, "shop_sid_login").is_some());
    no_default(&r);
    let r = sign_in(&b, &gw.url, "alice", "/").await;
    let session = set_cookie_value(&r, "shop_sid").expect("session cookie under the new name");
    no_default(&r);
    assert_eq!(get_user(&b, &gw.url).await.status(), 200);

    // The session under the default name is no session.
    let r = bare()
        .get(format!("{}/auth/user", gw.url))
        .header("x-csrf", "1")
        .header("cookie", format!("oidc_bff={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Upstreams never see the gateway's cookie; a cookie of the app that
    // happens to carry the default name is not the gateway's.
    let r = bare()
        .get(format!("{}/api/x", gw.url))
        .header("x-csrf", "1")
        .header(
            "cookie",
            format!("shop_sid={session}; oidc_bff=app-value; theme=dark"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = upstream.last().all("cookie").join("; ");
    assert!(!cookie.contains("shop_sid"), "{cookie}");
    assert!(cookie.contains("oidc_bff=app-value"), "{cookie}");
    assert!(cookie.contains("theme=dark"), "{cookie}");
}

// ------------------------------------------ 10. /readyz, IdP down and up ---

async fn readyz(admin: &str) -> (u16, String) {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `/readyz` is 503 while the IdP's metadata and keys cannot be loaded (a
/// stalled IdP, bounded by `http_timeout`), sign-in answers 503
/// `idp_unavailable`, and both come back by themselves when the IdP does.
/// Once loaded, readiness no longer depends on the IdP.
#[tokio::test]
async fn readyz_follows_the_idp_until_its_keys_are_loaded() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let idp = Idp::for_gateway(&url, json!({}));
    idp.pause();
    let toml = with(
        &config_toml(&url, &idp.issuer, ""),
        "provider",
        "http_timeout = \"1s\"",
    );
    let gw = Gateway::start(reserved, &toml).await;

    let asked = Instant::now();
    let (status, body) = readyz(&gw.admin_url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("identity provider"), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "bounded by http_timeout"
    );
    let r = browser()
        .get(format!("{}/auth/login", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "idp_unavailable", "{body}");
    assert_eq!(
        reqwest::get(format!("{}/healthz", gw.admin_url))
            .await
            .unwrap()
            .status(),
        200,
        "alive all the same"
    );

    idp.resume();
    let back = Instant::now();
    while readyz(&gw.admin_url).await.0 != 200 {
        assert!(back.elapsed() < Duration::from_secs(5), "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    assert_eq!(get_user(&b, &gw.url).await.status(), 200);

    idp.pause();
    assert_eq!(
        readyz(&gw.admin_url).await.0,
        200,
        "keys loaded: still ready"
    );
    idp.resume();
}

// ---------------------------------------------------------- 11. SIGINT ---

/// SIGINT shuts down as SIGTERM does: `/readyz` fails at once, answers say
/// `Connection: close` during `shutdown_delay`, the request in flight
/// completes, and the process exits 0.
#[tokio::test]
async fn sigint_shuts_down_cleanly() {
    // The request stays in flight until the test lets it finish.
    let slow = GatedUpstream::start().await;
    let fast = Upstream::start(None).await;
    let ports = ProcessPorts::new();
    let idp = RogueIdp::start().await;
    let toml = format!(
        "{server}shutdown_delay = \"1s\"\nshutdown_timeout = \"10s\"\n\n[provider]\nissuer = \"{iss}\"\n\
         client_id = \"bff\"\ninsecure_allow_http = true\n[session]\nkeys = [\"{key}\"]\n\
         [[route]]\npath = \"/slow\"\nupstream = \"{slow}\"\nauth = \"public\"\n\
         [[route]]\npath = \"/fast\"\nupstream = \"{fast}\"\nauth = \"public\"\n",
        server = ports.server_toml(),
        iss = idp.issuer,
        key = test_key(),
        fast = fast.url,
        slow = slow.url,
    );
    let mut gw = GatewayProcess::start(&ports, &toml).await;
    gw.wait_ready(Duration::from_secs(10)).await;

    let url = format!("{}/slow", gw.url);
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new().get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    slow.until_arrived(1).await;
    let signalled = Instant::now();
    gw.signal("INT");
    let mut not_ready = false;
    while signalled.elapsed() < Duration::from_millis(800) {
        if gw.readyz().await == 503 {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(not_ready, "/readyz did not fail right after SIGINT");
    let r = reqwest::get(format!("{}/fast/x", gw.url)).await.unwrap();
    assert_eq!(r.status(), 200, "still served during the delay");
    assert_eq!(
        r.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close"),
        "clients are told to go elsewhere"
    );
    slow.open();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "done"));
    let exit = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the process exits");
    assert!(exit.success(), "exit status {exit:?}; log:\n{}", gw.log());
}

// --------------------------------------------- 12. the documented metrics ---

/// The metric names the "Metrics" section of docs/operations.md lists.
fn documented_metrics() -> Vec<String> {
    let doc = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let start = doc.find("\n## Metrics\n").expect("a Metrics section");
    let end = start + 1 + doc[start + 1..].find("\n## ").expect("a section after it");
    let re = regex::Regex::new(r"oidc_bff_[a-z_]+").unwrap();
    let mut names: Vec<String> = re
        .find_iter(&doc[start..end])
        .map(|m| m.as_str().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "too few names: {names:?}");
    names
}

/// Sample lines (`name{labels} value`) of metric `name`, histograms by any
/// of their series.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                ["{", " ", "_bucket{", "_count", "_sum"]
                    .iter()
                    .any(|s| rest.starts_with(s))
            })
        })
        .collect()
}

/// Whether some sample of `name` carries every one of `labels`, with a
/// value above zero.
fn has_sample(text: &str, name: &str, labels: &[&str]) -> bool {
    samples(text, name).iter().any(|l| {
        labels.iter().all(|want| l.contains(want))
            && l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
    })
}

async fn metrics_text(admin: &str) -> String {
    reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// An upstream that promises 100 bytes, sends 10 and hangs up.
async fn cutting_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten!!")
                    .await;
            });
        }
    });
    url
}

/// After a sign-in, proxied calls, a refusal, refreshes (one fine, one with
/// the IdP gone), a body cut short, a logout, and a Redis outage, every
/// metric docs/operations.md names is on `/metrics`, with the labels it documents.
#[tokio::test]
async fn every_documented_metric_appears_with_its_labels() {
    let reserved = reserve().await;
    let url = reserved.url.clone();
    let (main, admin, redis_url) = listeners().await;
    let idp = idp_with(
        &[
            format!("{url}/auth/callback"),
            format!("{redis_url}/auth/callback"),
        ],
        &[format!("{url}/auth/signed-out")],
        json!({}),
        json!({ "access_token_ttl": 2 }),
    );
    let upstream = Upstream::start(None).await;
    let cut = cutting_upstream().await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{}\"\n\n\
         [[route]]\npath = \"/cut/\"\nupstream = \"{cut}\"\nauth = \"public\"\n\n\
         [[route]]\npath = \"/m2m/\"\nupstream = \"{}\"\ntoken = \"client\"\nclient_scopes = [\"api:read\"]\n",
        upstream.url, upstream.url
    );
    let toml = with(
        &config_toml(&url, &idp.issuer, &routes),
        "provider",
        "http_timeout = \"1s\"",
    );
    let gw = Gateway::start(reserved, &toml).await;

    // A Redis-backed gateway for the store's error counter.
    let redis = RedisServer::start();
    let redis_toml = with(
        &config_toml(&redis_url, &idp.issuer, ""),
        "session",
        &format!(
            "store = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"500ms\"",
            redis.url()
        ),
    );
    let rgw = start_configured(main, admin, &redis_toml).await;
    let rb = browser();
    sign_in(&rb, &rgw.url, "bob", "/").await;
    assert_eq!(get_user(&rb, &rgw.url).await.status(), 200);
    redis.kill();
    assert_eq!(get_user(&rb, &rgw.url).await.status(), 503);

    let b = browser();
    sign_in(&b, &gw.url, "alice", "/").await;
    // A second session keeps the memory store's gauge above zero after logout.
    sign_in(&browser(), &gw.url, "carol", "/").await;
    assert_eq!(api(&b, &format!("{}/api/x", gw.url)).await.0, 200);
    assert_eq!(api(&b, &format!("{}/m2m/x", gw.url)).await.0, 200);
    let refused = b.get(format!("{}/api/x", gw.url)).send().await.unwrap();
    assert_eq!(refused.status(), 403, "no X-CSRF");
    // The 2 s access token expires: the next call refreshes it.
    crate::lifecycle::advance(&idp, &[gw.clock()], Duration::from_secs(3)).await;
    assert_eq!(api(&b, &format!("{}/api/x", gw.url)).await.0, 200);
    assert!(
        has_sample(
            &metrics_text(&gw.admin_url).await,
            "oidc_bff_token_refreshes_total",
            &["outcome=\"success\""],
        ),
        "no refresh"
    );
    // The IdP goes away: the next refresh fails, backs off, and is skipped.
    drop(idp);
    gw.clock().advance(Duration::from_secs(3));
    let start = Instant::now();
    while !has_sample(
        &metrics_text(&gw.admin_url).await,
        "oidc_bff_token_refresh_skipped_total",
        &["reason=\"backoff\""],
    ) {
        assert!(start.elapsed() < Duration::from_secs(5), "no backoff");
        api(&b, &format!("{}/api/x", gw.url)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = reqwest::get(format!("{}/cut/x", gw.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body was cut short");
    let r = b
        .post(format!("{}/auth/logout", gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let text = metrics_text(&gw.admin_url).await;
    let redis_text = metrics_text(&rgw.admin_url).await;
    let expected: &[(&str, &[&str])] = &[
        (
            "oidc_bff_requests_total",
            &[
                "route=\"/api/\"",
                "method=\"GET\"",
                "status=\"2xx\"",
                "error=\"none\"",
            ],
        ),
        (
            "oidc_bff_requests_total",
            &[
                "route=\"/api/\"",
                "status=\"4xx\"",
                "error=\"csrf_required\"",
            ],
        ),
        ("oidc_bff_request_duration_seconds", &["route=\"/api/\""]),
        ("oidc_bff_upstream_duration_seconds", &["route=\"/api/\""]),
        ("oidc_bff_logins_total", &["outcome=\"success\""]),
        ("oidc_bff_logouts_total", &["kind=\"user\""]),
        (
            "oidc_bff_token_refreshes_total",
            &["outcome=\"success\"", "reason=\"expiry\""],
        ),
        ("oidc_bff_token_refreshes_total", &["outcome=\"error\""]),
        (
            "oidc_bff_machine_token_requests_total",
            &["outcome=\"success\""],
        ),
        (
            "oidc_bff_jwt_verifications_total",
            &["kind=\"id_token\"", "outcome=\"valid\""],
        ),
        ("oidc_bff_token_refresh_backoffs_total", &[]),
        (
            "oidc_bff_token_refresh_skipped_total",
            &["reason=\"backoff\""],
        ),
        ("oidc_bff_upstream_bodies_cut_total", &["route=\"/cut/\""]),
        ("oidc_bff_session_store_duration_seconds", &["op=\"load\""]),
    ];
    for (name, labels) in expected {
        assert!(
            has_sample(&text, name, labels),
            "{name} {labels:?} missing:\n{text}"
        );
    }
    assert!(
        has_sample(&text, "oidc_bff_sessions_active", &[]),
        "the memory store's gauge:\n{text}"
    );
    assert!(
        has_sample(
            &redis_text,
            "oidc_bff_session_store_errors_total",
            &["op=\"load\""]
        ),
        "{redis_text}"
    );
    // Nothing documented is missing, and the list is the documentation's own.
    for name in documented_metrics() {
        assert!(
            !samples(&text, &name).is_empty() || !samples(&redis_text, &name).is_empty(),
            "{name} is documented but never exposed"
        );
    }
}
