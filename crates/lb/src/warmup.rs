//! Slow start of new endpoints: Envoy's `slow_start_config` (round robin and least request),
//! which Istio's `warmup` (`duration`, `minimumPercent`, `aggression`) and the older
//! `warmupDurationSecs` configure.
//!
//! ```text
//!  weight factor
//!   1.0 ┤                 ╭──────────── after the window: full weight
//!       │             ╭───╯   aggression > 1: faster at first (concave)
//!   0.5 ┤        ╭────╯       aggression = 1: linear
//!       │   ╭────╯            aggression < 1: slower at first (convex)
//!   0.1 ┼───╯ ← min_weight_percent floor
//!       └────────────────┬──────────── time since the host entered slow start
//!                      window
//!  factor = max(min_weight_percent / 100, (max(elapsed, 1 ms) / window) ^ (1 / aggression))
//! ```
//!
//! When a host enters slow start is the caller's to record, as Envoy does it: when it joins
//! the cluster, including the hosts present when the cluster is created (so a fresh cluster's
//! hosts ramp up together and keep equal shares); or, with active health checking, when it
//! passes a check after failing. Envoy has no other exemption: a host coming back from
//! outlier ejection does not restart slow start. Only healthy hosts are scaled, and only by
//! the round-robin and least-request balancers. Times are counted in whole milliseconds, as
//! Envoy does; a window under 1 ms is no slow start.

use std::time::{Duration, Instant};

/// Slow start settings of one cluster.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// How long a host stays in slow start; zero (the default) turns slow start off.
    pub window: Duration,
    /// The ramp's shape: the time fraction is raised to `1 / aggression`. Envoy's default:
    /// 1.0 (linear). Zero, negative or NaN count as 1.0, as in Envoy.
    pub aggression: f64,
    /// The smallest factor, in percent of the host's weight. Envoy's default: 10. Clamped to
    /// 0..=100; NaN counts as 10.
    pub min_weight_percent: f64,
}

impl Default for Config {
    /// Slow start off, with Envoy's defaults for the shape.
    fn default() -> Self {
        Self {
            window: Duration::ZERO,
            aggression: 1.0,
            min_weight_percent: 10.0,
        }
    }
}

impl Config {
    /// Slow start over `window` with Envoy's default shape.
    pub fn with_window(window: Duration) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    /// Whether slow start is on: a window of at least 1 ms.
    pub fn is_enabled(&self) -> bool {
        self.window.as_millis() > 0
    }

    fn aggression(&self) -> f64 {
        if self.aggression > 0.0 {
            self.aggression
        } else {
            1.0
        }
    }

    fn min_factor(&self) -> f64 {
        if self.min_weight_percent.is_nan() {
            0.1
        } else {
            self.min_weight_percent.clamp(0.0, 100.0) / 100.0
        }
    }

    /// The weight factor, 0 to 1, for a host that entered slow start `elapsed` ago: 1.0 once
    /// the window has passed or when slow start is off.
    pub fn factor(&self, elapsed: Duration) -> f64 {
        let window = self.window.as_millis();
        let elapsed = elapsed.as_millis();
        if window == 0 || elapsed >= window {
            return 1.0;
        }
        let time = elapsed.max(1) as f64 / window as f64;
        let aggression = self.aggression();
        let ramp = if aggression == 1.0 {
            time
        } else {
            time.powf(1.0 / aggression)
        };
        ramp.max(self.min_factor()).clamp(0.0, 1.0)
    }

    /// The factor at `now` for a host that entered slow start at `since` (a `since` after
    /// `now` counts as just now).
    pub fn factor_at(&self, since: Instant, now: Instant) -> f64 {
        self.factor(now.saturating_duration_since(since))
    }

    /// `weight` scaled by [`Config::factor_at`].
    pub fn weight(&self, weight: f64, since: Instant, now: Instant) -> f64 {
        weight * self.factor_at(since, now)
    }

    /// Whether a host that entered slow start at `since` is still in it at `now`.
    pub fn in_slow_start(&self, since: Instant, now: Instant) -> bool {
        let window = self.window.as_millis();
        window > 0 && now.saturating_duration_since(since).as_millis() < window
    }

    /// When a host that entered slow start at `since` leaves it: `None` when slow start is off
    /// (or the end is past what `Instant` can hold).
    pub fn leaves_at(&self, since: Instant) -> Option<Instant> {
        if !self.is_enabled() {
            return None;
        }
        since.checked_add(self.window)
    }

    /// How long until a host that entered slow start at `since` leaves it (zero if it is not
    /// in slow start at `now`): when the balancer should next refresh its weights.
    pub fn remaining(&self, since: Instant, now: Instant) -> Duration {
        if !self.in_slow_start(since, now) {
            return Duration::ZERO;
        }
        self.window
            .saturating_sub(now.saturating_duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn linear_ramp_with_floor() {
        let c = Config::with_window(Duration::from_secs(60));
        assert!(c.is_enabled());
        assert!(close(c.factor(Duration::ZERO), 0.1), "10 % at start");
        assert!(
            close(c.factor(Duration::from_secs(3)), 0.1),
            "5 % of the window: floor"
        );
        assert!(close(c.factor(Duration::from_secs(18)), 0.3));
        assert!(
            close(c.factor(Duration::from_secs(30)), 0.5),
            "half the window"
        );
        assert!(close(c.factor(ms(59_999)), 59_999.0 / 60_000.0));
        assert!(close(c.factor(Duration::from_secs(60)), 1.0), "window over");
        assert!(close(c.factor(Duration::from_secs(3600)), 1.0));
    }

    #[test]
    fn aggression_shapes_the_ramp() {
        let window = Duration::from_secs(100);
        let linear = Config::with_window(window);
        let aggressive = Config {
            aggression: 2.0,
            ..linear
        };
        let gentle = Config {
            aggression: 0.5,
            ..linear
        };
        // Aggression above 1 gives more traffic early (0.25 ^ (1/2) = 0.5) ...
        assert!(close(aggressive.factor(Duration::from_secs(25)), 0.5));
        // ... below 1 less (0.5 ^ 2 = 0.25), and both meet linear at the ends.
        assert!(close(gentle.factor(Duration::from_secs(50)), 0.25));
        for secs in [11, 25, 50, 75, 99] {
            let t = Duration::from_secs(secs);
            assert!(gentle.factor(t) < linear.factor(t));
            assert!(linear.factor(t) < aggressive.factor(t));
        }
        for c in [linear, aggressive, gentle] {
            assert!(close(c.factor(Duration::ZERO), 0.1));
            assert!(close(c.factor(window), 1.0));
            let mut last = 0.0;
            for secs in 0..=100 {
                let f = c.factor(Duration::from_secs(secs));
                assert!(f >= last, "monotonic");
                last = f;
            }
        }
        // Invalid aggression counts as linear.
        for aggression in [0.0, -3.0, f64::NAN] {
            let c = Config {
                aggression,
                ..linear
            };
            assert!(close(c.factor(Duration::from_secs(40)), 0.4));
        }
    }

    #[test]
    fn min_percent_floor() {
        let c = Config {
            min_weight_percent: 30.0,
            ..Config::with_window(Duration::from_secs(10))
        };
        assert!(close(c.factor(Duration::from_secs(1)), 0.3));
        assert!(close(c.factor(Duration::from_secs(2)), 0.3));
        assert!(close(c.factor(Duration::from_secs(5)), 0.5));
        let no_floor = Config {
            min_weight_percent: 0.0,
            ..c
        };
        // Envoy counts at least 1 ms: 1 / 10 000 of the window.
        assert!(close(no_floor.factor(Duration::ZERO), 1e-4));
        let full = Config {
            min_weight_percent: 250.0,
            ..c
        };
        assert!(close(full.factor(Duration::ZERO), 1.0));
        let nan = Config {
            min_weight_percent: f64::NAN,
            ..c
        };
        assert!(close(nan.factor(Duration::ZERO), 0.1));
    }

    #[test]
    fn zero_window_is_no_slow_start() {
        let base = Instant::now();
        for c in [
            Config::default(),
            Config::with_window(Duration::from_micros(999)),
        ] {
            assert!(!c.is_enabled());
            assert!(close(c.factor(Duration::ZERO), 1.0));
            assert!(!c.in_slow_start(base, base));
            assert_eq!(c.leaves_at(base), None);
            assert_eq!(c.remaining(base, base), Duration::ZERO);
            assert!(close(c.weight(7.0, base, base), 7.0));
        }
    }

    #[test]
    fn instants_and_leaving_slow_start() {
        let since = Instant::now();
        let at = |secs: u64| since + Duration::from_secs(secs);
        let c = Config::with_window(Duration::from_secs(20));
        assert!(close(c.factor_at(since, at(10)), 0.5));
        assert!(close(c.weight(100.0, since, at(15)), 75.0));
        // A start in the future counts as just now.
        assert!(close(c.factor_at(at(5), since), 0.1));
        assert!(c.in_slow_start(since, at(19)));
        assert!(!c.in_slow_start(since, at(20)));
        assert_eq!(c.leaves_at(since), Some(at(20)));
        assert_eq!(c.remaining(since, at(5)), Duration::from_secs(15));
        assert_eq!(c.remaining(since, at(25)), Duration::ZERO);
    }
}
