//! Upstream clusters at run time: config + balancer + endpoints with their pools, built once per config push.
//!
//! ```text
//!  ClusterConfig + Assignment ─► Cluster { Balancer ─► [Arc<Endpoint> { in-flight, pools }] }
//!                                              pools ◄── PoolRegistry (by address, protocol, TLS; survives pushes)
//!  ORIGINAL_DST: Cluster::pick(original destination) ─► that address's Endpoint, made on first use
//!                (original_dst.rs: a bounded map; pools of their own, closed when idle)
//!  priority levels or weighted localities (EDS, Istio's localityLbSetting): Cluster::pick ─►
//!                priority.rs (level by health, locality by weight) ─► that level's Balancer
//!  per request:  Cluster::pick ─► Endpoint ─► endpoint::send ─► Pool (h1 | h2) ─► connect.rs
//!                (idle.rs: the stream idle timeout and the one timer for the response head)
//! ```

pub mod balance;
pub mod body;
pub mod breakers;
pub mod connect;
pub mod dns;
pub mod endpoint;
mod h2_keepalive;
pub mod idle;
mod original_dst;
pub mod outlier;
pub mod pool;
pub mod priority;

use std::collections::HashSet;

pub use balance::{Balancer, Endpoint, EndpointPools, InFlight, LbPolicy};
pub use body::{DownstreamBodyError, RequestBody, StreamIdleError, UpstreamBody};
pub use endpoint::{Failure, UpstreamError};
pub use pool::{Pool, PoolKey, PoolRegistry, PoolSettings, Protocol, TlsMode};

use crate::config::{Assignment, ClusterConfig, UpstreamProtocol};

/// A cluster ready for the data path.
pub struct Cluster {
    pub config: ClusterConfig,
    pub assignment: Assignment,
    pub balancer: Balancer,
    /// Whether the cluster has received its endpoints (EDS or DNS) at least once, or gave up
    /// waiting (initial fetch timeout). Routes switch to a cluster only once it is warm.
    pub warm: bool,
    /// DNS clusters: the resolver whose balancer replaces `balancer` once it has resolved.
    pub dns: Option<dns::DnsResolver>,
    /// ORIGINAL_DST clusters: the endpoints made for the destinations seen so far.
    original_dst: Option<original_dst::OriginalDstEndpoints>,
    /// The circuit breakers: requests, pending requests, connections, retries.
    pub breakers: std::sync::Arc<breakers::Breakers>,
    /// Outlier detection (`outlier_detection`), kept across pushes that keep its settings.
    pub outlier: Option<std::sync::Arc<outlier::ClusterOutlier>>,
    /// Priority levels and weighted localities, when EDS gives more than one level or the
    /// cluster weighs localities; `None`: `balancer` alone picks.
    pub priorities: Option<priority::Priorities>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("warm", &self.warm)
            .field("balancer", &self.balancer)
            .finish()
    }
}

impl Cluster {
    /// Builds a cluster; endpoints unchanged since `previous` keep their counters, and every
    /// endpoint takes its pools from `pools`.
    pub fn new(
        config: ClusterConfig,
        assignment: Assignment,
        warm: bool,
        pools: &mut PoolRegistry,
        previous: Option<&Cluster>,
    ) -> Self {
        let settings = PoolSettings {
            idle_timeout: config.idle_timeout,
            max_requests_per_connection: config.connection.max_requests_per_connection,
            max_connection_duration: config.connection.max_connection_duration,
            max_concurrent_streams: config.connection.max_concurrent_streams,
            http2_keepalive: config.connection.http2_keepalive,
            ..PoolSettings::default()
        };
        let (h1, h2) = match config.protocol {
            UpstreamProtocol::Http1 => (true, false),
            UpstreamProtocol::Http2 => (false, true),
            UpstreamProtocol::Downstream => (true, true),
        };
        let mesh_tls = pools.tls();
        let mut pools_for = |addr| {
            let tls = endpoint_tls(&config, &assignment, addr);
            let mut get = |protocol| {
                pools.get(
                    PoolKey {
                        addr,
                        protocol,
                        tls: tls.clone(),
                        source: config.source_address,
                        keepalive: config.connection.keepalive,
                    },
                    settings,
                )
            };
            EndpointPools::for_protocols((h1, h2), &mut get)
        };
        let original_dst =
            (config.discovery == crate::config::DiscoveryKind::OriginalDst).then(|| {
                original_dst::OriginalDstEndpoints::new(
                    (h1, h2),
                    settings,
                    TlsMode::from_config(config.tls.for_endpoint(None)),
                    config.source_address,
                    mesh_tls.clone(),
                )
            });
        let dns = match &config.discovery {
            crate::config::DiscoveryKind::Dns(targets) => Some(dns::DnsResolver::start(
                config.name.clone(),
                targets.clone(),
                config.lb_policy,
                (h1, h2),
                settings,
                (
                    TlsMode::from_config(config.tls.for_endpoint(None)),
                    mesh_tls,
                ),
            )),
            _ => None,
        };
        let outlier = config.outlier.as_ref().map(|settings| {
            match previous.and_then(|p| p.outlier.as_ref()) {
                Some(o) if o.config() == settings => o.clone(),
                _ => outlier::ClusterOutlier::start(&config.name, settings.clone()),
            }
        });
        if let Some(o) = &outlier {
            o.set_endpoints(assignment.endpoints.iter().map(|(addr, _)| *addr));
        }
        let balancer = Balancer::with_health(
            config.lb_policy,
            &assignment.endpoints,
            previous
                .filter(|p| p.config.lb_policy == config.lb_policy)
                .map(|p| &p.balancer),
            &mut pools_for,
            |addr| outlier.as_ref().map(|o| o.host(addr)),
        )
        .with_slow_start(config.slow_start);
        let priorities = priority::Priorities::build(
            config.lb_policy,
            &assignment,
            balancer.endpoints(),
            config.locality_weighted,
            config
                .outlier
                .as_ref()
                .map_or(crate::config::outlier::DEFAULT_PANIC_THRESHOLD, |o| {
                    o.panic_threshold
                }),
            previous.and_then(|p| p.priorities.as_ref()),
        )
        .map(|p| p.with_slow_start(config.slow_start));
        // Unchanged limits keep their budget's window and what is in flight.
        let breakers = match previous {
            Some(p) if *p.breakers.config() == config.circuit_breakers => p.breakers.clone(),
            _ => std::sync::Arc::new(breakers::Breakers::new(config.circuit_breakers.clone())),
        };
        Self {
            config,
            assignment,
            balancer,
            warm,
            dns,
            original_dst,
            breakers,
            outlier,
            priorities,
        }
    }

    /// The outlier detector's generation (0 without outlier detection): priority state
    /// computed at another generation is stale.
    fn health_generation(&self) -> u64 {
        self.outlier.as_ref().map_or(0, |o| o.generation())
    }

    /// Picks an endpoint for one request or connection whose original destination is
    /// `destination` (`None`: no endpoint can take it).
    pub fn pick(&self, destination: std::net::SocketAddr) -> Option<std::sync::Arc<Endpoint>> {
        if let Some(original) = &self.original_dst {
            return Some(original.endpoint(destination));
        }
        let mut rng = rand::rng();
        if let Some(priorities) = &self.priorities {
            return priorities.pick(
                &mut rng,
                self.health_generation(),
                priority::Avoid::default(),
            );
        }
        match &self.dns {
            None => match &self.outlier {
                Some(o) if o.avoid_ejected() => self
                    .balancer
                    .pick_where(&mut rng, |e| !e.is_ejected())
                    .cloned(),
                _ => self.balancer.pick(&mut rng).cloned(),
            },
            Some(dns) => dns.current()?.pick(&mut rng).cloned(),
        }
    }

    /// Records the outcome of an attempt to `endpoint` for outlier detection (nothing when the
    /// cluster detects no outliers).
    pub fn record(&self, endpoint: &Endpoint, outcome: weft_lb::outlier::Outcome) {
        if let (Some(outlier), Some(host)) = (&self.outlier, endpoint.health()) {
            outlier.record(host, outcome);
        }
    }

    /// Picks an endpoint for a request with consistent-hash key `key` (`None`, or a cluster
    /// that does not balance by hash: [`Cluster::pick`]). Ejected endpoints, and those in
    /// `tried` (a retry), are passed over for the next ones on the hash table.
    pub fn pick_by_key(
        &self,
        destination: std::net::SocketAddr,
        key: Option<u64>,
        tried: &[std::net::SocketAddr],
    ) -> Option<std::sync::Arc<Endpoint>> {
        let Some(key) = key else {
            return self.pick(destination);
        };
        let avoid_ejected = self.outlier.as_ref().is_some_and(|o| o.avoid_ejected());
        let usable = |e: &Endpoint| !(tried.contains(&e.addr) || avoid_ejected && e.is_ejected());
        let picked = match &self.dns {
            None if self.balancer.is_hash() && self.priorities.is_some() => {
                self.priorities.as_ref().and_then(|priorities| {
                    priorities.pick_hashed(key, self.health_generation(), tried, avoid_ejected)
                })
            }
            None if self.balancer.is_hash() => self.balancer.pick_hashed(key, usable).cloned(),
            Some(dns) => match dns.current() {
                Some(b) if b.is_hash() => b.pick_hashed(key, usable).cloned(),
                _ => return self.pick(destination),
            },
            None => return self.pick(destination),
        };
        // Every endpoint tried already: the key's own one again.
        picked.or_else(|| {
            (!tried.is_empty())
                .then(|| self.pick_by_key(destination, Some(key), &[]))
                .flatten()
        })
    }

    /// Picks an endpoint for a retry: one not in `tried` if `attempts` picks find one (Envoy's
    /// `previous_hosts` predicate with `host_selection_retry_max_attempts`), else the last pick.
    /// With priority levels, the levels of `levels_of` (`retryRemoteLocalities`, Envoy's
    /// `previous_priorities`: the endpoints tried) count as unhealthy for this pick.
    pub fn pick_avoiding(
        &self,
        destination: std::net::SocketAddr,
        tried: &[std::net::SocketAddr],
        attempts: u32,
        levels_of: &[std::net::SocketAddr],
    ) -> Option<std::sync::Arc<Endpoint>> {
        if let Some(priorities) = &self.priorities {
            let avoid = priority::Avoid {
                hosts: tried,
                levels_of,
            };
            return priorities.pick(&mut rand::rng(), self.health_generation(), avoid);
        }
        let mut last = None;
        for _ in 0..attempts.max(1) {
            let endpoint = self.pick(destination)?;
            if !tried.contains(&endpoint.addr) {
                return Some(endpoint);
            }
            last = Some(endpoint);
        }
        last
    }

    /// The endpoints requests go to now (a DNS cluster's latest resolution).
    pub fn endpoints(&self) -> Vec<std::sync::Arc<Endpoint>> {
        match self.dns.as_ref().and_then(dns::DnsResolver::current) {
            Some(b) => b.endpoints().to_vec(),
            None => self.balancer.endpoints().to_vec(),
        }
    }

    /// The transport towards endpoint `addr` (its transport socket match).
    pub fn tls_for(&self, addr: std::net::SocketAddr) -> TlsMode {
        endpoint_tls(&self.config, &self.assignment, addr)
    }

    /// Whether connections go to the downstream's original destination (`ORIGINAL_DST`).
    pub fn is_original_dst(&self) -> bool {
        self.original_dst.is_some()
    }

    /// Ready to serve: endpoints received (EDS), or resolved once (DNS).
    pub fn is_ready(&self) -> bool {
        self.warm && self.dns.as_ref().is_none_or(dns::DnsResolver::resolved)
    }

    /// The protocol this cluster speaks for a request that arrived as HTTP/2 or not.
    pub fn protocol(&self, downstream_h2: bool) -> Protocol {
        match self.config.protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2 => Protocol::Http2,
            UpstreamProtocol::Downstream if downstream_h2 => Protocol::Http2,
            UpstreamProtocol::Downstream => Protocol::Http1,
        }
    }

    /// Adds the keys of every pool this cluster's endpoints use to `used`.
    pub fn collect_pool_keys(&self, used: &mut HashSet<PoolKey>) {
        for e in self.balancer.endpoints() {
            for p in e.pools() {
                used.insert(p.key().clone());
            }
        }
    }
}

/// The transport towards endpoint `addr` of a cluster: its transport socket match.
fn endpoint_tls(
    config: &ClusterConfig,
    assignment: &Assignment,
    addr: std::net::SocketAddr,
) -> TlsMode {
    let labels = assignment.socket_labels.get(&addr).map(AsRef::as_ref);
    TlsMode::from_config(config.tls.for_endpoint(labels))
}
