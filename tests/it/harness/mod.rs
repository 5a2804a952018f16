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

pub use browser::*;
pub use certs::*;
pub use gateway::*;
pub use idp::*;
pub use process::*;
pub use redis::*;
pub use rogue_idp::*;
pub use upstream::*;

use std::path::PathBuf;

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

/// A port that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
