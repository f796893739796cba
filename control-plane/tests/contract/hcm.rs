//! The HTTP connection manager's timeouts and upgrades across the contract: what the
//! controller sends (`stream_idle_timeout` from `--stream-idle-timeout`, Envoy's 5 min by
//! default; the others unset, as Istio; `upgrade_configs`: websocket and CONNECT) and
//! what Istio can send for them.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::google::protobuf::{BoolValue, Duration as PbDuration};
use prost::Message;
use weft_proxy::ConfigStore;
use weft_proxy::config::{HttpManager, Listener, Network};
use weft_xds::{Resource, type_url, version_of};

use super::check::{APP_PORT, ConfigCase, Generated, ProxySpec, controller_proxy, free_ports};
use super::fixtures::config_from;
use super::isolation_yaml;

/// The listeners the controller generates for a proxy with an app port (`virtualOutbound`,
/// `virtualInbound`), and the rest of its config.
fn generated() -> Generated {
    let spec = ProxySpec {
        label: "server".to_string(),
        namespace: "default".to_string(),
        labels: vec![("app".to_string(), "contract".to_string())],
        app_port: Some(APP_PORT),
        capture: None,
    };
    let case = ConfigCase::local(
        "isolation v1",
        config_from(&[("v1.yaml", &isolation_yaml(1))]),
    );
    let (outbound_port, inbound_port) = free_ports();
    let generated = Generated::new(
        &case.model(),
        &controller_proxy(&spec, outbound_port, inbound_port),
    );
    assert_eq!(
        generated.listeners.len(),
        2,
        "virtualOutbound and virtualInbound"
    );
    generated
}

/// Changes the connection manager of every chain of a listener (the inbound listener's TLS
/// and plaintext chains carry the same manager).
fn with_manager(resource: &mut Resource, change: &dyn Fn(&mut HttpConnectionManager)) {
    let mut listener = lds::Listener::decode(resource.body.value.as_slice()).expect("decodes");
    for chain in &mut listener.filter_chains {
        let Some(lds::filter::ConfigType::TypedConfig(any)) = &mut chain.filters[0].config_type
        else {
            panic!("{}: typed connection manager config", resource.name);
        };
        let mut manager = HttpConnectionManager::decode(any.value.as_slice()).expect("decodes");
        change(&mut manager);
        any.value = manager.encode_to_vec();
    }
    *resource = Resource::new(&resource.name, &listener);
}

/// The connection manager of the listener's first HTTP chain, converted by the proxy (its
/// error when the listener is rejected).
fn try_convert(resource: &Resource) -> Result<HttpManager, String> {
    let listener = lds::Listener::decode(resource.body.value.as_slice()).expect("decodes");
    let mut listener = Listener::try_from(listener).map_err(|err| err.to_string())?;
    let chain = listener.chains.remove(0);
    match chain.network {
        Network::Http(manager) => Ok(*manager),
        Network::Tcp(_) => panic!("{}: HTTP chain expected", resource.name),
    }
}

fn convert(resource: &Resource) -> HttpManager {
    try_convert(resource).unwrap_or_else(|err| panic!("{}: {err}", resource.name))
}

/// Applies the generated config to a proxy's store; all of it must be ACKed and ready.
fn apply(generated: &Generated) -> std::sync::Arc<weft_proxy::config::ProxyConfig> {
    let mut store = ConfigStore::new();
    for (type_url, resources) in [
        (type_url::CLUSTER, &generated.clusters),
        (type_url::ENDPOINT, &generated.endpoints),
        (type_url::LISTENER, &generated.listeners),
        (type_url::ROUTE, &generated.routes),
    ] {
        let bodies = resources.iter().map(|r| r.body.clone()).collect();
        store
            .apply_response(type_url, &version_of(resources), bodies)
            .unwrap_or_else(|err| panic!("{type_url}: {err}"));
    }
    let config = store.current();
    assert!(config.ready(), "{:?}", config.not_ready_reason());
    config
}

/// The `upgrade_configs` on every connection manager (outbound and inbound, so a tunnel
/// crosses both sidecars): Istio's websocket and Weft's CONNECT reach the proxy as carried;
/// `enabled: false` turns each off; an upgrade type the proxy does not carry is refused
/// naming the field.
#[tokio::test]
async fn connection_manager_upgrades_reach_the_proxy() {
    let mut generated = generated();
    for resource in &mut generated.listeners {
        with_manager(resource, &|m| {
            let kinds: Vec<_> = m
                .upgrade_configs
                .iter()
                .map(|u| u.upgrade_type.clone())
                .collect();
            assert_eq!(kinds, ["websocket", "CONNECT"]);
        });
        let manager = convert(resource);
        assert!(manager.websocket && manager.connect, "{}", resource.name);
    }
    let config = apply(&generated);
    for listener in config.listeners.values() {
        for (_, manager) in listener.config.http_managers() {
            assert!(manager.websocket, "{} in force", listener.config.name);
            assert!(manager.connect, "{} in force", listener.config.name);
        }
    }

    for resource in &mut generated.listeners {
        let original = resource.clone();
        for (index, off) in [(0, "websocket"), (1, "CONNECT")] {
            with_manager(resource, &|m| {
                m.upgrade_configs[index].enabled = Some(BoolValue { value: false });
            });
            let manager = convert(resource);
            let (websocket, connect) = (manager.websocket, manager.connect);
            assert_eq!(
                (websocket, connect),
                (off != "websocket", off != "CONNECT"),
                "{}: {off} disabled",
                resource.name
            );
            *resource = original.clone();
        }
        with_manager(resource, &|m| {
            m.upgrade_configs[1].upgrade_type = "h2c".to_string();
        });
        let err = try_convert(resource).expect_err("h2c is not carried");
        assert!(
            err.contains(r#"upgrade_configs[1].upgrade_type "h2c" is not supported"#),
            "{}: {err}",
            resource.name
        );
        *resource = original;
    }
}

/// The connection manager's timeouts: what the controller sends (the stream idle timeout,
/// the others unset) reaches the proxy as that, and the values Istio can send
/// for them (`ISTIO_META_IDLE_TIMEOUT`, ProxyConfig connection settings, an EnvoyFilter) are
/// applied, not refused, and the store ACKs them.
#[tokio::test]
async fn connection_manager_timeouts_reach_the_proxy() {
    let mut generated = generated();
    for resource in &mut generated.listeners {
        // As generated: what Istio sends.
        with_manager(resource, &|m| {
            assert_eq!(
                m.stream_idle_timeout,
                Some(PbDuration {
                    seconds: 300,
                    nanos: 0
                }),
                "stream_idle_timeout: Envoy's default, sent explicitly"
            );
            assert_eq!(m.request_headers_timeout, None);
            assert_eq!(m.common_http_protocol_options, None);
        });
        let listener = convert(resource);
        assert_eq!(
            listener.stream_idle_timeout,
            Some(Duration::from_secs(300)),
            "{}: 5 min",
            resource.name
        );
        assert_eq!(listener.request_headers_timeout, None, "{}", resource.name);
        assert_eq!(
            listener.idle_timeout,
            Some(Duration::from_secs(3600)),
            "{}: Envoy's default",
            resource.name
        );

        // Istio's own `0s` (the controller's `--stream-idle-timeout 0s`): disabled.
        with_manager(resource, &|m| {
            m.stream_idle_timeout = Some(PbDuration::default());
        });
        assert_eq!(convert(resource).stream_idle_timeout, None);

        // What Istio sends when they are configured.
        with_manager(resource, &|m| {
            m.stream_idle_timeout = Some(PbDuration {
                seconds: 300,
                nanos: 0,
            });
            m.request_headers_timeout = Some(PbDuration {
                seconds: 10,
                nanos: 0,
            });
            m.common_http_protocol_options = Some(HttpProtocolOptions {
                idle_timeout: Some(PbDuration {
                    seconds: 30,
                    nanos: 0,
                }),
                ..Default::default()
            });
        });
        let listener = convert(resource);
        assert_eq!(listener.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(
            listener.request_headers_timeout,
            Some(Duration::from_secs(10))
        );
        assert_eq!(listener.idle_timeout, Some(Duration::from_secs(30)));
    }
    let config = apply(&generated);
    for listener in config.listeners.values() {
        for (_, manager) in listener.config.http_managers() {
            assert_eq!(
                manager.stream_idle_timeout,
                Some(Duration::from_secs(300)),
                "{} in force",
                listener.config.name
            );
        }
    }
}
