//! The retry budget of a cluster: retries may add at most a share of the requests of a recent
//! window, so that during an outage retries cannot multiply the load on the upstream.
//!
//! ```text
//!  window (default 10 s) cut into 10 slots, each { slot number, requests, retries }
//!  request  ─► slot(now).requests += 1
//!  retry?   ─► retries(window) < max(min_retries, percent × requests(window)) ─► slot(now).retries += 1
//!                                                                          └─► refused (Envoy's retry overflow)
//! ```
//!
//! Envoy's `retry_budget` (Istio's `trafficPolicy.retryBudget`) bounds *concurrent* retries by
//! the active requests; when an outage makes attempts fail fast, that bounds neither the rate
//! of retries nor their share of the load. This budget counts requests and retries over a
//! sliding window instead (as Linkerd's and Finagle's do), so the extra load stays under
//! `percent` whatever the failures' latency; `min_retries` keeps retries usable at low traffic.
//! Lock-free: every request touches one slot's atomics; a retry decision sums ten slots.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 10;

/// How much retrying a cluster allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Retries as a percentage of the window's requests (Istio's default 20).
    pub percent: f64,
    /// Retries allowed in every window whatever the traffic (Istio's `minRetryConcurrency`, 3).
    pub min_retries: u32,
    /// The window requests and retries are counted over.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            percent: 20.0,
            min_retries: 3,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Which slot number (time since `start` / slot length) the counts belong to.
    number: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// A cluster's retry budget: shared by every request to the cluster.
#[derive(Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    start: Instant,
    slot_nanos: u64,
    slots: [Slot; SLOTS],
}

impl RetryBudget {
    /// A budget starting now (`start`); a zero window counts over one millisecond.
    pub fn new(config: BudgetConfig, start: Instant) -> Self {
        let window = u64::try_from(config.window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            config,
            start,
            slot_nanos: (window / SLOTS as u64).max(100_000),
            slots: Default::default(),
        }
    }

    /// The budget's settings.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Counts a request's first attempt.
    pub fn record_request(&self, now: Instant) {
        self.slot(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether one more retry fits in the budget; if it does, it is counted.
    pub fn try_retry(&self, now: Instant) -> bool {
        let current = self.number(now);
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.slots {
            let number = slot.number.load(Ordering::Relaxed);
            if number + (SLOTS as u64) > current && number <= current {
                requests += u64::from(slot.requests.load(Ordering::Relaxed));
                retries += u64::from(slot.retries.load(Ordering::Relaxed));
            }
        }
        // Truncation is the point: a budget of 2.8 retries allows 2.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let share = (requests as f64 * self.config.percent / 100.0) as u64;
        let allowed = share.max(u64::from(self.config.min_retries));
        if retries >= allowed {
            return false;
        }
        self.slot(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn number(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) / self.slot_nanos
    }

    /// The slot for `now`, cleared first if it still holds an older window's counts. Two
    /// requests racing on the clear may lose a count: the budget is an estimate, not a ledger.
    fn slot(&self, now: Instant) -> &Slot {
        let number = self.number(now);
        let slot = &self.slots[usize::try_from(number % SLOTS as u64).unwrap_or(0)];
        let old = slot.number.load(Ordering::Relaxed);
        if old != number
            && slot
                .number
                .compare_exchange(old, number, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: f64, min_retries: u32) -> (RetryBudget, Instant) {
        let start = Instant::now();
        let config = BudgetConfig {
            percent,
            min_retries,
            window: Duration::from_secs(10),
        };
        (RetryBudget::new(config, start), start)
    }

    #[test]
    fn retries_stay_within_the_share_of_requests() {
        let (budget, start) = budget(20.0, 3);
        let mut retries = 0;
        // 1000 requests over 5 s, each wanting two retries (a full outage).
        for i in 0..1000u64 {
            let now = start + Duration::from_millis(i * 5);
            budget.record_request(now);
            for _ in 0..2 {
                if budget.try_retry(now) {
                    retries += 1;
                }
            }
        }
        assert!(retries <= 200 + 3, "{retries} retries for 1000 requests");
        assert!(retries >= 195, "the budget should be used: {retries}");
    }

    #[test]
    fn the_minimum_allows_retries_at_low_traffic() {
        let (budget, start) = budget(20.0, 3);
        budget.record_request(start);
        assert!(budget.try_retry(start));
        assert!(budget.try_retry(start));
        assert!(budget.try_retry(start));
        assert!(
            !budget.try_retry(start),
            "a fourth retry exceeds the minimum"
        );
    }

    #[test]
    fn old_windows_are_forgotten() {
        let (budget, start) = budget(20.0, 0);
        for _ in 0..100 {
            budget.record_request(start);
        }
        for _ in 0..20 {
            assert!(budget.try_retry(start));
        }
        assert!(!budget.try_retry(start));
        // The window has moved on: neither the requests nor the retries count any more.
        let later = start + Duration::from_secs(11);
        assert!(!budget.try_retry(later), "no requests in the window");
        for _ in 0..10 {
            budget.record_request(later);
        }
        assert!(budget.try_retry(later));
        assert!(budget.try_retry(later));
        assert!(!budget.try_retry(later));
    }

    #[test]
    fn a_sliding_window_keeps_recent_slots() {
        let (budget, start) = budget(50.0, 0);
        for _ in 0..10 {
            budget.record_request(start);
        }
        // 5 s later the first slot is still in the 10 s window.
        let mid = start + Duration::from_secs(5);
        for _ in 0..5 {
            assert!(budget.try_retry(mid));
        }
        assert!(!budget.try_retry(mid));
    }

    #[test]
    fn zero_percent_leaves_only_the_minimum() {
        let (budget, start) = budget(0.0, 1);
        for _ in 0..1000 {
            budget.record_request(start);
        }
        assert!(budget.try_retry(start));
        assert!(!budget.try_retry(start));
    }
}
