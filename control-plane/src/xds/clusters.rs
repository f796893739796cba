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

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, Metadata,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use tracing::debug;
use weft_api::networking::Subset;

pub use super::cluster_policy::{
    ClusterPolicy, DEFAULT_MIN_RETRY_CONCURRENCY, DEFAULT_RETRY_BUDGET_PERCENT, cluster_policy,
    lb_policy,
};
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
            clusters.extend(outbound_cluster(
                model,
                service,
                port,
                rule,
                None,
                proxy.capture,
            ));
            if let Some(rule) = rule {
                for subset in &rule.spec.subsets {
                    clusters.extend(outbound_cluster(
                        model,
                        service,
                        port,
                        Some(rule),
                        Some(subset),
                        proxy.capture,
                    ));
                }
            }
        }
    }
    if proxy.capture {
        clusters.extend(capture::clusters::clusters(model, proxy));
    } else if let Some(app_port) = proxy.app_port {
        let mut inbound = inbound_cluster(proxy, app_port);
        inbound.metadata = Some(istio_metadata(capture::workload_services(
            model, proxy, None,
        )));
        clusters.push(inbound);
    }
    clusters
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
    captured: bool,
) -> Option<Cluster> {
    let name = outbound_cluster_name(
        port.number,
        subset
            .map(|subset| subset.name.as_str())
            .unwrap_or_default(),
        &service.hostname,
    );
    let policy = cluster_policy(rule, subset, port.number);
    let (outlier_detection, mut common_lb_config) = policy.outlier_detection();
    let locality = super::locality_lb::effective(policy.locality_lb.as_ref());
    if super::locality_lb::locality_weighted(locality.as_ref(), outlier_detection.is_some()) {
        common_lb_config
            .get_or_insert_with(Default::default)
            .locality_config_specifier = Some(
            cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                cluster::common_lb_config::LocalityWeightedLbConfig {},
            ),
        );
    }
    let mut common = Cluster {
        name: name.clone(),
        connect_timeout: Some(duration(policy.connect_timeout())),
        lb_policy: policy.lb_policy as i32,
        lb_config: policy.lb_config(),
        circuit_breakers: Some(policy.circuit_breakers()),
        outlier_detection,
        common_lb_config,
        typed_extension_protocol_options: policy.protocol_options(port.is_http2()),
        upstream_connection_options: policy.upstream_connection_options(),
        ..Default::default()
    };
    let upstream_tls = tls::upstream::upstream_tls(model, service, port, rule, subset);
    if upstream_tls.is_mesh() {
        common.filters = vec![super::metadata_exchange::cluster_filter()];
    }
    upstream_tls.apply(&mut common);
    common.metadata = Some(istio_metadata([service]));
    // `PASSTHROUGH` (Istio): to the address the caller connected to, as a captured sidecar
    // knows it; a sidecar addressed explicitly has no such address, and balances as usual.
    if policy.passthrough && captured {
        return Some(Cluster {
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32,
            )),
            lb_policy: cluster::LbPolicy::ClusterProvided as i32,
            lb_config: None,
            outlier_detection: None,
            common_lb_config: None,
            ..common
        });
    }
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
    protocol_options_with(http2, None, Http2ProtocolOptions::default())
}

/// [`protocol_options`] with the connection pool's `common_http_protocol_options` and HTTP/2
/// options (`max_concurrent_streams`, `connection_keepalive`), the latter also for
/// connections that follow the downstream's protocol.
pub fn protocol_options_with(
    http2: bool,
    common: Option<envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions>,
    h2: Http2ProtocolOptions,
) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let upstream = if http2 {
        http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(
                    http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                        h2,
                    ),
                ),
            },
        )
    } else {
        http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            http_protocol_options::UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(h2),
                ..Default::default()
            },
        )
    };
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(upstream),
        common_http_protocol_options: common,
        ..Default::default()
    };
    HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_string(), pack(&options))])
}

#[cfg(test)]
#[path = "clusters_tests.rs"]
mod tests;

/// Istio's service metadata on a cluster (`filter_metadata.istio.services`: `host`, `name`,
/// `namespace` of each service behind it), from which the proxy's metrics take the
/// `destination_service*` labels. A Kubernetes Service's name is its own; a ServiceEntry's
/// is its host, as in Istio.
pub fn istio_metadata<'a>(services: impl IntoIterator<Item = &'a Service>) -> Metadata {
    use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let services = services
        .into_iter()
        .map(|service| {
            let name = if service.source.kind == "Service" {
                service.source.name.as_str()
            } else {
                service.hostname.as_str()
            };
            let fields = [
                ("host", text(&service.hostname)),
                ("name", text(name)),
                ("namespace", text(&service.namespace)),
            ];
            Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                })),
            }
        })
        .collect();
    let istio = Struct {
        fields: [(
            weft_xds::contract::ISTIO_METADATA_SERVICES.to_string(),
            Value {
                kind: Some(Kind::ListValue(ListValue { values: services })),
            },
        )]
        .into_iter()
        .collect(),
    };
    Metadata {
        filter_metadata: [(weft_xds::contract::ISTIO_METADATA.to_string(), istio)]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}
