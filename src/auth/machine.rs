//! Machine tokens for routes with `token = "client"`: the gateway's own
//! client-credentials token, sent upstream instead of the user's.
//!
//! Token requests cost money at Cognito (M2M requests are billed) and AWS
//! advises caching them, so each token (by scopes and resource) is fetched
//! once and reused until shortly before it expires:
//! - in this process, one request at a time: every request that needs a
//!   token being fetched joins the fetch in flight;
//! - across replicas, through the session store: the token is saved there
//!   sealed (it is a bearer credential; AES-256-GCM under the session keys),
//!   and a short store lock lets one replica fetch while the others wait and
//!   then read what it saved.
//!
//! A token is replaced when less than [`margin`] of its life is left,
//! judged by the state's clock. A failure at the token endpoint is the
//! request's failure (502): the user's token is never sent instead. After a
//! failure the grant backs off as a session's refresh does (5 s, doubling up
//! to 60 s): meanwhile requests fail at once, so an IdP that refuses or is
//! down is not asked once per request.

use crate::auth::refresh::backoff_after;
use crate::error::AppError;
use crate::oidc::machine::{self, IssuedToken, MachineClient, MachineGrant};
use crate::oidc::{OidcError, Provider};
use crate::session::Sessions;
use crate::telemetry::Metrics;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The store lock outlives one token request (bounded by `provider.http_timeout`) with margin.
const LOCK_EXTRA: Duration = Duration::from_secs(5);
/// A token whose answer named no lifetime is kept this long.
const DEFAULT_LIFETIME: i64 = 60;
/// The longest a token is kept, whatever `expires_in` says: a day (Cognito's
/// longest). An answer of years (or `u64::MAX`) would otherwise overflow
/// the store's deadlines.
const MAX_LIFETIME: i64 = 24 * 3600;

/// A cached machine token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    token: String,
    /// When it was obtained and when it expires, in the state clock's seconds.
    obtained_at: i64,
    expires_at: i64,
}

/// How long before expiry a token is replaced: 10% of its lifetime, at most
/// 60 s, so a token is never sent upstream in its last moments and a
/// short-lived one is not fetched on every request.
pub fn margin(lifetime: i64) -> i64 {
    (lifetime.max(0) / 10).min(60)
}

impl Cached {
    fn usable(&self, now: i64) -> bool {
        now < self.expires_at - margin(self.expires_at - self.obtained_at)
    }
}

type Flight = watch::Receiver<Option<Result<Arc<Cached>, String>>>;

/// The machine-token cache of one process; shared by every request.
#[derive(Clone)]
pub struct MachineTokens {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<Sessions>,
    provider: Arc<Provider>,
    metrics: Arc<Metrics>,
    /// `None` without a client secret (validation refuses `token = "client"` then).
    client: Option<MachineClient>,
    /// How long a request waits for a token: `provider.http_timeout`, and the lock's life.
    wait: Duration,
    cache: Mutex<HashMap<MachineGrant, Arc<Cached>>>,
    flights: Mutex<HashMap<MachineGrant, Flight>>,
    /// Grants whose last fetch failed: until when (the clock's instant) no
    /// new fetch starts, and how many failed in a row.
    backoff: Mutex<HashMap<MachineGrant, (Instant, u32)>>,
}

impl MachineTokens {
    pub fn new(
        sessions: Arc<Sessions>,
        provider: Arc<Provider>,
        metrics: Arc<Metrics>,
        config: &crate::config::ProviderConfig,
    ) -> Self {
        let (client_id, secret, method) = config.machine_client();
        MachineTokens {
            inner: Arc::new(Inner {
                sessions,
                provider,
                metrics,
                client: secret.map(|secret| MachineClient {
                    client_id,
                    secret,
                    method,
                }),
                wait: config.http_timeout,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                backoff: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A usable machine token for `grant`: the cached one, or a new one.
    pub async fn token(&self, grant: &MachineGrant) -> Result<String, AppError> {
        let me = &self.inner;
        let now = me.sessions.clock().now_secs();
        if let Some(c) = lock(&me.cache).get(grant).filter(|c| c.usable(now)) {
            return Ok(c.token.clone());
        }
        let backing_off = lock(&me.backoff)
            .get(grant)
            .is_some_and(|(until, _)| *until > me.sessions.clock().instant());
        if backing_off {
            return Err(AppError::MachineToken(
                "the token endpoint failed lately; backing off".into(),
            ));
        }
        let mut flight = self.join(grant);
        let deadline = me.wait + me.wait + LOCK_EXTRA;
        let outcome = match tokio::time::timeout(deadline, flight.wait_for(Option::is_some)).await {
            Ok(Ok(o)) => o.clone().unwrap_or_else(|| Err("no outcome".into())),
            Ok(Err(_)) => Err("the token request was cancelled".into()),
            Err(_) => Err("the token request did not finish in time".into()),
        };
        outcome
            .map(|c| c.token.clone())
            .map_err(AppError::MachineToken)
    }

    /// The machine token for `grant` as an `Authorization: Bearer` value
    /// (marked sensitive: never logged by the HTTP stack).
    pub async fn authorization(&self, grant: &MachineGrant) -> Result<http::HeaderValue, AppError> {
        let token = self.token(grant).await?;
        let mut value = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            AppError::MachineToken(
                "the token endpoint issued a token that is no header value".into(),
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The fetch in flight for `grant`, or a new one in a task of its own
    /// (it finishes and saves whoever still waits).
    fn join(&self, grant: &MachineGrant) -> Flight {
        let mut flights = lock(&self.inner.flights);
        if let Some(f) = flights.get(grant) {
            return f.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(grant.clone(), rx.clone());
        drop(flights);
        let this = self.clone();
        let grant = grant.clone();
        tokio::spawn(async move {
            let me = &this.inner;
            let _landing = super::flight::Landing {
                flights: &me.flights,
                key: grant.clone(),
            };
            let outcome = this.fly(&grant).await.map(Arc::new);
            match &outcome {
                Ok(c) => {
                    lock(&me.cache).insert(grant.clone(), c.clone());
                    lock(&me.backoff).remove(&grant);
                }
                Err(_) => {
                    let mut backoff = lock(&me.backoff);
                    let failures = backoff.get(&grant).map_or(0, |b| b.1) + 1;
                    let until = me.sessions.clock().instant() + backoff_after(failures);
                    backoff.insert(grant.clone(), (until, failures));
                }
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// One fetch: the token another replica saved, or a new one from the
    /// token endpoint under the store lock.
    async fn fly(&self, grant: &MachineGrant) -> Result<Cached, String> {
        let me = &self.inner;
        let name = store_name(grant);
        let lock_ttl = me.wait + LOCK_EXTRA;
        // Real time: bounds how long this waits for another replica.
        let give_up = Instant::now() + lock_ttl;
        let owner = random_owner();
        loop {
            if let Some(c) = self.saved(&name).await? {
                return Ok(c);
            }
            let taken = me
                .sessions
                .store()
                .claim(&format!("{name}:lock"), &owner, lock_ttl)
                .await
                .map_err(|e| e.to_string())?;
            if taken {
                break;
            }
            if Instant::now() >= give_up {
                return Err("another replica's token request did not finish".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Under the lock: a replica may have saved one just before we took it.
        let outcome = match self.saved(&name).await {
            Ok(Some(c)) => Ok(c),
            Err(e) => Err(e),
            Ok(None) => self.fetch(grant, &name).await,
        };
        let _ = me
            .sessions
            .store()
            .release(&format!("{name}:lock"), &owner)
            .await;
        outcome
    }

    /// The usable token saved in the store under `name`, if any.
    async fn saved(&self, name: &str) -> Result<Option<Cached>, String> {
        let me = &self.inner;
        let Some(bytes) = me
            .sessions
            .store()
            .load(name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let now = me.sessions.clock().now_secs();
        Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(|sealed| me.sessions.open_from_cookie(sealed, name))
            .and_then(|plain| serde_json::from_slice::<Cached>(&plain).ok())
            .filter(|c| c.usable(now)))
    }

    /// A new token from the token endpoint, saved sealed for the other replicas.
    async fn fetch(&self, grant: &MachineGrant, name: &str) -> Result<Cached, String> {
        let me = &self.inner;
        let Some(client) = &me.client else {
            return Err("no client secret for the client-credentials grant".into());
        };
        let obtained_at = me.sessions.clock().now_secs();
        let called = async {
            let md = me.provider.metadata().await?;
            machine::client_credentials(me.provider.http(), md.token_endpoint()?, client, grant)
                .await
        };
        let issued: IssuedToken = match called.await {
            Ok(t) => t,
            Err(e) => {
                me.metrics.count(
                    "oidc_bff_machine_token_requests_total",
                    &[("outcome", "error")],
                );
                tracing::warn!(client_id = %client.client_id, error = %crate::claims::log_text(&e), "machine token request failed");
                return Err(describe(&e));
            }
        };
        me.metrics.count(
            "oidc_bff_machine_token_requests_total",
            &[("outcome", "success")],
        );
        let lifetime = issued.expires_in.map_or(DEFAULT_LIFETIME, |d| {
            d.as_secs().min(MAX_LIFETIME as u64) as i64
        });
        let cached = Cached {
            token: issued.access_token,
            obtained_at,
            expires_at: obtained_at.saturating_add(lifetime),
        };
        tracing::info!(client_id = %client.client_id, scopes = %grant.scopes.join(" "), lifetime, "machine token obtained");
        let plain = serde_json::to_vec(&cached).expect("a cached token serializes");
        let sealed = me.sessions.seal_for_cookie(&plain, name);
        let ttl = Duration::from_secs(lifetime.max(1) as u64);
        if let Err(e) = me
            .sessions
            .store()
            .save(name, sealed.into_bytes(), ttl)
            .await
        {
            // This replica still uses it; the others fetch their own.
            tracing::warn!(error = %crate::claims::log_text(&e), "machine token could not be saved in the session store");
        }
        Ok(cached)
    }
}

/// The store key of a grant's token: a hash, so the store learns nothing of
/// the scopes; it is also the sealing context, so a record cannot be moved
/// to another grant's key.
fn store_name(grant: &MachineGrant) -> String {
    let mut h = Sha256::new();
    for s in &grant.scopes {
        h.update(s.as_bytes());
        h.update([0]);
    }
    h.update([1]);
    if let Some(r) = &grant.resource {
        h.update(r.as_bytes());
    }
    format!("machine-token:{}", B64.encode(h.finalize()))
}

fn random_owner() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    B64.encode(b)
}

/// A short reason for the log and the error: never a token or a secret.
fn describe(e: &OidcError) -> String {
    match e {
        OidcError::TokenEndpoint(code) => format!("the token endpoint refused: {code}"),
        other => other.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_shortly_before_expiry() {
        // One hour: replaced in its last minute.
        let c = Cached {
            token: String::new(),
            obtained_at: 0,
            expires_at: 3600,
        };
        assert!(c.usable(3539));
        assert!(!c.usable(3540));
        // Five minutes: replaced in its last 30 s, not on every request.
        let c = Cached {
            token: String::new(),
            obtained_at: 0,
            expires_at: 300,
        };
        assert!(c.usable(269));
        assert!(!c.usable(270));
        assert!(!c.usable(10_000));
    }

    #[test]
    fn store_names_differ_by_grant() {
        let g = |s: &[&str], r: Option<&str>| MachineGrant {
            scopes: s.iter().map(|s| s.to_string()).collect(),
            resource: r.map(str::to_string),
        };
        let names = [
            store_name(&g(&["a", "b"], None)),
            store_name(&g(&["ab"], None)),
            store_name(&g(&["a", "b"], Some("urn:x"))),
            store_name(&g(&["a"], Some("b"))),
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
