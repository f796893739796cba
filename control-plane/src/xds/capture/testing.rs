//! Fixtures of the capture shape's tests: a mesh of Kubernetes Services (virtual IPs, port
//! protocols from names) and ServiceEntries, a capturing proxy in it, and readers that decode
//! the generated filters.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use prost::Message;
use serde_json::json;
use weft_xds::contract::{
    HTTP_CONNECTION_MANAGER, HTTP_CONNECTION_MANAGER_TYPE_URL, NETWORK_RBAC, NETWORK_RBAC_TYPE_URL,
    TCP_PROXY, TCP_PROXY_TYPE_URL,
};

use crate::model::{MeshSettings, Model};
use crate::source::Snapshot;
use crate::source::registry::{Pod, Registry, SERVICE_NAME_LABEL};
use crate::testing::config_from_yaml;
use crate::xds::Proxy;

/// The capturing proxy's pod IP.
pub const POD_IP: &str = "10.1.0.1";

/// ServiceEntries: `db.example.com` (TCP 5432 on an IP and a CIDR block), `api.example.com`
/// (undeclared 8000, no address), `details.other` (HTTP 9080, namespace `other`), and an IPv6
/// HTTP service `v6.example.com` on 8080.
pub const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-db, namespace: default}
spec:
  hosts: [db.example.com]
  addresses: [240.240.1.0/24, 240.240.0.1]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 8000, name: any}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details, namespace: other}
spec:
  hosts: [details.other.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.2.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: v6, namespace: default}
spec:
  hosts: [v6.example.com]
  addresses: ["2001:db8::10"]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: "2001:db8::1"}]
"#;

/// Kubernetes Services in `default`: `reviews` (HTTP 9080, 10.96.0.10), `db` (`tcp` 5432 and
/// `mysql` 3306, 10.96.0.20), `legacy` (undeclared `web` 8000 → 18000, 10.96.0.30, IPv6 too).
/// The proxy's pod (10.1.0.1) serves reviews, db's 5432 and legacy.
pub fn registry() -> Registry {
    let service = |name: &str, ips: &[&str], ports: serde_json::Value| {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"clusterIP": ips[0], "clusterIPs": ips, "ports": ports},
            }))
            .expect("service"),
        )
    };
    let slice = |service: &str, ports: serde_json::Value, ips: &[&str]| {
        let endpoints: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| {
                json!({"addresses": [ip], "targetRef": {"kind": "Pod", "name": format!("pod-{ip}"), "namespace": "default"}})
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-abc"), "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4",
                "ports": ports,
                "endpoints": endpoints,
            }))
            .expect("slice"),
        )
    };
    let mut registry = Registry {
        services: vec![
            service(
                "reviews",
                &["10.96.0.10"],
                json!([{"name": "http", "port": 9080}]),
            ),
            service(
                "db",
                &["10.96.0.20"],
                json!([{"name": "tcp", "port": 5432}, {"name": "mysql", "port": 3306}]),
            ),
            service(
                "legacy",
                &["10.96.0.30", "fd00::30"],
                json!([{"name": "web", "port": 8000, "targetPort": 18000}]),
            ),
        ],
        endpoint_slices: vec![
            slice(
                "reviews",
                json!([{"name": "http", "port": 9080}]),
                &[POD_IP, "10.1.0.2"],
            ),
            slice(
                "db",
                json!([{"name": "tcp", "port": 5432}, {"name": "mysql", "port": 3306}]),
                &[POD_IP, "10.1.0.3"],
            ),
            slice("legacy", json!([{"name": "web", "port": 18000}]), &[POD_IP]),
        ],
        pods: BTreeMap::from([(
            ("default".to_string(), format!("pod-{POD_IP}")),
            Pod {
                labels: [("app".to_string(), "reviews".to_string())].into(),
                service_account: Some("reviews".to_string()),
                node_name: None,
            },
        )]),
        namespaces: BTreeMap::new(),
        nodes: BTreeMap::new(),
    };
    registry.sort();
    registry
}

/// The mesh with `yaml` added to [`ENTRIES`], built with `settings`.
pub fn mesh_with(yaml: &str, settings: &MeshSettings) -> Model {
    let snapshot = Snapshot {
        config: Arc::new(config_from_yaml(&format!("{ENTRIES}\n---\n{yaml}"))),
        registry: Some(Arc::new(registry())),
        unsynced: Vec::new(),
        seen_at: Default::default(),
    };
    Model::from_snapshot(&snapshot, settings)
}

/// The mesh with `yaml` added, default settings.
pub fn mesh(yaml: &str) -> Model {
    mesh_with(yaml, &MeshSettings::default())
}

/// The capturing proxy of the reviews pod (`app: reviews`) in `default`.
pub fn capturing_proxy() -> Proxy {
    let mut proxy = Proxy::sidecar("default");
    proxy.capture = true;
    proxy.instance_ips = vec![POD_IP.to_string()];
    proxy.labels = [("app".to_string(), "reviews".to_string())].into();
    proxy
}

/// The listener named `name`.
pub fn listener<'a>(listeners: &'a [Listener], name: &str) -> &'a Listener {
    listeners
        .iter()
        .find(|listener| listener.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

/// What a filter does, decoded: `tcp <cluster>` (weighted: `tcp <cluster>:<weight>,…`),
/// `http <route config>`, `rbac <action>`.
pub fn describe_filter(filter: &Filter) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("filter {} without typed config", filter.name);
    };
    match filter.name.as_str() {
        TCP_PROXY => {
            assert_eq!(any.type_url, TCP_PROXY_TYPE_URL);
            let tcp = TcpProxy::decode(any.value.as_slice()).expect("tcp proxy decodes");
            if let Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) = &tcp.cluster_specifier {
                let clusters: Vec<String> = w
                    .clusters
                    .iter()
                    .map(|c| format!("{}:{}", c.name, c.weight))
                    .collect();
                assert_eq!(
                    tcp.stat_prefix, w.clusters[0].name,
                    "stat prefix: the first"
                );
                return format!("tcp {}", clusters.join(","));
            }
            let Some(tcp_proxy::ClusterSpecifier::Cluster(cluster)) = &tcp.cluster_specifier else {
                panic!("tcp proxy without a cluster");
            };
            assert_eq!(tcp.stat_prefix, *cluster, "stat prefix is the cluster name");
            assert_eq!(
                tcp,
                TcpProxy {
                    stat_prefix: cluster.clone(),
                    cluster_specifier: tcp.cluster_specifier.clone(),
                    ..Default::default()
                },
                "nothing else set"
            );
            format!("tcp {cluster}")
        }
        HTTP_CONNECTION_MANAGER => {
            assert_eq!(any.type_url, HTTP_CONNECTION_MANAGER_TYPE_URL);
            let hcm = manager(filter);
            let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = &hcm.route_specifier
            else {
                panic!("connection manager without RDS");
            };
            // Every connection manager carries WebSocket upgrades, as Istio's do.
            assert!(
                matches!(hcm.upgrade_configs.as_slice(), [w, c] if w.upgrade_type == "websocket" && c.upgrade_type == "CONNECT" && w.enabled.is_none() && c.enabled.is_none()),
                "upgrade_configs: {:?}",
                hcm.upgrade_configs
            );
            format!("http {}", rds.route_config_name)
        }
        weft_xds::contract::METADATA_EXCHANGE => {
            assert_eq!(any.type_url, weft_xds::contract::METADATA_EXCHANGE_TYPE_URL);
            let config =
                weft_xds::metadata_exchange::MetadataExchange::decode(any.value.as_slice())
                    .expect("metadata exchange decodes");
            assert_eq!(config.protocol, "istio-peer-exchange");
            "mx".to_string()
        }
        NETWORK_RBAC => {
            assert_eq!(any.type_url, NETWORK_RBAC_TYPE_URL);
            let rbac = NetworkRbac::decode(any.value.as_slice()).expect("rbac decodes");
            assert_eq!(rbac.stat_prefix, "tcp.");
            format!("rbac {}", rbac.rules.expect("rules").action)
        }
        other => panic!("unexpected filter {other}"),
    }
}

/// The connection manager of a filter.
pub fn manager(filter: &Filter) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    HttpConnectionManager::decode(any.value.as_slice()).expect("connection manager decodes")
}

/// One line per chain: `name {match} [tls] → filters`.
pub fn describe_chain(chain: &FilterChain) -> String {
    let mut parts = vec![chain.name.clone()];
    if let Some(m) = &chain.filter_chain_match {
        let mut matching = Vec::new();
        if let Some(port) = &m.destination_port {
            matching.push(format!("port={}", port.value));
        }
        for range in &m.prefix_ranges {
            let len = range.prefix_len.as_ref().map_or(0, |len| len.value);
            matching.push(format!("ip={}/{len}", range.address_prefix));
        }
        if !m.server_names.is_empty() {
            matching.push(format!("sni={}", m.server_names.join(",")));
        }
        if !m.transport_protocol.is_empty() {
            matching.push(format!("transport={}", m.transport_protocol));
        }
        if !m.application_protocols.is_empty() {
            matching.push(format!("alpn={}", m.application_protocols.join(",")));
        }
        parts.push(format!("{{{}}}", matching.join(" ")));
    }
    if let Some(socket) = &chain.transport_socket {
        parts.push(format!("[{}]", socket.name));
    }
    // The stats filter goes into every chain (its placement is `xds::stats`'s tests).
    let filters: Vec<String> = chain
        .filters
        .iter()
        .filter(|f| f.name != weft_xds::stats::STATS_FILTER)
        .map(describe_filter)
        .collect();
    parts.push(format!("→ {}", filters.join(", ")));
    parts.join(" ")
}

/// [`describe_chain`] of every chain of a listener.
pub fn chains(listener: &Listener) -> Vec<String> {
    listener.filter_chains.iter().map(describe_chain).collect()
}
