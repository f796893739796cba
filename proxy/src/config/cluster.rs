//! Clusters (CDS) and endpoints (EDS): Envoy `Cluster` / `ClusterLoadAssignment` → domain types.
//!
//! ```text
//!  Cluster ─► ClusterConfig { discovery: EDS(service) | STATIC(Assignment) | DNS(targets)
//!                             | ORIGINAL_DST (the connection's original destination), lb, protocol,
//!                             timeouts, upstream_bind_config source address }
//!                             locality_weighted (common_lb_config.locality_weighted_lb_config) }
//!  ClusterLoadAssignment ─► Assignment (assignment.rs: levels, localities, endpoints)
//!  transport_socket | transport_socket_matches ─► ClusterTls ─► per endpoint: TLS or plaintext
//!  filters: [istio.metadata_exchange] ─► peer_exchange (the TCP proxy's metadata exchange)
//! ```

use std::collections::BTreeMap;
use std::mem::take;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;

pub use super::assignment::Assignment;

use super::tls::{UpstreamTls, upstream_socket};
use super::{ConfigError, Reason, duration, host_port, invalid, reject_leftover, reject_set};
use crate::upstream::LbPolicy;
use crate::upstream::dns::{self, DnsKind, DnsTargets, LookupFamily};
use crate::upstream::pool::DEFAULT_IDLE_TIMEOUT;

// Names shared with the controller: weft-xds's contract module.
pub use weft_xds::contract::HTTP_PROTOCOL_OPTIONS;
/// Envoy's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub discovery: DiscoveryKind,
    pub lb_policy: LbPolicy,
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    /// Upstream connections unused this long are closed
    /// (`HttpProtocolOptions.common_http_protocol_options.idle_timeout`, Envoy's default 1 h).
    pub idle_timeout: Duration,
    /// TLS towards the endpoints.
    pub tls: ClusterTls,
    /// `upstream_bind_config.source_address`: the local address upstream connections bind to
    /// (inbound delivery to the app from `127.0.0.6`, which the capture rules let through).
    pub source_address: Option<std::net::IpAddr>,
    /// `circuit_breakers`: how much retrying the cluster allows.
    pub circuit_breakers: super::circuit_breakers::CircuitBreakers,
    /// `outlier_detection` (with `common_lb_config`'s panic threshold); `None`: off.
    pub outlier: Option<super::outlier::OutlierConfig>,
    /// How long and how much upstream connections are used, and their TCP keepalive.
    pub connection: super::cluster_http::ConnectionOptions,
    /// `slow_start_config` (round robin, least request): new endpoints ramp up.
    pub slow_start: Option<weft_lb::warmup::Config>,
    /// `common_lb_config.locality_weighted_lb_config`: a locality is picked by its weight
    /// (scaled by its health) before an endpoint in it (DestinationRule `localityLbSetting`).
    pub locality_weighted: bool,
    /// The service behind the cluster (`metadata.filter_metadata.istio.services[0]`, else the
    /// host of an `outbound|port|subset|host` name): the metrics' `destination_service*`.
    pub service: crate::metrics::Service,
    /// `filters` has `istio.metadata_exchange`: a TCP proxy's connection whose TLS handshake
    /// chose `istio-peer-exchange` exchanges metadata with the server (`metrics/tcp_exchange.rs`).
    pub peer_exchange: bool,
}

/// Transport sockets of a cluster: `transport_socket_matches` (first match on the endpoint's
/// `envoy.transport_socket_match` metadata wins), else `transport_socket`, else plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTls {
    pub matches: Vec<SocketMatch>,
    /// `transport_socket`: `None` is plaintext.
    pub default: Option<Arc<UpstreamTls>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketMatch {
    pub name: String,
    /// Every key must have this value in the endpoint's labels; empty matches every endpoint.
    pub labels: BTreeMap<String, String>,
    pub tls: Option<Arc<UpstreamTls>>,
}

impl ClusterTls {
    /// The TLS for an endpoint with `labels` (its transport-socket match metadata).
    pub fn for_endpoint(
        &self,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Option<Arc<UpstreamTls>> {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        for m in &self.matches {
            if m.labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                return m.tls.clone();
            }
        }
        self.default.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryKind {
    /// Endpoints arrive by EDS under this service name.
    Eds(String),
    /// Endpoints inline in `load_assignment`.
    Static(Assignment),
    /// Hostnames in `load_assignment`, resolved by the proxy (STRICT_DNS, LOGICAL_DNS).
    Dns(DnsTargets),
    /// `ORIGINAL_DST` (with `lb_policy: CLUSTER_PROVIDED`): every connection goes to the
    /// downstream connection's original destination (`PassthroughCluster`, inbound delivery).
    OriginalDst,
}

/// Protocol spoken to the upstream endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    Downstream,
}

impl TryFrom<cds::Cluster> for ClusterConfig {
    type Error = ConfigError;

    fn try_from(mut c: cds::Cluster) -> Result<Self, ConfigError> {
        let path = format!("cluster {:?}", c.name);
        let err = |reason| ConfigError::new(&path, reason);
        if c.name.is_empty() {
            return Err(err(Reason::Missing("name")));
        }
        let name = take(&mut c.name);
        let discovery = discovery(&mut c, &name).map_err(err)?;
        let original_dst = discovery == DiscoveryKind::OriginalDst;
        let lb_policy = match cds::cluster::LbPolicy::try_from(c.lb_policy) {
            // The cluster provides the endpoint: no balancing happens.
            Ok(cds::cluster::LbPolicy::ClusterProvided) if original_dst => LbPolicy::RoundRobin,
            _ if original_dst => {
                return Err(err(invalid(
                    "lb_policy",
                    "an ORIGINAL_DST cluster needs lb_policy CLUSTER_PROVIDED",
                )));
            }
            Ok(cds::cluster::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
            Ok(cds::cluster::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
            Ok(cds::cluster::LbPolicy::Random) => LbPolicy::Random,
            Ok(cds::cluster::LbPolicy::RingHash) => {
                let config = match c.lb_config.take() {
                    Some(cds::cluster::LbConfig::RingHashLbConfig(r)) => {
                        if r.hash_function != 0 {
                            return Err(err(Reason::Unsupported(
                                "ring_hash_lb_config.hash_function other than XX_HASH".into(),
                            )));
                        }
                        weft_lb::hash::HashConfig::Ring {
                            minimum_ring_size: r
                                .minimum_ring_size
                                .map_or(weft_lb::hash::DEFAULT_MINIMUM_RING_SIZE, |v| v.value),
                            maximum_ring_size: r
                                .maximum_ring_size
                                .map_or(weft_lb::hash::DEFAULT_MAXIMUM_RING_SIZE, |v| v.value),
                        }
                    }
                    None => weft_lb::hash::HashConfig::default(),
                    Some(_) => {
                        return Err(err(invalid(
                            "lb_config",
                            "RING_HASH takes ring_hash_lb_config only",
                        )));
                    }
                };
                hash_policy_config(config).map_err(err)?
            }
            Ok(cds::cluster::LbPolicy::Maglev) => {
                let config = match c.lb_config.take() {
                    Some(cds::cluster::LbConfig::MaglevLbConfig(m)) => {
                        weft_lb::hash::HashConfig::Maglev {
                            table_size: m
                                .table_size
                                .map_or(weft_lb::hash::DEFAULT_TABLE_SIZE, |v| v.value),
                        }
                    }
                    None => weft_lb::hash::HashConfig::maglev(),
                    Some(_) => {
                        return Err(err(invalid(
                            "lb_config",
                            "MAGLEV takes maglev_lb_config only",
                        )));
                    }
                };
                hash_policy_config(config).map_err(err)?
            }
            Ok(other) => {
                return Err(err(Reason::UnsupportedValue {
                    field: "lb_policy",
                    value: other.as_str_name().to_string(),
                }));
            }
            Err(_) => {
                return Err(err(invalid(
                    "lb_policy",
                    format!("unknown value {}", c.lb_policy),
                )));
            }
        };
        c.lb_policy = 0;
        let slow_start = slow_start(&mut c, lb_policy).map_err(err)?;
        let connect_timeout = duration("connect_timeout", c.connect_timeout.take().as_ref())
            .map_err(err)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        if connect_timeout.is_zero() {
            return Err(err(invalid("connect_timeout", "must be greater than 0")));
        }
        let http = super::cluster_http::upstream_http(&mut c.typed_extension_protocol_options)
            .map_err(err)?;
        let (protocol, idle_timeout) = (http.protocol, http.idle_timeout);
        let connection = super::cluster_http::ConnectionOptions {
            max_requests_per_connection: http.max_requests_per_connection,
            max_connection_duration: http.max_connection_duration,
            max_concurrent_streams: http.max_concurrent_streams,
            http2_keepalive: http.http2_keepalive,
            keepalive: super::cluster_http::keepalive(c.upstream_connection_options.take())
                .map_err(err)?,
        };
        let mut tls = cluster_tls(&mut c).map_err(err)?;
        let source_address = bind_config(c.upstream_bind_config.take()).map_err(err)?;
        if source_address.is_some() && matches!(discovery, DiscoveryKind::Dns(_)) {
            return Err(err(Reason::Unsupported(
                "upstream_bind_config on a DNS cluster".into(),
            )));
        }
        let circuit_breakers =
            super::circuit_breakers::CircuitBreakers::try_from(c.circuit_breakers.take())
                .map_err(err)?;
        let mut common_lb = c.common_lb_config.take();
        let locality_weighted = locality_weighted(common_lb.as_mut()).map_err(err)?;
        let outlier =
            super::outlier::outlier(c.outlier_detection.take(), common_lb).map_err(err)?;
        let service = istio_service(&name, c.metadata.take().as_ref());
        let peer_exchange = upstream_filters(take(&mut c.filters)).map_err(err)?;
        if !peer_exchange {
            // A server that agreed to the exchange would write its frame to a client that does
            // not read it: without the filter, mesh TLS does not offer it.
            tls = without_peer_exchange(tls);
        }
        // Observability-only fields.
        c.alt_stat_name.clear();
        (|| {
            reject_set!(
                c,
                health_checks,
                lb_subset_config,
                lb_config,
                load_balancing_policy,
                http_protocol_options,
                http2_protocol_options,
                common_http_protocol_options,
                upstream_http_protocol_options,
                max_requests_per_connection,
                per_connection_buffer_limit_bytes
            );
            reject_leftover(&c, "cluster")
        })()
        .map_err(err)?;
        Ok(ClusterConfig {
            name,
            discovery,
            lb_policy,
            protocol,
            connect_timeout,
            idle_timeout: idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            tls,
            source_address,
            circuit_breakers,
            outlier,
            connection,
            slow_start,
            locality_weighted,
            service,
            peer_exchange,
        })
    }
}

/// `tls` with `istio-peer-exchange` taken out of the ALPN of its mesh TLS.
fn without_peer_exchange(tls: ClusterTls) -> ClusterTls {
    let strip = |socket: Option<Arc<UpstreamTls>>| {
        socket.map(|socket| match &*socket {
            UpstreamTls::Mesh { sni, alpn, sans }
                if alpn
                    .iter()
                    .any(|p| p == weft_xds::contract::PEER_EXCHANGE_ALPN) =>
            {
                Arc::new(UpstreamTls::Mesh {
                    sni: sni.clone(),
                    alpn: alpn
                        .iter()
                        .filter(|p| *p != weft_xds::contract::PEER_EXCHANGE_ALPN)
                        .cloned()
                        .collect(),
                    sans: sans.clone(),
                })
            }
            _ => socket,
        })
    };
    ClusterTls {
        matches: tls
            .matches
            .into_iter()
            .map(|m| SocketMatch {
                tls: strip(m.tls),
                ..m
            })
            .collect(),
        default: strip(tls.default),
    }
}

/// The cluster's upstream network `filters`: only Istio's metadata exchange; whether it is
/// there.
fn upstream_filters(filters: Vec<cds::Filter>) -> Result<bool, Reason> {
    use weft_xds::contract::{METADATA_EXCHANGE, METADATA_EXCHANGE_TYPE_URL};
    let mut exchange = false;
    for (i, filter) in filters.into_iter().enumerate() {
        let field = format!("filters[{i}]");
        match filter.typed_config {
            Some(any) if any.type_url == METADATA_EXCHANGE_TYPE_URL => {
                super::filter_chain::metadata_exchange(&any.value)
                    .map_err(|r| r.within(&format!("{field}.{METADATA_EXCHANGE}")))?;
                exchange = true;
            }
            Some(any) => {
                return Err(invalid(
                    field,
                    format!(
                        "{:?} ({}) is not supported: a cluster's only filter is {METADATA_EXCHANGE}",
                        filter.name, any.type_url
                    ),
                ));
            }
            None => {
                return Err(invalid(
                    field,
                    format!("{:?} without typed_config", filter.name),
                ));
            }
        }
    }
    Ok(exchange)
}

/// Takes `locality_config_specifier` out of `common_lb_config`: locality-weighted balancing or
/// none; zone-aware routing (which needs the proxy's own cluster) is not supported.
fn locality_weighted(common: Option<&mut cds::cluster::CommonLbConfig>) -> Result<bool, Reason> {
    use cds::cluster::common_lb_config::LocalityConfigSpecifier as L;
    match common.and_then(|c| c.locality_config_specifier.take()) {
        None => Ok(false),
        Some(L::LocalityWeightedLbConfig(_)) => Ok(true),
        Some(L::ZoneAwareLbConfig(_)) => Err(Reason::Unsupported(
            "common_lb_config.zone_aware_lb_config".into(),
        )),
    }
}

fn discovery(c: &mut cds::Cluster, name: &str) -> Result<DiscoveryKind, Reason> {
    use cds::cluster::{ClusterDiscoveryType as T, DiscoveryType as D};
    let kind = match c.cluster_discovery_type.take() {
        None => D::Static,
        Some(T::Type(t)) => {
            D::try_from(t).map_err(|_| invalid("type", format!("unknown value {t}")))?
        }
        Some(T::ClusterType(t)) => {
            return Err(Reason::UnsupportedValue {
                field: "cluster_type",
                value: t.name,
            });
        }
    };
    match kind {
        D::Eds => {
            let cfg = c
                .eds_cluster_config
                .take()
                .ok_or(Reason::Missing("eds_cluster_config"))?;
            let ads = matches!(
                cfg.eds_config
                    .as_ref()
                    .and_then(|s| s.config_source_specifier.as_ref()),
                Some(core::config_source::ConfigSourceSpecifier::Ads(_))
            );
            if !ads {
                return Err(invalid(
                    "eds_cluster_config.eds_config",
                    "only ads is supported",
                ));
            }
            if c.load_assignment.is_some() {
                return Err(invalid(
                    "load_assignment",
                    "must not be set on an EDS cluster",
                ));
            }
            let service = if cfg.service_name.is_empty() {
                name.to_string()
            } else {
                cfg.service_name
            };
            Ok(DiscoveryKind::Eds(service))
        }
        D::Static => {
            let cla = c
                .load_assignment
                .take()
                .ok_or(Reason::Missing("load_assignment"))?;
            let assignment = Assignment::try_from(cla)
                .map_err(|e| invalid("load_assignment", e.reason.to_string()))?;
            Ok(DiscoveryKind::Static(assignment))
        }
        D::StrictDns | D::LogicalDns => {
            dns_targets(c, kind == D::LogicalDns).map(DiscoveryKind::Dns)
        }
        D::OriginalDst => {
            if c.load_assignment.is_some() || c.eds_cluster_config.is_some() {
                return Err(invalid(
                    "type",
                    "an ORIGINAL_DST cluster takes no load_assignment or eds_cluster_config",
                ));
            }
            Ok(DiscoveryKind::OriginalDst)
        }
    }
}

/// `upstream_bind_config`: only a source IP address (port 0) is supported.
fn bind_config(bind: Option<core::BindConfig>) -> Result<Option<std::net::IpAddr>, Reason> {
    let Some(mut bind) = bind else {
        return Ok(None);
    };
    let field = "upstream_bind_config.source_address";
    let Some(source) = bind.source_address.take() else {
        return Err(Reason::Missing("upstream_bind_config.source_address"));
    };
    if source.port_specifier != Some(core::socket_address::PortSpecifier::PortValue(0))
        && source.port_specifier.is_some()
    {
        return Err(invalid(
            format!("{field}.port_value"),
            "only port 0 (any) is supported",
        ));
    }
    let ip = source.address.parse().map_err(|_| {
        invalid(
            format!("{field}.address"),
            format!("{:?} is not an IP address", source.address),
        )
    })?;
    if bind != core::BindConfig::default() {
        return Err(Reason::Unsupported(
            "upstream_bind_config settings other than source_address".into(),
        ));
    }
    Ok(Some(ip))
}

/// STRICT_DNS / LOGICAL_DNS: hostnames from `load_assignment`, refresh rate and lookup family.
/// (`dns_refresh_rate`, `dns_lookup_family` are deprecated in favour of the DNS cluster
/// extension, but they are what Istio sends.)
#[allow(deprecated)]
fn dns_targets(c: &mut cds::Cluster, logical: bool) -> Result<DnsTargets, Reason> {
    use cds::cluster::DnsLookupFamily as F;
    let cla = c
        .load_assignment
        .take()
        .ok_or(Reason::Missing("load_assignment"))?;
    if c.eds_cluster_config.is_some() {
        return Err(invalid(
            "eds_cluster_config",
            "must not be set on a DNS cluster",
        ));
    }
    let family = match F::try_from(c.dns_lookup_family) {
        Ok(F::Auto) => LookupFamily::Auto,
        Ok(F::V4Only) => LookupFamily::V4Only,
        Ok(F::V6Only) => LookupFamily::V6Only,
        Ok(F::V4Preferred) => LookupFamily::V4Preferred,
        Ok(F::All) => LookupFamily::All,
        Err(_) => {
            return Err(invalid(
                "dns_lookup_family",
                format!("unknown value {}", c.dns_lookup_family),
            ));
        }
    };
    c.dns_lookup_family = 0;
    let refresh = duration("dns_refresh_rate", c.dns_refresh_rate.take().as_ref())?
        .unwrap_or(dns::DEFAULT_REFRESH);
    if refresh < Duration::from_millis(1) {
        return Err(invalid("dns_refresh_rate", "must be at least 1ms"));
    }
    if c.respect_dns_ttl {
        return Err(Reason::Unsupported("respect_dns_ttl".into()));
    }
    let mut hosts = Vec::new();
    for (i, locality) in cla.endpoints.into_iter().enumerate() {
        if locality.priority != 0 {
            return Err(Reason::Unsupported(format!(
                "load_assignment.endpoints[{i}].priority (priority failover)"
            )));
        }
        for (j, ep) in locality.lb_endpoints.into_iter().enumerate() {
            let field = format!("load_assignment.endpoints[{i}].lb_endpoints[{j}]");
            hosts.push(dns_endpoint(ep).map_err(|r| invalid(field, r.to_string()))?);
        }
    }
    if logical && hosts.len() != 1 {
        return Err(invalid(
            "load_assignment",
            format!(
                "a LOGICAL_DNS cluster needs exactly one endpoint, got {}",
                hosts.len()
            ),
        ));
    }
    Ok(DnsTargets {
        kind: if logical {
            DnsKind::Logical
        } else {
            DnsKind::Strict
        },
        hosts,
        refresh,
        family,
    })
}

/// One DNS target: hostname (or IP literal), port and weight.
fn dns_endpoint(ep: eds::LbEndpoint) -> Result<(String, u16, u32), Reason> {
    let weight = ep.load_balancing_weight.map_or(1, |w| w.value);
    if weight == 0 {
        return Err(invalid("load_balancing_weight", "must be at least 1"));
    }
    let Some(eds::lb_endpoint::HostIdentifier::Endpoint(e)) = ep.host_identifier else {
        return Err(Reason::Missing("endpoint"));
    };
    let (host, port) = host_port("endpoint.address", e.address.as_ref())?;
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !valid_name {
        return Err(invalid(
            "endpoint.address.address",
            format!("{host:?} is not a hostname or IP address"),
        ));
    }
    Ok((host.to_string(), port, weight))
}

/// The upstream protocol and idle timeout from `HttpProtocolOptions`.
/// `round_robin_lb_config` / `least_request_lb_config` (taken from the cluster): their
/// `slow_start_config` (DestinationRule `warmupDurationSecs` / `warmup`); least request with
/// two choices only.
fn slow_start(
    c: &mut cds::Cluster,
    policy: LbPolicy,
) -> Result<Option<weft_lb::warmup::Config>, Reason> {
    use cds::cluster::LbConfig as L;
    let config = match (c.lb_config.take(), policy) {
        (None, _) => return Ok(None),
        (Some(L::RoundRobinLbConfig(r)), LbPolicy::RoundRobin) => r.slow_start_config,
        (Some(L::LeastRequestLbConfig(l)), LbPolicy::LeastRequest) => {
            if l.choice_count.is_some_and(|c| c.value != 2) {
                return Err(Reason::Unsupported(
                    "least_request_lb_config.choice_count other than 2".into(),
                ));
            }
            if l.active_request_bias.is_some() {
                return Err(Reason::Unsupported(
                    "least_request_lb_config.active_request_bias".into(),
                ));
            }
            l.slow_start_config
        }
        (Some(other), _) => {
            // Put it back for the leftover check to name.
            c.lb_config = Some(other);
            return Ok(None);
        }
    };
    let Some(config) = config else {
        return Ok(None);
    };
    let window = duration(
        "slow_start_config.slow_start_window",
        config.slow_start_window.as_ref(),
    )?
    .unwrap_or_default();
    let defaults = weft_lb::warmup::Config::default();
    Ok(Some(weft_lb::warmup::Config {
        window,
        aggression: config
            .aggression
            .map_or(defaults.aggression, |a| a.default_value),
        min_weight_percent: config
            .min_weight_percent
            .map_or(defaults.min_weight_percent, |p| p.value),
    })
    .filter(weft_lb::warmup::Config::is_enabled))
}

/// A consistent-hash balancer's settings, checked (ring sizes, a prime Maglev table).
fn hash_policy_config(config: weft_lb::hash::HashConfig) -> Result<LbPolicy, Reason> {
    config
        .validate()
        .map_err(|e| invalid(format!("lb_config ({})", e.field()), e.to_string()))?;
    Ok(LbPolicy::Hash(config))
}

/// `transport_socket` and `transport_socket_matches` of a cluster, taken out of it.
fn cluster_tls(c: &mut cds::Cluster) -> Result<ClusterTls, Reason> {
    let default = match c.transport_socket.take() {
        Some(socket) => {
            upstream_socket(socket).map_err(|r| invalid("transport_socket", r.to_string()))?
        }
        None => None,
    };
    let mut matches = Vec::new();
    for (i, m) in take(&mut c.transport_socket_matches)
        .into_iter()
        .enumerate()
    {
        let field = format!("transport_socket_matches[{i}]");
        let mut labels = BTreeMap::new();
        for (key, value) in m.r#match.map(|s| s.fields).unwrap_or_default() {
            match value.kind {
                Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(text)) => {
                    labels.insert(key, text);
                }
                _ => return Err(invalid(format!("{field}.match.{key}"), "must be a string")),
            }
        }
        let socket = m.transport_socket.ok_or(Reason::Missing(
            "transport_socket_matches[].transport_socket",
        ))?;
        let tls = upstream_socket(socket).map_err(|r| invalid(&field, r.to_string()))?;
        matches.push(SocketMatch {
            name: m.name,
            labels,
            tls,
        });
    }
    Ok(ClusterTls { matches, default })
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

/// The service of a cluster for the metrics: the first of Istio's `istio.services` metadata
/// (string fields `host`, `name`, `namespace`), else the host of an `outbound|…|host` name;
/// `unknown` for the rest (passthrough, black hole). Metadata of another shape is ignored:
/// it is observability only.
fn istio_service(name: &str, metadata: Option<&core::Metadata>) -> crate::metrics::Service {
    use envoy_types::pb::google::protobuf::value::Kind;
    use weft_xds::contract::{ISTIO_METADATA, ISTIO_METADATA_SERVICES};
    let first = metadata
        .and_then(|m| m.filter_metadata.get(ISTIO_METADATA))
        .and_then(|istio| istio.fields.get(ISTIO_METADATA_SERVICES))
        .and_then(|services| match &services.kind {
            Some(Kind::ListValue(list)) => list.values.first(),
            _ => None,
        })
        .and_then(|service| match &service.kind {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        });
    if let Some(service) = first {
        let text = |key: &str| match service.fields.get(key).and_then(|v| v.kind.as_ref()) {
            Some(Kind::StringValue(s)) => s.clone(),
            _ => String::new(),
        };
        let host = text("host");
        if !host.is_empty() {
            let derived = crate::metrics::ServiceLabels::from_host(&host);
            let or =
                |given: String, derived: String| if given.is_empty() { derived } else { given };
            return crate::metrics::Service::new(crate::metrics::ServiceLabels {
                name: or(text("name"), derived.name),
                namespace: or(text("namespace"), derived.namespace),
                host,
            });
        }
    }
    match name.split('|').collect::<Vec<_>>().as_slice() {
        ["outbound", _, _, host] if !host.is_empty() => {
            crate::metrics::Service::new(crate::metrics::ServiceLabels::from_host(host))
        }
        _ => crate::metrics::Service::unknown(),
    }
}
