//! The mutual-TLS mode of `virtualInbound` (PeerAuthentication, [`crate::model::security::
//! peer_authentication`]): which filter chains the listener has, each with the same HTTP
//! connection manager, and the mode and deciding policy in the listener's metadata:
//!
//! ```text
//!  STRICT      tls_inspector  [transport_protocol "tls": DownstreamTlsContext, client cert required]
//!  PERMISSIVE  tls_inspector  [tls chain as above] [transport_protocol "raw_buffer": plaintext]
//!  DISABLE     (none)         [plaintext chain without a match: every connection]
//!  metadata.filter_metadata["weft.mtls"] = {mode: "<MODE>", policy: "<namespace>/<name>" or ""}
//! ```
//!
//! [`pack_listener`] packs a listener with its metadata map written in key order, so the same
//! listener always has the same bytes (and version).

use envoy_types::pb::envoy::config::core::v3::{Metadata, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, common_tls_context,
};
use envoy_types::pb::google::protobuf::BoolValue;
use weft_xds::contract::{
    MTLS_METADATA, MTLS_METADATA_MODE, MTLS_METADATA_POLICY, TLS_INSPECTOR,
    TRANSPORT_PROTOCOL_RAW_BUFFER, TRANSPORT_PROTOCOL_TLS,
};

use super::{
    ROOTCA_SECRET, TLS_TRANSPORT_SOCKET, WORKLOAD_SECRET, mesh_tls_params, sds, string_struct,
    transport_socket,
};
use crate::model::Model;
use crate::model::security::{MtlsDecision, MtlsMode};
use crate::xds::{Proxy, pack};

/// The ALPN the inbound TLS chain offers (an HTTP connection manager behind it).
pub const INBOUND_ALPN: [&str; 2] = ["h2", "http/1.1"];

/// `listener` (one filter chain with the connection manager) with the chains, listener
/// filter and metadata of the mTLS mode of `proxy`'s app port.
pub fn secure(model: &Model, proxy: &Proxy, app_port: u16, listener: Listener) -> Listener {
    let decision = model.mtls_mode_for(&proxy.namespace, &proxy.labels, Some(u32::from(app_port)));
    with_mode(listener, &decision)
}

/// `listener` with the chains, listener filter and metadata of `decision`; the filters of its
/// first chain go to every chain.
pub fn with_mode(mut listener: Listener, decision: &MtlsDecision) -> Listener {
    let filters = listener
        .filter_chains
        .first()
        .map(|chain| chain.filters.clone())
        .unwrap_or_default();
    let chain = |transport_protocol: &str| FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: transport_protocol.to_string(),
            ..Default::default()
        }),
        filters: filters.clone(),
        ..Default::default()
    };
    let mtls = FilterChain {
        transport_socket: Some(downstream_tls_socket()),
        ..chain(TRANSPORT_PROTOCOL_TLS)
    };
    let (chains, inspect) = match decision.mode {
        MtlsMode::Strict => (vec![mtls], true),
        MtlsMode::Permissive => (vec![mtls, chain(TRANSPORT_PROTOCOL_RAW_BUFFER)], true),
        // Without the TLS inspector there is no transport protocol to match on: one plaintext
        // chain for every connection.
        MtlsMode::Disable => (
            vec![FilterChain {
                filters: filters.clone(),
                ..Default::default()
            }],
            false,
        ),
    };
    listener.filter_chains = chains;
    listener.listener_filters = if inspect {
        vec![ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    listener.metadata = Some(mtls_metadata(decision));
    listener
}

/// The inbound listener's metadata: `weft.mtls` = `{mode, policy}` of `decision`.
pub fn mtls_metadata(decision: &MtlsDecision) -> Metadata {
    let policy = decision.policy_name();
    Metadata {
        filter_metadata: [(
            MTLS_METADATA.to_string(),
            string_struct(&[
                (MTLS_METADATA_MODE, decision.mode.as_str()),
                (MTLS_METADATA_POLICY, &policy),
            ]),
        )]
        .into(),
        ..Default::default()
    }
}

/// The transport socket of an inbound mutual-TLS filter chain ([`downstream_tls`]).
pub fn downstream_tls_socket() -> TransportSocket {
    transport_socket(TLS_TRANSPORT_SOCKET, pack(&downstream_tls()))
}

/// Mesh mTLS on the server side: the workload certificate, a client certificate of the
/// trust bundle required (any identity: AuthorizationPolicies decide who may do what), TLS 1.3.
pub fn downstream_tls() -> DownstreamTlsContext {
    DownstreamTlsContext {
        require_client_certificate: Some(BoolValue { value: true }),
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(mesh_tls_params()),
            alpn_protocols: INBOUND_ALPN.iter().map(ToString::to_string).collect(),
            tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_SECRET)],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::CombinedValidationContext(
                    common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext::default()),
                        validation_context_sds_secret_config: Some(sds(ROOTCA_SECRET)),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub use crate::xds::canonical::pack_listener;

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
