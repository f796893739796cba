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
    assert_eq!(
        tcp_proxy(proxy(None)).unwrap(),
        ("c".to_string(), Some(DEFAULT_TCP_IDLE_TIMEOUT))
    );
    assert_eq!(tcp_proxy(proxy(Some((0, 0)))).unwrap().1, None);
    assert_eq!(
        tcp_proxy(proxy(Some((30, 0)))).unwrap().1,
        Some(Duration::from_secs(30))
    );
    let mut weighted = proxy(None);
    weighted.cluster_specifier = Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(
        Default::default(),
    ));
    assert!(
        tcp_proxy(weighted)
            .unwrap_err()
            .to_string()
            .contains("weighted_clusters")
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
