//! Unit tests of the container spec → launch rules.

use super::*;
use crate::node::images::repository;

fn container(value: serde_json::Value) -> Container {
    serde_json::from_value(value).expect("container")
}

fn pod() -> PodFields {
    PodFields {
        name: "reviews-v1-abc".into(),
        namespace: "default".into(),
        uid: "u-1".into(),
        labels: BTreeMap::from([("app".into(), "reviews".into())]),
        annotations: BTreeMap::from([("team".into(), "books".into())]),
        node_name: "weft-test-node".into(),
        service_account: "bookinfo-reviews".into(),
        pod_ip: "198.18.1.2".into(),
        host_ip: "198.18.1.1".into(),
    }
}

fn objects() -> Objects {
    Objects {
        config_maps: BTreeMap::from([(
            "settings".into(),
            BTreeMap::from([("COLOR".into(), "red".into()), ("SIZE".into(), "3".into())]),
        )]),
        secrets: BTreeMap::from([(
            "creds".into(),
            BTreeMap::from([("TOKEN".into(), b"s3cret".to_vec())]),
        )]),
        service_env: Vec::new(),
    }
}

fn images() -> ImageTable {
    let mut table = ImageTable::default();
    table.insert(
        "docker.io/istio/examples-bookinfo-reviews-v1",
        Image {
            program: "/bin/weftctl".into(),
            entrypoint: vec!["demo-app".into(), "--role".into(), "reviews".into()],
            default_args: vec!["--listen".into(), "0.0.0.0:9080".into()],
        },
    );
    table
}

#[test]
fn expansion_follows_the_kubelet() {
    let vars = BTreeMap::from([("A", "alpha"), ("B", "$(A)"), ("EMPTY", "")]);
    let lookup = |name: &str| vars.get(name).copied();
    let cases = [
        ("$(A)", "alpha"),
        ("x$(A)y$(A)", "xalphayalpha"),
        // Undefined: left as written.
        ("$(NOPE)", "$(NOPE)"),
        // Escaped: `$$` is a literal `$`, so this is not a reference.
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$alpha"),
        // A value is not expanded again.
        ("$(B)", "$(A)"),
        ("$(EMPTY)-", "-"),
        // Not references.
        ("$A", "$A"),
        ("$", "$"),
        ("cost: 5$", "cost: 5$"),
        ("$(unclosed", "$(unclosed"),
        ("$()", "$()"),
    ];
    for (input, expected) in cases {
        assert_eq!(expand(input, &lookup), expected, "{input:?}");
    }
}

#[test]
fn repositories_drop_tags_and_digests_but_not_registry_ports() {
    for (reference, expected) in [
        ("docker.io/istio/proxyv2:1.24.0", "docker.io/istio/proxyv2"),
        ("istio/proxyv2", "docker.io/istio/proxyv2"),
        ("localhost:5000/app:v1", "localhost:5000/app"),
        ("localhost/app", "localhost/app"),
        ("busybox:1.36", "docker.io/library/busybox"),
        ("app@sha256:0123", "docker.io/library/app"),
        ("reg.io/app:v1@sha256:0123", "reg.io/app"),
    ] {
        assert_eq!(repository(reference), expected, "{reference}");
    }
}

#[test]
fn env_in_order_with_references_fields_and_keys() {
    let c = container(serde_json::json!({
        "name": "reviews",
        "envFrom": [
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
        ],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "hi $(POD) in $(NS)"},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "COLOR"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {"name": "MAYBE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "NOPE", "optional": true}}},
            {"name": "CFG_SIZE", "value": "overridden"},
        ],
    }));
    let env = environment(&c, &pod(), &objects()).expect("env");
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // NS is defined after GREETING: its reference stays as written, as the kubelet does.
    assert_eq!(get("GREETING"), Some("hi reviews-v1-abc in $(NS)"));
    assert_eq!(get("NS"), Some("default"));
    assert_eq!(get("APP"), Some("reviews"));
    assert_eq!(get("TEAM"), Some("books"));
    assert_eq!(get("IP"), Some("198.18.1.2"));
    assert_eq!(get("SA"), Some("bookinfo-reviews"));
    assert_eq!(get("NODE"), Some("weft-test-node"));
    assert_eq!(get("COLOR"), Some("red"));
    assert_eq!(get("TOKEN"), Some("s3cret"));
    assert_eq!(get("MAYBE"), None, "an optional missing key sets nothing");
    assert_eq!(get("CFG_COLOR"), Some("red"));
    assert_eq!(get("CFG_SIZE"), Some("overridden"), "env wins over envFrom");
    assert_eq!(
        env.iter().filter(|(k, _)| k == "CFG_SIZE").count(),
        1,
        "{env:?}"
    );
}

#[test]
fn missing_objects_are_create_container_config_errors_with_the_kubelets_words() {
    let cases = [
        (
            serde_json::json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}),
            "configmap \"gone\" not found",
        ),
        (
            serde_json::json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}),
            "couldn't find key k in ConfigMap default/settings",
        ),
        (
            serde_json::json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}),
            "secret \"gone\" not found",
        ),
        (
            serde_json::json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}),
            "couldn't find key k in Secret default/creds",
        ),
        (
            serde_json::json!({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.priority"}}}),
            "fieldRef \"spec.priority\" is not supported",
        ),
    ];
    for (var, message) in cases {
        let c = container(serde_json::json!({"name": "c", "env": [var]}));
        let err = environment(&c, &pod(), &objects()).expect_err(message);
        assert_eq!(err.reason, "CreateContainerConfigError");
        assert!(err.message.starts_with(message), "{err}");
    }
    let c = container(
        serde_json::json!({"name": "c", "envFrom": [{"configMapRef": {"name": "gone"}}]}),
    );
    assert_eq!(
        environment(&c, &pod(), &objects())
            .expect_err("envFrom")
            .message,
        "configmap \"gone\" not found"
    );
    let c = container(
        serde_json::json!({"name": "c", "envFrom": [{"secretRef": {"name": "gone", "optional": true}}]}),
    );
    assert!(
        environment(&c, &pod(), &objects())
            .expect("optional")
            .is_empty()
    );
}

#[test]
fn argv_from_command_args_and_the_image() {
    let image = "docker.io/istio/examples-bookinfo-reviews-v1:1.20.1";
    let run = |spec: serde_json::Value| {
        let mut spec = spec;
        spec["name"] = "reviews".into();
        spec["image"] = image.into();
        launch(&container(spec), &pod(), &objects(), &images()).map(|l| l.args)
    };
    // Neither: the image's entrypoint and default arguments.
    assert_eq!(
        run(serde_json::json!({})).expect("default"),
        ["demo-app", "--role", "reviews", "--listen", "0.0.0.0:9080"]
    );
    // args only: they replace the image's default arguments, after its entrypoint.
    assert_eq!(
        run(serde_json::json!({"args": ["--listen", "$(IP):9080"],
            "env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}))
        .expect("args"),
        [
            "demo-app",
            "--role",
            "reviews",
            "--listen",
            "198.18.1.2:9080"
        ]
    );
    // command: replaces the entrypoint and the defaults; args follow.
    assert_eq!(
        run(serde_json::json!({"command": ["demo-app"], "args": ["--role", "ratings", "$(UNSET)", "$$(IP)"]}))
            .expect("command"),
        ["demo-app", "--role", "ratings", "$(UNSET)", "$(IP)"]
    );
    let launch_ok = launch(
        &container(serde_json::json!({"name": "r", "image": image})),
        &pod(),
        &objects(),
        &images(),
    )
    .expect("launch");
    assert_eq!(launch_ok.program, PathBuf::from("/bin/weftctl"));

    let err = launch(
        &container(serde_json::json!({"name": "x", "image": "docker.io/library/nginx:1.27"})),
        &pod(),
        &objects(),
        &images(),
    )
    .expect_err("unknown image");
    assert_eq!(err.reason, "ErrImagePull");
    assert!(
        err.message.contains("docker.io/library/nginx:1.27"),
        "{err}"
    );
}

#[test]
fn service_links_are_the_kubelets_variables_and_come_first() {
    let env = service_links(&[
        ServiceLink {
            name: "details".into(),
            cluster_ip: "198.19.0.20".into(),
            ports: vec![(Some("http".into()), 9080, "TCP".into())],
        },
        ServiceLink {
            name: "headless-db".into(),
            cluster_ip: "None".into(),
            ports: vec![(None, 5432, "TCP".into())],
        },
    ]);
    let expected: Vec<(String, String)> = [
        ("DETAILS_SERVICE_HOST", "198.19.0.20"),
        ("DETAILS_SERVICE_PORT", "9080"),
        ("DETAILS_SERVICE_PORT_HTTP", "9080"),
        ("DETAILS_PORT", "tcp://198.19.0.20:9080"),
        ("DETAILS_PORT_9080_TCP", "tcp://198.19.0.20:9080"),
        ("DETAILS_PORT_9080_TCP_PROTO", "tcp"),
        ("DETAILS_PORT_9080_TCP_PORT", "9080"),
        ("DETAILS_PORT_9080_TCP_ADDR", "198.19.0.20"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    assert_eq!(env, expected);

    // A container's own variable replaces a Service's, and may refer to it.
    let mut objects = objects();
    objects.service_env = env;
    let c = container(serde_json::json!({"name": "app", "env": [
        {"name": "DETAILS_SERVICE_PORT", "value": "1234"},
        {"name": "UPSTREAM", "value": "$(DETAILS_SERVICE_HOST):$(DETAILS_SERVICE_PORT)"},
    ]}));
    let env = environment(&c, &pod(), &objects).expect("env");
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("DETAILS_SERVICE_PORT"), Some("1234"));
    assert_eq!(get("UPSTREAM"), Some("198.19.0.20:1234"));
    assert_eq!(get("DETAILS_PORT_9080_TCP_ADDR"), Some("198.19.0.20"));
}
