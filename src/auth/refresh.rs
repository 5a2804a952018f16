//! Token refresh, driven by the access token's expiry (not the session's age),
//! and single-flight: one refresh per session at a time, in this process (a
//! per-session mutex) and across replicas (a short lock in the session store,
//! with the new tokens read back from the store by whoever waited). Rotated
//! refresh tokens are saved with the new access token in one write; an
//! `invalid_grant` ends the session.

use crate::app::AppState;
use crate::error::AppError;
use crate::oidc::{client, OidcError};
use crate::session::{now_secs, Session, SessionData};
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long another replica's refresh is waited for before giving up.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(10);
/// The store lock outlives a refresh call (bounded by the IdP timeout) with margin.
const LOCK_TTL: Duration = Duration::from_secs(15);

/// Per-session mutexes of this process; idle ones are dropped.
pub struct RefreshLocks {
    locks: Cache<String, Arc<tokio::sync::Mutex<()>>>,
}

impl Default for RefreshLocks {
    fn default() -> Self {
        RefreshLocks {
            locks: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
        }
    }
}

/// `true` when the access token expires within `before` (or has expired).
/// `before` is capped at half the token's lifetime, so a token that lives
/// shorter than `refresh_before` is not refreshed on every request. Without a
/// known expiry there is nothing to drive a refresh.
pub fn refresh_due(data: &SessionData, before: Duration, now: i64) -> bool {
    data.access_expires_at.is_some_and(|exp| {
        let issued = data.refreshed_at.unwrap_or(data.created_at);
        let margin = (before.as_secs() as i64).min((exp - issued).max(0) / 2);
        exp - margin <= now
    })
}

fn expired(data: &SessionData, now: i64) -> bool {
    data.access_expires_at.is_some_and(|exp| exp <= now)
}

/// Makes sure the session's access token is fresh enough to send upstream.
pub async fn ensure_fresh(state: &AppState, session: Session) -> Result<Session, AppError> {
    let before = state.config.provider.refresh_before;
    if !refresh_due(&session.data, before, now_secs()) {
        return Ok(session);
    }
    if session.data.refresh_token.is_none() {
        // Nothing to refresh with: an expired token ends the session (the
        // browser signs in again, usually silently at the IdP).
        if expired(&session.data, now_secs()) {
            state.sessions.delete(&session.id).await?;
            return Err(AppError::Unauthenticated);
        }
        return Ok(session);
    }
    let key = session.id.store_key();
    let local = state
        .refresh_locks
        .locks
        .get_with(key, || Arc::new(tokio::sync::Mutex::new(())));
    let _local = local.lock().await;

    let deadline = Instant::now() + WAIT_FOR_OTHERS;
    loop {
        // Another task or replica may have refreshed while we waited.
        let current = state
            .sessions
            .reload(&session.id)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        if !refresh_due(&current, before, now_secs()) {
            return Ok(Session {
                data: current.into(),
                ..session
            });
        }
        if let Some(owner) = state.sessions.try_lock(&session.id, LOCK_TTL).await? {
            // Read again under the lock: the last holder may have just finished.
            let result = match state.sessions.reload(&session.id).await? {
                Some(d) if !refresh_due(&d, before, now_secs()) => Ok(d),
                Some(d) => refresh(state, &session, d).await,
                None => Err(AppError::Unauthenticated),
            };
            state.sessions.unlock(&session.id, &owner).await?;
            return result.map(|data| Session {
                data: data.into(),
                ..session
            });
        }
        if Instant::now() >= deadline {
            // Give up waiting; a still-valid token is better than an error.
            return if expired(&current, now_secs()) {
                Err(AppError::Provider(OidcError::Unreachable(
                    "token refresh did not complete in time".into(),
                )))
            } else {
                Ok(Session {
                    data: current.into(),
                    ..session
                })
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One refresh at the IdP, under the lock; saves and returns the new data.
async fn refresh(
    state: &AppState,
    session: &Session,
    mut data: SessionData,
) -> Result<SessionData, AppError> {
    let md = state.provider.metadata().await?;
    let Some(refresh_token) = data.refresh_token.clone() else {
        return Ok(data);
    };
    let tokens = match client::refresh(
        state.provider.http(),
        &md.token_endpoint,
        &state.provider.auth,
        &refresh_token,
    )
    .await
    {
        Ok(t) => t,
        Err(OidcError::InvalidGrant) => {
            state.metrics.count(
                "oidc_bff_token_refreshes_total",
                &[("outcome", "invalid_grant")],
            );
            // Revoked, expired or already rotated away: the session cannot go on.
            tracing::info!(sub = %data.sub, "refresh token rejected (invalid_grant); session ended");
            state.sessions.delete(&session.id).await?;
            return Err(AppError::Unauthenticated);
        }
        Err(e) => {
            state
                .metrics
                .count("oidc_bff_token_refreshes_total", &[("outcome", "error")]);
            tracing::warn!(error = %e, "token refresh failed");
            return if expired(&data, now_secs()) {
                Err(e.into())
            } else {
                Ok(data)
            };
        }
    };
    let now = now_secs();
    if let Some(id_token) = &tokens.id_token {
        // OIDC Core §12.2: same iss, sub and aud; a refreshed ID token may carry no nonce.
        let claims = state.provider.verify_id_token(id_token, None).await?;
        if claims.get("sub").and_then(|s| s.as_str()) != Some(data.sub.as_str()) {
            state.sessions.delete(&session.id).await?;
            return Err(AppError::Unauthenticated);
        }
        data.id_token = id_token.clone();
        data.claims = claims;
    }
    data.access_token = tokens.access_token.clone();
    data.access_expires_at = tokens.expires_in_secs().map(|s| now + s);
    // Rotation: a new refresh token replaces the old one in the same write;
    // an answer without one keeps the old (RFC 6749 §6).
    if let Some(rt) = &tokens.refresh_token {
        data.refresh_token = Some(rt.clone());
    }
    if tokens.scope.is_some() {
        data.scope = tokens.scope.clone();
    }
    data.refreshed_at = Some(now);
    state.sessions.save(&session.id, &data).await?;
    state
        .metrics
        .count("oidc_bff_token_refreshes_total", &[("outcome", "success")]);
    tracing::info!(sub = %data.sub, "access token refreshed");
    Ok(data)
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
}
