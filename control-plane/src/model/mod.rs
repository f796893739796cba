//! The immutable model built from one source snapshot: services (Kubernetes Services from
//! the registry, and ServiceEntries: [`service_entry`]), virtual services and destination
//! rules, indexed by host, security policies ([`security`]), Sidecars ([`sidecar`]: what each
//! workload sees), plus the warnings found on the way ([`capture`]: services whose captured
//! traffic collides). Reads the sources' output; the xDS generator reads the model.

mod capture;
mod delegate;
pub mod metrics;
pub mod ratelimit;
pub mod security;
mod service_entry;
pub mod sidecar;
pub mod telemetry;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weft_api::ConfigObject;
use weft_api::host::{host_matches, resolve_short_name};
use weft_api::networking::{
    Destination, DestinationRule, OutboundTrafficPolicyMode, Subset, VirtualService,
};

use crate::jwks::JwksSet;
use crate::locality::Locality;
use crate::object::{ObjectKey, Warning};
use crate::service::Service;
use crate::source::registry::{Registry, Skipped};
use crate::source::{ConfigSet, Snapshot};
use crate::unsupported;

/// The gateway name that selects sidecars in `VirtualService.gateways`.
pub const MESH_GATEWAY: &str = "mesh";

/// How often proxies re-resolve DNS clusters unless `--dns-refresh-rate` says otherwise
/// (Istio's MeshConfig `dnsRefreshRate` default).
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(60);

/// Envoy's default `stream_idle_timeout`. Istio sends `0s` (none); Weft keeps Envoy's
/// default so that a request to an upstream that never answers, on a route without a
/// timeout (Istio's default), ends after 5 minutes instead of never.
/// `--stream-idle-timeout 0s` restores Istio's behaviour.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the listener filters of a capturing proxy wait for the first bytes to tell the
/// protocol (Istio's MeshConfig `protocolDetectionTimeout` default).
pub const DEFAULT_PROTOCOL_DETECTION_TIMEOUT: Duration = Duration::from_millis(100);

/// Where a capturing proxy sends traffic to a destination the mesh does not know (Istio's
/// MeshConfig and Sidecar `outboundTrafficPolicy.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutboundTrafficPolicy {
    /// `ALLOW_ANY`: to its original destination (`PassthroughCluster`).
    #[default]
    AllowAny,
    /// `REGISTRY_ONLY`: nowhere (`BlackHoleCluster`; HTTP gets 502).
    RegistryOnly,
}

impl From<OutboundTrafficPolicyMode> for OutboundTrafficPolicy {
    fn from(mode: OutboundTrafficPolicyMode) -> Self {
        match mode {
            OutboundTrafficPolicyMode::AllowAny => Self::AllowAny,
            OutboundTrafficPolicyMode::RegistryOnly => Self::RegistryOnly,
        }
    }
}

/// Istio's default root namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Istio's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The mesh-wide settings a model is built with (the parts of Istio's MeshConfig Weft uses).
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSettings {
    /// Cluster DNS domain used to resolve short host names (`cluster.local`).
    pub domain: String,
    /// `dns_refresh_rate` of the DNS clusters (`--dns-refresh-rate`).
    pub dns_refresh_rate: Duration,
    /// `stream_idle_timeout` of every HTTP connection manager (`--stream-idle-timeout`;
    /// zero disables it).
    pub stream_idle_timeout: Duration,
    /// The root namespace: security policies there apply mesh-wide (`--root-namespace`).
    pub root_namespace: String,
    /// The trust domain of SPIFFE identities (`--trust-domain`).
    pub trust_domain: String,
    /// Where capturing proxies send traffic to unknown destinations unless their Sidecar
    /// says otherwise (`--outbound-traffic-policy`).
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// `listener_filters_timeout` of a capturing proxy's listeners
    /// (`--protocol-detection-timeout`; zero: none).
    pub protocol_detection_timeout: Duration,
    /// Mesh-wide access logs (`--access-log-file`, `--access-log-encoding`,
    /// `--access-log-format`).
    pub access_log: MeshAccessLog,
    /// Mesh-wide tracing (`--mesh-config`'s tracing fields).
    pub tracing: trace::MeshTracing,
    /// The mesh's metrics providers (`--mesh-config`'s `defaultProviders.metrics`,
    /// `extensionProviders`).
    pub metrics: metrics::MeshMetrics,
}

/// Istio's MeshConfig access log settings: the built-in `envoy` provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshAccessLog {
    /// Where lines go; empty: no mesh-wide access logs (Telemetry's go to `/dev/stdout`).
    pub file: String,
    /// JSON lines rather than text.
    pub json: bool,
    /// A custom format; empty: Istio's default for the encoding.
    pub format: String,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            domain: "cluster.local".to_string(),
            dns_refresh_rate: DEFAULT_DNS_REFRESH_RATE,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_string(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            outbound_traffic_policy: OutboundTrafficPolicy::AllowAny,
            protocol_detection_timeout: DEFAULT_PROTOCOL_DETECTION_TIMEOUT,
            access_log: MeshAccessLog::default(),
            tracing: trace::MeshTracing {
                enabled: true,
                sampling: weft_api::mesh::DEFAULT_TRACE_SAMPLING,
                ..Default::default()
            },
            metrics: metrics::MeshMetrics::default(),
        }
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

/// Everything the generator needs, built once per config set and never mutated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// Cluster DNS domain (`cluster.local`).
    pub domain: String,
    /// How often proxies re-resolve the addresses of DNS clusters.
    pub dns_refresh_rate: Duration,
    /// How long a request may go without a byte in either direction (zero: no limit).
    pub stream_idle_timeout: Duration,
    /// The root namespace (mesh-wide security policies).
    pub root_namespace: String,
    /// The trust domain of SPIFFE identities.
    pub trust_domain: String,
    /// The mesh's outbound traffic policy (a Sidecar may override it for its workloads).
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// How long a capturing proxy's listener filters wait to tell the protocol (zero: none).
    pub protocol_detection_timeout: Duration,
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
    /// AuthorizationPolicies ordered by namespace/name ([`security`]).
    pub authorization_policies: Vec<security::AuthorizationPolicyEntry>,
    /// RequestAuthentications ordered by namespace/name, with their key sets ([`security`]).
    pub request_authentications: Vec<security::RequestAuthenticationEntry>,
    /// PeerAuthentications ordered by namespace/name ([`security::peer_authentication`]).
    pub peer_authentications: Vec<security::PeerAuthenticationEntry>,
    /// Sidecars ordered by namespace/name ([`sidecar`]).
    pub sidecars: Vec<sidecar::SidecarEntry>,
    /// Kubernetes: the locality of every Pod that has one, by (namespace, name): a proxy
    /// that does not say where it runs is where its pod is.
    pub pod_localities: BTreeMap<(String, String), Locality>,
    /// LocalRateLimits ordered by namespace/name ([`ratelimit`]).
    pub local_rate_limits: Vec<ratelimit::LocalRateLimitEntry>,
    /// Mesh-wide access logs ([`MeshSettings::access_log`]).
    pub access_log: MeshAccessLog,
    /// Telemetry resources' access logging and tracing, ordered by namespace/name
    /// ([`telemetry`]).
    pub telemetries: Vec<telemetry::TelemetryEntry>,
    /// The mesh's tracing defaults ([`tracing`]).
    pub tracing: trace::MeshTracing,
    /// The mesh's metrics providers ([`metrics`]).
    pub metrics: metrics::MeshMetrics,
}

impl Model {
    /// A model without any service, for `settings`.
    pub fn empty(settings: &MeshSettings) -> Self {
        Self {
            domain: settings.domain.clone(),
            dns_refresh_rate: settings.dns_refresh_rate,
            stream_idle_timeout: settings.stream_idle_timeout,
            root_namespace: settings.root_namespace.clone(),
            trust_domain: settings.trust_domain.clone(),
            outbound_traffic_policy: settings.outbound_traffic_policy,
            protocol_detection_timeout: settings.protocol_detection_timeout,
            access_log: settings.access_log.clone(),
            tracing: settings.tracing.clone(),
            metrics: settings.metrics.clone(),
            ..Self::default()
        }
    }

    /// Builds the model from a config set (local mode: no Kubernetes registry).
    pub fn build(config: &ConfigSet, settings: &MeshSettings) -> Self {
        Self::build_with_registry(config, None, settings)
    }

    /// Builds the model from a source snapshot.
    pub fn from_snapshot(snapshot: &Snapshot, settings: &MeshSettings) -> Self {
        Self::build_with_registry(&snapshot.config, snapshot.registry.as_deref(), settings)
    }

    /// Builds the model from a source snapshot and the fetched JWKS ([`crate::jwks`]).
    pub fn from_snapshot_with_jwks(
        snapshot: &Snapshot,
        settings: &MeshSettings,
        jwks: &JwksSet,
    ) -> Self {
        Self::build_full(
            &snapshot.config,
            snapshot.registry.as_deref(),
            settings,
            jwks,
        )
    }

    /// Builds the model from Istio objects plus, in Kubernetes mode, the registry's
    /// Services. Kubernetes Services are added first: a ServiceEntry host that names the
    /// same host is ignored with a warning (Istio's Kubernetes registry comes first too).
    pub fn build_with_registry(
        config: &ConfigSet,
        registry: Option<&Registry>,
        settings: &MeshSettings,
    ) -> Self {
        Self::build_full(config, registry, settings, &JwksSet::default())
    }

    /// Builds the model; `jwks` holds the key sets fetched for `jwksUri` (none fetched yet:
    /// empty).
    pub fn build_full(
        config: &ConfigSet,
        registry: Option<&Registry>,
        settings: &MeshSettings,
        jwks: &JwksSet,
    ) -> Self {
        let mut model = Self::empty(settings);
        if let Some(registry) = registry {
            let (services, skipped) = registry.services(&settings.domain, &settings.trust_domain);
            for service in services {
                model.services.insert(service.hostname.clone(), service);
            }
            model.skipped_services = skipped;
            model.pod_localities = registry
                .pods
                .keys()
                .filter_map(|(namespace, name)| {
                    let locality = registry.pod_locality(namespace, name)?;
                    Some(((namespace.clone(), name.clone()), locality))
                })
                .collect();
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
                ConfigObject::Sidecar(resource) => {
                    let (entry, warnings) = sidecar::SidecarEntry::new(key, resource);
                    model.warnings.extend(warnings);
                    model.sidecars.push(entry);
                }
                ConfigObject::LocalRateLimit(resource) => {
                    let (entry, warnings) =
                        ratelimit::LocalRateLimitEntry::new(key, &resource.spec);
                    model.warnings.extend(warnings);
                    model.local_rate_limits.push(entry);
                }
                ConfigObject::Telemetry(resource) => {
                    let (entry, warnings) = telemetry::TelemetryEntry::new(key, &resource.spec);
                    model.warnings.extend(warnings);
                    model.telemetries.push(entry);
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        for (key, entry) in service_entries {
            service_entry::add(&mut model, key, entry, &workload_entries);
        }
        for (key, vs) in virtual_services {
            model.add_virtual_service(key, vs);
        }
        let delegation = delegate::merge(&mut model.virtual_services, &model.domain);
        model.warnings.extend(delegation);
        model.index_virtual_services();
        for (key, dr) in destination_rules {
            model.add_destination_rule(key, dr);
        }
        model.index_destination_rules();
        model.check_destinations();
        let shadowed = sidecar::shadowed(&model.sidecars);
        model.warnings.extend(shadowed);
        let collisions = capture::collisions(&model.services);
        model.warnings.extend(collisions);
        security::add(&mut model, config, jwks);
        let tracing = trace::check(&model);
        model.warnings.extend(tracing);
        let metrics = metrics::check(&model);
        model.warnings.extend(metrics);
        for (key, object) in config.objects() {
            model.warnings.extend(unsupported::fields(key, object));
        }
        model.warnings.sort();
        model.warnings.dedup();
        model
    }

    fn warn(&mut self, object: &ObjectKey, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning::new(object, path, message));
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
        self.check_dns_localities();
    }

    /// Warns about `localityLbSetting` on a rule that applies to hosts resolved by DNS: their
    /// endpoints arrive inline in CDS and are balanced without localities.
    fn check_dns_localities(&mut self) {
        let mut found = Vec::new();
        for (hostname, &index) in &self.destination_rule_for_host {
            let dns = self
                .services
                .get(hostname)
                .is_some_and(|service| service.resolution != crate::service::Resolution::Static);
            let rule = &self.destination_rules[index];
            if !dns {
                continue;
            }
            let policies = std::iter::once((
                "spec.trafficPolicy".to_string(),
                rule.spec.traffic_policy.as_ref(),
            ))
            .chain(rule.spec.subsets.iter().enumerate().map(|(i, subset)| {
                (
                    format!("spec.subsets[{i}].trafficPolicy"),
                    subset.traffic_policy.as_ref(),
                )
            }));
            for (path, policy) in policies {
                let Some(policy) = policy else { continue };
                let levels = std::iter::once((path.clone(), policy.load_balancer.as_ref())).chain(
                    policy
                        .port_level_settings
                        .iter()
                        .enumerate()
                        .map(|(i, level)| {
                            (
                                format!("{path}.portLevelSettings[{i}]"),
                                level.load_balancer.as_ref(),
                            )
                        }),
                );
                for (path, lb) in levels {
                    if lb.is_some_and(|lb| lb.locality_lb_setting.is_some()) {
                        found.push((
                            rule.key.clone(),
                            format!("{path}.loadBalancer.localityLbSetting"),
                            format!("not applied to {hostname}: its endpoints are resolved by DNS and balanced without localities"),
                        ));
                    }
                }
            }
        }
        for (key, path, message) in found {
            self.warn(&key, path, message);
        }
    }

    /// Warns about route destinations (HTTP, TCP and TLS routes) whose host, port or subset
    /// does not exist.
    fn check_destinations(&mut self) {
        let mut found = Vec::new();
        for entry in &self.virtual_services {
            let spec = &entry.spec;
            // (HTTP?, field path, destination) of every route destination.
            let mut destinations: Vec<(bool, String, &Destination)> = Vec::new();
            for (r, route) in spec.http.iter().enumerate() {
                for (d, dest) in route.route.iter().enumerate() {
                    let path = format!("spec.http[{r}].route[{d}].destination");
                    destinations.push((true, path, &dest.destination));
                }
            }
            let l4 = spec.tcp.iter().map(|r| ("tcp", &r.route));
            for (r, (kind, route)) in l4
                .enumerate()
                .chain(spec.tls.iter().map(|r| ("tls", &r.route)).enumerate())
            {
                for (d, dest) in route.iter().enumerate() {
                    let path = format!("spec.{kind}[{r}].route[{d}].destination");
                    destinations.push((false, path, &dest.destination));
                }
            }
            for (http, path, dest) in destinations {
                let outcome = if http {
                    "requests get 503 (no cluster)"
                } else {
                    "connections are closed (no cluster)"
                };
                let host = resolve_short_name(&dest.host, &entry.namespace, &self.domain);
                let Some(service) = self.services.get(&host) else {
                    found.push((
                        entry.key.clone(),
                        format!("{path}.host"),
                        format!("no ServiceEntry defines host {host}; {outcome}"),
                    ));
                    continue;
                };
                if let Some(port) = dest.port.as_ref().map(|port| port.number)
                    && service.port(port).is_none()
                {
                    found.push((
                        entry.key.clone(),
                        format!("{path}.port.number"),
                        format!("service {host} has no port {port}; {outcome}"),
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
                        format!(
                            "no DestinationRule defines subset {subset:?} for host {host}; {outcome}"
                        ),
                    ));
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

fn join(items: &[&String]) -> String {
    let set: BTreeSet<&str> = items.iter().map(|item| item.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
