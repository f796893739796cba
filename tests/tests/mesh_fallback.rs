//! Injection without native sidecars (`sidecarInjector.nativeSidecars=false`, Istio's shape
//! for Kubernetes before 1.29), on the test node, which runs `postStart` hooks as the kubelet
//! does: `istio-proxy` is the first container and its hook (`weft-proxy wait`) holds the app
//! until the proxy is ready, so an app whose very first act is a call through the mesh gets
//! its answer (started beside the proxy, it would be refused: nothing listens on 15001 yet).
//! The app then stops its sidecar with `POST localhost:15020/quitquitquit`, as Istio's Jobs
//! do, and the pod completes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use weft_e2e::node::mesh::{self, wait_for_injection};
use weft_e2e::node::test_node::TestNode;

const CALLER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: caller, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: docker.io/library/busybox
    command:
    - sh
    - -c
    - |
      # No retry: the proxy must be ready before this line runs.
      curl -sS --max-time 5 -o /dev/null -w 'web answered %{http_code}\n' http://web.default:9080/ || exit 1
      curl -sS --max-time 5 -X POST http://localhost:15020/quitquitquit
"#;

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: web
    image: docker.io/weft/demo-app:1.0
    args: ['--listen', '0.0.0.0:9080', '--service', 'web', '--version', 'v1']
    readinessProbe: {httpGet: {path: /, port: 9080}, periodSeconds: 1}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_native_sidecars_the_app_waits_for_its_proxy_and_a_job_can_finish() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    mesh::install(&node, &["--set", "sidecarInjector.nativeSidecars=false"]).await;
    node.cluster
        .kubectl_ok(&["label", "namespace", "default", "istio-injection=enabled"]);
    wait_for_injection(&node, "default").await;
    node.apply(WEB);
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pods
        .get("web")
        .await
        .is_ok_and(|pod| weft_e2e::node::test_node::ready(&pod))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "web not Ready after 60s\n{}\npostStart:\n{}\nproxy:\n{}",
            node.cluster
                .kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.status}"]),
            node.agent.logs("default", "web", "istio-proxy.post-start"),
            node.agent.logs("default", "web", "istio-proxy"),
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    node.apply(CALLER);
    let logs = |container: &str| node.agent.logs("default", "caller", container);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let caller = loop {
        let pod = pods.get("caller").await.expect("caller");
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            break pod;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "caller not finished after 60s: {phase:?}\napp:\n{}\npostStart:\n{}\nproxy:\n{}",
            logs("app"),
            logs("istio-proxy.post-start"),
            logs("istio-proxy"),
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let app_log = logs("app");
    let proxy_log = logs("istio-proxy");
    let hook_log = logs("istio-proxy.post-start");
    let phase = caller.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(
        phase.as_deref(),
        Some("Succeeded"),
        "app:\n{app_log}\npostStart:\n{hook_log}\nproxy:\n{proxy_log}"
    );
    // The fallback's shape: no native sidecar, the proxy first, held by its hook.
    let spec = caller.spec.as_ref().expect("spec");
    let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["istio-proxy", "app"]);
    let inits: Vec<_> = (spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["istio-init"]);
    assert!(app_log.contains("web answered 200"), "{app_log}");
    assert!(
        hook_log.contains("the proxy is ready after"),
        "the app started before the hook saw the proxy ready:\n{hook_log}"
    );
}
