//! Unit tests of what each kind of volume holds.

use super::*;
use k8s_openapi::api::core::v1::Volume;

fn volume(value: serde_json::Value) -> Volume {
    serde_json::from_value(value).expect("volume")
}

fn pod() -> PodFields {
    PodFields {
        name: "web-1".into(),
        namespace: "shop".into(),
        uid: "u-1".into(),
        labels: BTreeMap::from([
            ("app".into(), "web".into()),
            ("note".into(), "say \"hi\"\\n".into()),
        ]),
        annotations: BTreeMap::new(),
        node_name: "weft-test-node".into(),
        service_account: "web".into(),
        pod_ip: "198.18.1.2".into(),
        host_ip: "198.18.1.1".into(),
    }
}

fn objects() -> Objects {
    Objects {
        config_maps: BTreeMap::from([(
            "settings".into(),
            BTreeMap::from([("a.conf".into(), "A".into()), ("b.conf".into(), "B".into())]),
        )]),
        secrets: BTreeMap::from([(
            "creds".into(),
            BTreeMap::from([("key".into(), b"k3y".to_vec())]),
        )]),
        service_env: Vec::new(),
    }
}

fn files(layout: Layout) -> Vec<(String, Content, u32)> {
    match layout {
        Layout::Files(files) => files
            .into_iter()
            .map(|f| (f.path.display().to_string(), f.content, f.mode))
            .collect(),
        Layout::EmptyDir => panic!("expected files"),
    }
}

fn bytes(text: &str) -> Content {
    Content::Bytes(text.as_bytes().to_vec())
}

#[test]
fn config_maps_and_secrets_give_every_key_or_the_listed_items() {
    let all = layout(
        &volume(serde_json::json!({"name": "cfg", "configMap": {"name": "settings"}})),
        &pod(),
        &objects(),
    )
    .expect("configMap");
    assert_eq!(
        files(all),
        [
            ("a.conf".into(), bytes("A"), 0o644),
            ("b.conf".into(), bytes("B"), 0o644)
        ]
    );
    let items = layout(
        &volume(
            serde_json::json!({"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400,
            "items": [{"key": "key", "path": "tls/key.pem"}]}}),
        ),
        &pod(),
        &objects(),
    )
    .expect("secret");
    assert_eq!(files(items), [("tls/key.pem".into(), bytes("k3y"), 0o400)]);
}

#[test]
fn missing_objects_and_keys_fail_unless_optional() {
    let err = layout(
        &volume(serde_json::json!({"name": "cfg", "configMap": {"name": "nope"}})),
        &pod(),
        &objects(),
    )
    .expect_err("missing configmap");
    assert_eq!(err.reason, "ContainerCreating");
    assert!(
        err.message.contains("volume \"cfg\"")
            && err.message.contains("configmap \"nope\" not found"),
        "{err}"
    );
    let optional = layout(
        &volume(
            serde_json::json!({"name": "cfg", "configMap": {"name": "nope", "optional": true}}),
        ),
        &pod(),
        &objects(),
    )
    .expect("optional");
    assert!(files(optional).is_empty());
    let err = layout(
        &volume(
            serde_json::json!({"name": "cfg", "configMap": {"name": "settings",
            "items": [{"key": "c.conf", "path": "c"}]}}),
        ),
        &pod(),
        &objects(),
    )
    .expect_err("missing key");
    assert!(err.message.contains("key \"c.conf\" not found"), "{err}");
}

#[test]
fn projected_volumes_hold_tokens_config_and_downward_fields() {
    // The volume the ServiceAccount admission plugin adds to every pod, and an audience-bound
    // token as Istio's injector asks for one.
    let projected = layout(
        &volume(
            serde_json::json!({"name": "p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"serviceAccountToken": {"path": "istio-token", "audience": "istio-ca"}},
                {"configMap": {"name": "settings", "items": [{"key": "a.conf", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                                            "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]}}),
        ),
        &pod(),
        &objects(),
    )
    .expect("projected");
    assert_eq!(
        files(projected),
        [
            (
                "token".into(),
                Content::Token {
                    audience: None,
                    expiration_seconds: 3607
                },
                0o644
            ),
            (
                "istio-token".into(),
                Content::Token {
                    audience: Some("istio-ca".into()),
                    expiration_seconds: 3600
                },
                0o644
            ),
            ("ca.crt".into(), bytes("A"), 0o644),
            ("namespace".into(), bytes("shop"), 0o644),
        ]
    );
}

#[test]
fn downward_labels_are_formatted_as_the_kubelet_does() {
    let downward = layout(
        &volume(
            serde_json::json!({"name": "podinfo", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
            ]}}),
        ),
        &pod(),
        &objects(),
    )
    .expect("downwardAPI");
    assert_eq!(
        files(downward),
        [
            (
                "labels".into(),
                bytes("app=\"web\"\nnote=\"say \\\"hi\\\"\\\\n\""),
                0o644
            ),
            ("annotations".into(), bytes(""), 0o644),
            ("name".into(), bytes("web-1"), 0o600),
        ]
    );
}

#[test]
fn empty_dirs_and_unsupported_or_escaping_volumes() {
    assert_eq!(
        layout(
            &volume(serde_json::json!({"name": "tmp", "emptyDir": {}})),
            &pod(),
            &objects()
        ),
        Ok(Layout::EmptyDir)
    );
    let err = layout(
        &volume(serde_json::json!({"name": "host", "hostPath": {"path": "/etc"}})),
        &pod(),
        &objects(),
    )
    .expect_err("hostPath");
    assert!(err.message.contains("supports the volume types"), "{err}");
    let err = layout(
        &volume(
            serde_json::json!({"name": "cfg", "configMap": {"name": "settings",
            "items": [{"key": "a.conf", "path": "../../etc/passwd"}]}}),
        ),
        &pod(),
        &objects(),
    )
    .expect_err("escaping path");
    assert!(err.message.contains("must not contain '..'"), "{err}");
}
