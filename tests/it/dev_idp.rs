//! The development IdP on its own, driven like a browser and a client would:
//! the OAuth errors the specs require (RFC 6749 §4.1.2.1, §5.2; RFC 7636),
//! Cognito's token shapes verified against its JWKS, refresh and revocation,
//! `/logout`'s exact logout URIs, and the loopback-only rule.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oidc_bff::clock::{Clock, TestClock};
use oidc_bff::demo::dev_idp::{self, DevIdpConfig, DevIdpHandle};
use reqwest::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use reqwest::{redirect::Policy, Client, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::net::TcpListener;
use url::Url;

const GATEWAY: &str = "http://127.0.0.1:18080";
const REDIRECT_URI: &str = "http://127.0.0.1:18080/auth/callback";
const LOGOUT_URI: &str = "http://127.0.0.1:18080/auth/signed-out";
const CLIENT: &str = "demo-spa";
const SECRET: &str = "demo-spa-secret";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-dev-idp-test";

struct Idp {
    handle: DevIdpHandle,
    http: Client,
}

fn demo_config() -> DevIdpConfig {
    DevIdpConfig::demo(None, &Url::parse(GATEWAY).unwrap())
}

fn browser() -> Client {
    oidc_bff::install_crypto_provider();
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn start(config: DevIdpConfig) -> Idp {
    start_on(config, Clock::system()).await
}

/// A dev IdP whose time is `clock` (a [`TestClock`]'s, to let codes expire).
async fn start_on(config: DevIdpConfig, clock: Clock) -> Idp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = dev_idp::start_with_clock(config, listener, clock)
        .await
        .expect("dev IdP starts");
    Idp {
        handle,
        http: browser(),
    }
}

fn challenge(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn location(resp: &reqwest::Response) -> Option<Url> {
    let loc = resp.headers().get(LOCATION)?.to_str().ok()?;
    Url::parse(loc)
        .ok()
        .or_else(|| Url::parse("http://idp.invalid").ok()?.join(loc).ok())
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Idp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    fn authorize_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", CLIENT.into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", "openid email profile".into()),
            ("state", "st-123".into()),
            ("nonce", "n-456".into()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".into()),
        ]
    }

    async fn authorize(&self, params: &[(&str, String)]) -> reqwest::Response {
        self.authorize_in(&self.http, params).await
    }

    async fn authorize_in(&self, browser: &Client, params: &[(&str, String)]) -> reqwest::Response {
        browser
            .get(self.url("/oauth2/authorize"))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// Opens the login page, checks it, and posts its form with these credentials.
    async fn login_with(
        &self,
        params: &[(&str, String)],
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.login_in(&self.http, params, username, password).await
    }

    async fn login_in(
        &self,
        browser: &Client,
        params: &[(&str, String)],
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let page = self.authorize_in(browser, params).await;
        assert_eq!(page.status(), StatusCode::OK, "login page");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("Development IdP — not for production"),
            "banner"
        );
        assert!(html.contains("for local development only"));
        let action = regex::Regex::new(r#"<form method="post" action="([^"]+)""#)
            .unwrap()
            .captures(&html)
            .expect("a login form")[1]
            .to_string();
        let hidden =
            regex::Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)">"#).unwrap();
        let mut form: Vec<(String, String)> = hidden
            .captures_iter(&html)
            .map(|c| (c[1].to_string(), html_unescape(&c[2])))
            .collect();
        for (k, v) in params {
            assert!(
                form.iter().any(|(fk, fv)| fk == k && fv == v),
                "the form carries {k}"
            );
        }
        form.push(("username".into(), username.into()));
        form.push(("password".into(), password.into()));
        browser
            .post(self.url(&action))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Signs in (in the shared browser) and returns the authorization code.
    async fn code_for(&self, username: &str, password: &str) -> String {
        self.code_in(&self.http, username, password).await
    }

    /// Signs in with this browser (its own cookie jar, so no IdP session yet).
    async fn code_in(&self, browser: &Client, username: &str, password: &str) -> String {
        let resp = self
            .login_in(browser, &self.authorize_params(), username, password)
            .await;
        assert_eq!(resp.status(), StatusCode::FOUND, "login redirects");
        let to = location(&resp).expect("a Location");
        assert!(to.as_str().starts_with(REDIRECT_URI), "{to}");
        assert_eq!(query_param(&to, "state").as_deref(), Some("st-123"));
        assert_eq!(query_param(&to, "iss"), None, "Cognito sends no iss");
        query_param(&to, "code").expect("a code")
    }

    async fn token_basic(
        &self,
        form: &[(&str, &str)],
        secret: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = self
            .http
            .post(self.url("/oauth2/token"))
            .basic_auth(CLIENT, Some(secret))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn redeem(&self, code: &str, redirect_uri: &str, verifier: &str) -> (StatusCode, Value) {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let (status, _, body) = self.token_basic(&form, SECRET).await;
        (status, body)
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .token_basic(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
                SECRET,
            )
            .await;
        (status, body)
    }

    async fn jwks(&self) -> JwkSet {
        self.http
            .get(self.handle.jwks_url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Verifies a token's signature with the published JWKS and its `iss`
    /// (and `aud` when given), returning the claims and the `kid`.
    async fn verify(&self, token: &str, audience: Option<&str>) -> (Value, String) {
        let kid = jsonwebtoken::decode_header(token)
            .unwrap()
            .kid
            .expect("a kid");
        let jwks = self.jwks().await;
        let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[&self.handle.issuer]);
        match audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            }
            None => {
                v.validate_aud = false;
                v.set_required_spec_claims(&["exp", "iss", "sub"]);
            }
        }
        let data = jsonwebtoken::decode::<Value>(token, &key, &v)
            .expect("the token verifies with the JWKS");
        (data.claims, kid)
    }
}

fn assert_oauth_error(status: StatusCode, body: &Value, want_status: StatusCode, want_error: &str) {
    assert_eq!(status, want_status, "status for {body}");
    assert_eq!(body["error"], want_error, "error code in {body}");
}

#[tokio::test]
async fn alice_gets_cognito_shaped_tokens() {
    let idp = start(demo_config()).await;
    assert_eq!(
        idp.handle.issuer,
        "https://cognito-idp.local-1.amazonaws.com/local-1_devpool"
    );

    let disco: Value = idp
        .http
        .get(idp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], idp.handle.issuer.as_str());
    assert_eq!(disco["token_endpoint"], idp.url("/oauth2/token"));
    assert_eq!(
        disco["authorization_endpoint"],
        idp.url("/oauth2/authorize")
    );
    assert_eq!(disco["userinfo_endpoint"], idp.url("/oauth2/userInfo"));
    assert_eq!(disco["revocation_endpoint"], idp.url("/oauth2/revoke"));
    assert_eq!(disco["jwks_uri"], idp.handle.jwks_url().as_str());
    assert_eq!(
        disco["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );

    let code = idp.code_for("alice", "alice-password").await;
    let (status, headers, body) = idp
        .token_basic(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", VERIFIER),
            ],
            SECRET,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers.get(CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());

    let id_token = body["id_token"].as_str().expect("an ID token");
    let (id, id_kid) = idp.verify(id_token, Some(CLIENT)).await;
    assert_eq!(id["aud"], CLIENT);
    assert_eq!(id["token_use"], "id");
    assert_eq!(id["cognito:username"], "alice");
    assert_eq!(id["cognito:groups"], serde_json::json!(["admins"]));
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["custom:tenant"], "acme");
    assert!(id["auth_time"].is_u64() && id["iat"].is_u64());
    let sub = id["sub"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(sub).is_ok(),
        "sub looks like a UUID: {sub}"
    );

    let access_token = body["access_token"].as_str().unwrap();
    let (access, access_kid) = idp.verify(access_token, None).await;
    assert!(
        access.get("aud").is_none(),
        "Cognito access tokens have no aud: {access}"
    );
    assert_eq!(access["client_id"], CLIENT);
    assert_eq!(access["token_use"], "access");
    assert_eq!(access["scope"], "openid email profile");
    assert_eq!(access["username"], "alice");
    assert_eq!(access["sub"], sub);
    assert_eq!(access["cognito:groups"], serde_json::json!(["admins"]));
    assert!(access["jti"].is_string() && access["auth_time"] == id["auth_time"]);
    assert_ne!(
        id_kid, access_kid,
        "ID and access tokens use different keys, like Cognito"
    );

    // An ID token does not verify as an access token of the other key.
    let wrong = jsonwebtoken::decode::<Value>(
        id_token,
        &DecodingKey::from_jwk(idp.jwks().await.find(&access_kid).unwrap()).unwrap(),
        &Validation::new(Algorithm::RS256),
    );
    assert!(wrong.is_err());

    let info = idp
        .http
        .get(idp.url("/oauth2/userInfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["sub"], sub);
    assert_eq!(info["username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["email_verified"], "true", "Cognito's string boolean");

    // The ID token is not accepted where an access token is needed.
    let info = idp
        .http
        .get(idp.url("/oauth2/userInfo"))
        .bearer_auth(id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::UNAUTHORIZED);
    assert!(info.headers().get(WWW_AUTHENTICATE).is_some());
}

#[tokio::test]
async fn bob_has_no_groups_and_no_email() {
    let idp = start(demo_config()).await;
    let code = idp.code_for("bob", "bob-password").await;
    // client_secret_post this time.
    let resp = idp
        .http
        .post(idp.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let (id, _) = idp
        .verify(body["id_token"].as_str().unwrap(), Some(CLIENT))
        .await;
    assert_eq!(id["cognito:username"], "bob");
    assert!(
        id.get("cognito:groups").is_none(),
        "no groups claim without groups: {id}"
    );
    assert!(
        id.get("email").is_none() && id.get("email_verified").is_none(),
        "{id}"
    );
    let (access, _) = idp
        .verify(body["access_token"].as_str().unwrap(), None)
        .await;
    assert_eq!(access["username"], "bob");
    assert!(access.get("cognito:groups").is_none());
    let info: Value = idp
        .http
        .get(idp.url("/oauth2/userInfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["username"], "bob");
    assert!(info.get("email").is_none() && info.get("email_verified").is_none());
}

#[tokio::test]
async fn wrong_password_rerenders_the_form_without_telling_which_part_was_wrong() {
    let idp = start(demo_config()).await;
    let params = idp.authorize_params();
    let mut pages = Vec::new();
    for (user, pass) in [("alice", "nope"), ("mallory", "alice-password")] {
        let resp = idp.login_with(&params, user, pass).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "no redirect on a wrong password"
        );
        assert!(resp.headers().get(LOCATION).is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("Incorrect username or password."));
        pages.push(html.replace(&format!("value=\"{user}\""), "value=\"USER\""));
    }
    assert_eq!(
        pages[0], pages[1],
        "unknown user and wrong password look the same"
    );
}

#[tokio::test]
async fn pkce_mismatch_and_missing_verifier_are_invalid_grant() {
    let idp = start(demo_config()).await;
    let code = idp.code_for("alice", "alice-password").await;
    let other = "another-verifier-of-sufficient-length-0123456789";
    let (status, body) = idp.redeem(&code, REDIRECT_URI, other).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // The code had its one try.
    let (status, body) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    let code = idp.code_in(&browser(), "alice", "alice-password").await;
    let (status, _, body) = idp
        .token_basic(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ],
            SECRET,
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_reused_code_is_invalid_grant_and_revokes_its_tokens() {
    let idp = start(demo_config()).await;
    let code = idp.code_for("alice", "alice-password").await;
    let (status, first) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // RFC 6749 §4.1.2: tokens issued from a replayed code are revoked.
    let (status, body) = idp.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn an_unregistered_redirect_uri_or_client_gets_an_error_page_not_a_redirect() {
    let idp = start(demo_config()).await;
    let evil = [
        "https://evil.example/callback",
        "http://127.0.0.1:18080/auth/callback/../../evil",
        "http://127.0.0.1:18080/auth/callbackx",
        "http://127.0.0.1:18080/auth/callback?x=1",
        "HTTP://127.0.0.1:18080/auth/callback",
    ];
    for uri in evil {
        let mut params = idp.authorize_params();
        params.retain(|(k, _)| *k != "redirect_uri");
        params.push(("redirect_uri", uri.into()));
        let resp = idp.authorize(&params).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            resp.headers().get(LOCATION).is_none(),
            "never redirects to {uri}"
        );
        let html = resp.text().await.unwrap();
        assert!(html.contains("redirect_uri is not registered"), "{uri}");
        assert!(html.contains("for local development only"));
    }
    for client in ["unknown-client", ""] {
        let mut params = idp.authorize_params();
        params.retain(|(k, _)| *k != "client_id");
        params.push(("client_id", client.into()));
        let resp = idp.authorize(&params).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "client {client:?}");
        assert!(resp.headers().get(LOCATION).is_none());
    }
    // The same checks guard the form POST: hidden fields are browser input.
    let mut params = idp.authorize_params();
    params.retain(|(k, _)| *k != "redirect_uri");
    params.push(("redirect_uri", "https://evil.example/callback".into()));
    params.push(("username", "alice".into()));
    params.push(("password", "alice-password".into()));
    let resp = idp
        .http
        .post(idp.url("/login"))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn a_different_redirect_uri_at_the_token_endpoint_is_invalid_grant() {
    let mut config = demo_config();
    let second = "http://127.0.0.1:18080/other/callback";
    config.clients[0].redirect_uris.push(second.into());
    let idp = start(config).await;
    let code = idp.code_for("alice", "alice-password").await;
    let (status, body) = idp.redeem(&code, second, VERIFIER).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn other_authorize_errors_go_back_to_the_client_with_state() {
    let idp = start(demo_config()).await;
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("code_challenge", None, "invalid_request"),
        ("code_challenge_method", Some("plain"), "invalid_request"),
        ("code_challenge_method", None, "invalid_request"),
        ("response_type", Some("token"), "unsupported_response_type"),
        ("scope", Some("openid admin:everything"), "invalid_scope"),
    ];
    for (name, value, error) in cases {
        let mut params = idp.authorize_params();
        params.retain(|(k, _)| *k != name);
        if let Some(v) = value {
            params.push((name, v.into()));
        }
        let resp = idp.authorize(&params).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{name}={value:?}");
        let to = location(&resp).unwrap();
        assert!(to.as_str().starts_with(REDIRECT_URI));
        assert_eq!(
            query_param(&to, "error").as_deref(),
            Some(error),
            "{name}={value:?}"
        );
        assert_eq!(query_param(&to, "state").as_deref(), Some("st-123"));
        assert_eq!(query_param(&to, "code"), None);
    }
}

#[tokio::test]
async fn a_wrong_client_secret_is_401_invalid_client() {
    let idp = start(demo_config()).await;
    let code = idp.code_for("alice", "alice-password").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    let (status, headers, body) = idp.token_basic(&form, "wrong-secret").await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(
        headers.get(WWW_AUTHENTICATE).is_some(),
        "RFC 6749 §5.2 challenge"
    );

    let mut post = form.to_vec();
    post.push(("client_id", CLIENT));
    post.push(("client_secret", "wrong-secret"));
    let resp = idp
        .http
        .post(idp.url("/oauth2/token"))
        .form(&post)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_oauth_error(
        status,
        &resp.json().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );

    for (id, secret) in [("unknown-client", SECRET), (CLIENT, "")] {
        let resp = idp
            .http
            .post(idp.url("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert_oauth_error(
            status,
            &resp.json().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
    let resp = idp
        .http
        .post(idp.url("/oauth2/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_oauth_error(
        status,
        &resp.json().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );

    // Client authentication fails before the code is looked at: it still works.
    let (status, body) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let time = TestClock::new();
    let config = demo_config();
    let ttl = config.code_ttl;
    let idp = start_on(config, time.clock()).await;
    // Just inside its lifetime a code is redeemed ...
    let code = idp.code_for("alice", "alice-password").await;
    time.advance(ttl - Duration::from_secs(5));
    let (status, body) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... once it has passed, it is invalid_grant (a new browser: no IdP session yet).
    let code = idp.code_in(&browser(), "alice", "alice-password").await;
    time.advance(ttl + Duration::from_secs(1));
    let (status, body) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_works_until_the_refresh_token_is_revoked() {
    let idp = start(demo_config()).await;
    let code = idp.code_for("alice", "alice-password").await;
    let (_, first) = idp.redeem(&code, REDIRECT_URI, VERIFIER).await;
    let refresh_token = first["refresh_token"].as_str().unwrap();
    let (first_id, _) = idp
        .verify(first["id_token"].as_str().unwrap(), Some(CLIENT))
        .await;

    let (status, body) = idp.refresh(refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("refresh_token").is_none(),
        "no rotation, like Cognito's default"
    );
    assert_eq!(body["token_type"], "Bearer");
    let (id, _) = idp
        .verify(body["id_token"].as_str().unwrap(), Some(CLIENT))
        .await;
    assert!(
        id.get("nonce").is_none(),
        "refreshed ID tokens carry no nonce"
    );
    assert_eq!(id["auth_time"], first_id["auth_time"]);
    assert_eq!(id["sub"], first_id["sub"]);
    let (access, _) = idp
        .verify(body["access_token"].as_str().unwrap(), None)
        .await;
    assert_eq!(access["token_use"], "access");
    let access_token = body["access_token"].as_str().unwrap().to_string();

    // Another client cannot revoke or use it; an unknown token revokes "fine" (RFC 7009 §2.2).
    let resp = idp
        .http
        .post(idp.url("/oauth2/revoke"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = idp
        .http
        .post(idp.url("/oauth2/revoke"))
        .basic_auth(CLIENT, Some("wrong"))
        .form(&[("token", refresh_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = idp.refresh(refresh_token).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a failed revocation revokes nothing"
    );

    let resp = idp
        .http
        .post(idp.url("/oauth2/revoke"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("token", refresh_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = idp.refresh(refresh_token).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = idp.refresh("never-issued").await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    // Like Cognito, the access tokens of a revoked sign-in stop working at userInfo.
    let resp = idp
        .http
        .get(idp.url("/oauth2/userInfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_redirects_only_to_a_registered_logout_uri() {
    let idp = start(demo_config()).await;
    // Signed in: a second authorize skips the form (the IdP's own session).
    idp.code_for("alice", "alice-password").await;
    let resp = idp.authorize(&idp.authorize_params()).await;
    assert_eq!(
        resp.status(),
        StatusCode::FOUND,
        "single sign-on while the IdP session lives"
    );
    assert!(query_param(&location(&resp).unwrap(), "code").is_some());

    for (client, uri) in [
        (CLIENT, "https://evil.example/"),
        (CLIENT, "http://127.0.0.1:18080/auth/signed-out/x"),
        (CLIENT, REDIRECT_URI),
        ("unknown-client", LOGOUT_URI),
    ] {
        let resp = idp
            .http
            .get(idp.url("/logout"))
            .query(&[("client_id", client), ("logout_uri", uri)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{client} {uri}");
        assert!(
            resp.headers().get(LOCATION).is_none(),
            "no redirect to {uri}"
        );
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("for local development only"));
    }
    let resp = idp
        .http
        .get(idp.url("/logout"))
        .query(&[("client_id", CLIENT)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Still signed in after the refused logouts.
    let resp = idp.authorize(&idp.authorize_params()).await;
    assert_eq!(resp.status(), StatusCode::FOUND);

    let resp = idp
        .http
        .get(idp.url("/logout"))
        .query(&[
            ("client_id", CLIENT),
            ("logout_uri", LOGOUT_URI),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers().get(LOCATION).unwrap(),
        LOGOUT_URI,
        "exactly the logout_uri, no state"
    );
    let cleared = resp.headers().get_all(SET_COOKIE).iter().any(|c| {
        c.to_str().unwrap().starts_with("dev_idp_session=;")
            && c.to_str().unwrap().contains("Max-Age=0")
    });
    assert!(cleared, "the IdP session cookie is cleared");

    // Signed out: the login form again.
    let resp = idp.authorize(&idp.authorize_params()).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn prompt_login_shows_the_form_despite_a_session() {
    let idp = start(demo_config()).await;
    idp.code_for("alice", "alice-password").await;
    let mut params = idp.authorize_params();
    params.push(("prompt", "login".into()));
    assert_eq!(idp.authorize(&params).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_unless_allowed() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = dev_idp::start(demo_config(), listener)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--insecure-listen-any"), "{err}");

    let mut config = demo_config();
    config.listen = "0.0.0.0:0".parse().unwrap();
    let err = dev_idp::run(config.clone())
        .await
        .err()
        .expect("refused before binding");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    config.insecure_listen_any = true;
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let handle = dev_idp::start(config, listener)
        .await
        .expect("allowed when told");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_gets_oauth_errors_never_a_crash() {
    let idp = start(demo_config()).await;
    let token_url = idp.url("/oauth2/token");
    let huge = "x".repeat(10_000);
    let bodies: Vec<(String, &str)> = vec![
        (
            "grant_type=authorization_code&grant_type=refresh_token".into(),
            "invalid_request",
        ),
        (
            "grant_type=password&username=alice&password=alice-password".into(),
            "unsupported_grant_type",
        ),
        ("".into(), "invalid_request"),
        (
            format!("grant_type=authorization_code&code={huge}&redirect_uri=x&code_verifier=y"),
            "invalid_request",
        ),
        (
            "grant_type=authorization_code&code=%ZZ%00&redirect_uri=%FF&code_verifier=%".into(),
            "invalid_grant",
        ),
        ("grant_type=refresh_token".into(), "invalid_request"),
        ("\u{0}\u{1}&&==&=".into(), "invalid_request"),
    ];
    for (body, error) in bodies {
        let resp = idp
            .http
            .post(&token_url)
            .basic_auth(CLIENT, Some(SECRET))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let json: Value = resp.json().await.unwrap();
        assert_oauth_error(status, &json, StatusCode::BAD_REQUEST, error);
    }
    let resp = idp
        .http
        .post(&token_url)
        .basic_auth(CLIENT, Some(SECRET))
        .json(&serde_json::json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = idp
        .http
        .post(&token_url)
        .header(AUTHORIZATION, "Basic %%%not-base64")
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = idp
        .http
        .post(&token_url)
        .body(vec![b'a'; 200_000])
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_client_error(),
        "oversized body: {}",
        resp.status()
    );

    for query in [
        "%ZZ&&==&client_id",
        "client_id=demo-spa&client_id=demo-spa",
        &format!("client_id={huge}"),
    ] {
        let resp = idp
            .http
            .get(format!("{}?{query}", idp.url("/oauth2/authorize")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(resp.headers().get(LOCATION).is_none());
    }
    for token in ["garbage", "a.b.c", &huge] {
        let resp = idp
            .http
            .get(idp.url("/oauth2/userInfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = idp
        .http
        .get(idp.url("/oauth2/userInfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = idp.http.get(idp.url("/no/such/page")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// A client-credentials request for `client` with `secret` and `form` extras.
async fn machine_token(
    idp: &Idp,
    client: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let resp = idp
        .http
        .post(idp.url("/oauth2/token"))
        .basic_auth(client, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_machine_client_gets_cognito_m2m_tokens() {
    let idp = start(demo_config()).await;
    let (status, body) = machine_token(&idp, "demo-machine", "demo-machine-secret", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|n| n > 0));
    assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none());
    let (claims, _) = idp
        .verify(body["access_token"].as_str().unwrap(), None)
        .await;
    // Cognito's M2M shape: the client is the subject, no user at all.
    assert_eq!(claims["sub"], "demo-machine");
    assert_eq!(claims["client_id"], "demo-machine");
    assert_eq!(claims["token_use"], "access");
    assert_eq!(claims["scope"], "echo/read");
    assert!(claims.get("aud").is_none());
    for user_claim in ["username", "cognito:groups", "email", "cognito:username"] {
        assert!(claims.get(user_claim).is_none(), "{user_claim} in {claims}");
    }
    // The scope asked for explicitly.
    let (status, body) = machine_token(
        &idp,
        "demo-machine",
        "demo-machine-secret",
        &[("scope", "echo/read")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn client_credentials_refusals() {
    let idp = start(demo_config()).await;
    // The sign-in client may not (Cognito: not on a code-flow client).
    let (status, body) = machine_token(&idp, CLIENT, SECRET, &[]).await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    // A wrong secret, a scope not granted, an empty scope.
    let (status, body) = machine_token(&idp, "demo-machine", "wrong", &[]).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    for scope in ["echo/write", "openid", "echo/read openid", " "] {
        let (status, body) = machine_token(
            &idp,
            "demo-machine",
            "demo-machine-secret",
            &[("scope", scope)],
        )
        .await;
        assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");
    }
    // The machine client cannot sign users in.
    let mut params = idp.authorize_params();
    for p in params.iter_mut() {
        if p.0 == "client_id" {
            p.1 = "demo-machine".into();
        }
    }
    let r = idp.authorize(&params).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none(), "no redirect");
}

#[test]
fn machine_clients_are_validated_as_cognito_would() {
    let base = "[[client]]\nclient_id = \"m\"\n";
    for (extra, want) in [
        (
            "client_secret = \"s\"\nallowed_flows = [\"code\", \"client_credentials\"]\nredirect_uris = [\"http://127.0.0.1/cb\"]\nallowed_scopes = [\"a/b\"]\n",
            "allowed_flows",
        ),
        (
            "allowed_flows = [\"client_credentials\"]\nallowed_scopes = [\"a/b\"]\n",
            "client_secret",
        ),
        (
            "client_secret = \"s\"\nallowed_flows = [\"client_credentials\"]\nallowed_scopes = [\"openid\"]\n",
            "allowed_scopes",
        ),
        ("client_secret = \"s\"\nallowed_flows = [\"implicit\"]\n", "allowed_flows"),
        ("client_secret = \"s\"\n", "redirect_uris"),
    ] {
        let err = DevIdpConfig::from_toml_str(&format!("{base}{extra}"))
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra}"))
            .to_string();
        assert!(err.contains(&format!("client[0].{want}")), "{extra}: {err}");
    }
    let ok = DevIdpConfig::from_toml_str(&format!(
        "{base}client_secret = \"s\"\nallowed_flows = [\"client_credentials\"]\nallowed_scopes = [\"a/b\"]\n"
    ));
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
}
