//! `ConfigStore`: the xDS `Handler`. Keeps the last good resources per type and publishes `ProxyConfig`.
//!
//! ```text
//!  ADS response ─► apply(type, version, [Any]) ─decode+TryFrom all─┬─ any error ─► Err (NACK), old state kept
//!                                                                  └─ ok ─► (LDS: bind sockets) ─► build ProxyConfig
//!                                                                           ─► watch::Sender ─► data path, admin
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rds;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::watch;
use weft_xds::type_url;

use super::{
    Assignment, ClusterConfig, ConfigError, DiscoveryKind, Listener, Reason, RouteConfig,
    RouteSource,
};
use crate::listeners::ListenerManager;
use crate::upstream::{Cluster, Pools};

/// Version, resource names and last rejection of one resource type.
#[derive(Debug, Clone, Default)]
pub struct TypeState {
    /// Version of the last applied (ACKed) response; `None` until one was applied.
    pub version: Option<String>,
    pub names: Vec<String>,
    /// Version and message of the last rejected (NACKed) response.
    pub last_rejection: Option<(String, String)>,
}

/// One immutable snapshot of everything the data path needs.
#[derive(Debug, Default)]
pub struct ProxyConfig {
    /// Listeners by the address they are configured with.
    pub listeners: HashMap<SocketAddr, Arc<Listener>>,
    pub routes: HashMap<String, Arc<RouteConfig>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    pub lds: TypeState,
    pub rds: TypeState,
    pub cds: TypeState,
    pub eds: TypeState,
}

impl ProxyConfig {
    /// Ready once listeners and clusters were applied at least once.
    pub fn ready(&self) -> bool {
        self.lds.version.is_some() && self.cds.version.is_some()
    }

    /// The route table of a listener (RDS by name, or inline).
    pub fn route_config<'a>(&'a self, listener: &'a Listener) -> Option<&'a Arc<RouteConfig>> {
        match &listener.routes {
            RouteSource::Rds(name) => self.routes.get(name),
            RouteSource::Inline(rc) => Some(rc),
        }
    }
}

/// Owns the last good config per type; the single writer of the `ProxyConfig` channel.
pub struct ConfigStore {
    listeners: BTreeMap<String, Arc<Listener>>,
    routes: HashMap<String, Arc<RouteConfig>>,
    clusters: BTreeMap<String, ClusterConfig>,
    assignments: HashMap<String, Assignment>,
    current: Arc<ProxyConfig>,
    pools: Arc<Pools>,
    sockets: ListenerManager,
    tx: watch::Sender<Arc<ProxyConfig>>,
}

impl ConfigStore {
    /// Must be called inside a Tokio runtime: listener accept loops are spawned on it.
    pub fn new(pools: Arc<Pools>) -> Self {
        let current = Arc::new(ProxyConfig::default());
        let (tx, rx) = watch::channel(current.clone());
        Self {
            listeners: BTreeMap::new(),
            routes: HashMap::new(),
            clusters: BTreeMap::new(),
            assignments: HashMap::new(),
            current,
            pools,
            sockets: ListenerManager::new(rx),
            tx,
        }
    }

    /// A receiver of config snapshots (admin server, tests).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ProxyConfig>> {
        self.tx.subscribe()
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<ProxyConfig> {
        self.current.clone()
    }

    /// The actual bound address of the listener named `name` (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .get(name)
            .and_then(|l| self.sockets.local_addr(l.address))
    }

    /// Applies one state-of-the-world response; on error nothing changes.
    pub fn apply_response(
        &mut self,
        type_url: &str,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        let result = match type_url {
            type_url::LISTENER => self.apply_listeners(resources),
            type_url::ROUTE => self.apply_routes(resources),
            type_url::CLUSTER => self.apply_clusters(resources),
            type_url::ENDPOINT => self.apply_endpoints(resources),
            other => Err(format!("unsupported resource type {other}")),
        };
        let mut next = ProxyConfig {
            listeners: self.current.listeners.clone(),
            routes: self.current.routes.clone(),
            clusters: self.current.clusters.clone(),
            lds: self.current.lds.clone(),
            rds: self.current.rds.clone(),
            cds: self.current.cds.clone(),
            eds: self.current.eds.clone(),
        };
        let state = match type_url {
            type_url::LISTENER => &mut next.lds,
            type_url::ROUTE => &mut next.rds,
            type_url::CLUSTER => &mut next.cds,
            type_url::ENDPOINT => &mut next.eds,
            _ => return result.map(|_| ()),
        };
        match &result {
            Ok(names) => {
                state.version = Some(version.to_string());
                state.names.clone_from(names);
                match type_url {
                    type_url::LISTENER => {
                        next.listeners = self
                            .listeners
                            .values()
                            .map(|l| (l.address, l.clone()))
                            .collect();
                    }
                    type_url::ROUTE => next.routes = self.routes.clone(),
                    _ => next.clusters = self.build_clusters(),
                }
                tracing::info!(
                    type_url,
                    version,
                    resources = names.len(),
                    "applied xDS response"
                );
            }
            Err(e) => {
                state.last_rejection = Some((version.to_string(), e.clone()));
                tracing::warn!(type_url, version, error = %e, "rejected xDS response");
            }
        }
        self.current = Arc::new(next);
        self.tx.send_replace(self.current.clone());
        if result.is_ok() && type_url == type_url::LISTENER {
            // Sockets start accepting only once their listener is in the published config.
            self.sockets.commit();
        }
        result.map(|_| ())
    }

    fn apply_listeners(&mut self, resources: Vec<Any>) -> Result<Vec<String>, String> {
        let converted: BTreeMap<String, Arc<Listener>> =
            convert_all::<lds::Listener, Listener>(resources, |l| &l.name)?
                .into_iter()
                .map(|(name, l)| (name, Arc::new(l)))
                .collect();
        let mut addresses: HashMap<SocketAddr, &str> = HashMap::new();
        for l in converted.values() {
            if let Some(other) = addresses.insert(l.address, &l.name) {
                return Err(format!(
                    "listener {:?}: address {} is also used by listener {other:?}",
                    l.name, l.address
                ));
            }
        }
        self.sockets
            .prepare(converted.values().map(|l| (l.name.as_str(), l.address)))?;
        self.listeners = converted;
        Ok(self.listeners.keys().cloned().collect())
    }

    fn apply_routes(&mut self, resources: Vec<Any>) -> Result<Vec<String>, String> {
        let converted =
            convert_all::<rds::RouteConfiguration, RouteConfig>(resources, |r| &r.name)?;
        self.routes = converted
            .into_iter()
            .map(|(n, r)| (n, Arc::new(r)))
            .collect();
        let mut names: Vec<String> = self.routes.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    fn apply_clusters(&mut self, resources: Vec<Any>) -> Result<Vec<String>, String> {
        self.clusters = convert_all::<cds::Cluster, ClusterConfig>(resources, |c| &c.name)?
            .into_iter()
            .collect();
        Ok(self.clusters.keys().cloned().collect())
    }

    fn apply_endpoints(&mut self, resources: Vec<Any>) -> Result<Vec<String>, String> {
        self.assignments =
            convert_all::<eds::ClusterLoadAssignment, Assignment>(resources, |c| &c.cluster_name)?;
        let mut names: Vec<String> = self.assignments.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    /// Builds the run-time clusters, reusing unchanged ones (pools, balancer counters, RR cursor).
    fn build_clusters(&self) -> HashMap<String, Arc<Cluster>> {
        let previous = &self.current.clusters;
        self.clusters
            .iter()
            .map(|(name, cfg)| {
                let assignment = match &cfg.discovery {
                    DiscoveryKind::Static(a) => a.clone(),
                    DiscoveryKind::Eds(service) => {
                        self.assignments.get(service).cloned().unwrap_or_default()
                    }
                };
                let old = previous.get(name);
                let cluster = match old {
                    Some(old) if old.config == *cfg && old.assignment == assignment => old.clone(),
                    _ => Arc::new(Cluster::new(
                        cfg.clone(),
                        assignment,
                        &self.pools,
                        old.map(|c| &**c),
                    )),
                };
                (name.clone(), cluster)
            })
            .collect()
    }

    /// RDS names wanted by the applied listeners; EDS service names of the applied clusters.
    pub fn wanted_names(&self, type_url: &str) -> Vec<String> {
        let mut names: Vec<String> = match type_url {
            type_url::ROUTE => self
                .listeners
                .values()
                .filter_map(|l| match &l.routes {
                    RouteSource::Rds(n) => Some(n.clone()),
                    RouteSource::Inline(_) => None,
                })
                .collect(),
            type_url::ENDPOINT => self
                .clusters
                .values()
                .filter_map(|c| match &c.discovery {
                    DiscoveryKind::Eds(s) => Some(s.clone()),
                    DiscoveryKind::Static(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        names.sort();
        names.dedup();
        names
    }
}

impl weft_xds::Handler for ConfigStore {
    fn apply(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String> {
        self.apply_response(type_url, version, resources)
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        self.wanted_names(type_url)
    }
}

/// Decodes and converts every resource; the first failure rejects the whole response.
fn convert_all<E, D>(
    resources: Vec<Any>,
    name_of: impl Fn(&E) -> &String,
) -> Result<HashMap<String, D>, String>
where
    E: Message + Default,
    D: TryFrom<E, Error = ConfigError>,
{
    let mut out = HashMap::with_capacity(resources.len());
    let mut errors = Vec::new();
    for (i, any) in resources.into_iter().enumerate() {
        let resource = match E::decode(any.value.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                let reason = Reason::Decode {
                    type_url: any.type_url,
                    error: e.to_string(),
                };
                errors.push(ConfigError::new(format!("resource {i}"), reason).to_string());
                continue;
            }
        };
        let name = name_of(&resource).clone();
        match D::try_from(resource) {
            Ok(d) => {
                if out.insert(name.clone(), d).is_some() {
                    errors.push(
                        ConfigError::new(format!("resource {name:?}"), Reason::Duplicate)
                            .to_string(),
                    );
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("; "))
    }
}
