//! Test harness: starts the real parts the integration tests run against,
//! one file per thing it starts. Everything is on 127.0.0.1 and fails loudly
//! (a panic saying what is missing or what the part logged) when it cannot
//! start; nothing is skipped or mocked.
//!
//! - `idp`: the test IdP, oidc-provider under node (`tests/idp`).
//! - `upstream`: an upstream API that records requests and verifies tokens.
//! - `rogue_idp`: an IdP whose signing keys the test holds.
//! - `gateway`: the gateway in-process.
//! - `process`: the `oidc-bff` binary as a child process.
//! - `redis`: `redis-server` processes, single and cluster.
//! - `certs`: test certificates (openssl).
//! - `browser`: the test's HTTP client, the sign-in walk and small helpers.
//!
//! Ports never race: what runs in-process keeps the socket it bound to
//! `127.0.0.1:0`; the test IdP binds port 0 itself and reports its port;
//! the gateway binary (and nginx) get sockets bound here and handed over
//! ([`pass_sockets`]); `redis-server`, which can do neither, is retried on
//! another port when it finds its port taken.
//!
//! Everything is re-exported here: tests use `crate::harness::*`.

#![allow(dead_code)]

mod browser;
mod certs;
mod gateway;
mod idp;
mod process;
mod redis;
mod rogue_idp;
mod upstream;
mod websocket;

pub use browser::*;
pub use certs::*;
pub use gateway::*;
pub use idp::*;
pub use process::*;
pub use redis::*;
pub use rogue_idp::*;
pub use upstream::*;
pub use websocket::*;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A scratch directory, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "oidc-bff-{what}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port number for a child that must be told its port and cannot hand it
/// back: free a moment ago, at most `max`. Nothing holds it, so the child
/// may find it taken; such children are started with a retry on "address in
/// use" (see `RedisServer`), never on this number alone.
pub fn candidate_port(max: u16) -> u16 {
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port <= max {
            return port;
        }
    }
    panic!("no free port at most {max}");
}

/// Hands `sockets` to the child `cmd` starts, as descriptors 3, 4, … in
/// order (socket activation's convention; nginx reads them from `NGINX`).
/// Every other descriptor of this process is closed on exec as usual. The
/// caller drops its own copies once the child is spawned, so the child
/// alone holds the ports: bound before the child starts, never released.
pub fn pass_sockets(cmd: &mut Command, sockets: &[BorrowedFd<'_>]) {
    const MAX: usize = 16;
    assert!(sockets.len() <= MAX, "at most {MAX} sockets");
    let mut fds = [-1; MAX];
    for (slot, s) in fds.iter_mut().zip(sockets) {
        *slot = s.as_raw_fd();
    }
    let n = sockets.len();
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
    // dup2) and no allocation.
    unsafe {
        cmd.pre_exec(move || {
            // First copies above the target range (closed on exec), so that
            // no target overwrites a source still to be moved.
            let mut high = [-1; MAX];
            for (slot, fd) in high.iter_mut().zip(fds).take(n) {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, (3 + n) as libc::c_int);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate().take(n) {
                // dup2 leaves the new descriptor open across exec.
                if libc::dup2(*fd, (3 + i) as libc::c_int) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A port that refuses connections for as long as the returned socket lives:
/// bound, never listening, so no other process can take it meanwhile (a
/// released port could be taken and answer).
pub fn closed_port() -> (socket2::Socket, u16) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}
