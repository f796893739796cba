//! The capture shape: what a proxy whose pod's traffic iptables redirects (node metadata
//! `INTERCEPTION_MODE: REDIRECT`) gets instead of the explicit listeners. Connections arrive at
//! the outbound and inbound ports with their original destination restored by the
//! `original_dst` listener filter, and filter chains match on it:
//!
//! ```text
//! virtualOutbound 0.0.0.0:15001  [original_dst, tls_inspector, http_inspector]   (outbound)
//!   virtualOutbound-blackhole  :15001                           → tcp_proxy BlackHoleCluster
//!   0.0.0.0_P                  :P   (declared HTTP)             → HCM, RDS "P"
//!   A_P                        :P A (declared TCP)              → tcp_proxy outbound|P||host
//!   A_P  tls, server_names | ⊂A  :P A (VirtualService tls/tcp)    → tcp_proxy route (l4_routes)
//!   A_P  A_P                   :P A +ALPN http | :P A (undeclared) → HCM "P" | tcp_proxy
//!   default PassthroughFilterChain → tcp_proxy PassthroughCluster (ALLOW_ANY) | BlackHoleCluster
//! virtualInbound  0.0.0.0:15006  [original_dst, tls_inspector, http_inspector]   (inbound)
//!   virtualInbound-blackhole   :15006                           → tcp_proxy BlackHoleCluster
//!   0.0.0.0_P × mTLS mode (tls | raw_buffer | any) → HCM "inbound|P||" | [rbac] tcp_proxy inbound|P||
//!   InboundPassthroughFilterChain* → [rbac] tcp_proxy InboundPassthroughCluster
//! RDS "P": a virtual host per service on P (+ its addresses), then allow_any | block_all   (routes)
//! CDS: + PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster, inbound|P||      (clusters)
//! ```
//!
//! Outbound chains and routes cover the services the proxy's Sidecar lets it see; inbound
//! ports are those of the services whose endpoints are the proxy's instance IPs.

pub mod clusters;
pub mod inbound;
pub mod l4_routes;
pub mod outbound;
pub mod routes;

#[cfg(test)]
pub(crate) mod testing;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::UInt32Value;
use prost::Message;
use weft_xds::contract::{HTTP_INSPECTOR, ORIGINAL_DST, TCP_PROXY, TLS_INSPECTOR};

use super::listeners::socket;
use super::{Proxy, duration, pack};
use crate::model::Model;
use crate::model::security::Cidr;
use crate::service::PortKind;

/// The capture shape's listeners: `virtualOutbound`, then `virtualInbound`.
pub fn listeners(model: &Model, proxy: &Proxy) -> Vec<Listener> {
    vec![
        outbound::listener(model, proxy),
        inbound::listener(model, proxy),
    ]
}

/// The ports the workload serves, with what they carry: for every service endpoint at one of
/// the proxy's instance IPs, the endpoint's port of each service port it serves (its
/// `ports[<name>]`, else the port's `targetPort`, else its number). A declared protocol beats
/// an undeclared one; otherwise the first service by host name decides. UDP ports and the
/// inbound listener's own port are left out.
/// The services with an endpoint at the proxy's address (on `port` when given, as the
/// endpoint serves it), sorted by host: the services an inbound cluster serves, for its
/// metrics metadata ([`crate::xds::clusters::istio_metadata`]).
pub fn workload_services<'a>(
    model: &'a Model,
    proxy: &Proxy,
    port: Option<u32>,
) -> Vec<&'a crate::service::Service> {
    let instance_ips: Vec<IpAddr> = proxy
        .instance_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let mut services: Vec<_> = model
        .services
        .values()
        .filter(|service| {
            service.endpoints.iter().any(|endpoint| {
                let local = endpoint
                    .address
                    .parse::<IpAddr>()
                    .is_ok_and(|address| instance_ips.contains(&address));
                local
                    && port.is_none_or(|number| {
                        service
                            .ports
                            .iter()
                            .any(|p| endpoint.serves(p) && endpoint.port_for(p) == number)
                    })
            })
        })
        .collect();
    services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    services
}

pub fn inbound_ports(model: &Model, proxy: &Proxy) -> BTreeMap<u32, PortKind> {
    let instance_ips: Vec<IpAddr> = proxy
        .instance_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let mut ports = BTreeMap::new();
    for service in model.services.values() {
        for port in &service.ports {
            let Some(kind) = port.kind() else {
                continue;
            };
            for endpoint in &service.endpoints {
                let local = endpoint
                    .address
                    .parse::<IpAddr>()
                    .is_ok_and(|address| instance_ips.contains(&address));
                if !local || !endpoint.serves(port) {
                    continue;
                }
                let number = endpoint.port_for(port);
                if number == 0 || number > u32::from(u16::MAX) {
                    continue;
                }
                match ports.entry(number) {
                    Entry::Vacant(entry) => {
                        entry.insert(kind);
                    }
                    Entry::Occupied(mut entry) => {
                        if *entry.get() == PortKind::Undeclared && kind != PortKind::Undeclared {
                            entry.insert(kind);
                        }
                    }
                }
            }
        }
    }
    ports.remove(&u32::from(proxy.inbound_port));
    ports
}

/// A listener of the capture shape at `0.0.0.0:port`: the original destination restored, then
/// TLS and HTTP detected, for at most the protocol detection timeout.
fn capture_listener(model: &Model, name: &str, port: u16) -> Listener {
    let timeout = model.protocol_detection_timeout;
    Listener {
        name: name.to_string(),
        address: Some(socket("0.0.0.0", u32::from(port))),
        listener_filters: vec![
            listener_filter(ORIGINAL_DST, pack(&OriginalDst::default())),
            listener_filter(TLS_INSPECTOR, pack(&TlsInspector::default())),
            listener_filter(HTTP_INSPECTOR, pack(&HttpInspector::default())),
        ],
        // Always sent: unset is Envoy's 15 s, `0s` is no timeout (`--protocol-detection-timeout 0s`).
        listener_filters_timeout: Some(duration(timeout)),
        continue_on_listener_filters_timeout: true,
        ..Default::default()
    }
}

fn listener_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> ListenerFilter {
    ListenerFilter {
        name: name.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The TCP proxy filter to `cluster` (its stat prefix too), nothing else.
pub fn tcp_proxy(cluster: &str) -> Filter {
    tcp_proxy_idle(cluster, None)
}

/// [`tcp_proxy`] with the connection pool's `tcp.idleTimeout` (`None`: Envoy's 1 h).
pub fn tcp_proxy_idle(cluster: &str, idle: Option<std::time::Duration>) -> Filter {
    let config = TcpProxy {
        stat_prefix: cluster.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        idle_timeout: idle.map(super::duration),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&config))),
    }
}

/// A match on the destination port.
fn port_match(port: u32) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: Some(UInt32Value { value: port }),
        ..Default::default()
    }
}

/// An address (an IP, or a CIDR block as written) as a prefix range: an IP is a /32 or /128.
/// `None` when it is neither (validation rejects those).
pub fn cidr_range(address: &str) -> Option<CidrRange> {
    let cidr = Cidr::parse(address).ok()?;
    Some(CidrRange {
        address_prefix: cidr.address.to_string(),
        prefix_len: Some(UInt32Value {
            value: cidr.prefix_len,
        }),
    })
}

/// A named filter chain.
fn chain(name: &str, matching: FilterChainMatch, filters: Vec<Filter>) -> FilterChain {
    FilterChain {
        name: name.to_string(),
        filter_chain_match: Some(matching),
        filters,
        ..Default::default()
    }
}

/// Filter chains without two identical matches (Envoy rejects such a listener): the first one
/// with a match is kept.
#[derive(Debug, Default)]
struct Chains {
    chains: Vec<FilterChain>,
    matches: HashSet<Vec<u8>>,
}

impl Chains {
    /// Adds `chain` unless one with the same match is there.
    fn push(&mut self, chain: FilterChain) {
        let key = chain
            .filter_chain_match
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        if self.matches.insert(key) {
            self.chains.push(chain);
        }
    }

    fn into_vec(self) -> Vec<FilterChain> {
        self.chains
    }
}
