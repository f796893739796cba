//! Which Sidecar applies to a workload, what its egress hosts let it see, its outbound traffic
//! policy, and the warnings about Sidecars.

use std::collections::BTreeMap;

use super::*;
use crate::model::MeshSettings;
use crate::testing::{SERVICES, model_from_yaml};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The hosts a workload in `namespace` with `labels` sees.
fn seen(model: &Model, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
    model
        .services_for(namespace, labels)
        .map(|service| service.hostname.clone())
        .collect()
}

const ALL: [&str; 5] = [
    "details.other.svc.cluster.local",
    "grpc.example.com",
    "productpage.default.svc.cluster.local",
    "ratings.default.svc.cluster.local",
    "reviews.default.svc.cluster.local",
];

#[test]
fn egress_host_forms() {
    let sidecar = |hosts: &str| {
        model_from_yaml(&format!(
            r#"{SERVICES}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec: {{egress: [{{hosts: {hosts}}}]}}
"#
        ))
    };
    let none = BTreeMap::new();
    let cases: [(&str, &[&str]); 7] = [
        (r#"["*/*"]"#, &ALL),
        (
            r#"["./*"]"#,
            &[
                "grpc.example.com",
                "productpage.default.svc.cluster.local",
                "ratings.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
            ],
        ),
        (r#"["other/*"]"#, &["details.other.svc.cluster.local"]),
        (r#"["*/*.example.com"]"#, &["grpc.example.com"]),
        (
            r#"["./reviews.default.svc.cluster.local", "other/ratings.default.svc.cluster.local"]"#,
            &["reviews.default.svc.cluster.local"],
        ),
        (r#"["~/*"]"#, &[]),
        (
            r#"["*/*.svc.cluster.local", "./grpc.example.com"]"#,
            &[
                "details.other.svc.cluster.local",
                "grpc.example.com",
                "productpage.default.svc.cluster.local",
                "ratings.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
            ],
        ),
    ];
    for (hosts, expected) in cases {
        assert_eq!(seen(&sidecar(hosts), "default", &none), expected, "{hosts}");
    }
    // A Sidecar of another namespace does not apply.
    assert_eq!(seen(&sidecar(r#"["~/*"]"#), "other", &none), ALL);
    // Without egress (only an outbound policy): every service.
    let model = model_from_yaml(&format!(
        r#"{SERVICES}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec: {{outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}
"#
    ));
    assert_eq!(seen(&model, "default", &none), ALL);
}

const LEVELS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: mesh, namespace: istio-system}
spec: {egress: [{hosts: ["other/*"]}], outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-namespace, namespace: default}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a-namespace, namespace: default}
spec: {egress: [{hosts: ["./reviews.default.svc.cluster.local"]}], outboundTrafficPolicy: {}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  egress: [{hosts: ["./ratings.default.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: ALLOW_ANY}
"#;

#[test]
fn precedence_workload_then_namespace_then_root() {
    let model = Model::build(
        &crate::testing::config_from_yaml(&format!("{SERVICES}\n---\n{LEVELS}")),
        &MeshSettings::default(),
    );
    let productpage = labels(&[("app", "productpage")]);
    let other = labels(&[("app", "ratings")]);
    let name = |namespace: &str, labels: &BTreeMap<String, String>| {
        model
            .sidecar_for(namespace, labels)
            .map(|sidecar| sidecar.key.name.clone())
    };
    assert_eq!(
        name("default", &productpage).as_deref(),
        Some("productpage")
    );
    // Two namespace-wide Sidecars: the first by name (no creation times in local mode).
    assert_eq!(name("default", &other).as_deref(), Some("a-namespace"));
    assert_eq!(name("other", &other).as_deref(), Some("mesh"));
    assert_eq!(
        seen(&model, "default", &productpage),
        ["ratings.default.svc.cluster.local"]
    );
    assert_eq!(
        seen(&model, "default", &other),
        ["reviews.default.svc.cluster.local"]
    );
    assert_eq!(
        seen(&model, "other", &other),
        ["details.other.svc.cluster.local"]
    );
    // The outbound traffic policy: the workload's, a policy without mode (REGISTRY_ONLY, as
    // Istio's enum default), the root's.
    assert_eq!(
        model.outbound_traffic_policy_for("default", &productpage),
        OutboundTrafficPolicy::AllowAny
    );
    assert_eq!(
        model.outbound_traffic_policy_for("default", &other),
        OutboundTrafficPolicy::RegistryOnly
    );
    assert_eq!(
        model.outbound_traffic_policy_for("other", &other),
        OutboundTrafficPolicy::RegistryOnly
    );
    // The shadowed namespace-wide Sidecar is reported.
    let shadowed: Vec<String> = model
        .warnings
        .iter()
        .filter(|w| w.object.kind == "Sidecar")
        .map(|w| format!("{}: {}", w.object, w.message))
        .collect();
    assert_eq!(
        shadowed,
        [
            "Sidecar default/b-namespace: Sidecar default/a-namespace already applies to the namespace's workloads (the oldest, then by name, wins); this one is ignored"
        ]
    );
}

#[test]
fn the_mesh_setting_applies_without_a_sidecar_policy() {
    let settings = MeshSettings {
        outbound_traffic_policy: OutboundTrafficPolicy::RegistryOnly,
        ..MeshSettings::default()
    };
    let model = Model::build(&crate::testing::config_from_yaml(SERVICES), &settings);
    assert_eq!(
        model.outbound_traffic_policy_for("default", &BTreeMap::new()),
        OutboundTrafficPolicy::RegistryOnly
    );
    assert_eq!(
        Model::empty(&MeshSettings::default()).outbound_traffic_policy_for("x", &BTreeMap::new()),
        OutboundTrafficPolicy::AllowAny
    );
}

#[test]
fn the_oldest_sidecar_of_a_level_wins() {
    let entry = |name: &str, created: Option<&str>| SidecarEntry {
        key: ObjectKey::new("Sidecar", Some("default"), name),
        created: created.map(|text| text.parse().expect("timestamp")),
        selector: BTreeMap::new(),
        egress_hosts: None,
        outbound_traffic_policy: None,
    };
    let sidecars = [
        entry("a", Some("2024-05-01T00:00:00Z")),
        entry("b", Some("2024-01-01T00:00:00Z")),
    ];
    let chosen = sidecar_for(&sidecars, "istio-system", "default", &BTreeMap::new());
    assert_eq!(chosen.map(|s| s.key.name.as_str()), Some("b"));
}

#[test]
fn untranslated_fields_are_reported_with_their_paths() {
    let model = model_from_yaml(&format!(
        r#"{SERVICES}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: 127.0.0.1:8080
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["./*"]
  - hosts: ["istio-system/*"]
  inboundConnectionPool: {{tcp: {{maxConnections: 10}}}}
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy: {{host: egress.example.com, port: {{number: 443}}}}
"#
    ));
    let paths: Vec<String> = model
        .warnings
        .iter()
        .filter(|w| w.object.kind == "Sidecar")
        .map(|w| w.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "spec.egress[0].bind",
            "spec.egress[0].captureMode",
            "spec.egress[0].port",
            "spec.inboundConnectionPool",
            "spec.ingress[0]",
            "spec.outboundTrafficPolicy.egressProxy",
        ]
    );
    // The Sidecar is not ignored as a whole any more: its egress hosts apply.
    assert_eq!(
        seen(&model, "default", &BTreeMap::new()).len(),
        ALL.len() - 1
    );
}
