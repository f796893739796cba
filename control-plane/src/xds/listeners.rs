//! LDS: the `virtualOutbound` listener, and `virtualInbound` when the proxy has an app port
//! (with the security filters of [`super::security`] and the local rate limits of
//! [`super::ratelimit`] before its router, and the filter chains
//! of its PeerAuthentication mode, [`super::tls::inbound`]); for a proxy whose traffic is
//! captured, the capture shape's listeners ([`super::capture`]).

use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, TrafficDirection, address, socket_address,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;

use super::proxy::Proxy;
use super::{ads_config_source, capture, duration, pack, ratelimit, routes, security, tls};
use crate::model::Model;

/// Name of the outbound listener.
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
/// Name of the inbound listener.
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
/// Filter names shared with the proxy (weft-xds's contract module).
pub use weft_xds::contract::{HTTP_CONNECTION_MANAGER, ROUTER, TCP_PROXY};
/// The upgrade type of Istio's `upgrade_configs` (Envoy's name for WebSocket upgrades).
pub const WEBSOCKET: &str = "websocket";
/// HTTP/1.1 `CONNECT` tunnels (Envoy's upgrade type for them).
pub const CONNECT: &str = "CONNECT";

/// All listeners of a proxy: the capture shape ([`capture`]) when its traffic is captured.
/// Each says its `traffic_direction` (`virtualInbound` INBOUND, `virtualOutbound` OUTBOUND),
/// as Istio's do: the proxy reports inbound requests as their destination, the others as
/// their source (Istio's metrics' `reporter`).
pub fn listeners(model: &Model, proxy: &Proxy) -> Vec<Listener> {
    let mut listeners = if proxy.capture {
        capture::listeners(model, proxy)
    } else {
        explicit_listeners(model, proxy)
    };
    for listener in &mut listeners {
        let direction = match listener.name.as_str() {
            VIRTUAL_INBOUND => TrafficDirection::Inbound,
            VIRTUAL_OUTBOUND => TrafficDirection::Outbound,
            _ => TrafficDirection::Unspecified,
        };
        listener.traffic_direction = direction as i32;
        super::access_log::apply(model, proxy, listener);
        super::trace::apply(model, proxy, listener);
        super::stats::apply(model, proxy, listener);
    }
    listeners
}

/// Changes every TCP proxy of `listener` (its chains' and the default chain's) with `change`,
/// re-packing each (see [`for_each_hcm`]).
pub fn for_each_tcp_proxy(listener: &mut Listener, change: impl FnMut(&mut TcpProxy)) {
    for_each_filter(listener, TCP_PROXY, change);
}

/// Changes every HTTP connection manager of `listener` (its chains' and the default chain's)
/// with `change`, re-packing each: how the telemetry settings (access logs, tracing, metrics)
/// reach the connection managers built before them.
pub fn for_each_hcm(listener: &mut Listener, change: impl FnMut(&mut HttpConnectionManager)) {
    for_each_filter(listener, HTTP_CONNECTION_MANAGER, change);
}

/// Changes every network filter named `name` of `listener`, decoded as `M`, re-packing each.
fn for_each_filter<M: prost::Message + prost::Name + Default>(
    listener: &mut Listener,
    name: &str,
    mut change: impl FnMut(&mut M),
) {
    let chains = listener
        .filter_chains
        .iter_mut()
        .chain(listener.default_filter_chain.as_mut());
    for chain in chains {
        for f in &mut chain.filters {
            if f.name != name {
                continue;
            }
            let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                continue;
            };
            let Ok(mut config) = M::decode(any.value.as_slice()) else {
                continue;
            };
            change(&mut config);
            *any = pack(&config);
        }
    }
}

/// The listeners of a proxy that clients address explicitly (local mode, the demo).
fn explicit_listeners(model: &Model, proxy: &Proxy) -> Vec<Listener> {
    let timeouts = Timeouts {
        stream_idle: model.stream_idle_timeout,
    };
    let mut listeners = vec![http_listener(
        VIRTUAL_OUTBOUND,
        proxy.listen_ip(),
        proxy.outbound_port,
        routes::OUTBOUND,
        timeouts,
        vec![
            super::route_cors::cors_filter(),
            super::route_policy::fault_filter(),
        ],
    )];
    if let Some(app_port) = proxy.app_port {
        let mut filters = security::inbound_http_filters(model, proxy);
        filters.extend(ratelimit::inbound_rate_limit_filters(
            model,
            proxy,
            u32::from(app_port),
        ));
        let inbound = http_listener(
            VIRTUAL_INBOUND,
            proxy.listen_ip(),
            proxy.inbound_port,
            &routes::inbound_name(app_port),
            timeouts,
            filters,
        );
        // The PeerAuthentication mode: TLS and/or plaintext chains with this connection manager.
        listeners.push(tls::inbound::secure(model, proxy, app_port, inbound));
    }
    listeners
}

/// The connection manager timeouts the controller sets.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    stream_idle: std::time::Duration,
}

/// One listener with one filter chain: an HTTP connection manager (codec AUTO) that
/// fetches its routes over ADS, with `filters` and then the router filter.
///
/// Timeouts: `stream_idle_timeout` always, from `--stream-idle-timeout` (Envoy's 5 min by
/// default; Istio sends `0s`, see [`crate::model::DEFAULT_STREAM_IDLE_TIMEOUT`]). Neither
/// `request_headers_timeout` nor `common_http_protocol_options` is set, as in Istio, so
/// the proxy's defaults apply (docs/LIMITS.md). WebSocket upgrades are carried, as on every
/// connection manager Istio generates (`upgrade_configs: [{upgrade_type: websocket}]`), and
/// so are `CONNECT` tunnels (`{upgrade_type: CONNECT}`; Istio leaves them out, so an app's
/// CONNECT to its forward proxy fails on a port detected as HTTP; Weft's proxy routes a
/// CONNECT by its authority and forwards it).
fn http_listener(
    name: &str,
    ip: &str,
    port: u16,
    route_config_name: &str,
    timeouts: Timeouts,
    filters: Vec<HttpFilter>,
) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(socket(ip, u32::from(port))),
        filter_chains: vec![FilterChain {
            filters: vec![connection_manager(
                name,
                route_config_name,
                timeouts,
                filters,
            )],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The HTTP connection manager filter of a capturing proxy's filter chain, as
/// [`http_listener`] builds it: codec AUTO, `stat_prefix`, routes `route_config_name` over ADS,
/// `filters` and then the router, the stream idle timeout of `model`, WebSocket upgrades.
pub fn http_connection_manager(
    model: &Model,
    stat_prefix: &str,
    route_config_name: &str,
    filters: Vec<HttpFilter>,
) -> Filter {
    let timeouts = Timeouts {
        stream_idle: model.stream_idle_timeout,
    };
    connection_manager(stat_prefix, route_config_name, timeouts, filters)
}

fn connection_manager(
    stat_prefix: &str,
    route_config_name: &str,
    timeouts: Timeouts,
    mut filters: Vec<HttpFilter>,
) -> Filter {
    filters.push(HttpFilter {
        name: ROUTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &Router::default(),
        ))),
        ..Default::default()
    });
    let manager = HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_string(),
        stream_idle_timeout: Some(duration(timeouts.stream_idle)),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route_config_name.to_string(),
        })),
        http_filters: filters,
        upgrade_configs: [WEBSOCKET, CONNECT]
            .map(|kind| http_connection_manager::UpgradeConfig {
                upgrade_type: kind.to_string(),
                ..Default::default()
            })
            .into(),
        ..Default::default()
    };
    Filter {
        name: HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&manager))),
    }
}

/// A TCP socket address.
pub fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            protocol: socket_address::Protocol::Tcp as i32,
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MeshSettings;
    use prost::Message;

    #[test]
    fn stream_idle_timeout_comes_from_the_settings() {
        let proxy = Proxy::sidecar("default");
        for (setting, seconds) in [
            (std::time::Duration::ZERO, 0),
            (std::time::Duration::from_secs(42), 42),
        ] {
            let settings = MeshSettings {
                stream_idle_timeout: setting,
                ..MeshSettings::default()
            };
            for listener in listeners(&Model::empty(&settings), &proxy) {
                let timeout = manager(&listener).stream_idle_timeout.expect("always set");
                assert_eq!((timeout.seconds, timeout.nanos), (seconds, 0));
            }
        }
    }

    fn manager(listener: &Listener) -> HttpConnectionManager {
        let filter = &listener.filter_chains[0].filters[0];
        assert_eq!(filter.name, HTTP_CONNECTION_MANAGER);
        let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
            panic!("typed config expected");
        };
        assert!(any.type_url.ends_with("HttpConnectionManager"));
        HttpConnectionManager::decode(any.value.as_slice()).expect("decodes")
    }

    fn socket_of(listener: &Listener) -> (String, u32) {
        let Some(address::Address::SocketAddress(socket)) =
            listener.address.as_ref().and_then(|a| a.address.as_ref())
        else {
            panic!("socket address expected");
        };
        let Some(socket_address::PortSpecifier::PortValue(port)) = socket.port_specifier else {
            panic!("port expected");
        };
        (socket.address.clone(), port)
    }

    #[test]
    fn outbound_only_without_app_port() {
        let proxy = Proxy::sidecar("default");
        let listeners = listeners(&Model::empty(&MeshSettings::default()), &proxy);
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, VIRTUAL_OUTBOUND);
        assert_eq!(socket_of(&listeners[0]), ("0.0.0.0".to_string(), 15001));
        let hcm = manager(&listeners[0]);
        assert_eq!(
            hcm.codec_type,
            http_connection_manager::CodecType::Auto as i32
        );
        let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
            panic!("rds expected");
        };
        assert_eq!(rds.route_config_name, "outbound");
        assert!(rds.config_source.is_some());
        let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                weft_xds::contract::CORS,
                weft_xds::contract::FAULT,
                weft_xds::stats::STATS_FILTER,
                ROUTER
            ]
        );
        // Envoy's stream idle timeout sent explicitly; the other timeouts left unset.
        assert_eq!(
            hcm.stream_idle_timeout,
            Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 300,
                nanos: 0
            })
        );
        assert_eq!(hcm.request_headers_timeout, None);
        assert_eq!(hcm.common_http_protocol_options, None);
    }

    #[test]
    fn every_connection_manager_carries_websocket_upgrades_and_connect() {
        let mut proxy = Proxy::sidecar("default");
        proxy.app_port = Some(9080);
        let listeners = listeners(&Model::empty(&MeshSettings::default()), &proxy);
        assert_eq!(listeners.len(), 2);
        for listener in &listeners {
            let hcm = manager(listener);
            let kinds: Vec<_> = (hcm.upgrade_configs.iter())
                .map(|u| u.upgrade_type.as_str())
                .collect();
            assert_eq!(kinds, ["websocket", "CONNECT"], "{}", listener.name);
            for upgrade in &hcm.upgrade_configs {
                // Enabled by default, as Istio sends it; no upgrade-specific filters.
                assert_eq!(upgrade.enabled, None);
                assert!(upgrade.filters.is_empty());
            }
        }
    }

    #[test]
    fn inbound_with_app_port_on_instance_ip() {
        let mut proxy = Proxy::sidecar("default");
        proxy.app_port = Some(9080);
        proxy.inbound_port = 16006;
        proxy.instance_ips = vec!["127.0.0.2".to_string()];
        let listeners = listeners(&Model::empty(&MeshSettings::default()), &proxy);
        assert_eq!(listeners.len(), 2);
        assert_eq!(socket_of(&listeners[0]), ("127.0.0.2".to_string(), 15001));
        assert_eq!(listeners[1].name, VIRTUAL_INBOUND);
        assert_eq!(socket_of(&listeners[1]), ("127.0.0.2".to_string(), 16006));
        let hcm = manager(&listeners[1]);
        let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
            panic!("rds expected");
        };
        assert_eq!(rds.route_config_name, "inbound|9080");
    }
}
