//! Priority levels and locality weights at run time: per request, a level by Envoy's priority
//! load, then (locality-weighted clusters) a locality by its health-scaled weight, then an
//! endpoint by the cluster's policy. Istio's `localityLbSetting` arrives as these levels and
//! weights (failover: the controller sorts localities into levels; distribute: weights).
//!
//! ```text
//!  Cluster::pick ─► Priorities::pick
//!    State (cached; rebuilt when the outlier detector's generation moves):
//!      per level: LevelHealth { endpoints, not ejected } ─► PriorityLoad (spill-over, panic)
//!      per level of a locality-weighted cluster: LocalityWeights
//!    point ─► level ─┬─ in panic: the level's balancer, over every endpoint
//!                    ├─ locality-weighted: a locality ─► its balancer, skipping ejected ones
//!                    └─ else: the level's balancer, skipping ejected ones
//! ```
//!
//! Built once per config push, and only for clusters with more than one level or weighted
//! localities: every other cluster keeps its single balancer and pays nothing. The levels'
//! balancers share the cluster's `Arc<Endpoint>`s (in-flight counts, pools, outlier state).
//!
//! Consistent hashing picks the level with the request's key (as Envoy) and hashes over the
//! whole level; locality weights do not apply to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use rand::{Rng, RngExt};
use weft_lb::priority::{LevelHealth, LocalityHealth, LocalityWeights, PriorityLoad};

use super::balance::{Balancer, Endpoint, LbPolicy};
use crate::config::Assignment;

/// The priority levels of one cluster, each with its balancer(s).
#[derive(Debug)]
pub struct Priorities {
    levels: Vec<Level>,
    overprovisioning_factor: u32,
    /// Envoy's `healthy_panic_threshold`, in percent (Istio's `minHealthPercent`).
    panic_threshold: u32,
    /// The level of each endpoint (for `previous_priorities` on retries).
    level_of: HashMap<SocketAddr, usize>,
    state: RwLock<State>,
}

#[derive(Debug)]
struct Level {
    all: Balancer,
    /// Locality-weighted clusters: each locality's weight (0 when EDS gave none: no traffic)
    /// and balancer. Empty otherwise.
    localities: Vec<(u32, Balancer)>,
}

/// What health decides: the level loads and the levels' locality weights.
#[derive(Debug)]
struct State {
    /// The outlier detector's generation this was computed at.
    generation: u64,
    load: PriorityLoad,
    /// Per level (one each), for locality-weighted clusters; else empty.
    weights: Vec<LocalityWeights>,
}

/// What a retry's pick avoids: endpoints (Envoy's `previous_hosts`), and the levels of
/// endpoints (`previous_priorities`, Istio's `retryRemoteLocalities`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Avoid<'a> {
    pub hosts: &'a [SocketAddr],
    pub levels_of: &'a [SocketAddr],
}

impl Priorities {
    /// The levels of `assignment` over the cluster's `endpoints` (in the assignment's order);
    /// `None` when there is one level and no locality weighting to do (the cluster's own
    /// balancer is enough).
    pub fn build(
        policy: LbPolicy,
        assignment: &Assignment,
        endpoints: &[Arc<Endpoint>],
        locality_weighted: bool,
        panic_threshold: f64,
        previous: Option<&Priorities>,
    ) -> Option<Self> {
        let weighted = locality_weighted && assignment.groups.len() > 1;
        if !assignment.has_priorities() && !weighted {
            return None;
        }
        let count = assignment
            .groups
            .iter()
            .map(|g| g.priority as usize + 1)
            .max()
            .unwrap_or(1);
        let mut members: Vec<Vec<Arc<Endpoint>>> = vec![Vec::new(); count];
        let mut localities: Vec<Vec<(u32, Vec<Arc<Endpoint>>)>> = vec![Vec::new(); count];
        let mut level_of = HashMap::with_capacity(endpoints.len());
        for group in &assignment.groups {
            let level = group.priority as usize;
            let list = endpoints.get(group.endpoints.clone()).unwrap_or_default();
            for endpoint in list {
                level_of.entry(endpoint.addr).or_insert(level);
            }
            members[level].extend(list.iter().cloned());
            if locality_weighted {
                localities[level].push((group.weight.unwrap_or(0), list.to_vec()));
            }
        }
        let cursor = |level: usize, locality: Option<usize>| {
            let old = previous?.levels.get(level)?;
            Some(match locality {
                None => old.all.cursor(),
                Some(i) => old.localities.get(i)?.1.cursor(),
            })
        };
        let levels: Vec<Level> = members
            .into_iter()
            .zip(localities)
            .enumerate()
            .map(|(level, (all, localities))| Level {
                all: Balancer::over(policy, all, cursor(level, None)),
                localities: localities
                    .into_iter()
                    .enumerate()
                    .map(|(i, (weight, list))| {
                        (weight, Balancer::over(policy, list, cursor(level, Some(i))))
                    })
                    .collect(),
            })
            .collect();
        Some(Self {
            levels,
            overprovisioning_factor: assignment.overprovisioning_factor,
            panic_threshold: panic_threshold.clamp(0.0, 100.0).round() as u32,
            level_of,
            // A generation no detector reaches: the first pick computes the real state.
            state: RwLock::new(State {
                generation: u64::MAX,
                load: PriorityLoad::compute(&[], 100),
                weights: Vec::new(),
            }),
        })
    }

    /// Applies slow start to every level's and locality's balancer.
    #[must_use]
    pub fn with_slow_start(mut self, config: Option<weft_lb::warmup::Config>) -> Self {
        if config.is_none() {
            return self;
        }
        let warm = |b: Balancer| b.with_slow_start(config);
        self.levels = std::mem::take(&mut self.levels)
            .into_iter()
            .map(|level| Level {
                all: warm(level.all),
                localities: level
                    .localities
                    .into_iter()
                    .map(|(w, b)| (w, warm(b)))
                    .collect(),
            })
            .collect();
        self
    }

    /// The state for the detector's `generation` (0 without outlier detection).
    fn compute(&self, generation: u64, excluded: &[usize]) -> State {
        let healthy = |list: &[Arc<Endpoint>]| list.iter().filter(|e| !e.is_ejected()).count();
        let health: Vec<LevelHealth> = self
            .levels
            .iter()
            .enumerate()
            .map(|(i, level)| {
                let list = level.all.endpoints();
                let usable = if excluded.contains(&i) {
                    0
                } else {
                    healthy(list)
                };
                LevelHealth::new(list.len() as u64, usable as u64)
            })
            .collect();
        let load = PriorityLoad::compute_with_panic(
            &health,
            self.overprovisioning_factor,
            self.panic_threshold,
        );
        let weighted = self.levels.iter().any(|level| !level.localities.is_empty());
        let weights = self
            .levels
            .iter()
            .filter(|_| weighted)
            .map(|level| {
                let localities: Vec<LocalityHealth> = level
                    .localities
                    .iter()
                    .map(|(weight, b)| LocalityHealth {
                        weight: *weight,
                        total: b.endpoints().len() as u64,
                        healthy: healthy(b.endpoints()) as u64,
                    })
                    .collect();
                LocalityWeights::compute(&localities, self.overprovisioning_factor)
            })
            .collect();
        State {
            generation,
            load,
            weights,
        }
    }

    /// Runs `f` on the state of `generation`, rebuilt first if it moved since.
    fn with_state<R>(&self, generation: u64, f: impl FnOnce(&State) -> R) -> R {
        {
            let state = self.state.read();
            if state.generation == generation {
                return f(&state);
            }
        }
        let fresh = self.compute(generation, &[]);
        let out = f(&fresh);
        *self.state.write() = fresh;
        out
    }

    /// Picks an endpoint (`generation`: the outlier detector's, 0 without one).
    pub fn pick<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        generation: u64,
        avoid: Avoid<'_>,
    ) -> Option<Arc<Endpoint>> {
        let point = rng.random::<u64>();
        let tried_levels = self.tried_levels(avoid);
        if tried_levels.is_empty() {
            self.with_state(generation, |state| self.pick_in(state, point, rng, avoid))
        } else {
            // `previous_priorities`: the levels tried count as unhealthy for this pick.
            let state = self.compute(generation, &tried_levels);
            self.pick_in(&state, point, rng, avoid)
        }
    }

    /// Picks the endpoint consistent-hash `key` maps to: its level by the key, then the
    /// level's hash table, passing over endpoints `tried` and (`avoid_ejected`, unless the
    /// level is in panic) ejected ones.
    pub fn pick_hashed(
        &self,
        key: u64,
        generation: u64,
        tried: &[SocketAddr],
        avoid_ejected: bool,
    ) -> Option<Arc<Endpoint>> {
        self.with_state(generation, |state| {
            let index = state.load.pick(key);
            let level = self.levels.get(index)?;
            let avoid_ejected = avoid_ejected && !state.load.in_panic(index);
            level
                .all
                .pick_hashed(key, |e| {
                    !(tried.contains(&e.addr) || avoid_ejected && e.is_ejected())
                })
                .cloned()
        })
    }

    fn pick_in<R: Rng + ?Sized>(
        &self,
        state: &State,
        point: u64,
        rng: &mut R,
        avoid: Avoid<'_>,
    ) -> Option<Arc<Endpoint>> {
        let index = state.load.pick(point);
        let level = self.levels.get(index)?;
        if state.load.in_panic(index) {
            return level.all.pick(rng).cloned();
        }
        let usable = |e: &Endpoint| !e.is_ejected() && !avoid.hosts.contains(&e.addr);
        let weighted = state
            .weights
            .get(index)
            .and_then(|weights| weights.pick(rng.random::<u64>()))
            .and_then(|locality| level.localities.get(locality))
            .and_then(|(_, balancer)| balancer.pick_where(rng, usable));
        weighted
            .or_else(|| level.all.pick_where(rng, usable))
            .or_else(|| level.all.pick_where(rng, |e| !e.is_ejected()))
            .cloned()
    }

    /// The levels of `avoid.levels_of`; none if that would be every level (then any level
    /// will do, as Envoy).
    fn tried_levels(&self, avoid: Avoid<'_>) -> Vec<usize> {
        if avoid.levels_of.is_empty() {
            return Vec::new();
        }
        let mut levels: Vec<usize> = avoid
            .levels_of
            .iter()
            .filter_map(|addr| self.level_of.get(addr).copied())
            .collect();
        levels.sort_unstable();
        levels.dedup();
        if levels.len() >= self.levels.len() {
            return Vec::new();
        }
        levels
    }

    /// The share of requests each level takes now, in percent (P0 first).
    pub fn loads(&self, generation: u64) -> Vec<u32> {
        self.with_state(generation, |state| state.load.loads().to_vec())
    }
}

#[cfg(test)]
#[path = "priority_tests.rs"]
mod tests;
