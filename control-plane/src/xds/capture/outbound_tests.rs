//! `virtualOutbound` in the capture shape: chains per protocol and address, the loop guard,
//! the default chain of each outbound traffic policy, deduplication, Sidecar egress scoping.

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::listener_filter;
use envoy_types::pb::google::protobuf::Duration;
use weft_xds::contract::{
    HTTP_CONNECTION_MANAGER, HTTP_INSPECTOR, HTTP_INSPECTOR_TYPE_URL, ORIGINAL_DST,
    ORIGINAL_DST_TYPE_URL, ROUTER, TLS_INSPECTOR, TLS_INSPECTOR_TYPE_URL,
};

use super::super::testing::{capturing_proxy, chains, describe_chain, listener, mesh, mesh_with};
use super::*;
use crate::model::MeshSettings;
use crate::xds::listeners::{VIRTUAL_INBOUND, listeners};

const HTTP_ALPN: &str = "alpn=http/1.0,http/1.1,h2c";

fn outbound(model: &Model, proxy: &Proxy) -> Listener {
    let all = listeners(model, proxy);
    assert_eq!(
        all.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        [VIRTUAL_OUTBOUND, VIRTUAL_INBOUND]
    );
    listener(&all, VIRTUAL_OUTBOUND).clone()
}

fn default_chain(listener: &Listener) -> String {
    describe_chain(
        listener
            .default_filter_chain
            .as_ref()
            .expect("default chain"),
    )
}

#[test]
fn chains_per_protocol_and_address_then_the_passthrough() {
    let listener = outbound(&mesh(""), &capturing_proxy());
    let Some(address::Address::SocketAddress(socket)) =
        listener.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        panic!("socket address expected");
    };
    // Not the instance IP: captured connections arrive for any address.
    assert_eq!(socket.address, "0.0.0.0");
    assert_eq!(
        socket.port_specifier,
        Some(socket_address::PortSpecifier::PortValue(15001))
    );
    let db = "db.default.svc.cluster.local";
    let legacy = "legacy.default.svc.cluster.local";
    assert_eq!(
        chains(&listener),
        [
            "virtualOutbound-blackhole {port=15001} → tcp BlackHoleCluster".to_string(),
            "0.0.0.0_8080 {port=8080} → http 8080".to_string(),
            "0.0.0.0_9080 {port=9080} → http 9080".to_string(),
            // Undeclared without addresses: HTTP only, told by the HTTP inspector.
            format!("0.0.0.0_8000 {{port=8000 {HTTP_ALPN}}} → http 8000"),
            // Port names `mysql` and `tcp`: opaque TCP to the service's virtual IP.
            format!("10.96.0.20_3306 {{port=3306 ip=10.96.0.20/32}} → tcp outbound|3306||{db}"),
            format!("10.96.0.20_5432 {{port=5432 ip=10.96.0.20/32}} → tcp outbound|5432||{db}"),
            // ServiceEntry addresses as written: an IP and a CIDR block.
            "240.240.0.1_5432 {port=5432 ip=240.240.0.1/32} → tcp outbound|5432||db.example.com"
                .to_string(),
            "240.240.1.0/24_5432 {port=5432 ip=240.240.1.0/24} → tcp outbound|5432||db.example.com"
                .to_string(),
            // Undeclared with addresses: HTTP when sniffed, else TCP, per address.
            format!("10.96.0.30_8000 {{port=8000 ip=10.96.0.30/32 {HTTP_ALPN}}} → http 8000"),
            format!("10.96.0.30_8000 {{port=8000 ip=10.96.0.30/32}} → tcp outbound|8000||{legacy}"),
            format!("fd00::30_8000 {{port=8000 ip=fd00::30/128 {HTTP_ALPN}}} → http 8000"),
            format!("fd00::30_8000 {{port=8000 ip=fd00::30/128}} → tcp outbound|8000||{legacy}"),
        ]
    );
    assert_eq!(
        default_chain(&listener),
        "PassthroughFilterChain → tcp PassthroughCluster"
    );
    // Each HTTP chain's connection manager is today's: codec AUTO, router last, no security.
    for chain in &listener.filter_chains {
        if chain.filters[0].name == HTTP_CONNECTION_MANAGER {
            let hcm = super::super::testing::manager(&chain.filters[0]);
            assert_eq!(hcm.stat_prefix, VIRTUAL_OUTBOUND);
            assert_eq!(
                hcm.http_filters
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>(),
                [
                    weft_xds::contract::CORS,
                    weft_xds::contract::FAULT,
                    weft_xds::stats::STATS_FILTER,
                    ROUTER
                ]
            );
            assert_eq!(
                hcm.stream_idle_timeout,
                Some(Duration {
                    seconds: 300,
                    nanos: 0
                })
            );
        }
    }
}

#[test]
fn listener_filters_restore_the_destination_then_detect_tls_and_http() {
    let listener = outbound(&mesh(""), &capturing_proxy());
    let filters: Vec<(&str, &str)> = listener
        .listener_filters
        .iter()
        .map(|filter| {
            let Some(listener_filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                panic!("typed config expected");
            };
            (filter.name.as_str(), any.type_url.as_str())
        })
        .collect();
    assert_eq!(
        filters,
        [
            (ORIGINAL_DST, ORIGINAL_DST_TYPE_URL),
            (TLS_INSPECTOR, TLS_INSPECTOR_TYPE_URL),
            (HTTP_INSPECTOR, HTTP_INSPECTOR_TYPE_URL),
        ]
    );
    assert_eq!(
        listener.listener_filters_timeout,
        Some(Duration {
            seconds: 0,
            nanos: 100_000_000
        })
    );
    assert!(listener.continue_on_listener_filters_timeout);

    // `--protocol-detection-timeout 0s`: `0s` sent, Envoy's "no timeout" (unset would be 15 s).
    let settings = MeshSettings {
        protocol_detection_timeout: std::time::Duration::ZERO,
        ..MeshSettings::default()
    };
    let listener = outbound(&mesh_with("", &settings), &capturing_proxy());
    assert_eq!(
        listener.listener_filters_timeout,
        Some(envoy_types::pb::google::protobuf::Duration::default())
    );
    assert!(listener.continue_on_listener_filters_timeout);
}

const NAMESPACE_ALLOW_ANY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}
"#;

const WORKLOAD_REGISTRY_ONLY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;

const ROOT_REGISTRY_ONLY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
"#;

#[test]
fn unknown_destinations_follow_the_flag_then_the_sidecar() {
    let passthrough = "PassthroughFilterChain → tcp PassthroughCluster";
    let blackhole = "PassthroughFilterChain → tcp BlackHoleCluster";
    let registry_only = MeshSettings {
        outbound_traffic_policy: OutboundTrafficPolicy::RegistryOnly,
        ..MeshSettings::default()
    };
    let proxy = capturing_proxy();
    let mut elsewhere = capturing_proxy();
    elsewhere.namespace = "other".to_string();
    let mut other_workload = capturing_proxy();
    other_workload.labels = [("app".to_string(), "ratings".to_string())].into();

    // The flag alone.
    let check = |model: &Model, proxy: &Proxy, expected: &str| {
        assert_eq!(
            default_chain(&outbound(model, proxy)),
            expected,
            "{} {:?}",
            proxy.namespace,
            proxy.labels
        );
    };
    check(&mesh(""), &proxy, passthrough);
    check(&mesh_with("", &registry_only), &proxy, blackhole);
    // The namespace's Sidecar beats the flag.
    let model = mesh_with(NAMESPACE_ALLOW_ANY, &registry_only);
    check(&model, &proxy, passthrough);
    check(&model, &elsewhere, blackhole);
    // The workload's Sidecar beats the namespace's; other workloads keep the namespace's.
    let model = mesh(&format!(
        "{NAMESPACE_ALLOW_ANY}\n---\n{WORKLOAD_REGISTRY_ONLY}"
    ));
    check(&model, &proxy, blackhole);
    check(&model, &other_workload, passthrough);
    // The root namespace's Sidecar applies where a namespace has none.
    let model = mesh(&format!("{NAMESPACE_ALLOW_ANY}\n---\n{ROOT_REGISTRY_ONLY}"));
    check(&model, &proxy, passthrough);
    check(&model, &elsewhere, blackhole);
}

#[test]
fn egress_hosts_scope_the_chains() {
    let model = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ["./*.svc.cluster.local", "*/db.example.com"]
"#,
    );
    let names: Vec<String> = outbound(&model, &capturing_proxy())
        .filter_chains
        .iter()
        .map(|chain| chain.name.clone())
        .collect();
    // Seen: default's Kubernetes Services (9080 is reviews') and db.example.com; not seen:
    // details.other, v6.example.com (8080), api.example.com (8000 without address).
    assert_eq!(
        names,
        [
            "virtualOutbound-blackhole",
            "0.0.0.0_9080",
            "10.96.0.20_3306",
            "10.96.0.20_5432",
            "240.240.0.1_5432",
            "240.240.1.0/24_5432",
            "10.96.0.30_8000",
            "10.96.0.30_8000",
            "fd00::30_8000",
            "fd00::30_8000",
        ]
    );
}

#[test]
fn identical_matches_keep_the_first_service_and_are_warned() {
    let model = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: z-db, namespace: default}
spec:
  hosts: [z.example.com]
  addresses: [240.240.0.1]
  ports: [{number: 5432, name: tcp, protocol: TCP}, {number: 15001, name: loop, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.9}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls, namespace: default}
spec:
  hosts: [tls.example.com]
  ports: [{number: 9080, name: tls, protocol: TLS}, {number: 7000, name: redis, protocol: REDIS}]
  resolution: DNS
"#,
    );
    let all = chains(&outbound(&model, &capturing_proxy()));
    let on = |prefix: &str| all.iter().filter(|c| c.starts_with(prefix)).count();
    // 240.240.0.1:5432 stays db.example.com's (first by host name).
    assert_eq!(on("240.240.0.1_5432"), 1);
    assert!(
        all.contains(
            &"240.240.0.1_5432 {port=5432 ip=240.240.0.1/32} → tcp outbound|5432||db.example.com"
                .to_string()
        )
    );
    // z's port 15001 on its address is more specific than the loop guard; both stay.
    assert_eq!(on("240.240.0.1_15001"), 1);
    assert_eq!(on("virtualOutbound-blackhole"), 1);
    // TLS on 9080 without addresses: the HTTP chain keeps the port; Redis on 7000 gets it.
    assert_eq!(on("0.0.0.0_9080"), 1);
    assert!(all.contains(&"0.0.0.0_9080 {port=9080} → http 9080".to_string()));
    assert!(
        all.contains(&"0.0.0.0_7000 {port=7000} → tcp outbound|7000||tls.example.com".to_string())
    );
    // No two chains share a match.
    let mut matches: Vec<Vec<u8>> = outbound(&model, &capturing_proxy())
        .filter_chains
        .iter()
        .map(|chain| prost::Message::encode_to_vec(chain.filter_chain_match.as_ref().unwrap()))
        .collect();
    let count = matches.len();
    matches.sort();
    matches.dedup();
    assert_eq!(matches.len(), count);
    // The losers are reported with their port's field path.
    let warned: Vec<String> = model
        .warnings
        .iter()
        .filter(|w| w.message.contains("captured"))
        .map(|w| format!("{} {}", w.object, w.path))
        .collect();
    assert_eq!(
        warned,
        [
            "ServiceEntry default/tls spec.ports[0]",
            "ServiceEntry default/z-db spec.ports[0]"
        ]
    );
}

#[test]
fn the_loop_guard_follows_the_outbound_port() {
    let mut proxy = capturing_proxy();
    proxy.outbound_port = 16001;
    let listener = outbound(&mesh(""), &proxy);
    assert_eq!(
        describe_chain(&listener.filter_chains[0]),
        "virtualOutbound-blackhole {port=16001} → tcp BlackHoleCluster"
    );
}
