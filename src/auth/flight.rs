//! The bookkeeping of single-flight work (token refreshes, machine-token
//! fetches): a map of what is in flight, whose entry must go when the flight
//! ends, however it ends. A flight that panicked and left its entry behind
//! would hand every later caller a closed channel: that key would fail until
//! the process restarts.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Removes `key` from `flights` when dropped: at the end of the flight's
/// task, or while it unwinds from a panic.
pub struct Landing<'a, K: Hash + Eq, V> {
    pub flights: &'a Mutex<HashMap<K, V>>,
    pub key: K,
}

impl<K: Hash + Eq, V> Drop for Landing<'_, K, V> {
    fn drop(&mut self) {
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_flight_that_panics_still_lands() {
        let flights = Arc::new(Mutex::new(HashMap::from([("k", 1)])));
        let held = flights.clone();
        let task = tokio::spawn(async move {
            let _landing = Landing {
                flights: &*held,
                key: "k",
            };
            panic!("the flight failed hard");
        });
        assert!(task.await.is_err(), "the task panicked");
        assert!(flights.lock().unwrap().is_empty(), "its entry is gone");
    }
}
