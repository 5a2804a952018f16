//! Session stores: where sealed records live. Stores only ever see opaque keys
//! and sealed bytes; sealing happens above them (`session::Sessions`), so no
//! store can leak a token. The memory store is bounded and expires records.
//!
//! Besides records, a store keeps index sets (user `sub` / IdP `sid` -> record
//! keys) for back-channel logout and "sign out everywhere". Index names are
//! keyed hashes chosen by `Sessions`; the store only guarantees that an index
//! lives as long as its longest-lived member and that members whose record is
//! gone are dropped when the index is read.

use crate::clock::Clock;
use async_trait::async_trait;
use moka::sync::Cache;
use std::collections::HashMap;
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
    /// Like `save`, but only while `key` still holds a record: `false` (and
    /// nothing written) when it is gone. A rewrite of a session that was
    /// ended meanwhile (by logout, back-channel logout or the admin API, on
    /// any replica) must not bring it back.
    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Adds record key `member` to the set `index`, and keeps the set for at
    /// least `ttl` (the member record's own lifetime). Written before the
    /// record, so a record is never live without being findable.
    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError>;
    /// The members of `index` whose records still exist. Members whose record
    /// is gone (deleted, expired, evicted) are dropped from the set.
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `member` from `index` (the record is being deleted).
    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError>;
    /// Sets `key` to `owner` unless it is set; it disappears after `ttl`.
    /// `true` when this call set it. Serves as a lock (one token refresh per
    /// session across replicas) and as a once-only marker (a logout token's `jti`).
    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Deletes `key` if it still holds `owner`: a lock that expired and was
    /// taken by someone else is left alone.
    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError>;
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
    fn expire_after_update(
        &self,
        _k: &String,
        v: &Entry,
        now: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.deadline.saturating_duration_since(now))
    }
}

/// One index set: record key -> when that member's record expires. The set
/// itself expires with its last member.
#[derive(Clone, Default)]
struct IndexEntry {
    members: Arc<HashMap<String, Instant>>,
    deadline: Option<Instant>,
}

/// Above this many members, an index add first drops members whose record is
/// gone, so one user signing in endlessly cannot grow a set without bound.
const INDEX_PRUNE_AT: usize = 1_000;

struct IndexDeadline;

impl moka::Expiry<String, IndexEntry> for IndexDeadline {
    fn expire_after_create(&self, _k: &String, v: &IndexEntry, now: Instant) -> Option<Duration> {
        v.deadline.map(|d| d.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _k: &String,
        v: &IndexEntry,
        now: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        v.deadline.map(|d| d.saturating_duration_since(now))
    }
}

/// In-process store for a single replica: bounded (least-recently-used records
/// are evicted past `max_sessions`) and purged as records expire.
///
/// Deadlines are instants of the store's [`Clock`] (the gateway's), so a
/// test that moves the clock sees records, index entries and locks expire as
/// Redis would let them; moka purges by real time, which only ever keeps an
/// entry in memory longer than it is readable.
pub struct MemoryStore {
    cache: Cache<String, Entry>,
    index: Cache<String, IndexEntry>,
    claims: Cache<String, Entry>,
    clock: Clock,
}

impl MemoryStore {
    pub fn new(max_sessions: u64) -> Self {
        Self::with_clock(max_sessions, Clock::system())
    }

    /// A store whose deadlines follow `clock`.
    pub fn with_clock(max_sessions: u64, clock: Clock) -> Self {
        MemoryStore {
            clock,
            // Plain LRU: moka's default admission policy may refuse a new
            // record when full, which would sign a user out right at sign-in.
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(Deadline)
                .build(),
            // At most two sets (sub, sid) per live record. Plain LRU rather than
            // moka's frequency-based admission: a new user's set must not be
            // refused, or "sign out everywhere" would miss their sessions.
            index: Cache::builder()
                .max_capacity(max_sessions.saturating_mul(2))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(IndexDeadline)
                .build(),
            claims: Cache::builder()
                .max_capacity(max_sessions.saturating_mul(2))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(Deadline)
                .build(),
        }
    }

    fn now(&self) -> Instant {
        self.clock.instant()
    }

    fn record_live(&self, key: &str, now: Instant) -> bool {
        self.cache.get(key).is_some_and(|e| e.deadline > now)
    }

    /// The raw sealed bytes under `key`, for tests that inspect what is stored.
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.now();
        self.cache
            .get(key)
            .filter(|e| e.deadline > now)
            .map(|e| e.value.to_vec())
    }

    /// Every key held (past its deadline is gone, as in Redis, even before
    /// moka purges it), for tests that inspect what is stored.
    pub fn keys(&self) -> Vec<String> {
        let now = self.now();
        self.cache
            .iter()
            .filter(|(_, e)| e.deadline > now)
            .map(|(k, _)| k.as_ref().clone())
            .collect()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .cache
            .get(key)
            .filter(|e| e.deadline > self.now())
            .map(|e| e.value.to_vec()))
    }

    async fn save(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.cache.insert(
            key.to_string(),
            Entry {
                value: value.into(),
                deadline: self.now() + ttl,
            },
        );
        Ok(())
    }

    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        use moka::ops::compute::Op;
        let now = self.now();
        let mut replaced = false;
        // Atomic per key: a delete cannot slip between the check and the write.
        self.cache
            .entry(key.to_string())
            .and_compute_with(|old| match old {
                Some(e) if e.value().deadline > now => {
                    replaced = true;
                    Op::Put(Entry {
                        value: value.into(),
                        deadline: now + ttl,
                    })
                }
                _ => Op::Nop,
            });
        Ok(replaced)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        Ok(())
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = self.now();
        // Atomic per index: concurrent adds for one user do not lose members.
        self.index.entry(index.to_string()).and_upsert_with(|old| {
            let mut members = old
                .map(|e| (*e.into_value().members).clone())
                .unwrap_or_default();
            members.retain(|_, d| *d > now);
            if members.len() >= INDEX_PRUNE_AT {
                members.retain(|k, _| self.record_live(k, now));
            }
            members.insert(member.to_string(), now + ttl);
            let deadline = members.values().max().copied();
            IndexEntry {
                members: Arc::new(members),
                deadline,
            }
        });
        Ok(())
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let now = self.now();
        let Some(entry) = self.index.get(index) else {
            return Ok(Vec::new());
        };
        let (live, gone): (Vec<String>, Vec<String>) = entry
            .members
            .keys()
            .cloned()
            .partition(|k| entry.members[k] > now && self.record_live(k, now));
        for k in &gone {
            self.index_remove(index, k).await?;
        }
        Ok(live)
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError> {
        use moka::ops::compute::Op;
        self.index.entry(index.to_string()).and_compute_with(|old| {
            let Some(old) = old else { return Op::Nop };
            let old = old.into_value();
            if !old.members.contains_key(member) {
                return Op::Nop;
            }
            let mut members = (*old.members).clone();
            members.remove(member);
            if members.is_empty() {
                return Op::Remove;
            }
            let deadline = members.values().max().copied();
            Op::Put(IndexEntry {
                members: Arc::new(members),
                deadline,
            })
        });
        Ok(())
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.now();
        let entry = self.claims.entry(key.to_string()).or_insert_with_if(
            || Entry {
                value: owner.as_bytes().into(),
                deadline: now + ttl,
            },
            // An entry past its deadline that moka has not dropped yet is free.
            |e| e.deadline <= now,
        );
        Ok(entry.is_fresh())
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        if self
            .claims
            .get(key)
            .is_some_and(|e| &*e.value == owner.as_bytes())
        {
            self.claims.invalidate(key);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn len_hint(&self) -> Option<u64> {
        // moka counts lazily; settle pending writes and expiries first.
        self.cache.run_pending_tasks();
        Some(self.cache.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_expire_at_their_own_deadline() {
        let s = MemoryStore::new(10);
        s.save("short", b"a".to_vec(), Duration::from_millis(50))
            .await
            .unwrap();
        s.save("long", b"b".to_vec(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(s.load("short").await.unwrap().as_deref(), Some(&b"a"[..]));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.load("short").await.unwrap(), None);
        assert_eq!(s.load("long").await.unwrap().as_deref(), Some(&b"b"[..]));
        s.delete("long").await.unwrap();
        assert_eq!(s.load("long").await.unwrap(), None);
    }

    #[tokio::test]
    async fn deadlines_follow_the_stores_clock() {
        let clock = crate::clock::TestClock::new();
        let s = MemoryStore::with_clock(10, clock.clock());
        s.save("k", b"v".to_vec(), Duration::from_secs(60))
            .await
            .unwrap();
        s.index_add("user", "k", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(s.claim("lock", "a", Duration::from_secs(5)).await.unwrap());
        clock.advance(Duration::from_secs(4));
        assert!(!s.claim("lock", "b", Duration::from_secs(5)).await.unwrap());
        clock.advance(Duration::from_secs(2));
        assert!(
            s.claim("lock", "b", Duration::from_secs(5)).await.unwrap(),
            "a lock past its deadline is free"
        );
        assert_eq!(s.index_members("user").await.unwrap(), vec!["k"]);
        clock.advance(Duration::from_secs(60));
        assert_eq!(s.load("k").await.unwrap(), None);
        assert!(s.index_members("user").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn replace_writes_only_over_a_live_record() {
        let s = MemoryStore::new(10);
        let ttl = Duration::from_secs(60);
        assert!(!s.replace("k", b"a".to_vec(), ttl).await.unwrap());
        assert_eq!(s.load("k").await.unwrap(), None, "not created");
        s.save("k", b"a".to_vec(), ttl).await.unwrap();
        assert!(s.replace("k", b"b".to_vec(), ttl).await.unwrap());
        assert_eq!(s.load("k").await.unwrap().as_deref(), Some(&b"b"[..]));
        s.delete("k").await.unwrap();
        assert!(!s.replace("k", b"c".to_vec(), ttl).await.unwrap());
        assert_eq!(s.load("k").await.unwrap(), None, "not brought back");
        s.save("short", b"a".to_vec(), Duration::from_millis(20))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(!s.replace("short", b"b".to_vec(), ttl).await.unwrap());
        assert_eq!(s.load("short").await.unwrap(), None, "expired stays gone");
    }

    #[tokio::test]
    async fn store_is_bounded() {
        let s = MemoryStore::new(100);
        for i in 0..1000 {
            s.save(&format!("k{i}"), vec![0; 8], Duration::from_secs(60))
                .await
                .unwrap();
        }
        s.cache.run_pending_tasks();
        assert!(s.cache.entry_count() <= 100, "{}", s.cache.entry_count());
        // The newest record is kept, the oldest went.
        assert!(
            s.load("k999").await.unwrap().is_some(),
            "a new session was refused"
        );
        assert!(s.load("k0").await.unwrap().is_none());
    }
}
