//! Cognito as a first-class provider: the `cognito = { region, user_pool_id,
//! domain }` shorthand against the development IdP (which speaks Cognito's
//! hosted-UI surface): `idp` / `lang` sign-in hints, logout through
//! `/logout?client_id&logout_uri` onto a configured destination, users without
//! email, groups driving a route policy. Then Cognito-shaped tokens minted by
//! the test (ID and access token under different `kid`s, `custom:tenant`)
//! accepted or refused exactly by `token_use`, `client_id`, `aud` and policy.

use crate::harness::*;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use oidc_bff::demo::dev_idp::{self, DevIdpConfig, DevIdpHandle, DevUser};
use regex::Regex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use url::Url;

// ------------------------------------------------------ the development IdP ---

/// The development IdP, an upstream and a gateway configured with the Cognito shorthand.
pub struct DevStack {
    pub idp: DevIdpHandle,
    pub upstream: Upstream,
    pub gw: Gateway,
}

/// The demo users (alice: admins, email, tenant acme; bob: no email, no
/// groups) plus carol (group `staff`, tenant `globex`).
pub fn dev_idp_config(gateway_url: &str) -> DevIdpConfig {
    let mut c = DevIdpConfig::demo(None, &Url::parse(gateway_url).unwrap());
    c.users.push(DevUser {
        username: "carol".into(),
        password: "carol-password".into(),
        email: Some("carol@example.com".into()),
        groups: vec!["staff".into()],
        attributes: BTreeMap::from([("custom:tenant".into(), "globex".into())]),
    });
    c
}

pub async fn start_dev_idp(gateway_url: &str) -> DevIdpHandle {
    oidc_bff::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    dev_idp::start(dev_idp_config(gateway_url), listener)
        .await
        .expect("the development IdP starts")
}

/// The gateway config for the dev IdP standing in for Cognito (as in docs/cognito.md).
pub fn cognito_toml(
    public_url: &str,
    idp: &DevIdpHandle,
    server_extra: &str,
    routes: &str,
) -> String {
    format!(
        r#"
[server]
public_url = "{public_url}"
{server_extra}

[provider]
cognito = {{ region = "local-1", user_pool_id = "local-1_devpool", domain = "{idp_url}" }}
jwks_url = "{idp_url}/.well-known/jwks.json"
client_id = "demo-spa"
client_secret = "demo-spa-secret"
scopes = ["openid", "email", "profile"]
insecure_allow_http = true

[session]
keys = ["{key}"]

{routes}
"#,
        idp_url = idp.base_url(),
        key = test_key()
    )
}

const ROUTES: &str = r#"
[[route]]
path = "/api/"
upstream = "UPSTREAM"

[[route]]
path = "/admin/"
upstream = "UPSTREAM"
csrf = false
allow_groups = ["admins"]
require_claims = { "custom:tenant" = "acme" }

[[route]]
path = "/profile/"
upstream = "UPSTREAM"
csrf = false
require_scopes = ["profile"]

[[route]]
path = "/orders/"
upstream = "UPSTREAM"
csrf = false
require_scopes = ["orders:write"]

[[route]]
path = "/partners/"
upstream = "UPSTREAM"
login_idp = "CorpSAML"
"#;

async fn dev_stack() -> DevStack {
    let reserved = reserve().await;
    let idp = start_dev_idp(&reserved.url).await;
    let upstream = Upstream::start(Some(idp.jwks_url().to_string())).await;
    let toml = cognito_toml(
        &reserved.url,
        &idp,
        "logout_return_to = \"/goodbye\"",
        &ROUTES.replace("UPSTREAM", &upstream.url),
    );
    let gw = Gateway::start(reserved, &toml).await;
    DevStack { idp, upstream, gw }
}

fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Signs in through the development IdP's hosted UI as a browser does:
/// `start` (a gateway URL that leads to sign-in) -> the IdP's login form ->
/// the gateway's callback. Returns the callback's response.
pub async fn dev_sign_in(
    b: &reqwest::Client,
    start: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let form_re = Regex::new(r#"<form method="post" action="([^"]+)""#).unwrap();
    let hidden_re = Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)">"#).unwrap();
    let mut url = start.to_string();
    for _ in 0..10 {
        let r = b
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        if url.contains("/auth/callback") {
            return r;
        }
        if r.status().is_redirection() {
            url = resolve(r.url(), &location(&r));
            continue;
        }
        assert_eq!(r.status(), 200, "unexpected answer at {url}");
        let page_url = r.url().clone();
        let page = r.text().await.unwrap();
        let action = form_re
            .captures(&page)
            .unwrap_or_else(|| panic!("no login form at {url}: {page}"))[1]
            .to_string();
        let mut form: Vec<(String, String)> = hidden_re
            .captures_iter(&page)
            .map(|c| (c[1].to_string(), html_unescape(&c[2])))
            .collect();
        form.push(("username".into(), username.into()));
        form.push(("password".into(), password.into()));
        let r = b
            .post(page_url.join(&html_unescape(&action)).unwrap())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "the IdP refused {username}'s sign-in");
        url = resolve(r.url(), &location(&r));
    }
    panic!("sign-in did not reach the callback");
}

/// Signs in at `gateway` and returns the page the browser lands on.
pub async fn dev_login(b: &reqwest::Client, gateway: &str, user: &str, return_to: &str) -> String {
    let start = format!("{gateway}/auth/login?return_to={}", urlencode(return_to));
    let r = dev_sign_in(b, &start, user, &format!("{user}-password")).await;
    landing_page(r).await
}

#[tokio::test]
async fn login_with_idp_and_lang_passes_them_to_the_hosted_ui() {
    let s = dev_stack().await;
    let b = browser();
    let r = b
        .get(format!(
            "{}/auth/login?idp=Google&lang=fr&return_to=/api/me",
            s.gw.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let authorize = location(&r);
    assert!(
        authorize.starts_with(&format!("{}/oauth2/authorize?", s.idp.base_url())),
        "{authorize}"
    );
    assert_eq!(
        param(&authorize, "identity_provider").as_deref(),
        Some("Google")
    );
    assert_eq!(param(&authorize, "lang").as_deref(), Some("fr"));
    assert_eq!(param(&authorize, "client_id").as_deref(), Some("demo-spa"));
    // The hosted UI received it: the dev IdP says it stands in for Google.
    let page = b
        .get(&authorize)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Federated sign-in with <strong>Google</strong>"),
        "{page}"
    );
    // The whole sign-in completes and lands where it was asked to.
    let start = format!(
        "{}/auth/login?idp=Google&lang=fr&return_to=/api/me",
        s.gw.url
    );
    let landed = landing_page(dev_sign_in(&b, &start, "alice", "alice-password").await).await;
    assert_eq!(landed, "/api/me");

    // Without hints nothing extra is sent; bad hints are refused, not forwarded.
    let r = b
        .get(format!("{}/auth/login", s.gw.url))
        .send()
        .await
        .unwrap();
    let plain = location(&r);
    assert_eq!(param(&plain, "identity_provider"), None);
    assert_eq!(param(&plain, "lang"), None);
    for bad in [
        "idp=Goo%20gle",
        "idp=a%26evil%3D1",
        "lang=x",
        "lang=fr%0d%0a",
    ] {
        let r = b
            .get(format!("{}/auth/login?{bad}", s.gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // A route with login_idp sends navigations that must sign in to that IdP.
    let anon = browser();
    let r = anon
        .get(format!("{}/partners/deals?x=1", s.gw.url))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        location(&r),
        "/auth/login?return_to=%2Fpartners%2Fdeals%3Fx%3D1&idp=CorpSAML"
    );
    let r = anon
        .get(format!("{}{}", s.gw.url, location(&r)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&r), "identity_provider").as_deref(),
        Some("CorpSAML")
    );
    // API calls still get 401 JSON.
    let r = anon
        .get(format!("{}/partners/deals", s.gw.url))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn logout_leaves_through_cognito_logout_and_lands_on_the_configured_page() {
    let s = dev_stack().await;
    let b = browser();
    dev_login(&b, &s.gw.url, "alice", "/").await;
    // The confirmation page (a plain link to /auth/logout) posts a form whose
    // answer redirects to the IdP: its CSP form-action must allow that origin,
    // or browsers block the sign-out.
    let r = b
        .get(format!("{}/auth/logout", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {}", s.idp.base_url())),
        "{csp}"
    );
    let r = b
        .post(format!("{}/auth/logout", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let idp_logout = body["redirect"].as_str().unwrap().to_string();
    let u = Url::parse(&idp_logout).unwrap();
    assert_eq!(
        format!("{}{}", u.origin().ascii_serialization(), u.path()),
        format!("{}/logout", s.idp.base_url())
    );
    let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("client_id".to_string(), "demo-spa".to_string()),
            (
                "logout_uri".to_string(),
                format!("{}/auth/signed-out", s.gw.url)
            ),
        ],
        "Cognito's /logout takes exactly client_id and logout_uri"
    );
    // The IdP checks logout_uri against the registered one and sends the browser back...
    let r = b.get(&idp_logout).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let back = location(&r);
    assert_eq!(back, format!("{}/auth/signed-out", s.gw.url));
    // ... with no state, so the gateway knows the destination itself.
    let r = b.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/goodbye");
    // Signed out at the gateway and at the IdP: the next sign-in shows the form again.
    let r = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = b
        .get(format!("{}/auth/login", s.gw.url))
        .send()
        .await
        .unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the IdP session ended too");
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test]
async fn a_user_without_email_signs_in_and_calls_apis() {
    let s = dev_stack().await;
    let b = browser();
    assert_eq!(
        dev_login(&b, &s.gw.url, "bob", "/api/hello").await,
        "/api/hello"
    );
    let user: Value = b
        .get(format!("{}/auth/user", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(user["sub"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(user["claims"]["cognito:username"], "bob");
    assert!(user["claims"].get("email").is_none(), "{user}");
    assert!(user["claims"].get("cognito:groups").is_none(), "{user}");
    assert_eq!(user["claims"]["token_use"], "id");
    let r = b
        .get(format!("{}/api/hello", s.gw.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["verified"], true,
        "the upstream verified the access token"
    );
    assert_eq!(body["claims"]["token_use"], "access");
    assert_eq!(body["claims"]["username"], "bob");
}

#[tokio::test]
async fn groups_claims_and_scopes_drive_route_policies() {
    let s = dev_stack().await;
    let alice = browser();
    dev_login(&alice, &s.gw.url, "alice", "/").await;
    let bob = browser();
    dev_login(&bob, &s.gw.url, "bob", "/").await;
    let carol = browser();
    dev_login(&carol, &s.gw.url, "carol", "/").await;
    let get = |b: &reqwest::Client, path: &str, accept: &'static str| {
        b.get(format!("{}{path}", s.gw.url))
            .header("accept", accept)
            .send()
    };

    // alice: in "admins", tenant acme.
    let r = get(&alice, "/admin/users", "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.upstream.last().uri, "/admin/users");

    // bob: no groups at all. An API call gets 403 JSON naming the group...
    let before = s.upstream.count();
    let r = get(&bob, "/admin/users", "application/json").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains(r#"group "admins""#), "{msg}");
    assert!(msg.contains(r#"claim "custom:tenant""#), "{msg}");
    assert!(
        !msg.contains("acme"),
        "the required value is not disclosed: {msg}"
    );
    // ... and a navigation an HTML page saying the same.
    let r = get(&bob, "/admin/users", "text/html").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap().starts_with("text/html")));
    let page = html_unescape(&r.text().await.unwrap());
    assert!(page.contains(r#"group "admins""#), "{page}");
    assert_eq!(
        s.upstream.count(),
        before,
        "denied requests never reach the upstream"
    );

    // carol: in a group, but not "admins", and another tenant.
    let r = get(&carol, "/admin/", "application/json").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"group "admins""#) && msg.contains("custom:tenant"),
        "{msg}"
    );

    // Scopes come from the access token Cognito issued: "profile" was granted, "orders:write" not.
    let r = get(&bob, "/profile/", "application/json").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get(&alice, "/orders/1", "application/json").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(r#"scope "orders:write""#));

    // Not signed in: still 401 (authentication comes before authorization).
    let r = get(&browser(), "/admin/users", "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

// ------------------------------------------------- minted Cognito tokens ---

const REGION: &str = "local-1";
const POOL: &str = "local-1_minted";
const CLIENT: &str = "minted-client";

fn issuer() -> String {
    format!("https://cognito-idp.{REGION}.amazonaws.com/{POOL}")
}

/// A Cognito stand-in whose keys the test holds: a JWKS with two keys (ID
/// tokens and access tokens are signed under different `kid`s, as Cognito
/// does) and a token endpoint that answers with what the test queued.
struct MintedCognito {
    url: String,
    id_key: TestKey,
    access_key: TestKey,
    next: Arc<Mutex<Option<Value>>>,
}

impl MintedCognito {
    async fn start() -> MintedCognito {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let id_key = TestKey::es256("cognito-id-kid");
        let access_key = TestKey::es256("cognito-access-kid");
        let jwks = json!({ "keys": [id_key.jwk.clone(), access_key.jwk.clone()] });
        let next: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
        let app = Router::new()
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    let jwks = jwks.clone();
                    async move { Json(jwks) }
                }),
            )
            .route(
                "/oauth2/token",
                post(|State(next): State<Arc<Mutex<Option<Value>>>>| async move {
                    match next.lock().unwrap().take() {
                        Some(body) => Json(body).into_response(),
                        None => (
                            http::StatusCode::BAD_REQUEST,
                            Json(json!({"error": "invalid_grant"})),
                        )
                            .into_response(),
                    }
                }),
            )
            .route("/oauth2/revoke", post(|| async { "" }))
            .with_state(next.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MintedCognito {
            url,
            id_key,
            access_key,
            next,
        }
    }
}

fn id_claims(nonce: &str) -> Value {
    let now = now();
    json!({
        "sub": "6f1c2a52-8f4e-4c7e-9a0e-3b1d2c4e5f60",
        "cognito:groups": ["admins"],
        "email_verified": "true",
        "iss": issuer(),
        "cognito:username": "dana",
        "custom:tenant": "acme",
        "nonce": nonce,
        "aud": CLIENT,
        "token_use": "id",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": "id-jti",
    })
}

fn access_claims() -> Value {
    let now = now();
    json!({
        "sub": "6f1c2a52-8f4e-4c7e-9a0e-3b1d2c4e5f60",
        "cognito:groups": ["admins"],
        "iss": issuer(),
        "version": 2,
        "client_id": CLIENT,
        "token_use": "access",
        "scope": "openid profile orders:write",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": "access-jti",
        "username": "dana",
    })
}

/// How one sign-in's tokens are made from the genuine claims.
struct Mint {
    name: &'static str,
    id: fn(&mut Value),
    access: fn(&mut Value),
    /// Which key signs the access token: 'a' its own, 'i' the ID key, 'x' the
    /// access key under the ID key's kid.
    access_signer: char,
    /// Put the ID token where the access token goes, and the reverse.
    swap: bool,
    accepted: bool,
}

fn nothing(_: &mut Value) {}

async fn minted_gateway(cognito: &MintedCognito, upstream: &Upstream) -> Gateway {
    let reserved = reserve().await;
    let toml = format!(
        r#"
[server]
public_url = "{gw}"

[provider]
cognito = {{ region = "{REGION}", user_pool_id = "{POOL}", domain = "{idp}" }}
jwks_url = "{idp}/.well-known/jwks.json"
client_id = "{CLIENT}"
insecure_allow_http = true

[session]
keys = ["{key}"]

[[route]]
path = "/tenant/"
upstream = "{up}"
csrf = false
allow_groups = ["admins"]
require_claims = {{ "custom:tenant" = "acme", email_verified = true }}

[[route]]
path = "/orders/"
upstream = "{up}"
csrf = false
require_scopes = ["orders:write"]
"#,
        gw = reserved.url,
        idp = cognito.url,
        up = upstream.url,
        key = test_key(),
    );
    Gateway::start(reserved, &toml).await
}

/// Runs one sign-in whose token response holds `m`'s tokens. Returns the
/// browser when the gateway accepted them (a session cookie was set).
async fn sign_in_minted(
    cognito: &MintedCognito,
    gw: &Gateway,
    m: &Mint,
) -> Option<reqwest::Client> {
    let b = browser();
    let r = b
        .get(format!("{}/auth/login", gw.url))
        .send()
        .await
        .unwrap();
    let authorize = location(&r);
    let state = param(&authorize, "state").unwrap();
    let nonce = param(&authorize, "nonce").unwrap();
    let mut id = id_claims(&nonce);
    (m.id)(&mut id);
    let mut access = access_claims();
    (m.access)(&mut access);
    let id_token = cognito.id_key.sign(&id);
    let access_token = match m.access_signer {
        'a' => cognito.access_key.sign(&access),
        'i' => cognito.id_key.sign(&access),
        _ => {
            let mut forged = cognito.access_key.clone();
            forged.kid = cognito.id_key.kid.clone();
            forged.sign(&access)
        }
    };
    let (id_token, access_token) = if m.swap {
        (access_token, id_token)
    } else {
        (id_token, access_token)
    };
    // Cognito's token response: no scope, the ID and access token, a refresh token.
    *cognito.next.lock().unwrap() = Some(json!({
        "id_token": id_token,
        "access_token": access_token,
        "refresh_token": "opaque-refresh",
        "expires_in": 3600,
        "token_type": "Bearer",
    }));
    let r = b
        .get(format!(
            "{}/auth/callback?code=minted-code&state={state}",
            gw.url
        ))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie_value(&r, "oidc_bff").filter(|v| !v.is_empty());
    match cookie {
        Some(_) => {
            assert!(
                r.status() == 200 || r.status() == 302,
                "{}: {}",
                m.name,
                r.status()
            );
            Some(b)
        }
        None => {
            assert!(
                r.status().is_client_error(),
                "{}: refused with {}",
                m.name,
                r.status()
            );
            None
        }
    }
}

#[tokio::test]
async fn cognito_tokens_are_accepted_or_refused_by_token_use_client_id_and_aud() {
    let cognito = MintedCognito::start().await;
    let upstream = Upstream::start(None).await;
    let gw = minted_gateway(&cognito, &upstream).await;
    let cases = [
        Mint {
            name: "genuine ID and access tokens, different kids",
            id: nothing,
            access: nothing,
            access_signer: 'a',
            swap: false,
            accepted: true,
        },
        Mint {
            name: "access token signed under the ID token's key",
            id: nothing,
            access: nothing,
            access_signer: 'i',
            swap: false,
            accepted: true,
        },
        Mint {
            name: "no email anywhere",
            id: |c| {
                c.as_object_mut().unwrap().remove("email_verified");
            },
            access: nothing,
            access_signer: 'a',
            swap: false,
            accepted: true,
        },
        Mint {
            name: "ID and access token swapped",
            id: nothing,
            access: nothing,
            access_signer: 'a',
            swap: true,
            accepted: false,
        },
        Mint {
            name: "ID token says token_use access",
            id: |c| c["token_use"] = json!("access"),
            access: nothing,
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token says token_use id",
            id: nothing,
            access: |c| c["token_use"] = json!("id"),
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token without token_use",
            id: nothing,
            access: |c| {
                c.as_object_mut().unwrap().remove("token_use");
            },
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token of another app client",
            id: nothing,
            access: |c| c["client_id"] = json!("other-client"),
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token without client_id",
            id: nothing,
            access: |c| {
                c.as_object_mut().unwrap().remove("client_id");
            },
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token with another aud",
            id: nothing,
            access: |c| c["aud"] = json!("other-client"),
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "ID token for another audience",
            id: |c| c["aud"] = json!("other-client"),
            access: nothing,
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "ID token without aud",
            id: |c| {
                c.as_object_mut().unwrap().remove("aud");
            },
            access: nothing,
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token from another pool",
            id: nothing,
            access: |c| c["iss"] = json!("https://cognito-idp.local-1.amazonaws.com/local-1_other"),
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "expired access token",
            id: nothing,
            access: |c| {
                c["exp"] = json!(now() - 3600);
            },
            access_signer: 'a',
            swap: false,
            accepted: false,
        },
        Mint {
            name: "access token whose kid names the other key",
            id: nothing,
            access: nothing,
            access_signer: 'x',
            swap: false,
            accepted: false,
        },
    ];
    let mut failures = Vec::new();
    for m in &cases {
        let before = gw.session_count();
        let got = sign_in_minted(&cognito, &gw, m).await.is_some();
        if got != m.accepted {
            failures.push(format!("{}: accepted = {got}, want {}", m.name, m.accepted));
        }
        if !m.accepted && gw.session_count() != before {
            failures.push(format!("{}: a session was created", m.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn cognito_claims_drive_policies_after_sign_in() {
    let cognito = MintedCognito::start().await;
    let upstream = Upstream::start(None).await;
    let gw = minted_gateway(&cognito, &upstream).await;
    let call = |b: reqwest::Client, path: &'static str| {
        let url = format!("{}{path}", gw.url);
        async move {
            let r = b.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["message"].as_str().unwrap_or("").to_string())
        }
    };
    let sign_in = |id: fn(&mut Value), access: fn(&mut Value)| {
        let m = Mint {
            name: "policy",
            id,
            access,
            access_signer: 'a',
            swap: false,
            accepted: true,
        };
        let (cognito, gw) = (&cognito, &gw);
        async move { sign_in_minted(cognito, gw, &m).await.expect("signed in") }
    };

    // custom:tenant acme, in admins, email_verified "true" (a string), orders:write granted.
    let b = sign_in(nothing, nothing).await;
    assert_eq!(call(b.clone(), "/tenant/x").await.0, 200);
    assert_eq!(call(b, "/orders/1").await.0, 200);

    let b = sign_in(|c| c["custom:tenant"] = json!("globex"), nothing).await;
    let (status, msg) = call(b, "/tenant/x").await;
    assert_eq!(
        (status, msg.contains(r#"claim "custom:tenant""#)),
        (403, true),
        "{msg}"
    );

    let b = sign_in(|c| c["email_verified"] = json!(true), nothing).await;
    assert_eq!(
        call(b, "/tenant/x").await.0,
        200,
        "a boolean email_verified works as well"
    );

    let b = sign_in(|c| c["email_verified"] = json!("false"), nothing).await;
    assert_eq!(call(b, "/tenant/x").await.0, 403);

    let b = sign_in(|c| c["cognito:groups"] = json!(["staff"]), nothing).await;
    let (status, msg) = call(b, "/tenant/x").await;
    assert_eq!(
        (status, msg.contains(r#"group "admins""#)),
        (403, true),
        "{msg}"
    );

    // Scopes are read from the verified access token (Cognito's token response has none).
    let b = sign_in(nothing, |c| c["scope"] = json!("openid profile")).await;
    let (status, msg) = call(b, "/orders/1").await;
    assert_eq!(
        (status, msg.contains(r#"scope "orders:write""#)),
        (403, true),
        "{msg}"
    );
}
