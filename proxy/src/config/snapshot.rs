//! `ProxyConfig`: one immutable snapshot of everything the data path needs, with every name already resolved.
//!
//! ```text
//!  ProxyConfig ─ listeners[addr] ─► ActiveListener { Listener, chains[i] ─► ActiveChain }
//!                                        ActiveChain { HTTP: RouteSlot │ TCP: [Arc<Cluster>] }
//!                                        RouteSlot { active RouteTable, pending RouteTable until its clusters are warm }
//!                                        RouteTable { RouteConfig, targets[slot] ─► Arc<Cluster> }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Listener, RouteConfig};
use crate::upstream::Cluster;

/// Version, resource names and last rejection of one resource type.
#[derive(Debug, Clone, Default)]
pub struct TypeState {
    /// Version of the last applied (ACKed) response; `None` until one was applied.
    pub version: Option<String>,
    pub names: Vec<String>,
    /// Version and message of the last rejected (NACKed) response.
    pub last_rejection: Option<(String, String)>,
}

/// A route configuration with its cluster slots resolved against the clusters of the snapshot.
#[derive(Debug)]
pub struct RouteTable {
    pub config: Arc<RouteConfig>,
    /// By slot (`RouteConfig::cluster_slots`); `None` = the cluster is not configured.
    pub targets: Box<[Option<Arc<Cluster>>]>,
}

impl RouteTable {
    pub fn bind(config: Arc<RouteConfig>, clusters: &HashMap<String, Arc<Cluster>>) -> Self {
        let targets = config
            .cluster_slots
            .iter()
            .map(|name| clusters.get(name).cloned())
            .collect();
        Self { config, targets }
    }

    /// Names of configured clusters this table uses that have not received endpoints yet.
    pub fn cold_clusters(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .flatten()
            .filter(|c| !c.warm)
            .map(|c| c.config.name.as_str())
    }

    pub fn cluster(&self, slot: usize) -> Option<&Arc<Cluster>> {
        self.targets.get(slot).and_then(Option::as_ref)
    }
}

/// The routes a listener uses now, and a newer version that waits for its clusters to warm.
#[derive(Debug, Clone)]
pub struct RouteSlot {
    pub active: Arc<RouteTable>,
    /// Takes over at the deadline even if its clusters are still cold (Envoy's initial fetch timeout).
    pub pending: Option<(Arc<RouteTable>, Instant)>,
}

impl RouteSlot {
    /// The table a request starts on.
    pub fn current(&self) -> &Arc<RouteTable> {
        match &self.pending {
            Some((table, deadline)) if Instant::now() >= *deadline => table,
            _ => &self.active,
        }
    }
}

/// A bound listener: its config and, per filter chain, what the chain forwards to.
#[derive(Debug, Clone)]
pub struct ActiveListener {
    pub config: Arc<Listener>,
    /// By chain index (`Listener::chains`).
    pub chains: Box<[ActiveChain]>,
}

/// A filter chain's targets, resolved.
#[derive(Debug, Clone, Default)]
pub struct ActiveChain {
    /// HTTP chains: `None` until the RDS route configuration arrives.
    pub routes: Option<RouteSlot>,
    /// TCP chains: the tcp_proxy's clusters by entry (`TcpProxy::clusters`), each `None`
    /// while that cluster is not configured.
    pub clusters: Box<[Option<Arc<Cluster>>]>,
}

impl ActiveListener {
    /// The HTTP connection manager of chain `chain` and its routes.
    pub fn http(&self, chain: usize) -> Option<(&super::HttpManager, Option<&RouteSlot>)> {
        match &self.config.chains.get(chain)?.network {
            super::Network::Http(m) => {
                Some((&**m, self.chains.get(chain).and_then(|c| c.routes.as_ref())))
            }
            super::Network::Tcp(_) => None,
        }
    }
}

/// One immutable snapshot of everything the data path needs.
#[derive(Debug, Default)]
pub struct ProxyConfig {
    /// Listeners by the address they are configured with.
    pub listeners: super::FastMap<SocketAddr, ActiveListener>,
    /// Route tables by RDS name.
    pub routes: HashMap<String, RouteSlot>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    pub lds: TypeState,
    pub rds: TypeState,
    pub cds: TypeState,
    pub eds: TypeState,
    /// When waiting for cold clusters stops blocking readiness (initial fetch timeout).
    pub(crate) warming_deadline: Option<Instant>,
}

impl ProxyConfig {
    /// Ready once listeners, clusters, every cluster's endpoints and every listener's routes
    /// have been applied at least once (clusters still waiting for endpoints stop counting
    /// after the initial fetch timeout).
    pub fn ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why the proxy is not ready, for `/healthz/ready`.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.lds.version.is_none() {
            return Some("waiting for listeners (LDS)".into());
        }
        if self.cds.version.is_none() {
            return Some("waiting for clusters (CDS)".into());
        }
        let mut missing_routes: Vec<&str> = self
            .listeners
            .values()
            .flat_map(|l| {
                l.config
                    .http_managers()
                    .filter(|(i, _)| l.chains.get(*i).is_none_or(|c| c.routes.is_none()))
                    .filter_map(|(_, m)| match &m.routes {
                        super::RouteSource::Rds(name) => Some(name.as_str()),
                        super::RouteSource::Inline(_) => None,
                    })
            })
            .collect();
        missing_routes.sort_unstable();
        missing_routes.dedup();
        if !missing_routes.is_empty() {
            return Some(format!(
                "waiting for route configurations (RDS): {}",
                missing_routes.join(", ")
            ));
        }
        let timed_out = self
            .warming_deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        if !timed_out {
            let mut cold: Vec<&str> = self
                .clusters
                .values()
                .filter(|c| !c.is_ready())
                .map(|c| c.config.name.as_str())
                .collect();
            if !cold.is_empty() {
                cold.sort_unstable();
                let more = cold.len().saturating_sub(5);
                cold.truncate(5);
                return Some(format!(
                    "waiting for endpoints (EDS/DNS) of {}{}",
                    cold.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        None
    }

    /// The listener configured at `addr`.
    pub fn listener(&self, addr: &SocketAddr) -> Option<&ActiveListener> {
        self.listeners.get(addr)
    }
}
