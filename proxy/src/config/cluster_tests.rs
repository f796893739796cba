use super::*;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as upstream_http;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use prost::Message;
use weft_xds::contract::HTTP_PROTOCOL_OPTIONS_TYPE_URL as HTTP_PROTOCOL_OPTIONS_TYPE;

fn ads() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            Default::default(),
        )),
        ..Default::default()
    }
}

fn eds_cluster(name: &str) -> cds::Cluster {
    cds::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cds::cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        connect_timeout: Some(PbDuration {
            seconds: 10,
            nanos: 0,
        }),
        lb_policy: cds::cluster::LbPolicy::LeastRequest as i32,
        ..Default::default()
    }
}

fn lb_endpoint(port: u32, status: core::HealthStatus) -> eds::LbEndpoint {
    eds::LbEndpoint {
        health_status: status as i32,
        load_balancing_weight: Some(UInt32Value { value: 2 }),
        host_identifier: Some(eds::lb_endpoint::HostIdentifier::Endpoint(eds::Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "10.0.0.1".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn reject(c: cds::Cluster) -> String {
    ClusterConfig::try_from(c).unwrap_err().to_string()
}

#[test]
fn converts_eds_cluster_with_h2_options() {
    let mut c = eds_cluster("outbound|9080||reviews");
    let opts = upstream_http::HttpProtocolOptions {
        upstream_protocol_options: Some(upstream_http::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            upstream_http::http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Default::default(),
                )),
            },
        )),
        ..Default::default()
    };
    c.typed_extension_protocol_options.insert(
        HTTP_PROTOCOL_OPTIONS.into(),
        Any {
            type_url: HTTP_PROTOCOL_OPTIONS_TYPE.into(),
            value: opts.encode_to_vec(),
        },
    );
    let c = ClusterConfig::try_from(c).unwrap();
    assert_eq!(
        c.discovery,
        DiscoveryKind::Eds("outbound|9080||reviews".into())
    );
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest);
    assert_eq!(c.protocol, UpstreamProtocol::Http2);
    assert_eq!(c.connect_timeout, Duration::from_secs(10));
}

#[test]
fn static_cluster_uses_load_assignment() {
    let mut c = eds_cluster("inbound|9080||");
    c.cluster_discovery_type = Some(cds::cluster::ClusterDiscoveryType::Type(
        cds::cluster::DiscoveryType::Static as i32,
    ));
    c.eds_cluster_config = None;
    c.load_assignment = Some(eds::ClusterLoadAssignment {
        cluster_name: "inbound|9080||".into(),
        endpoints: vec![eds::LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint(9080, core::HealthStatus::Unknown)],
            ..Default::default()
        }],
        ..Default::default()
    });
    let c = ClusterConfig::try_from(c).unwrap();
    let DiscoveryKind::Static(a) = c.discovery else {
        panic!()
    };
    assert_eq!(a.endpoints, vec![("10.0.0.1:9080".parse().unwrap(), 2)]);
}

#[test]
fn rejects_unsupported_cluster_settings() {
    let mut c = eds_cluster("c");
    c.lb_policy = cds::cluster::LbPolicy::ClusterProvided as i32;
    assert_eq!(
        reject(c),
        r#"cluster "c": lb_policy "CLUSTER_PROVIDED" is not supported by weft-proxy"#
    );
    // Consistent hashing takes a valid table: a Maglev table size must be prime.
    let mut c = eds_cluster("c");
    c.lb_policy = cds::cluster::LbPolicy::Maglev as i32;
    c.lb_config = Some(cds::cluster::LbConfig::MaglevLbConfig(
        cds::cluster::MaglevLbConfig {
            table_size: Some(envoy_types::pb::google::protobuf::UInt64Value { value: 100 }),
        },
    ));
    assert!(
        reject(c).contains("table_size"),
        "a table size that is not prime"
    );
    // Slow start with a least-request balancer of three choices is not what the proxy does.
    let mut c = eds_cluster("c");
    c.lb_config = Some(cds::cluster::LbConfig::LeastRequestLbConfig(
        cds::cluster::LeastRequestLbConfig {
            choice_count: Some(UInt32Value { value: 3 }),
            ..Default::default()
        },
    ));
    assert!(reject(c).contains("choice_count"));
    let mut c = eds_cluster("c");
    c.transport_socket = Some(Default::default());
    assert!(
        reject(c).contains("transport_socket: transport_socket.name \"\" is not supported"),
        "a transport socket without a known name is rejected, naming the field"
    );
    let mut c = eds_cluster("c");
    c.circuit_breakers = Some(cds::CircuitBreakers {
        per_host_thresholds: vec![Default::default()],
        ..Default::default()
    });
    assert!(reject(c).contains("per_host_thresholds"));
    let mut c = eds_cluster("c");
    c.cluster_discovery_type = Some(cds::cluster::ClusterDiscoveryType::Type(
        cds::cluster::DiscoveryType::StrictDns as i32,
    ));
    // A DNS cluster needs its hostnames inline.
    assert!(reject(c).contains("load_assignment is required"), "{}", {
        let mut c = eds_cluster("c");
        c.cluster_discovery_type = Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::StrictDns as i32,
        ));
        reject(c)
    });
    let mut c = eds_cluster("c");
    c.cluster_discovery_type = Some(cds::cluster::ClusterDiscoveryType::Type(
        cds::cluster::DiscoveryType::OriginalDst as i32,
    ));
    assert!(reject(c).contains("ORIGINAL_DST"));
    let mut c = eds_cluster("c");
    c.eds_cluster_config = Some(cds::cluster::EdsClusterConfig {
        eds_config: None,
        service_name: String::new(),
    });
    assert!(reject(c).contains("only ads"));
    let mut c = eds_cluster("c");
    c.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions".into(),
        Any::default(),
    );
    assert!(reject(c).contains("TcpProtocolOptions"));
    let mut c = eds_cluster("c");
    c.close_connections_on_host_health_failure = true;
    assert!(reject(c).contains("cluster field #"));
}

#[test]
fn assignment_drops_unhealthy_endpoints_and_checks_levels() {
    let cla = eds::ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints: vec![eds::LocalityLbEndpoints {
            lb_endpoints: vec![
                lb_endpoint(1, core::HealthStatus::Healthy),
                lb_endpoint(2, core::HealthStatus::Unhealthy),
                lb_endpoint(3, core::HealthStatus::Draining),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let a = Assignment::try_from(cla.clone()).unwrap();
    assert_eq!(a.endpoints.len(), 1);
    assert_eq!(a.groups.len(), 1);
    assert_eq!(a.groups[0].endpoints, 0..1);
    // Priority levels are taken (priority.rs balances over them).
    let mut p = cla.clone();
    p.endpoints[0].priority = 1;
    assert!(Assignment::try_from(p).unwrap().has_priorities());
    let rejected =
        |cla: eds::ClusterLoadAssignment| Assignment::try_from(cla).unwrap_err().to_string();
    let mut p = cla.clone();
    p.endpoints[0].priority = 1000;
    let e = rejected(p);
    assert!(
        e.contains(r#"cluster load assignment "c": endpoints[0].priority: 1000 is over"#),
        "{e}"
    );
    let mut w = cla.clone();
    w.endpoints[0].load_balancing_weight = Some(UInt32Value { value: 0 });
    let e = rejected(w);
    assert!(
        e.contains("endpoints[0].load_balancing_weight: must be at least 1"),
        "{e}"
    );
    let mut o = cla.clone();
    o.policy = Some(eds::cluster_load_assignment::Policy {
        overprovisioning_factor: Some(UInt32Value { value: 200 }),
        ..Default::default()
    });
    assert_eq!(
        Assignment::try_from(o.clone())
            .unwrap()
            .overprovisioning_factor,
        200
    );
    o.policy.as_mut().unwrap().endpoint_stale_after = Some(PbDuration {
        seconds: 1,
        nanos: 0,
    });
    let e = rejected(o);
    assert!(e.contains("policy.endpoint_stale_after"), "{e}");
}

#[test]
fn locality_weighting_is_taken_and_zone_aware_routing_refused() {
    use cds::cluster::common_lb_config::{
        LocalityConfigSpecifier, LocalityWeightedLbConfig, ZoneAwareLbConfig,
    };
    let mut c = eds_cluster("c");
    c.common_lb_config = Some(cds::cluster::CommonLbConfig {
        locality_config_specifier: Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig {},
        )),
        ..Default::default()
    });
    assert!(
        ClusterConfig::try_from(c.clone())
            .unwrap()
            .locality_weighted
    );
    assert!(
        !ClusterConfig::try_from(eds_cluster("c"))
            .unwrap()
            .locality_weighted
    );
    c.common_lb_config = Some(cds::cluster::CommonLbConfig {
        locality_config_specifier: Some(LocalityConfigSpecifier::ZoneAwareLbConfig(
            ZoneAwareLbConfig::default(),
        )),
        ..Default::default()
    });
    assert!(reject(c).contains("common_lb_config.zone_aware_lb_config is not supported"));
}

fn dns_cluster(kind: cds::cluster::DiscoveryType, hosts: &[(&str, u32)]) -> cds::Cluster {
    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::envoy::config::endpoint::v3 as eds;
    #[allow(deprecated)]
    cds::Cluster {
        name: "dns".into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(kind as i32)),
        dns_lookup_family: cds::cluster::DnsLookupFamily::V4Only as i32,
        dns_refresh_rate: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 30,
            nanos: 0,
        }),
        load_assignment: Some(eds::ClusterLoadAssignment {
            cluster_name: "dns".into(),
            endpoints: vec![eds::LocalityLbEndpoints {
                lb_endpoints: hosts
                    .iter()
                    .map(|(h, p)| eds::LbEndpoint {
                        host_identifier: Some(eds::lb_endpoint::HostIdentifier::Endpoint(
                            eds::Endpoint {
                                address: Some(core::Address {
                                    address: Some(core::address::Address::SocketAddress(
                                        core::SocketAddress {
                                            address: h.to_string(),
                                            port_specifier: Some(
                                                core::socket_address::PortSpecifier::PortValue(*p),
                                            ),
                                            ..Default::default()
                                        },
                                    )),
                                }),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn dns_clusters_convert_with_hostnames() {
    use crate::upstream::dns::{DnsKind, LookupFamily};
    let c = ClusterConfig::try_from(dns_cluster(
        cds::cluster::DiscoveryType::StrictDns,
        &[("example.com", 443), ("10.0.0.1", 80)],
    ))
    .unwrap();
    let DiscoveryKind::Dns(t) = c.discovery else {
        panic!("{:?}", c.discovery)
    };
    assert_eq!(t.kind, DnsKind::Strict);
    assert_eq!(t.family, LookupFamily::V4Only);
    assert_eq!(t.refresh, std::time::Duration::from_secs(30));
    assert_eq!(
        t.hosts,
        vec![("example.com".into(), 443, 1), ("10.0.0.1".into(), 80, 1)]
    );
}

#[test]
fn dns_cluster_mistakes_name_the_field() {
    let err = ClusterConfig::try_from(dns_cluster(
        cds::cluster::DiscoveryType::LogicalDns,
        &[("a.example", 80), ("b.example", 80)],
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("exactly one endpoint"), "{err}");
    let err = ClusterConfig::try_from(dns_cluster(
        cds::cluster::DiscoveryType::StrictDns,
        &[("bad host!", 80)],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("lb_endpoints[0]") && err.contains("not a hostname"),
        "{err}"
    );
    let mut c = dns_cluster(cds::cluster::DiscoveryType::StrictDns, &[("a.example", 80)]);
    #[allow(deprecated)]
    {
        c.respect_dns_ttl = true;
    }
    let err = ClusterConfig::try_from(c).unwrap_err().to_string();
    assert!(err.contains("respect_dns_ttl"), "{err}");
}

#[test]
fn the_metadata_exchange_is_the_only_upstream_filter() {
    use weft_xds::metadata_exchange::MetadataExchange;
    let exchange = |protocol: &str| cds::Filter {
        name: "istio.metadata_exchange".into(),
        typed_config: Some(Any {
            type_url: weft_xds::contract::METADATA_EXCHANGE_TYPE_URL.into(),
            value: MetadataExchange {
                protocol: protocol.into(),
                enable_discovery: true,
            }
            .encode_to_vec(),
        }),
        ..Default::default()
    };
    let plain = ClusterConfig::try_from(eds_cluster("a")).unwrap();
    assert!(!plain.peer_exchange);
    let mut c = eds_cluster("a");
    c.filters = vec![exchange("istio-peer-exchange")];
    assert!(ClusterConfig::try_from(c).unwrap().peer_exchange);

    let mut c = eds_cluster("a");
    c.filters = vec![exchange("h2")];
    let err = ClusterConfig::try_from(c).unwrap_err().to_string();
    assert!(
        err.contains("filters[0].istio.metadata_exchange.protocol"),
        "{err}"
    );
    let mut c = eds_cluster("a");
    c.filters = vec![
        exchange("istio-peer-exchange"),
        cds::Filter {
            name: "envoy.filters.network.upstream.other".into(),
            typed_config: Some(Any {
                type_url: "type.googleapis.com/other.Config".into(),
                value: vec![],
            }),
            ..Default::default()
        },
    ];
    let err = ClusterConfig::try_from(c).unwrap_err().to_string();
    assert!(err.contains("filters[1]"), "{err}");
}
