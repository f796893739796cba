//! Transport security in the generated resources, as istiod builds it: auto mTLS and
//! DestinationRule TLS on outbound clusters ([`upstream`]), the `tlsMode` marker of endpoints
//! that have a sidecar ([`endpoint_metadata`]), and the PeerAuthentication mode of the inbound
//! listener ([`inbound`]). The controller only names the SDS secrets (`default`, `ROOTCA`);
//! every proxy resolves them from its own workload certificate and trust bundle.
//!
//! ```text
//!  endpoint labels security.istio.io/tlsMode=istio ─► LbEndpoint metadata {tlsMode: istio}
//!  cluster  no DR tls ─► transport_socket_matches [tlsMode-istio: mesh mTLS, tlsMode-disabled: plaintext]
//!           DR tls    ─► transport_socket (ISTIO_MUTUAL / SIMPLE / MUTUAL) or none (DISABLE)
//!  virtualInbound     ─► STRICT: [tls] │ PERMISSIVE: [tls, raw_buffer] │ DISABLE: [raw_buffer]
//! ```

pub mod inbound;
pub mod upstream;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{Metadata, TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    SdsSecretConfig, SubjectAltNameMatcher, TlsParameters, subject_alt_name_matcher, tls_parameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value};
pub use weft_xds::contract::{
    RAW_BUFFER_TRANSPORT_SOCKET, ROOTCA_SECRET, TLS_MODE_ISTIO, TLS_MODE_KEY, TLS_TRANSPORT_SOCKET,
    TRANSPORT_SOCKET_MATCH, WORKLOAD_SECRET,
};

use super::ads_config_source;

/// The workload label Istio's injector puts on pods with a sidecar (`istio`), and that
/// WorkloadEntries and ServiceEntry endpoints carry in local mode.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// An SDS secret the proxy resolves itself, fetched "over ADS" as Istio names it.
pub fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads_config_source()),
    }
}

/// Mesh TLS is TLS 1.3 only.
pub fn mesh_tls_params() -> TlsParameters {
    TlsParameters {
        tls_minimum_protocol_version: tls_parameters::TlsProtocol::TlSv13 as i32,
        ..Default::default()
    }
}

/// A transport socket named `name` with `config`.
pub fn transport_socket(name: &str, config: Any) -> TransportSocket {
    TransportSocket {
        name: name.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

/// Exact matchers of subject alternative names: URI SANs for SPIFFE IDs (`spiffe://…`), DNS
/// SANs for anything else.
pub fn san_matchers(sans: &[String]) -> Vec<SubjectAltNameMatcher> {
    sans.iter()
        .map(|san| {
            let san_type = if san.starts_with("spiffe://") {
                subject_alt_name_matcher::SanType::Uri
            } else {
                subject_alt_name_matcher::SanType::Dns
            };
            SubjectAltNameMatcher {
                san_type: san_type as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(san.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// `{tlsMode: istio}`: what the `tlsMode-istio` transport socket match selects.
pub fn tls_mode_istio() -> Struct {
    string_struct(&[(TLS_MODE_KEY, TLS_MODE_ISTIO)])
}

/// The metadata of an endpoint whose workload has a sidecar (its labels say
/// `security.istio.io/tlsMode: istio`): `filter_metadata["envoy.transport_socket_match"] =
/// {tlsMode: istio}`, so auto-mTLS clusters talk mutual TLS to it. `None` otherwise.
pub fn endpoint_metadata(labels: &BTreeMap<String, String>) -> Option<Metadata> {
    (labels.get(TLS_MODE_LABEL).map(String::as_str) == Some(TLS_MODE_ISTIO)).then(|| Metadata {
        filter_metadata: [(TRANSPORT_SOCKET_MATCH.to_string(), tls_mode_istio())].into(),
        ..Default::default()
    })
}

/// A `Struct` of string values.
pub fn string_struct(fields: &[(&str, &str)]) -> Struct {
    Struct {
        fields: fields
            .iter()
            .map(|(key, text)| {
                (
                    key.to_string(),
                    Value {
                        kind: Some(value::Kind::StringValue(text.to_string())),
                    },
                )
            })
            .collect(),
    }
}
