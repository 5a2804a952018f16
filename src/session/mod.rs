//! Server-side sessions. The browser holds only an opaque, MAC-authenticated
//! id; the record (tokens, claims) is sealed with the key ring and kept in a
//! [`SessionStore`] under a key derived from the id, so neither a store dump
//! nor a cookie alone reveals or forges anything.

mod crypto;
mod store;

pub use crypto::{generate_key, CryptoError, KeyRing};
pub use store::{MemoryStore, SessionStore, StoreError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    pub created_at: i64,
    /// Unix seconds: the absolute end of this session, whatever the activity.
    pub expires_at: i64,
    /// Unix seconds of the last write, for the sliding idle timeout.
    pub last_seen: i64,
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

/// A loaded session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub data: SessionData,
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
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Sessions {
    pub fn new(ring: Arc<KeyRing>, store: Arc<dyn SessionStore>, idle: Duration, absolute: Duration) -> Self {
        Sessions { ring, store, idle, absolute }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The absolute end of a session created now.
    pub fn absolute_deadline(&self) -> i64 {
        now_secs() + self.absolute.as_secs() as i64
    }

    /// Stores `data` under a fresh id and returns the cookie value for it.
    pub async fn create(&self, mut data: SessionData) -> Result<(SessionId, String), SessionError> {
        let id = SessionId::random();
        data.last_seen = now_secs();
        self.write(&id, &data).await?;
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
        let opened = match self.ring.open(&sealed, key.as_bytes()) {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(error = %e, "session record cannot be opened; treating as signed out");
                return Ok(None);
            }
        };
        let Ok(data) = serde_json::from_slice::<SessionData>(&opened.plaintext) else {
            tracing::warn!("session record does not decode; treating as signed out");
            return Ok(None);
        };
        let now = now_secs();
        if data.expires_at <= now || data.last_seen + self.idle.as_secs() as i64 <= now {
            self.store.delete(&key).await?;
            return Ok(None);
        }
        let reissue_cookie = stale_cookie.then(|| self.cookie_value(&id));
        let session = Session { id, data, reissue_cookie };
        // Reading is activity: slide the idle window, but write at most once a
        // minute (or a twentieth of the window) per session to keep reads cheap.
        let touch_every = (self.idle.as_secs() as i64 / 20).clamp(1, 60);
        if opened.stale_key || now - session.data.last_seen >= touch_every {
            let mut data = session.data.clone();
            data.last_seen = now;
            self.write(&session.id, &data).await?;
            return Ok(Some(Session { data, ..session }));
        }
        Ok(Some(session))
    }

    /// Writes `data` back (after a refresh, for example).
    pub async fn save(&self, id: &SessionId, data: &SessionData) -> Result<(), SessionError> {
        self.write(id, data).await
    }

    pub async fn delete(&self, id: &SessionId) -> Result<(), SessionError> {
        Ok(self.store.delete(&id.store_key()).await?)
    }

    async fn write(&self, id: &SessionId, data: &SessionData) -> Result<(), SessionError> {
        let key = id.store_key();
        let plain = serde_json::to_vec(data).expect("session data serializes");
        let sealed = self.ring.seal(&plain, key.as_bytes());
        let remaining_absolute = (data.expires_at - now_secs()).max(1) as u64;
        let ttl = self.idle.min(Duration::from_secs(remaining_absolute));
        Ok(self.store.save(&key, sealed, ttl).await?)
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
        B64.decode(token).map(|t| self.ring.verify(&msg, &t)).unwrap_or(false)
    }

    /// Seals small browser-held state (the pending-login cookie).
    pub fn seal_for_cookie(&self, plaintext: &[u8], purpose: &str) -> String {
        B64.encode(self.ring.seal(plaintext, purpose.as_bytes()))
    }

    pub fn open_from_cookie(&self, value: &str, purpose: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(value).ok()?;
        self.ring.open(&raw, purpose.as_bytes()).ok().map(|o| o.plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(expires_in: i64) -> SessionData {
        let now = now_secs();
        SessionData {
            sub: "alice".into(),
            sid: None,
            claims: Default::default(),
            id_token: "idtok-SECRET".into(),
            access_token: "access-SECRET".into(),
            refresh_token: Some("refresh-SECRET".into()),
            access_expires_at: Some(now + 300),
            created_at: now,
            expires_at: now + expires_in,
            last_seen: now,
        }
    }

    fn sessions(keys: &[[u8; 32]], store: Arc<MemoryStore>) -> Sessions {
        Sessions::new(Arc::new(KeyRing::new(keys)), store, Duration::from_secs(600), Duration::from_secs(3600))
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
            assert!(!raw.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in clear");
        }
        assert!(!store.keys().iter().any(|k| cookie.contains(k.as_str())), "store key derived from cookie");
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
        let loaded = rotated.load(&cookie).await.unwrap().expect("old key still opens");
        let after = store.raw(&id.store_key()).unwrap();
        assert_ne!(before[1..5], after[1..5], "re-sealed under the new key");
        let reissued = loaded.reissue_cookie.expect("cookie re-issued under the new key");
        assert!(rotated.load(&reissued).await.unwrap().unwrap().reissue_cookie.is_none());
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
