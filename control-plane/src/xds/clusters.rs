//! CDS: one outbound cluster per service port and DestinationRule subset, plus the static
//! inbound cluster that forwards to the app. Outbound clusters are `EDS` for services with
//! [`Resolution::Static`]; for DNS resolutions they are `STRICT_DNS` (`DNS`) or
//! `LOGICAL_DNS` (`DNS_ROUND_ROBIN`) with their endpoints inline, as Istio builds them
//! (see [`dns_cluster_fields`]). Outbound clusters get their transport security (auto mTLS,
//! DestinationRule TLS) from [`tls::upstream`]. Only the services the proxy's Sidecar lets it
//! see get clusters; a proxy whose traffic is captured gets the capture shape's clusters
//! ([`capture::clusters`]) instead of the static inbound one.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use tracing::debug;
use weft_api::networking::{ConnectionPoolSettings, RetryBudget, SimpleLb, Subset, TrafficPolicy};

use super::endpoints::lb_endpoints;
use super::listeners::socket;
use super::proxy::Proxy;
use super::{
    ads_config_source, capture, duration, inbound_cluster_name, outbound_cluster_name, pack, tls,
};
use crate::model::{DestinationRuleEntry, Model};
use crate::service::{Resolution, Service, ServicePort};

/// Key of the upstream HTTP protocol options in `typed_extension_protocol_options`.
pub use weft_xds::contract::HTTP_PROTOCOL_OPTIONS;
/// Connect timeout when the DestinationRule does not set one (Istio's default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// All clusters of a proxy.
pub fn clusters(model: &Model, proxy: &Proxy) -> Vec<Cluster> {
    let mut clusters = Vec::new();
    for service in model.services_for(&proxy.namespace, &proxy.labels) {
        let rule = model.destination_rule(&service.hostname);
        for port in &service.ports {
            clusters.extend(outbound_cluster(model, service, port, rule, None));
            if let Some(rule) = rule {
                for subset in &rule.spec.subsets {
                    clusters.extend(outbound_cluster(
                        model,
                        service,
                        port,
                        Some(rule),
                        Some(subset),
                    ));
                }
            }
        }
    }
    if proxy.capture {
        clusters.extend(capture::clusters::clusters(model, proxy));
    } else if let Some(app_port) = proxy.app_port {
        clusters.push(inbound_cluster(proxy, app_port));
    }
    clusters
}

/// The settings a cluster gets from its DestinationRule (and subset).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPolicy {
    pub lb_policy: cluster::LbPolicy,
    pub connect_timeout: Duration,
    /// `connectionPool.http.maxRetries`: retries in flight (Istio's default: no limit).
    pub max_retries: u32,
    /// `retryBudget` (Weft's default: 20 % of the requests, at least 3 per window).
    pub retry_budget: RetryBudget,
}

impl Default for ClusterPolicy {
    fn default() -> Self {
        Self {
            lb_policy: cluster::LbPolicy::LeastRequest,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_retries: u32::MAX,
            retry_budget: RetryBudget::default(),
        }
    }
}

impl ClusterPolicy {
    /// The cluster's `circuit_breakers`: its retry limits.
    pub fn circuit_breakers(&self) -> CircuitBreakers {
        let budget = &self.retry_budget;
        CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_retries: Some(UInt32Value {
                    value: self.max_retries,
                }),
                retry_budget: Some(circuit_breakers::thresholds::RetryBudget {
                    budget_percent: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                        value: budget.percent.unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT),
                    }),
                    min_retry_concurrency: Some(UInt32Value {
                        value: budget
                            .min_retry_concurrency
                            .unwrap_or(DEFAULT_MIN_RETRY_CONCURRENCY),
                    }),
                    budget_interval: budget.budget_interval.map(|d| duration(d.0)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// The share of requests retries may add when a DestinationRule sets no `retryBudget`.
pub const DEFAULT_RETRY_BUDGET_PERCENT: f64 = 20.0;
/// The retries every budget window allows when a DestinationRule sets none.
pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

/// The effective policy for one port of a service: the rule's traffic policy, its
/// port-level settings, then the subset's traffic policy and its port-level settings,
/// each overriding what it sets.
pub fn cluster_policy(
    rule: Option<&DestinationRuleEntry>,
    subset: Option<&Subset>,
    port: u32,
) -> ClusterPolicy {
    let mut policy = ClusterPolicy::default();
    let levels = [
        rule.and_then(|rule| rule.spec.traffic_policy.as_ref()),
        subset.and_then(|subset| subset.traffic_policy.as_ref()),
    ];
    for traffic_policy in levels.into_iter().flatten() {
        apply(&mut policy, traffic_policy, port);
    }
    policy
}

fn apply(policy: &mut ClusterPolicy, traffic_policy: &TrafficPolicy, port: u32) {
    apply_settings(
        policy,
        traffic_policy
            .load_balancer
            .as_ref()
            .and_then(|lb| lb.simple),
        traffic_policy.connection_pool.as_ref(),
    );
    if let Some(budget) = &traffic_policy.retry_budget {
        policy.retry_budget = budget.clone();
    }
    for level in &traffic_policy.port_level_settings {
        if level
            .port
            .as_ref()
            .is_some_and(|selector| selector.number == port)
        {
            apply_settings(
                policy,
                level.load_balancer.as_ref().and_then(|lb| lb.simple),
                level.connection_pool.as_ref(),
            );
        }
    }
}

fn apply_settings(
    policy: &mut ClusterPolicy,
    simple: Option<SimpleLb>,
    pool: Option<&ConnectionPoolSettings>,
) {
    if let Some(simple) = simple {
        policy.lb_policy = lb_policy(simple);
    }
    let tcp = pool.and_then(|pool| pool.tcp.as_ref());
    if let Some(timeout) = tcp.and_then(|tcp| tcp.connect_timeout) {
        policy.connect_timeout = timeout.0;
    }
    // Validation keeps it positive; Istio's 0 means "unset".
    if let Some(max) = pool
        .and_then(|pool| pool.http.as_ref())
        .and_then(|http| http.max_retries)
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m > 0)
    {
        policy.max_retries = max;
    }
}

/// Istio's mapping of `loadBalancer.simple`: LEAST_CONN is LEAST_REQUEST; unspecified
/// and PASSTHROUGH (not supported, warned about) keep the default LEAST_REQUEST.
pub fn lb_policy(simple: SimpleLb) -> cluster::LbPolicy {
    match simple {
        SimpleLb::RoundRobin => cluster::LbPolicy::RoundRobin,
        SimpleLb::Random => cluster::LbPolicy::Random,
        SimpleLb::LeastConn
        | SimpleLb::LeastRequest
        | SimpleLb::Unspecified
        | SimpleLb::Passthrough => cluster::LbPolicy::LeastRequest,
    }
}

/// The outbound cluster of a service port, or of one subset of it. `None` for a DNS
/// cluster without endpoints (Istio leaves those out too: Envoy cannot build a
/// `LOGICAL_DNS` cluster without its one endpoint; a route to it gets 503 "no cluster").
pub fn outbound_cluster(
    model: &Model,
    service: &Service,
    port: &ServicePort,
    rule: Option<&DestinationRuleEntry>,
    subset: Option<&Subset>,
) -> Option<Cluster> {
    let name = outbound_cluster_name(
        port.number,
        subset
            .map(|subset| subset.name.as_str())
            .unwrap_or_default(),
        &service.hostname,
    );
    let policy = cluster_policy(rule, subset, port.number);
    let mut common = Cluster {
        name: name.clone(),
        connect_timeout: Some(duration(policy.connect_timeout)),
        lb_policy: policy.lb_policy as i32,
        circuit_breakers: Some(policy.circuit_breakers()),
        typed_extension_protocol_options: protocol_options(port.is_http2()),
        ..Default::default()
    };
    tls::upstream::upstream_tls(model, service, port, rule, subset).apply(&mut common);
    let discovery_type = match service.resolution {
        Resolution::Static => {
            return Some(Cluster {
                cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Eds as i32,
                )),
                eds_cluster_config: Some(cluster::EdsClusterConfig {
                    eds_config: Some(ads_config_source()),
                    service_name: name,
                }),
                ..common
            });
        }
        Resolution::Dns => cluster::DiscoveryType::StrictDns,
        Resolution::DnsRoundRobin => cluster::DiscoveryType::LogicalDns,
    };
    let no_labels = Default::default();
    let labels = subset.map_or(&no_labels, |subset| &subset.labels);
    let lb_endpoints = lb_endpoints(service, port, labels);
    if lb_endpoints.is_empty() {
        debug!(cluster = %name, "DNS cluster without endpoints; not sent");
        return None;
    }
    Some(Cluster {
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..dns_cluster_fields(discovery_type, model.dns_refresh_rate, common)
    })
}

/// The fields every DNS cluster gets on top of `base`: the discovery type
/// (`STRICT_DNS` or `LOGICAL_DNS`), `dns_lookup_family: V4_ONLY` and `dns_refresh_rate`
/// (`--dns-refresh-rate`). `respect_dns_ttl` stays unset (false): the proxy re-resolves at
/// the refresh rate whatever the records' TTL.
// Envoy deprecates `Cluster.dns_refresh_rate` in favour of the `envoy.clusters.dns`
// extension's own field, but still honours it, and Istio still sets it; so does Weft.
#[allow(deprecated)]
pub fn dns_cluster_fields(
    discovery_type: cluster::DiscoveryType,
    refresh_rate: Duration,
    base: Cluster,
) -> Cluster {
    Cluster {
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery_type as i32)),
        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
        dns_refresh_rate: Some(duration(refresh_rate)),
        ..base
    }
}

/// The static cluster that forwards inbound requests to the app.
pub fn inbound_cluster(proxy: &Proxy, app_port: u16) -> Cluster {
    let name = inbound_cluster_name(app_port);
    let ip = proxy
        .instance_ips
        .first()
        .map_or("127.0.0.1", String::as_str);
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(ip, u32::from(app_port))),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        typed_extension_protocol_options: protocol_options(false),
        ..Default::default()
    }
}

/// Upstream protocol: h2c for HTTP2/GRPC ports, else whatever the downstream used.
pub fn protocol_options(http2: bool) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let upstream = if http2 {
        http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(
                    http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    ),
                ),
            },
        )
    } else {
        http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            http_protocol_options::UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            },
        )
    };
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(upstream),
        ..Default::default()
    };
    HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_string(), pack(&options))])
}

#[cfg(test)]
#[path = "clusters_tests.rs"]
mod tests;
