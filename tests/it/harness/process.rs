//! The real `oidc-bff` binary as a child process (`serve --config`), for
//! what only a process shows: signals, exit, open-file limits, several
//! replicas. A binary that exits at start or never answers `/healthz` panics
//! with its log.
//!
//! Ports: the config must name the gateway's own public URL (and the IdP its
//! redirect URI) before the process starts, so the port is chosen first. It
//! is never released for the child to bind (another test or process could
//! take it meanwhile): [`ProcessPorts::new`] binds and listens, and the
//! sockets are handed to the child as systemd socket activation does
//! (`LISTEN_FDS`/`LISTEN_PID`, see `oidc_bff::inherited_listeners`). From
//! then on the child alone holds them; nothing can collide silently.

use super::{pass_sockets, ScratchDir};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The real `oidc-bff` binary, `serve --config <file>`, on ports chosen
/// beforehand (the IdP must know the redirect URI first). Killed on drop.
pub struct GatewayProcess {
    pub url: String,
    pub admin_url: String,
    child: Child,
    dir: ScratchDir,
}

/// Ports for a gateway process, and the `[server]` lines that use them. The
/// ports are bound and listening from here on and handed to the one gateway
/// process started with them.
pub struct ProcessPorts {
    pub port: u16,
    pub admin_port: u16,
    pub url: String,
    sockets: Mutex<Option<(Socket, Socket)>>,
}

/// A listening socket on `addr`. `SO_REUSEPORT`, so that more serving
/// sockets can join the port later, as the gateway's own `bind_workers` does.
fn listen_on(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&addr.into())
        .unwrap_or_else(|e| panic!("cannot bind {addr} for a gateway process: {e}"));
    socket.listen(1024).unwrap();
    socket
}

fn port_of(socket: &Socket) -> u16 {
    socket.local_addr().unwrap().as_socket().unwrap().port()
}

impl ProcessPorts {
    pub fn new() -> ProcessPorts {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (main, admin) = (listen_on(any), listen_on(any));
        let (port, admin_port) = (port_of(&main), port_of(&admin));
        ProcessPorts {
            port,
            admin_port,
            url: format!("http://127.0.0.1:{port}"),
            sockets: Mutex::new(Some((main, admin))),
        }
    }

    /// The `[server]` section for these ports.
    pub fn server_toml(&self) -> String {
        format!(
            "[server]\npublic_url = \"{}\"\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n",
            self.url, self.port, self.admin_port
        )
    }

    /// The sockets for a gateway with `threads` serving threads: one serving
    /// socket per thread on the one port, then the admin socket.
    fn take_sockets(&self, threads: usize) -> Vec<Socket> {
        let (main, admin) = self
            .sockets
            .lock()
            .unwrap()
            .take()
            .expect("these ProcessPorts were handed to a gateway process already: one ProcessPorts per process");
        let addr = main.local_addr().unwrap().as_socket().unwrap();
        let mut sockets = vec![main];
        sockets.extend((1..threads).map(|_| listen_on(addr)));
        sockets.push(admin);
        sockets
    }
}

/// How many serving threads the gateway runs with `toml` (`server.workers`):
/// one serving socket is handed over for each. An invalid `[server]` gets
/// one; the gateway then reports the config itself.
fn serving_threads(toml: &str) -> usize {
    toml::from_str::<toml::Table>(toml)
        .ok()
        .and_then(|t| t.get("server").cloned())
        .and_then(|s| s.try_into::<oidc_bff::config::ServerConfig>().ok())
        .map_or(1, |s| s.worker_count())
}

impl GatewayProcess {
    /// Starts the binary with `toml` and waits for `/healthz`.
    pub async fn start(ports: &ProcessPorts, toml: &str) -> GatewayProcess {
        Self::launch(ports, toml, &[]).await
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
        let nofile = format!("--nofile={nofile}:{nofile}");
        Self::launch(ports, toml, &["prlimit", &nofile, "--"]).await
    }

    /// Runs `wrapper… oidc-bff serve --config …` with the ports' sockets.
    async fn launch(ports: &ProcessPorts, toml: &str, wrapper: &[&str]) -> GatewayProcess {
        // This process's reqwest clients (the "browser") need one too.
        oidc_bff::install_crypto_provider();
        let dir = ScratchDir::new("gateway");
        let config = dir.write("oidc-bff.toml", toml);
        let log = std::fs::File::create(dir.0.join("gateway.log")).unwrap();
        let sockets = ports.take_sockets(serving_threads(toml));
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.as_fd()).collect();
        let mut cmd = Command::new("sh");
        // LISTEN_PID must be the gateway's pid: the shell's, which `exec`
        // (and prlimit's exec) hand on.
        cmd.args([
            "-c",
            "LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"",
            "oidc-bff",
        ])
        .args(wrapper)
        .arg(env!("CARGO_BIN_EXE_oidc-bff"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("LISTEN_FDS", fds.len().to_string())
        .env_remove("LISTEN_PID")
        .env_remove("OIDC_BFF_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        pass_sockets(&mut cmd, &fds);
        let child = cmd
            .spawn()
            .expect("cannot run `sh` to start the oidc-bff binary");
        // The child holds the ports now; ours must close, or connections
        // would still be queued here after the gateway closed its listener.
        drop(fds);
        drop(sockets);
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
