//! The Kubernetes service registry: Services, EndpointSlices, Pods, Namespaces and Nodes as
//! the Kubernetes source last saw them, and their translation into [`Service`]s (the same
//! type the model gets from ServiceEntries) with Istio's semantics. Pure functions:
//! unit-tested without a cluster.
//!
//! Translation rules (as Istio's `serviceregistry/kube`):
//! - a Service `name` in `ns` is the host `name.ns.svc.<domain>`; ExternalName and headless
//!   (`clusterIP: None`) Services are skipped (debug log); its virtual IPs are
//!   `spec.clusterIPs` (else `spec.clusterIP`);
//! - a port's protocol comes from `appProtocol` when set (`kubernetes.io/h2c` → HTTP2,
//!   `kubernetes.io/ws` → HTTP, `kubernetes.io/wss` → HTTPS, else the name as below),
//!   else from the port name (`grpc-web…` → GRPC-Web, else the part before the first `-`:
//!   `http`, `http2`, `grpc`, `https`, `tls`, `tcp`, `mongo`, `mysql`, `redis`); a UDP port
//!   is UDP; an unknown protocol is undeclared (served as HTTP, as ServiceEntry ports without
//!   a protocol), except Istio's well-known TCP ports 25, 53, 3306 and 27017;
//! - endpoints come from the EndpointSlices labelled `kubernetes.io/service-name: <name>` in
//!   the Service's namespace (`addressType` IPv4/IPv6; FQDN slices are skipped): every
//!   endpoint whose `conditions.ready` is not `false` (unset means ready), at its first
//!   address (the addresses of one endpoint are fungible), with the slice's port of the same
//!   name as the service port (the slice carries the resolved `targetPort`, named or not); an
//!   endpoint serves only the service ports its slice lists;
//! - each endpoint carries the labels and the service account of the Pod its `targetRef`
//!   names (none when the Pod is unknown), so DestinationRule subsets select by pod labels
//!   and mesh mTLS verifies the server's identity;
//! - an endpoint's locality is its Pod's `istio-locality` label (`region.zone.subzone`) when
//!   set, else the topology labels of its node (the Pod's `spec.nodeName`, else the
//!   endpoint's `nodeName`: `topology.kubernetes.io/region`, `…/zone`,
//!   `topology.istio.io/subzone`), else the zone the EndpointSlice gives it, as Istio;
//! - a service's identities (the SANs a client accepts from its servers) are the SPIFFE IDs
//!   of its endpoints' service accounts, plus the service accounts its annotation
//!   `alpha.istio.io/kubernetes-serviceaccounts` names (in its namespace) and the identities
//!   `alpha.istio.io/canonical-serviceaccounts` gives verbatim (both comma-separated), as
//!   istiod's `ServiceAccounts`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service as KubeService, ServicePort as KubeServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::networking::Protocol;

use crate::locality::{Locality, POD_LOCALITY_LABEL};
use crate::object::ObjectKey;
use crate::service::{
    Endpoint, Resolution, Service, ServiceAccount, ServicePort, subject_alt_names,
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Labels of one object.
pub type Labels = BTreeMap<String, String>;

/// Service accounts (in the Service's namespace) whose identities serve a Service.
pub const KUBERNETES_SERVICE_ACCOUNTS: &str = "alpha.istio.io/kubernetes-serviceaccounts";
/// Identities (verbatim, e.g. SPIFFE IDs of another trust domain) that serve a Service.
pub const CANONICAL_SERVICE_ACCOUNTS: &str = "alpha.istio.io/canonical-serviceaccounts";

/// What the registry keeps of a Pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod {
    pub labels: Labels,
    /// `spec.serviceAccountName`; unset means `default`, as the API server's admission sets.
    pub service_account: Option<String>,
    /// `spec.nodeName`: the node it runs on (its locality), once scheduled.
    pub node_name: Option<String>,
}

impl Pod {
    /// The service account the Pod runs as (its mTLS identity).
    pub fn service_account(&self) -> &str {
        self.service_account
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or("default")
    }
}

/// Pods by (namespace, name).
pub type Pods = BTreeMap<(String, String), Pod>;

/// What the Kubernetes source holds besides Istio objects. Vectors are sorted by
/// namespace/name so that equal contents compare equal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    pub services: Vec<Arc<KubeService>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Pods by (namespace, name).
    pub pods: Pods,
    /// Namespace labels by name.
    pub namespaces: BTreeMap<String, Labels>,
    /// Node labels by name (their topology labels are their pods' locality).
    pub nodes: BTreeMap<String, Labels>,
}

/// Why a Kubernetes Service is not in the model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Skipped {
    pub service: ObjectKey,
    pub reason: String,
}

impl Registry {
    /// Sorts every list by namespace/name (the reflector stores are unordered).
    pub fn sort(&mut self) {
        self.services
            .sort_by(|a, b| ns_name(&a.metadata).cmp(&ns_name(&b.metadata)));
        self.endpoint_slices
            .sort_by(|a, b| ns_name(&a.metadata).cmp(&ns_name(&b.metadata)));
    }

    /// The model services of every Kubernetes Service (`domain`: the cluster's DNS domain;
    /// identities in `trust_domain`), and the Services that were skipped.
    pub fn services(&self, domain: &str, trust_domain: &str) -> (Vec<Service>, Vec<Skipped>) {
        let mut slices_by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in &self.endpoint_slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            {
                slices_by_service
                    .entry((namespace, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut services = Vec::new();
        let mut skipped = Vec::new();
        for kube in &self.services {
            let namespace = kube.metadata.namespace.as_deref().unwrap_or_default();
            let name = kube.metadata.name.as_deref().unwrap_or_default();
            let slices = slices_by_service
                .get(&(namespace, name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            match service(kube, slices, self, domain, trust_domain) {
                Ok(service) => services.push(service),
                Err(reason) => skipped.push(Skipped {
                    service: ObjectKey::new("Service", Some(namespace), name),
                    reason,
                }),
            }
        }
        (services, skipped)
    }

    /// The locality of Pod `namespace/name`: its `istio-locality` label, else its node's
    /// topology labels; `None` for an unknown Pod or one with neither.
    pub fn pod_locality(&self, namespace: &str, name: &str) -> Option<Locality> {
        let pod = self.pods.get(&(namespace.to_string(), name.to_string()))?;
        Some(self.locality(Some(pod), None, None)).filter(|l| !l.is_empty())
    }

    /// An endpoint's locality: its Pod's `istio-locality` label, else the labels of its node
    /// (the Pod's, else `node_name`), else `zone` (an EndpointSlice's, zone only).
    fn locality(&self, pod: Option<&Pod>, node_name: Option<&str>, zone: Option<&str>) -> Locality {
        if let Some(label) = pod.and_then(|pod| pod.labels.get(POD_LOCALITY_LABEL)) {
            return Locality::from_pod_label(label);
        }
        let node = pod
            .and_then(|pod| pod.node_name.as_deref())
            .or(node_name)
            .and_then(|node| self.nodes.get(node))
            .map(Locality::from_labels)
            .filter(|locality| !locality.is_empty());
        node.unwrap_or_else(|| Locality {
            zone: zone.unwrap_or_default().to_string(),
            ..Locality::default()
        })
    }
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// One Kubernetes Service with its EndpointSlices → a model service, or why it is skipped.
pub fn service(
    kube: &KubeService,
    slices: &[&EndpointSlice],
    registry: &Registry,
    domain: &str,
    trust_domain: &str,
) -> Result<Service, String> {
    let namespace = kube.metadata.namespace.as_deref().unwrap_or_default();
    let name = kube.metadata.name.as_deref().unwrap_or_default();
    let Some(spec) = &kube.spec else {
        return Err("no spec".to_string());
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err("ExternalName Services are not supported yet".to_string());
    }
    if spec.cluster_ip.as_deref() == Some("None") {
        return Err("headless Services (clusterIP: None) are not supported yet".to_string());
    }
    let mut ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, port)| service_port(index, port))
        .collect();
    ports.sort_by_key(|port| port.number);
    ports.dedup_by_key(|port| port.number);

    let mut endpoints = Vec::new();
    for slice in slices {
        endpoints.extend(slice_endpoints(slice, namespace, registry));
    }
    endpoints.sort_by(|a, b| (&a.address, &a.ports).cmp(&(&b.address, &b.ports)));
    endpoints.dedup_by(|a, b| a.address == b.address && a.ports == b.ports);

    let annotation = |key: &str| {
        kube.metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(key))
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let annotated = annotation(KUBERNETES_SERVICE_ACCOUNTS)
        .map(|name| {
            ServiceAccount {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }
            .spiffe_uri(trust_domain)
        })
        .chain(annotation(CANONICAL_SERVICE_ACCOUNTS).map(str::to_string));
    let subject_alt_names = subject_alt_names(&endpoints, annotated, trust_domain);

    Ok(Service {
        hostname: format!("{name}.{namespace}.svc.{domain}"),
        namespace: namespace.to_string(),
        ports,
        endpoints,
        resolution: Resolution::Static,
        addresses: cluster_ips(spec),
        source: ObjectKey::new("Service", Some(namespace), name),
        subject_alt_names,
    })
}

fn service_port(index: usize, port: &KubeServicePort) -> Option<ServicePort> {
    let number = u32::try_from(port.port).ok().filter(|number| *number > 0)?;
    let name = port.name.clone().unwrap_or_default();
    let target_port = match &port.target_port {
        // Unset means "the same as port".
        None => Some(number),
        Some(IntOrString::Int(target)) => u32::try_from(*target).ok().filter(|t| *t > 0),
        // Named: resolved per endpoint by the EndpointSlice.
        Some(IntOrString::String(_)) => None,
    };
    Some(ServicePort {
        number,
        protocol: port_protocol(
            number,
            &name,
            port.protocol.as_deref(),
            port.app_protocol.as_deref(),
        ),
        name,
        target_port,
        index,
    })
}

/// The virtual IPs of a Service: `spec.clusterIPs`, else `spec.clusterIP`, without `None` and
/// empty values, sorted.
pub fn cluster_ips(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<String> {
    let mut addresses: Vec<String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    };
    addresses.retain(|ip| !ip.is_empty() && ip != "None");
    addresses.sort();
    addresses.dedup();
    addresses
}

/// Istio's ports that are TCP when nothing else says (protocol sniffing would break them).
const WELL_KNOWN_TCP_PORTS: [u32; 4] = [25, 53, 3306, 27017];

/// The protocol of a Kubernetes port (Istio's `ConvertProtocol`): `None` when undeclared.
pub fn port_protocol(
    number: u32,
    name: &str,
    l4: Option<&str>,
    app_protocol: Option<&str>,
) -> Option<Protocol> {
    if l4 == Some("UDP") {
        return Some(Protocol::Udp);
    }
    let mut text = name;
    if let Some(app) = app_protocol {
        match app {
            "kubernetes.io/h2c" => return Some(Protocol::Http2),
            "kubernetes.io/ws" => return Some(Protocol::Http),
            "kubernetes.io/wss" => return Some(Protocol::Https),
            other => text = other,
        }
    }
    let found = if text
        .get(..8)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("grpc-web"))
    {
        Some(Protocol::GrpcWeb)
    } else {
        let prefix = text.split('-').next().unwrap_or_default();
        // A TCP port named `udp-…` is not UDP.
        Protocol::parse(prefix).filter(|protocol| *protocol != Protocol::Udp)
    };
    found.or_else(|| {
        WELL_KNOWN_TCP_PORTS
            .contains(&number)
            .then_some(Protocol::Tcp)
    })
}

/// The ready endpoints of one EndpointSlice.
fn slice_endpoints(slice: &EndpointSlice, namespace: &str, registry: &Registry) -> Vec<Endpoint> {
    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
        return Vec::new();
    }
    let ports: BTreeMap<String, u32> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let number = u32::try_from(port.port?).ok()?;
            Some((port.name.clone().unwrap_or_default(), number))
        })
        .collect();
    let mut endpoints = Vec::new();
    for endpoint in &slice.endpoints {
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|conditions| conditions.ready)
            .unwrap_or(true);
        if !ready {
            continue;
        }
        let Some(address) = endpoint.addresses.first() else {
            continue;
        };
        let pod = endpoint
            .target_ref
            .as_ref()
            .filter(|target| target.kind.as_deref() == Some("Pod"))
            .and_then(|target| {
                let pod_namespace = target.namespace.as_deref().unwrap_or(namespace);
                let key = (
                    pod_namespace.to_string(),
                    target.name.clone().unwrap_or_default(),
                );
                registry.pods.get(&key).map(|pod| (key.0, pod))
            });
        let locality = registry.locality(
            pod.as_ref().map(|(_, pod)| *pod),
            endpoint.node_name.as_deref(),
            endpoint.zone.as_deref(),
        );
        endpoints.push(Endpoint {
            address: address.clone(),
            ports: ports.clone(),
            labels: pod
                .as_ref()
                .map(|(_, pod)| pod.labels.clone())
                .unwrap_or_default(),
            weight: None,
            only_listed_ports: true,
            service_account: pod.map(|(pod_namespace, pod)| ServiceAccount {
                namespace: pod_namespace,
                name: pod.service_account().to_string(),
            }),
            locality,
        });
    }
    endpoints
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
