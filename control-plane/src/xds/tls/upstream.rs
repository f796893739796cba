//! TLS of outbound clusters, as istiod's `buildUpstreamTLSSettings` and auto mTLS:
//!
//! - no DestinationRule `tls` for the port (after Istio's merge of the rule, its port-level
//!   settings, the subset and its port-level settings): **auto mTLS**, a transport socket
//!   match per endpoint kind: `tlsMode-istio` (endpoints marked `{tlsMode: istio}`) gets mesh
//!   mTLS, `tlsMode-disabled` (every other endpoint) plaintext. When the service's namespace
//!   (or the mesh) is `DISABLE` by PeerAuthentication, nothing: plaintext to every endpoint
//!   (Istio's `BestEffortInferServiceMTLSMode`);
//! - `DISABLE`: no transport socket; `ISTIO_MUTUAL`: mesh mTLS to every endpoint;
//! - `SIMPLE` / `MUTUAL`: TLS with the rule's files (`caCertificates`, absent: the system
//!   roots; `clientCertificate`/`privateKey` for MUTUAL), `insecureSkipVerify` without any
//!   validation. `credentialName` and `caCrl` are reported by [`crate::unsupported`].
//!
//! Mesh mTLS presents the SDS secret `default`, verifies the server against `ROOTCA` and the
//! service's identities (its endpoints' service accounts and the ServiceEntry's
//! `subjectAltNames`; none known: any identity of the trust bundle), sends Istio's SNI
//! `outbound_.<port>_.<subset>_.<host>` and the ALPN `istio-peer-exchange`, `istio`.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, TlsCertificate, UpstreamTlsContext,
    common_tls_context,
};
use envoy_types::pb::google::protobuf::Struct;
use weft_api::networking::{ClientTlsSettings, Subset, TlsMode, TrafficPolicy};

use super::{
    RAW_BUFFER_TRANSPORT_SOCKET, ROOTCA_SECRET, TLS_TRANSPORT_SOCKET, WORKLOAD_SECRET,
    mesh_tls_params, san_matchers, sds, tls_mode_istio, transport_socket,
};
use crate::model::security::MtlsMode;
use crate::model::{DestinationRuleEntry, Model};
use crate::service::{Service, ServicePort};
use crate::xds::pack;

/// The name of the transport socket match of endpoints with a sidecar.
pub const MATCH_ISTIO: &str = "tlsMode-istio";
/// The name of the transport socket match of every other endpoint.
pub const MATCH_DISABLED: &str = "tlsMode-disabled";
/// The ALPN of mesh mTLS towards a sidecar (Istio's `ALPNInMeshWithMxc`).
pub const MESH_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];

/// The transport security of one outbound cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamTls {
    /// Plaintext to every endpoint.
    Plaintext,
    /// Auto mTLS: `Cluster.transport_socket_matches`.
    Auto(Vec<cluster::TransportSocketMatch>),
    /// Mesh mTLS (`ISTIO_MUTUAL`): one `Cluster.transport_socket` for every endpoint.
    Mesh(TransportSocket),
    /// One `Cluster.transport_socket` for every endpoint (SIMPLE, MUTUAL).
    Socket(TransportSocket),
}

impl UpstreamTls {
    /// Whether some endpoint may get mesh mTLS (auto mTLS, or `ISTIO_MUTUAL`): the cluster
    /// then takes Istio's metadata exchange filter.
    pub fn is_mesh(&self) -> bool {
        match self {
            UpstreamTls::Plaintext | UpstreamTls::Socket(_) => false,
            UpstreamTls::Auto(_) | UpstreamTls::Mesh(_) => true,
        }
    }

    /// Sets the cluster's `transport_socket` or `transport_socket_matches`.
    pub fn apply(self, cluster: &mut Cluster) {
        match self {
            UpstreamTls::Plaintext => {}
            UpstreamTls::Auto(matches) => cluster.transport_socket_matches = matches,
            UpstreamTls::Mesh(socket) | UpstreamTls::Socket(socket) => {
                cluster.transport_socket = Some(socket);
            }
        }
    }
}

/// The transport security of the cluster of `service`'s `port` (and `subset`).
pub fn upstream_tls(
    model: &Model,
    service: &Service,
    port: &ServicePort,
    rule: Option<&DestinationRuleEntry>,
    subset: Option<&Subset>,
) -> UpstreamTls {
    let subset_name = subset.map_or("", |subset| subset.name.as_str());
    let sni = || istio_sni(port.number, subset_name, &service.hostname);
    let Some(tls) = client_tls(rule, subset, port.number) else {
        if model.namespace_mtls_mode(&service.namespace) == MtlsMode::Disable {
            return UpstreamTls::Plaintext;
        }
        let mesh = istio_mutual(sni(), service_sans(service));
        return UpstreamTls::Auto(vec![
            cluster::TransportSocketMatch {
                name: MATCH_ISTIO.to_string(),
                r#match: Some(tls_mode_istio()),
                transport_socket: Some(mesh),
            },
            cluster::TransportSocketMatch {
                name: MATCH_DISABLED.to_string(),
                r#match: Some(Struct::default()),
                transport_socket: Some(plaintext()),
            },
        ]);
    };
    match tls.mode {
        TlsMode::Disable => UpstreamTls::Plaintext,
        TlsMode::IstioMutual => {
            let sni = tls
                .sni
                .clone()
                .filter(|sni| !sni.is_empty())
                .unwrap_or_else(sni);
            let sans = if tls.subject_alt_names.is_empty() {
                service_sans(service)
            } else {
                &tls.subject_alt_names
            };
            UpstreamTls::Mesh(istio_mutual(sni, sans))
        }
        TlsMode::Simple | TlsMode::Mutual => UpstreamTls::Socket(files(tls, port.is_http2())),
    }
}

/// The client TLS settings of a port, merged as Istio's `MergeSubsetTrafficPolicy`: the rule's
/// `tls`, replaced by its port-level settings for the port (even without `tls`: port-level
/// settings do not inherit), then by the subset's `tls`, or its port-level settings for the
/// port (the same way). `None`: no TLS settings (auto mTLS).
pub fn client_tls<'a>(
    rule: Option<&'a DestinationRuleEntry>,
    subset: Option<&'a Subset>,
    port: u32,
) -> Option<&'a ClientTlsSettings> {
    let mut tls = None;
    if let Some(policy) = rule.and_then(|rule| rule.spec.traffic_policy.as_ref()) {
        tls = level_tls(policy, port).unwrap_or(policy.tls.as_ref());
    }
    if let Some(policy) = subset.and_then(|subset| subset.traffic_policy.as_ref()) {
        match level_tls(policy, port) {
            Some(level) => tls = level,
            None if policy.tls.is_some() => tls = policy.tls.as_ref(),
            None => {}
        }
    }
    tls
}

/// The `tls` of the port-level settings of `port`, if the policy has settings for it.
fn level_tls(policy: &TrafficPolicy, port: u32) -> Option<Option<&ClientTlsSettings>> {
    policy
        .port_level_settings
        .iter()
        .find(|level| level.port.as_ref().is_some_and(|p| p.number == port))
        .map(|level| level.tls.as_ref())
}

/// Istio's SNI of an outbound cluster (`BuildDNSSrvSubsetKey`):
/// `outbound_.<port>_.<subset>_.<host>`.
pub fn istio_sni(port: u32, subset: &str, hostname: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{hostname}")
}

/// The identities a service's servers may present (ServiceEntry `subjectAltNames`, the SPIFFE
/// IDs of its endpoints' service accounts, a Kubernetes Service's annotations). None known:
/// any identity of the trust bundle is accepted.
pub fn service_sans(service: &Service) -> &[String] {
    &service.subject_alt_names
}

/// Mesh mTLS: the workload certificate, the trust bundle and `sans`, TLS 1.3.
pub fn istio_mutual(sni: String, sans: &[String]) -> TransportSocket {
    let context = UpstreamTlsContext {
        sni,
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(mesh_tls_params()),
            alpn_protocols: MESH_ALPN.iter().map(ToString::to_string).collect(),
            tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_SECRET)],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::CombinedValidationContext(
                    common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            match_typed_subject_alt_names: san_matchers(sans),
                            ..Default::default()
                        }),
                        validation_context_sds_secret_config: Some(sds(ROOTCA_SECRET)),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    transport_socket(TLS_TRANSPORT_SOCKET, pack(&context))
}

/// The plaintext transport socket.
pub fn plaintext() -> TransportSocket {
    transport_socket(RAW_BUFFER_TRANSPORT_SOCKET, pack(&RawBuffer::default()))
}

/// SIMPLE or MUTUAL TLS with the rule's files. `h2` is offered by ALPN on HTTP/2 ports, as
/// Istio does.
fn files(tls: &ClientTlsSettings, http2: bool) -> TransportSocket {
    let file = |path: &str| DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let validation = (tls.insecure_skip_verify != Some(true)).then(|| {
        common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
            trusted_ca: non_empty(&tls.ca_certificates).map(|path| file(&path)),
            match_typed_subject_alt_names: san_matchers(&tls.subject_alt_names),
            ..Default::default()
        })
    });
    let tls_certificates = match (
        tls.mode,
        non_empty(&tls.client_certificate),
        non_empty(&tls.private_key),
    ) {
        (TlsMode::Mutual, Some(chain), Some(key)) => vec![TlsCertificate {
            certificate_chain: Some(file(&chain)),
            private_key: Some(file(&key)),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    let context = UpstreamTlsContext {
        sni: tls.sni.clone().unwrap_or_default(),
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: if http2 {
                vec!["h2".to_string()]
            } else {
                Vec::new()
            },
            tls_certificates,
            validation_context_type: validation,
            ..Default::default()
        }),
        ..Default::default()
    };
    transport_socket(TLS_TRANSPORT_SOCKET, pack(&context))
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
