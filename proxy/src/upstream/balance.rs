//! Per-cluster endpoint selection: round robin (weighted), least request (P2C), random.
//!
//! ```text
//!  cluster ─► Balancer::pick ─► Arc<Endpoint> (+ InFlight guard) ─► endpoint.rs ─► its Pool
//!                    │ atomics only: RR cursor, per-endpoint in-flight counts
//! ```
//!
//! A `Balancer` is built once per config push; endpoint counters are carried over
//! from the previous balancer for endpoints that are still present.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, RngExt};

use super::breakers::RequestPermit;
use super::outlier::EndpointHealth;
use super::pool::{Pool, Protocol};

/// Longest precomputed smooth round-robin schedule; larger weight sums use cumulative lookup.
const MAX_SCHEDULE: u64 = 4096;

/// Load-balancing policy of a cluster (Envoy `lb_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    /// `RING_HASH` or `MAGLEV`: requests with a hash key go where the key maps
    /// (`weft_lb::hash`); those without one, to a random endpoint (as Envoy).
    Hash(weft_lb::hash::HashConfig),
}

impl LbPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "ROUND_ROBIN",
            Self::LeastRequest => "LEAST_REQUEST",
            Self::Random => "RANDOM",
            Self::Hash(weft_lb::hash::HashConfig::Ring { .. }) => "RING_HASH",
            Self::Hash(weft_lb::hash::HashConfig::Maglev { .. }) => "MAGLEV",
        }
    }
}

/// One upstream endpoint: its live in-flight request count and its connection pools.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    in_flight: AtomicUsize,
    /// The pools for the protocols its cluster speaks (one or both).
    pools: EndpointPools,
    /// Its outlier state, when the cluster detects outliers.
    health: Option<EndpointHealth>,
    /// When it joined its cluster (slow start counts from here).
    since: std::time::Instant,
}

/// An endpoint's pools, one per protocol its cluster may use.
#[derive(Debug, Clone, Default)]
pub struct EndpointPools {
    pub http1: Option<Arc<Pool>>,
    pub http2: Option<Arc<Pool>>,
}

impl EndpointPools {
    /// The pools for the protocols a cluster speaks (`(HTTP/1.1, HTTP/2)`), each from `get`.
    pub fn for_protocols(
        (h1, h2): (bool, bool),
        mut get: impl FnMut(Protocol) -> Arc<Pool>,
    ) -> Self {
        Self {
            http1: h1.then(|| get(Protocol::Http1)),
            http2: h2.then(|| get(Protocol::Http2)),
        }
    }

    fn same(&self, other: &Self) -> bool {
        let eq = |a: &Option<Arc<Pool>>, b: &Option<Arc<Pool>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        eq(&self.http1, &other.http1) && eq(&self.http2, &other.http2)
    }
}

impl Endpoint {
    pub fn new(addr: SocketAddr, weight: u32, pools: EndpointPools) -> Self {
        Self {
            addr,
            weight: weight.max(1),
            in_flight: AtomicUsize::new(0),
            pools,
            health: None,
            since: std::time::Instant::now(),
        }
    }

    /// Whether outlier detection has ejected this endpoint.
    pub fn is_ejected(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.is_ejected())
    }

    /// Its outlier state, when the cluster detects outliers.
    pub fn health(&self) -> Option<&EndpointHealth> {
        self.health.as_ref()
    }

    /// The pool for `protocol`, if this endpoint's cluster speaks it.
    pub fn pool(&self, protocol: Protocol) -> Option<&Arc<Pool>> {
        match protocol {
            Protocol::Http1 => self.pools.http1.as_ref(),
            Protocol::Http2 => self.pools.http2.as_ref(),
        }
    }

    /// Whether its connections for `protocol` are mesh mutual TLS.
    pub fn mesh_tls(&self, protocol: Protocol) -> bool {
        self.pool(protocol).is_some_and(|p| p.is_mesh_tls())
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.http1.iter().chain(self.pools.http2.iter())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one request against this endpoint until the guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.start_request_with(None)
    }

    /// [`Endpoint::start_request`], holding the cluster's request permit as long.
    pub fn start_request_with(self: &Arc<Self>, permit: Option<RequestPermit>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: self.clone(),
            _permit: permit,
        }
    }
}

/// Decrements the endpoint's in-flight count (and releases the cluster's request permit) when
/// the request (and its body) ends.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    /// Held, not read: released with the guard.
    _permit: Option<RequestPermit>,
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Endpoint picker for one cluster. Immutable after construction except for atomics.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    endpoints: Vec<Arc<Endpoint>>,
    /// Cumulative weights, for weighted random and large round-robin weight sums.
    cumulative: Vec<u64>,
    total_weight: u64,
    /// Smooth weighted round-robin order (indices into `endpoints`), if small enough.
    schedule: Vec<u32>,
    cursor: AtomicUsize,
    all_equal: bool,
    /// The consistent-hash table of a `Hash` policy, over `endpoints` (by index).
    hash: Option<weft_lb::hash::HashTable>,
    /// Slow start, while some endpoint is still in its window (until `warm_until`).
    slow_start: Option<(weft_lb::warmup::Config, std::time::Instant)>,
}

impl Balancer {
    /// Builds a balancer; endpoints present in `previous` with the same weight and pools are
    /// reused (in-flight counts carry over). `pools` gives a new endpoint its pools.
    pub fn new(
        policy: LbPolicy,
        endpoints: &[(SocketAddr, u32)],
        previous: Option<&Balancer>,
        pools: impl FnMut(SocketAddr) -> EndpointPools,
    ) -> Self {
        Self::with_health(policy, endpoints, previous, pools, |_| None)
    }

    /// [`Balancer::new`] with each endpoint's outlier state from `health`; an endpoint is
    /// reused only if its state is the same one.
    pub fn with_health(
        policy: LbPolicy,
        endpoints: &[(SocketAddr, u32)],
        previous: Option<&Balancer>,
        mut pools: impl FnMut(SocketAddr) -> EndpointPools,
        mut health: impl FnMut(SocketAddr) -> Option<EndpointHealth>,
    ) -> Self {
        let old: HashMap<(SocketAddr, u32), &Arc<Endpoint>> = previous
            .map(|b| {
                b.endpoints
                    .iter()
                    .map(|e| ((e.addr, e.weight), e))
                    .collect()
            })
            .unwrap_or_default();
        let endpoints: Vec<Arc<Endpoint>> = endpoints
            .iter()
            .map(|&(addr, weight)| {
                let p = pools(addr);
                let h = health(addr);
                let same_health = |e: &Endpoint| match (&e.health, &h) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                };
                match old.get(&(addr, weight.max(1))) {
                    Some(e) if e.pools.same(&p) && same_health(e) => Arc::clone(e),
                    _ => {
                        let mut endpoint = Endpoint::new(addr, weight, p);
                        endpoint.health = h;
                        Arc::new(endpoint)
                    }
                }
            })
            .collect();
        let cursor = previous.map(|b| b.cursor.load(Ordering::Relaxed));
        Self::over(policy, endpoints, cursor)
    }

    /// A balancer over endpoints that already exist (a priority level's or a locality's,
    /// shared with the cluster's balancer), its round-robin cursor at `cursor` (else at a
    /// random place).
    pub fn over(policy: LbPolicy, endpoints: Vec<Arc<Endpoint>>, cursor: Option<usize>) -> Self {
        let mut cumulative = Vec::with_capacity(endpoints.len());
        let mut total_weight = 0u64;
        for e in &endpoints {
            total_weight += u64::from(e.weight);
            cumulative.push(total_weight);
        }
        let all_equal = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let schedule = if policy == LbPolicy::RoundRobin && !all_equal {
            smooth_schedule(&endpoints)
        } else {
            Vec::new()
        };
        let start = cursor.unwrap_or_else(|| rand::rng().random_range(0..1024));
        let hash = match policy {
            LbPolicy::Hash(config) => {
                // Keyed by address, so every proxy maps a key to the same endpoint.
                let hosts: Vec<(String, u32)> = endpoints
                    .iter()
                    .map(|e| (e.addr.to_string(), e.weight))
                    .collect();
                match weft_lb::hash::HashTable::build(&hosts, &config) {
                    Ok(table) => Some(table),
                    Err(error) => {
                        // The config was validated; this is a bug, not bad input: balance at
                        // random rather than fail the cluster.
                        tracing::error!(%error, "consistent-hash table not built; balancing at random");
                        None
                    }
                }
            }
            _ => None,
        };
        Self {
            policy,
            endpoints,
            cumulative,
            total_weight,
            schedule,
            cursor: AtomicUsize::new(start),
            all_equal,
            hash,
            slow_start: None,
        }
    }

    /// The round-robin cursor, for a balancer that replaces this one.
    pub fn cursor(&self) -> usize {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Turns slow start on: endpoints younger than the window get a share of their weight that
    /// grows with their age (round robin and least request; `weft_lb::warmup`).
    #[must_use]
    pub fn with_slow_start(mut self, config: Option<weft_lb::warmup::Config>) -> Self {
        self.slow_start = config.and_then(|config| {
            let youngest = self.endpoints.iter().map(|e| e.since).max()?;
            let until = youngest + config.window;
            (until > std::time::Instant::now()).then_some((config, until))
        });
        self
    }

    /// While an endpoint warms up: a pick by weight × its slow-start factor (no allocation:
    /// two passes over the endpoints).
    fn pick_warming<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        config: &weft_lb::warmup::Config,
    ) -> Option<usize> {
        let now = std::time::Instant::now();
        let weight = |e: &Endpoint| config.weight(f64::from(e.weight), e.since, now);
        let total: f64 = self.endpoints.iter().map(|e| weight(e)).sum();
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        let mut point = rng.random_range(0.0..total);
        for (i, e) in self.endpoints.iter().enumerate() {
            point -= weight(e);
            if point < 0.0 {
                return Some(i);
            }
        }
        Some(self.endpoints.len() - 1)
    }

    /// Picks the endpoint `key` maps to on the consistent-hash table, skipping those `usable`
    /// refuses (the next ones on the table); without a table (not a hash policy), `None`.
    pub fn pick_hashed(
        &self,
        key: u64,
        usable: impl Fn(&Endpoint) -> bool,
    ) -> Option<&Arc<Endpoint>> {
        let table = self.hash.as_ref()?;
        let index = table.pick_where(key, |i| self.endpoints.get(i).is_some_and(|e| usable(e)))?;
        self.endpoints.get(index)
    }

    /// Whether requests are balanced by consistent hashing.
    pub fn is_hash(&self) -> bool {
        self.hash.is_some()
    }

    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Picks an endpoint, or `None` when the cluster has none.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        match n {
            0 => return None,
            1 => return self.endpoints.first(),
            _ => {}
        }
        if let Some((config, until)) = &self.slow_start
            && matches!(self.policy, LbPolicy::RoundRobin | LbPolicy::LeastRequest)
            && std::time::Instant::now() < *until
            && let Some(index) = self.pick_warming(rng, config)
        {
            return self.endpoints.get(index);
        }
        let index = match self.policy {
            LbPolicy::RoundRobin => {
                let tick = self.cursor.fetch_add(1, Ordering::Relaxed);
                if self.all_equal {
                    tick % n
                } else if !self.schedule.is_empty() {
                    self.schedule[tick % self.schedule.len()] as usize
                } else {
                    self.by_weight(tick as u64 % self.total_weight)
                }
            }
            // A request without a hash key: at random, by weight (as Envoy).
            LbPolicy::Random | LbPolicy::Hash(_) => {
                self.by_weight(rng.random_range(0..self.total_weight))
            }
            LbPolicy::LeastRequest => {
                // Power of two choices on in-flight counts, scaled by weight.
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
                let load_a = (ea.in_flight() as u64 + 1) * u64::from(eb.weight);
                let load_b = (eb.in_flight() as u64 + 1) * u64::from(ea.weight);
                if load_b < load_a { b } else { a }
            }
        };
        self.endpoints.get(index)
    }

    /// Picks an endpoint `usable` accepts: the policy's pick if it is, else up to two more
    /// picks, else the first usable one from a random place; `None` when none is.
    pub fn pick_where<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        usable: impl Fn(&Endpoint) -> bool,
    ) -> Option<&Arc<Endpoint>> {
        for _ in 0..3 {
            let picked = self.pick(rng)?;
            if usable(picked) {
                return Some(picked);
            }
        }
        let n = self.endpoints.len();
        let start = rng.random_range(0..n);
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| usable(e))
    }

    fn by_weight(&self, point: u64) -> usize {
        self.cumulative.partition_point(|&c| c <= point)
    }
}

/// nginx-style smooth weighted round robin, unrolled over one full period.
fn smooth_schedule(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let gcd = endpoints
        .iter()
        .fold(0u64, |g, e| gcd(g, u64::from(e.weight)));
    let weights: Vec<i64> = endpoints
        .iter()
        .map(|e| (u64::from(e.weight) / gcd.max(1)) as i64)
        .collect();
    let period: i64 = weights.iter().sum();
    if period as u64 > MAX_SCHEDULE {
        return Vec::new();
    }
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(period as usize);
    for _ in 0..period {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= period;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn no_pools(_: SocketAddr) -> EndpointPools {
        EndpointPools::default()
    }

    #[test]
    fn a_new_endpoint_ramps_up_in_slow_start() {
        let config = weft_lb::warmup::Config {
            window: std::time::Duration::from_secs(60),
            ..weft_lb::warmup::Config::default()
        };
        let old = Balancer::new(LbPolicy::RoundRobin, &[(addr(1), 1)], None, no_pools);
        // An endpoint that joined a minute and a half ago (its window is over) and a new one.
        let mut aged = Endpoint::new(addr(1), 1, EndpointPools::default());
        aged.since = std::time::Instant::now() - std::time::Duration::from_secs(90);
        let mut b = Balancer::new(
            LbPolicy::RoundRobin,
            &[(addr(1), 1), (addr(2), 1)],
            Some(&old),
            no_pools,
        );
        b.endpoints[0] = Arc::new(aged);
        let b = b.with_slow_start(Some(config));
        let mut rng = SmallRng::seed_from_u64(7);
        let new = (0..10_000)
            .filter(|_| b.pick(&mut rng).unwrap().addr == addr(2))
            .count();
        // Just joined: the 10 % floor of its weight, against the old one's full weight.
        assert!(
            (500..1300).contains(&new),
            "the new endpoint got {new} of 10000"
        );
        // Without slow start: half.
        let plain = Balancer::new(
            LbPolicy::RoundRobin,
            &[(addr(1), 1), (addr(2), 1)],
            None,
            no_pools,
        )
        .with_slow_start(None);
        let even = (0..10_000)
            .filter(|_| plain.pick(&mut rng).unwrap().addr == addr(2))
            .count();
        assert_eq!(even, 5000, "round robin alternates");
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn counts<R: Rng>(b: &Balancer, rng: &mut R, n: usize) -> HashMap<u16, usize> {
        let mut out = HashMap::new();
        for _ in 0..n {
            *out.entry(b.pick(rng).unwrap().addr.port()).or_default() += 1;
        }
        out
    }

    #[test]
    fn empty_cluster_picks_nothing() {
        let b = Balancer::new(LbPolicy::RoundRobin, &[], None, no_pools);
        assert!(b.pick(&mut SmallRng::seed_from_u64(1)).is_none());
    }

    #[test]
    fn round_robin_cycles_evenly() {
        let b = Balancer::new(
            LbPolicy::RoundRobin,
            &[(addr(1), 1), (addr(2), 1), (addr(3), 1)],
            None,
            no_pools,
        );
        let c = counts(&b, &mut SmallRng::seed_from_u64(1), 300);
        assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![100; 3]);
    }

    #[test]
    fn round_robin_respects_weights_smoothly() {
        let b = Balancer::new(
            LbPolicy::RoundRobin,
            &[(addr(1), 3), (addr(2), 1)],
            None,
            no_pools,
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let c = counts(&b, &mut rng, 400);
        assert_eq!(c[&1], 300);
        assert_eq!(c[&2], 100);
        // Smooth: endpoint 2 never appears twice in a row.
        let seq: Vec<u16> = (0..8)
            .map(|_| b.pick(&mut rng).unwrap().addr.port())
            .collect();
        assert!(seq.windows(2).all(|w| !(w[0] == 2 && w[1] == 2)), "{seq:?}");
    }

    #[test]
    fn round_robin_large_weights_use_cumulative() {
        let b = Balancer::new(
            LbPolicy::RoundRobin,
            &[(addr(1), 9999), (addr(2), 1)],
            None,
            no_pools,
        );
        assert!(b.schedule.is_empty());
        let c = counts(&b, &mut SmallRng::seed_from_u64(1), 10000);
        assert_eq!(c[&2], 1);
    }

    #[test]
    fn random_respects_weights() {
        let b = Balancer::new(
            LbPolicy::Random,
            &[(addr(1), 4), (addr(2), 1)],
            None,
            no_pools,
        );
        let c = counts(&b, &mut SmallRng::seed_from_u64(7), 10_000);
        let share = c[&1] as f64 / 10_000.0;
        assert!((0.77..0.83).contains(&share), "{share}");
    }

    #[test]
    fn least_request_avoids_busy_endpoint() {
        let b = Balancer::new(
            LbPolicy::LeastRequest,
            &[(addr(1), 1), (addr(2), 1)],
            None,
            no_pools,
        );
        let busy = b.endpoints()[0].clone();
        let _guards: Vec<InFlight> = (0..5).map(|_| busy.start_request()).collect();
        let c = counts(&b, &mut SmallRng::seed_from_u64(3), 100);
        assert_eq!(c.get(&2), Some(&100));
    }

    #[test]
    fn in_flight_guard_decrements() {
        let b = Balancer::new(LbPolicy::LeastRequest, &[(addr(1), 1)], None, no_pools);
        let e = b.endpoints()[0].clone();
        {
            let _g = e.start_request();
            assert_eq!(e.in_flight(), 1);
        }
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn counters_survive_rebuild_for_unchanged_endpoints() {
        let old = Balancer::new(
            LbPolicy::LeastRequest,
            &[(addr(1), 1), (addr(2), 1)],
            None,
            no_pools,
        );
        let _g = old.endpoints()[0].start_request();
        let new = Balancer::new(
            LbPolicy::LeastRequest,
            &[(addr(1), 1), (addr(3), 1)],
            Some(&old),
            no_pools,
        );
        assert_eq!(new.endpoints()[0].in_flight(), 1);
        assert!(Arc::ptr_eq(&new.endpoints()[0], &old.endpoints()[0]));
        assert_eq!(new.endpoints()[1].in_flight(), 0);
    }
}
