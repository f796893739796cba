//! `virtualOutbound` in the capture shape: one filter chain per destination the proxy can tell
//! apart (port, address, HTTP or not), and a default chain for everything else.
//!
//! ```text
//! 1 virtualOutbound-blackhole  {port: 15001}                      → tcp_proxy BlackHoleCluster
//! 2 0.0.0.0_P   {port: P}               declared HTTP on P        → HCM, RDS "P"
//! 3 A_P         {port: P, A}            declared TCP, address A   → tcp_proxy outbound|P||host
//!   0.0.0.0_P   {port: P}               declared TCP, no address  (not when 2 has P)
//!   A_P         {port: P, A, SNI, tls}  a VirtualService's tls routes (TLS/HTTPS ports), then its
//!               {port: P, A ∩ subnets}  tcp routes, before or instead of the above (l4_routes)
//! 4 A_P         {port: P, A, ALPN http} undeclared, address A     → HCM, RDS "P"
//!   A_P         {port: P, A}                                      → tcp_proxy outbound|P||host
//!                                                                   (or the tcp routes, as 3)
//!   0.0.0.0_P   {port: P, ALPN http}    undeclared, no address    (not when 2 has P)
//! default PassthroughFilterChain → tcp_proxy PassthroughCluster (ALLOW_ANY) | BlackHoleCluster
//! ```
//!
//! Services in host name order: of two with the same match, the first keeps it (the model
//! warns about the other, [`crate::model`]).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use weft_xds::contract::{BLACKHOLE_CLUSTER, HTTP_APPLICATION_PROTOCOLS, PASSTHROUGH_CLUSTER};

use super::{Chains, capture_listener, chain, cidr_range, l4_routes, port_match, tcp_proxy};
use crate::model::{Model, OutboundTrafficPolicy};
use crate::service::{PortKind, Service};
use crate::xds::Proxy;
use crate::xds::listeners::{VIRTUAL_OUTBOUND, http_connection_manager};

/// The name of the loop guard chain (traffic addressed to the outbound port itself).
pub const BLACKHOLE_CHAIN: &str = "virtualOutbound-blackhole";
/// The name of the default chain (destinations no other chain matches).
pub const PASSTHROUGH_CHAIN: &str = "PassthroughFilterChain";

/// The outbound listener of a capturing proxy.
pub fn listener(model: &Model, proxy: &Proxy) -> Listener {
    let services: Vec<&Service> = model
        .services_for(&proxy.namespace, &proxy.labels)
        .collect();
    let http_ports = declared_http_ports(&services);
    let manager = |port: u32| {
        http_connection_manager(
            model,
            VIRTUAL_OUTBOUND,
            &port.to_string(),
            vec![
                crate::xds::route_cors::cors_filter(),
                crate::xds::route_policy::fault_filter(),
            ],
        )
    };

    let mut chains = Chains::default();
    chains.push(chain(
        BLACKHOLE_CHAIN,
        port_match(u32::from(proxy.outbound_port)),
        vec![tcp_proxy(BLACKHOLE_CLUSTER)],
    ));
    for &port in &http_ports {
        chains.push(chain(
            &format!("0.0.0.0_{port}"),
            port_match(port),
            vec![manager(port)],
        ));
    }
    for service in &services {
        for port in &service.ports {
            let number = port.number;
            // The service's own cluster, or its VirtualService's TLS and TCP routes.
            let tcp = |chains: &mut Chains, address: Option<&str>| {
                for chain in l4_routes::chains(model, proxy, service, port, address) {
                    chains.push(chain);
                }
            };
            match port.kind() {
                Some(PortKind::Tcp) if service.addresses.is_empty() => {
                    if !http_ports.contains(&number) {
                        tcp(&mut chains, None);
                    }
                }
                Some(PortKind::Tcp) => {
                    for address in &service.addresses {
                        tcp(&mut chains, Some(address));
                    }
                }
                Some(PortKind::Undeclared) if service.addresses.is_empty() => {
                    if !http_ports.contains(&number) {
                        chains.push(chain(
                            &format!("0.0.0.0_{number}"),
                            sniffed_http(port_match(number)),
                            vec![manager(number)],
                        ));
                    }
                }
                Some(PortKind::Undeclared) => {
                    for (address, matching) in address_matches(service, number) {
                        chains.push(chain(
                            &format!("{address}_{number}"),
                            sniffed_http(matching),
                            vec![manager(number)],
                        ));
                        tcp(&mut chains, Some(address));
                    }
                }
                Some(PortKind::Http) | None => {}
            }
        }
    }

    let policy = model.outbound_traffic_policy_for(&proxy.namespace, &proxy.labels);
    Listener {
        filter_chains: chains.into_vec(),
        default_filter_chain: Some(FilterChain {
            name: PASSTHROUGH_CHAIN.to_string(),
            filters: vec![unknown_destination(policy)],
            ..Default::default()
        }),
        ..capture_listener(model, VIRTUAL_OUTBOUND, proxy.outbound_port)
    }
}

/// Where connections to destinations the mesh does not know go.
fn unknown_destination(policy: OutboundTrafficPolicy) -> Filter {
    tcp_proxy(match policy {
        OutboundTrafficPolicy::AllowAny => PASSTHROUGH_CLUSTER,
        OutboundTrafficPolicy::RegistryOnly => BLACKHOLE_CLUSTER,
    })
}

/// The port numbers some of `services` declare HTTP on.
pub fn declared_http_ports(services: &[&Service]) -> BTreeSet<u32> {
    services
        .iter()
        .flat_map(|service| &service.ports)
        .filter(|port| port.kind() == Some(PortKind::Http))
        .map(|port| port.number)
        .collect()
}

/// The port numbers that get a route configuration: declared HTTP or undeclared on some of
/// `services`.
pub fn route_ports(services: &[&Service]) -> BTreeSet<u32> {
    services
        .iter()
        .flat_map(|service| &service.ports)
        .filter(|port| matches!(port.kind(), Some(PortKind::Http | PortKind::Undeclared)))
        .map(|port| port.number)
        .collect()
}

/// `{port, prefix_ranges: [address]}` for each address of the service.
fn address_matches(service: &Service, port: u32) -> Vec<(&str, FilterChainMatch)> {
    service
        .addresses
        .iter()
        .filter_map(|address| {
            let range = cidr_range(address)?;
            Some((
                address.as_str(),
                FilterChainMatch {
                    prefix_ranges: vec![range],
                    ..port_match(port)
                },
            ))
        })
        .collect()
}

/// `matching` for plaintext HTTP as the HTTP inspector detects it.
fn sniffed_http(matching: FilterChainMatch) -> FilterChainMatch {
    FilterChainMatch {
        application_protocols: HTTP_APPLICATION_PROTOCOLS
            .iter()
            .map(ToString::to_string)
            .collect(),
        ..matching
    }
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
