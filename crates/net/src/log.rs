//! A log line at most once per interval, counting what it held back (overload must not flood logs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Lets one event through per interval and counts the others.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    /// Milliseconds since `origin` when the next line may be logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
    origin: Instant,
}

impl RateLimitedLog {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// `Some(events held back since the last line)` when a line may be logged now, else
    /// `None` (and the event is counted).
    pub fn allow(&self) -> Option<u64> {
        let now = millis(self.origin.elapsed());
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + millis(self.interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_held_back() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(log.allow(), None);
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(log.allow(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(log.allow(), Some(6));
        assert_eq!(log.allow(), None);
    }
}
