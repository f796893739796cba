//! Istio's mirroring task end to end on the test node, with the controller in Kubernetes mode
//! and injected pods: `httpbin` v1 and v2 behind one Service, a client pod; first every request
//! to v1 and none to v2, then the same route with `mirror: {host: httpbin, subset: v2}` and
//! `mirrorPercentage: 100`: v1 still answers every request, and v2 receives a copy of each
//! (counted at v2's app), the client seeing only v1's answers.
//!
//! Istio's `samples/httpbin` files are not in the shared corpus, so the objects are written
//! here after the task's shape (Service port 8000 named `http`, one Deployment per version,
//! `destination-rule-all`-style subsets, the task's two VirtualServices); the httpbin pods are
//! `weftctl demo-app`, which counts the requests it gets (`/__demo/stats`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use weft_e2e::eventually;
use weft_e2e::node::mesh::injected_demo_pod;
use weft_e2e::node::net::{http_get_in_as, lines_in};
use weft_e2e::node::test_node::{TestNode, pod_ip};

/// The uid the client runs as inside its pod: anything but the proxy's 1337.
const APP_UID: Option<u32> = Some(1000);
/// Requests sent in each step.
const REQUESTS: usize = 50;

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: default}\n\
spec:\n  selector: {app: httpbin}\n  ports:\n  - {name: http, port: 8000, targetPort: 9080}\n";

const DESTINATION_RULE: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
metadata: {name: httpbin, namespace: default}\n\
spec:\n  host: httpbin\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";

/// The task's VirtualService: everything to v1, with (or without) a 100 % mirror to v2.
fn virtual_service(mirror: bool) -> String {
    let mirror = if mirror {
        "    mirror: {host: httpbin, subset: v2}\n    mirrorPercentage: {value: 100.0}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: httpbin, namespace: default}}\n\
         spec:\n  hosts: [httpbin]\n  http:\n  - route:\n\
         \x20   - {{destination: {{host: httpbin, subset: v1}}, weight: 100}}\n{mirror}"
    )
}

fn pod(name: &str, app: &str, version: &str) -> String {
    injected_demo_pod(
        name,
        serde_json::json!({"app": app, "version": version}),
        serde_json::json!([
            "--listen",
            "0.0.0.0:9080",
            "--service",
            app,
            "--version",
            version
        ]),
    )
}

/// `count` requests from the client's app to `ip:8000`, one connection each: the versions
/// that answered (`x-weft-version`), one per request (empty when none did).
fn versions(client: &str, ip: &str, count: usize) -> Vec<String> {
    let script = format!(
        "for i in $(seq {count}); do \
           v=; \
           if exec 3<>/dev/tcp/{ip}/8000; then \
             printf 'GET /headers HTTP/1.0\\r\\nHost: httpbin:8000\\r\\n\\r\\n' >&3; \
             v=$(timeout 5 cat <&3 | tr -d '\\r' | sed -n 's/^x-weft-version: //Ip' | head -n 1); \
             exec 3<&- 3>&-; \
           fi; \
           echo \"$v\"; \
         done"
    );
    lines_in(client, APP_UID, &script, count)
}

/// The requests an httpbin pod's app has received (`/__demo/stats` `total`), asked from the
/// client pod (the stats requests themselves are not counted).
fn received(client: &str, pod_ip: &str) -> u64 {
    let reply = http_get_in_as(client, APP_UID, pod_ip, 9080, "/__demo/stats").unwrap_or_default();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|stats| stats["total"].as_u64())
        .unwrap_or_else(|| panic!("no stats from {pod_ip}: {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_mirroring_task() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let _controller = node.start_controller(&["--debounce", "50ms"]).await;
    node.apply(SERVICE);
    node.apply(DESTINATION_RULE);
    node.apply(&virtual_service(false));
    node.apply(&pod("httpbin-v1", "httpbin", "v1"));
    node.apply(&pod("httpbin-v2", "httpbin", "v2"));
    node.apply(&pod("sleep", "sleep", "v1"));
    let pods = node
        .wait_ready(
            &["httpbin-v1", "httpbin-v2", "sleep"],
            Duration::from_secs(120),
        )
        .await;
    let ips: Vec<String> = pods.iter().map(pod_ip).collect();
    let (v1_ip, v2_ip) = (ips[0].clone(), ips[1].clone());
    let services: Api<Service> = Api::namespaced(node.client.clone(), "default");
    let service = services.get("httpbin").await.expect("httpbin Service");
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    let client = node.agent.netns("default", "sleep").expect("client netns");

    // Everything to v1, nothing to v2.
    eventually(
        Duration::from_secs(30),
        "requests to httpbin answered by v1",
        async || (versions(&client, &ip, 5) == ["v1"; 5]).then_some(()),
    )
    .await;
    let (v1_before, v2_before) = (received(&client, &v1_ip), received(&client, &v2_ip));
    let answered = versions(&client, &ip, REQUESTS);
    assert!(answered.iter().all(|v| v == "v1"), "{answered:?}");
    assert_eq!(received(&client, &v1_ip) - v1_before, REQUESTS as u64);
    assert_eq!(received(&client, &v2_ip), v2_before, "v2 gets nothing yet");

    // Mirror to v2: once in force, v1 still answers everything and v2 gets a copy of each.
    node.apply(&virtual_service(true));
    eventually(Duration::from_secs(30), "the mirror in force", async || {
        let before = received(&client, &v2_ip);
        versions(&client, &ip, 5);
        (received(&client, &v2_ip) > before).then_some(())
    })
    .await;
    let (v1_before, v2_before) = (received(&client, &v1_ip), received(&client, &v2_ip));
    let answered = versions(&client, &ip, REQUESTS);
    assert!(
        answered.iter().all(|v| v == "v1"),
        "the caller only ever sees v1: {answered:?}"
    );
    assert_eq!(received(&client, &v1_ip) - v1_before, REQUESTS as u64);
    // Mirrors are sent when the caller's response head is back and may still be on their way.
    eventually(
        Duration::from_secs(10),
        "a mirror of every request at v2",
        async || (received(&client, &v2_ip) - v2_before == REQUESTS as u64).then_some(()),
    )
    .await;
}
