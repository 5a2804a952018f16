//! The gateway in-process: `oidc_bff::serve` on listeners bound beforehand
//! (`reserve`) and kept, so the IdP can learn the gateway's URL first and no
//! other process can take the port. An invalid config or a failed start
//! panics.

use oidc_bff::app::AppState;
use oidc_bff::session::MemoryStore;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The gateway, in-process, on free ports, with a memory store the test can inspect.
pub struct Gateway {
    pub url: String,
    pub admin_url: String,
    pub state: Arc<AppState>,
    pub store: Arc<MemoryStore>,
    clock: oidc_bff::clock::TestClock,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A bound-but-not-serving listener, so the IdP can learn the gateway's URL first.
pub struct Reserved {
    pub listener: TcpListener,
    pub admin: TcpListener,
    pub url: String,
}

pub async fn reserve() -> Reserved {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    Reserved {
        listener,
        admin,
        url,
    }
}

pub fn test_key() -> String {
    oidc_bff::session::generate_key()
}

/// A complete gateway config for `issuer`, with `routes` appended as TOML.
pub fn config_toml(public_url: &str, issuer: &str, routes: &str) -> String {
    format!(
        r#"
[server]
public_url = "{public_url}"

[provider]
issuer = "{issuer}"
client_id = "bff"
client_secret = "bff-secret"
scopes = ["openid", "email", "profile", "groups", "offline_access", "api:read"]
insecure_allow_http = true

[session]
keys = ["{key}"]

{routes}
"#,
        key = test_key()
    )
}

impl Gateway {
    pub async fn start(reserved: Reserved, toml: &str) -> Gateway {
        let clock = oidc_bff::clock::TestClock::new();
        let store = Arc::new(MemoryStore::with_clock(1000, clock.clock()));
        Self::start_on(reserved, toml, store, clock).await
    }

    /// A replica of `other`: it shares `other`'s memory store (as replicas
    /// share Redis) and its clock (as replicas share the time of day).
    pub async fn start_replica(reserved: Reserved, toml: &str, other: &Gateway) -> Gateway {
        Self::start_on(reserved, toml, other.store.clone(), other.clock.clone()).await
    }

    async fn start_on(
        reserved: Reserved,
        toml: &str,
        store: Arc<MemoryStore>,
        clock: oidc_bff::clock::TestClock,
    ) -> Gateway {
        let config = oidc_bff::config::load_from_str(toml)
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let state = AppState::with_store_and_clock(config, store.clone(), clock.clock()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = oidc_bff::serve(state, reserved.listener, reserved.admin, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Gateway {
            url: format!("http://{}", running.addr),
            admin_url: format!("http://{}", running.admin_addr),
            state: running.state,
            store,
            clock,
            shutdown: Some(tx),
        }
    }

    /// This gateway's clock: `gw.clock().advance(..)` moves its time (and no
    /// other gateway's).
    pub fn clock(&self) -> &oidc_bff::clock::TestClock {
        &self.clock
    }

    /// Live session records in the store.
    pub fn session_count(&self) -> usize {
        self.store.keys().len()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
