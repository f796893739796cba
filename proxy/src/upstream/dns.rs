//! DNS-resolved clusters (Envoy STRICT_DNS, LOGICAL_DNS): resolve the hostnames on a timer and publish a balancer over the addresses.
//!
//! ```text
//!  DnsTargets { [(host, port, weight)], refresh, family } ─► resolver task (one per cluster; ends with it)
//!     every refresh: lookup_host ─► addresses changed? ─► Balancer (own PoolRegistry) ─► watch ─► Cluster::pick
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::balance::{Balancer, EndpointPools, LbPolicy};
use super::pool::{PoolKey, PoolRegistry, PoolSettings, TlsMode};

/// STRICT_DNS uses every address of every host; LOGICAL_DNS the first address of its one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsKind {
    Strict,
    Logical,
}

/// Which address families a lookup keeps (Envoy `dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFamily {
    /// IPv4 if there is any, else IPv6 (Envoy's AUTO is the reverse; V4_PREFERRED is this).
    V4Preferred,
    /// IPv6 if there is any, else IPv4.
    Auto,
    V4Only,
    V6Only,
    All,
}

/// What a DNS cluster resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTargets {
    pub kind: DnsKind,
    /// (hostname or IP literal, port, weight).
    pub hosts: Vec<(String, u16, u32)>,
    pub refresh: Duration,
    pub family: LookupFamily,
}

/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// A running resolver: the latest balancer (None until the first resolution finished).
#[derive(Debug)]
pub struct DnsResolver {
    rx: watch::Receiver<Option<Arc<Balancer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsResolver {
    /// Starts resolving `targets` (inside a Tokio runtime).
    pub fn start(
        cluster: String,
        targets: DnsTargets,
        policy: LbPolicy,
        protocols: (bool, bool),
        settings: PoolSettings,
        tls: (TlsMode, crate::tls::MeshTls),
    ) -> Self {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(resolve_loop(
            cluster, targets, policy, protocols, settings, tls, tx,
        ));
        Self { rx, task }
    }

    /// The latest balancer; `None` until the first resolution.
    pub fn current(&self) -> Option<Arc<Balancer>> {
        self.rx.borrow().clone()
    }

    /// Whether the first resolution has finished.
    pub fn resolved(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Waits until the first resolution has finished.
    pub async fn wait_resolved(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

async fn resolve_loop(
    cluster: String,
    targets: DnsTargets,
    policy: LbPolicy,
    (h1, h2): (bool, bool),
    settings: PoolSettings,
    (tls, mesh_tls): (TlsMode, crate::tls::MeshTls),
    tx: watch::Sender<Option<Arc<Balancer>>>,
) {
    let mut pools = PoolRegistry::with_tls(mesh_tls);
    let mut last: Option<Vec<(SocketAddr, u32)>> = None;
    let mut failures_logged = HashSet::new();
    loop {
        let mut endpoints = Vec::new();
        for (host, port, weight) in &targets.hosts {
            match lookup(host, *port, targets.family).await {
                Ok(addrs) => {
                    failures_logged.remove(host);
                    let take = match targets.kind {
                        DnsKind::Strict => addrs.len(),
                        DnsKind::Logical => 1,
                    };
                    endpoints.extend(addrs.into_iter().take(take).map(|a| (a, *weight)));
                }
                Err(e) => {
                    if failures_logged.insert(host.clone()) {
                        tracing::warn!(%cluster, %host, error = %e, "DNS resolution failed; keeping the previous addresses");
                    }
                    // Keep what this host resolved to before, as Envoy does on failure.
                    if let Some(prev) = &last {
                        endpoints.extend(prev.iter().filter(|(a, _)| a.port() == *port).copied());
                    }
                }
            }
        }
        endpoints.sort();
        endpoints.dedup();
        if last.as_ref() != Some(&endpoints) {
            tracing::debug!(%cluster, ?endpoints, "DNS cluster endpoints changed");
            let previous = tx.borrow().clone();
            let balancer = Balancer::new(policy, &endpoints, previous.as_deref(), |addr| {
                let mut get = |protocol| {
                    pools.get(
                        PoolKey {
                            addr,
                            protocol,
                            tls: tls.clone(),
                            source: None,
                            keepalive: None,
                        },
                        settings,
                    )
                };
                EndpointPools::for_protocols((h1, h2), &mut get)
            });
            let used: HashSet<PoolKey> = balancer
                .endpoints()
                .iter()
                .flat_map(|e| e.pools().map(|p| p.key().clone()))
                .collect();
            pools.retain(&used);
            tx.send_replace(Some(Arc::new(balancer)));
            // The first pass always lands here (`last` is None), so the watch holds a
            // balancer, possibly empty, once the first resolution has finished.
            last = Some(endpoints);
        }
        tokio::time::sleep(targets.refresh).await;
    }
}

async fn lookup(host: &str, port: u16, family: LookupFamily) -> std::io::Result<Vec<SocketAddr>> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let (v4, v6): (Vec<_>, Vec<_>) = all.into_iter().partition(SocketAddr::is_ipv4);
    Ok(match family {
        LookupFamily::V4Only => v4,
        LookupFamily::V6Only => v6,
        LookupFamily::V4Preferred if !v4.is_empty() => v4,
        LookupFamily::V4Preferred => v6,
        LookupFamily::Auto if !v6.is_empty() => v6,
        LookupFamily::Auto => v4,
        LookupFamily::All => v4.into_iter().chain(v6).collect(),
    })
}
