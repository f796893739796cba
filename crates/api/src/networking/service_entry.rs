//! `ServiceEntry` (networking.istio.io/v1): services added to the mesh registry, their ports, protocols and endpoints.

use std::collections::BTreeSet;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::WorkloadSelector;
use super::workload_entry::{WorkloadEntry, check_max_items, check_max_len, check_ports_declared};
use crate::de::null_default;
use crate::validation::{
    FieldError, Path, Validate, check, check_export_to, check_labels, is_ip, validate_fqdn,
    validate_ip_subnet, validate_port_name, validate_wildcard_domain,
};

/// A service in the mesh registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Host names of the service.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub addresses: Vec<String>,
    /// Ports of the service.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh (default MESH_EXTERNAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found (default NONE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Static endpoints.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoints: Vec<WorkloadEntry>,
    /// Select WorkloadEntries and pods as endpoints instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces the service is visible to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub export_to: Vec<String>,
    /// SANs accepted for the service's workloads.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
}

/// Whether a service is part of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (no mTLS).
    #[default]
    MeshExternal,
    /// Inside the mesh.
    MeshInternal,
}

/// How the proxy resolves endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the original destination address.
    #[default]
    None,
    /// Use the endpoints' IPs.
    Static,
    /// Resolve hosts (or endpoint names) with DNS, all addresses.
    Dns,
    /// Resolve with DNS, first address only.
    DnsRoundRobin,
    /// Resolve per request with a dynamic forward proxy. In Istio's schema, but refused by
    /// Istio's validation ("unsupported resolution type").
    DynamicDns,
}

impl ServiceEntry {
    /// The resolution, NONE if unset.
    pub fn resolution(&self) -> Resolution {
        self.resolution.unwrap_or_default()
    }

    /// The location, MESH_EXTERNAL if unset.
    pub fn location(&self) -> Location {
        self.location.unwrap_or_default()
    }

    /// The port with this name.
    pub fn port_named(&self, name: &str) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Istio's `ValidateServiceEntry` and the CEL rules of its CRD. Needs the object's
    /// namespace (for `exportTo`).
    pub fn validate_in_namespace(
        &self,
        namespace: Option<&str>,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        self.workload_selector
            .validate(&path.field("workloadSelector"), errors);
        if self.workload_selector.is_some() && !self.endpoints.is_empty() {
            path.push(
                errors,
                "only one of WorkloadSelector or Endpoints can be set",
            );
        }

        let hp = path.field("hosts");
        if self.hosts.is_empty() {
            hp.push(errors, "service entry must have at least one host");
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let p = hp.index(i);
            if h == "*" {
                p.push(
                    errors,
                    "hostname cannot be wildcard: a full wildcard \"*\" is not allowed in a service entry",
                );
            } else {
                check(&p, errors, validate_wildcard_domain(h));
            }
        }

        let resolution = self.resolution();
        let ap = path.field("addresses");
        let mut cidr = false;
        for (i, a) in self.addresses.iter().enumerate() {
            cidr |= a.contains('/');
            check(&ap.index(i), errors, validate_ip_subnet(a));
        }
        if cidr && !matches!(resolution, Resolution::None | Resolution::Static) {
            ap.push(
                errors,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }

        let pp = path.field("ports");
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            let p = pp.index(i);
            if !names.insert(port.name.as_str()) {
                p.field("name").push(
                    errors,
                    format!("service entry port name \"{}\" already defined", port.name),
                );
            }
            if !numbers.insert(port.number) {
                p.field("number").push(
                    errors,
                    format!(
                        "port number cannot be duplicated: service entry port {} already defined",
                        port.number
                    ),
                );
            }
            port.validate(&p, errors);
        }

        let ep = path.field("endpoints");
        for (i, e) in self.endpoints.iter().enumerate() {
            let p = ep.index(i);
            match resolution {
                // Refused below; the CRD's rules still apply to each endpoint.
                Resolution::None | Resolution::DynamicDns => {
                    e.validate_schema_rules(&p, errors, true);
                }
                Resolution::Static => e.validate_entry(&p, errors, Some(&names), false),
                Resolution::Dns | Resolution::DnsRoundRobin => {
                    e.validate_schema_rules(&p, errors, true);
                    if !is_ip(&e.address) && validate_fqdn(&e.address).is_err() {
                        p.field("address").push(
                            errors,
                            format!(
                                "endpoint address \"{}\" is not a valid FQDN or an IP address",
                                e.address
                            ),
                        );
                    }
                    check_labels(&p.field("labels"), errors, &e.labels);
                    check_ports_declared(&p.field("ports"), errors, &e.ports, &names);
                }
            }
        }
        match resolution {
            Resolution::None => {
                if !self.endpoints.is_empty() {
                    ep.push(
                        errors,
                        "NONE mode cannot set endpoints: no endpoints should be provided for resolution NONE (the default)",
                    );
                }
            }
            Resolution::Static => {}
            Resolution::Dns | Resolution::DnsRoundRobin => {
                let mode = if resolution == Resolution::Dns {
                    "DNS"
                } else {
                    "DNS_ROUND_ROBIN"
                };
                if self.endpoints.is_empty() {
                    for (i, h) in self.hosts.iter().enumerate() {
                        if h != "*" && validate_fqdn(h).is_err() {
                            hp.index(i).push(
                                errors,
                                format!("hosts must be FQDN if no endpoints are provided for resolution mode {mode}"),
                            );
                        }
                    }
                }
                if resolution == Resolution::DnsRoundRobin && self.endpoints.len() > 1 {
                    ep.push(
                        errors,
                        "DNS_ROUND_ROBIN mode cannot have multiple endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
                    );
                }
            }
            Resolution::DynamicDns => path.field("resolution").push(
                errors,
                "unsupported resolution type DYNAMIC_DNS (use NONE, STATIC, DNS or DNS_ROUND_ROBIN)",
            ),
        }

        if resolution != Resolution::None
            && self.hosts.len() > 1
            && let Some(i) = self.ports.iter().position(|p| {
                let proto = p.protocol();
                !proto.is_http() && !proto.is_tls()
            })
        {
            pp.index(i).push(
                errors,
                "multiple hosts provided with non-HTTP, non-TLS ports",
            );
        }

        check_export_to(
            &path.field("exportTo"),
            errors,
            namespace,
            &self.export_to,
            true,
        );
        self.check_schema_limits(path, errors);
    }

    /// The `maxItems` / `maxLength` limits of Istio's schema (the endpoints' own limits are
    /// checked with the endpoints).
    fn check_schema_limits(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check_max_items(&path.field("hosts"), errors, self.hosts.len(), 256);
        check_max_items(&path.field("addresses"), errors, self.addresses.len(), 256);
        for (i, a) in self.addresses.iter().enumerate() {
            check_max_len(&path.field("addresses").index(i), errors, a, 64);
        }
        check_max_items(&path.field("ports"), errors, self.ports.len(), 256);
        for (i, p) in self.ports.iter().enumerate() {
            let pp = path.field("ports").index(i);
            check_max_len(&pp.field("name"), errors, &p.name, 256);
            check_max_len(
                &pp.field("protocol"),
                errors,
                p.protocol.as_deref().unwrap_or(""),
                256,
            );
        }
        check_max_items(&path.field("endpoints"), errors, self.endpoints.len(), 4096);
    }
}

impl Validate for ServiceEntry {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_in_namespace(None, path, errors);
    }
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number.
    #[serde(default)]
    pub number: u32,
    /// Protocol name (`HTTP`, `HTTPS`, `GRPC`, `GRPC-Web`, `HTTP2`, `MONGO`, `MYSQL`, `REDIS`,
    /// `TCP`, `TLS`, `UDP`; case-insensitive). Absent means TCP here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Port name (a DNS-1123 label, unique in the service).
    #[serde(default)]
    pub name: String,
    /// Port on the endpoints, if different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

impl ServicePort {
    /// The parsed protocol: TCP when absent, and also when unknown (validation rejects unknown ones).
    pub fn protocol(&self) -> Protocol {
        match self.protocol.as_deref() {
            None | Some("") => Protocol::Tcp,
            Some(p) => Protocol::parse(p).unwrap_or(Protocol::Tcp),
        }
    }

    /// True for HTTP, HTTP2, GRPC and GRPC-Web ports.
    pub fn is_http(&self) -> bool {
        self.protocol().is_http()
    }

    /// True for ports whose upstream speaks HTTP/2 (HTTP2, GRPC, GRPC-Web).
    pub fn is_http2(&self) -> bool {
        self.protocol().is_http2()
    }

    /// The port on the endpoints: `targetPort` if set, else `number`.
    pub fn effective_target_port(&self) -> u32 {
        self.target_port.filter(|p| *p != 0).unwrap_or(self.number)
    }
}

impl Validate for ServicePort {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check(&path.field("name"), errors, validate_port_name(&self.name));
        if let Some(p) = self.protocol.as_deref()
            && !p.is_empty()
            && Protocol::parse(p).is_none()
        {
            path.field("protocol").push(
                errors,
                format!("unsupported protocol: \"{p}\" (use one of HTTP, HTTPS, GRPC, GRPC-Web, HTTP2, HTTP_PROXY, MONGO, MYSQL, REDIS, TCP, TLS, UDP)"),
            );
        }
        for (field, port) in [
            ("number", Some(self.number)),
            ("targetPort", self.target_port),
        ] {
            if let Some(port) = port
                && !(1..=65535).contains(&port)
            {
                path.field(field)
                    .push(errors, format!("port must be between 1-65535, got {port}"));
            }
        }
    }
}

/// A port protocol Istio understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.1 (or h2c, sniffed).
    Http,
    /// HTTP to a forward proxy (`HTTP_PROXY`; Istio treats it as HTTP).
    HttpProxy,
    /// HTTPS (TLS, not terminated by the sidecar).
    Https,
    /// gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web.
    GrpcWeb,
    /// HTTP/2.
    Http2,
    /// MongoDB.
    Mongo,
    /// MySQL.
    Mysql,
    /// Redis.
    Redis,
    /// Opaque TCP.
    Tcp,
    /// TLS (SNI routing).
    Tls,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Parses a protocol name, ignoring case (`http`, `HTTP2`, `grpc-web`, ...). `None` if unknown.
    pub fn parse(s: &str) -> Option<Protocol> {
        let p = match s.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http_proxy" => Protocol::HttpProxy,
            "https" => Protocol::Https,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "http2" => Protocol::Http2,
            "mongo" => Protocol::Mongo,
            "mysql" => Protocol::Mysql,
            "redis" => Protocol::Redis,
            "tcp" => Protocol::Tcp,
            "tls" => Protocol::Tls,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(p)
    }

    /// Istio's canonical name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::HttpProxy => "HTTP_PROXY",
            Protocol::Https => "HTTPS",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Http2 => "HTTP2",
            Protocol::Mongo => "Mongo",
            Protocol::Mysql => "MySQL",
            Protocol::Redis => "Redis",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Udp => "UDP",
        }
    }

    /// HTTP family: HTTP, HTTP2, GRPC, GRPC-Web.
    pub fn is_http(&self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::HttpProxy
                | Protocol::Http2
                | Protocol::Grpc
                | Protocol::GrpcWeb
        )
    }

    /// Upstream speaks HTTP/2: HTTP2, GRPC, GRPC-Web (as in Istio's `IsHTTP2`).
    pub fn is_http2(&self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    }

    /// TLS family: HTTPS, TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// Opaque TCP-level protocols (TCP, HTTPS, TLS, Mongo, MySQL, Redis).
    pub fn is_tcp(&self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Mysql
                | Protocol::Redis
        )
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        let se: ServiceEntry = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        se.validate(&Path::root("spec"), &mut errs);
        errs
    }

    fn assert_ok(yaml: &str) {
        let errs = errors_of(yaml);
        assert!(errs.is_empty(), "unexpected errors: {errs:?}");
    }

    fn assert_err(yaml: &str, path: &str, contains: &str) {
        let errs = errors_of(yaml);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(contains)),
            "expected {path}: ..{contains}.. in {errs:#?}"
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("http"), Some(Protocol::Http));
        assert_eq!(Protocol::parse("GRPC-Web"), Some(Protocol::GrpcWeb));
        assert_eq!(Protocol::parse("Mongo"), Some(Protocol::Mongo));
        assert_eq!(Protocol::parse("SMTP"), None);
        let p = ServicePort {
            number: 80,
            name: "x".into(),
            ..Default::default()
        };
        assert_eq!(p.protocol(), Protocol::Tcp);
        let p = ServicePort {
            number: 80,
            name: "x".into(),
            protocol: Some("grpc".into()),
            target_port: None,
        };
        assert!(p.is_http() && p.is_http2());
        assert!(Protocol::Http.is_http() && !Protocol::Http.is_http2());
    }

    #[test]
    fn rules() {
        assert_ok(
            "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS",
        );
        assert_err(
            "ports: [{number: 80, name: http}]",
            "spec.hosts",
            "at least one host",
        );
        assert_err(
            "hosts: ['*']\nports: [{number: 80, name: http}]",
            "spec.hosts[0]",
            "hostname cannot be wildcard",
        );
        // Istio accepts a service entry without ports.
        assert_ok("hosts: [a.com]");
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}, {number: 80, name: http}]",
            "spec.ports[1].name",
            "already defined",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}, {number: 80, name: http2}]",
            "spec.ports[1].number",
            "port number cannot be duplicated",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http, protocol: SMTP}]",
            "spec.ports[0].protocol",
            "unsupported protocol",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 0, name: http}]",
            "spec.ports[0].number",
            "port must be between 1-65535",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: Http_1}]",
            "spec.ports[0].name",
            "invalid port name",
        );
        // Istio accepts STATIC without endpoints (endpoints may come from WorkloadEntries).
        assert_ok("hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC");
        assert_ok(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nworkloadSelector: {labels: {app: a}}",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nworkloadSelector: {labels: {app: a}}\nendpoints: [{address: 1.1.1.1}]",
            "spec",
            "only one of WorkloadSelector or Endpoints can be set",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints: [{address: foo.com}]",
            "spec.endpoints[0].address",
            "not a valid IP",
        );
        assert_ok(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints: [{address: 'unix:///var/run/a.sock'}]",
        );
        assert_err(
            "hosts: ['*.a.com']\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS",
            "spec.hosts[0]",
            "hosts must be FQDN",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints: [{address: 1.1.1.1, ports: {https: 443}}]",
            "spec.endpoints[0].ports[https]",
            "not defined by the service entry",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: DNS\nendpoints: [{address: 1.1.1.1, ports: {https: 443}}]",
            "spec.endpoints[0].ports[https]",
            "not defined by the service entry",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nendpoints: [{address: 1.1.1.1}]",
            "spec.endpoints",
            "NONE mode cannot set endpoints",
        );
        assert_err(
            "hosts: [a.com]\naddresses: [10.0.0.0/8]\nports: [{number: 80, name: http}]\nresolution: DNS",
            "spec.addresses",
            "CIDR",
        );
        assert_err(
            "hosts: [a.com]\naddresses: [nope]\nports: [{number: 80, name: http}]",
            "spec.addresses[0]",
            "not a valid",
        );
        assert_err(
            "hosts: [a.com, b.com]\nports: [{number: 80, name: tcp, protocol: TCP}]\nresolution: DNS",
            "spec.ports[0]",
            "multiple hosts",
        );
        assert_err(
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: DNS_ROUND_ROBIN\nendpoints: [{address: a.com}, {address: b.com}]",
            "spec.endpoints",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        );
        assert_ok("hosts: [a.com]\nports: [{number: 80, name: http}]\nexportTo: ['~']");
    }
}
