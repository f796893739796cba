use super::*;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::google::protobuf::Any;

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
fn rejects_transport_socket_and_listener_filters() {
    let mut l = listener(manager());
    l.filter_chains[0].transport_socket = Some(Default::default());
    assert!(reject(l).contains("transport_socket is not supported"));
    let mut l = listener(manager());
    l.listener_filters.push(Default::default());
    assert!(reject(l).contains("listener_filters is not supported"));
    let mut l = listener(manager());
    l.filter_chains.push(l.filter_chains[0].clone());
    assert!(reject(l).contains("exactly one filter chain"));
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
