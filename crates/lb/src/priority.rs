//! Priority levels and locality weights: Envoy's priority load (health-based spillover from
//! P0 to P1 and on) and locality-weighted choice inside a priority. Istio's
//! `localityLbSetting` relies on both: failover sorts localities into priorities, `distribute`
//! sets locality weights.
//!
//! ```text
//!  per priority: hosts, healthy        health = min(100, 140 × healthy / total)
//!  P0: 10, 5   ───────────────────►    P0  70 ┐ normalized total = min(100, Σ health)
//!  P1:  4, 4   ───────────────────►    P1 100 ┘ load(P) = min(left, health × 100 / total)
//!                                      load: P0 70 %, P1 30 % (rounding left-over → first
//!                                      healthy level)
//!  pick(point): point % 100 + 1 ─► first level whose cumulative load reaches it
//!
//!  inside the chosen priority, per locality:
//!    effective weight = weight × min(1, 1.4 × healthy / total)  ─► LocalityWeights::pick
//! ```
//!
//! Panic mode (Envoy's `healthy_panic_threshold`, Istio's `minHealthPercent`) is per level:
//! [`PriorityLoad::compute_with_panic`] says which levels are in panic (the balancer then uses
//! all their hosts, and skips locality weighting there) and, when every level is, spreads the
//! load by host count as Envoy does. Degraded hosts (an EDS health status Istio does not
//! send) are not modelled.

#[cfg(test)]
mod tests;

/// Envoy's default overprovisioning factor: 140, i.e. × 1.4.
pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

/// Envoy's default `healthy_panic_threshold`, in percent. (Istio writes `minHealthPercent`
/// into it, 0 unless set, whenever a `DestinationRule` has `outlierDetection`.)
pub const DEFAULT_PANIC_THRESHOLD: u32 = 50;

/// Host counts of one priority level. `healthy` counts hosts usable now: not ejected by
/// outlier detection, and healthy per EDS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelHealth {
    /// Hosts at this level.
    pub total: u64,
    /// Hosts usable now (more than `total` counts as `total`).
    pub healthy: u64,
}

impl LevelHealth {
    /// Counts of one level.
    pub fn new(total: u64, healthy: u64) -> Self {
        Self { total, healthy }
    }

    /// Envoy's health score, 0 to 100: `min(100, factor × healthy / total)` in integers, with
    /// `factor` in percent (140 = × 1.4); 0 for an empty level.
    pub fn health(&self, overprovisioning_factor: u32) -> u32 {
        if self.total == 0 {
            return 0;
        }
        let healthy = u128::from(self.healthy.min(self.total));
        let score = u128::from(overprovisioning_factor) * healthy / u128::from(self.total);
        score.min(100) as u32
    }

    /// Whether the level is below the panic threshold (percent of hosts healthy, the
    /// threshold capped at 100). An empty level is 0 % healthy, as in Envoy.
    pub fn in_panic(&self, panic_threshold: u32) -> bool {
        let threshold = u128::from(panic_threshold.min(100));
        let healthy = u128::from(self.healthy.min(self.total));
        100 * healthy < threshold * u128::from(self.total) || (self.total == 0 && threshold > 0)
    }
}

/// The share of requests each priority level gets, in whole percents summing to 100, with
/// each level's panic state. Computed when hosts or their health change; picking allocates
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityLoad {
    loads: Vec<u32>,
    panic: Vec<bool>,
    total_panic: bool,
}

impl PriorityLoad {
    /// Envoy's priority load without panic mode (a panic threshold of 0). With no healthy
    /// host anywhere, P0 gets everything (and has nothing to pick from).
    pub fn compute(levels: &[LevelHealth], overprovisioning_factor: u32) -> Self {
        Self::compute_with_panic(levels, overprovisioning_factor, 0)
    }

    /// Envoy's priority load with its panic rules, the threshold in percent:
    /// - when the normalized total health is 100, no level is in panic;
    /// - below that, a level whose healthy share is under the threshold is in panic;
    /// - when every level is in panic ("total panic"), the load follows the levels' host
    ///   counts, health aside.
    ///
    /// No levels at all is taken as one empty P0.
    pub fn compute_with_panic(
        levels: &[LevelHealth],
        overprovisioning_factor: u32,
        panic_threshold: u32,
    ) -> Self {
        const EMPTY: [LevelHealth; 1] = [LevelHealth {
            total: 0,
            healthy: 0,
        }];
        let levels = if levels.is_empty() {
            &EMPTY[..]
        } else {
            levels
        };
        let health: Vec<u32> = levels
            .iter()
            .map(|level| level.health(overprovisioning_factor))
            .collect();
        let normalized = health.iter().map(|&h| u64::from(h)).sum::<u64>().min(100) as u32;
        let mut load = Self {
            loads: vec![0; levels.len()],
            panic: vec![false; levels.len()],
            total_panic: false,
        };
        if normalized > 0 {
            load.distribute_by_health(&health, normalized);
        } else if panic_threshold == 0 {
            load.fill_first(0);
            return load;
        }
        if normalized < 100 {
            for (panic, level) in load.panic.iter_mut().zip(levels) {
                *panic = level.in_panic(panic_threshold);
            }
            load.total_panic = load.panic.iter().all(|&p| p);
        }
        if load.total_panic {
            load.distribute_by_hosts(levels);
        }
        load.fill_first(0);
        load
    }

    /// Each level in turn takes `health × 100 / normalized` of what is left; the rounding
    /// left-over goes to the first level with any health.
    fn distribute_by_health(&mut self, health: &[u32], normalized: u32) {
        let mut left = 100u32;
        for (load, &h) in self.loads.iter_mut().zip(health) {
            *load = left.min(h * 100 / normalized);
            left -= *load;
        }
        if let Some(first) = health.iter().position(|&h| h > 0) {
            self.fill_first(first);
        }
    }

    /// Total panic: load in proportion to host counts, left-over to the first non-empty level.
    fn distribute_by_hosts(&mut self, levels: &[LevelHealth]) {
        let hosts: u128 = levels.iter().map(|l| u128::from(l.total)).sum();
        self.loads.iter_mut().for_each(|load| *load = 0);
        if hosts == 0 {
            return;
        }
        for (load, level) in self.loads.iter_mut().zip(levels) {
            *load = (100 * u128::from(level.total) / hosts) as u32;
        }
        if let Some(first) = levels.iter().position(|l| l.total > 0) {
            self.fill_first(first);
        }
    }

    /// Gives whatever is missing to 100 to `level`.
    fn fill_first(&mut self, level: usize) {
        let sum: u32 = self.loads.iter().sum();
        if let Some(load) = self.loads.get_mut(level) {
            *load += 100u32.saturating_sub(sum);
        }
    }

    /// Maps a random (or hash) value to a level as Envoy does: `point % 100 + 1` against the
    /// cumulative loads. Always a valid level index.
    pub fn pick(&self, point: u64) -> usize {
        let target = (point % 100) as u32 + 1;
        let mut cumulative = 0;
        for (level, &load) in self.loads.iter().enumerate() {
            cumulative += load;
            if target <= cumulative {
                return level;
            }
        }
        0
    }

    /// The loads in percent, one per level (P0 first), summing to 100.
    pub fn loads(&self) -> &[u32] {
        &self.loads
    }

    /// The load of `level` in percent (0 for a level that does not exist).
    pub fn load(&self, level: usize) -> u32 {
        self.loads.get(level).copied().unwrap_or(0)
    }

    /// Whether `level` is in panic: the balancer picks among all its hosts, healthy or not.
    pub fn in_panic(&self, level: usize) -> bool {
        self.panic.get(level).copied().unwrap_or(false)
    }

    /// Whether every level is in panic (the load then follows host counts).
    pub fn total_panic(&self) -> bool {
        self.total_panic
    }

    /// The number of levels.
    pub fn len(&self) -> usize {
        self.loads.len()
    }

    /// Never true: there is always at least P0.
    pub fn is_empty(&self) -> bool {
        self.loads.is_empty()
    }
}

/// One locality of a priority level: its weight (EDS `load_balancing_weight`, Istio's
/// `distribute` percentages) and its host counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalityHealth {
    /// The locality's weight; 0 never receives traffic.
    pub weight: u32,
    /// Hosts in the locality.
    pub total: u64,
    /// Hosts usable now.
    pub healthy: u64,
}

/// Fixed-point one for availabilities: 2^32.
const ONE: u128 = 1 << 32;

/// Weighted choice among the localities of one priority level (Envoy's
/// `locality_weighted_lb_config`): effective weight = weight × min(1, factor × healthy /
/// total). Computed when hosts change; picking allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalityWeights {
    /// Running sums of the effective weights, in units of 2^-32.
    cumulative: Vec<u128>,
}

impl LocalityWeights {
    /// The effective weights of `localities`, `overprovisioning_factor` in percent (140).
    pub fn compute(localities: &[LocalityHealth], overprovisioning_factor: u32) -> Self {
        let mut sum = 0u128;
        let cumulative = localities
            .iter()
            .map(|locality| {
                let weight = u128::from(locality.weight);
                sum = sum.saturating_add(weight * availability(locality, overprovisioning_factor));
                sum
            })
            .collect();
        Self { cumulative }
    }

    /// The effective weight of locality `index` (0 if out of range).
    pub fn effective_weight(&self, index: usize) -> f64 {
        let Some(&upto) = self.cumulative.get(index) else {
            return 0.0;
        };
        let before = index
            .checked_sub(1)
            .and_then(|i| self.cumulative.get(i))
            .copied()
            .unwrap_or(0);
        (upto - before) as f64 / ONE as f64
    }

    /// The sum of the effective weights.
    pub fn total_weight(&self) -> f64 {
        self.total() as f64 / ONE as f64
    }

    fn total(&self) -> u128 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Maps a uniformly random `point` to a locality in proportion to the effective weights;
    /// `None` when no locality has any (Envoy then picks among the level's healthy hosts
    /// without regard to locality).
    pub fn pick(&self, point: u64) -> Option<usize> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let target = scale(point, total);
        let index = self.cumulative.partition_point(|&c| c <= target);
        (index < self.cumulative.len()).then_some(index)
    }

    /// The number of localities.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Whether there are no localities.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }
}

/// `min(1, factor / 100 × healthy / total)` in units of 2^-32; 0 for an empty locality.
fn availability(locality: &LocalityHealth, overprovisioning_factor: u32) -> u128 {
    if locality.total == 0 {
        return 0;
    }
    let healthy = u128::from(locality.healthy.min(locality.total));
    let available = u128::from(overprovisioning_factor) * healthy;
    let total = 100 * u128::from(locality.total);
    if available >= total {
        ONE
    } else {
        available * ONE / total
    }
}

/// `⌊point × total / 2^64⌋` without overflow: below `total` for any `point`.
fn scale(point: u64, total: u128) -> u128 {
    let point = u128::from(point);
    let (high, low) = (total >> 64, total & u128::from(u64::MAX));
    point * high + ((point * low) >> 64)
}
