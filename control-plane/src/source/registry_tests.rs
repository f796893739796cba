//! Unit tests of the Kubernetes → model translation.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use weft_api::networking::Protocol;

use super::*;
use crate::model::{MeshSettings, Model};
use crate::source::{ConfigSet, Snapshot};
use crate::testing::config_from_yaml;

fn kube_service(value: serde_json::Value) -> Arc<KubeService> {
    Arc::new(serde_json::from_value(value).expect("service"))
}

fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
    Arc::new(serde_json::from_value(value).expect("endpoint slice"))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// reviews (default): ports http 9080 → named target `web`, grpc 9090 (appProtocol),
/// 3306 (well-known TCP); pods v1 (ready), v2 (ready unset, no serviceAccountName), v3
/// (not ready), and one endpoint without a Pod target.
fn reviews_registry() -> Registry {
    let mut registry = Registry {
        services: vec![kube_service(json!({
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {
                "clusterIP": "10.0.0.10",
                "ports": [
                    {"name": "http", "port": 9080, "targetPort": "web", "protocol": "TCP"},
                    {"name": "api", "port": 9090, "targetPort": 19090, "appProtocol": "grpc"},
                    {"name": "db", "port": 3306},
                ],
            },
        }))],
        endpoint_slices: vec![
            slice(json!({
                "metadata": {"name": "reviews-abc", "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: "reviews"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}, {"name": "api", "port": 19090},
                          {"name": "db", "port": 3306}],
                "endpoints": [
                    {"addresses": ["10.1.0.1"], "conditions": {"ready": true},
                     "targetRef": {"kind": "Pod", "name": "reviews-v1", "namespace": "default"}},
                    {"addresses": ["10.1.0.2"],
                     "targetRef": {"kind": "Pod", "name": "reviews-v2"}},
                    {"addresses": ["10.1.0.3"], "conditions": {"ready": false},
                     "targetRef": {"kind": "Pod", "name": "reviews-v3", "namespace": "default"}},
                    {"addresses": ["10.1.0.9"], "conditions": {"ready": true}},
                ],
            })),
            // A second slice: a pod whose `web` port is 8081 and that lacks the db port.
            slice(json!({
                "metadata": {"name": "reviews-def", "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: "reviews"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8081}, {"name": "api", "port": 19090}],
                "endpoints": [
                    {"addresses": ["10.1.0.4"], "conditions": {"ready": true},
                     "targetRef": {"kind": "Pod", "name": "reviews-v2b", "namespace": "default"}},
                ],
            })),
            // Same service name, other namespace: not reviews.default's.
            slice(json!({
                "metadata": {"name": "reviews-xyz", "namespace": "other",
                             "labels": {SERVICE_NAME_LABEL: "reviews"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["10.9.0.1"]}],
            })),
        ],
        pods: BTreeMap::from([
            (
                ("default".into(), "reviews-v1".into()),
                Pod {
                    labels: labels(&[("app", "reviews"), ("version", "v1")]),
                    service_account: Some("reviews".into()),
                    node_name: None,
                },
            ),
            (
                ("default".into(), "reviews-v2".into()),
                Pod {
                    labels: labels(&[("app", "reviews"), ("version", "v2")]),
                    service_account: None,
                    node_name: None,
                },
            ),
            (
                ("default".into(), "reviews-v2b".into()),
                Pod {
                    labels: labels(&[("app", "reviews"), ("version", "v2")]),
                    service_account: Some("reviews".into()),
                    node_name: None,
                },
            ),
            (
                ("default".into(), "reviews-v3".into()),
                Pod {
                    labels: labels(&[("app", "reviews"), ("version", "v3")]),
                    service_account: Some("reviews".into()),
                    node_name: None,
                },
            ),
        ]),
        namespaces: BTreeMap::new(),
        nodes: BTreeMap::new(),
    };
    registry.sort();
    registry
}

#[test]
fn protocols_from_app_protocol_and_names() {
    type Case<'a> = (
        u32,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<Protocol>,
    );
    let cases: &[Case<'_>] = &[
        (80, "http", None, None, Some(Protocol::Http)),
        (80, "http-web", None, None, Some(Protocol::Http)),
        (80, "HTTP2-x", None, None, Some(Protocol::Http2)),
        (80, "grpc-api", None, None, Some(Protocol::Grpc)),
        (80, "grpc-web-ui", None, None, Some(Protocol::GrpcWeb)),
        (80, "grpc-web", None, None, Some(Protocol::GrpcWeb)),
        (443, "https-admin", None, None, Some(Protocol::Https)),
        (80, "tls-passthrough", None, None, Some(Protocol::Tls)),
        (80, "tcp-raw", None, None, Some(Protocol::Tcp)),
        (80, "mongo", None, None, Some(Protocol::Mongo)),
        (80, "redis-cache", None, None, Some(Protocol::Redis)),
        // Unknown: undeclared (served as HTTP), unless a well-known TCP port.
        (80, "web", None, None, None),
        (80, "", None, None, None),
        (80, "httpx", None, None, None),
        (3306, "db", None, None, Some(Protocol::Tcp)),
        (27017, "", None, None, Some(Protocol::Tcp)),
        // appProtocol wins over the name.
        (80, "tcp-x", None, Some("http"), Some(Protocol::Http)),
        (80, "http", None, Some("grpc"), Some(Protocol::Grpc)),
        (
            80,
            "http",
            None,
            Some("kubernetes.io/h2c"),
            Some(Protocol::Http2),
        ),
        (
            80,
            "x",
            None,
            Some("kubernetes.io/ws"),
            Some(Protocol::Http),
        ),
        (
            80,
            "x",
            None,
            Some("kubernetes.io/wss"),
            Some(Protocol::Https),
        ),
        (80, "x", None, Some("HTTP2"), Some(Protocol::Http2)),
        // An unknown appProtocol does not fall back to the name (as Istio).
        (80, "http", None, Some("example.com/custom"), None),
        // L4 UDP is UDP; a TCP port named udp-… is not.
        (53, "dns", Some("UDP"), None, Some(Protocol::Udp)),
        (80, "udp-x", Some("TCP"), None, None),
    ];
    for (number, name, l4, app, expected) in cases {
        assert_eq!(
            port_protocol(*number, name, *l4, *app),
            *expected,
            "port {number} name {name:?} l4 {l4:?} appProtocol {app:?}"
        );
    }
}

#[test]
fn service_to_model_service() {
    let (services, skipped) = reviews_registry().services("cluster.local", "cluster.local");
    assert!(skipped.is_empty());
    assert_eq!(services.len(), 1);
    let reviews = &services[0];
    assert_eq!(reviews.hostname, "reviews.default.svc.cluster.local");
    assert_eq!(reviews.namespace, "default");
    assert_eq!(reviews.source.to_string(), "Service default/reviews");
    let ports: Vec<(u32, &str, Option<Protocol>, Option<u32>)> = reviews
        .ports
        .iter()
        .map(|p| (p.number, p.name.as_str(), p.protocol, p.target_port))
        .collect();
    assert_eq!(
        ports,
        [
            (3306, "db", Some(Protocol::Tcp), Some(3306)),
            (9080, "http", Some(Protocol::Http), None),
            (9090, "api", Some(Protocol::Grpc), Some(19090)),
        ]
    );
}

#[test]
fn endpoints_ready_labels_and_named_ports() {
    let (services, _) = reviews_registry().services("cluster.local", "cluster.local");
    let reviews = &services[0];
    let http = reviews.port(9080).expect("http port");
    let db = reviews.port(3306).expect("db port");
    let found: Vec<(&str, Option<&str>, bool, Option<u32>)> = reviews
        .endpoints
        .iter()
        .map(|e| {
            (
                e.address.as_str(),
                e.labels.get("version").map(String::as_str),
                e.serves(db),
                e.serves(http).then(|| e.port_for(http)),
            )
        })
        .collect();
    // 10.1.0.3 is not ready; 10.9.0.1 belongs to reviews.other.
    assert_eq!(
        found,
        [
            ("10.1.0.1", Some("v1"), true, Some(8080)),
            ("10.1.0.2", Some("v2"), true, Some(8080)),
            ("10.1.0.4", Some("v2"), false, Some(8081)),
            ("10.1.0.9", None, true, Some(8080)),
        ]
    );
}

#[test]
fn identities_are_the_ready_pods_service_accounts_and_the_annotations() {
    let mut registry = reviews_registry();
    let (services, _) = registry.services("cluster.local", "example.org");
    let reviews = &services[0];
    let accounts: Vec<(&str, Option<String>)> = reviews
        .endpoints
        .iter()
        .map(|e| {
            let account = e
                .service_account
                .as_ref()
                .map(|a| format!("{}/{}", a.namespace, a.name));
            (e.address.as_str(), account)
        })
        .collect();
    // No serviceAccountName is `default`; an endpoint whose Pod is unknown has none.
    assert_eq!(
        accounts,
        [
            ("10.1.0.1", Some("default/reviews".to_string())),
            ("10.1.0.2", Some("default/default".to_string())),
            ("10.1.0.4", Some("default/reviews".to_string())),
            ("10.1.0.9", None),
        ]
    );
    assert_eq!(
        reviews.subject_alt_names,
        [
            "spiffe://example.org/ns/default/sa/default",
            "spiffe://example.org/ns/default/sa/reviews",
        ]
    );

    let service = Arc::make_mut(&mut registry.services[0]);
    service.metadata.annotations = Some(BTreeMap::from([
        (
            KUBERNETES_SERVICE_ACCOUNTS.to_string(),
            "reviews-canary, ,legacy".to_string(),
        ),
        (
            CANONICAL_SERVICE_ACCOUNTS.to_string(),
            "spiffe://other.example/ns/x/sa/y".to_string(),
        ),
    ]));
    let (services, _) = registry.services("cluster.local", "example.org");
    assert_eq!(
        services[0].subject_alt_names,
        [
            "spiffe://example.org/ns/default/sa/default",
            "spiffe://example.org/ns/default/sa/legacy",
            "spiffe://example.org/ns/default/sa/reviews",
            "spiffe://example.org/ns/default/sa/reviews-canary",
            "spiffe://other.example/ns/x/sa/y",
        ]
    );
}

#[test]
fn headless_external_name_and_fqdn_slices_are_skipped() {
    let mut registry = Registry {
        services: vec![
            kube_service(json!({
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
            })),
            kube_service(json!({
                "metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"},
            })),
            kube_service(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"ports": [{"port": 80}]},
            })),
        ],
        endpoint_slices: vec![slice(json!({
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "FQDN",
            "ports": [{"name": "", "port": 80}],
            "endpoints": [{"addresses": ["web.example.com"]}],
        }))],
        ..Registry::default()
    };
    registry.sort();
    let (services, skipped) = registry.services("cluster.local", "cluster.local");
    let skipped: Vec<String> = skipped.iter().map(|s| s.service.to_string()).collect();
    assert_eq!(skipped, ["Service default/db", "Service default/ext"]);
    assert_eq!(services.len(), 1);
    let web = &services[0];
    // Unnamed single port, no targetPort: the port itself, undeclared protocol → HTTP.
    assert_eq!(web.ports[0].name, "");
    assert_eq!(web.ports[0].target_port, Some(80));
    assert!(web.ports[0].serves_http());
    assert!(web.endpoints.is_empty());
}

#[test]
fn subsets_select_pod_labels_through_the_generator() {
    let config = config_from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2, port: {number: 9080}}}]}]
"#,
    );
    let snapshot = Snapshot {
        config: Arc::new(config),
        registry: Some(Arc::new(reviews_registry())),
        unsynced: Vec::new(),
        seen_at: Default::default(),
    };
    let model = Model::from_snapshot(&snapshot, &MeshSettings::default());
    assert!(
        !model.warnings.iter().any(|w| w.path.contains("subset")),
        "{:?}",
        model.warnings
    );
    let all = crate::xds::endpoints::load_assignments(&model);
    let addresses = |name: &str| -> Vec<String> {
        let assignment = all
            .iter()
            .find(|a| a.cluster_name == name)
            .unwrap_or_else(|| panic!("no assignment {name}"));
        crate::testing::assignment_addresses(assignment)
    };
    let host = "reviews.default.svc.cluster.local";
    assert_eq!(
        addresses(&format!("outbound|9080|v2|{host}")),
        ["10.1.0.2:8080", "10.1.0.4:8081"]
    );
    assert_eq!(
        addresses(&format!("outbound|9080|v1|{host}")),
        ["10.1.0.1:8080"]
    );
    // The db port: only the endpoints whose slice lists it.
    assert_eq!(
        addresses(&format!("outbound|3306||{host}")),
        ["10.1.0.1:3306", "10.1.0.2:3306", "10.1.0.9:3306"]
    );
    // The route goes to the v2 subset cluster, which is HTTP/1 (undeclared h2).
    let routes =
        crate::xds::routes::route_configurations(&model, &crate::xds::Proxy::sidecar("default"));
    let text = format!("{routes:?}");
    assert!(text.contains(&format!("outbound|9080|v2|{host}")));
    let clusters = crate::xds::clusters::clusters(&model, &crate::xds::Proxy::sidecar("default"));
    assert!(
        clusters
            .iter()
            .any(|c| c.name == format!("outbound|9090|v2|{host}"))
    );
}

#[test]
fn kubernetes_service_wins_over_a_service_entry_for_the_same_host() {
    let config = config_from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews-se, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"#,
    );
    let model =
        Model::build_with_registry(&config, Some(&reviews_registry()), &MeshSettings::default());
    let reviews = &model.services["reviews.default.svc.cluster.local"];
    assert_eq!(reviews.source.kind, "Service");
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.object.name == "reviews-se" && w.message.contains("already defined")),
        "{:?}",
        model.warnings
    );
    // Local mode (no registry) is unchanged: the ServiceEntry defines the host.
    let local = Model::build(&config, &MeshSettings::default());
    assert_eq!(
        local.services["reviews.default.svc.cluster.local"]
            .source
            .kind,
        "ServiceEntry"
    );
    let _ = ConfigSet::default();
}

#[test]
fn virtual_ips_from_cluster_ips_else_cluster_ip() {
    let spec = |value: serde_json::Value| -> k8s_openapi::api::core::v1::ServiceSpec {
        serde_json::from_value(value).expect("spec")
    };
    assert_eq!(
        cluster_ips(&spec(
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["fd00::1", "10.0.0.1"]})
        )),
        ["10.0.0.1", "fd00::1"]
    );
    assert_eq!(
        cluster_ips(&spec(json!({"clusterIP": "10.0.0.2"}))),
        ["10.0.0.2"]
    );
    assert!(cluster_ips(&spec(json!({"clusterIP": "None", "clusterIPs": ["None"]}))).is_empty());
    assert!(cluster_ips(&spec(json!({"clusterIP": ""}))).is_empty());
    assert!(cluster_ips(&spec(json!({}))).is_empty());
    // Through the registry: the model service carries them.
    let (services, _) = reviews_registry().services("cluster.local", "cluster.local");
    assert_eq!(services[0].addresses, ["10.0.0.10"]);
}

#[test]
fn service_entry_addresses_are_kept_sorted() {
    let model = Model::build(
        &config_from_yaml(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [a.example.com]
  addresses: [240.0.1.0/24, 240.0.0.9, 240.0.0.9]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
"#,
        ),
        &MeshSettings::default(),
    );
    assert_eq!(
        model.services["a.example.com"].addresses,
        ["240.0.0.9", "240.0.1.0/24"]
    );
    // Addresses are translated now: no "not supported" warning.
    assert!(
        !model.warnings.iter().any(|w| w.path == "spec.addresses"),
        "{:?}",
        model.warnings
    );
}

#[test]
fn endpoint_localities_from_pod_label_node_labels_or_slice_zone() {
    let mut registry = reviews_registry();
    let node = |region: &str, zone: &str, subzone: &str| {
        labels(&[
            (crate::locality::REGION_LABEL, region),
            (crate::locality::ZONE_LABEL, zone),
            (crate::locality::SUBZONE_LABEL, subzone),
        ])
    };
    registry.nodes = BTreeMap::from([
        ("node-a".to_string(), node("us-east", "us-east-1a", "rack1")),
        ("node-b".to_string(), node("us-east", "us-east-1b", "")),
    ]);
    let pod = |registry: &mut Registry, name: &str| {
        registry
            .pods
            .get_mut(&("default".to_string(), name.to_string()))
            .unwrap()
            .clone()
    };
    // reviews-v1 runs on node-a; reviews-v2 overrides its node with the pod label.
    let mut v1 = pod(&mut registry, "reviews-v1");
    v1.node_name = Some("node-a".into());
    let mut v2 = pod(&mut registry, "reviews-v2");
    v2.node_name = Some("node-b".into());
    v2.labels.insert(
        crate::locality::POD_LOCALITY_LABEL.into(),
        "eu-west.eu-west-1c.rack9".into(),
    );
    registry
        .pods
        .insert(("default".into(), "reviews-v1".into()), v1);
    registry
        .pods
        .insert(("default".into(), "reviews-v2".into()), v2);
    // The endpoint without a pod: its slice names the node's zone only.
    let mut slices: Vec<EndpointSlice> = registry
        .endpoint_slices
        .iter()
        .map(|s| (**s).clone())
        .collect();
    for endpoint in &mut slices[0].endpoints {
        if endpoint.addresses == ["10.1.0.9"] {
            endpoint.zone = Some("us-east-1z".into());
        }
    }
    registry.endpoint_slices = slices.into_iter().map(Arc::new).collect();
    let (services, _) = registry.services("cluster.local", "cluster.local");
    let reviews = services
        .iter()
        .find(|s| s.hostname == "reviews.default.svc.cluster.local")
        .unwrap();
    let locality_of = |address: &str| {
        reviews
            .endpoints
            .iter()
            .find(|e| e.address == address)
            .map(|e| e.locality.to_string())
            .unwrap()
    };
    assert_eq!(locality_of("10.1.0.1"), "us-east/us-east-1a/rack1");
    assert_eq!(locality_of("10.1.0.2"), "eu-west/eu-west-1c/rack9");
    assert_eq!(locality_of("10.1.0.9"), "/us-east-1z/");
    // reviews-v2b: no node known, no zone given.
    assert_eq!(locality_of("10.1.0.4"), "//");
    assert_eq!(
        registry
            .pod_locality("default", "reviews-v1")
            .unwrap()
            .to_string(),
        "us-east/us-east-1a/rack1"
    );
    assert_eq!(registry.pod_locality("default", "reviews-v2b"), None);
}
