//! The gateway's clock. Everything that compares against the time of day
//! (token expiry, session idle and absolute timeouts, refresh windows and
//! backoffs, the bearer cache, JWT `exp`/`nbf`/`iat`, pending logins, JWKS
//! cooldowns) reads the [`Clock`] its state holds, never the system clock
//! directly.
//!
//! A [`Clock`] reads the system time, shifted by an offset only a
//! [`TestClock`] can move. Production code builds [`Clock::system`] and has
//! no handle to move it; tests build a `TestClock` per gateway, so moving
//! one gateway's time leaves every other gateway in the process alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The time, as the gateway sees it. Cheap to clone; clones share the offset.
#[derive(Clone, Default)]
pub struct Clock {
    /// Nanoseconds ahead of the system clock; `None` for the system clock
    /// itself (no atomic read on the hot path).
    offset: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock: what production runs on.
    pub fn system() -> Clock {
        Clock { offset: None }
    }

    fn offset(&self) -> Duration {
        self.offset.as_ref().map_or(Duration::ZERO, |o| {
            Duration::from_nanos(o.load(Ordering::Relaxed))
        })
    }

    /// The time of day.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.offset()
    }

    /// Unix seconds: what session records and JWT claims hold.
    pub fn now_secs(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// A monotonic instant moved by the same offset, for deadlines kept in
    /// memory (backoffs, cooldowns). Only compare it with other instants of
    /// this clock.
    pub fn instant(&self) -> Instant {
        Instant::now() + self.offset()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            None => f.write_str("Clock(system)"),
            Some(_) => write!(f, "Clock(system + {:?})", self.offset()),
        }
    }
}

/// For tests: a clock that starts at the system time and moves forward when
/// told to. Hand [`TestClock::clock`] to the state under test and keep this
/// handle to move it. Clones move together (replicas in one test share time).
#[derive(Clone, Default)]
pub struct TestClock {
    offset: Arc<AtomicU64>,
}

impl TestClock {
    pub fn new() -> TestClock {
        TestClock::default()
    }

    /// The clock to give the code under test; it follows every `advance`.
    pub fn clock(&self) -> Clock {
        Clock {
            offset: Some(self.offset.clone()),
        }
    }

    /// Moves the time forward by `by` for every clone of [`Self::clock`].
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Saturating: time never moves backwards, however far a test goes.
        let _ = self
            .offset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(nanos))
            });
    }

    /// How far ahead of the system clock it is.
    pub fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_reads_the_system_time() {
        let before = SystemTime::now();
        let now = Clock::system().now();
        assert!(now >= before && now <= SystemTime::now());
        assert!((Clock::default().now_secs() - Clock::system().now_secs()).abs() <= 1);
    }

    #[test]
    fn a_test_clock_moves_its_clones_and_nothing_else() {
        let test = TestClock::new();
        let (a, b) = (test.clock(), test.clock());
        let system = Clock::system();
        let start = a.now_secs();
        let instant = a.instant();
        test.advance(Duration::from_secs(3600));
        assert!(a.now_secs() >= start + 3600);
        assert!(b.now_secs() >= start + 3600, "clones share the offset");
        assert!(a.instant() >= instant + Duration::from_secs(3600));
        assert!(system.now_secs() < start + 3600, "the system clock stays");
        assert!(
            TestClock::new().clock().now_secs() < start + 3600,
            "other test clocks stay"
        );
        assert_eq!(test.offset(), Duration::from_secs(3600));
        test.advance(Duration::from_millis(500));
        assert_eq!(test.offset(), Duration::from_millis(3_600_500));
    }

    #[test]
    fn advancing_far_never_moves_time_backwards() {
        // `advance` saturates the duration it is given but then `fetch_add`s,
        // which wraps: a test advancing past ~584 years in steps sees the
        // clock jump back to the system time.
        let test = TestClock::new();
        test.advance(Duration::from_secs(400 * 365 * 86_400));
        let far = test.clock().now_secs();
        test.advance(Duration::from_secs(400 * 365 * 86_400));
        assert!(test.clock().now_secs() >= far, "time went backwards");
    }
}
