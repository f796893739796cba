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
    /// Port number (required; 0 with a `unix://` bind).
    pub number: u32,
    /// Protocol (`HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `MONGO`, `TCP`, `TLS`; required).
    pub protocol: String,
    /// Port name (required).
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
    /// Several secrets holding certificates (at most 2: an RSA and an ECDSA one).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub credential_names: Vec<String>,
    /// For mutual TLS, the secret or config map holding the CA certificates (takes precedence
    /// over the CA of `credentialName(s)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_credential_name: Option<String>,
    /// Certificate files (at most 2: an RSA and an ECDSA one), instead of `serverCertificate`
    /// and `privateKey`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tls_certificates: Vec<TlsCertificate>,
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
    /// Verify client certificates but accept the connection even when verification fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// One server certificate of `tlsCertificates`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file (hidden from Istio's docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}

fn is_set(o: &Option<String>) -> bool {
    o.as_deref().is_some_and(|s| !s.is_empty())
}

impl ServerTlsSettings {
    /// The CEL rules of Istio's CRD on a server's TLS settings: at most one of
    /// `credentialName`, `credentialNames` and `tlsCertificates` (as the rules are written,
    /// `credentialName` with `tlsCertificates` passes), and 1 or 2 items in the lists.
    fn validate_schema_rules(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let names = !self.credential_names.is_empty();
        let certs = !self.tls_certificates.is_empty();
        if certs && names {
            path.push(
                errors,
                "only one of credentialNames or tlsCertificates can be set",
            );
            path.push(
                errors,
                "only one of credentialName or tlsCertificates can be set",
            );
        }
        if self.credential_name.is_some() && names {
            path.push(
                errors,
                "only one of credentialName or credentialNames can be set",
            );
        }
        for (field, len) in [
            ("credentialNames", self.credential_names.len()),
            ("tlsCertificates", self.tls_certificates.len()),
        ] {
            if len > 2 {
                path.field(field)
                    .push(errors, format!("must have at most 2 items, got {len}"));
            }
        }
    }
}

impl Validate for ServerTlsSettings {
    /// Istio's `validateTLSOptions`, and the CRD's CEL rules.
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_schema_rules(path, errors);
        let cred_name = is_set(&self.credential_name);
        let cred_names = !self.credential_names.is_empty();
        let certs = !self.tls_certificates.is_empty();
        if self.mode == ServerTlsMode::IstioMutual {
            let single = [
                (
                    "serverCertificate",
                    is_set(&self.server_certificate),
                    "server certificate",
                ),
                ("privateKey", is_set(&self.private_key), "private key"),
                ("caCertificates", is_set(&self.ca_certificates), "CA bundle"),
                ("tlsCertificates", certs, "tlsCertificates"),
                ("credentialName", cred_name, "credentialName"),
                ("credentialNames", cred_names, "credentialNames"),
            ];
            for (field, set, what) in single {
                if set {
                    path.field(field).push(
                        errors,
                        format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                    );
                }
            }
            return;
        }
        let sources = [
            is_set(&self.server_certificate) && is_set(&self.private_key),
            cred_name,
            cred_names,
            certs,
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if sources > 1 {
            path.push(
                errors,
                "only one of credentialName, credentialNames, serverCertificate/privateKey or tlsCertificates should be specified",
            );
        }
        let terminating = matches!(
            self.mode,
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
        );
        if terminating && (cred_name || cred_names) {
            // Certificates come from the secrets; nothing else is required (or checked).
            return;
        }
        if terminating {
            let what = if self.mode == ServerTlsMode::Simple {
                "SIMPLE TLS"
            } else {
                "MUTUAL TLS"
            };
            if self.mode != ServerTlsMode::Simple && !is_set(&self.ca_certificates) {
                path.field("caCertificates")
                    .push(errors, format!("{what} requires a client CA bundle"));
            }
            let pairs: Vec<(Path, &Option<String>, &Option<String>)> = if certs {
                self.tls_certificates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            path.field("tlsCertificates").index(i),
                            &c.server_certificate,
                            &c.private_key,
                        )
                    })
                    .collect()
            } else {
                vec![(path.clone(), &self.server_certificate, &self.private_key)]
            };
            for (p, cert, key) in pairs {
                if !is_set(cert) {
                    p.field("serverCertificate")
                        .push(errors, format!("{what} requires a server certificate"));
                }
                if !is_set(key) {
                    p.field("privateKey")
                        .push(errors, format!("{what} requires a private key"));
                }
            }
        }
        if is_set(&self.ca_crl) {
            if cred_name {
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
            return validate_gateway_host_part(host);
        }
        return Err(format!("host \"{host}\" must be of form namespace/dnsName"));
    };
    if ns.is_empty() || name.is_empty() {
        return Err("config namespace and dnsName in host entry cannot be empty".into());
    }
    let ns_ok = ns == "*" || ns == "." || (!is_gateway && ns == "~") || is_istio_dns1123_label(ns);
    if !ns_ok {
        return Err(format!(
            "invalid namespace value \"{ns}\" in host \"{host}\""
        ));
    }
    if is_gateway {
        validate_gateway_host_part(name)
    } else {
        validate_wildcard_domain(name)
    }
}

/// The host of a gateway server (Istio's `validateSidecarOrGatewayHostnamePart`): `*`, or a
/// name with a dot (no short names), or an IP address; a wildcard only as the whole first
/// label (`*.example.com`, not `*example.com`).
fn validate_gateway_host_part(host: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    if host != "*" && !host.contains('.') {
        problems.push(format!(
            "short names (non FQDN) are not allowed: \"{host}\""
        ));
    }
    if let Err(e) = validate_wildcard_domain(host)
        && !is_ip(host)
    {
        problems.push(e);
    }
    if host.contains('*') && host != "*" && !host.starts_with("*.") {
        problems.push(format!("partial wildcard \"{host}\" not allowed"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
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
                        format!("invalid protocol \"{}\", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP, HTTPS, TLS", port.protocol),
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
            bp.push(errors, format!("\"{bind}\" is not a valid IP address"));
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
        // Istio does not check the selector's labels (a selector that matches no pod selects
        // nothing).
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

    #[test]
    fn tls_certificate_sources() {
        let server = |tls: &str| {
            format!(
                "servers: [{{port: {{number: 443, name: https, protocol: HTTPS}}, hosts: [a.example.com], tls: {tls}}}]"
            )
        };
        let paths = |tls: &str| -> Vec<String> {
            errors_of(&server(tls))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert!(paths("{mode: SIMPLE, credentialNames: [rsa, ecdsa]}").is_empty());
        assert!(
            paths("{mode: MUTUAL, credentialName: c, caCertCredentialName: ca, caCrl: /crl}")
                .is_empty()
        );
        assert!(
            paths("{mode: SIMPLE, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}")
                .is_empty()
        );
        let e = paths(
            "{mode: SIMPLE, credentialNames: [a], tlsCertificates: [{serverCertificate: /c}]}",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("only one of credentialNames or tlsCertificates can be set"));
        assert!(e[1].contains("only one of credentialName or tlsCertificates can be set"));
        let e = paths("{mode: SIMPLE, tlsCertificates: [{serverCertificate: /c}]}");
        assert_eq!(
            e,
            [
                "spec.servers[0].tls.tlsCertificates[0].privateKey: SIMPLE TLS requires a private key"
            ]
        );
        let e = paths("{mode: ISTIO_MUTUAL, credentialNames: [a]}");
        assert_eq!(
            e,
            [
                "spec.servers[0].tls.credentialNames: ISTIO_MUTUAL TLS cannot have associated credentialNames"
            ]
        );
        let e = paths("{mode: PASSTHROUGH, credentialName: c, caCrl: /crl}");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("spec.servers[0].tls.caCrl: CRL is not supported with credentialName")
        );
    }
}
