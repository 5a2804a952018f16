//! Forward-auth (`/auth/check`): real nginx (Debian's, with `auth_request`)
//! in front of an upstream, with oidc-bff as the auth service and the
//! development IdP as Cognito, using the nginx config from
//! docs/forward-auth.md as written (only addresses and TLS swapped for the
//! test's); then the Traefik ForwardAuth request shape, in-process.

use crate::cognito::{cognito_toml, dev_login, start_dev_idp};
use crate::harness::*;
use serde_json::Value;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROUTES: &str = r#"
[[route]]
path = "/app/"
upstream = "UPSTREAM"
csrf = false
token = "access"

[[route]]
path = "/app/admin/"
upstream = "UPSTREAM"
csrf = false
allow_groups = ["admins"]

[[route]]
path = "/public/"
upstream = "UPSTREAM"
auth = "public"

[[route]]
path = "/api/"
upstream = "UPSTREAM"
auth = "bearer"
allow_groups = ["admins"]
"#;

/// The first fenced block tagged `fence` (e.g. "nginx", "yaml") under the
/// `heading` line (e.g. "### Traefik (ForwardAuth)") of docs/forward-auth.md,
/// before the next heading: the documented example, as written.
pub(crate) fn forward_auth_doc_example(heading: &str, fence: &str) -> String {
    let path = repo_root().join("docs/forward-auth.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = doc.lines().skip_while(|l| *l != heading);
    assert!(
        lines.next().is_some(),
        "docs/forward-auth.md has no {heading:?} heading"
    );
    let open = format!("```{fence}");
    let mut block: Option<Vec<&str>> = None;
    let mut in_other_block = false;
    for line in lines {
        if let Some(b) = block.as_mut() {
            if line == "```" {
                return b.join("\n");
            }
            b.push(line);
        } else if in_other_block {
            in_other_block = !line.starts_with("```");
        } else if line == open {
            block = Some(Vec::new());
        } else if line.starts_with("```") {
            in_other_block = true;
        } else if line.starts_with('#') {
            // A heading outside any code block: the section ended.
            break;
        }
    }
    panic!("{heading:?} in docs/forward-auth.md has no complete ```{fence} block");
}

/// The nginx example of docs/forward-auth.md.
fn documented_nginx_example() -> String {
    forward_auth_doc_example("### nginx (`auth_request`)", "nginx")
}

fn nginx_binary() -> String {
    for candidate in ["/usr/sbin/nginx", "nginx"] {
        let ok = Command::new(candidate)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!("cannot run nginx: install nginx (scripts/test does)");
}

/// nginx in the foreground with everything in a scratch directory. Stopped
/// (`kill -QUIT`, a graceful stop) on drop.
struct Nginx {
    child: Child,
    dir: ScratchDir,
    url: String,
}

impl Nginx {
    /// Serves on `listener`, handed over as nginx's binary upgrade does
    /// (`NGINX=3;`): the port was bound before the gateway's config named
    /// it and is never free for anyone else to take.
    fn start(listener: std::net::TcpListener, server_config: &str) -> Nginx {
        let port = listener.local_addr().unwrap().port();
        let bin = nginx_binary();
        let dir = ScratchDir::new("nginx");
        let d = dir.0.display().to_string();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/client_body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n{server_config}\n}}\n"
        );
        let conf_path = dir.write("nginx.conf", &conf);
        let mut cmd = Command::new(&bin);
        cmd.args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
            .arg(&conf_path)
            .env("NGINX", "3;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        pass_sockets(&mut cmd, &[listener.as_fd()]);
        let child = cmd.spawn().expect("cannot start nginx");
        // nginx holds the port now; ours must close.
        drop(listener);
        let mut n = Nginx {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        // The socket accepts connections before nginx runs: its log says when it serves.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = n.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = n.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!(
                    "nginx exited at start ({status}): {err}\n{}\nconfig:\n{conf}",
                    n.error_log()
                );
            }
            if n.error_log().contains("start worker process ") {
                return n;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx did not start on {port}: {}", n.error_log());
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_upstream() {
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let gateway_addr = reserved.url.trim_start_matches("http://").to_string();
    let nginx_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nginx_port = nginx_listener.local_addr().unwrap().port();
    let public = format!("http://127.0.0.1:{nginx_port}");
    // The browser sees one origin, nginx's: the gateway's public_url is nginx's URL.
    let idp = start_dev_idp(&public).await;
    let upstream_addr = upstream.url.trim_start_matches("http://").to_string();
    let toml = cognito_toml(
        &public,
        &idp,
        "trusted_proxies = [\"127.0.0.1/32\"]",
        &ROUTES.replace("UPSTREAM", &upstream.url),
    );
    let _gw = Gateway::start(reserved, &toml).await;

    let example = documented_nginx_example();
    for needle in [
        "listen 443 ssl;",
        "server oidc-bff:8080;",
        "server app:3000;",
    ] {
        assert!(
            example.contains(needle),
            "the nginx example in docs/forward-auth.md lost {needle:?}"
        );
    }
    let server_config: String = example
        .replace(
            "listen 443 ssl;",
            &format!("listen 127.0.0.1:{nginx_port};"),
        )
        .replace("server oidc-bff:8080;", &format!("server {gateway_addr};"))
        .replace("server app:3000;", &format!("server {upstream_addr};"))
        .lines()
        .filter(|l| !l.trim_start().starts_with("ssl_"))
        .collect::<Vec<_>>()
        .join("\n");
    let nginx = Nginx::start(nginx_listener, &server_config);
    let b = browser();

    // Not signed in: a navigation is sent to sign in, with where it was going...
    let r = b
        .get(format!("{}/app/reports?year=2026&q=a%20b", nginx.url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "nginx error log:\n{}", nginx.error_log());
    let login = location(&r);
    assert_eq!(
        login,
        "/auth/login?return_to=%2Fapp%2Freports%3Fyear%3D2026%26q%3Da%2520b"
    );
    // ... an API call gets 401 JSON, and the upstream saw nothing.
    let r = b
        .get(format!("{}/app/data", nginx.url))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(upstream.count(), 0);
    // Forward-auth itself is nginx's business only.
    let r = b
        .get(format!("{}/auth/check", nginx.url))
        .header("x-original-uri", "/app/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Signing in goes through nginx to the gateway (one origin) and lands back.
    let landed = crate::cognito::dev_sign_in(
        &b,
        &format!("{}{login}", nginx.url),
        "alice",
        "alice-password",
    )
    .await;
    let target = landing_page(landed).await;
    assert_eq!(target, "/app/reports?year=2026&q=a%20b");

    // The browser session passes; the upstream receives the identity headers,
    // not what the client claimed to be.
    let r = b
        .get(format!("{}{target}", nginx.url))
        .header("accept", "text/html")
        .header("x-auth-request-user", "mallory")
        .header("x-auth-request-groups", "admins,root")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "nginx error log:\n{}", nginx.error_log());
    let seen = upstream.last();
    assert_eq!(seen.uri, "/app/reports?year=2026&q=a%20b");
    let user: Value = b
        .get(format!("{}/auth/user", nginx.url))
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
    let claims = verify_with_jwks(idp.jwks_url().as_str(), bearer)
        .await
        .unwrap();
    assert_eq!(claims["token_use"], "access");

    // Route policy: alice is in "admins", bob is not.
    let r = b
        .get(format!("{}/app/admin/settings", nginx.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bob = browser();
    let landed = dev_login(&bob, &nginx.url, "bob", "/app/admin/settings").await;
    assert_eq!(landed, "/app/admin/settings");
    let before = upstream.count();
    let r = bob
        .get(format!("{}/app/admin/settings", nginx.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        upstream.count(),
        before,
        "a denied request never reaches the upstream"
    );
    // bob may use the rest of the app, without an email header (he has none).
    let r = bob
        .get(format!("{}/app/home", nginx.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert!(seen.header("x-auth-request-email").is_none());
    assert!(seen.header("x-auth-request-groups").is_none());
    assert_eq!(seen.all("x-auth-request-preferred-username"), ["bob"]);

    // A public route passes without a session and without identity.
    let r = browser()
        .get(format!("{}/public/status", nginx.url))
        .header("x-auth-request-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(upstream.last().header("x-auth-request-user").is_none());

    // Sign-out through nginx ends the session: the next navigation must sign in again.
    let r = b
        .post(format!("{}/auth/logout", nginx.url))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = b
        .get(format!("{}/app/reports", nginx.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

// ------------------------------------------------- the request shapes ---

struct Direct {
    gw: Gateway,
    _idp: oidc_bff::demo::dev_idp::DevIdpHandle,
    upstream: Upstream,
}

async fn direct(trusted: &str) -> Direct {
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let idp = start_dev_idp(&reserved.url).await;
    let toml = cognito_toml(
        &reserved.url,
        &idp,
        &format!("trusted_proxies = [{trusted}]"),
        &ROUTES.replace("UPSTREAM", &upstream.url),
    );
    let gw = Gateway::start(reserved, &toml).await;
    Direct {
        gw,
        _idp: idp,
        upstream,
    }
}

/// What Traefik's ForwardAuth sends: the original headers plus X-Forwarded-*.
fn traefik(
    b: &reqwest::Client,
    gw: &str,
    query: &str,
    method: &str,
    uri: &str,
) -> reqwest::RequestBuilder {
    b.get(format!("{gw}/auth/check{query}"))
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "127.0.0.1")
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-for", "203.0.113.7")
}

#[tokio::test]
async fn traefik_forward_auth_shape() {
    let d = direct("\"127.0.0.1/32\"").await;
    let gw = &d.gw.url;
    let anon = browser();

    // Traefik passes the auth answer to the browser as it is: with
    // ?redirect=true a navigation gets the 302 to sign in...
    let r = traefik(&anon, gw, "?redirect=true", "GET", "/app/x?y=1")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/auth/login?return_to=%2Fapp%2Fx%3Fy%3D1");
    // ... an API call still 401 JSON with the login URL.
    let r = traefik(&anon, gw, "?redirect=true", "POST", "/app/x")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["login_url"], "/auth/login?return_to=%2Fapp%2Fx");
    // Without ?redirect=true a navigation gets 401 with the sign-in URL as a hint.
    let r = traefik(&anon, gw, "", "GET", "/app/x")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(location(&r), "/auth/login?return_to=%2Fapp%2Fx");
    // From another host than public_url, the sign-in URL is absolute.
    let r = anon
        .get(format!("{gw}/auth/check"))
        .header("x-forwarded-uri", "/app/x")
        .header("x-forwarded-host", "other.example.com")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["login_url"],
        format!("{gw}/auth/login?return_to=%2Fapp%2Fx")
    );

    // Signed in (the session cookie is on the forwarded request).
    let alice = browser();
    dev_login(&alice, gw, "alice", "/").await;
    let r = traefik(&alice, gw, "?redirect=true", "GET", "/app/admin/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-auth-request-groups"], "admins");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert!(h["authorization"]
        .to_str()
        .unwrap()
        .starts_with("Bearer ey"));
    // A route with token = "none" (no route here: the default) attaches no token.
    let r = traefik(&alice, gw, "", "GET", "/elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("authorization").is_none());
    assert!(r.headers().get("x-auth-request-user").is_some());

    // bob: 403 for the admin route, an HTML page for a navigation naming the group.
    let bob = browser();
    dev_login(&bob, gw, "bob", "/").await;
    let r = traefik(&bob, gw, "?redirect=true", "GET", "/app/admin/")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("admins"), "{page}");
    let r = traefik(&bob, gw, "", "GET", "/app/admin/")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(r#"group "admins""#));

    // A public route: 200 without identity, even for a stranger.
    let r = traefik(&anon, gw, "", "GET", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-auth-request-user").is_none());

    // An API client's bearer token on a bearer route: verified, judged by the
    // policy, and echoed (the ingress may replace Authorization with the answer's).
    let r = alice
        .get(format!("{gw}/app/x"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let alice_token = d
        .upstream
        .last()
        .header("authorization")
        .unwrap()
        .to_string();
    let r = traefik(&anon, gw, "", "GET", "/api/orders")
        .header("authorization", &alice_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["authorization"], alice_token.as_str());
    assert_eq!(r.headers()["x-auth-request-groups"], "admins");
    let r = traefik(&anon, gw, "", "GET", "/api/orders")
        .header("authorization", "Bearer not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("authorization").is_none());

    // Misconfigured ingress (no forwarded target) and path tricks are refused.
    let r = alice.get(format!("{gw}/auth/check")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    for trick in ["/app/../app/admin/", "/app/%2e%2e/admin/", "//evil/app"] {
        let r = traefik(&bob, gw, "", "GET", trick).send().await.unwrap();
        assert_eq!(r.status(), 403, "{trick}");
    }
}

#[tokio::test]
async fn forward_auth_answers_only_trusted_proxies() {
    let d = direct("\"10.0.0.0/8\"").await;
    let alice = browser();
    dev_login(&alice, &d.gw.url, "alice", "/").await;
    // Even with a valid session, an untrusted peer learns nothing (no token, no identity).
    let r = traefik(&alice, &d.gw.url, "", "GET", "/app/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("authorization").is_none());
    assert!(r.headers().get("x-auth-request-user").is_none());
}
