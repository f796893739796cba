//! How a listener's connections are secured: its filter chains (plaintext, TLS, or both told
//! apart by `tls_inspector`) → `ListenerTransport`. Every chain must carry the same
//! connection manager: what differs between them is only the transport.
//!
//! ```text
//!  [chain]                                   ─► Plaintext | Tls (STRICT)
//!  [chain{transport_protocol: "tls", TLS},   ─► Detect (PERMISSIVE): a ClientHello goes to TLS,
//!   chain{transport_protocol: "raw_buffer"}]     anything else is served in plaintext
//! ```

use std::mem::take;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::google::protobuf::value::Kind;

use super::tls::{DownstreamTls, downstream_socket};
use super::{Reason, invalid};
use weft_xds::contract::{MTLS_METADATA, TLS_INSPECTOR};

/// The transport of a listener's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerTransport {
    Plaintext,
    /// TLS only: a plaintext connection is refused (PeerAuthentication STRICT).
    Tls(DownstreamTls),
    /// TLS or plaintext, told apart by the first bytes (PERMISSIVE).
    Detect(DownstreamTls),
}

/// The mTLS mode and deciding policy the controller put in the listener's metadata (for logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsInfo {
    pub mode: String,
    pub policy: String,
}

/// Splits the filter chains into the one connection-manager chain (match and transport socket
/// removed) and the transport.
pub fn filter_chains(
    chains: Vec<lds::FilterChain>,
    listener_filters: Vec<lds::ListenerFilter>,
) -> Result<(lds::FilterChain, ListenerTransport), Reason> {
    let mut inspector = false;
    for (i, filter) in listener_filters.into_iter().enumerate() {
        if filter.name != TLS_INSPECTOR {
            return Err(Reason::UnsupportedValue {
                field: "listener_filters[].name",
                value: filter.name,
            });
        }
        if filter.filter_disabled.is_some() {
            return Err(Reason::Unsupported(format!(
                "listener_filters[{i}].filter_disabled"
            )));
        }
        inspector = true;
    }
    let mut parsed = Vec::new();
    for (i, mut chain) in chains.into_iter().enumerate() {
        let protocol = match chain.filter_chain_match.take() {
            None => Protocol::Any,
            Some(mut m) => {
                let protocol = match take(&mut m.transport_protocol).as_str() {
                    "" => Protocol::Any,
                    "tls" => Protocol::Tls,
                    "raw_buffer" => Protocol::Raw,
                    other => {
                        return Err(invalid(
                            format!("filter_chains[{i}].filter_chain_match.transport_protocol"),
                            format!("{other:?}: only \"tls\" and \"raw_buffer\" are supported"),
                        ));
                    }
                };
                if m != lds::FilterChainMatch::default() {
                    return Err(Reason::Unsupported(format!(
                        "filter_chains[{i}].filter_chain_match (only transport_protocol)"
                    )));
                }
                protocol
            }
        };
        let tls = match chain.transport_socket.take() {
            None => None,
            Some(socket) => downstream_socket(socket).map_err(|r| {
                invalid(
                    format!("filter_chains[{i}].transport_socket"),
                    r.to_string(),
                )
            })?,
        };
        if protocol != Protocol::Any && !inspector {
            return Err(invalid(
                format!("filter_chains[{i}].filter_chain_match.transport_protocol"),
                format!("needs the {TLS_INSPECTOR} listener filter"),
            ));
        }
        parsed.push((protocol, tls, chain));
    }
    let mut parsed = parsed.into_iter();
    match (parsed.next(), parsed.next(), parsed.next()) {
        (None, _, _) => Err(invalid(
            "filter_chains",
            "at least one filter chain is required",
        )),
        (Some((protocol, tls, chain)), None, _) => {
            let transport = match (protocol, tls) {
                (Protocol::Raw, Some(_)) => {
                    return Err(invalid(
                        "filter_chains[0]",
                        "a raw_buffer chain cannot have TLS",
                    ));
                }
                (_, None) => ListenerTransport::Plaintext,
                (_, Some(tls)) => ListenerTransport::Tls(tls),
            };
            Ok((chain, transport))
        }
        (Some(a), Some(b), None) => {
            let ((_, tls, tls_chain), (_, raw_tls, raw_chain)) = match (a.0, b.0) {
                (Protocol::Tls, Protocol::Raw) => (a, b),
                (Protocol::Raw, Protocol::Tls) => (b, a),
                _ => {
                    return Err(invalid(
                        "filter_chains",
                        "two chains must be one with transport_protocol \"tls\" and one with \"raw_buffer\"",
                    ));
                }
            };
            let Some(tls) = tls else {
                return Err(invalid(
                    "filter_chains",
                    "the \"tls\" chain needs a TLS transport socket",
                ));
            };
            if raw_tls.is_some() {
                return Err(invalid(
                    "filter_chains",
                    "the \"raw_buffer\" chain cannot have TLS",
                ));
            }
            if tls_chain.filters != raw_chain.filters {
                return Err(Reason::Unsupported(
                    "filter chains with different filters (the TLS and plaintext chains must carry the same connection manager)".into(),
                ));
            }
            Ok((tls_chain, ListenerTransport::Detect(tls)))
        }
        (Some(_), Some(_), Some(_)) => Err(invalid(
            "filter_chains",
            "at most two chains (TLS and plaintext) are supported",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Any,
    Tls,
    Raw,
}

/// The `weft.mtls` listener metadata, if any.
pub fn mtls_info(metadata: Option<&core::Metadata>) -> Option<MtlsInfo> {
    let fields = &metadata?.filter_metadata.get(MTLS_METADATA)?.fields;
    let text = |key: &str| match fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    Some(MtlsInfo {
        mode: text("mode"),
        policy: text("policy"),
    })
}
