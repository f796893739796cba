//! `Sidecar` (networking.istio.io/v1): limits and tunes the listeners and reachable hosts of sidecar proxies.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Destination, WorkloadSelector};
use super::destination_rule::ConnectionPoolSettings;
use super::gateway::{ServerTlsMode, ServerTlsSettings};
use super::service_entry::Protocol;
use super::workload_entry::UNIX_ADDRESS_PREFIX;
use crate::de::null_default;
use crate::validation::{
    FieldError, Path, Validate, check, is_ip, is_istio_dns1123_label, validate_fqdn, validate_port,
    validate_port_name, validate_unix_address, validate_wildcard_domain,
};

/// Sidecar proxy configuration for a namespace or some workloads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Workloads this applies to (default: the whole namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Inbound listeners.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ingress: Vec<IstioIngressListener>,
    /// Outbound listeners and the hosts they can reach.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub egress: Vec<IstioEgressListener>,
    /// Inbound connection pool defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// What to do with traffic to unknown destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// A sidecar listener port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// Port number (0 for unix sockets).
    #[serde(default)]
    pub number: u32,
    /// Protocol.
    #[serde(default)]
    pub protocol: String,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Deprecated, has no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// Traffic capture mode of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    /// The environment's default.
    #[default]
    Default,
    /// iptables capture.
    Iptables,
    /// No capture.
    None,
}

/// An inbound listener.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    /// Port (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// Address to bind to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Capture mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<CaptureMode>,
    /// Where to forward (`127.0.0.1:port`, `0.0.0.0:port`, `[::1]:port`, `unix://...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// TLS termination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Connection pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// An outbound listener.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    /// Port; absent for the catch-all listener (which must be last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// Address to bind to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Capture mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<CaptureMode>,
    /// Reachable hosts, as `namespace/host` (`*/*`, `./*`, `ns/*.example.com`, ...).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
}

/// Outbound traffic policy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicyMode {
    /// Only registry services are reachable.
    RegistryOnly,
    /// Unknown destinations are passed through.
    AllowAny,
}

/// Outbound traffic policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Mode (default ALLOW_ANY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<OutboundTrafficPolicyMode>,
    /// Send unknown traffic to this proxy (ALLOW_ANY only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<Destination>,
}

fn validate_sidecar_port(port: &SidecarPort, path: &Path, errors: &mut Vec<FieldError>) {
    if !port.name.is_empty() {
        check(&path.field("name"), errors, validate_port_name(&port.name));
    }
    if !port.protocol.is_empty() && Protocol::parse(&port.protocol).is_none() {
        path.field("protocol").push(
            errors,
            format!(
                "unsupported protocol: {}",
                crate::de::quoted(&port.protocol)
            ),
        );
    }
    if port.target_port.is_some_and(|t| t > 0) {
        path.field("targetPort")
            .push(errors, "targetPort has no impact on Sidecars");
    }
}

fn validate_bind(bind: &str, path: &Path, errors: &mut Vec<FieldError>) {
    if !bind.is_empty() && !is_ip(bind) {
        path.push(
            errors,
            format!("{} is not a valid IP", crate::de::quoted(bind)),
        );
    }
}

/// An egress host, `namespace/dnsName` (Istio's `ValidateNamespaceSlashWildcardHostname` for
/// sidecars): the namespace `*`, `.`, `~` or a DNS label; the name `*` or a fully qualified
/// (dotted) host whose only wildcard is a leading `*.`.
fn validate_egress_host(host: &str) -> Result<(), String> {
    let Some((ns, name)) = host.split_once('/') else {
        return Err(format!(
            "host {} must be of form namespace/dnsName",
            crate::de::quoted(host)
        ));
    };
    let mut problems = Vec::new();
    if ns.is_empty() || name.is_empty() {
        problems.push("config namespace and dnsName in host entry cannot be empty".to_string());
    }
    if !matches!(ns, "*" | "." | "~") && !is_istio_dns1123_label(ns) {
        problems.push(format!(
            "invalid namespace value {} in sidecar",
            crate::de::quoted(ns)
        ));
    }
    if name != "*" && !name.contains('.') {
        problems.push(format!(
            "short names (non FQDN) are not allowed: {}",
            crate::de::quoted(name)
        ));
    }
    if let Err(e) = validate_wildcard_domain(name) {
        problems.push(e);
    }
    if name.contains('*') && name != "*" && !name.starts_with("*.") {
        problems.push(format!(
            "partial wildcard {} not allowed",
            crate::de::quoted(name)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Istio's YAML name of a server TLS mode.
fn mode_name(mode: ServerTlsMode) -> &'static str {
    match mode {
        ServerTlsMode::Passthrough => "PASSTHROUGH",
        ServerTlsMode::Simple => "SIMPLE",
        ServerTlsMode::Mutual => "MUTUAL",
        ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
        ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
        ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
    }
}

/// An ingress listener's `tls` (Istio's checks in `ValidateSidecar`, its `validateTLSOptions`
/// and the CRD's CEL rules, whose messages these carry).
fn validate_ingress_tls(
    tls: &ServerTlsSettings,
    port: &SidecarPort,
    tp: &Path,
    errors: &mut Vec<FieldError>,
) {
    let names = !tls.credential_names.is_empty();
    let certs = !tls.tls_certificates.is_empty();
    if names && certs {
        tp.push(
            errors,
            "only one of credentialNames or tlsCertificates can be set",
        );
        // Istio's third CEL rule checks the same pair under another message.
        tp.push(
            errors,
            "only one of credentialName or tlsCertificates can be set",
        );
    }
    if tls.credential_name.is_some() && names {
        tp.push(
            errors,
            "only one of credentialName or credentialNames can be set",
        );
    }
    for (field, n) in [
        ("credentialNames", tls.credential_names.len()),
        ("tlsCertificates", tls.tls_certificates.len()),
    ] {
        if n > 2 {
            tp.field(field)
                .push(errors, format!("must have at most 2 items, got {n}"));
        }
    }
    if !tls.subject_alt_names.is_empty() {
        tp.field("subjectAltNames")
            .push(errors, "subjectAltNames is not supported in ingress tls");
    }
    if tls.https_redirect {
        tp.field("httpsRedirect")
            .push(errors, "httpsRedirect is not supported");
    }
    if tls
        .credential_name
        .as_deref()
        .is_some_and(|c| !c.is_empty())
    {
        tp.field("credentialName")
            .push(errors, "credentialName is not currently supported");
    }
    if names {
        tp.field("credentialNames")
            .push(errors, "credentialNames is not currently supported");
    }
    if certs {
        tp.field("tlsCertificates")
            .push(errors, "tlsCertificates is not currently supported");
    }
    if matches!(
        tls.mode,
        ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough
    ) {
        tp.field("mode").push(
            errors,
            format!(
                "cannot set mode to {} in sidecar ingress tls",
                mode_name(tls.mode)
            ),
        );
    }
    if !matches!(
        Protocol::parse(&port.protocol),
        Some(Protocol::Https | Protocol::Tls)
    ) {
        tp.push(
            errors,
            format!(
                "server cannot have TLS settings for non HTTPS/TLS ports (protocol {})",
                crate::de::quoted(&port.protocol)
            ),
        );
    }
    tls.validate(tp, errors);
}

impl Sidecar {
    /// Validation that needs the object's namespace (for `./host` egress entries).
    pub fn validate_in_namespace(
        &self,
        _namespace: Option<&str>,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        self.workload_selector
            .validate(&path.field("workloadSelector"), errors);
        if self.egress.is_empty()
            && self.ingress.is_empty()
            && self.outbound_traffic_policy.is_none()
            && self.inbound_connection_pool.is_none()
        {
            path.push(errors, "sidecar: empty configuration provided");
            return;
        }
        let ip = path.field("ingress");
        let mut ports = BTreeSet::new();
        for (i, l) in self.ingress.iter().enumerate() {
            let p = ip.index(i);
            let Some(port) = &l.port else {
                p.field("port")
                    .push(errors, "port is required for ingress listeners");
                continue;
            };
            validate_sidecar_port(port, &p.field("port"), errors);
            check(
                &p.field("port").field("number"),
                errors,
                validate_port(port.number),
            );
            validate_bind(l.bind.as_deref().unwrap_or(""), &p.field("bind"), errors);
            if !ports.insert(port.number) {
                p.field("port")
                    .push(errors, "ports on IP bound listeners must be unique");
            }
            if let Some(ep) = l.default_endpoint.as_deref().filter(|e| !e.is_empty()) {
                let dp = p.field("defaultEndpoint");
                if let Some(sock) = ep.strip_prefix(UNIX_ADDRESS_PREFIX) {
                    check(&dp, errors, validate_unix_address(sock));
                } else {
                    match ep.rsplit_once(':') {
                        None => {
                            dp.push(errors, format!("defaultEndpoint {} is missing a port", crate::de::quoted(ep)))
                        }
                        Some((host, _)) if host.contains(':') && !host.starts_with('[') => dp
                            .push(
                                errors,
                                format!("defaultEndpoint {} has too many colons (write an IPv6 address as [::1]:port)", crate::de::quoted(ep)),
                            ),
                        Some((host, port)) => {
                            let host = host.trim_start_matches('[').trim_end_matches(']');
                            if !host.is_empty()
                                && !["127.0.0.1", "0.0.0.0", "::1", "::"].contains(&host)
                            {
                                dp.push(errors, "defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset");
                            }
                            match port.parse::<u32>() {
                                Ok(n) => check(&dp, errors, validate_port(n)),
                                Err(_) => dp.push(
                                    errors,
                                    format!("defaultEndpoint port ({port}) is not a number"),
                                ),
                            }
                        }
                    }
                }
            }
            if let Some(tls) = &l.tls {
                validate_ingress_tls(tls, port, &p.field("tls"), errors);
            }
            l.connection_pool
                .validate(&p.field("connectionPool"), errors);
        }
        self.inbound_connection_pool
            .validate(&path.field("inboundConnectionPool"), errors);

        let ep = path.field("egress");
        let mut ports = BTreeSet::new();
        let mut binds = BTreeSet::new();
        let mut catch_all = false;
        for (i, l) in self.egress.iter().enumerate() {
            let p = ep.index(i);
            match &l.port {
                None => {
                    if catch_all {
                        p.push(errors, "egress can have only one listener with empty port");
                    } else if i + 1 != self.egress.len() {
                        p.push(errors, "the egress listener with empty port should be the last listener in the list");
                    } else {
                        catch_all = true;
                    }
                }
                Some(port) => {
                    let pp = p.field("port");
                    validate_sidecar_port(port, &pp, errors);
                    let bind = l.bind.as_deref().unwrap_or("");
                    if port.number == 0 {
                        match bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
                            None => p.field("bind").push(
                                errors,
                                "ports with 0 value must have a unix domain socket bind address",
                            ),
                            Some(sock) => {
                                check(&p.field("bind"), errors, validate_unix_address(sock))
                            }
                        }
                        if !matches!(
                            l.capture_mode,
                            None | Some(CaptureMode::Default | CaptureMode::None)
                        ) {
                            p.field("captureMode").push(
                                errors,
                                "captureMode must be DEFAULT/NONE for unix domain socket listeners",
                            );
                        }
                        if !binds.insert(bind) {
                            p.field("bind").push(
                                errors,
                                "unix domain socket values for listeners must be unique",
                            );
                        }
                    } else {
                        check(&pp.field("number"), errors, validate_port(port.number));
                        validate_bind(bind, &p.field("bind"), errors);
                        if !ports.insert(port.number) {
                            pp.push(errors, "ports on IP bound listeners must be unique");
                        }
                    }
                }
            }
            let hp = p.field("hosts");
            if l.hosts.is_empty() {
                hp.push(errors, "egress listener must contain at least one host");
            }
            for (j, h) in l.hosts.iter().enumerate() {
                check(&hp.index(j), errors, validate_egress_host(h));
            }
        }
        if let Some(otp) = &self.outbound_traffic_policy
            && let Some(proxy) = &otp.egress_proxy
        {
            let pp = path.field("outboundTrafficPolicy").field("egressProxy");
            if otp.mode != Some(OutboundTrafficPolicyMode::AllowAny) {
                pp.push(
                    errors,
                    "egressProxy must be set only with ALLOW_ANY outbound traffic policy mode",
                );
            } else {
                check(&pp.field("host"), errors, validate_fqdn(&proxy.host));
                if proxy.port.is_none() {
                    pp.field("port")
                        .push(errors, "egressProxy port must be set");
                } else {
                    proxy.validate(&pp, errors);
                }
            }
        }
    }
}

impl Validate for Sidecar {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_in_namespace(None, path, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        let s: Sidecar = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        s.validate(&Path::root("spec"), &mut errs);
        errs
    }

    #[test]
    fn rules() {
        assert!(errors_of("egress: [{hosts: [./*, istio-system/*]}]").is_empty());
        assert!(errors_of("ingress: [{port: {number: 7071, protocol: HTTP, name: h}, defaultEndpoint: '127.0.0.1:17071'}]").is_empty());
        assert_eq!(errors_of("{}")[0].path, "spec");
        let e = errors_of("egress: [{hosts: [foo.com]}]");
        assert_eq!(e[0].path, "spec.egress[0].hosts[0]");
        let e = errors_of("egress: [{hosts: ['*/*']}, {hosts: ['*/*']}]");
        assert_eq!(e[0].path, "spec.egress[0]");
        let e = errors_of(
            "ingress: [{port: {number: 80, protocol: HTTP, name: h}, defaultEndpoint: '10.0.0.1:80'}]",
        );
        assert_eq!(e[0].path, "spec.ingress[0].defaultEndpoint");
    }
}
