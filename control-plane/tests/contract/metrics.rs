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
