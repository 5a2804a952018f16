//! `redis-server` child processes: one server, or a 3-node cluster, each in
//! a scratch directory. A missing `redis-server`/`redis-cli` or a server that
//! does not come up panics with its log. `redis-server` cannot report a
//! port it chose, so it is started on candidate ports and retried on fresh
//! ones when its log says a port was taken.

use super::{candidate_port, ScratchDir};
use std::process::{Command, Stdio};
use std::time::Duration;

fn require_redis() {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "cannot run `redis-server`: install redis-server (scripts/test does)"
    );
}

/// `redis-cli -p port args…`, raw stdout (values may be binary). Panics
/// with its stderr when it fails (e.g. no server answers).
pub fn redis_cli(port: u16, args: &[&str]) -> Vec<u8> {
    let out = redis_cli_output(port, args);
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn redis_cli_output(port: u16, args: &[&str]) -> std::process::Output {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run `redis-cli`: install redis-server (scripts/test does)")
}

fn redis_cli_text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&redis_cli(port, args))
        .trim()
        .to_string()
}

/// One `redis-server` on a free port with its own directory (no saving,
/// no append-only file). Stopped on drop. `kill` and `restart` simulate an outage
/// on the same port; `pause`/`resume` a server that stops answering.
pub struct RedisServer {
    pub port: u16,
    /// The TLS port of a server from [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    dir: ScratchDir,
    extra: Vec<String>,
}

/// How many ports `redis-server` is tried on before the start fails.
const PORT_ATTEMPTS: usize = 8;

/// Why a start of `redis-server` failed, when it may be tried again.
struct PortTaken {
    log: String,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (cluster mode, passwords).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_on_ports(extra, false)
    }

    /// Also on a TLS port (`--tls-port`, in [`RedisServer::tls_port`]); the
    /// TLS files and options come in `extra`.
    pub fn start_tls(extra: &[&str]) -> RedisServer {
        Self::start_on_ports(extra, true)
    }

    /// `redis-server` must be told its ports (with `port 0` it serves no
    /// TCP) and cannot be handed a socket, so it gets candidate ports and,
    /// when its log says one was taken meanwhile, another try on fresh ones
    /// in a fresh directory.
    fn start_on_ports(extra: &[&str], tls: bool) -> RedisServer {
        require_redis();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // The cluster bus listens on port + 10000.
        let max = if extra.iter().any(|a| a == "--cluster-enabled") {
            u16::MAX - 10_000
        } else {
            u16::MAX
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let s = RedisServer {
                port: candidate_port(max),
                tls_port: tls.then(|| candidate_port(u16::MAX)),
                dir: ScratchDir::new("redis"),
                extra: extra.clone(),
            };
            match s.launch() {
                Ok(()) => return s,
                Err(PortTaken { log }) => last_log = log,
            }
        }
        panic!(
            "redis-server found its port taken {PORT_ATTEMPTS} times; last redis.log:\n{last_log}"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir.0
    }

    /// Starts the server and waits until its own log says it accepts
    /// connections (a PING alone could be answered by whatever else took
    /// the port). `Err` when a port was taken; other failures panic.
    fn launch(&self) -> Result<(), PortTaken> {
        let dir = self.dir.0.display().to_string();
        let log_path = self.dir.0.join("redis.log");
        let pidfile = self.dir.0.join("redis.pid");
        // A restart appends to the log: only what this start wrote counts.
        let from = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let tls_port = self.tls_port.map(|p| p.to_string());
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--daemonize",
                "yes",
                "--pidfile",
                &format!("{dir}/redis.pid"),
                "--logfile",
                &format!("{dir}/redis.log"),
                "--dir",
                &dir,
            ])
            .args(tls_port.iter().flat_map(|p| ["--tls-port", p.as_str()]))
            .args(&self.extra)
            .status()
            .expect("cannot run `redis-server`: install redis-server (scripts/test does)");
        assert!(status.success(), "redis-server did not start");
        let this_start = || {
            let log = std::fs::read(&log_path).unwrap_or_default();
            String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned()
        };
        for _ in 0..200 {
            let log = this_start();
            if log.contains("Ready to accept connections") {
                self.wait_until(|| self.answers(), "redis-server to answer PING");
                return Ok(());
            }
            if log.contains("Address already in use") {
                // It exits by itself; its pid must not be signalled later.
                let _ = std::fs::remove_file(&pidfile);
                return Err(PortTaken { log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server on port {} did not say it accepts connections; redis.log:\n{}",
            self.port,
            this_start()
        );
    }

    /// Whether the server answers (on the plain port; TLS-only servers use `ping_with`).
    pub fn answers(&self) -> bool {
        // Not answering is an outcome here, not a failure.
        let out = redis_cli_output(self.port, &["ping"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "PONG"
    }

    fn wait_until(&self, ok: impl Fn() -> bool, what: &str) {
        for _ in 0..100 {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.0.join("redis.log")).unwrap_or_default();
        panic!(
            "timed out waiting for {what} on port {}; redis.log:\n{log}",
            self.port
        );
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.0.join("redis.pid"))
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid]).status();
        }
    }

    /// Kills the server outright (no shutdown, no save): an outage.
    pub fn kill(&self) {
        self.signal("-KILL");
        let pidfile = self.dir.0.join("redis.pid");
        for _ in 0..100 {
            let alive = self
                .pid()
                .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = std::fs::remove_file(&pidfile);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not die", self.port);
    }

    /// Starts it again on the same port and directory, empty. The port
    /// stays (clients were configured with it), so a port taken during the
    /// outage fails the test.
    pub fn restart(&self) {
        if let Err(PortTaken { log }) = self.launch() {
            panic!(
                "port {} was taken while redis-server was down; redis.log:\n{log}",
                self.port
            );
        }
    }

    /// SIGSTOP: the server keeps its connections but stops answering.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Every key under `pattern` with its value: strings as stored, sets as
    /// their members joined by newlines.
    pub fn dump(&self, pattern: &str) -> Vec<(String, Vec<u8>)> {
        dump_node(self.port, pattern)
    }
}

/// `RedisServer::dump` for one node, by port.
pub fn dump_node(port: u16, pattern: &str) -> Vec<(String, Vec<u8>)> {
    let keys = redis_cli_text(port, &["--scan", "--pattern", pattern]);
    keys.lines()
        .filter(|k| !k.is_empty())
        .filter_map(|k| {
            let value = match redis_cli_text(port, &["type", k]).as_str() {
                "string" => {
                    let mut v = redis_cli(port, &["get", k]);
                    // redis-cli adds one newline after a raw value.
                    if v.last() == Some(&b'\n') {
                        v.pop();
                    }
                    v
                }
                "set" => redis_cli(port, &["smembers", k]),
                // Expired between KEYS and TYPE: gone.
                "none" => return None,
                other => panic!("unexpected Redis type {other} for {k}"),
            };
            Some((k.to_string(), value))
        })
        .collect()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.signal("-KILL");
    }
}

/// A 3-node Redis Cluster (3 primaries, no replicas), each node a `RedisServer`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run `redis-cli`: install redis-server (scripts/test does)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for n in &nodes {
            n.wait_until(
                || redis_cli_text(n.port, &["cluster", "info"]).contains("cluster_state:ok"),
                "the cluster to be ok",
            );
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// Every key under `pattern`, from every node.
    pub fn dump(&self, pattern: &str) -> Vec<(String, Vec<u8>)> {
        self.nodes
            .iter()
            .flat_map(|n| dump_node(n.port, pattern))
            .collect()
    }
}
