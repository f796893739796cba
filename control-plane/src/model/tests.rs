//! Unit tests of the model builder.

use crate::service::Resolution;
use crate::testing::{SERVICES, bookinfo_model, model_from_yaml};

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

/// ServiceEntries whose endpoints the proxy cannot all use.
const UNSENDABLE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bar, namespace: default}
spec:
  hosts: [bar.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: foo, namespace: default}
spec: {address: example.com, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ip, namespace: default}
spec: {address: 10.0.0.9, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sock, namespace: default}
spec: {address: "unix:///var/run/vm.sock", labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: remote, namespace: default}
spec: {network: other, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: uds, namespace: default}
spec:
  hosts: [uds.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.5}
  - {address: "unix:///var/run/app.sock"}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough, namespace: other}
spec:
  hosts: [none.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db, namespace: other}
spec: {address: db.example.com, labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr, namespace: rr}
spec:
  hosts: [rr.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  workloadSelector: {labels: {app: rr}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: rr}
spec: {address: a.example.com, labels: {app: rr}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: rr}
spec: {address: b.example.com, labels: {app: rr}}
"#;

fn warning_lines(model: &crate::model::Model) -> Vec<String> {
    model.warnings.iter().map(ToString::to_string).collect()
}

fn addresses(model: &crate::model::Model, host: &str) -> Vec<String> {
    model.services[host]
        .endpoints
        .iter()
        .map(|e| e.address.clone())
        .collect()
}

#[test]
fn dns_names_under_static_or_none_are_reported_not_sent() {
    let model = model_from_yaml(UNSENDABLE);
    let lines = warning_lines(&model);
    for expected in [
        "WorkloadEntry default/foo: spec.address: \"example.com\" is a DNS name but ServiceEntry default/bar has resolution STATIC; the endpoint is not sent (EDS carries IP addresses; use resolution DNS to have the proxy resolve it)",
        "WorkloadEntry other/db: spec.address: \"db.example.com\" is a DNS name but ServiceEntry other/passthrough has resolution NONE; the endpoint is not sent (EDS carries IP addresses; use resolution DNS to have the proxy resolve it)",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "missing {expected} in {lines:#?}"
        );
    }
    assert_eq!(addresses(&model, "bar.example.com"), ["10.0.0.9"]);
    assert!(addresses(&model, "none.example.com").is_empty());
    assert_eq!(
        model.services["bar.example.com"].resolution,
        Resolution::Static
    );
}

#[test]
fn unix_and_empty_addresses_are_reported_not_sent() {
    let model = model_from_yaml(UNSENDABLE);
    let lines = warning_lines(&model);
    for expected in [
        "WorkloadEntry default/sock: spec.address: \"unix:///var/run/vm.sock\" is a unix domain socket; the proxy does not support those yet, so the endpoint is not sent for ServiceEntry default/bar",
        "ServiceEntry default/uds: spec.endpoints[1].address: \"unix:///var/run/app.sock\" is a unix domain socket; the proxy does not support those yet, so the endpoint is not sent for ServiceEntry default/uds",
        "WorkloadEntry default/remote: spec.address: the address is empty (reachable through a network gateway only, which is not supported yet); the endpoint is not sent for ServiceEntry default/bar",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "missing {expected} in {lines:#?}"
        );
    }
    assert_eq!(addresses(&model, "uds.local"), ["10.0.0.5"]);
    // The generator never sees them.
    let sent: Vec<String> = crate::xds::endpoints::load_assignments(&model)
        .iter()
        .flat_map(crate::testing::assignment_addresses)
        .collect();
    assert_eq!(sent, ["10.0.0.9:80", "10.0.0.5:80"]);
}

#[test]
fn dns_round_robin_keeps_one_endpoint() {
    let model = model_from_yaml(UNSENDABLE);
    let service = &model.services["rr.example.com"];
    assert_eq!(service.resolution, Resolution::DnsRoundRobin);
    assert_eq!(addresses(&model, "rr.example.com"), ["a.example.com"]);
    let lines = warning_lines(&model);
    let expected = "WorkloadEntry rr/b: spec.address: ServiceEntry rr/rr has resolution DNS_ROUND_ROBIN, which uses a single endpoint (\"a.example.com\" is used); the endpoint \"b.example.com\" is not sent";
    assert!(lines.iter().any(|l| l == expected), "{lines:#?}");
}

#[test]
fn dns_hosts_become_endpoints_only_without_endpoints_or_selector() {
    let model = model_from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hosts, namespace: default}
spec:
  hosts: [httpbin.org, example.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: selected, namespace: default}
spec:
  hosts: [selected.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  workloadSelector: {labels: {app: nothing}}
"#,
    );
    assert_eq!(addresses(&model, "httpbin.org"), ["httpbin.org"]);
    assert_eq!(addresses(&model, "example.org"), ["example.org"]);
    assert_eq!(model.services["httpbin.org"].resolution, Resolution::Dns);
    // A selector that selects nothing: no endpoints (and so no cluster), as Istio.
    assert!(addresses(&model, "selected.example.com").is_empty());
    assert!(model.warnings.is_empty(), "{:?}", model.warnings);
}
