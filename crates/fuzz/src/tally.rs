//! `Tally`: named counters a check (on the worker thread) adds to and the test reads after the
//! run, to assert that the inputs reached every outcome that matters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// Shared named counters; clones count into the same map.
#[derive(Clone, Default)]
pub struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    /// No counts yet.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Adds `n` to `what`.
    pub fn add(&self, what: &str, n: u64) {
        let mut counts = self.0.lock();
        match counts.get_mut(what) {
            Some(count) => *count += n,
            None => {
                counts.insert(what.to_string(), n);
            }
        }
    }

    /// The count of `what` (0 if never added).
    pub fn count(&self, what: &str) -> u64 {
        self.0.lock().get(what).copied().unwrap_or_default()
    }

    /// All counts.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().clone()
    }
}

impl fmt::Debug for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_count_together() {
        let tally = Tally::new();
        let other = tally.clone();
        std::thread::spawn(move || other.add("a", 2))
            .join()
            .expect("thread");
        tally.add("a", 1);
        tally.add("b", 0);
        assert_eq!(
            (tally.count("a"), tally.count("b"), tally.count("c")),
            (3, 0, 0)
        );
        assert_eq!(format!("{tally:?}"), r#"{"a": 3, "b": 0}"#);
    }
}
