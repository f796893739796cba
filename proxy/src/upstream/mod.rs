//! Upstream clusters at run time: config + balancer + endpoints with their pools, built once per config push.
//!
//! ```text
//!  ClusterConfig + Assignment ─► Cluster { Balancer ─► [Arc<Endpoint> { in-flight, pools }] }
//!                                              pools ◄── PoolRegistry (by address, protocol, TLS; survives pushes)
//!  ORIGINAL_DST: Cluster::pick(original destination) ─► that address's Endpoint, made on first use
//!                (original_dst.rs: a bounded map; pools of their own, closed when idle)
//!  per request:  Cluster::pick ─► Endpoint ─► endpoint::send ─► Pool (h1 | h2) ─► connect.rs
//!                (idle.rs: the stream idle timeout and the one timer for the response head)
//! ```

pub mod balance;
pub mod body;
pub mod connect;
pub mod dns;
pub mod endpoint;
pub mod idle;
mod original_dst;
pub mod pool;
pub mod retry_limits;

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
    /// The retry budget and retries in flight (`circuit_breakers`).
    pub retry_limits: std::sync::Arc<retry_limits::RetryLimits>,
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
        let balancer = Balancer::new(
            config.lb_policy,
            &assignment.endpoints,
            previous
                .filter(|p| p.config.lb_policy == config.lb_policy)
                .map(|p| &p.balancer),
            &mut pools_for,
        );
        // Unchanged limits keep their budget's window and the retries in flight.
        let retry_limits = match previous {
            Some(p) if *p.retry_limits.config() == config.circuit_breakers => {
                p.retry_limits.clone()
            }
            _ => std::sync::Arc::new(retry_limits::RetryLimits::new(
                config.circuit_breakers.clone(),
            )),
        };
        Self {
            config,
            assignment,
            balancer,
            warm,
            dns,
            original_dst,
            retry_limits,
        }
    }

    /// Picks an endpoint for one request or connection whose original destination is
    /// `destination` (`None`: no endpoint can take it).
    pub fn pick(&self, destination: std::net::SocketAddr) -> Option<std::sync::Arc<Endpoint>> {
        if let Some(original) = &self.original_dst {
            return Some(original.endpoint(destination));
        }
        let mut rng = rand::rng();
        match &self.dns {
            None => self.balancer.pick(&mut rng).cloned(),
            Some(dns) => dns.current()?.pick(&mut rng).cloned(),
        }
    }

    /// Picks an endpoint for a retry: one not in `tried` if `attempts` picks find one (Envoy's
    /// `previous_hosts` predicate with `host_selection_retry_max_attempts`), else the last pick.
    pub fn pick_avoiding(
        &self,
        destination: std::net::SocketAddr,
        tried: &[std::net::SocketAddr],
        attempts: u32,
    ) -> Option<std::sync::Arc<Endpoint>> {
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
