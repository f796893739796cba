//! Passive outlier detection: Envoy's consecutive-error ejection, which Istio's
//! `DestinationRule` `trafficPolicy.outlierDetection` configures.
//!
//! ```text
//!  request tasks (many at once)                one Detector per cluster
//!  ────────────────────────────                ─────────────────────────────────────────
//!  record(&host, Status(503), now)
//!    └─► host atomics: gateway += 1, 5xx += 1  lock-free, on every response
//!          did a counter just reach its threshold?
//!            └─► Mutex ─► max_ejection_percent allows one more? ─► host.ejected = true
//!                         lasts base × multiplier (≤ max); multiplier += 1
//!  balancer pick: host.is_ejected()            one atomic load
//!  timer, every `interval`: sweep(now)
//!    └─► Mutex ─► hosts whose ejection time is up return, counters from zero;
//!                 hosts back for an interval or more: multiplier -= 1 (not below 0)
//! ```
//!
//! The caller keeps one `Arc<Host>` per endpoint address across endpoint updates and tells the
//! detector the cluster's current set with [`Detector::set_hosts`]; kept hosts keep their state,
//! removed ones are forgotten. Panic mode (Envoy's `healthy_panic_threshold`, Istio's
//! `minHealthPercent`) is the balancer's decision: [`Detector::counts`] gives the healthy share.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};

mod config;
mod report;
#[cfg(test)]
mod tests;

pub use config::{Config, ENVOY_DEFAULT_CONSECUTIVE};
pub use report::{Consecutive, Ejection, EjectionKind, HostCounts, HostStatus, Stats};

/// What one exchange with a host came to, as the proxy reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers from the host, with their status code (an externally originated
    /// result). A 5xx is an error; 502, 503 and 504 are gateway errors as well.
    Status(u16),
    /// The proxy could not reach the host or lost it mid-exchange: connect failure or timeout,
    /// connection or stream reset, request timeout. Unless split, this counts as a gateway
    /// error and a 5xx (Envoy maps it to 503 or 504).
    LocalOriginFailure,
    /// A connection (or stream) to the host was obtained and the exchange goes on; its result
    /// is reported later as [`Outcome::Status`]. Resets the local-origin counter when split,
    /// and does nothing otherwise (Envoy's `LOCAL_ORIGIN_CONNECT_SUCCESS`).
    ConnectSuccess,
    /// The exchange succeeded and no status follows (the TCP proxy's connect). Resets the
    /// local-origin counter when split, and the 5xx and gateway counters otherwise (Envoy's
    /// `LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL`).
    LocalOriginSuccess,
}

/// The outlier state of one endpoint, shared by the tasks that record outcomes and the
/// balancer that reads [`Host::is_ejected`]. `T` is a tag the caller chooses (its address,
/// say) so that hosts returned by [`Detector::sweep`] can be named.
///
/// A host belongs to one [`Detector`] at a time.
#[derive(Debug, Default)]
pub struct Host<T = ()> {
    tag: T,
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    consecutive_local_origin_failure: AtomicU32,
    ejected: AtomicBool,
}

impl Host {
    /// A host without a tag, not ejected, counters at zero.
    pub fn new() -> Self {
        Self::with_tag(())
    }
}

impl<T> Host<T> {
    /// A host carrying `tag`, not ejected, counters at zero.
    pub fn with_tag(tag: T) -> Self {
        Self {
            tag,
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway_failure: AtomicU32::new(0),
            consecutive_local_origin_failure: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
        }
    }

    /// The caller's tag.
    pub fn tag(&self) -> &T {
        &self.tag
    }

    /// Whether the host is ejected: the balancer skips it unless in panic mode.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// The consecutive-error counters now.
    pub fn consecutive(&self) -> Consecutive {
        Consecutive {
            errors_5xx: self.consecutive_5xx.load(Ordering::Relaxed),
            gateway_failures: self.consecutive_gateway_failure.load(Ordering::Relaxed),
            local_origin_failures: self
                .consecutive_local_origin_failure
                .load(Ordering::Relaxed),
        }
    }

    fn counter(&self, kind: EjectionKind) -> &AtomicU32 {
        match kind {
            EjectionKind::Consecutive5xx => &self.consecutive_5xx,
            EjectionKind::ConsecutiveGatewayFailure => &self.consecutive_gateway_failure,
            EjectionKind::ConsecutiveLocalOriginFailure => &self.consecutive_local_origin_failure,
        }
    }

    /// Counters to zero, not ejected: a host that returns, joins or leaves a detector.
    fn reset(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        self.consecutive_local_origin_failure
            .store(0, Ordering::Relaxed);
        self.ejected.store(false, Ordering::Release);
    }
}

/// A threshold reached by one outcome: the detector and its threshold.
type Crossed = Option<(EjectionKind, u32)>;

/// Adds one failure to `counter`; `Some` when this failure is the one reaching `threshold`.
fn failure(counter: &AtomicU32, threshold: Option<u32>, kind: EjectionKind) -> Crossed {
    let threshold = threshold?;
    let count = counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    (count == threshold).then_some((kind, threshold))
}

/// A success for `counter`; skips the write when it is already zero (the common case).
fn success(counter: &AtomicU32) {
    if counter.load(Ordering::Relaxed) != 0 {
        counter.store(0, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Entry<T> {
    host: Arc<Host<T>>,
    status: HostStatus,
}

#[derive(Debug)]
struct State<T> {
    entries: Vec<Entry<T>>,
    /// Host address → index in `entries`.
    index: HashMap<usize, usize>,
    stats: Stats,
}

/// The outlier detector of one cluster. Outcomes are recorded without a lock; the lock is
/// taken when a threshold is reached, on [`Detector::sweep`] and on host set changes.
#[derive(Debug)]
pub struct Detector<T = ()> {
    config: Config,
    total: AtomicUsize,
    ejected: AtomicUsize,
    /// Bumped whenever a host is ejected or returns, or the host set changes: state derived
    /// from the hosts' health (priority loads) is stale when this moved.
    generation: AtomicU64,
    /// The lock of the rare path (threshold reached, sweep, host set change); `parking_lot`'s,
    /// which does not poison.
    state: Mutex<State<T>>,
}

fn key<T>(host: &Host<T>) -> usize {
    std::ptr::from_ref(host).addr()
}

impl<T> Detector<T> {
    /// A detector with no hosts yet.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            total: AtomicUsize::new(0),
            ejected: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            state: Mutex::new(State {
                entries: Vec::new(),
                index: HashMap::new(),
                stats: Stats::default(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }

    /// Makes `hosts` the cluster's hosts. Hosts already present keep their state (ejection,
    /// counters, multiplier); new ones start fresh; removed ones are reset and forgotten, so
    /// an ejected host that leaves no longer counts against `max_ejection_percent`. The same
    /// host given twice counts once.
    pub fn set_hosts(&self, hosts: impl IntoIterator<Item = Arc<Host<T>>>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut old: HashMap<usize, Entry<T>> = state
            .entries
            .drain(..)
            .map(|entry| (key(&entry.host), entry))
            .collect();
        state.index.clear();
        for host in hosts {
            let k = key(&host);
            if state.index.contains_key(&k) {
                continue;
            }
            let entry = old.remove(&k).unwrap_or_else(|| {
                host.reset();
                Entry {
                    host,
                    status: HostStatus::default(),
                }
            });
            state.index.insert(k, state.entries.len());
            state.entries.push(entry);
        }
        for gone in old.into_values() {
            gone.host.reset();
        }
        self.publish_counts(state);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Keeps the lock-free counts in line with the entries (called under the lock).
    fn publish_counts(&self, state: &State<T>) {
        let ejected = state.entries.iter().filter(|e| e.host.is_ejected()).count();
        self.total.store(state.entries.len(), Ordering::Release);
        self.ejected.store(ejected, Ordering::Release);
    }

    /// A number that changes whenever some host's ejection state or the host set may have
    /// changed (read without the lock).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records what an exchange with `host` came to. Lock-free unless this outcome makes a
    /// counter reach its threshold; then the host is ejected at once if
    /// `max_ejection_percent` allows, and the ejection is returned. Outcomes for a host that is
    /// not in the detector's set count but never eject.
    pub fn record(&self, host: &Host<T>, outcome: Outcome, now: Instant) -> Option<Ejection> {
        let split = self.config.split_external_local_origin_errors;
        let crossed = match outcome {
            Outcome::Status(code) if (500..600).contains(&code) => {
                self.external_failure(host, matches!(code, 502..=504))
            }
            Outcome::Status(_) => {
                success(&host.consecutive_5xx);
                success(&host.consecutive_gateway_failure);
                [None, None]
            }
            Outcome::LocalOriginFailure if split => [
                failure(
                    &host.consecutive_local_origin_failure,
                    self.config.threshold_local_origin(),
                    EjectionKind::ConsecutiveLocalOriginFailure,
                ),
                None,
            ],
            Outcome::LocalOriginFailure => self.external_failure(host, true),
            Outcome::ConnectSuccess => {
                if split {
                    success(&host.consecutive_local_origin_failure);
                }
                [None, None]
            }
            Outcome::LocalOriginSuccess => {
                if split {
                    success(&host.consecutive_local_origin_failure);
                } else {
                    success(&host.consecutive_5xx);
                    success(&host.consecutive_gateway_failure);
                }
                [None, None]
            }
        };
        if crossed.iter().all(Option::is_none) {
            return None;
        }
        self.on_thresholds(host, crossed, now)
    }

    /// A 5xx-like failure: the gateway counter first, then the 5xx one (Envoy's order).
    fn external_failure(&self, host: &Host<T>, gateway: bool) -> [Crossed; 2] {
        let gateway = if gateway {
            failure(
                &host.consecutive_gateway_failure,
                self.config.threshold_gateway(),
                EjectionKind::ConsecutiveGatewayFailure,
            )
        } else {
            success(&host.consecutive_gateway_failure);
            None
        };
        let errors_5xx = failure(
            &host.consecutive_5xx,
            self.config.threshold_5xx(),
            EjectionKind::Consecutive5xx,
        );
        [gateway, errors_5xx]
    }

    /// The rare path: thresholds were reached; eject if allowed. As in Envoy, a threshold
    /// reached by an ejected host is ignored, and otherwise its counter restarts from zero
    /// whether or not the ejection was allowed.
    fn on_thresholds(
        &self,
        host: &Host<T>,
        crossed: [Crossed; 2],
        now: Instant,
    ) -> Option<Ejection> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let index = *state.index.get(&key(host))?;
        let total = state.entries.len();
        let mut ejection = None;
        for (kind, threshold) in crossed.into_iter().flatten() {
            if host.is_ejected() {
                continue;
            }
            state.stats.detected(kind);
            let ejected = self.ejected.load(Ordering::Acquire);
            if self.config.may_eject(ejected, total) {
                let entry = state.entries.get_mut(index)?;
                let status = &mut entry.status;
                status.times_ejected = status.times_ejected.saturating_add(1);
                status.ejected_at = Some(now);
                status.ejected = true;
                // Envoy grows the multiplier while base × multiplier < max + base.
                let base = self.config.base_ejection_time;
                let limit = self
                    .config
                    .effective_max_ejection_time()
                    .saturating_add(base);
                if base.saturating_mul(status.multiplier) < limit {
                    status.multiplier = status.multiplier.saturating_add(1);
                }
                host.ejected.store(true, Ordering::Release);
                self.ejected.store(ejected + 1, Ordering::Release);
                self.generation.fetch_add(1, Ordering::Release);
                state.stats.enforced(kind);
                ejection = Some(Ejection {
                    kind,
                    consecutive: threshold,
                    duration: self.config.ejection_time(status.multiplier),
                    times_ejected: status.times_ejected,
                    ejected_hosts: ejected + 1,
                    total_hosts: total,
                });
            } else {
                state.stats.ejections_overflow = state.stats.ejections_overflow.saturating_add(1);
            }
            host.counter(kind).store(0, Ordering::Relaxed);
        }
        ejection
    }

    /// The periodic pass, to run every `interval`: ejected hosts whose ejection time has
    /// passed return (counters from zero) and are returned; then every host that has been
    /// back for at least an interval has its multiplier decremented, not below 0.
    pub fn sweep(&self, now: Instant) -> Vec<Arc<Host<T>>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut returned = Vec::new();
        for entry in &mut state.entries {
            if !entry.host.is_ejected() {
                continue;
            }
            let length = self.config.ejection_time(entry.status.multiplier);
            let due = entry
                .status
                .ejected_at
                .is_none_or(|at| now.saturating_duration_since(at) >= length);
            if due {
                entry.host.reset();
                entry.status.ejected = false;
                entry.status.returned_at = Some(now);
                returned.push(Arc::clone(&entry.host));
            }
        }
        for entry in &mut state.entries {
            let status = &mut entry.status;
            let back_long_enough = status
                .returned_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.config.interval);
            if !entry.host.is_ejected() && back_long_enough {
                status.multiplier = status.multiplier.saturating_sub(1);
            }
        }
        self.publish_counts(state);
        if !returned.is_empty() {
            self.generation.fetch_add(1, Ordering::Release);
        }
        returned
    }

    /// Hosts in the cluster and hosts ejected, read without the lock.
    pub fn counts(&self) -> HostCounts {
        let total = self.total.load(Ordering::Acquire);
        let ejected = self.ejected.load(Ordering::Acquire).min(total);
        HostCounts { total, ejected }
    }

    /// The share of hosts not ejected (see [`HostCounts::healthy_fraction`]).
    pub fn healthy_fraction(&self) -> f64 {
        self.counts().healthy_fraction()
    }

    /// The detector's record of `host`, or `None` if it is not in the set.
    pub fn host_status(&self, host: &Host<T>) -> Option<HostStatus> {
        let state = self.lock();
        let index = *state.index.get(&key(host))?;
        state.entries.get(index).map(|entry| HostStatus {
            ejected: entry.host.is_ejected(),
            ..entry.status
        })
    }

    /// The ejection counters so far.
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }
}
