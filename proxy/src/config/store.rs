//! `ConfigStore`: the xDS `Handler`. Keeps the last good resource of every name and publishes `ProxyConfig`.
//!
//! ```text
//!  ADS response ─► apply(type, version, [Any]) ─► decode + TryFrom each resource
//!     valid resources replace their old version; an invalid one keeps its old version (NACK names it)
//!     LDS, CDS: the response is the full set (absent = removed);  RDS, EDS: absent = unchanged,
//!     removed only when no listener/cluster subscribes to it any more
//!  ─► bind: listeners → route tables → clusters (slots) → endpoints and pools (PoolRegistry)
//!     a route table that needs a cluster still waiting for endpoints stays pending (old one serves)
//!  ─► watch::Sender<Arc<ProxyConfig>> ─► data path, admin;  LDS: sockets bound before, started after
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rds;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_xds::type_url;

use super::snapshot::{ActiveChain, ActiveListener, RouteSlot, RouteTable};
use super::xds_state::{Outcome, XdsState};
use super::{
    Assignment, ClusterConfig, ConfigError, DiscoveryKind, Listener, Network, ProxyConfig, Reason,
    RouteConfig, RouteSource,
};
use crate::drain::Drain;
use crate::limits::DownstreamLimits;
use crate::listeners::ListenerManager;
use crate::upstream::{Cluster, PoolRegistry};

/// Envoy's default `initial_fetch_timeout`: how long a cluster waits for its endpoints (and
/// a new route table for its clusters) before it is used anyway.
pub const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Owns the last good config per type; the single writer of the `ProxyConfig` channel.
pub struct ConfigStore {
    listeners: BTreeMap<String, Arc<Listener>>,
    routes: BTreeMap<String, Arc<RouteConfig>>,
    clusters: BTreeMap<String, ClusterConfig>,
    /// When each EDS cluster first appeared (for the initial fetch timeout).
    first_seen: HashMap<String, Instant>,
    assignments: HashMap<String, Assignment>,
    current: Arc<ProxyConfig>,
    pools: PoolRegistry,
    sockets: ListenerManager,
    tx: watch::Sender<Arc<ProxyConfig>>,
    /// The DNS proxy's name table (NDS), when the proxy runs one.
    names: Option<NameSlot>,
    /// The local rate limit filters' buckets, kept across pushes that keep a filter's config.
    rate_limits: Arc<super::local_ratelimit::BucketRegistry>,
    /// The connection, versions, counts and accepted protos (admin, metrics).
    xds: Arc<XdsState>,
}

/// The DNS proxy's side of the store: the last good name table, converted for the proxy's
/// namespace.
struct NameSlot {
    namespace: String,
    tx: watch::Sender<Arc<weft_dns::NameTable>>,
}

impl ConfigStore {
    /// A store whose listeners drain with a default [`Drain`]. Must be called inside a Tokio
    /// runtime: listener accept loops are spawned on it.
    pub fn new() -> Self {
        Self::with_drain(Drain::default())
    }

    /// A store whose listeners stop and drain when `drain` says so.
    pub fn with_drain(drain: Drain) -> Self {
        Self::with_limits(drain, DownstreamLimits::default())
    }

    /// A store whose listeners drain with `drain` and accept under `limits`.
    pub fn with_limits(drain: Drain, limits: DownstreamLimits) -> Self {
        let current = Arc::new(ProxyConfig::default());
        let (tx, rx) = watch::channel(current.clone());
        Self {
            listeners: BTreeMap::new(),
            routes: BTreeMap::new(),
            clusters: BTreeMap::new(),
            first_seen: HashMap::new(),
            assignments: HashMap::new(),
            current,
            pools: PoolRegistry::default(),
            sockets: ListenerManager::new(rx, drain, Arc::new(limits)),
            tx,
            names: None,
            rate_limits: Arc::default(),
            xds: Arc::default(),
        }
    }

    /// Accepts NDS name tables for a DNS proxy in `namespace` (the bare names of its own
    /// namespace's Services resolve). Without it, a name table is rejected.
    pub fn with_name_table(mut self, namespace: impl Into<String>) -> Self {
        let (tx, _) = watch::channel(Arc::new(weft_dns::NameTable::empty()));
        self.names = Some(NameSlot {
            namespace: namespace.into(),
            tx,
        });
        self
    }

    /// A receiver of the DNS proxy's name tables (`None` without [`Self::with_name_table`]).
    pub fn name_table(&self) -> Option<watch::Receiver<Arc<weft_dns::NameTable>>> {
        self.names.as_ref().map(|slot| slot.tx.subscribe())
    }

    /// Sets where TLS connections (upstream mTLS, inbound mTLS) get their certificates:
    /// the proxy's identity. Call before any config is applied.
    pub fn with_tls(mut self, tls: crate::tls::MeshTls) -> Self {
        self.pools = PoolRegistry::with_tls(tls.clone());
        self.sockets.set_tls(tls);
        self
    }

    /// Records the listeners' connections and requests into `metrics` (Istio's metrics).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.sockets.set_metrics(metrics);
        self
    }

    /// Where sampled requests' spans go (`trace/`).
    pub fn with_tracer(mut self, tracer: Arc<crate::trace::Tracer>) -> Self {
        self.sockets.set_tracer(tracer);
        self
    }

    /// A receiver of config snapshots (admin server, tests).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ProxyConfig>> {
        self.tx.subscribe()
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<ProxyConfig> {
        self.current.clone()
    }

    /// The counters of the listeners' connections (admin `/stats/prometheus`).
    pub fn listener_stats(&self) -> Arc<crate::listeners::ListenerStats> {
        self.sockets.stats()
    }

    /// The actual bound address of the listener named `name` (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .get(name)
            .and_then(|l| self.sockets.local_addr(l.address))
    }

    /// What the admin and the metrics read of xDS: connection, versions, accepted protos.
    pub fn xds_state(&self) -> Arc<XdsState> {
        self.xds.clone()
    }

    /// Connection pools the proxy holds (one per endpoint, protocol and TLS identity).
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Applies one response. Valid resources take effect even when others are rejected;
    /// the error (NACK) names every rejected resource, which keeps its previous version.
    pub fn apply_response(
        &mut self,
        type_url: &str,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        if type_url == type_url::NAME_TABLE {
            let result = self.apply_name_table(version, resources);
            let error = result.as_ref().err().map(String::as_str);
            self.xds
                .record(type_url, version, error, Outcome::default(), |_| false);
            return result;
        }
        let (errors, outcome) = match type_url {
            type_url::LISTENER => self.apply_listeners(resources),
            type_url::ROUTE => self.apply_routes(resources),
            type_url::CLUSTER => self.apply_clusters(resources),
            type_url::ENDPOINT => self.apply_endpoints(resources),
            other => return Err(format!("unsupported resource type {other}")),
        };
        let mut next = self.build();
        let state = match type_url {
            type_url::LISTENER => &mut next.lds,
            type_url::ROUTE => &mut next.rds,
            type_url::CLUSTER => &mut next.cds,
            _ => &mut next.eds,
        };
        state.names = match type_url {
            type_url::LISTENER => self.listeners.keys().cloned().collect(),
            type_url::ROUTE => self.routes.keys().cloned().collect(),
            type_url::CLUSTER => self.clusters.keys().cloned().collect(),
            _ => {
                let mut names: Vec<String> = self.assignments.keys().cloned().collect();
                names.sort();
                names
            }
        };
        let mut keep: HashSet<String> = state.names.iter().cloned().collect();
        if !type_url::is_wildcard_type(type_url) {
            keep.extend(self.wanted_names(type_url));
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        self.xds
            .record(type_url, version, error.as_deref(), outcome, |name| {
                keep.contains(name)
            });
        let result = if errors.is_empty() {
            state.version = Some(version.to_string());
            state.last_rejection = None;
            tracing::info!(
                type_url,
                version,
                resources = state.names.len(),
                "applied xDS response"
            );
            Ok(())
        } else {
            let message = errors.join("; ");
            state.last_rejection = Some((version.to_string(), message.clone()));
            Err(message)
        };
        self.current = Arc::new(next);
        self.tx.send_replace(self.current.clone());
        if type_url == type_url::LISTENER {
            // Sockets start accepting only once their listener is in the published config.
            let active: Vec<SocketAddr> = self.listeners.values().map(|l| l.address).collect();
            self.sockets.commit(&active);
        }
        self.prune_pools();
        result
    }

    /// NDS: the resources (Istio sends one) merged into one table, the first entry of a host
    /// winning; all of it or nothing, so the DNS proxy never answers from half a table.
    fn apply_name_table(&mut self, version: &str, resources: Vec<Any>) -> Result<(), String> {
        let Some(slot) = &self.names else {
            return Err(format!(
                "unsupported resource type {}: this proxy runs no DNS proxy",
                type_url::NAME_TABLE
            ));
        };
        let mut merged = weft_xds::nds::NameTable::default();
        for (i, any) in resources.iter().enumerate() {
            let table = weft_xds::nds::NameTable::decode(any.value.as_slice())
                .map_err(|e| format!("name table resource {i}: cannot decode: {e}"))?;
            for (host, info) in table.table {
                merged.table.entry(host).or_insert(info);
            }
        }
        let table = super::names::name_table(merged, &slot.namespace).map_err(|e| e.to_string())?;
        tracing::info!(
            type_url = type_url::NAME_TABLE,
            version,
            names = table.len(),
            "applied xDS response"
        );
        slot.tx.send_replace(Arc::new(table));
        Ok(())
    }

    fn apply_listeners(&mut self, resources: Vec<Any>) -> (Vec<String>, Outcome) {
        let Converted {
            resources: converted,
            failed,
            mut errors,
            mut outcome,
        } = convert_each::<lds::Listener, Listener>(resources, type_url::LISTENER, |l| &l.name);
        // Local rate limits whose config did not change keep their buckets (and tokens).
        let converted = converted.into_iter().map(|(name, mut listener)| {
            self.rate_limits.adopt_into(&mut listener);
            (name, Arc::new(listener))
        });
        let mut next = full_set(&self.listeners, converted, &failed);
        // Two listeners on one address: the one that had it keeps it.
        let mut by_addr: HashMap<SocketAddr, String> = HashMap::new();
        let names: Vec<String> = next.keys().cloned().collect();
        for name in names {
            let addr = next[&name].address;
            if let Some(other) = by_addr.get(&addr) {
                let keeps_old = self.listeners.get(other).is_some_and(|l| l.address == addr);
                let loser = if keeps_old {
                    name.clone()
                } else {
                    other.clone()
                };
                let winner = if keeps_old {
                    other.clone()
                } else {
                    name.clone()
                };
                let error = format!(
                    "listener {loser:?}: address {addr} is also used by listener {winner:?}"
                );
                outcome.reject(&loser, error.clone());
                errors.push(error);
                restore(&mut next, &self.listeners, &loser);
                by_addr.insert(addr, winner);
            } else {
                by_addr.insert(addr, name);
            }
        }
        let bind_errors = self
            .sockets
            .prepare(next.values().map(|l| (l.name.as_str(), l.address)));
        for (name, error) in bind_errors {
            outcome.reject(&name, error.clone());
            errors.push(error);
            restore(&mut next, &self.listeners, &name);
        }
        self.listeners = next;
        // Route configurations no listener asks for any more are unsubscribed: removed.
        let wanted: HashSet<String> = self.wanted_names(type_url::ROUTE).into_iter().collect();
        self.routes.retain(|name, _| wanted.contains(name));
        (errors, outcome)
    }

    fn apply_routes(&mut self, resources: Vec<Any>) -> (Vec<String>, Outcome) {
        let wanted: HashSet<String> = self.wanted_names(type_url::ROUTE).into_iter().collect();
        let Converted {
            resources: converted,
            errors,
            outcome,
            ..
        } = convert_each::<rds::RouteConfiguration, RouteConfig>(resources, type_url::ROUTE, |r| {
            &r.name
        });
        for (name, rc) in converted {
            self.routes.insert(name, Arc::new(rc));
        }
        self.routes.retain(|name, _| wanted.contains(name));
        (errors, outcome)
    }

    fn apply_clusters(&mut self, resources: Vec<Any>) -> (Vec<String>, Outcome) {
        let Converted {
            resources: converted,
            failed,
            errors,
            outcome,
        } = convert_each::<cds::Cluster, ClusterConfig>(resources, type_url::CLUSTER, |c| &c.name);
        self.clusters = full_set(&self.clusters, converted.into_iter(), &failed);
        let now = Instant::now();
        self.first_seen
            .retain(|name, _| self.clusters.contains_key(name));
        for name in self.clusters.keys() {
            self.first_seen.entry(name.clone()).or_insert(now);
        }
        let wanted: HashSet<String> = self.wanted_names(type_url::ENDPOINT).into_iter().collect();
        self.assignments.retain(|name, _| wanted.contains(name));
        (errors, outcome)
    }

    fn apply_endpoints(&mut self, resources: Vec<Any>) -> (Vec<String>, Outcome) {
        let wanted: HashSet<String> = self.wanted_names(type_url::ENDPOINT).into_iter().collect();
        let Converted {
            resources: converted,
            errors,
            outcome,
            ..
        } = convert_each::<eds::ClusterLoadAssignment, Assignment>(
            resources,
            type_url::ENDPOINT,
            |c| &c.cluster_name,
        );
        self.assignments.extend(converted);
        self.assignments.retain(|name, _| wanted.contains(name));
        (errors, outcome)
    }

    /// Builds the next snapshot from the stored resources, reusing unchanged clusters
    /// (balancer counters, pools) and keeping new route tables pending while cold.
    fn build(&mut self) -> ProxyConfig {
        let previous = self.current.clone();
        let now = Instant::now();
        let mut warming_deadline: Option<Instant> = None;
        let mut clusters = HashMap::with_capacity(self.clusters.len());
        for (name, cfg) in &self.clusters {
            let (assignment, warm) = match &cfg.discovery {
                DiscoveryKind::Static(a) => (a.clone(), true),
                DiscoveryKind::Dns(_) | DiscoveryKind::OriginalDst => (Assignment::default(), true),
                DiscoveryKind::Eds(service) => match self.assignments.get(service) {
                    Some(a) => (a.clone(), true),
                    None => {
                        let deadline = self.first_seen.get(name).copied().unwrap_or(now)
                            + INITIAL_FETCH_TIMEOUT;
                        warming_deadline =
                            Some(warming_deadline.map_or(deadline, |d| d.min(deadline)));
                        (Assignment::default(), now >= deadline)
                    }
                },
            };
            let old = previous.clusters.get(name);
            let cluster = match old {
                Some(old)
                    if old.config == *cfg && old.assignment == assignment && old.warm == warm =>
                {
                    old.clone()
                }
                _ => Arc::new(Cluster::new(
                    cfg.clone(),
                    assignment,
                    warm,
                    &mut self.pools,
                    old.filter(|o| {
                        o.config.protocol == cfg.protocol && o.config.discovery == cfg.discovery
                    })
                    .map(|c| &**c),
                )),
            };
            clusters.insert(name.clone(), cluster);
        }
        let mut routes = HashMap::with_capacity(self.routes.len());
        for (name, rc) in &self.routes {
            let slot = bind_routes(rc, previous.routes.get(name), &clusters, now);
            routes.insert(name.clone(), slot);
        }
        let listeners = self
            .listeners
            .values()
            .map(|l| {
                let chains = l
                    .chains
                    .iter()
                    .map(|chain| match &chain.network {
                        Network::Http(m) => ActiveChain {
                            routes: match &m.routes {
                                RouteSource::Rds(name) => routes.get(name).cloned(),
                                RouteSource::Inline(rc) => Some(RouteSlot {
                                    active: Arc::new(RouteTable::bind(rc.clone(), &clusters)),
                                    pending: None,
                                }),
                            },
                            clusters: Box::default(),
                        },
                        Network::Tcp(t) => ActiveChain {
                            routes: None,
                            clusters: t
                                .clusters
                                .iter()
                                .map(|c| clusters.get(&c.name).cloned())
                                .collect(),
                        },
                    })
                    .collect();
                (
                    l.address,
                    ActiveListener {
                        config: l.clone(),
                        chains,
                    },
                )
            })
            .collect();
        ProxyConfig {
            listeners,
            routes,
            clusters,
            lds: previous.lds.clone(),
            rds: previous.rds.clone(),
            cds: previous.cds.clone(),
            eds: previous.eds.clone(),
            warming_deadline,
        }
    }

    /// Closes the pools of endpoints that no cluster has any more.
    fn prune_pools(&mut self) {
        let mut used = HashSet::new();
        for c in self.current.clusters.values() {
            c.collect_pool_keys(&mut used);
        }
        self.pools.retain(&used);
    }

    /// RDS names wanted by the applied listeners; EDS service names of the applied clusters.
    pub fn wanted_names(&self, type_url: &str) -> Vec<String> {
        let mut names: Vec<String> = match type_url {
            type_url::ROUTE => self
                .listeners
                .values()
                .flat_map(|l| l.http_managers())
                .filter_map(|(_, m)| match &m.routes {
                    RouteSource::Rds(n) => Some(n.clone()),
                    RouteSource::Inline(_) => None,
                })
                .collect(),
            type_url::ENDPOINT => self
                .clusters
                .values()
                .filter_map(|c| match &c.discovery {
                    DiscoveryKind::Eds(s) => Some(s.clone()),
                    DiscoveryKind::Static(_)
                    | DiscoveryKind::Dns(_)
                    | DiscoveryKind::OriginalDst => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        names.sort();
        names.dedup();
        names
    }
}

impl Default for ConfigStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The route slot for `rc`: a changed table whose clusters are still cold waits (pending)
/// while the previous one keeps serving, until they warm or the initial fetch timeout passes.
fn bind_routes(
    rc: &Arc<RouteConfig>,
    previous: Option<&RouteSlot>,
    clusters: &HashMap<String, Arc<Cluster>>,
    now: Instant,
) -> RouteSlot {
    let fresh = || Arc::new(RouteTable::bind(rc.clone(), clusters));
    let Some(previous) = previous else {
        return RouteSlot {
            active: fresh(),
            pending: None,
        };
    };
    if Arc::ptr_eq(&previous.active.config, rc) {
        return RouteSlot {
            active: fresh(),
            pending: None,
        };
    }
    let table = fresh();
    let deadline = match &previous.pending {
        Some((p, deadline)) if Arc::ptr_eq(&p.config, rc) => *deadline,
        _ => now + INITIAL_FETCH_TIMEOUT,
    };
    if table.cold_clusters().next().is_none() || now >= deadline {
        return RouteSlot {
            active: table,
            pending: None,
        };
    }
    tracing::debug!(
        route_config = %rc.name,
        cold = ?table.cold_clusters().collect::<Vec<_>>(),
        "new routes wait for their clusters' endpoints"
    );
    RouteSlot {
        active: Arc::new(RouteTable::bind(previous.active.config.clone(), clusters)),
        pending: Some((table, deadline)),
    }
}

impl weft_xds::Handler for ConfigStore {
    fn apply(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String> {
        self.apply_response(type_url, version, resources)
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        self.wanted_names(type_url)
    }

    fn connected(&mut self) {
        self.xds.connected();
    }

    fn disconnected(&mut self) {
        self.xds.disconnected();
    }
}

/// LDS/CDS semantics: the response is the full set. Rejected names keep their old version.
fn full_set<T: Clone>(
    old: &BTreeMap<String, T>,
    converted: impl Iterator<Item = (String, T)>,
    failed: &[String],
) -> BTreeMap<String, T> {
    let mut next: BTreeMap<String, T> = converted.collect();
    for name in failed {
        restore(&mut next, old, name);
    }
    next
}

/// Puts back the old version of `name` (or removes it if it had none).
fn restore<T: Clone>(next: &mut BTreeMap<String, T>, old: &BTreeMap<String, T>, name: &str) {
    match old.get(name) {
        Some(v) => {
            next.insert(name.to_string(), v.clone());
        }
        None => {
            next.remove(name);
        }
    }
}

/// Decodes and converts every resource. Returns the converted ones by name, the names of
/// those rejected (when a name could be read), one message per rejection, and the protos
/// accepted and rejected by name (for `/config_dump`).
fn convert_each<E, D>(
    resources: Vec<Any>,
    expected_type: &str,
    name_of: impl Fn(&E) -> &String,
) -> Converted<D>
where
    E: Message + Default,
    D: TryFrom<E, Error = ConfigError>,
{
    let mut out: Vec<(String, D)> = Vec::with_capacity(resources.len());
    let mut seen = HashSet::new();
    let mut failed = Vec::new();
    let mut errors = Vec::new();
    let mut outcome = Outcome::default();
    for (i, any) in resources.into_iter().enumerate() {
        if any.type_url != expected_type {
            errors.push(format!(
                "resource {i}: type {} in a {expected_type} response",
                any.type_url
            ));
            continue;
        }
        let resource = match E::decode(any.value.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                let reason = Reason::Decode {
                    type_url: any.type_url.clone(),
                    error: e.to_string(),
                };
                errors.push(ConfigError::new(format!("resource {i}"), reason).to_string());
                continue;
            }
        };
        let name = name_of(&resource).clone();
        if !seen.insert(name.clone()) {
            let error =
                ConfigError::new(format!("resource {name:?}"), Reason::Duplicate).to_string();
            out.retain(|(n, _)| *n != name);
            outcome.reject(&name, error.clone());
            outcome.rejected.push((name.clone(), any, error.clone()));
            errors.push(error);
            failed.push(name);
            continue;
        }
        match D::try_from(resource) {
            Ok(d) => {
                out.push((name.clone(), d));
                outcome.accepted.push((name, any));
            }
            Err(e) => {
                let error = e.to_string();
                outcome.rejected.push((name.clone(), any, error.clone()));
                errors.push(error);
                failed.push(name);
            }
        }
    }
    Converted {
        resources: out,
        failed,
        errors,
        outcome,
    }
}

/// What [`convert_each`] made of a response.
struct Converted<D> {
    /// The converted resources by name.
    resources: Vec<(String, D)>,
    /// The names of those rejected (when a name could be read).
    failed: Vec<String>,
    /// One message per rejection.
    errors: Vec<String>,
    /// The protos accepted and rejected, by name (for `/config_dump`).
    outcome: Outcome,
}
