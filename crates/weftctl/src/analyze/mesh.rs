//! What the controller would make of a [`Snapshot`], for the analyzers: services by host
//! (Kubernetes Services and ServiceEntry hosts, short names resolved as
//! `<name>.<namespace>.svc.<domain>`), the workloads behind a service, the DestinationRule
//! of a host, the Sidecar of a workload and what its egress hosts let it see, and the
//! PeerAuthentication mode of a workload. The rules are the controller's
//! (`control-plane/src/model/`: `mod.rs`, `sidecar.rs`, `security/peer_authentication.rs`;
//! `source/registry.rs`); they are restated here because weftctl does not link the
//! controller.

use std::collections::BTreeMap;

use weft_api::host::{host_matches, resolve_short_name};
use weft_api::networking::{DestinationRule, Gateway, Sidecar, VirtualService};
use weft_api::security::{AuthorizationPolicy, MtlsMode, PeerAuthentication};
use weft_api::{ConfigObject, Resource};

use super::ResourceRef;
use super::input::{IstioObject, Snapshot, Workload};

/// The gateway name that stands for the sidecars in `VirtualService.gateways`.
pub const MESH_GATEWAY: &str = "mesh";

/// Labels of a workload or a selector.
pub type Labels = BTreeMap<String, String>;

/// One service host.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    /// The fully qualified host (or a ServiceEntry's wildcard).
    pub hostname: String,
    pub namespace: String,
    /// Port numbers.
    pub ports: Vec<u32>,
    /// The labels that select its workloads; `None` when it has no selector (its
    /// endpoints are not known from the config).
    pub selector: Option<Labels>,
    /// Labels of a ServiceEntry's inline endpoints.
    pub endpoint_labels: Vec<Labels>,
    /// The Service or ServiceEntry.
    pub resource: ResourceRef,
}

/// Whether `labels` carry every label of `selector`.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `k=v,k=v`, sorted.
pub fn show_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The model of one snapshot.
#[derive(Debug)]
pub struct Mesh<'a> {
    pub snapshot: &'a Snapshot,
    /// Services by host; the first definition wins (Kubernetes Services come first, as in
    /// the controller).
    pub services: BTreeMap<String, ServiceInfo>,
}

impl<'a> Mesh<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let domain = &snapshot.settings.domain;
        let mut services = BTreeMap::new();
        for kube in &snapshot.services {
            let spec = kube.service.spec.as_ref();
            let hostname = format!("{}.{}.svc.{domain}", kube.name, kube.namespace);
            let info = ServiceInfo {
                hostname: hostname.clone(),
                namespace: kube.namespace.clone(),
                ports: spec
                    .and_then(|s| s.ports.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|p| u32::try_from(p.port).ok())
                    .collect(),
                selector: spec
                    .and_then(|s| s.selector.clone())
                    .filter(|s| !s.is_empty()),
                endpoint_labels: Vec::new(),
                resource: ResourceRef::new("Service", &kube.namespace, &kube.name),
            };
            services.entry(hostname).or_insert(info);
        }
        for object in &snapshot.objects {
            let ConfigObject::ServiceEntry(entry) = &object.object else {
                continue;
            };
            let spec = &entry.spec;
            for host in &spec.hosts {
                let hostname = resolve_short_name(host, &object.namespace, domain);
                let info = ServiceInfo {
                    hostname: hostname.clone(),
                    namespace: object.namespace.clone(),
                    ports: spec.ports.iter().map(|p| p.number).collect(),
                    selector: spec.workload_selector.as_ref().map(|s| s.labels.clone()),
                    endpoint_labels: spec.endpoints.iter().map(|e| e.labels.clone()).collect(),
                    resource: object.resource(),
                };
                services.entry(hostname).or_insert(info);
            }
        }
        Self { snapshot, services }
    }

    /// `host` as written in an object of `namespace`, fully qualified.
    pub fn resolve(&self, host: &str, namespace: &str) -> String {
        resolve_short_name(host, namespace, &self.snapshot.settings.domain)
    }

    /// The service of a fully qualified host: exact, else a ServiceEntry wildcard covering it.
    pub fn service(&self, hostname: &str) -> Option<&ServiceInfo> {
        self.services.get(hostname).or_else(|| {
            self.services
                .values()
                .filter(|s| s.hostname.starts_with('*') && host_matches(&s.hostname, hostname))
                .max_by_key(|s| s.hostname.len())
        })
    }

    /// Whether any service has a host `pattern` (maybe a wildcard) covers.
    pub fn any_service_matches(&self, pattern: &str) -> bool {
        self.service(pattern).is_some()
            || self
                .services
                .keys()
                .any(|name| host_matches(pattern, name) || host_matches(name, pattern))
    }

    /// The labels of every workload behind a service (`None`: not known from the config,
    /// the service has no selector and no inline endpoints).
    pub fn workload_labels(&self, service: &'a ServiceInfo) -> Option<Vec<&'a Labels>> {
        let mut labels: Vec<&Labels> = service.endpoint_labels.iter().collect();
        if let Some(selector) = &service.selector {
            labels.extend(
                self.snapshot
                    .workloads
                    .iter()
                    .filter(|w| w.namespace == service.namespace && selects(selector, &w.labels))
                    .map(|w| &w.labels),
            );
            labels.extend(self.objects().filter_map(|o| match &o.object {
                ConfigObject::WorkloadEntry(entry)
                    if o.namespace == service.namespace
                        && selects(selector, &entry.spec.labels) =>
                {
                    Some(&entry.spec.labels)
                }
                _ => None,
            }));
        } else if labels.is_empty() {
            return None;
        }
        Some(labels)
    }

    pub fn objects(&self) -> impl Iterator<Item = &'a IstioObject> + 'a {
        self.snapshot.objects.iter()
    }

    pub fn virtual_services(
        &self,
    ) -> impl Iterator<Item = (&'a IstioObject, &'a Resource<VirtualService>)> + 'a {
        self.objects().filter_map(|o| match &o.object {
            ConfigObject::VirtualService(r) => Some((o, r)),
            _ => None,
        })
    }

    pub fn destination_rules(
        &self,
    ) -> impl Iterator<Item = (&'a IstioObject, &'a Resource<DestinationRule>)> + 'a {
        self.objects().filter_map(|o| match &o.object {
            ConfigObject::DestinationRule(r) => Some((o, r)),
            _ => None,
        })
    }

    pub fn gateways(&self) -> impl Iterator<Item = (&'a IstioObject, &'a Resource<Gateway>)> + 'a {
        self.objects().filter_map(|o| match &o.object {
            ConfigObject::Gateway(r) => Some((o, r)),
            _ => None,
        })
    }

    pub fn sidecars(&self) -> impl Iterator<Item = (&'a IstioObject, &'a Resource<Sidecar>)> + 'a {
        self.objects().filter_map(|o| match &o.object {
            ConfigObject::Sidecar(r) => Some((o, r)),
            _ => None,
        })
    }

    pub fn peer_authentications(
        &self,
    ) -> impl Iterator<Item = (&'a IstioObject, &'a Resource<PeerAuthentication>)> + 'a {
        self.objects().filter_map(|o| match &o.object {
            ConfigObject::PeerAuthentication(r) => Some((o, r)),
            _ => None,
        })
    }

    pub fn authorization_policies(
        &self,
    ) -> impl Iterator<Item = (&'a IstioObject, &'a Resource<AuthorizationPolicy>)> + 'a {
        self.objects().filter_map(|o| match &o.object {
            ConfigObject::AuthorizationPolicy(r) => Some((o, r)),
            _ => None,
        })
    }

    /// The DestinationRule that applies to a host, as the controller picks it: the exact
    /// host first, then the longest wildcard, then by namespace/name.
    pub fn destination_rule(
        &self,
        hostname: &str,
    ) -> Option<(&'a IstioObject, &'a Resource<DestinationRule>)> {
        let mut candidates: Vec<_> = self
            .destination_rules()
            .filter_map(|(o, dr)| {
                let host = self.resolve(&dr.spec.host, &o.namespace);
                if host == hostname {
                    Some(((false, 0), (o, dr)))
                } else if host_matches(&host, hostname) {
                    Some(((true, usize::MAX - host.len()), (o, dr)))
                } else {
                    None
                }
            })
            .collect();
        candidates.sort_by(|a, b| {
            (a.0, &a.1.0.namespace, a.1.1.metadata.name.as_str()).cmp(&(
                b.0,
                &b.1.0.namespace,
                b.1.1.metadata.name.as_str(),
            ))
        });
        candidates.into_iter().next().map(|(_, found)| found)
    }

    /// The Sidecar that applies to a workload, with Istio's precedence: a selecting one in
    /// its namespace, else its namespace's, else the root namespace's (oldest, then by name).
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Option<(&'a IstioObject, &'a Resource<Sidecar>)> {
        let root = &self.snapshot.settings.root_namespace;
        let oldest = |level: &dyn Fn(&IstioObject, &Resource<Sidecar>) -> bool| {
            self.sidecars()
                .filter(|(o, s)| level(o, s))
                .min_by(|a, b| age(a.0).cmp(&age(b.0)))
        };
        fn selector(s: &Resource<Sidecar>) -> Option<&Labels> {
            s.spec.workload_selector.as_ref().map(|w| &w.labels)
        }
        oldest(&|o, s| {
            o.namespace == namespace && selector(s).is_some_and(|sel| selects(sel, labels))
        })
        .or_else(|| oldest(&|o, s| o.namespace == namespace && selector(s).is_none()))
        .or_else(|| oldest(&|o, s| &o.namespace == root && selector(s).is_none()))
    }

    /// The mTLS mode a workload accepts and the PeerAuthentication that decided it (none:
    /// PERMISSIVE by default): workload over namespace over mesh, UNSET inherits.
    pub fn mtls_mode(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> (MtlsMode, Option<&'a IstioObject>) {
        let root = &self.snapshot.settings.root_namespace;
        let oldest = |level: &dyn Fn(&IstioObject, &Resource<PeerAuthentication>) -> bool| {
            self.peer_authentications()
                .filter(|(o, p)| level(o, p))
                .min_by(|a, b| age(a.0).cmp(&age(b.0)))
        };
        fn selector(p: &Resource<PeerAuthentication>) -> Option<&Labels> {
            p.spec
                .selector
                .as_ref()
                .map(|s| &s.match_labels)
                .filter(|s| !s.is_empty())
        }
        let in_namespace = |o: &IstioObject| o.namespace == namespace && namespace != root;
        let mesh = oldest(&|o, p| &o.namespace == root && selector(p).is_none());
        let namespace_wide = oldest(&|o, p| in_namespace(o) && selector(p).is_none());
        let workload =
            oldest(&|o, p| in_namespace(o) && selector(p).is_some_and(|sel| selects(sel, labels)));
        let mut decision = (MtlsMode::Permissive, None);
        for (object, policy) in [mesh, namespace_wide, workload].into_iter().flatten() {
            match policy.spec.mtls.as_ref().and_then(|m| m.mode) {
                None | Some(MtlsMode::Unset) => {}
                Some(mode) => decision = (mode, Some(object)),
            }
        }
        decision
    }

    /// Every workload of the snapshot.
    pub fn workloads(&self) -> &'a [Workload] {
        &self.snapshot.workloads
    }
}

/// The order among objects of one level: oldest first (no timestamp: first), then by name.
fn age(object: &IstioObject) -> (Option<&str>, &str, &str) {
    (
        object.object.metadata().creation_timestamp.as_deref(),
        &object.namespace,
        object.object.name(),
    )
}

/// Whether a VirtualService applies to sidecars (no `gateways`, or `mesh` among them).
pub fn is_mesh_bound(vs: &VirtualService) -> bool {
    vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY)
}

/// Whether an object with `export_to`, in `namespace`, is visible in `to` (empty or `*`:
/// everywhere; `.`: its own namespace; a name: that namespace).
pub fn exported_to(export_to: &[String], namespace: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || (e == "." && namespace == to) || e == to)
}

/// One `egress[].hosts` entry of a Sidecar: `<namespace>/<dnsName>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressHost {
    pub namespace: String,
    pub host: String,
}

impl EgressHost {
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, host) = text.split_once('/')?;
        Some(Self {
            namespace: namespace.to_string(),
            host: host.to_string(),
        })
    }

    /// Whether a workload in `namespace` sees `service` through this entry (`*`: any
    /// namespace, `.`: the workload's, `~`: none).
    pub fn covers(&self, service: &ServiceInfo, namespace: &str) -> bool {
        let in_namespace = match self.namespace.as_str() {
            "*" => true,
            "." => service.namespace == namespace,
            "~" => false,
            other => service.namespace == other,
        };
        in_namespace && host_matches(&self.host, &service.hostname)
    }
}

/// Whether a workload in `namespace` that `sidecar` applies to sees `service` (a Sidecar
/// without `egress` hides nothing).
pub fn sidecar_sees(sidecar: &Sidecar, service: &ServiceInfo, namespace: &str) -> bool {
    sidecar.egress.is_empty()
        || sidecar
            .egress
            .iter()
            .flat_map(|e| &e.hosts)
            .filter_map(|h| EgressHost::parse(h))
            .any(|h| h.covers(service, namespace))
}
