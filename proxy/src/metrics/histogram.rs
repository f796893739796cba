//! A histogram with Envoy's (and so Istio's) default buckets, recorded with atomics only.
//!
//! Written here rather than taken from prometheus-client, whose histogram takes a lock on every
//! observation: a busy series is observed by every worker at once, and this one only adds.

use std::sync::atomic::{AtomicU64, Ordering};

/// Envoy's default histogram buckets, which Istio's `istio_request_duration_milliseconds`,
/// `istio_request_bytes` and `istio_response_bytes` use.
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Observations in integer units of `1 / SCALE` of the exposed unit (durations are observed
/// in microseconds and exposed in milliseconds: `SCALE = 1000`; bytes: `SCALE = 1`).
#[derive(Debug)]
pub struct Histogram<const SCALE: u64> {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of the observations, in `1 / SCALE` units.
    sum: AtomicU64,
}

impl<const SCALE: u64> Default for Histogram<SCALE> {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const SCALE: u64> Histogram<SCALE> {
    /// Records one observation of `value / SCALE`.
    pub fn observe(&self, value: u64) {
        // The first bucket whose bound is at least the value (Prometheus buckets are `le`).
        let exposed = value as f64 / SCALE as f64;
        let bucket = BUCKETS.partition_point(|bound| *bound < exposed);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// `(sum, count, per-bucket counts)` as prometheus-client's encoder takes them (it
    /// makes them cumulative).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, count) in self.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            let bound = BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, count));
        }
        let sum = self.sum.load(Ordering::Relaxed) as f64 / SCALE as f64;
        (sum, total, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_le_buckets_and_the_sum_keeps_the_unit() {
        let h = Histogram::<1000>::default();
        h.observe(500); // 0.5 ms: the 0.5 bucket (le)
        h.observe(501); // just over: the 1 ms bucket
        h.observe(7_000_000_000); // past the last bound: +Inf only
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 7_000_001.001).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.5, 1));
        assert_eq!(buckets[1], (1.0, 1));
        assert_eq!(buckets[BUCKETS.len() - 1], (3600000.0, 0));
        assert_eq!(buckets[BUCKETS.len()], (f64::INFINITY, 1));

        let bytes = Histogram::<1>::default();
        bytes.observe(0);
        bytes.observe(1);
        bytes.observe(2);
        let (sum, _, buckets) = bytes.snapshot();
        assert_eq!(sum, 3.0);
        assert_eq!(&buckets[..3], &[(0.5, 1), (1.0, 1), (5.0, 1)]);
    }
}
