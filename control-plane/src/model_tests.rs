//! Unit tests of the model builder.

use crate::xds::testing::{SERVICES, bookinfo_model, model_from_yaml};

#[test]
fn services_from_service_entries() {
    let model = bookinfo_model();
    let names: Vec<&str> = model.services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "details.other.svc.cluster.local",
            "grpc.example.com",
            "productpage.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            "reviews.default.svc.cluster.local",
        ]
    );
    let productpage = &model.services["productpage.default.svc.cluster.local"];
    let ports: Vec<u32> = productpage.ports.iter().map(|p| p.number).collect();
    assert_eq!(ports, [80, 3306, 9080]);
    assert_eq!(productpage.default_http_port(), Some(80));
    assert!(!productpage.ports[1].serves_http());
    let details = &model.services["details.other.svc.cluster.local"];
    assert_eq!(details.namespace, "other");
    assert_eq!(details.default_http_port(), Some(9080));
    assert!(model.services["grpc.example.com"].ports[0].is_http2());
}

#[test]
fn workload_entries_are_selected_in_the_same_namespace() {
    let model = bookinfo_model();
    let reviews = &model.services["reviews.default.svc.cluster.local"];
    let addresses: Vec<&str> = reviews
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addresses, ["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
}

#[test]
fn undeclared_protocol_is_served_as_http() {
    let model = model_from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: plain}
spec:
  hosts: [plain]
  ports: [{number: 8080, name: web}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"#,
    );
    let plain = &model.services["plain.default.svc.cluster.local"];
    assert!(plain.ports[0].serves_http());
    assert!(!plain.ports[0].is_http2());
}

#[test]
fn first_virtual_service_wins_and_exact_beats_wildcard() {
    let model = model_from_yaml(&format!(
        "{SERVICES}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-wildcard, namespace: default}
spec:
  hosts: ["*.default.svc.cluster.local"]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b-reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c-reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"#
    ));
    let name = |host: &str| model.virtual_service(host).map(|vs| vs.key.name.clone());
    assert_eq!(
        name("reviews.default.svc.cluster.local").as_deref(),
        Some("b-reviews")
    );
    assert_eq!(
        name("ratings.default.svc.cluster.local").as_deref(),
        Some("a-wildcard")
    );
    assert_eq!(name("details.other.svc.cluster.local"), None);
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.object.name == "c-reviews" && w.message.contains("b-reviews")),
        "{:?}",
        model.warnings
    );
}

#[test]
fn destination_rules_by_host() {
    let model = model_from_yaml(&format!(
        "{SERVICES}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all, namespace: default}
spec:
  host: "*.svc.cluster.local"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default-ns, namespace: default}
spec:
  host: "*.default.svc.cluster.local"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
"#
    ));
    let name = |host: &str| model.destination_rule(host).map(|dr| dr.key.name.clone());
    assert_eq!(
        name("ratings.default.svc.cluster.local").as_deref(),
        Some("ratings")
    );
    assert_eq!(
        name("reviews.default.svc.cluster.local").as_deref(),
        Some("default-ns")
    );
    assert_eq!(
        name("details.other.svc.cluster.local").as_deref(),
        Some("all")
    );
    assert_eq!(name("grpc.example.com"), None);
}

#[test]
fn duplicate_service_hosts_warn() {
    let model = model_from_yaml(&format!(
        "{SERVICES}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: zz-reviews-again, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 1234, name: http, protocol: HTTP}]
"#
    ));
    assert_eq!(
        model.services["reviews.default.svc.cluster.local"].ports[0].number,
        9080
    );
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.object.name == "zz-reviews-again")
    );
}

#[test]
fn unknown_subsets_warn() {
    let model = model_from_yaml(&format!(
        "{SERVICES}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings, subset: v1}}]}]
"#
    ));
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.path == "spec.http[0].route[0].destination.subset"),
        "{:?}",
        model.warnings
    );
}
