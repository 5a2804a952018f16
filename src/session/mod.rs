//! Server-side sessions. The browser holds only an opaque, MAC-authenticated
//! id; the record (tokens, claims) is sealed with the key ring and kept in a
//! [`SessionStore`] under a key derived from the id, so neither a store dump
//! nor a cookie alone reveals or forges anything.
//!
//! Sessions are also indexed by user (`sub`) and IdP session (`sid`), for
//! back-channel logout and "sign out everywhere". Index names are MACs of the
//! value under the ring's keys, so a store dump does not reveal (or confirm a
//! guess of) who is signed in; lookups try every key of the ring, so rotation
//! keeps sessions findable until the key that indexed them is removed.

mod agent;
mod crypto;
pub mod redis;
mod store;

pub use agent::user_agent_summary;

pub use crypto::{generate_key, CryptoError, KeyRing};
pub use redis::{RedisOptions, RedisStore};
pub use store::{MemoryStore, SessionStore, StoreError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use futures_util::future::try_join_all;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// What a signed-in session holds. Sealed before it leaves this module.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub sub: String,
    /// The IdP's session id (`sid` claim), for back-channel logout.
    #[serde(default)]
    pub sid: Option<String>,
    /// ID token claims, shown at `/auth/user`.
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub id_token: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token expires, when the IdP said.
    #[serde(default)]
    pub access_expires_at: Option<i64>,
    /// The scopes granted at sign-in, space-separated (for `require_scopes`).
    #[serde(default)]
    pub scope: Option<String>,
    pub created_at: i64,
    /// Unix seconds: the absolute end of this session, whatever the activity.
    pub expires_at: i64,
    /// Unix seconds of the last write, for the sliding idle timeout.
    pub last_seen: i64,
    /// Unix seconds of the last access-token refresh, if any.
    #[serde(default)]
    pub refreshed_at: Option<i64>,
    /// What signed in, as [`user_agent_summary`] tells it ("Firefox 128 on
    /// Linux"), for the admin API's listing; never the raw header. Records
    /// written before this field existed load with `None`.
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// One session as the admin API shows it: when it began, was last used and
/// ends, and what signed in. No token, no session id, no store key: the
/// `handle` names it for [`Sessions::delete_by_handle`] only (a keyed hash of
/// the store key, which cannot be turned into a cookie).
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub handle: String,
    pub created_at: i64,
    pub last_seen: i64,
    /// The absolute end, whatever the activity.
    pub expires_at: i64,
    /// When it ends if it is not used again (the idle timeout).
    pub idle_expires_at: i64,
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("sub", &self.sub)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A session id as the browser never sees it raw: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; 32]);

impl SessionId {
    fn random() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        SessionId(b)
    }

    /// The store key: a hash of the id, so a store dump cannot be replayed as cookies.
    pub fn store_key(&self) -> String {
        B64.encode(Sha256::digest(self.0))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a session is indexed by.
#[derive(Debug, Clone, Copy)]
enum IndexKind {
    Sub,
    Sid,
}

impl IndexKind {
    fn as_str(self) -> &'static str {
        match self {
            IndexKind::Sub => "sub",
            IndexKind::Sid => "sid",
        }
    }
}

/// What an index name is the MAC of: purpose, kind and value, separated so
/// that no other MAC the ring makes (cookies, logout tokens) can collide.
fn index_message(kind: IndexKind, value: &str) -> Vec<u8> {
    let mut msg = format!("oidc-bff index\0{}\0", kind.as_str()).into_bytes();
    msg.extend_from_slice(value.as_bytes());
    msg
}

fn index_name(kind: IndexKind, tag: &[u8]) -> String {
    format!("{}:{}", kind.as_str(), B64.encode(tag))
}

/// A loaded session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    /// Shared with the cache of opened records: reading a session copies no token.
    pub data: Arc<SessionData>,
    /// A new cookie value when the browser's cookie was signed by a key that
    /// is no longer primary: sending it keeps the session alive once the old
    /// key leaves the ring.
    pub reissue_cookie: Option<String>,
}

/// Creates, opens, saves and ends sessions.
pub struct Sessions {
    ring: Arc<KeyRing>,
    store: Arc<dyn SessionStore>,
    idle: Duration,
    absolute: Duration,
    /// Records opened lately, by store key: the sealed bytes and what they
    /// opened to. A record whose bytes are the same as last time is not
    /// decrypted and decoded again (the same ciphertext, nonce and tag under
    /// the same ring open to the same plaintext). The store is still read on
    /// every request, so a record deleted, expired or rewritten (by any
    /// replica) is seen at once.
    opened: moka::sync::Cache<String, Arc<OpenedRecord>>,
    /// What idle and absolute timeouts are judged by.
    clock: Clock,
}

/// A record written for a new session, or over the existing one only.
#[derive(Clone, Copy)]
enum Write {
    Create,
    Replace,
}

struct OpenedRecord {
    sealed: Vec<u8>,
    data: Arc<SessionData>,
    stale_key: bool,
}

impl Sessions {
    pub fn new(
        ring: Arc<KeyRing>,
        store: Arc<dyn SessionStore>,
        idle: Duration,
        absolute: Duration,
    ) -> Self {
        Sessions {
            ring,
            store,
            idle,
            absolute,
            opened: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(60))
                .build(),
            clock: Clock::system(),
        }
    }

    /// The same, judging timeouts by `clock` (the state's clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The absolute end of a session created now.
    pub fn absolute_deadline(&self) -> i64 {
        self.now_secs() + self.absolute.as_secs() as i64
    }

    /// Stores `data` under a fresh id and returns the cookie value for it.
    pub async fn create(&self, mut data: SessionData) -> Result<(SessionId, String), SessionError> {
        let id = SessionId::random();
        data.last_seen = self.now_secs();
        self.write(&id, &data, Write::Create).await?;
        let cookie = self.cookie_value(&id);
        Ok((id, cookie))
    }

    /// Opens the session a cookie names. Malformed, forged, unknown, expired and
    /// undecryptable (key removed from the ring) all give `Ok(None)`: the
    /// caller answers 401. Only a store failure is an error.
    pub async fn load(&self, cookie_value: &str) -> Result<Option<Session>, SessionError> {
        let Some((id, stale_cookie)) = self.parse_cookie(cookie_value) else {
            return Ok(None);
        };
        let key = id.store_key();
        let Some(sealed) = self.store.load(&key).await? else {
            return Ok(None);
        };
        let (data, stale_key) = match self.opened.get(&key).filter(|o| o.sealed == sealed) {
            Some(o) => (o.data.clone(), o.stale_key),
            None => {
                let opened = match self.ring.open(&sealed, key.as_bytes()) {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::info!(error = %crate::claims::log_text(&e), "session record cannot be opened; treating as signed out");
                        return Ok(None);
                    }
                };
                let Ok(data) = serde_json::from_slice::<SessionData>(&opened.plaintext) else {
                    tracing::warn!("session record does not decode; treating as signed out");
                    return Ok(None);
                };
                let data = Arc::new(data);
                self.opened.insert(
                    key.clone(),
                    Arc::new(OpenedRecord {
                        sealed,
                        data: data.clone(),
                        stale_key: opened.stale_key,
                    }),
                );
                (data, opened.stale_key)
            }
        };
        let now = self.now_secs();
        if data.expires_at <= now || data.last_seen + self.idle.as_secs() as i64 <= now {
            self.store.delete(&key).await?;
            self.opened.invalidate(&key);
            self.unindex(&key, &data).await;
            return Ok(None);
        }
        let reissue_cookie = stale_cookie.then(|| self.cookie_value(&id));
        let session = Session {
            id,
            data,
            reissue_cookie,
        };
        // Reading is activity: slide the idle window, but write at most once a
        // minute (or a twentieth of the window) per session to keep reads cheap.
        let touch_every = (self.idle.as_secs() as i64 / 20).clamp(1, 60);
        if stale_key || now - session.data.last_seen >= touch_every {
            let mut data = (*session.data).clone();
            data.last_seen = now;
            if !self.write(&session.id, &data, Write::Replace).await? {
                // Ended (on any replica) since it was read a moment ago.
                self.opened.invalidate(&key);
                return Ok(None);
            }
            return Ok(Some(Session {
                data: Arc::new(data),
                ..session
            }));
        }
        Ok(Some(session))
    }

    /// Writes `data` back (after a refresh, for example), unless the session
    /// was ended meanwhile: an ended session is never brought back (a
    /// refresh that was in flight while the admin API or a back-channel
    /// logout ended it must not resurrect it). Then the caller's request
    /// finishes, and the session's next request is refused.
    pub async fn save(&self, id: &SessionId, data: &SessionData) -> Result<(), SessionError> {
        if !self.write(id, data, Write::Replace).await? {
            tracing::info!(sub = %crate::claims::log_text(&data.sub), "session ended while it was being rewritten; left ended");
        }
        Ok(())
    }

    /// Ends a session: the record goes, and so do its index entries.
    pub async fn delete(&self, id: &SessionId) -> Result<(), SessionError> {
        self.delete_key(&id.store_key()).await
    }

    async fn delete_key(&self, key: &str) -> Result<(), SessionError> {
        // Read first to learn which index sets name it (the caller may only
        // have the id); a record that no longer opens is simply deleted and
        // its index entries are dropped when next read.
        let data = self
            .store
            .load(key)
            .await?
            .and_then(|sealed| self.open_record(key, &sealed));
        self.store.delete(key).await?;
        self.opened.invalidate(key);
        if let Some(data) = data {
            self.unindex(key, &data).await;
        }
        Ok(())
    }

    /// The admin API's name of the session stored under `key`: a MAC of the
    /// store key (its own purpose, so no other MAC of the ring collides),
    /// shortened. Knowing it lets an operator end the session, not ride it.
    fn handle_of(&self, key: &str) -> String {
        let mut msg = b"oidc-bff admin handle\0".to_vec();
        msg.extend_from_slice(key.as_bytes());
        B64.encode(&self.ring.sign(&msg)[..16])
    }

    /// The live sessions of user `sub`, oldest first, as the admin API lists them.
    pub async fn list_of_sub(&self, sub: &str) -> Result<Vec<SessionSummary>, SessionError> {
        let now = self.now_secs();
        let idle = self.idle.as_secs() as i64;
        let mut out = Vec::new();
        for (key, data) in self.records_of_sub(sub).await? {
            let idle_expires_at = data.last_seen + idle;
            if data.expires_at <= now || idle_expires_at <= now {
                continue;
            }
            out.push(SessionSummary {
                handle: self.handle_of(&key),
                created_at: data.created_at,
                last_seen: data.last_seen,
                expires_at: data.expires_at,
                idle_expires_at,
                user_agent: data.user_agent,
            });
        }
        out.sort_by(|a, b| (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle)));
        Ok(out)
    }

    /// Ends the session of user `sub` that `handle` names. `false` when no
    /// live session of `sub` has that handle.
    pub async fn delete_by_handle(&self, sub: &str, handle: &str) -> Result<bool, SessionError> {
        let found = self
            .records_of_sub(sub)
            .await?
            .into_iter()
            .find(|(key, _)| self.handle_of(key) == handle);
        let Some((key, _)) = found else {
            return Ok(false);
        };
        self.delete_key(&key).await?;
        Ok(true)
    }

    /// The records the `sub` index names that open and really are `sub`'s.
    async fn records_of_sub(&self, sub: &str) -> Result<Vec<(String, SessionData)>, SessionError> {
        let keys = self.lookup(IndexKind::Sub, sub).await?;
        let loaded = try_join_all(keys.iter().map(|k| self.store.load(k))).await?;
        Ok(keys
            .into_iter()
            .zip(loaded)
            .filter_map(|(key, sealed)| {
                let data = self.open_record(&key, &sealed?)?;
                (data.sub == sub).then_some((key, data))
            })
            .collect())
    }

    /// Store keys of the live sessions of user `sub` (the hashes of their
    /// ids, never the ids: they cannot be turned into cookies).
    pub async fn sessions_of_sub(&self, sub: &str) -> Result<Vec<String>, SessionError> {
        self.lookup(IndexKind::Sub, sub).await
    }

    /// Store keys of the live sessions created in IdP session `sid`.
    pub async fn sessions_of_sid(&self, sid: &str) -> Result<Vec<String>, SessionError> {
        self.lookup(IndexKind::Sid, sid).await
    }

    /// "Sign out everywhere": ends every session of `sub`. Returns how many.
    pub async fn delete_all_of_sub(&self, sub: &str) -> Result<usize, SessionError> {
        self.delete_indexed(IndexKind::Sub, sub).await
    }

    /// Back-channel logout: ends every session of IdP session `sid`. Returns how many.
    pub async fn delete_by_sid(&self, sid: &str) -> Result<usize, SessionError> {
        self.delete_indexed(IndexKind::Sid, sid).await
    }

    async fn lookup(&self, kind: IndexKind, value: &str) -> Result<Vec<String>, SessionError> {
        let names = self.index_names(kind, value);
        let sets = try_join_all(names.iter().map(|n| self.store.index_members(n))).await?;
        let keys: BTreeSet<String> = sets.into_iter().flatten().collect();
        Ok(keys.into_iter().collect())
    }

    async fn delete_indexed(&self, kind: IndexKind, value: &str) -> Result<usize, SessionError> {
        let keys = self.lookup(kind, value).await?;
        for key in &keys {
            self.store.delete(key).await?;
            self.opened.invalidate(key);
        }
        // The other index (sid for sub, sub for sid) drops these members on its next read.
        for name in self.index_names(kind, value) {
            for key in &keys {
                self.store.index_remove(&name, key).await?;
            }
        }
        Ok(keys.len())
    }

    /// Index names of `value` under every key of the ring, primary first.
    fn index_names(&self, kind: IndexKind, value: &str) -> Vec<String> {
        let msg = index_message(kind, value);
        self.ring
            .sign_each(&msg)
            .iter()
            .map(|tag| index_name(kind, tag))
            .collect()
    }

    /// The index entries a record of `data` is written under (primary key only:
    /// lookups try the other keys, and re-sealing re-indexes under the primary).
    fn primary_index_names(&self, data: &SessionData) -> Vec<String> {
        let name =
            |kind, value: &str| index_name(kind, &self.ring.sign(&index_message(kind, value)));
        let mut names = vec![name(IndexKind::Sub, &data.sub)];
        if let Some(sid) = &data.sid {
            names.push(name(IndexKind::Sid, sid));
        }
        names
    }

    /// Best effort: the record is gone already, and a stale index member is
    /// dropped on the next read anyway, so a failure here is only logged.
    async fn unindex(&self, key: &str, data: &SessionData) {
        let mut names = self.index_names(IndexKind::Sub, &data.sub);
        if let Some(sid) = &data.sid {
            names.extend(self.index_names(IndexKind::Sid, sid));
        }
        for name in names {
            if let Err(e) = self.store.index_remove(&name, key).await {
                tracing::debug!(error = %e, "session index not cleaned; it will be on next read");
            }
        }
    }

    /// The current record of a session already identified (after a wait:
    /// another task or replica may have written it). `None` when it ended.
    pub async fn reload(&self, id: &SessionId) -> Result<Option<SessionData>, SessionError> {
        let key = id.store_key();
        let Some(sealed) = self.store.load(&key).await? else {
            return Ok(None);
        };
        Ok(self
            .open_record(&key, &sealed)
            .filter(|d| d.expires_at > self.now_secs()))
    }

    /// Takes the session's refresh lock for `ttl`, shared by every replica on
    /// the same store; returns the owner token to unlock with, or `None` when
    /// someone else holds it.
    pub async fn try_lock(
        &self,
        id: &SessionId,
        ttl: Duration,
    ) -> Result<Option<String>, SessionError> {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let owner = B64.encode(b);
        let taken = self
            .store
            .claim(&format!("refresh:{}", id.store_key()), &owner, ttl)
            .await?;
        Ok(taken.then_some(owner))
    }

    pub async fn unlock(&self, id: &SessionId, owner: &str) -> Result<(), SessionError> {
        Ok(self
            .store
            .release(&format!("refresh:{}", id.store_key()), owner)
            .await?)
    }

    /// `true` the first time `name` is seen within `ttl` by any replica
    /// (replay protection). `name` is hashed: the store learns nothing from it.
    pub async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, SessionError> {
        let key = format!("once:{}", B64.encode(Sha256::digest(name.as_bytes())));
        Ok(self.store.claim(&key, "1", ttl).await?)
    }

    fn open_record(&self, key: &str, sealed: &[u8]) -> Option<SessionData> {
        let opened = self.ring.open(sealed, key.as_bytes()).ok()?;
        serde_json::from_slice(&opened.plaintext).ok()
    }

    /// Writes a session's record; `false` when `Write::Replace` found none.
    async fn write(
        &self,
        id: &SessionId,
        data: &SessionData,
        how: Write,
    ) -> Result<bool, SessionError> {
        let key = id.store_key();
        let plain = serde_json::to_vec(data).expect("session data serializes");
        let sealed = self.ring.seal(&plain, key.as_bytes());
        let remaining_absolute = (data.expires_at - self.now_secs()).max(1) as u64;
        let ttl = self.idle.min(Duration::from_secs(remaining_absolute));
        // Index before record: a live record is always findable by sub/sid
        // (the other order could leave one that logout-everywhere misses).
        let names = self.primary_index_names(data);
        try_join_all(names.iter().map(|n| self.store.index_add(n, &key, ttl))).await?;
        Ok(match how {
            Write::Create => self.store.save(&key, sealed, ttl).await.map(|()| true)?,
            Write::Replace => self.store.replace(&key, sealed, ttl).await?,
        })
    }

    /// `base64url(id) . base64url(mac)`.
    fn cookie_value(&self, id: &SessionId) -> String {
        format!("{}.{}", B64.encode(id.0), B64.encode(self.ring.sign(&id.0)))
    }

    /// The id a cookie names, and whether its MAC came from a non-primary key.
    fn parse_cookie(&self, value: &str) -> Option<(SessionId, bool)> {
        let (id, tag) = value.split_once('.')?;
        if id.len() != 43 || tag.len() > 32 {
            return None;
        }
        let id: [u8; 32] = B64.decode(id).ok()?.try_into().ok()?;
        let tag = B64.decode(tag).ok()?;
        let stale = self.ring.verify_stale(&id, &tag)?;
        Some((SessionId(id), stale))
    }

    /// A per-session token for `GET /auth/logout?sid=…`: proves the link came
    /// from this session's own page (a cross-site GET cannot know it).
    pub fn logout_token(&self, id: &SessionId) -> String {
        let mut msg = b"logout\0".to_vec();
        msg.extend_from_slice(&id.0);
        B64.encode(self.ring.sign(&msg))
    }

    pub fn check_logout_token(&self, id: &SessionId, token: &str) -> bool {
        let mut msg = b"logout\0".to_vec();
        msg.extend_from_slice(&id.0);
        B64.decode(token)
            .map(|t| self.ring.verify(&msg, &t))
            .unwrap_or(false)
    }

    /// Seals small browser-held state (the pending-login cookie).
    pub fn seal_for_cookie(&self, plaintext: &[u8], purpose: &str) -> String {
        B64.encode(self.ring.seal(plaintext, purpose.as_bytes()))
    }

    pub fn open_from_cookie(&self, value: &str, purpose: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(value).ok()?;
        self.ring
            .open(&raw, purpose.as_bytes())
            .ok()
            .map(|o| o.plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(expires_in: i64) -> SessionData {
        let now = Clock::system().now_secs();
        SessionData {
            sub: "alice".into(),
            sid: None,
            claims: Default::default(),
            id_token: "idtok-SECRET".into(),
            access_token: "access-SECRET".into(),
            refresh_token: Some("refresh-SECRET".into()),
            access_expires_at: Some(now + 300),
            scope: None,
            created_at: now,
            expires_at: now + expires_in,
            last_seen: now,
            refreshed_at: None,
            user_agent: None,
        }
    }

    fn sessions(keys: &[[u8; 32]], store: Arc<MemoryStore>) -> Sessions {
        Sessions::new(
            Arc::new(KeyRing::new(keys)),
            store,
            Duration::from_secs(600),
            Duration::from_secs(3600),
        )
    }

    #[tokio::test]
    async fn create_load_delete_and_nothing_in_clear() {
        let store = Arc::new(MemoryStore::new(10));
        let s = sessions(&[[7; 32]], store.clone());
        let (id, cookie) = s.create(data(3600)).await.unwrap();
        let loaded = s.load(&cookie).await.unwrap().expect("session");
        assert_eq!(loaded.data.sub, "alice");
        let raw = store.raw(&id.store_key()).unwrap();
        for needle in ["SECRET", "alice"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in clear"
            );
        }
        assert!(
            !store.keys().iter().any(|k| cookie.contains(k.as_str())),
            "store key derived from cookie"
        );
        s.delete(&id).await.unwrap();
        assert!(s.load(&cookie).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bad_cookies_are_signed_out_not_errors() {
        let store = Arc::new(MemoryStore::new(10));
        let s = sessions(&[[7; 32]], store.clone());
        let (_, cookie) = s.create(data(3600)).await.unwrap();
        let (id_part, tag_part) = cookie.split_once('.').unwrap();
        let mut flipped = id_part.to_string().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{}.{tag_part}", String::from_utf8(flipped).unwrap());
        let foreign = sessions(&[[9; 32]], store.clone()).cookie_value(&SessionId([1; 32]));
        for bad in [
            "".to_string(),
            ".".to_string(),
            "garbage".to_string(),
            id_part.to_string(),
            cookie[..cookie.len() - 3].to_string(),
            flipped,
            foreign,
            format!("{cookie}.extra"),
            "é".repeat(100),
            "A".repeat(10_000),
        ] {
            assert!(s.load(&bad).await.unwrap().is_none(), "{bad:?}");
        }
        assert!(s.load(&cookie).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn rotation_reseals_and_removed_key_signs_out() {
        let store = Arc::new(MemoryStore::new(10));
        let old = sessions(&[[1; 32]], store.clone());
        let (id, cookie) = old.create(data(3600)).await.unwrap();
        let before = store.raw(&id.store_key()).unwrap();
        let (_, untouched) = old.create(data(3600)).await.unwrap();
        let rotated = sessions(&[[2; 32], [1; 32]], store.clone());
        let loaded = rotated
            .load(&cookie)
            .await
            .unwrap()
            .expect("old key still opens");
        let after = store.raw(&id.store_key()).unwrap();
        assert_ne!(before[1..5], after[1..5], "re-sealed under the new key");
        let reissued = loaded
            .reissue_cookie
            .expect("cookie re-issued under the new key");
        assert!(rotated
            .load(&reissued)
            .await
            .unwrap()
            .unwrap()
            .reissue_cookie
            .is_none());
        // The old key leaves the ring: the session that was used (re-sealed,
        // cookie re-issued) lives on; the one that was not is signed out.
        let removed = sessions(&[[2; 32]], store.clone());
        assert!(removed.load(&reissued).await.unwrap().is_some());
        assert!(removed.load(&cookie).await.unwrap().is_none());
        assert!(removed.load(&untouched).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn expired_sessions_are_gone() {
        let store = Arc::new(MemoryStore::new(10));
        let s = sessions(&[[1; 32]], store.clone());
        let (_, cookie) = s.create(data(-1)).await.unwrap();
        assert!(s.load(&cookie).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn idle_timeout_follows_the_clock_and_slides_with_use() {
        let store = Arc::new(MemoryStore::new(10));
        let time = crate::clock::TestClock::new();
        // Idle 600 s, absolute 3600 s.
        let s = sessions(&[[1; 32]], store.clone()).with_clock(time.clock());
        let (id, cookie) = s.create(data(3600)).await.unwrap();
        // Used within the idle window, twice: each use moves the window on.
        for _ in 0..2 {
            time.advance(Duration::from_secs(599));
            assert!(s.load(&cookie).await.unwrap().is_some(), "used in time");
        }
        time.advance(Duration::from_secs(600));
        assert!(s.load(&cookie).await.unwrap().is_none(), "idle too long");
        assert!(store.raw(&id.store_key()).is_none(), "the record is gone");
    }

    #[tokio::test]
    async fn absolute_timeout_follows_the_clock_whatever_the_use() {
        let store = Arc::new(MemoryStore::new(10));
        let time = crate::clock::TestClock::new();
        let s = sessions(&[[1; 32]], store.clone()).with_clock(time.clock());
        let mut d = data(0);
        d.expires_at = s.absolute_deadline();
        let (id, cookie) = s.create(d).await.unwrap();
        // Used every 500 s (well inside the idle window) until 3500 s ...
        for _ in 0..7 {
            time.advance(Duration::from_secs(500));
            assert!(s.load(&cookie).await.unwrap().is_some(), "before the end");
        }
        // ... and over at 3600 s, however recently it was used.
        time.advance(Duration::from_secs(100));
        assert!(
            s.load(&cookie).await.unwrap().is_none(),
            "past the absolute end"
        );
        assert!(store.raw(&id.store_key()).is_none(), "the record is gone");
    }

    #[test]
    fn index_names_are_keyed_and_opaque() {
        let store = Arc::new(MemoryStore::new(1));
        let one = sessions(&[[1; 32]], store.clone());
        let rotated = sessions(&[[2; 32], [1; 32]], store);
        let names = rotated.index_names(IndexKind::Sub, "alice@example.com");
        assert_eq!(names.len(), 2, "one per ring key");
        assert_eq!(
            names[1],
            one.index_names(IndexKind::Sub, "alice@example.com")[0],
            "found after rotation"
        );
        assert_ne!(names[0], names[1]);
        assert!(names
            .iter()
            .all(|n| n.starts_with("sub:") && !n.contains("alice")));
        assert_ne!(
            rotated.index_names(IndexKind::Sid, "alice@example.com")[0],
            names[0],
            "sub and sid never collide"
        );
        let mut d = data(60);
        d.sid = Some("s1".into());
        assert_eq!(
            rotated.primary_index_names(&d)[0],
            rotated.index_names(IndexKind::Sub, "alice")[0]
        );
    }

    #[tokio::test]
    async fn an_ended_session_is_not_brought_back_by_a_late_write() {
        let store = Arc::new(MemoryStore::new(10));
        let time = crate::clock::TestClock::new();
        let s = sessions(&[[7; 32]], store.clone()).with_clock(time.clock());
        let (id, cookie) = s.create(data(3600)).await.unwrap();
        // A refresh reads the session, the admin API ends it meanwhile, the
        // refresh writes its new tokens back.
        let read = s.load(&cookie).await.unwrap().expect("live");
        assert_eq!(s.delete_all_of_sub("alice").await.unwrap(), 1);
        s.save(&id, &read.data).await.unwrap();
        assert!(store.raw(&id.store_key()).is_none(), "not recreated");
        assert!(s.load(&cookie).await.unwrap().is_none());
        assert!(s.list_of_sub("alice").await.unwrap().is_empty());
        // The same for the idle-window touch of a read.
        let (id, cookie) = s.create(data(3600)).await.unwrap();
        time.advance(Duration::from_secs(120));
        store.delete(&id.store_key()).await.unwrap();
        assert!(s.load(&cookie).await.unwrap().is_none());
        assert!(store.raw(&id.store_key()).is_none(), "not recreated");
        // A live session is written as ever.
        let (id, cookie) = s.create(data(3600)).await.unwrap();
        let mut d = (*s.load(&cookie).await.unwrap().unwrap().data).clone();
        d.access_token = "rotated-SECRET".into();
        s.save(&id, &d).await.unwrap();
        let loaded = s.load(&cookie).await.unwrap().unwrap();
        assert_eq!(loaded.data.access_token, "rotated-SECRET");
    }

    #[test]
    fn records_written_before_user_agent_existed_still_load() {
        let mut old = serde_json::to_value(data(60)).unwrap();
        old.as_object_mut().unwrap().remove("user_agent");
        let loaded: SessionData = serde_json::from_value(old).unwrap();
        assert_eq!(loaded.user_agent, None);
        assert_eq!(loaded.sub, "alice");
    }

    #[tokio::test]
    async fn admin_listing_and_ending_by_handle() {
        let store = Arc::new(MemoryStore::new(10));
        let s = sessions(&[[7; 32]], store.clone());
        let mut with_agent = data(3600);
        with_agent.user_agent = Some("Firefox 128 on Linux".into());
        let (id_a, cookie_a) = s.create(with_agent).await.unwrap();
        let (_, cookie_b) = s.create(data(3600)).await.unwrap();
        let mut bob = data(3600);
        bob.sub = "bob".into();
        let (_, cookie_bob) = s.create(bob).await.unwrap();

        let listed = s.list_of_sub("alice").await.unwrap();
        assert_eq!(listed.len(), 2);
        let text = serde_json::to_string(&listed).unwrap();
        for secret in ["SECRET", &cookie_a, &cookie_b, &id_a.store_key()] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let a = listed
            .iter()
            .find(|l| l.user_agent.as_deref() == Some("Firefox 128 on Linux"))
            .expect("alice's first session");
        assert_eq!(a.handle, s.handle_of(&id_a.store_key()));
        assert_eq!(a.handle.len(), 22);
        assert!(
            s.load(&a.handle).await.unwrap().is_none(),
            "a handle is no cookie"
        );

        // Another user's sub, or an unknown handle: nothing ends.
        assert!(!s.delete_by_handle("bob", &a.handle).await.unwrap());
        assert!(!s.delete_by_handle("alice", "nope").await.unwrap());
        assert!(s.load(&cookie_a).await.unwrap().is_some());
        assert!(s.delete_by_handle("alice", &a.handle).await.unwrap());
        assert!(s.load(&cookie_a).await.unwrap().is_none());
        assert!(
            !s.delete_by_handle("alice", &a.handle).await.unwrap(),
            "once"
        );
        assert!(s.load(&cookie_b).await.unwrap().is_some());
        assert!(s.load(&cookie_bob).await.unwrap().is_some());
        assert_eq!(s.list_of_sub("alice").await.unwrap().len(), 1);
        assert!(s.list_of_sub("nobody").await.unwrap().is_empty());
    }

    #[test]
    fn logout_token_is_per_session() {
        let s = sessions(&[[1; 32]], Arc::new(MemoryStore::new(1)));
        let a = SessionId([1; 32]);
        let b = SessionId([2; 32]);
        let t = s.logout_token(&a);
        assert!(s.check_logout_token(&a, &t));
        assert!(!s.check_logout_token(&b, &t));
        assert!(!s.check_logout_token(&a, "nope"));
    }
}
