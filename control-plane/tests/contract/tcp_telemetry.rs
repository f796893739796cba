//! Istio's TCP telemetry reaches the proxy's converters: the metadata exchange filters where
//! istiod puts them (first on every inbound TCP chain with mutual TLS; in the `filters` of
//! outbound clusters with mesh mTLS, auto or `ISTIO_MUTUAL`, and no other), and the TCP proxies'
//! access logs, resolved per side as the connection managers' are.

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use weft_controller::model::{MeshAccessLog, MeshSettings, Model};
use weft_proxy::config::{ClusterConfig, Listener, Network, TransportProtocol};
use weft_xds::type_url;

use super::check::{Generated, ProxySpec, controller_proxy, convert, free_ports};
use super::fixtures::config_from;

/// A TCP and an HTTP service whose one endpoint, 10.9.0.7, is the captured sidecar below; a
/// second TCP service whose DestinationRule says SIMPLE TLS (files, not the mesh's).
const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9000, name: tcp, protocol: TCP}
  - {number: 9080, name: http, protocol: HTTP}
  endpoints: [{address: 10.9.0.7, labels: {app: echo}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-db, protocol: TCP}]
  endpoints: [{address: 10.9.0.8}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db.example.internal
  trafficPolicy: {tls: {mode: SIMPLE}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "connection.mtls"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: echo, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  accessLogging:
  - match: {mode: CLIENT}
    disabled: true
  - match: {mode: SERVER}
"#;

fn spec(labels: &[(&str, &str)]) -> ProxySpec {
    ProxySpec {
        label: "echo".into(),
        namespace: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        app_port: None,
        capture: Some("10.9.0.7".into()),
    }
}

/// Every cluster and listener generated for `spec` from `model`, as the proxy converts them.
fn converted(model: &Model, spec: &ProxySpec) -> (Vec<ClusterConfig>, Vec<Listener>) {
    let (outbound, inbound) = free_ports();
    let generated = Generated::new(model, &controller_proxy(spec, outbound, inbound));
    let clusters = generated
        .clusters
        .iter()
        .map(|r| {
            convert::<cds::Cluster, ClusterConfig>(r, type_url::CLUSTER, |c| &c.name)
                .unwrap_or_else(|e| panic!("cluster {}: {e}", r.name))
        })
        .collect();
    let listeners = generated
        .listeners
        .iter()
        .map(|r| {
            convert::<lds::Listener, Listener>(r, type_url::LISTENER, |l| &l.name)
                .unwrap_or_else(|e| panic!("listener {}: {e}", r.name))
        })
        .collect();
    (clusters, listeners)
}

fn model() -> Model {
    let set = config_from(&[("tcp.yaml", CONFIG)]);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    let settings = MeshSettings {
        access_log: MeshAccessLog {
            file: "/dev/stdout".into(),
            json: true,
            format: String::new(),
        },
        ..MeshSettings::default()
    };
    Model::build_with_registry(&set, None, &settings)
}

fn listener<'a>(listeners: &'a [Listener], name: &str) -> &'a Listener {
    listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

#[test]
fn the_metadata_exchange_is_on_mtls_tcp_chains_and_mesh_clusters() {
    let (clusters, listeners) = converted(&model(), &spec(&[("app", "echo")]));
    let exchange = |name: &str| {
        clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
            .peer_exchange
    };
    assert!(
        exchange("outbound|9000||echo.example.internal"),
        "auto mTLS"
    );
    assert!(
        exchange("outbound|9080||echo.example.internal"),
        "auto mTLS"
    );
    assert!(
        !exchange("outbound|5432||db.example.internal"),
        "SIMPLE TLS"
    );
    assert!(!exchange("PassthroughCluster"));
    assert!(!exchange("inbound|9000||"));

    // Inbound (PERMISSIVE): the TLS chains of TCP ports, and of the passthrough, exchange.
    let inbound = listener(&listeners, "virtualInbound");
    let mut tcp_tls = 0;
    for chain in &inbound.chains {
        let tls = chain.matcher.transport_protocol == Some(TransportProtocol::Tls);
        match &chain.network {
            Network::Tcp(tcp) if tcp.clusters[0].name == "BlackHoleCluster" => {
                assert!(!tcp.peer_exchange, "{}", chain.name);
            }
            Network::Tcp(tcp) => {
                assert_eq!(tcp.peer_exchange, tls, "{}", chain.name);
                assert!(chain.tls.is_some() == tls, "{}", chain.name);
                tcp_tls += usize::from(tls);
            }
            Network::Http(_) => {}
        }
    }
    assert!(tcp_tls >= 2, "port 9000 and the passthrough: {tcp_tls}");
    // The outbound listener's TCP chains never do (the clusters' filters speak for the client).
    for chain in &listener(&listeners, "virtualOutbound").chains {
        if let Network::Tcp(tcp) = &chain.network {
            assert!(!tcp.peer_exchange, "{}", chain.name);
        }
    }
}

#[test]
fn tcp_proxies_log_as_the_connection_managers_of_their_side() {
    let model = model();
    let logs = |spec: &ProxySpec, name: &str| {
        let (_, listeners) = converted(&model, spec);
        listener(&listeners, name)
            .chains
            .iter()
            .filter_map(|c| match &c.network {
                Network::Tcp(tcp) => Some((c.name.clone(), tcp.access_logs.clone())),
                Network::Http(_) => None,
            })
            .collect::<Vec<_>>()
    };
    // The echo workload's own Telemetry: every inbound connection, no outbound one.
    let echo = spec(&[("app", "echo")]);
    let inbound = logs(&echo, "virtualInbound");
    assert!(inbound.len() >= 3, "{inbound:?}");
    for (chain, logs) in &inbound {
        assert_eq!(logs.len(), 1, "{chain}");
        assert_eq!(logs[0].path, "/dev/stdout");
        assert!(logs[0].filter.is_none(), "{chain}: SERVER logs everything");
    }
    for (chain, logs) in logs(&echo, "virtualOutbound") {
        assert!(logs.is_empty(), "{chain}: CLIENT disabled");
    }
    // Another workload: the mesh-wide Telemetry and its filter on both sides' TCP proxies.
    let other = spec(&[("app", "other")]);
    for side in ["virtualInbound", "virtualOutbound"] {
        let chains = logs(&other, side);
        assert!(!chains.is_empty(), "{side}");
        for (chain, logs) in chains {
            assert_eq!(
                logs.first()
                    .and_then(|l| l.filter.as_ref())
                    .map(|f| format!("{f:?}")),
                Some(r#"Filter("(connection.mtls)")"#.to_string()),
                "{side} {chain}"
            );
        }
    }
}
