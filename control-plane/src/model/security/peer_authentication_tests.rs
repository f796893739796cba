//! The PeerAuthentication precedence as a table (mesh < namespace < workload < port, UNSET
//! inheritance, the oldest policy of a level, scopes), and the entries read from YAML.

use super::*;
use crate::testing::model_from_yaml;

const ROOT: &str = "istio-system";

/// A policy: `namespace/name`, `selector` (`k=v` pairs, empty: namespace-wide), mode, port
/// levels, creation time (`None`: local mode).
fn pa(
    id: &str,
    selector: &[(&str, &str)],
    mode: Option<MtlsMode>,
    ports: &[(u32, Option<MtlsMode>)],
    created: Option<&str>,
) -> PeerAuthenticationEntry {
    let (namespace, name) = id.split_once('/').expect("namespace/name");
    PeerAuthenticationEntry {
        key: ObjectKey::new("PeerAuthentication", Some(namespace), name),
        created: created.map(|text| text.parse().expect("timestamp")),
        selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        mode,
        port_level: ports.iter().copied().collect(),
    }
}

use MtlsMode::{Disable, Permissive, Strict};

struct Row {
    what: &'static str,
    policies: Vec<PeerAuthenticationEntry>,
    /// The workload: namespace, labels, port.
    namespace: &'static str,
    labels: &'static [(&'static str, &'static str)],
    port: Option<u32>,
    mode: MtlsMode,
    /// The deciding policy, `""` when none.
    policy: &'static str,
}

fn rows() -> Vec<Row> {
    let app = &[("app", "httpbin"), ("version", "v1")][..];
    vec![
        Row {
            what: "no policy at all: PERMISSIVE",
            policies: vec![],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "",
        },
        Row {
            what: "mesh-wide STRICT",
            policies: vec![pa("istio-system/default", &[], Some(Strict), &[], None)],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "istio-system/default",
        },
        Row {
            what: "namespace-wide beats mesh-wide",
            policies: vec![
                pa("istio-system/default", &[], Some(Strict), &[], None),
                pa("foo/default", &[], Some(Disable), &[], None),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "foo/default",
        },
        Row {
            what: "namespace-wide UNSET inherits mesh-wide",
            policies: vec![
                pa("istio-system/default", &[], Some(Strict), &[], None),
                pa("foo/default", &[], None, &[], None),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "istio-system/default",
        },
        Row {
            what: "mesh-wide UNSET and nothing else: PERMISSIVE by default",
            policies: vec![pa("istio-system/default", &[], None, &[], None)],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "",
        },
        Row {
            what: "workload beats namespace",
            policies: vec![
                pa("foo/default", &[], Some(Disable), &[], None),
                pa(
                    "foo/httpbin",
                    &[("app", "httpbin")],
                    Some(Strict),
                    &[],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "foo/httpbin",
        },
        Row {
            what: "a selector that does not match: the namespace decides",
            policies: vec![
                pa("foo/default", &[], Some(Disable), &[], None),
                pa(
                    "foo/ratings",
                    &[("app", "ratings")],
                    Some(Strict),
                    &[],
                    None,
                ),
                pa(
                    "foo/v2",
                    &[("app", "httpbin"), ("version", "v2")],
                    Some(Strict),
                    &[],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "foo/default",
        },
        Row {
            what: "workload UNSET inherits the namespace",
            policies: vec![
                pa("istio-system/default", &[], Some(Strict), &[], None),
                pa("foo/default", &[], Some(Permissive), &[], None),
                pa("foo/httpbin", &[("app", "httpbin")], None, &[], None),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "foo/default",
        },
        Row {
            what: "workload and namespace UNSET inherit the mesh",
            policies: vec![
                pa("istio-system/default", &[], Some(Disable), &[], None),
                pa("foo/default", &[], None, &[], None),
                pa("foo/httpbin", &[("app", "httpbin")], None, &[], None),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "istio-system/default",
        },
        Row {
            what: "port level beats the workload level for that port",
            policies: vec![pa(
                "foo/httpbin",
                &[("app", "httpbin")],
                Some(Strict),
                &[(8080, Some(Disable))],
                None,
            )],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "foo/httpbin",
        },
        Row {
            what: "port level of another port does not apply",
            policies: vec![pa(
                "foo/httpbin",
                &[("app", "httpbin")],
                Some(Strict),
                &[(9090, Some(Disable))],
                None,
            )],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "foo/httpbin",
        },
        Row {
            what: "port level UNSET inherits the workload level",
            policies: vec![
                pa("foo/default", &[], Some(Disable), &[], None),
                pa(
                    "foo/httpbin",
                    &[("app", "httpbin")],
                    Some(Strict),
                    &[(8080, None)],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "foo/httpbin",
        },
        Row {
            what: "port level UNSET under a workload UNSET inherits the namespace",
            policies: vec![
                pa("foo/default", &[], Some(Strict), &[], None),
                pa(
                    "foo/httpbin",
                    &[("app", "httpbin")],
                    None,
                    &[(8080, None)],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "foo/default",
        },
        Row {
            what: "port level over a namespace-wide mode (workload UNSET)",
            policies: vec![
                pa("foo/default", &[], Some(Strict), &[], None),
                pa(
                    "foo/httpbin",
                    &[("app", "httpbin")],
                    None,
                    &[(8080, Some(Permissive))],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "foo/httpbin",
        },
        Row {
            what: "no port asked: port levels do not apply",
            policies: vec![pa(
                "foo/httpbin",
                &[("app", "httpbin")],
                Some(Strict),
                &[(8080, Some(Disable))],
                None,
            )],
            namespace: "foo",
            labels: app,
            port: None,
            mode: Strict,
            policy: "foo/httpbin",
        },
        Row {
            what: "namespace-wide policies of other namespaces are ignored",
            policies: vec![pa("bar/default", &[], Some(Strict), &[], None)],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "",
        },
        Row {
            what: "selector policies of other namespaces are ignored",
            policies: vec![
                pa("foo/default", &[], Some(Permissive), &[], None),
                pa(
                    "bar/httpbin",
                    &[("app", "httpbin")],
                    Some(Disable),
                    &[],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "foo/default",
        },
        Row {
            what: "a selector policy in the root namespace applies to nothing",
            policies: vec![
                pa("istio-system/default", &[], Some(Permissive), &[], None),
                pa(
                    "istio-system/httpbin",
                    &[("app", "httpbin")],
                    Some(Strict),
                    &[(8080, Some(Strict))],
                    None,
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Permissive,
            policy: "istio-system/default",
        },
        Row {
            what: "in the root namespace its namespace-wide policy is the mesh level",
            policies: vec![
                pa("istio-system/default", &[], Some(Strict), &[], None),
                pa(
                    "istio-system/httpbin",
                    &[("app", "httpbin")],
                    Some(Disable),
                    &[],
                    None,
                ),
            ],
            namespace: "istio-system",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "istio-system/default",
        },
        Row {
            what: "two namespace-wide policies without timestamps: the first by name",
            policies: vec![
                pa("foo/zz-strict", &[], Some(Strict), &[], None),
                pa("foo/aa-disable", &[], Some(Disable), &[], None),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "foo/aa-disable",
        },
        Row {
            what: "two namespace-wide policies: the oldest wins whatever its name",
            policies: vec![
                pa(
                    "foo/aa-disable",
                    &[],
                    Some(Disable),
                    &[],
                    Some("2024-05-02T10:00:00Z"),
                ),
                pa(
                    "foo/zz-strict",
                    &[],
                    Some(Strict),
                    &[],
                    Some("2024-05-01T10:00:00+02:00"),
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Strict,
            policy: "foo/zz-strict",
        },
        Row {
            what: "two matching workload policies: the oldest wins, even when UNSET",
            policies: vec![
                pa("foo/default", &[], Some(Disable), &[], None),
                pa(
                    "foo/by-app",
                    &[("app", "httpbin")],
                    None,
                    &[],
                    Some("2024-01-01T00:00:00Z"),
                ),
                pa(
                    "foo/by-version",
                    &[("version", "v1")],
                    Some(Strict),
                    &[],
                    Some("2024-06-01T00:00:00Z"),
                ),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "foo/default",
        },
        Row {
            what: "a policy without a creation time counts as the oldest",
            policies: vec![
                pa(
                    "foo/b-new",
                    &[],
                    Some(Strict),
                    &[],
                    Some("2024-01-01T00:00:00Z"),
                ),
                pa("foo/z-local", &[], Some(Disable), &[], None),
            ],
            namespace: "foo",
            labels: app,
            port: Some(8080),
            mode: Disable,
            policy: "foo/z-local",
        },
        Row {
            what: "an empty selector is namespace-wide",
            policies: vec![
                pa("istio-system/default", &[], Some(Disable), &[], None),
                pa("foo/all", &[], Some(Strict), &[], None),
            ],
            namespace: "foo",
            labels: &[],
            port: Some(8080),
            mode: Strict,
            policy: "foo/all",
        },
    ]
}

#[test]
fn precedence_table() {
    let rows = rows();
    assert!(rows.len() >= 15);
    let mut failures = Vec::new();
    for row in &rows {
        let labels = row
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let decision = mtls_mode(&row.policies, ROOT, row.namespace, &labels, row.port);
        if (decision.mode, decision.policy_name().as_str()) != (row.mode, row.policy) {
            failures.push(format!(
                "{}: got {:?} by {:?}, want {:?} by {:?}",
                row.what,
                decision.mode,
                decision.policy_name(),
                row.mode,
                row.policy
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn namespace_mode_for_auto_mtls_ignores_workload_policies() {
    let policies = vec![
        pa("istio-system/default", &[], Some(Strict), &[], None),
        pa("foo/default", &[], Some(Disable), &[], None),
        pa("bar/default", &[], None, &[], None),
        pa(
            "bar/httpbin",
            &[("app", "httpbin")],
            Some(Disable),
            &[],
            None,
        ),
    ];
    assert_eq!(namespace_mtls_mode(&policies, ROOT, "foo"), Disable);
    // UNSET inherits the mesh; the workload policy is not considered.
    assert_eq!(namespace_mtls_mode(&policies, ROOT, "bar"), Strict);
    assert_eq!(namespace_mtls_mode(&policies, ROOT, "baz"), Strict);
    assert_eq!(namespace_mtls_mode(&[], ROOT, "baz"), Permissive);
}

#[test]
fn entries_from_yaml() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: foo, creationTimestamp: "2024-03-01T12:00:00Z"}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: UNSET}
  portLevelMtls: {8080: {mode: DISABLE}, "9090": {}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: everywhere, namespace: istio-system}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a-first, namespace: foo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b-second, namespace: foo}
spec: {mtls: {mode: PERMISSIVE}}
"#,
    );
    let httpbin = model
        .peer_authentications
        .iter()
        .find(|p| p.key.name == "httpbin")
        .expect("httpbin policy");
    assert_eq!(httpbin.mode, None);
    assert_eq!(
        httpbin.port_level,
        BTreeMap::from([(8080, Some(Disable)), (9090, None)])
    );
    assert_eq!(
        httpbin.created,
        Some("2024-03-01T12:00:00Z".parse().expect("timestamp"))
    );

    let labels = BTreeMap::from([("app".to_string(), "httpbin".to_string())]);
    // Port 8080: the port level; 9090 (UNSET) and 80: the mesh (foo/a-first, the oldest
    // namespace-wide policy by name, is UNSET; foo/b-second never decides).
    let decide = |port| model.mtls_mode_for("foo", &labels, Some(port));
    assert_eq!(
        (decide(8080).mode, decide(8080).policy_name()),
        (Disable, "foo/httpbin".to_string())
    );
    for port in [9090, 80] {
        assert_eq!(
            (decide(port).mode, decide(port).policy_name()),
            (Strict, "istio-system/default".to_string())
        );
    }

    let warnings: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "PeerAuthentication istio-system/everywhere: spec.selector: a PeerAuthentication with a workload selector in the root namespace"
        )),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "PeerAuthentication foo/b-second: spec: PeerAuthentication foo/a-first is older"
        )),
        "{warnings:#?}"
    );
    // PeerAuthentication is translated: no "not supported" warning for the kind.
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("PeerAuthentication resources are not supported")),
        "{warnings:#?}"
    );
}

#[test]
fn a_bad_creation_time_is_reported() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo, creationTimestamp: "yesterday"}
spec: {mtls: {mode: STRICT}}
"#,
    );
    assert_eq!(model.peer_authentications[0].created, None);
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.path == "metadata.creationTimestamp" && w.message.contains("\"yesterday\"")),
        "{:#?}",
        model.warnings
    );
}
