use super::*;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};

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
    assert!(matches!(&l.routes, RouteSource::Rds(n) if n == "outbound"));
    assert_eq!(l.codec, Codec::Auto);
    assert!(l.generate_request_id);
    // Envoy's defaults when the connection manager says nothing.
    assert_eq!(l.stream_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(l.request_headers_timeout, None);
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(3600)));
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
    assert_eq!(l.stream_idle_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(l.request_headers_timeout, Some(Duration::from_secs(10)));
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(60)));

    // 0 disables each of them (Istio sends stream_idle_timeout: 0s).
    let mut m = manager();
    m.stream_idle_timeout = pb(0, 0);
    m.request_headers_timeout = pb(0, 0);
    m.common_http_protocol_options = Some(core::HttpProtocolOptions {
        idle_timeout: pb(0, 0),
        ..Default::default()
    });
    let l = Listener::try_from(listener(m)).unwrap();
    assert_eq!(l.stream_idle_timeout, None);
    assert_eq!(l.request_headers_timeout, None);
    assert_eq!(l.idle_timeout, None);

    // Protocol options without an idle timeout keep its default.
    let mut m = manager();
    m.common_http_protocol_options = Some(Default::default());
    let l = Listener::try_from(listener(m)).unwrap();
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(3600)));
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
        type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
            .into(),
        value: vec![],
    }));
    let e = reject(l);
    assert!(
        e.starts_with(r#"listener "virtualOutbound": network filter"#) && e.contains("TcpProxy"),
        "{e}"
    );

    let mut m = manager();
    m.http_filters.insert(
        0,
        hcm::HttpFilter {
            name: "envoy.filters.http.fault".into(),
            ..Default::default()
        },
    );
    assert!(reject(listener(m)).contains("envoy.filters.http.fault"));
}

#[test]
fn rejects_bad_transport_sockets_listener_filters_and_chains() {
    let mut l = listener(manager());
    l.filter_chains[0].transport_socket = Some(Default::default());
    let e = reject(l);
    assert!(e.contains("filter_chains[0].transport_socket"), "{e}");
    let mut l = listener(manager());
    l.listener_filters.push(Default::default());
    let e = reject(l);
    assert!(e.contains("listener_filters[].name"), "{e}");
    // Two chains must be told apart by transport protocol.
    let mut l = listener(manager());
    l.filter_chains.push(l.filter_chains[0].clone());
    let e = reject(l);
    assert!(e.contains("one with transport_protocol \"tls\""), "{e}");
    // A transport-protocol match needs the TLS inspector.
    let mut l = listener(manager());
    l.filter_chains[0].filter_chain_match = Some(lds::FilterChainMatch {
        transport_protocol: "raw_buffer".into(),
        ..Default::default()
    });
    let e = reject(l);
    assert!(
        e.contains("needs the envoy.filters.listener.tls_inspector"),
        "{e}"
    );
    // Other matches are not supported.
    let mut l = listener(manager());
    l.filter_chains[0].filter_chain_match = Some(lds::FilterChainMatch {
        server_names: vec!["a.example".into()],
        ..Default::default()
    });
    let e = reject(l);
    assert!(e.contains("only transport_protocol"), "{e}");
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
