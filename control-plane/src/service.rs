//! The service vocabulary every source produces and the model indexes: a [`Service`] with
//! its [`ServicePort`]s, [`Endpoint`]s and [`Resolution`]. Kubernetes Services (the
//! registry) and ServiceEntries (the model builder) both become these; the xDS generator
//! reads them. Depends only on [`crate::object`].

use std::collections::BTreeMap;

use weft_api::networking::{Protocol, WorkloadEntry};

use crate::locality::Locality;
use crate::object::ObjectKey;

/// A service: one host of a ServiceEntry (or one Kubernetes Service), with its ports and
/// endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Fully qualified host name (`reviews.default.svc.cluster.local`).
    pub hostname: String,
    /// Namespace of the object that defines it.
    pub namespace: String,
    /// Ports, sorted by number.
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<Endpoint>,
    /// How the proxy finds the endpoints' addresses.
    pub resolution: Resolution,
    /// The service's virtual IPs, sorted: a Kubernetes Service's `spec.clusterIPs` (else
    /// `spec.clusterIP`), a ServiceEntry's `spec.addresses` as written (IPs or CIDR blocks).
    /// Captured traffic to them is told apart by these (the capture shape's filter chains).
    pub addresses: Vec<String>,
    /// The ServiceEntry or Kubernetes Service that defines the service.
    pub source: ObjectKey,
    /// The identities the service's servers may present, sorted: the ServiceEntry's
    /// `subjectAltNames` (as written) and the SPIFFE IDs of its endpoints' service accounts.
    /// For a Kubernetes Service, its pods' service accounts and its annotations
    /// ([`crate::source::registry`]). Empty when none is known: any identity of the trust
    /// bundle is accepted.
    pub subject_alt_names: Vec<String>,
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

/// How the proxy finds the addresses of a service's endpoints (Istio's service resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    /// The controller sends the endpoints' IP addresses over EDS: Kubernetes Services and
    /// ServiceEntries with `resolution: STATIC` (and `NONE`, which is served the same way).
    #[default]
    Static,
    /// `resolution: DNS`: the proxy resolves every endpoint's address and uses all the
    /// addresses it gets (an Envoy `STRICT_DNS` cluster).
    Dns,
    /// `resolution: DNS_ROUND_ROBIN`: the proxy resolves the one endpoint's address and
    /// connects to the first address it gets (an Envoy `LOGICAL_DNS` cluster).
    DnsRoundRobin,
}

impl Resolution {
    /// Whether the proxy resolves the endpoint addresses itself (no EDS).
    pub fn is_dns(self) -> bool {
        matches!(self, Resolution::Dns | Resolution::DnsRoundRobin)
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
    /// The port's position in its object's `spec.ports`, for warnings (`spec.ports[<index>]`).
    pub index: usize,
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

    /// How a capturing proxy handles connections to the port; `None` for UDP (not captured).
    pub fn kind(&self) -> Option<PortKind> {
        match self.protocol {
            None => Some(PortKind::Undeclared),
            Some(Protocol::Udp) => None,
            Some(protocol) if protocol.is_http() => Some(PortKind::Http),
            Some(_) => Some(PortKind::Tcp),
        }
    }
}

/// What a port carries, as traffic capture treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortKind {
    /// A declared HTTP protocol (HTTP, HTTP2, GRPC, GRPC-Web): the HTTP connection manager.
    Http,
    /// A declared protocol that is not HTTP (TCP, TLS, HTTPS, Mongo, MySQL, Redis): opaque TCP.
    Tcp,
    /// No declared protocol: HTTP when the first bytes are HTTP, else opaque TCP.
    Undeclared,
}

/// One endpoint (workload instance) of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// An IP address, or (for services with a DNS [`Resolution`]) a host name the proxy resolves.
    pub address: String,
    /// Port overrides by service port name.
    pub ports: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
    pub weight: Option<u32>,
    /// True for Kubernetes endpoints: the endpoint serves only the service ports named in
    /// `ports` (its EndpointSlice lists them); otherwise it serves every port.
    pub only_listed_ports: bool,
    /// The workload's service account, when known (its mTLS identity).
    pub service_account: Option<ServiceAccount>,
    /// Where it runs (empty when unknown): locality load balancing sorts endpoints by it.
    pub locality: Locality,
}

/// A workload's service account: its mTLS identity is
/// `spiffe://<trust domain>/ns/<namespace>/sa/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

/// A service's identities (its [`Service::subject_alt_names`]): the SPIFFE IDs in
/// `trust_domain` of its endpoints' service accounts, and `extra` (identities the service's
/// own config names), sorted and without repeats.
pub fn subject_alt_names(
    endpoints: &[Endpoint],
    extra: impl IntoIterator<Item = String>,
    trust_domain: &str,
) -> Vec<String> {
    let mut sans: Vec<String> = endpoints
        .iter()
        .filter_map(|endpoint| endpoint.service_account.as_ref())
        .map(|account| account.spiffe_uri(trust_domain))
        .chain(extra)
        .collect();
    sans.sort();
    sans.dedup();
    sans
}

impl ServiceAccount {
    /// The SPIFFE ID of the service account in `trust_domain`.
    pub fn spiffe_uri(&self, trust_domain: &str) -> String {
        weft_identity::SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: self.namespace.clone(),
            service_account: self.name.clone(),
        }
        .uri()
    }
}

impl Endpoint {
    /// A ServiceEntry endpoint or a selected WorkloadEntry, defined in `namespace` (the
    /// namespace of its `serviceAccount`).
    pub fn from_workload(entry: &WorkloadEntry, namespace: &str) -> Self {
        Self {
            address: entry.address.clone(),
            ports: entry.ports.clone(),
            labels: entry.labels.clone(),
            weight: entry.weight,
            only_listed_ports: false,
            service_account: entry
                .service_account
                .as_deref()
                .filter(|name| !name.is_empty())
                .map(|name| ServiceAccount {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                }),
            locality: entry
                .locality
                .as_deref()
                .map(Locality::parse)
                .unwrap_or_default(),
        }
    }

    /// An endpoint at `address` on every port (the service port's `targetPort`, else its number).
    pub fn at(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            ports: BTreeMap::new(),
            labels: BTreeMap::new(),
            weight: None,
            only_listed_ports: false,
            service_account: None,
            locality: Locality::default(),
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

    /// The load-balancing weight sent to the proxy: the entry's weight, 1 when unset or 0
    /// (as Istio).
    pub fn lb_weight(&self) -> u32 {
        self.weight.filter(|weight| *weight > 0).unwrap_or(1)
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
