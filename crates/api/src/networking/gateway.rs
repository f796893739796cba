//! `Gateway` (networking.istio.io/v1): listeners of an ingress/egress gateway, their hosts and TLS settings.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::service_entry::Protocol;
use super::workload_entry::UNIX_ADDRESS_PREFIX;
use crate::de::{is_false, null_default};
use crate::validation::{
    FieldError, Path, Validate, check, is_ip, is_istio_dns1123_label, validate_port,
    validate_unix_address, validate_wildcard_domain,
};

/// A load balancer at the edge of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Listeners.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub servers: Vec<Server>,
    /// Labels of the gateway pods this applies to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub selector: BTreeMap<String, String>,
}

/// One listener of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Port, protocol and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Address to bind to (IP or `unix://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Hosts exposed (`host` or `namespace/host`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Deprecated default endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// Server name (for stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A listener port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port number.
    #[serde(default)]
    pub number: u32,
    /// Protocol (`HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `MONGO`, `TCP`, `TLS`).
    #[serde(default)]
    pub protocol: String,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Deprecated, has no effect on gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

impl Port {
    /// The parsed protocol, if known.
    pub fn protocol(&self) -> Option<Protocol> {
        Protocol::parse(&self.protocol)
    }
}

/// Server-side TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Forward TLS as is, routing on SNI.
    #[default]
    Passthrough,
    /// Terminate TLS.
    Simple,
    /// Terminate TLS, require client certificates.
    Mutual,
    /// SNI-based passthrough for mTLS traffic (east-west).
    AutoPassthrough,
    /// Istio mTLS.
    IstioMutual,
    /// Terminate TLS, request client certificates.
    OptionalMutual,
}

/// TLS protocol version bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsProtocol {
    /// Envoy's default.
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}

/// Server-side TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect plain HTTP to HTTPS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_redirect: bool,
    /// TLS mode (default PASSTHROUGH).
    #[serde(default)]
    pub mode: ServerTlsMode,
    /// Server certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle for client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Certificate revocation list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// Secret holding the certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Several secrets holding certificates.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub credential_names: Vec<String>,
    /// Accepted client SANs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
    /// Accepted client SPKI hashes.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted client certificate hashes.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<TlsProtocol>,
    /// Maximum TLS version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<TlsProtocol>,
    /// Allowed cipher suites.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cipher_suites: Vec<String>,
    /// Server certificates and keys as files (up to two, e.g. RSA and ECDSA).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tls_certificates: Vec<TlsCertificate>,
    /// Secret holding only the CA certificate for client verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_credential_name: Option<String>,
    /// Skip verifying the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// A server certificate and key (`tls.tlsCertificates[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Server certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle for client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}

impl Validate for ServerTlsSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        let cred = set(&self.credential_name) || !self.credential_names.is_empty();
        match self.mode {
            ServerTlsMode::IstioMutual => {
                for (f, v, what) in [
                    (
                        "serverCertificate",
                        &self.server_certificate,
                        "server certificate",
                    ),
                    ("privateKey", &self.private_key, "private key"),
                    ("caCertificates", &self.ca_certificates, "CA bundle"),
                    ("credentialName", &self.credential_name, "credentialName"),
                ] {
                    if set(v) {
                        path.field(f).push(
                            errors,
                            format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                        );
                    }
                }
                return;
            }
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
                if cred => {}
            ServerTlsMode::Simple => {
                if !set(&self.server_certificate) {
                    path.field("serverCertificate")
                        .push(errors, "SIMPLE TLS requires a server certificate");
                }
                if !set(&self.private_key) {
                    path.field("privateKey")
                        .push(errors, "SIMPLE TLS requires a private key");
                }
            }
            ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
                if !set(&self.server_certificate) {
                    path.field("serverCertificate")
                        .push(errors, "MUTUAL TLS requires a server certificate");
                }
                if !set(&self.private_key) {
                    path.field("privateKey")
                        .push(errors, "MUTUAL TLS requires a private key");
                }
                if !set(&self.ca_certificates) {
                    path.field("caCertificates")
                        .push(errors, "MUTUAL TLS requires a client CA bundle");
                }
            }
            ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => {}
        }
        if set(&self.ca_crl) {
            if cred {
                path.field("caCrl").push(
                    errors,
                    "CRL is not supported with credentialName. CRL has to be specified in the credential",
                );
            }
            if self.mode == ServerTlsMode::Simple {
                path.field("caCrl")
                    .push(errors, "CRL is not supported with SIMPLE TLS");
            }
        }
    }
}

/// Validates `namespace/host` (or, for gateways, plain `host`) host entries.
pub(crate) fn validate_namespace_slash_host(host: &str, is_gateway: bool) -> Result<(), String> {
    let Some((ns, name)) = host.split_once('/') else {
        if is_gateway {
            return validate_wildcard_domain(host);
        }
        return Err(format!("host {host:?} must be of form namespace/dnsName"));
    };
    if ns.is_empty() || name.is_empty() {
        return Err("config namespace and dnsName in host entry cannot be empty".into());
    }
    let ns_ok = ns == "*" || ns == "." || (!is_gateway && ns == "~") || is_istio_dns1123_label(ns);
    if !ns_ok {
        return Err(format!("invalid namespace value {ns:?} in host {host:?}"));
    }
    validate_wildcard_domain(name)
}

impl Server {
    fn validate_server(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let hp = path.field("hosts");
        if self.hosts.is_empty() {
            hp.push(errors, "server config must contain at least one host");
        }
        for (i, h) in self.hosts.iter().enumerate() {
            check(&hp.index(i), errors, validate_namespace_slash_host(h, true));
        }
        let bind = self.bind.as_deref().unwrap_or("");
        let pp = path.field("port");
        let mut port_ok = false;
        match &self.port {
            None => pp.push(errors, "port is required"),
            Some(port) => {
                port_ok = true;
                if port.protocol().is_none() {
                    pp.field("protocol").push(
                        errors,
                        format!("invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP, HTTPS, TLS", port.protocol),
                    );
                    port_ok = false;
                }
                if (port.number > 0 || !bind.starts_with(UNIX_ADDRESS_PREFIX))
                    && let Err(e) = validate_port(port.number)
                {
                    pp.field("number").push(errors, e);
                    port_ok = false;
                }
                if port.target_port.is_some_and(|t| t > 0) {
                    pp.field("targetPort")
                        .push(errors, "targetPort has no impact on Gateways");
                }
                if port.name.is_empty() {
                    pp.field("name").push(errors, "port name must be set");
                    port_ok = false;
                }
            }
        }
        let bp = path.field("bind");
        if let Some(sock) = bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
            check(&bp, errors, validate_unix_address(sock));
            if self.port.as_ref().is_some_and(|p| p.number != 0) {
                bp.push(errors, "port number must be 0 for unix domain socket");
            }
        } else if !bind.is_empty() && !is_ip(bind) {
            bp.push(errors, format!("{bind:?} is not a valid IP address"));
        }
        self.tls.validate(&path.field("tls"), errors);
        if port_ok && let Some(p) = self.port.as_ref().and_then(Port::protocol) {
            if p.is_tls() && self.tls.is_none() {
                path.field("tls").push(
                    errors,
                    "server must have TLS settings for HTTPS/TLS protocols",
                );
            } else if !p.is_tls()
                && let Some(tls) = &self.tls
            {
                let certs = [
                    &tls.ca_certificates,
                    &tls.private_key,
                    &tls.server_certificate,
                ]
                .iter()
                .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()));
                let passthrough = matches!(
                    tls.mode,
                    ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                );
                if p.is_http() {
                    if !passthrough || certs {
                        path.field("tls").push(
                            errors,
                            "server cannot have TLS settings for plain text HTTP ports",
                        );
                    }
                } else {
                    path.field("tls").push(
                        errors,
                        "server cannot have TLS settings for non HTTPS/TLS ports",
                    );
                }
            }
        }
    }
}

impl Validate for Gateway {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let sp = path.field("servers");
        if self.servers.is_empty() {
            sp.push(errors, "gateway must have at least one server");
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let p = sp.index(i);
            s.validate_server(&p, errors);
            if let Some(port) = &s.port
                && !port.name.is_empty()
                && !names.insert(port.name.as_str())
            {
                p.field("port").field("name").push(
                    errors,
                    format!(
                        "port names in servers must be unique: duplicate name {}",
                        port.name
                    ),
                );
            }
        }
        crate::validation::check_labels(&path.field("selector"), errors, &self.selector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        let g: Gateway = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        g.validate(&Path::root("spec"), &mut errs);
        errs
    }

    #[test]
    fn rules() {
        assert!(errors_of("selector: {istio: ingressgateway}\nservers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}]").is_empty());
        assert!(errors_of("servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [ns/a.com], tls: {mode: SIMPLE, credentialName: c}}]").is_empty());
        let e = errors_of("servers: []");
        assert_eq!(e[0].path, "spec.servers");
        let e = errors_of(
            "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com]}]",
        );
        assert_eq!(e[0].path, "spec.servers[0].tls");
        let e = errors_of(
            "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], tls: {mode: SIMPLE}}]",
        );
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.servers[0].tls.serverCertificate",
                "spec.servers[0].tls.privateKey"
            ]
        );
        let e = errors_of(
            "servers: [{port: {number: 80, name: http, protocol: FOO}, hosts: []}, {port: {number: 81, name: http, protocol: HTTP}, hosts: ['bad/ns/x']}]",
        );
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.servers[0].hosts",
                "spec.servers[0].port.protocol",
                "spec.servers[1].hosts[0]",
                "spec.servers[1].port.name"
            ]
        );
    }
}
