//! The Kubernetes service registry: Services, EndpointSlices, Pod labels and Namespaces as
//! the Kubernetes source last saw them, and their translation into [`Service`]s (the same
//! type the model gets from ServiceEntries) with Istio's semantics. Pure functions:
//! unit-tested without a cluster.
//!
//! Translation rules (as Istio's `serviceregistry/kube`):
//! - a Service `name` in `ns` is the host `name.ns.svc.<domain>`; ExternalName and headless
//!   (`clusterIP: None`) Services are skipped (debug log);
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
//! - each endpoint carries the labels of the Pod its `targetRef` names (none when the Pod is
//!   unknown), so DestinationRule subsets select by pod labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service as KubeService, ServicePort as KubeServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::networking::Protocol;

use crate::object::ObjectKey;
use crate::service::{Endpoint, Resolution, Service, ServicePort};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Labels of one object.
pub type Labels = BTreeMap<String, String>;

/// What the Kubernetes source holds besides Istio objects. Vectors are sorted by
/// namespace/name so that equal contents compare equal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    pub services: Vec<Arc<KubeService>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Pod labels by (namespace, name).
    pub pods: BTreeMap<(String, String), Labels>,
    /// Namespace labels by name.
    pub namespaces: BTreeMap<String, Labels>,
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

    /// The model services of every Kubernetes Service, and the Services that were skipped.
    pub fn services(&self, domain: &str) -> (Vec<Service>, Vec<Skipped>) {
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
            match service(kube, slices, &self.pods, domain) {
                Ok(service) => services.push(service),
                Err(reason) => skipped.push(Skipped {
                    service: ObjectKey::new("Service", Some(namespace), name),
                    reason,
                }),
            }
        }
        (services, skipped)
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
    pods: &BTreeMap<(String, String), Labels>,
    domain: &str,
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
        .filter_map(service_port)
        .collect();
    ports.sort_by_key(|port| port.number);
    ports.dedup_by_key(|port| port.number);

    let mut endpoints = Vec::new();
    for slice in slices {
        endpoints.extend(slice_endpoints(slice, namespace, pods));
    }
    endpoints.sort_by(|a, b| (&a.address, &a.ports).cmp(&(&b.address, &b.ports)));
    endpoints.dedup_by(|a, b| a.address == b.address && a.ports == b.ports);

    Ok(Service {
        hostname: format!("{name}.{namespace}.svc.{domain}"),
        namespace: namespace.to_string(),
        ports,
        endpoints,
        resolution: Resolution::Static,
        source: ObjectKey::new("Service", Some(namespace), name),
        subject_alt_names: Vec::new(),
    })
}

fn service_port(port: &KubeServicePort) -> Option<ServicePort> {
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
    })
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
fn slice_endpoints(
    slice: &EndpointSlice,
    namespace: &str,
    pods: &BTreeMap<(String, String), Labels>,
) -> Vec<Endpoint> {
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
        let labels = endpoint
            .target_ref
            .as_ref()
            .filter(|target| target.kind.as_deref() == Some("Pod"))
            .and_then(|target| {
                let pod_namespace = target.namespace.as_deref().unwrap_or(namespace);
                pods.get(&(
                    pod_namespace.to_string(),
                    target.name.clone().unwrap_or_default(),
                ))
            })
            .cloned()
            .unwrap_or_default();
        endpoints.push(Endpoint {
            address: address.clone(),
            ports: ports.clone(),
            labels,
            weight: None,
            only_listed_ports: true,
            // Pods are watched as metadata only: their spec.serviceAccountName is not known.
            service_account: None,
        });
    }
    endpoints
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
