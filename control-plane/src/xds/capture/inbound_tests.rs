//! `virtualInbound` in the capture shape: the ports the workload serves, their chains in each
//! mTLS mode and per protocol, the passthrough, and the network filters of TCP chains.

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::config::rbac::v3::{permission, principal, rbac};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::google::protobuf::value::Kind;
use prost::Message;
use weft_xds::contract::{MTLS_METADATA, RBAC};

use super::super::testing::{
    capturing_proxy, chains, describe_chain, listener as named, manager, mesh,
};
use super::*;
use crate::xds::capture::inbound_ports;
use crate::xds::listeners::listeners;

const TLS: &str = "[envoy.transport_sockets.tls]";
const ISTIO_ALPN: &str = "alpn=istio-http/1.0,istio-http/1.1,istio-h2";
const HTTP_ALPN: &str = "alpn=http/1.0,http/1.1,h2c";

fn inbound(model: &Model, proxy: &Proxy) -> Listener {
    named(&listeners(model, proxy), VIRTUAL_INBOUND).clone()
}

fn mode_metadata(listener: &Listener) -> (String, String) {
    let fields = &listener
        .metadata
        .as_ref()
        .expect("metadata")
        .filter_metadata[MTLS_METADATA];
    let text = |key: &str| match fields.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(text)) => text.clone(),
        other => panic!("{key}: {other:?}"),
    };
    (text("mode"), text("policy"))
}

#[test]
fn the_workloads_ports_come_from_the_services_at_its_ip() {
    let model = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sniffed, namespace: default}
spec:
  hosts: [a-sniffed.example.com]
  ports: [{number: 9080, name: any}, {number: 15006, name: own}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
"#,
    );
    let mut proxy = capturing_proxy();
    // Only the endpoints at the proxy's IPs count; WEFT_APP_PORT is ignored in capture shape.
    proxy.app_port = Some(1234);
    assert_eq!(
        inbound_ports(&model, &proxy)
            .into_iter()
            .collect::<Vec<_>>(),
        [
            (3306, PortKind::Tcp),
            (5432, PortKind::Tcp),
            // reviews declares HTTP, which beats a-sniffed's undeclared 9080 (first by name).
            (9080, PortKind::Http),
            // legacy's `web` 8000, at the slice's port 18000.
            (18000, PortKind::Undeclared),
        ]
    );
    let mut elsewhere = capturing_proxy();
    elsewhere.instance_ips = vec!["10.1.0.3".to_string()];
    assert_eq!(
        inbound_ports(&model, &elsewhere)
            .into_keys()
            .collect::<Vec<_>>(),
        [3306, 5432]
    );
    let mut nowhere = capturing_proxy();
    nowhere.instance_ips = Vec::new();
    assert!(inbound_ports(&model, &nowhere).is_empty());
}

#[test]
fn permissive_chains_per_protocol_and_the_passthrough() {
    let listener = inbound(&mesh(""), &capturing_proxy());
    let Some(address::Address::SocketAddress(socket)) =
        listener.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        panic!("socket address expected");
    };
    assert_eq!(socket.address, "0.0.0.0");
    assert_eq!(
        socket.port_specifier,
        Some(socket_address::PortSpecifier::PortValue(15006))
    );
    assert_eq!(listener.listener_filters.len(), 3);
    assert!(listener.continue_on_listener_filters_timeout);
    let expected: Vec<String> = [
        "virtualInbound-blackhole {port=15006} → tcp BlackHoleCluster".to_string(),
        format!("0.0.0.0_3306 {{port=3306 transport=tls}} {TLS} → mx, tcp inbound|3306||"),
        "0.0.0.0_3306 {port=3306 transport=raw_buffer} → tcp inbound|3306||".to_string(),
        format!("0.0.0.0_5432 {{port=5432 transport=tls}} {TLS} → mx, tcp inbound|5432||"),
        "0.0.0.0_5432 {port=5432 transport=raw_buffer} → tcp inbound|5432||".to_string(),
        format!("0.0.0.0_9080 {{port=9080 transport=tls}} {TLS} → http inbound|9080||"),
        "0.0.0.0_9080 {port=9080 transport=raw_buffer} → http inbound|9080||".to_string(),
        format!(
            "0.0.0.0_18000 {{port=18000 transport=tls {ISTIO_ALPN}}} {TLS} → http inbound|18000||"
        ),
        format!("0.0.0.0_18000 {{port=18000 transport=tls}} {TLS} → mx, tcp inbound|18000||"),
        format!(
            "0.0.0.0_18000 {{port=18000 transport=raw_buffer {HTTP_ALPN}}} → http inbound|18000||"
        ),
        "0.0.0.0_18000 {port=18000 transport=raw_buffer} → tcp inbound|18000||".to_string(),
        format!("InboundPassthroughFilterChain-tls {{transport=tls}} {TLS} → mx, tcp InboundPassthroughCluster"),
        "InboundPassthroughFilterChain-raw_buffer {transport=raw_buffer} → tcp InboundPassthroughCluster"
            .to_string(),
    ]
    .into();
    assert_eq!(chains(&listener), expected);
    assert!(listener.default_filter_chain.is_none());
    assert_eq!(
        mode_metadata(&listener),
        ("PERMISSIVE".to_string(), String::new())
    );
    // The TLS chains carry today's DownstreamTlsContext.
    let tls_chain = &listener.filter_chains[1];
    assert_eq!(
        tls_chain.transport_socket,
        Some(crate::xds::tls::inbound::downstream_tls_socket())
    );
}

#[test]
fn strict_and_disable_workloads_with_a_port_exception() {
    let model = mesh(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy, namespace: plain}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: plain}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls: {9080: {mode: STRICT}, 3306: {mode: PERMISSIVE}}
"#,
    );
    let strict = inbound(&model, &capturing_proxy());
    assert_eq!(
        mode_metadata(&strict),
        ("STRICT".to_string(), "default/strict".to_string())
    );
    assert_eq!(
        chains(&strict)
            .iter()
            .filter(|c| c.contains("raw_buffer") || !c.contains("transport=tls"))
            .cloned()
            .collect::<Vec<_>>(),
        ["virtualInbound-blackhole {port=15006} → tcp BlackHoleCluster"],
        "STRICT: TLS chains only"
    );
    assert_eq!(
        describe_chain(strict.filter_chains.last().expect("chains")),
        format!(
            "InboundPassthroughFilterChain-tls {{transport=tls}} {TLS} → mx, tcp InboundPassthroughCluster"
        )
    );
    assert!(strict.default_filter_chain.is_none());

    // The same pod in namespace `plain`: DISABLE, but 9080 STRICT and 3306 PERMISSIVE.
    let mut proxy = capturing_proxy();
    proxy.namespace = "plain".to_string();
    let plain = inbound(&model, &proxy);
    assert_eq!(
        mode_metadata(&plain),
        ("DISABLE".to_string(), "plain/legacy".to_string())
    );
    assert_eq!(
        chains(&plain),
        [
            "virtualInbound-blackhole {port=15006} → tcp BlackHoleCluster".to_string(),
            format!("0.0.0.0_3306 {{port=3306 transport=tls}} {TLS} → mx, tcp inbound|3306||"),
            "0.0.0.0_3306 {port=3306 transport=raw_buffer} → tcp inbound|3306||".to_string(),
            "0.0.0.0_5432 {port=5432} → tcp inbound|5432||".to_string(),
            format!("0.0.0.0_9080 {{port=9080 transport=tls}} {TLS} → http inbound|9080||"),
            // Plaintext to the STRICT port must not fall back to the plaintext default chain.
            "0.0.0.0_9080-plaintext-refused {port=9080 transport=raw_buffer} → tcp BlackHoleCluster"
                .to_string(),
            format!("0.0.0.0_18000 {{port=18000 {HTTP_ALPN}}} → http inbound|18000||"),
            "0.0.0.0_18000 {port=18000} → tcp inbound|18000||".to_string(),
        ]
    );
    assert_eq!(
        describe_chain(plain.default_filter_chain.as_ref().expect("default chain")),
        "InboundPassthroughFilterChain → tcp InboundPassthroughCluster"
    );
}

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: [default]}}]
    to: [{operation: {methods: [GET]}}]
  - from: [{source: {principals: [cluster.local/ns/default/sa/db-client]}}]
    to: [{operation: {ports: ["5432"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: [default]}}]
    to: [{operation: {paths: [/admin]}}]
"#;

fn network_rbac(filter: &Filter) -> NetworkRbac {
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    NetworkRbac::decode(any.value.as_slice()).expect("network rbac decodes")
}

#[test]
fn tcp_chains_get_network_rbac_and_http_chains_the_http_filters() {
    let listener = inbound(&mesh(POLICIES), &capturing_proxy());
    let lines = chains(&listener);
    let deny = rbac::Action::Deny as i32;
    let allow = rbac::Action::Allow as i32;
    assert!(
        lines.contains(&format!(
            "0.0.0.0_5432 {{port=5432 transport=raw_buffer}} → rbac {deny}, rbac {allow}, tcp inbound|5432||"
        )),
        "{lines:#?}"
    );
    assert!(lines.contains(&format!(
        "InboundPassthroughFilterChain-raw_buffer {{transport=raw_buffer}} → rbac {deny}, rbac {allow}, tcp InboundPassthroughCluster"
    )));
    // The loop guard has no policy.
    assert_eq!(
        lines[0],
        "virtualInbound-blackhole {port=15006} → tcp BlackHoleCluster"
    );

    let chain = listener
        .filter_chains
        .iter()
        .find(|c| c.name == "0.0.0.0_5432" && c.transport_socket.is_none())
        .expect("5432 plaintext chain");
    // The TLS chain: the metadata exchange first, then the same RBAC filters.
    assert!(lines.contains(&format!(
        "0.0.0.0_5432 {{port=5432 transport=tls}} {TLS} → mx, rbac {deny}, rbac {allow}, tcp inbound|5432||"
    )));
    // DENY: the path dropped, the namespace test kept (denies every connection from elsewhere).
    let deny_rules = network_rbac(&chain.filters[0]).rules.expect("rules");
    let policy = &deny_rules.policies["ns[default]-policy[deny]-rule[0]"];
    assert_eq!(
        policy.permissions[0].rule,
        Some(permission::Rule::AndRules(permission::Set {
            rules: vec![envoy_types::pb::envoy::config::rbac::v3::Permission {
                rule: Some(permission::Rule::Any(true))
            }]
        }))
    );
    let Some(principal::Identifier::AndIds(ids)) = &policy.principals[0].identifier else {
        panic!("and_ids expected");
    };
    assert!(matches!(
        ids.ids[0].identifier,
        Some(principal::Identifier::NotId(_))
    ));
    // ALLOW: the GET rule left out (a connection has no method), the port rule kept.
    let allow_rules = network_rbac(&chain.filters[1]).rules.expect("rules");
    assert_eq!(
        allow_rules.policies.keys().collect::<Vec<_>>(),
        ["ns[default]-policy[allow]-rule[1]"]
    );

    // HTTP chains: the HTTP RBAC filters in the connection manager, no network filter.
    let http = listener
        .filter_chains
        .iter()
        .find(|c| c.name == "0.0.0.0_9080")
        .expect("9080 chain");
    assert_eq!(http.filters.len(), 1);
    let names: Vec<String> = manager(&http.filters[0])
        .http_filters
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            RBAC,
            RBAC,
            weft_xds::stats::STATS_FILTER,
            "envoy.filters.http.router"
        ]
    );
    // A workload no policy selects: no network filter anywhere.
    let mut elsewhere = capturing_proxy();
    elsewhere.namespace = "other".to_string();
    assert!(
        inbound(&mesh(POLICIES), &elsewhere)
            .filter_chains
            .iter()
            .all(|chain| chain
                .filters
                .iter()
                .all(|f| f.name != "envoy.filters.network.rbac"))
    );
}
