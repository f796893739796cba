//! VirtualService `tls` and `tcp` routes in the capture shape: the `virtualOutbound` filter
//! chains of one service port at one of its addresses, in the order Istio builds them for a
//! sidecar (`buildSidecarOutboundTCPTLSFilterChainOpts`).
//!
//! ```text
//! service S, port P, address A (or none: any address), the VirtualService of S:
//! TLS/HTTPS port: each tls[i].match[j] that applies to this proxy, in order
//!     → A_P {port P, prefix A (∩ destinationSubnets), server_names sniHosts, tls} → route i
//! non-HTTP port:  tcp[i] in order, a match that applies to this proxy (no match: applies)
//!     without destinationSubnets → A_P {port P, prefix A}                 → route i; stop
//!     with destinationSubnets    → A_P {port P, prefix A ∩ subnets}       → route i; go on
//!   nothing stopped              → A_P {port P, prefix A}                 → outbound|P||S
//! route i: one destination → tcp_proxy cluster; several → weighted_clusters (weight 0 left out)
//! ```
//!
//! What depends on the client (`port`, `sourceLabels`, `sourceNamespace`, `gateways`) is
//! decided here, for the proxy the listener is generated for; what depends on the connection
//! (destination address, SNI) becomes the chain's match. A range or a server name an earlier
//! route took is not matched again (Envoy rejects two chains with the same match), so the
//! first route wins, as in Istio.

use std::collections::BTreeSet;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy as tcp,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_api::networking::{L4MatchAttributes, Protocol, RouteDestination, TlsMatchAttributes};
use weft_xds::contract::{BLACKHOLE_CLUSTER, TCP_PROXY, TRANSPORT_PROTOCOL_TLS};

use super::{chain, port_match, tcp_proxy, tcp_proxy_idle};
use crate::model::security::Cidr;
use crate::model::{MESH_GATEWAY, Model, VirtualServiceEntry};
use crate::service::{Service, ServicePort, labels_match};
use crate::xds::cluster_policy::cluster_policy;
use crate::xds::routes::{cluster_of, destination_policy};
use crate::xds::{Proxy, outbound_cluster_name, pack};

/// The chains of `port` of `service` at `address` (a service address as written, an IP or a
/// CIDR block; `None` for a service without addresses): its VirtualService's TLS routes (TLS
/// and HTTPS ports), then its TCP routes, then the service's own cluster unless a route took
/// every connection. Empty when `address` does not parse.
pub fn chains(
    model: &Model,
    proxy: &Proxy,
    service: &Service,
    port: &ServicePort,
    address: Option<&str>,
) -> Vec<FilterChain> {
    let range = match address.map(Cidr::parse) {
        None => None,
        Some(Ok(cidr)) => Some(cidr),
        Some(Err(_)) => return Vec::new(),
    };
    let target = Target {
        name: format!("{}_{}", address.unwrap_or("0.0.0.0"), port.number),
        port: port.number,
        range,
    };
    let vs = model.virtual_service(&service.hostname);
    let mut out = Vec::new();
    if let Some(vs) = vs
        && matches!(port.protocol, Some(Protocol::Tls | Protocol::Https))
    {
        out.extend(tls_chains(model, proxy, vs, &target));
    }
    let (tcp, all_taken) = match vs {
        Some(vs) => tcp_chains(model, proxy, vs, &target),
        None => (Vec::new(), false),
    };
    out.extend(tcp);
    if !all_taken {
        let cluster = outbound_cluster_name(port.number, "", &service.hostname);
        let idle = cluster_policy(model.destination_rule(&service.hostname), None, port.number)
            .tcp_idle_timeout();
        out.push(chain(
            &target.name,
            target.matching(target.range.iter().copied().collect()),
            vec![tcp_proxy_idle(&cluster, idle)],
        ));
    }
    out
}

/// One service port at one address.
struct Target {
    /// The chains' name: `<address>_<port>`, `0.0.0.0_<port>` without an address.
    name: String,
    port: u32,
    /// The address as a range; `None`: any address.
    range: Option<Cidr>,
}

impl Target {
    /// `{port, prefix_ranges}`.
    fn matching(&self, ranges: Vec<Cidr>) -> FilterChainMatch {
        FilterChainMatch {
            prefix_ranges: ranges.iter().map(cidr_range).collect(),
            ..port_match(self.port)
        }
    }

    /// The part of each subnet that is also the target's address, in order, without
    /// repeats; `subnets` that do not parse (validation rejects them) are left out.
    fn within(&self, subnets: &[String]) -> Vec<Cidr> {
        let mut out: Vec<Cidr> = Vec::new();
        for subnet in subnets.iter().filter_map(|s| Cidr::parse(s).ok()) {
            let part = match &self.range {
                None => Some(subnet),
                Some(range) => intersection(range, &subnet),
            };
            if let Some(part) = part
                && !out.contains(&part)
            {
                out.push(part);
            }
        }
        out
    }
}

/// The chains of the TLS routes: one per applicable match, by SNI.
fn tls_chains(
    model: &Model,
    proxy: &Proxy,
    vs: &VirtualServiceEntry,
    target: &Target,
) -> Vec<FilterChain> {
    // (prefix range or "" for any, server name or "" for any) pairs already matched.
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    for route in &vs.spec.tls {
        for matching in route
            .r#match
            .iter()
            .filter(|m| tls_match_applies(m, target.port, proxy))
        {
            let ranges = if matching.destination_subnets.is_empty() {
                target.range.iter().copied().collect()
            } else {
                let ranges = target.within(&matching.destination_subnets);
                if ranges.is_empty() {
                    // Subnets outside the service's address: no connection of this target.
                    continue;
                }
                ranges
            };
            // `*` is every name (Istio then matches no server name).
            let names: Vec<String> = if matching.sni_hosts.iter().any(|h| h == "*") {
                vec![String::new()]
            } else {
                matching
                    .sni_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect()
            };
            let keys: Vec<String> = if ranges.is_empty() {
                vec![String::new()]
            } else {
                ranges.iter().map(range_key).collect()
            };
            let fresh: Vec<String> = names
                .into_iter()
                .filter(|name| {
                    keys.iter()
                        .any(|key| !taken.contains(&(key.clone(), name.clone())))
                })
                .collect();
            if fresh.is_empty() {
                continue;
            }
            for key in &keys {
                for name in &fresh {
                    taken.insert((key.clone(), name.clone()));
                }
            }
            let matching = FilterChainMatch {
                server_names: fresh.into_iter().filter(|n| !n.is_empty()).collect(),
                transport_protocol: TRANSPORT_PROTOCOL_TLS.to_string(),
                ..target.matching(ranges)
            };
            out.push(chain(
                &target.name,
                matching,
                vec![route_filter(model, vs, target.port, &route.route)],
            ));
        }
    }
    out
}

/// The chains of the TCP routes, and whether one of them takes every connection of the
/// target (then the service's own cluster gets none).
fn tcp_chains(
    model: &Model,
    proxy: &Proxy,
    vs: &VirtualServiceEntry,
    target: &Target,
) -> (Vec<FilterChain>, bool) {
    let own = target.range.as_ref().map(range_key);
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for route in &vs.spec.tcp {
        let mut subnets: Vec<String> = Vec::new();
        let mut everything = route.r#match.is_empty();
        for matching in route
            .r#match
            .iter()
            .filter(|m| l4_match_applies(m, target.port, proxy))
        {
            if matching.destination_subnets.is_empty() {
                everything = true;
                break;
            }
            subnets.extend(matching.destination_subnets.iter().cloned());
        }
        let filter = || route_filter(model, vs, target.port, &route.route);
        if everything {
            let ranges = target.range.iter().copied().collect();
            out.push(chain(&target.name, target.matching(ranges), vec![filter()]));
            return (out, true);
        }
        let ranges: Vec<Cidr> = target
            .within(&subnets)
            .into_iter()
            .filter(|range| taken.insert(range_key(range)))
            .collect();
        if ranges.is_empty() {
            continue;
        }
        out.push(chain(&target.name, target.matching(ranges), vec![filter()]));
    }
    // A route whose subnets cover the whole address took every connection.
    let all_taken = own.is_some_and(|own| taken.contains(&own));
    (out, all_taken)
}

/// Istio's `l4SingleMatch` for a sidecar: the port (if set) is the service port, `gateways`
/// (if set) include `mesh`, `sourceLabels` are among the proxy's labels and
/// `sourceNamespace` (if set) is its namespace. (`sourceSubnet` is not used, as in Istio.)
fn l4_match_applies(matching: &L4MatchAttributes, port: u32, proxy: &Proxy) -> bool {
    static_match(
        matching.port,
        &matching.gateways,
        &matching.source_labels,
        matching.source_namespace.as_deref(),
        port,
        proxy,
    )
}

fn tls_match_applies(matching: &TlsMatchAttributes, port: u32, proxy: &Proxy) -> bool {
    static_match(
        matching.port,
        &matching.gateways,
        &matching.source_labels,
        matching.source_namespace.as_deref(),
        port,
        proxy,
    )
}

fn static_match(
    match_port: Option<u32>,
    gateways: &[String],
    source_labels: &std::collections::BTreeMap<String, String>,
    source_namespace: Option<&str>,
    port: u32,
    proxy: &Proxy,
) -> bool {
    match_port.is_none_or(|p| p == 0 || p == port)
        && (gateways.is_empty() || gateways.iter().any(|g| g == MESH_GATEWAY))
        && labels_match(source_labels, &proxy.labels)
        && source_namespace.is_none_or(|ns| ns.is_empty() || ns == proxy.namespace)
}

/// The TCP proxy of a route (Istio's `buildOutboundNetworkFilters`): one destination is its
/// cluster (its weight does not matter); several are weighted clusters, those of weight 0
/// left out (none weighted: an even split), one left: that cluster.
fn route_filter(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    destinations: &[RouteDestination],
) -> Filter {
    let cluster = |d: &RouteDestination| cluster_of(model, vs, port, &d.destination);
    let mut weighted: Vec<(String, u32)> = match destinations {
        [single] => vec![(cluster(single), 1)],
        _ => destinations
            .iter()
            .filter_map(|d| {
                let weight = u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0);
                (weight > 0).then(|| (cluster(d), weight))
            })
            .collect(),
    };
    if weighted.is_empty() {
        weighted = destinations.iter().map(|d| (cluster(d), 1)).collect();
    }
    // The destinations' `connectionPool.tcp.idleTimeout`: the longest, when several set one.
    let idle = destinations
        .iter()
        .filter_map(|d| destination_policy(model, vs, port, &d.destination).tcp_idle_timeout())
        .max();
    match weighted.as_slice() {
        // Only for a route without destinations, which validation rejects.
        [] => tcp_proxy(BLACKHOLE_CLUSTER),
        [(single, _)] => tcp_proxy_idle(single, idle),
        many => weighted_tcp_proxy(many, idle),
    }
}

/// A TCP proxy to weighted clusters (stat prefix: the first one's name).
fn weighted_tcp_proxy(clusters: &[(String, u32)], idle: Option<std::time::Duration>) -> Filter {
    let config = TcpProxy {
        stat_prefix: clusters.first().map(|c| c.0.clone()).unwrap_or_default(),
        cluster_specifier: Some(tcp::ClusterSpecifier::WeightedClusters(
            tcp::WeightedCluster {
                clusters: clusters
                    .iter()
                    .map(|(name, weight)| tcp::weighted_cluster::ClusterWeight {
                        name: name.clone(),
                        weight: *weight,
                        ..Default::default()
                    })
                    .collect(),
            },
        )),
        idle_timeout: idle.map(crate::xds::duration),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&config))),
    }
}

fn cidr_range(cidr: &Cidr) -> CidrRange {
    CidrRange {
        address_prefix: cidr.address.to_string(),
        prefix_len: Some(UInt32Value {
            value: cidr.prefix_len,
        }),
    }
}

fn range_key(cidr: &Cidr) -> String {
    let masked = mask(cidr.address, cidr.prefix_len);
    format!("{masked}/{}", cidr.prefix_len)
}

/// The addresses in both `a` and `b`: the narrower one if it lies within the other, else none
/// (two CIDR blocks are nested or disjoint).
fn intersection(a: &Cidr, b: &Cidr) -> Option<Cidr> {
    let (wide, narrow) = if a.prefix_len <= b.prefix_len {
        (a, b)
    } else {
        (b, a)
    };
    (wide.address.is_ipv4() == narrow.address.is_ipv4()
        && mask(wide.address, wide.prefix_len) == mask(narrow.address, wide.prefix_len))
    .then_some(*narrow)
}

/// `address` with the bits after the first `len` cleared.
fn mask(address: IpAddr, len: u32) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

#[cfg(test)]
#[path = "l4_routes_tests.rs"]
mod tests;
