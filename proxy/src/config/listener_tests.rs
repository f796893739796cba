use super::*;
use crate::config::{Codec, HttpManager, RouteSource, TransportProtocol};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use prost::Message;

/// The connection manager of the listener's first chain.
fn http(l: &Listener) -> &HttpManager {
    match &l.chains[0].network {
        Network::Http(m) => m,
        Network::Tcp(_) => panic!("HTTP chain expected"),
    }
}

pub(crate) fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn router() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: ROUTER_FILTER.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(Any {
            type_url: ROUTER_TYPE.into(),
            value: vec![],
        })),
        ..Default::default()
    }
}

fn manager() -> hcm::HttpConnectionManager {
    hcm::HttpConnectionManager {
        stat_prefix: "outbound".into(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                route_config_name: "outbound".into(),
                config_source: Some(core::ConfigSource {
                    config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                        Default::default(),
                    )),
                    ..Default::default()
                }),
            },
        )),
        http_filters: vec![router()],
        ..Default::default()
    }
}

fn listener(m: hcm::HttpConnectionManager) -> lds::Listener {
    lds::Listener {
        name: "virtualOutbound".into(),
        address: Some(socket("0.0.0.0", 15001)),
        filter_chains: vec![lds::FilterChain {
            filters: vec![lds::Filter {
                name: HCM_FILTER.into(),
                config_type: Some(lds::filter::ConfigType::TypedConfig(Any {
                    type_url: HCM_TYPE.into(),
                    value: m.encode_to_vec(),
                })),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn reject(l: lds::Listener) -> String {
    Listener::try_from(l).unwrap_err().to_string()
}

#[test]
fn converts_istio_style_listener() {
    let l = Listener::try_from(listener(manager())).unwrap();
    assert_eq!(l.address, "0.0.0.0:15001".parse().unwrap());
    assert!(matches!(&http(&l).routes, RouteSource::Rds(n) if n == "outbound"));
    assert_eq!(http(&l).codec, Codec::Auto);
    assert!(http(&l).generate_request_id);
    // Envoy's defaults when the connection manager says nothing.
    assert_eq!(http(&l).stream_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(http(&l).request_headers_timeout, None);
    assert_eq!(http(&l).idle_timeout, Some(Duration::from_secs(3600)));
}

fn pb(seconds: i64, nanos: i32) -> Option<PbDuration> {
    Some(PbDuration { seconds, nanos })
}

#[test]
fn applies_hcm_timeouts() {
    let mut m = manager();
    m.stream_idle_timeout = pb(2, 500_000_000);
    m.request_headers_timeout = pb(10, 0);
    m.common_http_protocol_options = Some(core::HttpProtocolOptions {
        idle_timeout: pb(60, 0),
        ..Default::default()
    });
    let l = Listener::try_from(listener(m)).unwrap();
    assert_eq!(
        http(&l).stream_idle_timeout,
        Some(Duration::from_millis(2500))
    );
    assert_eq!(
        http(&l).request_headers_timeout,
        Some(Duration::from_secs(10))
    );
    assert_eq!(http(&l).idle_timeout, Some(Duration::from_secs(60)));

    // 0 disables each of them (Istio sends stream_idle_timeout: 0s).
    let mut m = manager();
    m.stream_idle_timeout = pb(0, 0);
    m.request_headers_timeout = pb(0, 0);
    m.common_http_protocol_options = Some(core::HttpProtocolOptions {
        idle_timeout: pb(0, 0),
        ..Default::default()
    });
    let l = Listener::try_from(listener(m)).unwrap();
    assert_eq!(http(&l).stream_idle_timeout, None);
    assert_eq!(http(&l).request_headers_timeout, None);
    assert_eq!(http(&l).idle_timeout, None);

    // Protocol options without an idle timeout keep its default.
    let mut m = manager();
    m.common_http_protocol_options = Some(Default::default());
    let l = Listener::try_from(listener(m)).unwrap();
    assert_eq!(http(&l).idle_timeout, Some(Duration::from_secs(3600)));
}

#[test]
fn rejects_bad_or_unapplied_hcm_timeouts() {
    let mut m = manager();
    m.stream_idle_timeout = pb(-1, 0);
    let e = reject(listener(m));
    assert!(
        e.contains("http_connection_manager.stream_idle_timeout: -1s 0ns is not a valid duration"),
        "{e}"
    );
    let mut m = manager();
    m.request_headers_timeout = pb(1, -5);
    let e = reject(listener(m));
    assert!(
        e.contains("http_connection_manager.request_headers_timeout:"),
        "{e}"
    );
    let mut m = manager();
    m.common_http_protocol_options = Some(core::HttpProtocolOptions {
        idle_timeout: pb(60, 0),
        max_connection_duration: pb(60, 0),
        ..Default::default()
    });
    let e = reject(listener(m));
    assert!(
        e.contains("common_http_protocol_options settings other than idle_timeout"),
        "{e}"
    );
    // Timeouts the proxy does not apply yet are still refused.
    let mut m = manager();
    m.request_timeout = pb(5, 0);
    assert!(reject(listener(m)).contains("request_timeout is not supported"));
    let mut m = manager();
    m.drain_timeout = pb(5, 0);
    assert!(reject(listener(m)).contains("http_connection_manager field #"));
}

#[test]
fn rejects_unknown_network_filter_and_extra_http_filters() {
    let mut l = listener(manager());
    l.filter_chains[0].filters[0].config_type = Some(lds::filter::ConfigType::TypedConfig(Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy"
            .into(),
        value: vec![],
    }));
    let e = reject(l);
    assert!(
        e.starts_with(r#"listener "virtualOutbound": filter_chains[0].filters[0]"#)
            && e.contains("RedisProxy"),
        "{e}"
    );

    let mut m = manager();
    m.http_filters.insert(
        0,
        hcm::HttpFilter {
            name: "envoy.filters.http.lua".into(),
            ..Default::default()
        },
    );
    assert!(reject(listener(m)).contains("envoy.filters.http.lua"));
}

fn tcp_filter(cluster: &str) -> lds::Filter {
    lds::Filter {
        name: weft_xds::contract::TCP_PROXY.into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(Any {
            type_url: weft_xds::contract::TCP_PROXY_TYPE_URL.into(),
            value: tcp::TcpProxy {
                stat_prefix: cluster.into(),
                cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
                ..Default::default()
            }
            .encode_to_vec(),
        })),
    }
}

fn inspector(name: &str, type_url: &str) -> lds::ListenerFilter {
    lds::ListenerFilter {
        name: name.into(),
        config_type: Some(lds::listener_filter::ConfigType::TypedConfig(Any {
            type_url: type_url.into(),
            value: vec![],
        })),
        ..Default::default()
    }
}

/// Istio's virtualOutbound: original destination, inspectors, an HTTP chain per port, a TCP
/// chain per service address, and the passthrough default chain.
fn capture_listener() -> lds::Listener {
    let mut l = listener(manager());
    l.listener_filters = vec![
        inspector(ORIGINAL_DST, ORIGINAL_DST_TYPE_URL),
        inspector(TLS_INSPECTOR, TLS_INSPECTOR_TYPE_URL),
        inspector(HTTP_INSPECTOR, HTTP_INSPECTOR_TYPE_URL),
    ];
    l.listener_filters_timeout = pb(0, 100_000_000);
    l.continue_on_listener_filters_timeout = true;
    l.filter_chains[0].name = "0.0.0.0_9080".into();
    l.filter_chains[0].filter_chain_match = Some(lds::FilterChainMatch {
        destination_port: Some(UInt32Value { value: 9080 }),
        ..Default::default()
    });
    l.filter_chains.push(lds::FilterChain {
        name: "10.96.0.10_3306".into(),
        filter_chain_match: Some(lds::FilterChainMatch {
            destination_port: Some(UInt32Value { value: 3306 }),
            prefix_ranges: vec![core::CidrRange {
                address_prefix: "10.96.0.10".into(),
                prefix_len: Some(UInt32Value { value: 32 }),
            }],
            ..Default::default()
        }),
        filters: vec![tcp_filter("outbound|3306||mysql.default.svc.cluster.local")],
        ..Default::default()
    });
    l.default_filter_chain = Some(lds::FilterChain {
        name: "PassthroughFilterChain".into(),
        filters: vec![tcp_filter("PassthroughCluster")],
        ..Default::default()
    });
    l
}

#[test]
fn converts_capture_listener_with_tcp_and_default_chains() {
    let l = Listener::try_from(capture_listener()).unwrap();
    assert!(l.original_dst);
    assert_eq!(
        l.inspectors,
        Inspectors {
            tls: true,
            http: true,
            timeout: Some(Duration::from_millis(100)),
            continue_on_timeout: true
        }
    );
    assert_eq!(l.chains.len(), 3);
    assert_eq!(l.default_chain(), Some(2));
    assert_eq!(l.chains[0].matcher.destination_port, Some(9080));
    assert!(matches!(&http(&l).routes, RouteSource::Rds(n) if n == "outbound"));
    let Network::Tcp(t) = &l.chains[1].network else {
        panic!("TCP chain expected")
    };
    assert_eq!(
        t.describe(),
        "outbound|3306||mysql.default.svc.cluster.local"
    );
    assert_eq!(t.idle_timeout, Some(Duration::from_secs(3600)));
    assert!(t.rbac.is_empty());
    assert_eq!(l.chains[1].matcher.prefix_ranges.len(), 1);
    let Network::Tcp(t) = &l.chains[2].network else {
        panic!("TCP chain expected")
    };
    assert_eq!(t.describe(), "PassthroughCluster");
    assert_eq!(l.http_managers().count(), 1);
    // Envoy's defaults: 15 s for the listener filters, close on timeout.
    let mut pb = capture_listener();
    pb.listener_filters_timeout = None;
    pb.continue_on_listener_filters_timeout = false;
    let l = Listener::try_from(pb).unwrap();
    assert_eq!(l.inspectors.timeout, Some(Duration::from_secs(15)));
    assert!(!l.inspectors.continue_on_timeout);
}

#[test]
fn rejects_bad_tcp_proxies_and_chain_layouts() {
    // A TCP proxy without a cluster, or before another filter.
    let mut l = capture_listener();
    l.filter_chains[1].filters = vec![tcp_filter("")];
    assert!(
        reject(l).contains("filter_chains[1].filters[0].envoy.filters.network.tcp_proxy.cluster")
    );
    let mut l = capture_listener();
    l.filter_chains[1].filters.push(tcp_filter("x"));
    assert!(
        reject(l).contains("filter_chains[1].filters"),
        "TCP proxy must be last"
    );
    let mut l = capture_listener();
    l.filter_chains[1].filters = vec![];
    assert!(reject(l).contains("a chain needs"));
    // Two chains with the same match: no connection could take the second.
    let mut l = capture_listener();
    l.filter_chains.push(l.filter_chains[1].clone());
    assert!(reject(l).contains("the same match as an earlier chain"));
    // The default chain takes no match.
    let mut l = capture_listener();
    l.default_filter_chain.as_mut().unwrap().filter_chain_match = Some(lds::FilterChainMatch {
        destination_port: Some(UInt32Value { value: 1 }),
        ..Default::default()
    });
    assert!(reject(l).contains("the default chain takes no match"));
    // Source matches are not supported.
    let mut l = capture_listener();
    l.filter_chains[1]
        .filter_chain_match
        .as_mut()
        .unwrap()
        .source_ports = vec![1];
    assert!(reject(l).contains("source_ports is not supported"));
    // Port 0 is not a port; a prefix must be an IP.
    let mut l = capture_listener();
    l.filter_chains[0]
        .filter_chain_match
        .as_mut()
        .unwrap()
        .destination_port = Some(UInt32Value { value: 70000 });
    assert!(reject(l).contains("70000 is not a port"));
    let mut l = capture_listener();
    l.filter_chains[1]
        .filter_chain_match
        .as_mut()
        .unwrap()
        .prefix_ranges[0]
        .address_prefix = "mysql".into();
    assert!(reject(l).contains("prefix_ranges[0].address_prefix"));
    // A listener filter twice, with settings, or unknown.
    let mut l = capture_listener();
    l.listener_filters
        .push(inspector(HTTP_INSPECTOR, HTTP_INSPECTOR_TYPE_URL));
    assert!(reject(l).contains("appears twice"));
    let mut l = capture_listener();
    l.listener_filters.push(Default::default());
    assert!(reject(l).contains("listener_filters[].name"));
    // Application protocols need an inspector.
    let mut l = capture_listener();
    l.listener_filters.truncate(1);
    l.filter_chains[0]
        .filter_chain_match
        .as_mut()
        .unwrap()
        .application_protocols = vec!["http/1.1".into()];
    assert!(reject(l).contains("application_protocols need"));
}

#[test]
fn rejects_bad_transport_sockets_and_transport_matches() {
    let mut l = listener(manager());
    l.filter_chains[0].transport_socket = Some(Default::default());
    let e = reject(l);
    assert!(e.contains("filter_chains[0].transport_socket"), "{e}");
    // A transport-protocol or server-name match needs the TLS inspector.
    for m in [
        lds::FilterChainMatch {
            transport_protocol: "raw_buffer".into(),
            ..Default::default()
        },
        lds::FilterChainMatch {
            server_names: vec!["a.example".into()],
            ..Default::default()
        },
    ] {
        let mut l = listener(manager());
        l.filter_chains[0].filter_chain_match = Some(m);
        let e = reject(l);
        assert!(
            e.contains("need the envoy.filters.listener.tls_inspector"),
            "{e}"
        );
    }
    let mut l = listener(manager());
    l.listener_filters = vec![inspector(TLS_INSPECTOR, TLS_INSPECTOR_TYPE_URL)];
    l.filter_chains[0].filter_chain_match = Some(lds::FilterChainMatch {
        transport_protocol: "quic".into(),
        ..Default::default()
    });
    assert!(reject(l).contains("only \"tls\" and \"raw_buffer\""));
    // Server names are matched lowercase.
    let mut l = listener(manager());
    l.listener_filters = vec![inspector(TLS_INSPECTOR, TLS_INSPECTOR_TYPE_URL)];
    l.filter_chains[0].filter_chain_match = Some(lds::FilterChainMatch {
        server_names: vec!["*.Example.COM".into()],
        transport_protocol: "tls".into(),
        ..Default::default()
    });
    let l = Listener::try_from(l).unwrap();
    assert_eq!(l.chains[0].matcher.server_names, ["*.example.com"]);
    assert_eq!(
        l.chains[0].matcher.transport_protocol,
        Some(TransportProtocol::Tls)
    );
}

#[test]
fn rejects_non_ads_rds_and_hcm_settings() {
    let mut m = manager();
    if let Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) = &mut m.route_specifier {
        r.config_source = None;
    }
    assert!(reject(listener(m)).contains("only ads"));
    let mut m = manager();
    m.use_remote_address = Some(Default::default());
    assert!(
        reject(listener(m)).contains("http_connection_manager.use_remote_address is not supported")
    );
}

#[test]
fn rejects_missing_or_bad_address() {
    let mut l = listener(manager());
    l.address = None;
    assert!(reject(l).contains("address is required"));
    let mut l = listener(manager());
    l.address = Some(socket("not-an-ip", 1));
    assert!(reject(l).contains("is not an IP address"));
}

fn upgrade(kind: &str, enabled: Option<bool>) -> hcm::http_connection_manager::UpgradeConfig {
    hcm::http_connection_manager::UpgradeConfig {
        upgrade_type: kind.into(),
        enabled: enabled.map(|value| envoy_types::pb::google::protobuf::BoolValue { value }),
        ..Default::default()
    }
}

fn with_upgrades(configs: Vec<hcm::http_connection_manager::UpgradeConfig>) -> lds::Listener {
    let mut m = manager();
    m.upgrade_configs = configs;
    listener(m)
}

#[test]
fn websocket_upgrade_config_enables_websocket() {
    // Istio's connection managers: one websocket entry, enabled by default.
    let l = Listener::try_from(with_upgrades(vec![upgrade("websocket", None)])).unwrap();
    assert!(http(&l).websocket);
    // The type is matched case-insensitively, as Envoy does.
    let l = Listener::try_from(with_upgrades(vec![upgrade("WebSocket", Some(true))])).unwrap();
    assert!(http(&l).websocket);
}

#[test]
fn websocket_is_off_without_an_upgrade_config_or_when_disabled() {
    let l = Listener::try_from(listener(manager())).unwrap();
    assert!(!http(&l).websocket);
    let l = Listener::try_from(with_upgrades(vec![upgrade("websocket", Some(false))])).unwrap();
    assert!(!http(&l).websocket);
}

#[test]
fn connect_upgrade_config_enables_connect_tunnels() {
    let l = Listener::try_from(with_upgrades(vec![
        upgrade("websocket", None),
        upgrade("CONNECT", None),
    ]))
    .unwrap();
    assert!(http(&l).websocket && http(&l).connect);
    let l = Listener::try_from(with_upgrades(vec![upgrade("connect", Some(false))])).unwrap();
    assert!(!http(&l).connect && !http(&l).websocket);
    let l = Listener::try_from(listener(manager())).unwrap();
    assert!(!http(&l).connect);
}

#[test]
fn other_upgrade_types_are_rejected_naming_the_field() {
    let e = reject(with_upgrades(vec![
        upgrade("websocket", None),
        upgrade("h2c", None),
    ]));
    assert!(
        e.contains(
            r#"http_connection_manager.upgrade_configs[1].upgrade_type "h2c" is not supported"#
        ),
        "{e}"
    );
    // A disabled type asks for nothing: accepted.
    let l = Listener::try_from(with_upgrades(vec![upgrade("h2c", Some(false))])).unwrap();
    assert!(!http(&l).websocket);
}

#[test]
fn malformed_upgrade_configs_are_rejected() {
    let e = reject(with_upgrades(vec![
        upgrade("websocket", None),
        upgrade("WEBSOCKET", Some(false)),
    ]));
    assert!(
        e.contains("upgrade_configs[1].upgrade_type") && e.contains("more than once"),
        "{e}"
    );
    let e = reject(with_upgrades(vec![upgrade("", None)]));
    assert!(
        e.contains("upgrade_configs[0].upgrade_type: is required"),
        "{e}"
    );
    let mut config = upgrade("websocket", None);
    config.filters = vec![router()];
    let e = reject(with_upgrades(vec![config]));
    assert!(
        e.contains("upgrade_configs[0].filters is not supported"),
        "{e}"
    );
}
