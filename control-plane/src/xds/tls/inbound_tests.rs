//! The inbound listener in each PeerAuthentication mode, and its stable packing.

use envoy_types::pb::envoy::config::core::v3::transport_socket;
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    SdsSecretConfig, common_tls_context::ValidationContextType, tls_parameters::TlsProtocol,
};
use envoy_types::pb::google::protobuf::value::Kind;

use super::*;
use crate::testing::model_from_yaml;
use crate::xds::ads_config_source;
use crate::xds::listeners::{VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, listeners};
use envoy_types::pb::google::protobuf::{Value, value};
use prost::Message;

/// PeerAuthentications in three namespaces (one per mode), a workload policy with a port
/// level, and an AuthorizationPolicy so the connection manager has security filters.
const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: secure}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: open, namespace: mixed}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy, namespace: plain}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: secure}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: UNSET}
  portLevelMtls: {9080: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-debug, namespace: istio-system}
spec: {action: DENY, rules: [{to: [{operation: {paths: ["/debug"]}}]}]}
"#;

fn server(namespace: &str, labels: &[(&str, &str)]) -> Proxy {
    let mut proxy = Proxy::sidecar(namespace);
    proxy.app_port = Some(9080);
    proxy.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    proxy
}

fn inbound(model: &Model, proxy: &Proxy) -> Listener {
    listeners(model, proxy)
        .into_iter()
        .find(|l| l.name == VIRTUAL_INBOUND)
        .expect("inbound listener")
}

/// (mode, policy) of the listener's `weft.mtls` metadata.
fn mtls_metadata(listener: &Listener) -> (String, String) {
    let metadata = listener.metadata.as_ref().expect("metadata");
    assert_eq!(metadata.filter_metadata.len(), 1);
    let fields = &metadata.filter_metadata["weft.mtls"].fields;
    assert_eq!(fields.len(), 2);
    let text = |key: &str| match &fields[key].kind {
        Some(Kind::StringValue(text)) => text.clone(),
        other => panic!("{key}: a string expected, got {other:?}"),
    };
    (text("mode"), text("policy"))
}

fn sds_ads(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads_config_source()),
    }
}

/// Asserts the chains' transport protocols (`*`: a chain without match), and returns the
/// connection managers' filters.
fn chains(listener: &Listener, expected: &[&str]) -> Vec<Vec<Filter>> {
    let protocols: Vec<&str> = listener
        .filter_chains
        .iter()
        .map(|chain| {
            chain
                .filter_chain_match
                .as_ref()
                .map_or("*", |m| m.transport_protocol.as_str())
        })
        .collect();
    assert_eq!(protocols, expected);
    for chain in &listener.filter_chains {
        let Some(chain_match) = chain.filter_chain_match.clone() else {
            assert!(chain.transport_socket.is_none());
            continue;
        };
        assert_eq!(
            chain_match,
            FilterChainMatch {
                transport_protocol: chain_match.transport_protocol.clone(),
                ..Default::default()
            },
            "only the transport protocol is matched"
        );
        match chain_match.transport_protocol.as_str() {
            "tls" => assert_downstream_tls(chain),
            _ => assert!(chain.transport_socket.is_none()),
        }
    }
    listener
        .filter_chains
        .iter()
        .map(|chain| chain.filters.clone())
        .collect()
}

fn assert_downstream_tls(chain: &FilterChain) {
    let socket = chain.transport_socket.as_ref().expect("transport socket");
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        panic!("typed config expected");
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    );
    let context = DownstreamTlsContext::decode(any.value.as_slice()).expect("decodes");
    assert_eq!(
        context.require_client_certificate,
        Some(BoolValue { value: true })
    );
    let common = context.common_tls_context.expect("common context");
    assert_eq!(
        common
            .tls_params
            .expect("params")
            .tls_minimum_protocol_version,
        TlsProtocol::TlSv13 as i32
    );
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    assert_eq!(
        common.tls_certificate_sds_secret_configs,
        [sds_ads("default")]
    );
    let Some(ValidationContextType::CombinedValidationContext(combined)) =
        common.validation_context_type
    else {
        panic!("combined validation context expected");
    };
    assert_eq!(
        combined.default_validation_context,
        Some(CertificateValidationContext::default())
    );
    assert_eq!(
        combined.validation_context_sds_secret_config,
        Some(sds_ads("ROOTCA"))
    );
}

fn has_tls_inspector(listener: &Listener) -> bool {
    match listener.listener_filters.as_slice() {
        [] => false,
        [filter] => {
            assert_eq!(filter.name, "envoy.filters.listener.tls_inspector");
            let Some(listener_filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                panic!("typed config expected");
            };
            assert_eq!(
                any.type_url,
                "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
            );
            true
        }
        other => panic!("one listener filter at most: {other:?}"),
    }
}

/// (namespace, labels, chains, inspector, mode, policy).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    bool,
    &'static str,
    &'static str,
);

#[test]
fn each_mode_has_its_chains() {
    let model = model_from_yaml(POLICIES);
    let cases: [Case; 5] = [
        ("secure", &[], &["tls"], true, "STRICT", "secure/strict"),
        (
            "mixed",
            &[],
            &["tls", "raw_buffer"],
            true,
            "PERMISSIVE",
            "mixed/open",
        ),
        ("plain", &[], &["*"], false, "DISABLE", "plain/legacy"),
        // No PeerAuthentication anywhere: PERMISSIVE, no policy.
        (
            "default",
            &[],
            &["tls", "raw_buffer"],
            true,
            "PERMISSIVE",
            "",
        ),
        // The workload's port level for its app port.
        (
            "secure",
            &[("app", "httpbin")],
            &["tls", "raw_buffer"],
            true,
            "PERMISSIVE",
            "secure/httpbin",
        ),
    ];
    for (namespace, labels, expected, inspector, mode, policy) in cases {
        let proxy = server(namespace, labels);
        let listener = inbound(&model, &proxy);
        let filters = chains(&listener, expected);
        assert_eq!(
            has_tls_inspector(&listener),
            inspector,
            "{namespace} {labels:?}"
        );
        assert_eq!(
            mtls_metadata(&listener),
            (mode.to_string(), policy.to_string()),
            "{namespace} {labels:?}"
        );
        // Every chain has the same connection manager, security filters included.
        let Some(first) = filters.first() else {
            panic!("no chain");
        };
        assert!(filters.iter().all(|f| f == first));
        let [manager] = first.as_slice() else {
            panic!("one network filter expected");
        };
        assert_eq!(
            manager.name,
            "envoy.filters.network.http_connection_manager"
        );
        let http = http_filter_names(manager);
        assert_eq!(
            http,
            [
                "envoy.filters.http.rbac",
                weft_xds::stats::STATS_FILTER,
                "envoy.filters.http.router"
            ]
        );
    }
}

fn http_filter_names(manager: &Filter) -> Vec<String> {
    use envoy_types::pb::envoy::config::listener::v3::filter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    let Some(filter::ConfigType::TypedConfig(any)) = &manager.config_type else {
        panic!("typed config expected");
    };
    HttpConnectionManager::decode(any.value.as_slice())
        .expect("decodes")
        .http_filters
        .into_iter()
        .map(|f| f.name)
        .collect()
}

#[test]
fn outbound_listener_is_unchanged() {
    let model = model_from_yaml(POLICIES);
    for namespace in ["secure", "plain", "default"] {
        let outbound = listeners(&model, &server(namespace, &[]))
            .into_iter()
            .find(|l| l.name == VIRTUAL_OUTBOUND)
            .expect("outbound listener");
        assert_eq!(outbound.filter_chains.len(), 1);
        let chain = &outbound.filter_chains[0];
        assert!(chain.filter_chain_match.is_none());
        assert!(chain.transport_socket.is_none());
        assert!(outbound.listener_filters.is_empty());
        assert!(outbound.metadata.is_none());
    }
}

#[test]
fn packed_listeners_are_stable_and_decode_to_the_listener() {
    let model = model_from_yaml(POLICIES);
    let proxy = server("secure", &[("app", "httpbin")]);
    let listener = inbound(&model, &proxy);
    let packed = pack_listener(&listener);
    assert_eq!(packed.type_url, <Listener as prost::Name>::type_url());
    assert_eq!(
        Listener::decode(packed.value.as_slice()).expect("decodes"),
        listener
    );
    // Freshly built maps iterate in different orders; the bytes do not change.
    for _ in 0..32 {
        let again = pack_listener(&inbound(&model, &proxy));
        assert_eq!(again, packed);
    }
    // Nested structs and lists are written in key order too.
    let mut nested = listener.clone();
    let mut fields = string_struct(&[("b", "2"), ("a", "1"), ("c", "3")]);
    fields.fields.insert(
        "list".to_string(),
        Value {
            kind: Some(value::Kind::ListValue(
                envoy_types::pb::google::protobuf::ListValue {
                    values: vec![Value {
                        kind: Some(value::Kind::StructValue(string_struct(&[
                            ("y", "1"),
                            ("x", "2"),
                        ]))),
                    }],
                },
            )),
        },
    );
    let metadata = nested.metadata.as_mut().expect("metadata");
    metadata
        .filter_metadata
        .insert("z.other".to_string(), fields);
    let first = pack_listener(&nested);
    assert_eq!(
        Listener::decode(first.value.as_slice()).expect("decodes"),
        nested
    );
    for _ in 0..32 {
        let mut copy = listener.clone();
        let metadata = copy.metadata.as_mut().expect("metadata");
        for (key, value) in &nested.metadata.as_ref().expect("metadata").filter_metadata {
            metadata.filter_metadata.insert(key.clone(), value.clone());
        }
        assert_eq!(pack_listener(&copy), first);
    }
}

#[test]
fn with_mode_builds_each_mode_from_one_chain() {
    let listener = Listener {
        name: "virtualInbound".to_string(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    for (mode, expected) in [
        (MtlsMode::Strict, &["tls"][..]),
        (MtlsMode::Permissive, &["tls", "raw_buffer"][..]),
        (MtlsMode::Disable, &["*"][..]),
    ] {
        let decision = MtlsDecision { mode, policy: None };
        let secured = with_mode(listener.clone(), &decision);
        let filters = chains(&secured, expected);
        assert!(
            filters
                .iter()
                .all(|f| *f == listener.filter_chains[0].filters)
        );
        assert_eq!(has_tls_inspector(&secured), mode != MtlsMode::Disable);
        assert_eq!(
            mtls_metadata(&secured),
            (mode.as_str().to_string(), String::new())
        );
    }
}
