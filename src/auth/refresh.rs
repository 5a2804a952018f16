//! Token refresh, driven by the access token's expiry (not the session's
//! age), single-flight, and safe when the IdP stalls.
//!
//! - One refresh per session at a time: in this process, every request that
//!   needs the session's refresh joins the one in flight and receives its
//!   outcome, success or failure; across replicas, a short lock in the
//!   session store, with the new tokens read back from the store.
//! - The refresh runs in a task of its own, with its own deadline
//!   ([`CALL_DEADLINE`]): a request that stops waiting (its client went away,
//!   or `provider.http_timeout` passed) does not abandon it, and a rotated
//!   refresh token that arrives late is still saved.
//! - A request waits at most `provider.http_timeout` for the outcome; then it
//!   goes on with the access token if that is still valid, else it fails
//!   (502) without starting a refresh of its own.
//! - After a failure other than `invalid_grant` (IdP down, stalled, 5xx), the
//!   session backs off: no refresh for [`BACKOFF_FIRST`], doubling on each
//!   further failure up to [`BACKOFF_MAX`]; meanwhile requests go on with a
//!   still-valid token or fail fast. Across replicas the store lock is held
//!   for the backoff, so no replica sends the same refresh token while an
//!   earlier request with it may still be in flight at the IdP.
//! - Revalidation (`session.revalidate_every`): a session whose tokens were
//!   obtained longer ago than that is refreshed before use even while its
//!   access token is valid, so a grant revoked at the IdP (Cognito has no
//!   back-channel logout) ends the session within that window. A session
//!   without a refresh token cannot be revalidated: it lives until its access
//!   token expires, as before.
//! - `invalid_grant` (revoked, expired, or rotated away) ends the session:
//!   401, sign in again, never a loop. Rotated refresh tokens are saved with
//!   the new access token in one write.
//!
//! docs/operations.md ("When the identity provider stalls or fails") says
//! what a user sees, and when a rotating IdP can still end a session.

use crate::clock::Clock;
use crate::error::AppError;
use crate::oidc::{client, OidcError, Provider};
use crate::session::{Session, SessionData, SessionError, SessionId, Sessions};
use crate::telemetry::Metrics;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long one refresh call may run before its outcome counts as unknown.
pub const CALL_DEADLINE: Duration = Duration::from_secs(60);
/// The store lock outlives a refresh call with margin.
const LOCK_TTL: Duration = Duration::from_secs(65);
/// The first backoff after a failed refresh; it doubles on each further one.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// `true` when the access token expires within `before` (or has expired).
/// `before` is capped at half the token's lifetime, so a token that lives
/// shorter than `refresh_before` is not refreshed on every request. Without a
/// known expiry there is nothing to drive a refresh.
pub fn refresh_due(data: &SessionData, before: Duration, now: i64) -> bool {
    data.access_expires_at.is_some_and(|exp| {
        let issued = data.refreshed_at.unwrap_or(data.created_at);
        // Saturating: `exp` is the IdP's (an access token's claim), any i64.
        let margin = (before.as_secs() as i64).min(exp.saturating_sub(issued).max(0) / 2);
        exp.saturating_sub(margin) <= now
    })
}

/// `true` when revalidation is on and the session's tokens were obtained
/// `every` or longer ago. Only a session with a refresh token can be revalidated.
pub fn revalidation_due(data: &SessionData, every: Option<Duration>, now: i64) -> bool {
    every.is_some_and(|every| {
        let obtained = data.refreshed_at.unwrap_or(data.created_at);
        data.refresh_token.is_some() && now.saturating_sub(obtained) >= every.as_secs() as i64
    })
}

fn expired(data: &SessionData, now: i64) -> bool {
    data.access_expires_at.is_some_and(|exp| exp <= now)
}

/// The backoff after `failures` failed refreshes in a row (at least one).
pub fn backoff_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

/// How a refresh ended, as every request that waited on it learns it.
#[derive(Debug, Clone)]
enum Outcome {
    /// Fresh tokens, saved.
    Fresh(Arc<SessionData>),
    /// The session is over (`invalid_grant`, another user's ID token, or gone).
    Ended,
    /// The IdP could not answer; the session backs off.
    Failed(String),
    /// The session store could not be read or written.
    Store(String),
}

type Flight = watch::Receiver<Option<Outcome>>;

#[derive(Clone, Copy)]
struct Backoff {
    /// An instant of the sessions' clock.
    until: Instant,
    failures: u32,
}

/// Refreshes sessions' tokens; shared by every request of the process.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<Sessions>,
    provider: Arc<Provider>,
    metrics: Arc<Metrics>,
    refresh_before: Duration,
    /// `session.revalidate_every`.
    revalidate_every: Option<Duration>,
    /// How long a request waits for a refresh: `provider.http_timeout`.
    wait: Duration,
    /// Refreshes in flight, by session store key.
    flights: Mutex<HashMap<String, Flight>>,
    /// Sessions backing off after a failed refresh, by store key.
    backoff: Cache<String, Backoff>,
}

impl Refresher {
    pub fn new(
        sessions: Arc<Sessions>,
        provider: Arc<Provider>,
        metrics: Arc<Metrics>,
        refresh_before: Duration,
        revalidate_every: Option<Duration>,
        wait: Duration,
    ) -> Self {
        Refresher {
            inner: Arc::new(Inner {
                sessions,
                provider,
                metrics,
                refresh_before,
                revalidate_every,
                wait,
                flights: Mutex::new(HashMap::new()),
                backoff: Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(BACKOFF_MAX + Duration::from_secs(60))
                    .build(),
            }),
        }
    }

    /// `true` when the session is due for revalidation (its access token may
    /// still be valid): the gate then refreshes it even on a route that sends
    /// no token on.
    pub fn revalidation_due(&self, data: &SessionData) -> bool {
        let me = &self.inner;
        revalidation_due(data, me.revalidate_every, me.sessions.clock().now_secs())
    }

    /// Whether `data` needs a refresh now: its access token is about to
    /// expire, or it is due for revalidation.
    fn due(&self, data: &SessionData) -> bool {
        let me = &self.inner;
        let now = me.sessions.clock().now_secs();
        refresh_due(data, me.refresh_before, now)
            || revalidation_due(data, me.revalidate_every, now)
    }

    /// Makes sure the session's access token is fresh enough to send upstream.
    pub async fn ensure_fresh(&self, session: Session) -> Result<Session, AppError> {
        let me = &self.inner;
        // The clock of the sessions: the state's.
        let clock = me.sessions.clock();
        if !self.due(&session.data) {
            return Ok(session);
        }
        if session.data.refresh_token.is_none() {
            // Nothing to refresh with: an expired token ends the session (the
            // browser signs in again, usually silently at the IdP).
            if expired(&session.data, clock.now_secs()) {
                me.sessions.delete(&session.id).await?;
                return Err(AppError::Unauthenticated);
            }
            return Ok(session);
        }
        let key = session.id.store_key();
        if me
            .backoff
            .get(&key)
            .is_some_and(|b| b.until > clock.instant())
        {
            me.metrics.count(
                "oidc_bff_token_refresh_skipped_total",
                &[("reason", "backoff")],
            );
            return still_valid(session, "the last refresh failed; backing off", clock);
        }
        let mut flight = self.join(&key, &session.id);
        let waited = tokio::time::timeout(me.wait, flight.wait_for(Option::is_some)).await;
        let outcome = match waited {
            Ok(Ok(outcome)) => outcome.clone(),
            // The flight's task is gone without an outcome (its runtime stopped).
            Ok(Err(_)) => Some(Outcome::Failed("the refresh was cancelled".into())),
            Err(_) => None,
        };
        match outcome {
            // A refresh answered so late that its token has expired already
            // is no fresh token: never sent on.
            Some(Outcome::Fresh(data)) => still_valid(
                Session { data, ..session },
                "the refreshed token had expired by the time it arrived",
                clock,
            ),
            Some(Outcome::Ended) => Err(AppError::Unauthenticated),
            Some(Outcome::Store(e)) => {
                Err(SessionError::from(crate::session::StoreError::Unavailable(e)).into())
            }
            Some(Outcome::Failed(why)) => still_valid(session, &why, clock),
            None => {
                me.metrics.count(
                    "oidc_bff_token_refresh_skipped_total",
                    &[("reason", "wait_timeout")],
                );
                still_valid(session, "the refresh did not finish in time", clock)
            }
        }
    }

    /// The flight of this session's refresh: the one in progress, or a new one.
    fn join(&self, key: &str, id: &SessionId) -> Flight {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = flights.get(key) {
            return f.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.to_string(), rx.clone());
        drop(flights);
        let this = self.clone();
        let (key, id) = (key.to_string(), id.clone());
        // Its own task: it runs to the end whoever is still waiting for it.
        tokio::spawn(async move {
            let me = &this.inner;
            let _landing = super::flight::Landing {
                flights: &me.flights,
                key: key.clone(),
            };
            let outcome = this.fly(&id).await;
            match &outcome {
                Outcome::Failed(_) => {
                    let failures = me.backoff.get(&key).map_or(0, |b| b.failures) + 1;
                    let wait = backoff_after(failures);
                    me.backoff.insert(
                        key.clone(),
                        Backoff {
                            until: me.sessions.clock().instant() + wait,
                            failures,
                        },
                    );
                    me.metrics
                        .count("oidc_bff_token_refresh_backoffs_total", &[]);
                    tracing::warn!(backoff = ?wait, failures, "token refresh failed; backing off");
                }
                _ => me.backoff.invalidate(&key),
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// One flight: waits for another replica's refresh, or refreshes under
    /// the store lock; saves what it gets.
    async fn fly(&self, id: &SessionId) -> Outcome {
        let me = &self.inner;
        // Real time, not the clock: this bounds how long the loop below waits.
        let deadline = Instant::now() + CALL_DEADLINE;
        loop {
            // Another replica may have refreshed meanwhile.
            let current = match me.sessions.reload(id).await {
                Ok(Some(d)) => d,
                Ok(None) => return Outcome::Ended,
                Err(e) => return Outcome::Store(e.to_string()),
            };
            if !self.due(&current) {
                return Outcome::Fresh(current.into());
            }
            match me.sessions.try_lock(id, LOCK_TTL).await {
                Err(e) => return Outcome::Store(e.to_string()),
                Ok(Some(owner)) => return self.refresh_locked(id, &owner).await,
                Ok(None) if Instant::now() >= deadline => {
                    return Outcome::Failed("another replica's refresh did not finish".into())
                }
                // Another replica refreshes, or backs off: look again shortly.
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Under the store lock: read again, refresh at the IdP, save. A failure
    /// keeps the lock for the backoff, so no replica retries sooner.
    async fn refresh_locked(&self, id: &SessionId, owner: &str) -> Outcome {
        let me = &self.inner;
        let outcome = match me.sessions.reload(id).await {
            Err(e) => Outcome::Store(e.to_string()),
            Ok(None) => Outcome::Ended,
            Ok(Some(d)) if !self.due(&d) => Outcome::Fresh(d.into()),
            Ok(Some(d)) => self.refresh(id, d).await,
        };
        let _ = me.sessions.unlock(id, owner).await;
        if let Outcome::Failed(_) = outcome {
            let key = id.store_key();
            let failures = me.backoff.get(&key).map_or(0, |b| b.failures) + 1;
            // Re-taken for the backoff; a replica that took it in between is
            // refreshing with the same token anyway, and holds it itself.
            let _ = me.sessions.try_lock(id, backoff_after(failures)).await;
        }
        outcome
    }

    /// One refresh at the IdP; saves and returns the new data.
    async fn refresh(&self, id: &SessionId, mut data: SessionData) -> Outcome {
        let me = &self.inner;
        let Some(refresh_token) = data.refresh_token.clone() else {
            return Outcome::Fresh(data.into());
        };
        let sent_at = me.sessions.clock().now_secs();
        // Why this refresh: the access token's expiry, or revalidation alone.
        let reason = if refresh_due(&data, me.refresh_before, sent_at) {
            "expiry"
        } else {
            "revalidate"
        };
        let called = async {
            let md = me.provider.metadata().await?;
            let oidc = me.provider.oidc_client(&md)?;
            client::refresh(me.provider.http(), &oidc, &refresh_token, CALL_DEADLINE).await
        };
        let tokens = match called.await {
            Ok(t) => t,
            Err(OidcError::InvalidGrant) => {
                me.metrics.count(
                    "oidc_bff_token_refreshes_total",
                    &[("outcome", "invalid_grant"), ("reason", reason)],
                );
                // Revoked, expired or already rotated away: the session cannot go on.
                tracing::info!(sub = %crate::claims::log_text(&data.sub), "refresh token rejected (invalid_grant); session ended");
                return match me.sessions.delete(id).await {
                    Ok(()) => Outcome::Ended,
                    Err(e) => Outcome::Store(e.to_string()),
                };
            }
            Err(e) => {
                me.metrics.count(
                    "oidc_bff_token_refreshes_total",
                    &[("outcome", "error"), ("reason", reason)],
                );
                tracing::warn!(sub = %crate::claims::log_text(&data.sub), error = %crate::claims::log_text(&e), "token refresh failed");
                return Outcome::Failed(e.to_string());
            }
        };
        let now = me.sessions.clock().now_secs();
        if let Some(id_token) = tokens.id_token_str() {
            // OIDC Core §12.2: same iss, sub and aud; a refreshed ID token may carry no nonce.
            let claims = match me
                .provider
                .verify_id_token(id_token, None, Some(tokens.access_token_str()))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sub = %crate::claims::log_text(&data.sub), error = %crate::claims::log_text(&e), "refreshed ID token refused");
                    return Outcome::Failed(e.to_string());
                }
            };
            if claims.get("sub").and_then(|s| s.as_str()) != Some(data.sub.as_str()) {
                tracing::warn!(sub = %crate::claims::log_text(&data.sub), "refreshed ID token is another user's; session ended");
                let _ = me.sessions.delete(id).await;
                return Outcome::Ended;
            }
            data.id_token = id_token.to_string();
            data.claims = claims;
        }
        data.access_token = tokens.access_token_str().to_string();
        data.access_expires_at = tokens.access_expires_at(sent_at);
        // Rotation: a new refresh token replaces the old one in the same write;
        // an answer without one keeps the old (RFC 6749 §6).
        if let Some(rt) = tokens.refresh_token_str() {
            data.refresh_token = Some(rt.to_string());
        }
        if let Some(scope) = tokens.scope() {
            data.scope = Some(scope);
        }
        data.refreshed_at = Some(now);
        if let Err(e) = me.sessions.save(id, &data).await {
            return Outcome::Store(e.to_string());
        }
        me.metrics.count(
            "oidc_bff_token_refreshes_total",
            &[("outcome", "success"), ("reason", reason)],
        );
        tracing::info!(sub = %crate::claims::log_text(&data.sub), "access token refreshed");
        Outcome::Fresh(data.into())
    }
}

/// A session whose refresh did not come through: on with its access token
/// while that is valid, else the IdP is unavailable (502).
fn still_valid(session: Session, why: &str, clock: &Clock) -> Result<Session, AppError> {
    if expired(&session.data, clock.now_secs()) {
        Err(AppError::Provider(OidcError::Unreachable(format!(
            "token refresh: {why}"
        ))))
    } else {
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(access_expires_at: Option<i64>) -> SessionData {
        data_issued(access_expires_at, 0)
    }

    fn data_issued(access_expires_at: Option<i64>, created_at: i64) -> SessionData {
        SessionData {
            sub: "u".into(),
            sid: None,
            claims: Default::default(),
            id_token: String::new(),
            access_token: String::new(),
            refresh_token: Some("r".into()),
            access_expires_at,
            created_at,
            expires_at: i64::MAX,
            last_seen: 0,
            scope: None,
            refreshed_at: None,
            user_agent: None,
        }
    }

    #[test]
    fn due_by_access_token_expiry() {
        let b = Duration::from_secs(60);
        for (exp, now, want) in [
            (Some(1000), 900, false),
            (Some(1000), 940, true),
            (Some(1000), 1000, true),
            (Some(1000), 5000, true),
            (None, 5000, false),
        ] {
            assert_eq!(refresh_due(&data(exp), b, now), want, "{exp:?} at {now}");
        }
        // A 10-second token is refreshed 5 s before expiry, not on every request.
        let short = data_issued(Some(1010), 1000);
        assert!(!refresh_due(&short, b, 1001));
        assert!(!refresh_due(&short, b, 1004));
        assert!(refresh_due(&short, b, 1005));
    }

    #[test]
    fn hostile_expiry_times_never_overflow() {
        let b = Duration::from_secs(60);
        for exp in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            for issued in [i64::MIN, 0, 1_700_000_000, i64::MAX] {
                let d = data_issued(Some(exp), issued);
                // Due exactly when the expiry is not in the far future.
                assert_eq!(
                    refresh_due(&d, b, 1_700_000_000),
                    exp != i64::MAX,
                    "{exp} {issued}"
                );
            }
        }
    }

    #[test]
    fn revalidation_by_the_age_of_the_tokens() {
        let every = Some(Duration::from_secs(300));
        let mut d = data_issued(Some(10_000), 1000);
        assert!(!revalidation_due(&d, every, 1299));
        assert!(revalidation_due(&d, every, 1300));
        // Off: never, however old.
        assert!(!revalidation_due(&d, None, 1_000_000));
        // A refresh restarts the window.
        d.refreshed_at = Some(2000);
        assert!(!revalidation_due(&d, every, 2299));
        assert!(revalidation_due(&d, every, 2300));
        // Without a refresh token there is nothing to revalidate with.
        d.refresh_token = None;
        assert!(!revalidation_due(&d, every, 1_000_000));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let got: Vec<u64> = (1..=6).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff_after(0), BACKOFF_FIRST);
        assert_eq!(backoff_after(u32::MAX), BACKOFF_MAX);
    }
}
