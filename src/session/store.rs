//! Session stores: where sealed records live. Stores only ever see opaque keys
//! and sealed bytes; sealing happens above them (`session::Sessions`), so no
//! store can leak a token. The memory store is bounded and expires records.

use async_trait::async_trait;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// A place for sealed session records, keyed by an opaque string.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` so that it disappears after `ttl`.
    async fn save(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Number of live records, where the store can tell cheaply.
    fn len_hint(&self) -> Option<u64> {
        None
    }
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    deadline: Instant,
}

/// Per-entry expiry: each record lives until its own deadline.
struct Deadline;

impl moka::Expiry<String, Entry> for Deadline {
    fn expire_after_create(&self, _k: &String, v: &Entry, now: Instant) -> Option<Duration> {
        Some(v.deadline.saturating_duration_since(now))
    }
    fn expire_after_update(&self, _k: &String, v: &Entry, now: Instant, _d: Option<Duration>) -> Option<Duration> {
        Some(v.deadline.saturating_duration_since(now))
    }
}

/// In-process store for a single replica: bounded (least-recently-used records
/// are evicted past `max_sessions`) and purged as records expire.
pub struct MemoryStore {
    cache: Cache<String, Entry>,
}

impl MemoryStore {
    pub fn new(max_sessions: u64) -> Self {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(Deadline)
                .build(),
        }
    }

    /// The raw sealed bytes under `key`, for tests that inspect what is stored.
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.get(key).map(|e| e.value.to_vec())
    }

    /// Every key held, for tests that inspect what is stored.
    pub fn keys(&self) -> Vec<String> {
        self.cache.iter().map(|(k, _)| (*k).clone()).collect()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .cache
            .get(key)
            .filter(|e| e.deadline > Instant::now())
            .map(|e| e.value.to_vec()))
    }

    async fn save(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.cache.insert(
            key.to_string(),
            Entry {
                value: value.into(),
                deadline: Instant::now() + ttl,
            },
        );
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.cache.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_expire_at_their_own_deadline() {
        let s = MemoryStore::new(10);
        s.save("short", b"a".to_vec(), Duration::from_millis(50)).await.unwrap();
        s.save("long", b"b".to_vec(), Duration::from_secs(60)).await.unwrap();
        assert_eq!(s.load("short").await.unwrap().as_deref(), Some(&b"a"[..]));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.load("short").await.unwrap(), None);
        assert_eq!(s.load("long").await.unwrap().as_deref(), Some(&b"b"[..]));
        s.delete("long").await.unwrap();
        assert_eq!(s.load("long").await.unwrap(), None);
    }

    #[tokio::test]
    async fn store_is_bounded() {
        let s = MemoryStore::new(100);
        for i in 0..1000 {
            s.save(&format!("k{i}"), vec![0; 8], Duration::from_secs(60)).await.unwrap();
        }
        s.cache.run_pending_tasks();
        assert!(s.cache.entry_count() <= 100, "{}", s.cache.entry_count());
    }
}
