//! The immutable service model built from one config set: services, endpoints,
//! virtual services and destination rules, indexed by host.

use std::collections::{BTreeMap, BTreeSet};

use weft_api::ConfigObject;
use weft_api::host::{host_matches, resolve_short_name};
use weft_api::networking::{
    DestinationRule, Protocol, ServiceEntry, Subset, VirtualService, WorkloadEntry,
};

use crate::source::registry::{Registry, Skipped};
use crate::source::{ConfigSet, ObjectKey, Snapshot};
use crate::unsupported;

/// The gateway name that selects sidecars in `VirtualService.gateways`.
pub const MESH_GATEWAY: &str = "mesh";

/// A service: one host of a ServiceEntry, with its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Fully qualified host name (`reviews.default.svc.cluster.local`).
    pub hostname: String,
    /// Namespace of the ServiceEntry that defines it.
    pub namespace: String,
    /// Ports, sorted by number.
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<Endpoint>,
    /// The ServiceEntry that defines the service.
    pub source: ObjectKey,
}

impl Service {
    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|port| port.number == number)
    }

    /// Ports that carry HTTP (declared HTTP-family, or undeclared and auto-detected).
    pub fn http_ports(&self) -> impl Iterator<Item = &ServicePort> {
        self.ports.iter().filter(|port| port.serves_http())
    }

    /// The port that the bare host names (no `:port`) route to: 80 if the service
    /// has it, else its lowest HTTP port.
    pub fn default_http_port(&self) -> Option<u32> {
        let mut ports = self.http_ports().map(|port| port.number);
        let lowest = ports.next()?;
        if self.http_ports().any(|port| port.number == 80) {
            Some(80)
        } else {
            Some(lowest)
        }
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub number: u32,
    pub name: String,
    /// Declared protocol; `None` when the ServiceEntry does not say (auto-detected: HTTP here).
    pub protocol: Option<Protocol>,
    pub target_port: Option<u32>,
}

impl ServicePort {
    /// Whether the port gets virtual hosts in the `outbound` route configuration.
    pub fn serves_http(&self) -> bool {
        self.protocol
            .as_ref()
            .is_none_or(|protocol| protocol.is_http())
    }

    /// Whether upstream connections use HTTP/2 (h2c).
    pub fn is_http2(&self) -> bool {
        self.protocol
            .as_ref()
            .is_some_and(|protocol| protocol.is_http2())
    }
}

/// One endpoint (workload instance) of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub address: String,
    /// Port overrides by service port name.
    pub ports: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
    pub weight: Option<u32>,
    /// True for Kubernetes endpoints: the endpoint serves only the service ports named in
    /// `ports` (its EndpointSlice lists them); otherwise it serves every port.
    pub only_listed_ports: bool,
}

impl Endpoint {
    fn from_workload(entry: &WorkloadEntry) -> Self {
        Self {
            address: entry.address.clone(),
            ports: entry.ports.clone(),
            labels: entry.labels.clone(),
            weight: entry.weight,
            only_listed_ports: false,
        }
    }

    /// Whether the endpoint serves this service port.
    pub fn serves(&self, port: &ServicePort) -> bool {
        !self.only_listed_ports || self.ports.contains_key(&port.name)
    }

    /// The port to connect to for `port`: the endpoint's override by port name, else
    /// the service port's `targetPort`, else its number.
    pub fn port_for(&self, port: &ServicePort) -> u32 {
        self.ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }
}

/// A VirtualService that applies to sidecars, with its hosts resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServiceEntry {
    pub key: ObjectKey,
    pub namespace: String,
    /// `spec.hosts`, short names resolved in the VirtualService's namespace.
    pub hosts: Vec<String>,
    pub spec: VirtualService,
}

/// A DestinationRule with its host resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRuleEntry {
    pub key: ObjectKey,
    pub namespace: String,
    pub host: String,
    pub spec: DestinationRule,
}

impl DestinationRuleEntry {
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.spec.subsets.iter().find(|subset| subset.name == name)
    }
}

/// A problem found while building the model that does not stop it: an unsupported
/// field, a conflict, a destination that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Warning {
    pub object: ObjectKey,
    /// Field path inside the object (`spec.http[0].retries`), empty for the whole object.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.path, self.message)
        }
    }
}

/// Everything the generator needs, built once per config set and never mutated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// Cluster DNS domain (`cluster.local`).
    pub domain: String,
    /// Services by fully qualified host name.
    pub services: BTreeMap<String, Service>,
    /// VirtualServices that apply to sidecars, ordered by namespace/name.
    pub virtual_services: Vec<VirtualServiceEntry>,
    /// For each service host, the index of the VirtualService that routes it.
    pub virtual_service_for_host: BTreeMap<String, usize>,
    /// DestinationRules ordered by namespace/name.
    pub destination_rules: Vec<DestinationRuleEntry>,
    /// For each service host, the index of the DestinationRule that applies to it.
    pub destination_rule_for_host: BTreeMap<String, usize>,
    pub warnings: Vec<Warning>,
    /// Kubernetes Services that are not in the model, and why.
    pub skipped_services: Vec<Skipped>,
}

impl Model {
    /// Builds the model from a config set (local mode: no Kubernetes registry).
    pub fn build(config: &ConfigSet, domain: &str) -> Self {
        Self::build_with_registry(config, None, domain)
    }

    /// Builds the model from a source snapshot.
    pub fn from_snapshot(snapshot: &Snapshot, domain: &str) -> Self {
        Self::build_with_registry(&snapshot.config, snapshot.registry.as_deref(), domain)
    }

    /// Builds the model from Istio objects plus, in Kubernetes mode, the registry's
    /// Services. Kubernetes Services are added first: a ServiceEntry host that names the
    /// same host is ignored with a warning (Istio's Kubernetes registry comes first too).
    pub fn build_with_registry(
        config: &ConfigSet,
        registry: Option<&Registry>,
        domain: &str,
    ) -> Self {
        let mut model = Self {
            domain: domain.to_string(),
            ..Self::default()
        };
        if let Some(registry) = registry {
            let (services, skipped) = registry.services(domain);
            for service in services {
                model.services.insert(service.hostname.clone(), service);
            }
            model.skipped_services = skipped;
        }
        let mut service_entries = Vec::new();
        let mut workload_entries = Vec::new();
        let mut virtual_services = Vec::new();
        let mut destination_rules = Vec::new();
        for (key, object) in config.objects() {
            match object {
                ConfigObject::ServiceEntry(resource) => service_entries.push((key, &resource.spec)),
                ConfigObject::WorkloadEntry(resource) => {
                    workload_entries.push((key, &resource.spec));
                }
                ConfigObject::VirtualService(resource) => {
                    virtual_services.push((key, &resource.spec));
                }
                ConfigObject::DestinationRule(resource) => {
                    destination_rules.push((key, &resource.spec));
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        for (key, entry) in service_entries {
            model.add_service_entry(key, entry, &workload_entries);
        }
        for (key, vs) in virtual_services {
            model.add_virtual_service(key, vs);
        }
        model.index_virtual_services();
        for (key, dr) in destination_rules {
            model.add_destination_rule(key, dr);
        }
        model.index_destination_rules();
        model.check_destinations();
        for (key, object) in config.objects() {
            model.warnings.extend(unsupported::fields(key, object));
        }
        model.warnings.sort();
        model.warnings.dedup();
        model
    }

    fn warn(&mut self, object: &ObjectKey, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning {
            object: object.clone(),
            path: path.into(),
            message: message.into(),
        });
    }

    fn add_service_entry(
        &mut self,
        key: &ObjectKey,
        entry: &ServiceEntry,
        workload_entries: &[(&ObjectKey, &WorkloadEntry)],
    ) {
        let mut ports: Vec<ServicePort> = entry
            .ports
            .iter()
            .map(|port| ServicePort {
                number: port.number,
                name: port.name.clone(),
                protocol: port.protocol.as_ref().map(|_| port.protocol()),
                target_port: port.target_port.filter(|target| *target != 0),
            })
            .collect();
        ports.sort_by_key(|port| port.number);
        ports.dedup_by_key(|port| port.number);

        let mut endpoints: Vec<Endpoint> = entry
            .endpoints
            .iter()
            .map(Endpoint::from_workload)
            .collect();
        if let Some(selector) = &entry.workload_selector {
            for (entry_key, workload) in workload_entries {
                if entry_key.namespace == key.namespace
                    && labels_match(&selector.labels, &workload.labels)
                {
                    endpoints.push(Endpoint::from_workload(workload));
                }
            }
        }

        for (index, host) in entry.hosts.iter().enumerate() {
            let hostname = resolve_short_name(host, &key.namespace, &self.domain);
            if let Some(existing) = self.services.get(&hostname) {
                let message = format!(
                    "host {hostname} is already defined by {}; ignored here",
                    existing.source
                );
                self.warn(key, format!("spec.hosts[{index}]"), message);
                continue;
            }
            self.services.insert(
                hostname.clone(),
                Service {
                    hostname,
                    namespace: key.namespace.clone(),
                    ports: ports.clone(),
                    endpoints: endpoints.clone(),
                    source: key.clone(),
                },
            );
        }
    }

    fn add_virtual_service(&mut self, key: &ObjectKey, vs: &VirtualService) {
        if !vs.gateways.is_empty() && !vs.gateways.iter().any(|gateway| gateway == MESH_GATEWAY) {
            // Gateway-only: not for sidecars.
            return;
        }
        let hosts = vs
            .hosts
            .iter()
            .map(|host| resolve_short_name(host, &key.namespace, &self.domain))
            .collect();
        self.virtual_services.push(VirtualServiceEntry {
            key: key.clone(),
            namespace: key.namespace.clone(),
            hosts,
            spec: vs.clone(),
        });
    }

    /// Picks one VirtualService per service host, as Istio does for sidecars: an exact
    /// host beats the most specific (longest) wildcard, then the first in namespace/name
    /// order wins (Istio: oldest first; files have no creation time).
    fn index_virtual_services(&mut self) {
        let mut conflicts = Vec::new();
        let mut used = vec![false; self.virtual_services.len()];
        for hostname in self.services.keys() {
            // (wildcard?, shortest pattern last, order)
            let mut candidates: Vec<(bool, usize, usize)> = Vec::new();
            for (index, entry) in self.virtual_services.iter().enumerate() {
                if entry.hosts.iter().any(|host| host == hostname) {
                    candidates.push((false, 0, index));
                } else if let Some(longest) = entry
                    .hosts
                    .iter()
                    .filter(|host| host_matches(host, hostname))
                    .map(String::len)
                    .max()
                {
                    candidates.push((true, usize::MAX - longest, index));
                }
            }
            candidates.sort();
            let Some(&(winner_wildcard, _, winner)) = candidates.first() else {
                continue;
            };
            used[winner] = true;
            for &(wildcard, _, loser) in &candidates[1..] {
                if !wildcard && !winner_wildcard {
                    conflicts.push((loser, hostname.clone(), winner));
                }
            }
            self.virtual_service_for_host
                .insert(hostname.clone(), winner);
        }
        for (loser, hostname, winner) in conflicts {
            let message = format!(
                "host {hostname} is already routed by VirtualService {}/{}; this VirtualService is ignored for it",
                self.virtual_services[winner].key.namespace, self.virtual_services[winner].key.name
            );
            let key = self.virtual_services[loser].key.clone();
            self.warn(&key, "spec.hosts", message);
        }
        for (index, entry) in self.virtual_services.iter().enumerate() {
            if !used[index] && !entry.hosts.is_empty() {
                // Either no service has these hosts, or another VirtualService won them all.
                let unknown: Vec<&String> = entry
                    .hosts
                    .iter()
                    .filter(|host| !self.services.keys().any(|name| host_matches(host, name)))
                    .collect();
                if !unknown.is_empty() {
                    let message = format!(
                        "no ServiceEntry defines {}; the VirtualService has no effect for sidecars",
                        join(&unknown)
                    );
                    self.warnings.push(Warning {
                        object: entry.key.clone(),
                        path: "spec.hosts".to_string(),
                        message,
                    });
                }
            }
        }
    }

    fn add_destination_rule(&mut self, key: &ObjectKey, dr: &DestinationRule) {
        let host = resolve_short_name(&dr.host, &key.namespace, &self.domain);
        self.destination_rules.push(DestinationRuleEntry {
            key: key.clone(),
            namespace: key.namespace.clone(),
            host,
            spec: dr.clone(),
        });
    }

    /// One DestinationRule per service host: exact host first, then the most specific
    /// (longest) wildcard, then namespace/name order.
    fn index_destination_rules(&mut self) {
        let mut conflicts = Vec::new();
        for hostname in self.services.keys() {
            let mut candidates: Vec<(bool, usize, usize)> = Vec::new();
            for (index, entry) in self.destination_rules.iter().enumerate() {
                if &entry.host == hostname {
                    candidates.push((false, 0, index));
                } else if host_matches(&entry.host, hostname) {
                    candidates.push((true, usize::MAX - entry.host.len(), index));
                }
            }
            candidates.sort();
            let Some(&(wildcard, _, winner)) = candidates.first() else {
                continue;
            };
            for &(other_wildcard, _, loser) in &candidates[1..] {
                if other_wildcard == wildcard && !wildcard {
                    conflicts.push((loser, hostname.clone(), winner));
                }
            }
            self.destination_rule_for_host
                .insert(hostname.clone(), winner);
        }
        for (loser, hostname, winner) in conflicts {
            let message = format!(
                "host {hostname} already has DestinationRule {}/{}; this one is ignored for it",
                self.destination_rules[winner].key.namespace,
                self.destination_rules[winner].key.name
            );
            let key = self.destination_rules[loser].key.clone();
            self.warn(&key, "spec.host", message);
        }
    }

    /// Warns about route destinations whose host or subset does not exist.
    fn check_destinations(&mut self) {
        let mut found = Vec::new();
        for entry in &self.virtual_services {
            for (route_index, route) in entry.spec.http.iter().enumerate() {
                for (dest_index, destination) in route.route.iter().enumerate() {
                    let path = format!("spec.http[{route_index}].route[{dest_index}].destination");
                    let dest = &destination.destination;
                    let host = resolve_short_name(&dest.host, &entry.namespace, &self.domain);
                    let Some(service) = self.services.get(&host) else {
                        found.push((
                            entry.key.clone(),
                            format!("{path}.host"),
                            format!(
                                "no ServiceEntry defines host {host}; requests get 503 (no cluster)"
                            ),
                        ));
                        continue;
                    };
                    if let Some(port) = dest.port.as_ref().map(|port| port.number)
                        && service.port(port).is_none()
                    {
                        found.push((
                            entry.key.clone(),
                            format!("{path}.port.number"),
                            format!(
                                "service {host} has no port {port}; requests get 503 (no cluster)"
                            ),
                        ));
                    }
                    if let Some(subset) = dest.subset.as_deref().filter(|subset| !subset.is_empty())
                        && self
                            .destination_rule(&host)
                            .and_then(|dr| dr.subset(subset))
                            .is_none()
                    {
                        found.push((
                            entry.key.clone(),
                            format!("{path}.subset"),
                            format!("no DestinationRule defines subset {subset:?} for host {host}; requests get 503 (no cluster)"),
                        ));
                    }
                }
            }
        }
        for (key, path, message) in found {
            self.warn(&key, path, message);
        }
    }

    /// The VirtualService that routes a service host, if any.
    pub fn virtual_service(&self, hostname: &str) -> Option<&VirtualServiceEntry> {
        self.virtual_service_for_host
            .get(hostname)
            .and_then(|index| self.virtual_services.get(*index))
    }

    /// The DestinationRule that applies to a service host, if any.
    pub fn destination_rule(&self, hostname: &str) -> Option<&DestinationRuleEntry> {
        self.destination_rule_for_host
            .get(hostname)
            .and_then(|index| self.destination_rules.get(*index))
    }
}

/// Whether every selector label is present with the same value.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

fn join(items: &[&String]) -> String {
    let set: BTreeSet<&str> = items.iter().map(|item| item.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
