//! Memory per session in the memory store: creates N sessions (default
//! 100 000) through the real session code (`Sessions::create`: JSON encode,
//! AES-256-GCM seal, sub/sid index entries, store write), each for a distinct
//! user with tokens of realistic size, and reports the process's RSS before
//! and after. Run by `bench/run`; alone: `cargo bench --bench session_memory -- --sessions 100000`.
//!
//! Prints a human line and one `MEM_JSON {…}` line for scripts.

#[path = "common/mod.rs"]
mod common;

use oidc_bff::session::{KeyRing, MemoryStore, SessionStore, Sessions};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut n: usize = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--sessions" {
            n = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--sessions N");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The store as the gateway builds it with `max_sessions` = n.
    let store = Arc::new(MemoryStore::new(n as u64));
    let sessions = Sessions::new(
        Arc::new(KeyRing::new(&[[7; 32]])),
        store.clone(),
        Duration::from_secs(8 * 3600),
        Duration::from_secs(24 * 3600),
    );
    // Built outside the measured region, then dropped: only what the store keeps counts.
    let sample = common::session_data("user-0000000");
    let record_bytes = serde_json::to_vec(&sample).unwrap().len() + 17 + 16;
    drop(sample);
    let before = rss_kb();
    let started = Instant::now();
    let cookies: usize = rt.block_on(async {
        let mut total = 0;
        for i in 0..n {
            let (_, cookie) = sessions
                .create(common::session_data(&format!("user-{i:07}")))
                .await
                .expect("create");
            total += cookie.len();
        }
        total
    });
    let elapsed = started.elapsed();
    // Let the cache apply its pending writes before counting.
    std::thread::sleep(Duration::from_millis(200));
    let live = rt.block_on(async {
        // A read settles moka's internal bookkeeping.
        let _ = store.load("settle").await;
        store.len_hint().unwrap_or(0)
    });
    let after = rss_kb();
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "{n} sessions: RSS {:.1} MB -> {:.1} MB, {per:.0} bytes per session \
         (sealed record {record_bytes} bytes, cookie {} bytes), {:.0} creates/s",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        cookies / n.max(1),
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "MEM_JSON {}",
        serde_json::json!({
            "sessions": n,
            "live": live,
            "rss_before_mb": before as f64 / 1024.0,
            "rss_after_mb": after as f64 / 1024.0,
            "bytes_per_session": per,
            "record_bytes": record_bytes,
            "creates_per_s": n as f64 / elapsed.as_secs_f64(),
        })
    );
}
