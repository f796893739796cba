//! `virtualInbound` in the capture shape: for every port the workload serves
//! ([`super::inbound_ports`]), the chains of the port's PeerAuthentication mode, each with the
//! port's network filters; then the passthrough for ports no service declares, by the
//! workload's mode.
//!
//! ```text
//! virtualInbound-blackhole {port: 15006}                          → tcp_proxy BlackHoleCluster
//! 0.0.0.0_P  STRICT      {port: P, tls}        (TLS socket)
//!            PERMISSIVE  {port: P, tls} (TLS socket), {port: P, raw_buffer}
//!            DISABLE     {port: P}
//!   HTTP P:       HCM (jwt, rbac, local_ratelimit of P, router), RDS inbound|P||
//!   TCP P:        [istio.metadata_exchange (tls chains)] [network rbac] tcp_proxy inbound|P||
//!   undeclared P: each chain twice: +ALPN (istio-http/* on tls, http/1.x|h2c plaintext) → HCM,
//!                 and as is → [network rbac] tcp_proxy
//! passthrough    STRICT InboundPassthroughFilterChain-tls {tls} │ PERMISSIVE + -raw_buffer
//!                DISABLE default chain InboundPassthroughFilterChain
//!                → [istio.metadata_exchange (tls)] [network rbac] tcp_proxy InboundPassthroughCluster
//! metadata weft.mtls = the workload's mode and deciding policy
//! ```
//!
//! A STRICT port of a DISABLE workload also gets `{port: P, raw_buffer}` → BlackHoleCluster, so
//! that plaintext to it never falls back to the default (passthrough) chain.

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use weft_xds::contract::{
    BLACKHOLE_CLUSTER, HTTP_APPLICATION_PROTOCOLS, INBOUND_PASSTHROUGH_CLUSTER, ISTIO_HTTP_ALPNS,
    TRANSPORT_PROTOCOL_RAW_BUFFER, TRANSPORT_PROTOCOL_TLS,
};

use super::{Chains, capture_listener, chain, inbound_ports, port_match, tcp_proxy};
use crate::model::Model;
use crate::model::security::MtlsMode;
use crate::service::PortKind;
use crate::xds::listeners::{VIRTUAL_INBOUND, http_connection_manager};
use crate::xds::ratelimit::inbound_rate_limit_filters;
use crate::xds::security::{inbound_http_filters, tcp::network_rbac_filters};
use crate::xds::tls::inbound::{downstream_tls_socket, mtls_metadata};
use crate::xds::{Proxy, inbound_port_name, metadata_exchange};

/// The name of the loop guard chain (traffic addressed to the inbound port itself).
pub const BLACKHOLE_CHAIN: &str = "virtualInbound-blackhole";
/// The name of the passthrough chains (ports no service declares); the TLS and plaintext chains
/// add `-tls` / `-raw_buffer`.
pub const PASSTHROUGH_CHAIN: &str = "InboundPassthroughFilterChain";

/// How a filter chain expects connections to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Mutual TLS (`transport_protocol: tls`, the downstream TLS socket).
    Tls,
    /// Plaintext, told from TLS by the TLS inspector (`raw_buffer`).
    Plaintext,
    /// Whatever arrives (no transport match, no TLS socket).
    Any,
}

impl Transport {
    /// The transports of an mTLS mode.
    fn of(mode: MtlsMode) -> &'static [Transport] {
        match mode {
            MtlsMode::Strict => &[Transport::Tls],
            MtlsMode::Permissive => &[Transport::Tls, Transport::Plaintext],
            MtlsMode::Disable => &[Transport::Any],
        }
    }

    fn matching(self, port: Option<u32>) -> FilterChainMatch {
        let base = port.map(port_match).unwrap_or_default();
        FilterChainMatch {
            transport_protocol: match self {
                Transport::Tls => TRANSPORT_PROTOCOL_TLS,
                Transport::Plaintext => TRANSPORT_PROTOCOL_RAW_BUFFER,
                Transport::Any => "",
            }
            .to_string(),
            ..base
        }
    }

    /// The ALPN values of HTTP on a chain of this transport (an undeclared port's HTTP chain).
    fn http_protocols(self) -> Vec<String> {
        let protocols: &[&str] = match self {
            Transport::Tls => &ISTIO_HTTP_ALPNS,
            Transport::Plaintext | Transport::Any => &HTTP_APPLICATION_PROTOCOLS,
        };
        protocols.iter().map(ToString::to_string).collect()
    }

    /// `chain` with the TLS socket on a TLS chain.
    fn secure(self, chain: FilterChain) -> FilterChain {
        match self {
            Transport::Tls => FilterChain {
                transport_socket: Some(downstream_tls_socket()),
                ..chain
            },
            Transport::Plaintext | Transport::Any => chain,
        }
    }
}

/// The inbound listener of a capturing proxy.
pub fn listener(model: &Model, proxy: &Proxy) -> Listener {
    let workload = model.mtls_mode_for(&proxy.namespace, &proxy.labels, None);
    let rbac = network_rbac_filters(model, proxy);
    let http_filters = inbound_http_filters(model, proxy);
    // Istio's metadata exchange on the chains that accept mutual TLS, before the rest.
    let tcp = |cluster: &str, transport: Transport| {
        let mut filters: Vec<Filter> = Vec::new();
        if transport == Transport::Tls {
            filters.push(metadata_exchange::listener_filter());
        }
        filters.extend(rbac.iter().cloned());
        filters.push(tcp_proxy(cluster));
        filters
    };

    let mut chains = Chains::default();
    chains.push(chain(
        BLACKHOLE_CHAIN,
        port_match(u32::from(proxy.inbound_port)),
        vec![tcp_proxy(BLACKHOLE_CLUSTER)],
    ));
    for (port, kind) in inbound_ports(model, proxy) {
        let name = format!("0.0.0.0_{port}");
        let cluster = inbound_port_name(port);
        let mut port_filters = http_filters.clone();
        port_filters.extend(inbound_rate_limit_filters(model, proxy, port));
        let http = || {
            vec![http_connection_manager(
                model,
                VIRTUAL_INBOUND,
                &cluster,
                port_filters.clone(),
            )]
        };
        let mode = model
            .mtls_mode_for(&proxy.namespace, &proxy.labels, Some(port))
            .mode;
        for &transport in Transport::of(mode) {
            let matching = transport.matching(Some(port));
            if kind == PortKind::Undeclared {
                let sniffed = FilterChainMatch {
                    application_protocols: transport.http_protocols(),
                    ..matching.clone()
                };
                chains.push(transport.secure(chain(&name, sniffed, http())));
            }
            let filters = match kind {
                PortKind::Http => http(),
                PortKind::Tcp | PortKind::Undeclared => tcp(&cluster, transport),
            };
            chains.push(transport.secure(chain(&name, matching, filters)));
        }
        if workload.mode == MtlsMode::Disable && mode == MtlsMode::Strict {
            chains.push(chain(
                &format!("{name}-plaintext-refused"),
                Transport::Plaintext.matching(Some(port)),
                vec![tcp_proxy(BLACKHOLE_CLUSTER)],
            ));
        }
    }

    let mut default_filter_chain = None;
    match workload.mode {
        MtlsMode::Strict | MtlsMode::Permissive => {
            for &transport in Transport::of(workload.mode) {
                let matching = transport.matching(None);
                let name = format!("{PASSTHROUGH_CHAIN}-{}", matching.transport_protocol);
                chains.push(transport.secure(chain(
                    &name,
                    matching,
                    tcp(INBOUND_PASSTHROUGH_CLUSTER, transport),
                )));
            }
        }
        MtlsMode::Disable => {
            default_filter_chain = Some(FilterChain {
                name: PASSTHROUGH_CHAIN.to_string(),
                filters: tcp(INBOUND_PASSTHROUGH_CLUSTER, Transport::Any),
                ..Default::default()
            });
        }
    }

    Listener {
        filter_chains: chains.into_vec(),
        default_filter_chain,
        metadata: Some(mtls_metadata(&workload)),
        ..capture_listener(model, VIRTUAL_INBOUND, proxy.inbound_port)
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
