//! The real `oidc-bff` binary as a child process (`serve --config`), for
//! what only a process shows: signals, exit, open-file limits, several
//! replicas. A binary that exits at start or never answers `/healthz` panics
//! with its log.

use super::{free_port, ScratchDir};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The real `oidc-bff` binary, `serve --config <file>`, on ports chosen
/// beforehand (the IdP must know the redirect URI first). Killed on drop.
pub struct GatewayProcess {
    pub url: String,
    pub admin_url: String,
    child: Child,
    dir: ScratchDir,
}

/// Ports for a gateway process, and the `[server]` lines that use them.
pub struct ProcessPorts {
    pub port: u16,
    pub admin_port: u16,
    pub url: String,
}

impl ProcessPorts {
    pub fn new() -> ProcessPorts {
        let port = free_port();
        let admin_port = free_port();
        ProcessPorts {
            port,
            admin_port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The `[server]` section for these ports.
    pub fn server_toml(&self) -> String {
        format!(
            "[server]\npublic_url = \"{}\"\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n",
            self.url, self.port, self.admin_port
        )
    }
}

impl GatewayProcess {
    /// Starts the binary with `toml` and waits for `/healthz`.
    pub async fn start(ports: &ProcessPorts, toml: &str) -> GatewayProcess {
        Self::launch(ports, toml, Command::new(env!("CARGO_BIN_EXE_oidc-bff"))).await
    }

    /// Like [`GatewayProcess::start`], with the open-file limit (soft and
    /// hard) set to `nofile` by `prlimit` (util-linux), which then runs the
    /// binary in its place (so [`GatewayProcess::signal`] reaches it).
    pub async fn start_with_nofile(
        ports: &ProcessPorts,
        toml: &str,
        nofile: u64,
    ) -> GatewayProcess {
        let ok = Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "cannot run `prlimit`: install util-linux");
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_oidc-bff"));
        Self::launch(ports, toml, cmd).await
    }

    async fn launch(ports: &ProcessPorts, toml: &str, mut cmd: Command) -> GatewayProcess {
        // This process's reqwest clients (the "browser") need one too.
        oidc_bff::install_crypto_provider();
        let dir = ScratchDir::new("gateway");
        let config = dir.write("oidc-bff.toml", toml);
        let log = std::fs::File::create(dir.0.join("gateway.log")).unwrap();
        let child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("OIDC_BFF_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run the oidc-bff binary");
        let mut gw = GatewayProcess {
            url: ports.url.clone(),
            admin_url: format!("http://127.0.0.1:{}", ports.admin_port),
            child,
            dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("oidc-bff exited at start ({status}); log:\n{}", gw.log());
            }
            if client
                .get(format!("{}/healthz", gw.admin_url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-bff did not answer /healthz; log:\n{}", gw.log());
    }

    /// Waits until `/readyz` is 200 (IdP metadata loaded, session store reachable).
    pub async fn wait_ready(&self, within: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if self.readyz().await == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-bff not ready within {within:?}; log:\n{}", self.log());
    }

    pub async fn readyz(&self) -> u16 {
        match reqwest::get(format!("{}/readyz", self.admin_url)).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it must never crash).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("gateway.log")).unwrap_or_default()
    }

    /// Sends a signal (e.g. "TERM") to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("cannot run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `within` for the process to exit; its status if it did.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
