//! What Istio's metrics need from the config reaches the proxy's domain config: each listener's
//! `traffic_direction` (which side reports: `virtualInbound` the destination, `virtualOutbound`
//! the source), and each cluster's service (`filter_metadata.istio.services`, the
//! `destination_service*` labels): outbound clusters their service's, inbound clusters the
//! services of the workload on the port; a Kubernetes Service by its own name, a ServiceEntry
//! by its host.

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use weft_proxy::config::{ClusterConfig, Direction, Listener};
use weft_proxy::metrics::ServiceLabels;
use weft_xds::type_url;

use super::check::{
    APP_PORT, ConfigCase, Generated, ProxySpec, controller_proxy, convert, free_ports,
};
use super::fixtures::{config_from, corpus_root, kube_registry};

const ENTRY: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, labels: {app: shop}}]
"#;

fn spec(capture: Option<String>) -> ProxySpec {
    ProxySpec {
        label: "server".into(),
        namespace: "default".into(),
        labels: vec![("app".into(), "shop".into())],
        app_port: Some(APP_PORT),
        capture,
    }
}

/// Every cluster and listener generated for `spec`, as the proxy converts them.
fn converted(case: &ConfigCase, spec: &ProxySpec) -> (Vec<ClusterConfig>, Vec<Listener>) {
    let (outbound, inbound) = free_ports();
    let generated = Generated::new(&case.model(), &controller_proxy(spec, outbound, inbound));
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

fn service_of<'a>(clusters: &'a [ClusterConfig], name: &str) -> &'a ServiceLabels {
    clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no cluster {name}: {:?}",
                clusters.iter().map(|c| &c.name).collect::<Vec<_>>()
            )
        })
        .service
        .labels()
}

fn directions(listeners: &[Listener]) -> Vec<(String, Direction)> {
    let mut out: Vec<_> = listeners
        .iter()
        .map(|l| (l.name.clone(), l.direction))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn explicit_proxies_get_directions_and_cluster_services() {
    let set = config_from(&[("entry.yaml", ENTRY)]);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    let case = ConfigCase::local("entry.yaml", set);
    let (clusters, listeners) = converted(&case, &spec(None));
    assert_eq!(
        directions(&listeners),
        [
            ("virtualInbound".to_string(), Direction::Inbound),
            ("virtualOutbound".to_string(), Direction::Outbound)
        ]
    );
    let shop = ServiceLabels {
        host: "shop.example.internal".into(),
        name: "shop.example.internal".into(),
        namespace: "default".into(),
    };
    assert_eq!(
        service_of(&clusters, "outbound|9080||shop.example.internal"),
        &shop
    );
    // The sidecar's own address is the entry's endpoint: its inbound cluster serves the entry.
    assert_eq!(
        service_of(&clusters, &format!("inbound|{APP_PORT}||")),
        &shop
    );
}

#[test]
fn captured_proxies_name_kubernetes_services_by_their_own_name() {
    let case = ConfigCase {
        label: "bookinfo registry".into(),
        config: Default::default(),
        registry: Some(kube_registry(
            &corpus_root().join("samples/bookinfo/platform/kube/bookinfo.yaml"),
        )),
    };
    let model = case.model();
    let reviews = model
        .services
        .values()
        .find(|s| s.hostname == "reviews.default.svc.cluster.local")
        .expect("bookinfo has reviews");
    let ip = reviews.endpoints[0].address.clone();
    let (clusters, listeners) = converted(&case, &spec(Some(ip)));
    let dirs = directions(&listeners);
    assert!(
        dirs.contains(&("virtualInbound".to_string(), Direction::Inbound))
            && dirs.contains(&("virtualOutbound".to_string(), Direction::Outbound)),
        "{dirs:?}"
    );
    let reviews = ServiceLabels {
        host: "reviews.default.svc.cluster.local".into(),
        name: "reviews".into(),
        namespace: "default".into(),
    };
    assert_eq!(
        service_of(
            &clusters,
            "outbound|9080||reviews.default.svc.cluster.local"
        ),
        &reviews
    );
    assert_eq!(service_of(&clusters, "inbound|9080||"), &reviews);
    // Passthrough and black hole: no service.
    assert_eq!(service_of(&clusters, "PassthroughCluster").host, "");
}

const TELEMETRY: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 400"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop-server, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  accessLogging:
  - match: {mode: CLIENT}
    disabled: true
  - match: {mode: SERVER}
"#;

/// Access logs end to end through the proxy's converters: the mesh's encoding and file, and
/// the most specific Telemetry per side (the workload's own: none outbound, every request
/// inbound; elsewhere the mesh-wide one's filter).
#[test]
fn access_logs_reach_the_connection_managers() {
    use weft_controller::model::{MeshAccessLog, MeshSettings, Model};
    use weft_proxy::access_log::Format;
    use weft_proxy::config::Network;

    let set = config_from(&[("entry.yaml", ENTRY), ("telemetry.yaml", TELEMETRY)]);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    let settings = MeshSettings {
        access_log: MeshAccessLog {
            file: "/var/log/weft/access.log".into(),
            json: true,
            format: String::new(),
        },
        ..MeshSettings::default()
    };
    let model = Model::build_with_registry(&set, None, &settings);
    let logs_of = |spec: &ProxySpec| {
        let (outbound, inbound) = free_ports();
        let generated = Generated::new(&model, &controller_proxy(spec, outbound, inbound));
        let mut by_listener = std::collections::BTreeMap::new();
        for r in &generated.listeners {
            let listener = convert::<lds::Listener, Listener>(r, type_url::LISTENER, |l| &l.name)
                .unwrap_or_else(|e| panic!("listener {}: {e}", r.name));
            let logs: Vec<_> = listener
                .chains
                .iter()
                .filter_map(|c| match &c.network {
                    Network::Http(m) => Some(m.access_logs.clone()),
                    Network::Tcp(_) => None,
                })
                .collect();
            by_listener.insert(listener.name.clone(), logs);
        }
        by_listener
    };
    // The shop workload: its own Telemetry.
    let shop = logs_of(&spec(None));
    assert!(
        shop["virtualOutbound"].iter().all(|l| l.is_empty()),
        "CLIENT disabled"
    );
    let inbound = &shop["virtualInbound"][0];
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].path, "/var/log/weft/access.log");
    assert!(inbound[0].filter.is_none(), "SERVER: every request");
    let Format::Json(fields) = &inbound[0].format else {
        panic!("JSON encoding: {:?}", inbound[0].format)
    };
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "start_time",
        "method",
        "path",
        "response_code",
        "response_flags",
        "upstream_host",
        "upstream_cluster",
        "route_name",
        "request_id",
        "downstream_peer_principal",
        "trace_id",
        "bytes_sent",
        "duration",
    ] {
        assert!(keys.contains(&key), "{key} missing: {keys:?}");
    }
    // Another workload: the mesh-wide Telemetry, with its filter, both sides.
    let other = logs_of(&ProxySpec {
        labels: vec![("app".into(), "other".into())],
        ..spec(None)
    });
    for listener in ["virtualInbound", "virtualOutbound"] {
        let log = &other[listener][0][0];
        assert_eq!(
            log.filter.as_ref().map(|f| format!("{f:?}")),
            Some(r#"Filter("(response.code >= 400)")"#.to_string()),
            "{listener}"
        );
    }
}

/// The attributes the admission check lets a filter use are the ones the proxy provides.
#[test]
fn access_log_filter_attributes_agree() {
    assert_eq!(
        weft_api::telemetry::ACCESS_LOG_ATTRIBUTES,
        weft_proxy::access_log::filter::ATTRIBUTES
    );
}
