//! The mesh as a user installs it on the test node: the repo's Helm chart, its controller in
//! its pod, and the waits that make the next step safe (the controller available, the API
//! server calling the injecting webhook with the `caBundle` the controller wrote).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::test_node::TestNode;
use crate::eventually;

/// The namespace the chart installs into.
pub const MESH_NAMESPACE: &str = "weft-system";

/// The repo's chart.
pub fn chart() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/weft")
        .to_string_lossy()
        .into_owned()
}

/// `helm install weft` with `values` (`--set`/`--set-string` pairs, as helm takes them; a
/// 50 ms push debounce first), then waits up to 120 s for the controller's Deployment to be
/// available. Panics with the pods and the controller's log when it is not.
pub async fn install(node: &TestNode, values: &[&str]) {
    let chart = chart();
    let mut args = vec![
        "install",
        "weft",
        chart.as_str(),
        "--wait=false",
        "--set",
        "controller.debounce=50ms",
    ];
    args.extend_from_slice(values);
    let out = node.cluster.helm(&args);
    assert!(
        out.status.success(),
        "helm install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), MESH_NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(120);
    while deployments
        .get("weft-controller")
        .await
        .ok()
        .and_then(|d| d.status)
        .is_none_or(|s| s.available_replicas != Some(1))
    {
        assert!(
            Instant::now() < deadline,
            "the controller's pod is not available after 120s\n{}\n{}",
            node.cluster
                .kubectl_ok(&["get", "pods", "-A", "-o", "wide"]),
            controller_logs(node).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the controller's pods wrote, for a failure message.
pub async fn controller_logs(node: &TestNode) -> String {
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), MESH_NAMESPACE);
    let list = pods.list(&ListParams::default()).await.map(|l| l.items);
    let mut logs = String::new();
    for pod in list.iter().flatten() {
        let name = pod.metadata.name.clone().unwrap_or_default();
        logs += &format!(
            "--- {name}\n{}",
            node.agent.logs(MESH_NAMESPACE, &name, "controller")
        );
    }
    logs
}

/// Waits (10 s) until the API server calls the injecting webhook: a pod created with a
/// server-side dry run in `namespace` (labelled for injection) comes back with the sidecar.
/// The API server reads webhook configurations through an informer, so a `caBundle` just
/// written takes a moment to be used; pods created meanwhile are refused, and their
/// ReplicaSet backs off.
pub async fn wait_for_injection(node: &TestNode, namespace: &str) {
    let file = node
        .network
        .dir()
        .join(format!("inject-probe-{namespace}.yaml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: inject-probe, namespace: {namespace}}}\n\
             spec: {{containers: [{{name: app, image: docker.io/library/busybox}}]}}\n"
        ),
    )
    .expect("write");
    let file = file.to_string_lossy().into_owned();
    eventually(
        Duration::from_secs(10),
        "a pod injected through the webhook",
        async || {
            let out = node.cluster.kubectl(&[
                "create",
                "--dry-run=server",
                "-o",
                "jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}",
                "-f",
                &file,
            ]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("istio-proxy"))
                .then_some(())
        },
    )
    .await;
}

/// A `weftctl demo-app` Pod named `name` in `default` with `labels` and container `args`,
/// injected as the webhook injects it (with the test proxy image): its JSON, to apply.
pub fn injected_demo_pod(name: &str, labels: serde_json::Value, args: serde_json::Value) -> String {
    let app = labels["app"].as_str().unwrap_or(name).to_string();
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{
            "name": app,
            "image": format!("{}:1.0", super::images::DEMO_APP_IMAGE),
            "args": args,
        }]},
    }))
    .expect("pod");
    let cfg = weft_injector::InjectConfig {
        proxy_image: format!("{}:test", super::images::PROXY_IMAGE),
        ..weft_injector::InjectConfig::default()
    };
    assert_eq!(
        weft_injector::inject_pod(&mut pod, "default", &cfg),
        Ok(weft_injector::Outcome::Injected { warnings: vec![] })
    );
    serde_json::to_string(&pod).expect("json")
}
