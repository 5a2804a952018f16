//! The test IdP: a real oidc-provider (`tests/idp/server.mjs`, node) in a
//! child process. It listens on a port of its own choosing and reports its
//! issuer on its first stdout line; a missing `node`, a missing install or a
//! start without that line panics with what went wrong.

use super::repo_root;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// A real oidc-provider process. Dropping it ends the process.
pub struct Idp {
    pub issuer: String,
    child: Child,
    _stdin: ChildStdin,
}

impl Idp {
    /// Starts `tests/idp/server.mjs` with `config` (see tests/idp/README.md).
    pub fn start(config: Value) -> Idp {
        let dir = repo_root().join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test IdP is not installed: run `npm ci --prefix tests/idp` (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `node`: install Node.js (scripts/test does)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the IdP's ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the test IdP did not start (ready line: {line:?})"));
        Idp {
            issuer: ready["issuer"].as_str().unwrap().to_string(),
            child,
            _stdin: stdin,
        }
    }

    /// The usual test IdP for a gateway at `gateway` (origin).
    pub fn for_gateway(gateway: &str, extra: Value) -> Idp {
        let mut cfg = json!({
            "clients": [{
                "client_id": "bff",
                "client_secret": "bff-secret",
                "redirect_uris": [format!("{gateway}/auth/callback")],
                "post_logout_redirect_uris": [format!("{gateway}/auth/signed-out")],
            }],
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        Idp::start(cfg)
    }

    /// Stops the IdP process (SIGSTOP): connections are still accepted by
    /// the kernel, nothing is answered, as with a stalled IdP.
    pub fn pause(&self) {
        assert!(signal(self.child.id(), "-STOP"), "cannot pause the IdP");
    }

    /// Lets a paused IdP go on (SIGCONT); it answers what queued meanwhile.
    pub fn resume(&self) {
        assert!(signal(self.child.id(), "-CONT"), "cannot resume the IdP");
    }

    /// Moves the IdP's clock `by` forward (`POST /test/advance-clock`).
    pub async fn advance_clock(&self, by: Duration) {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/test/advance-clock?seconds={}",
                self.issuer,
                by.as_secs_f64()
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "the IdP's clock did not move");
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/test/stats", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Sends a signal with kill(1); `true` when it was delivered.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("cannot run `kill`")
        .success()
}

impl Drop for Idp {
    fn drop(&mut self) {
        // A paused process must go on to die.
        signal(self.child.id(), "-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test IdP that accepts the redirect URIs of several gateways.
pub fn idp_for_gateways(gateways: &[&str]) -> Idp {
    oidc_bff::install_crypto_provider();
    Idp::start(json!({
        "clients": [{
            "client_id": "bff",
            "client_secret": "bff-secret",
            "redirect_uris": gateways.iter().map(|g| format!("{g}/auth/callback")).collect::<Vec<_>>(),
            "post_logout_redirect_uris": gateways.iter().map(|g| format!("{g}/auth/signed-out")).collect::<Vec<_>>(),
        }],
    }))
}
