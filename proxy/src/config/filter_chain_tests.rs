use super::*;

#[test]
fn a_chain_match_needs_inspection_only_for_what_bytes_tell() {
    let by_destination = ChainMatch {
        destination_port: Some(3306),
        ..ChainMatch::default()
    };
    assert!(!by_destination.needs_inspection());
    for m in [
        ChainMatch {
            transport_protocol: Some(TransportProtocol::Tls),
            ..ChainMatch::default()
        },
        ChainMatch {
            server_names: vec!["a".into()],
            ..ChainMatch::default()
        },
        ChainMatch {
            application_protocols: vec!["h2c".into()],
            ..ChainMatch::default()
        },
    ] {
        assert!(m.needs_inspection(), "{m:?}");
    }
}

#[test]
fn tcp_proxy_idle_timeout_follows_envoy() {
    let proxy = |idle: Option<(i64, i32)>| tcp::TcpProxy {
        stat_prefix: "s".into(),
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster("c".into())),
        idle_timeout: idle
            .map(|(seconds, nanos)| envoy_types::pb::google::protobuf::Duration { seconds, nanos }),
        ..Default::default()
    };
    let (clusters, idle, logs) = tcp_proxy(proxy(None)).unwrap();
    assert_eq!(
        (clusters, idle),
        (
            vec![TcpCluster {
                name: "c".to_string(),
                weight: 1
            }],
            Some(DEFAULT_TCP_IDLE_TIMEOUT)
        )
    );
    assert!(logs.is_empty());
    assert_eq!(tcp_proxy(proxy(Some((0, 0)))).unwrap().1, None);
    assert_eq!(
        tcp_proxy(proxy(Some((30, 0)))).unwrap().1,
        Some(Duration::from_secs(30))
    );
    let mut attempts = proxy(None);
    attempts.max_connect_attempts =
        Some(envoy_types::pb::google::protobuf::UInt32Value { value: 3 });
    assert!(
        tcp_proxy(attempts)
            .unwrap_err()
            .to_string()
            .contains("max_connect_attempts")
    );
}

/// A tcp_proxy with `weighted_clusters` of these (name, weight) pairs.
fn weighted(entries: &[(&str, u32)]) -> tcp::TcpProxy {
    use tcp::tcp_proxy::weighted_cluster::ClusterWeight;
    tcp::TcpProxy {
        stat_prefix: "s".into(),
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(
            tcp::tcp_proxy::WeightedCluster {
                clusters: entries
                    .iter()
                    .map(|(name, weight)| ClusterWeight {
                        name: name.to_string(),
                        weight: *weight,
                        ..Default::default()
                    })
                    .collect(),
            },
        )),
        ..Default::default()
    }
}

#[test]
fn tcp_proxy_weighted_clusters_are_picked_by_weight() {
    let (clusters, _, _) = tcp_proxy(weighted(&[
        ("outbound|9000|v1|tcp-echo", 80),
        ("outbound|9000|v2|tcp-echo", 20),
    ]))
    .unwrap();
    let t = TcpProxy {
        peer_exchange: false,
        rbac: Vec::new(),
        clusters,
        idle_timeout: None,
        stats: None,
        access_logs: Vec::new().into(),
    };
    assert_eq!(t.total_weight(), 100);
    assert_eq!(
        t.describe(),
        "outbound|9000|v1|tcp-echo:80,outbound|9000|v2|tcp-echo:20"
    );
    // Points 0..80 fall on the first entry, 80..100 on the second.
    assert_eq!(
        (t.pick(0), t.pick(79), t.pick(80), t.pick(99)),
        (0, 0, 1, 1)
    );
    let shares = (0..100).filter(|p| t.pick(*p) == 1).count();
    assert_eq!(shares, 20);
}

#[test]
fn tcp_proxy_weighted_clusters_are_checked_as_envoy_does() {
    let err = |t: tcp::TcpProxy| tcp_proxy(t).unwrap_err().to_string();
    assert!(err(weighted(&[])).contains("weighted_clusters.clusters"));
    assert!(err(weighted(&[("a", 1), ("", 1)])).contains("weighted_clusters.clusters[1].name"));
    assert!(err(weighted(&[("a", 1), ("b", 0)])).contains("weighted_clusters.clusters[1].weight"));
    assert!(err(weighted(&[("a", u32::MAX), ("b", 1)])).contains("overflows"));
    let mut subset = weighted(&[("a", 1)]);
    if let Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(w)) =
        &mut subset.cluster_specifier
    {
        w.clusters[0].metadata_match = Some(Default::default());
    }
    // An empty message is still "set": the field is named.
    assert!(err(subset).contains("metadata_match"));
}

fn filter(name: &str, any: envoy_types::pb::google::protobuf::Any) -> lds::Filter {
    lds::Filter {
        name: name.into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(any)),
    }
}

fn pack<M: prost::Name>(m: &M) -> envoy_types::pb::google::protobuf::Any {
    envoy_types::pb::google::protobuf::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn exchange(protocol: &str) -> lds::Filter {
    filter(
        METADATA_EXCHANGE,
        pack(&MetadataExchange {
            protocol: protocol.into(),
            enable_discovery: true,
        }),
    )
}

fn to_cluster() -> tcp::TcpProxy {
    tcp::TcpProxy {
        stat_prefix: "s".into(),
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster("c".into())),
        ..Default::default()
    }
}

#[test]
fn the_metadata_exchange_filter_turns_the_exchange_on() {
    let tcp_filter = || filter(TCP_PROXY, pack(&to_cluster()));
    let rbac = || filter(NETWORK_RBAC, pack(&net_rbac::Rbac::default()));
    let Network::Tcp(on) = network(
        "filters",
        vec![exchange("istio-peer-exchange"), rbac(), tcp_filter()],
    )
    .unwrap() else {
        panic!("a TCP chain")
    };
    assert!(on.peer_exchange);
    assert_eq!(on.rbac.len(), 1);
    let Network::Tcp(off) = network("filters", vec![tcp_filter()]).unwrap() else {
        panic!("a TCP chain")
    };
    assert!(!off.peer_exchange);

    // Another protocol is refused, naming the field.
    let err = network("filters", vec![exchange("istio"), tcp_filter()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("filters[0].istio.metadata_exchange.protocol"),
        "{err}"
    );
    // Only first: after RBAC it is refused.
    let err = network(
        "filters",
        vec![rbac(), exchange("istio-peer-exchange"), tcp_filter()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("filters[1]"), "{err}");
    // Alone, it is no chain.
    assert!(network("filters", vec![exchange("istio-peer-exchange")]).is_err());
}

#[test]
fn tcp_access_logs_are_converted_and_bad_ones_refused() {
    use envoy_types::pb::envoy::config::accesslog::v3 as accesslog;
    use envoy_types::pb::envoy::extensions::access_loggers::file::v3 as file;
    let log = |path: &str| accesslog::AccessLog {
        name: "envoy.access_loggers.file".into(),
        config_type: Some(accesslog::access_log::ConfigType::TypedConfig(pack(
            &file::FileAccessLog {
                path: path.into(),
                ..Default::default()
            },
        ))),
        ..Default::default()
    };
    let mut t = to_cluster();
    t.access_log = vec![log("/dev/stdout")];
    let (_, _, logs) = tcp_proxy(t).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].path, "/dev/stdout");
    let mut t = to_cluster();
    t.access_log = vec![log("/dev/stdout"), log("")];
    let err = tcp_proxy(t).unwrap_err().to_string();
    assert!(err.contains("access_log[1]"), "{err}");
}
