//! A listener's filter chains → `FilterChain`: what a connection must look like to take the
//! chain (`ChainMatch`), its transport (plaintext or TLS), and its network filter.
//!
//! ```text
//!  FilterChain ─► filter_chain_match { destination_port, prefix_ranges, server_names,
//!                                      transport_protocol "tls" │ "raw_buffer", application_protocols }
//!              ─► transport_socket: none (plaintext) │ tls (DownstreamTlsContext: mesh mTLS)
//!              ─► filters: [istio.metadata_exchange] http_connection_manager        ─► Network::Http
//!                          [istio.metadata_exchange] [network rbac │ istio.stats (once)]*
//!                          tcp_proxy { cluster │ weighted_clusters, access_log }     ─► Network::Tcp
//! ```
//!
//! `istio.metadata_exchange` before a TCP proxy turns on Istio's TCP metadata exchange for the
//! chain (the TLS handshake may then choose `istio-peer-exchange`); before a connection
//! manager it is accepted and has no effect (HTTP exchanges metadata in headers, and the chain
//! never chooses that ALPN).

use std::mem::take;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use envoy_types::pb::google::protobuf::value::Kind;
use prost::Message;
use weft_xds::contract::{
    HTTP_CONNECTION_MANAGER, HTTP_CONNECTION_MANAGER_TYPE_URL, METADATA_EXCHANGE,
    METADATA_EXCHANGE_TYPE_URL, MTLS_METADATA, NETWORK_RBAC, NETWORK_RBAC_TYPE_URL,
    PEER_EXCHANGE_ALPN, TCP_PROXY, TCP_PROXY_TYPE_URL, TRANSPORT_PROTOCOL_RAW_BUFFER,
    TRANSPORT_PROTOCOL_TLS,
};
use weft_xds::metadata_exchange::MetadataExchange;

use super::http_manager::{HttpManager, connection_manager};
use super::tls::{DownstreamTls, downstream_socket};
use super::{Reason, duration, invalid, reject_leftover, reject_set};
use crate::authz::{Cidr, Rbac};

/// Envoy's default TCP proxy `idle_timeout`.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// One filter chain, converted.
#[derive(Debug)]
pub struct FilterChain {
    pub name: String,
    pub matcher: ChainMatch,
    /// `None`: plaintext.
    pub tls: Option<DownstreamTls>,
    pub network: Network,
}

/// What a connection must look like to take a chain (Envoy's `FilterChainMatch`, the fields
/// the proxy supports). Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    pub destination_port: Option<u16>,
    pub prefix_ranges: Vec<Cidr>,
    /// Exact names, or `*.suffix` wildcards, matched against the TLS SNI.
    pub server_names: Vec<String>,
    pub transport_protocol: Option<TransportProtocol>,
    /// ALPN values of the ClientHello, or what the HTTP inspector saw (`http/1.1`, `h2c`).
    pub application_protocols: Vec<String>,
}

impl ChainMatch {
    /// Whether matching needs to look at the connection's first bytes.
    pub fn needs_inspection(&self) -> bool {
        !self.server_names.is_empty()
            || self.transport_protocol.is_some()
            || !self.application_protocols.is_empty()
    }
}

/// `FilterChainMatch.transport_protocol`, as the TLS inspector reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    Tls,
    RawBuffer,
}

/// The network filter a chain ends with.
#[derive(Debug)]
pub enum Network {
    Http(Box<HttpManager>),
    Tcp(TcpProxy),
}

/// `envoy.filters.network.tcp_proxy` (with the metadata exchange and network RBAC filters
/// before it).
#[derive(Debug)]
pub struct TcpProxy {
    /// `istio.metadata_exchange` is on the chain: after a TLS handshake that chose
    /// `istio-peer-exchange`, both sides exchange their metadata (`metrics/tcp_exchange.rs`).
    pub peer_exchange: bool,
    /// Network RBAC filters, in order: each must allow the connection.
    pub rbac: Vec<Rbac>,
    /// Where connections go: `cluster` is one entry (weight 1); `weighted_clusters` its entries
    /// in order, one picked per connection by weight. Never empty; weights are at least 1.
    pub clusters: Vec<TcpCluster>,
    /// A connection with no bytes either way for this long is closed (Envoy: 1 h unset, 0 none).
    pub idle_timeout: Option<Duration>,
    /// Istio's stats filter: connections are recorded in Istio's TCP metrics with these
    /// settings; none: they are not recorded.
    pub stats: Option<std::sync::Arc<crate::metrics::view::Stats>>,
    /// `access_log`: one line per connection when it closes (`access_log/`).
    pub access_logs: crate::access_log::AccessLogs,
}

/// One cluster of a TCP proxy and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpCluster {
    pub name: String,
    pub weight: u32,
}

impl TcpProxy {
    /// The sum of the weights (at least 1).
    pub fn total_weight(&self) -> u32 {
        self.clusters.iter().map(|c| c.weight).sum()
    }

    /// The entry (index into `clusters`) that `point`, in `0..total_weight()`, falls on.
    pub fn pick(&self, point: u32) -> usize {
        let mut end = 0u32;
        for (i, c) in self.clusters.iter().enumerate() {
            end = end.saturating_add(c.weight);
            if point < end {
                return i;
            }
        }
        // Only for a point past the total: the last entry.
        self.clusters.len().saturating_sub(1)
    }

    /// The cluster names, for logs and the admin view (`a`, or `a:80,b:20`).
    pub fn describe(&self) -> String {
        match self.clusters.as_slice() {
            [one] => one.name.clone(),
            many => many
                .iter()
                .map(|c| format!("{}:{}", c.name, c.weight))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// The mTLS mode and deciding policy the controller put in the listener's metadata (for logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsInfo {
    pub mode: String,
    pub policy: String,
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

/// Converts one filter chain; `field` names it in errors (`filter_chains[2]`).
pub(super) fn filter_chain(
    field: &str,
    mut chain: lds::FilterChain,
) -> Result<FilterChain, Reason> {
    let name = take(&mut chain.name);
    chain.metadata = None;
    let matcher = chain_match(chain.filter_chain_match.take())
        .map_err(|r| r.within(&format!("{field}.filter_chain_match")))?;
    let tls = match chain.transport_socket.take() {
        None => None,
        Some(socket) => downstream_socket(socket)
            .map_err(|r| invalid(format!("{field}.transport_socket"), r.to_string()))?,
    };
    if tls.is_some() && matcher.transport_protocol == Some(TransportProtocol::RawBuffer) {
        return Err(invalid(field, "a raw_buffer chain cannot have TLS"));
    }
    let filters = take(&mut chain.filters);
    (|| {
        reject_set!(chain, use_proxy_proto, transport_socket_connect_timeout);
        reject_leftover(&chain, "filter chain")
    })()
    .map_err(|r| r.within(field))?;
    let network = network(&format!("{field}.filters"), filters)?;
    Ok(FilterChain {
        name,
        matcher,
        tls,
        network,
    })
}

fn chain_match(m: Option<lds::FilterChainMatch>) -> Result<ChainMatch, Reason> {
    let Some(mut m) = m else {
        return Ok(ChainMatch::default());
    };
    let destination_port = match m.destination_port.take() {
        None => None,
        Some(p) => Some(
            u16::try_from(p.value)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("destination_port", format!("{} is not a port", p.value)))?,
        ),
    };
    let prefix_ranges = take(&mut m.prefix_ranges)
        .into_iter()
        .enumerate()
        .map(|(i, c)| crate::authz::cidr(&format!("prefix_ranges[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let server_names = take(&mut m.server_names)
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let transport_protocol = match take(&mut m.transport_protocol).as_str() {
        "" => None,
        TRANSPORT_PROTOCOL_TLS => Some(TransportProtocol::Tls),
        TRANSPORT_PROTOCOL_RAW_BUFFER => Some(TransportProtocol::RawBuffer),
        other => {
            return Err(invalid(
                "transport_protocol",
                format!("{other:?}: only \"tls\" and \"raw_buffer\" are supported"),
            ));
        }
    };
    let application_protocols = take(&mut m.application_protocols);
    reject_set!(
        m,
        direct_source_prefix_ranges,
        source_type,
        source_prefix_ranges,
        source_ports,
        address_suffix,
        suffix_len
    );
    reject_leftover(&m, "filter_chain_match")?;
    Ok(ChainMatch {
        destination_port,
        prefix_ranges,
        server_names,
        transport_protocol,
        application_protocols,
    })
}

/// The chain's network filters: one HTTP connection manager, or network RBAC filters and
/// a TCP proxy; either after Istio's metadata exchange filter.
fn network(prefix: &str, filters: Vec<lds::Filter>) -> Result<Network, Reason> {
    let count = filters.len();
    let mut rbac = Vec::new();
    let mut stats = None;
    let mut peer_exchange = false;
    // The metadata exchange comes first (Istio's order); the rest is counted without it.
    let mut first = 0;
    for (i, filter) in filters.iter().enumerate() {
        let Some(lds::filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
            break;
        };
        if any.type_url != METADATA_EXCHANGE_TYPE_URL {
            break;
        }
        metadata_exchange(&any.value)
            .map_err(|r| r.within(&format!("{prefix}[{i}].{METADATA_EXCHANGE}")))?;
        peer_exchange = true;
        first = i + 1;
    }
    let rest = count - first;
    for (i, filter) in filters.into_iter().enumerate().skip(first) {
        let field = format!("{prefix}[{i}]");
        let any = match filter.config_type {
            Some(lds::filter::ConfigType::TypedConfig(any)) => any,
            _ => {
                return Err(Reason::Unsupported(format!(
                    "{field} {:?} without typed_config",
                    filter.name
                )));
            }
        };
        let last = i + 1 == count;
        let decode_error = |e: prost::DecodeError| Reason::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        };
        match any.type_url.as_str() {
            HTTP_CONNECTION_MANAGER_TYPE_URL if rest == 1 => {
                let m = hcm::HttpConnectionManager::decode(any.value.as_slice())
                    .map_err(decode_error)?;
                return connection_manager(m)
                    .map(|m| Network::Http(Box::new(m)))
                    .map_err(|r| r.within(&format!("{field}.{HTTP_CONNECTION_MANAGER}")));
            }
            HTTP_CONNECTION_MANAGER_TYPE_URL => {
                return Err(invalid(
                    field,
                    format!("{HTTP_CONNECTION_MANAGER} must be the chain's only filter"),
                ));
            }
            NETWORK_RBAC_TYPE_URL if !last => {
                let r = net_rbac::Rbac::decode(any.value.as_slice()).map_err(decode_error)?;
                rbac.push(
                    Rbac::try_from(r).map_err(|r| r.within(&format!("{field}.{NETWORK_RBAC}")))?,
                );
            }
            TCP_PROXY_TYPE_URL if last => {
                let t = tcp::TcpProxy::decode(any.value.as_slice()).map_err(decode_error)?;
                let (clusters, idle_timeout, access_logs) =
                    tcp_proxy(t).map_err(|r| r.within(&format!("{field}.{TCP_PROXY}")))?;
                return Ok(Network::Tcp(TcpProxy {
                    peer_exchange,
                    rbac,
                    clusters,
                    idle_timeout,
                    stats,
                    access_logs,
                }));
            }
            _ if !last && stats.is_none() && super::stats::is_stats(&any) => {
                stats =
                    Some(super::stats::stats(&any).map_err(|r| {
                        r.within(&format!("{field}.{}", super::stats::STATS_FILTER))
                    })?);
            }
            other => {
                return Err(invalid(
                    field,
                    format!(
                        "{:?} ({other}) is not supported here: a chain is one {HTTP_CONNECTION_MANAGER}, or {NETWORK_RBAC} filters and at most one istio.stats then {TCP_PROXY}, either after {METADATA_EXCHANGE}",
                        filter.name
                    ),
                ));
            }
        }
    }
    Err(invalid(
        prefix,
        format!("a chain needs an {HTTP_CONNECTION_MANAGER} or a {TCP_PROXY} filter"),
    ))
}

/// The config of `istio.metadata_exchange` (listener or cluster): only Istio's protocol.
/// `enable_discovery` (Istio's fallback to ambient workload discovery when the peer sends no
/// metadata) is accepted and has no effect: without a frame the peer is unknown, as in Istio's
/// proxy without workload discovery.
pub(super) fn metadata_exchange(value: &[u8]) -> Result<(), Reason> {
    let config = MetadataExchange::decode(value).map_err(|e| Reason::Decode {
        type_url: METADATA_EXCHANGE_TYPE_URL.to_string(),
        error: e.to_string(),
    })?;
    if config.protocol != PEER_EXCHANGE_ALPN {
        return Err(invalid(
            "protocol",
            format!(
                "{:?}: only {PEER_EXCHANGE_ALPN:?} is supported",
                config.protocol
            ),
        ));
    }
    Ok(())
}

type TcpParts = (
    Vec<TcpCluster>,
    Option<Duration>,
    crate::access_log::AccessLogs,
);

fn tcp_proxy(mut t: tcp::TcpProxy) -> Result<TcpParts, Reason> {
    use tcp::tcp_proxy::ClusterSpecifier;
    let clusters = match t.cluster_specifier.take() {
        Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => {
            vec![TcpCluster { name, weight: 1 }]
        }
        Some(ClusterSpecifier::Cluster(_)) | None => return Err(Reason::Missing("cluster")),
        Some(ClusterSpecifier::WeightedClusters(w)) => weighted_clusters(w)?,
    };
    // Envoy: unset = 1 h, 0 = none.
    let idle_timeout = match duration("idle_timeout", t.idle_timeout.take().as_ref())? {
        None => Some(DEFAULT_TCP_IDLE_TIMEOUT),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let access_logs = super::access_logs(take(&mut t.access_log))?;
    t.stat_prefix.clear();
    reject_set!(
        t,
        metadata_match,
        downstream_idle_timeout,
        upstream_idle_timeout,
        max_connect_attempts,
        hash_policy,
        tunneling_config,
        max_downstream_connection_duration
    );
    reject_leftover(&t, "tcp_proxy")?;
    Ok((clusters, idle_timeout, access_logs))
}

/// `weighted_clusters`: as Envoy, at least one cluster, each named, each weight at least 1,
/// and their sum must fit a `u32`.
fn weighted_clusters(mut w: tcp::tcp_proxy::WeightedCluster) -> Result<Vec<TcpCluster>, Reason> {
    if w.clusters.is_empty() {
        return Err(invalid(
            "weighted_clusters.clusters",
            "needs at least one cluster",
        ));
    }
    let mut total = 0u32;
    let mut out = Vec::with_capacity(w.clusters.len());
    for (i, mut c) in take(&mut w.clusters).into_iter().enumerate() {
        let field = format!("weighted_clusters.clusters[{i}]");
        if c.name.is_empty() {
            return Err(invalid(format!("{field}.name"), "is required"));
        }
        if c.weight == 0 {
            return Err(invalid(format!("{field}.weight"), "must be at least 1"));
        }
        total = total
            .checked_add(c.weight)
            .ok_or_else(|| invalid(format!("{field}.weight"), "the weights' sum overflows"))?;
        let name = take(&mut c.name);
        let weight = c.weight;
        c.weight = 0;
        (|| {
            reject_set!(c, metadata_match);
            reject_leftover(&c, "weighted cluster")
        })()
        .map_err(|r| r.within(&field))?;
        out.push(TcpCluster { name, weight });
    }
    reject_leftover(&w, "weighted_clusters")?;
    Ok(out)
}

#[cfg(test)]
#[path = "filter_chain_tests.rs"]
mod tests;
