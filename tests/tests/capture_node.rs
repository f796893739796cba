//! Captured traffic end to end on the test node, with the controller in Kubernetes mode:
//! injected pods (istio-init's iptables, the proxy as a native sidecar with its certificate
//! from the controller's CA) reach Services by ClusterIP with the app knowing nothing of the
//! mesh. Covered: an HTTP port, an undeclared port detected as HTTP, a server-first TCP
//! protocol on a port declared `tcp` (not delayed) and on an undeclared one (delayed by the
//! detection timeout, never stalled), an unknown destination passed through (ALLOW_ANY) and
//! then blocked by a Sidecar's REGISTRY_ONLY with a log line naming why; detection timeouts
//! counted per port in the proxy's metrics; the sidecar's DNS proxy answering a Service's
//! short name and a ServiceEntry host (with no `hosts` entry for either), and that host then
//! reached through its virtual IP.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use weft_e2e::eventually;
use weft_e2e::node::images::{DEMO_APP_IMAGE, PROXY_IMAGE};
use weft_e2e::node::net::{command_in, http_get_in_as, resolve_in_as};
use weft_e2e::node::test_node::{TestNode, pod_ip, ready};
use weft_injector::{InjectConfig, Outcome, inject_pod};

/// The uid the tests' "app" commands run as inside a pod: anything but the proxy's 1337.
const APP_UID: Option<u32> = Some(1000);
/// The virtual IP of the `orders.example.test` ServiceEntry: in the test range, on no network.
const ORDERS_VIP: &str = "198.18.250.10";
/// The controller's protocol detection timeout in this test.
const DETECTION: Duration = Duration::from_secs(1);

/// A demo-app pod (HTTP on 9080, a server-first greeting on 3306), injected when `inject`.
fn demo_pod(name: &str, app: &str, inject: bool) -> String {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app, "version": "v1"}},
        "spec": {"containers": [{
            "name": app,
            "image": format!("{DEMO_APP_IMAGE}:1.0"),
            "args": ["--listen", "0.0.0.0:9080", "--service", app, "--version", "v1",
                     "--banner-listen", "0.0.0.0:3306"],
        }]},
    }))
    .expect("pod");
    if inject {
        let cfg = InjectConfig {
            proxy_image: format!("{PROXY_IMAGE}:test"),
            dns_capture: true,
            ..InjectConfig::default()
        };
        assert_eq!(
            inject_pod(&mut pod, "default", &cfg),
            Ok(Outcome::Injected { warnings: vec![] })
        );
        // Connection-level decisions (chains, detection, passthrough) in the logs.
        let spec = pod.spec.as_mut().expect("spec");
        for container in spec.init_containers.iter_mut().flatten() {
            if container.name == "istio-proxy" {
                container.env.get_or_insert_with(Vec::new).push(
                    serde_json::from_value(
                        serde_json::json!({"name": "WEFT_LOG", "value": "info,weft_proxy=debug"}),
                    )
                    .expect("env"),
                );
            }
        }
    }
    serde_json::to_string(&pod).expect("json")
}

/// Connects from inside `netns` as the app and reads the server's first line: what arrived
/// and how long it took.
fn greeting_in(netns: &str, ip: &str, port: u16) -> (String, Duration) {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port} && timeout 8 head -n 1 <&3");
    let started = Instant::now();
    let out = command_in(netns, APP_UID)
        .args(["bash", "-c", &script])
        .output()
        .expect("bash in the pod");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        started.elapsed(),
    )
}

/// What `name` resolves to inside `netns`, asked as the app (the capture sends its queries
/// to the sidecar).
fn resolve_in(netns: &str, name: &str) -> String {
    resolve_in_as(netns, APP_UID, name)
}

/// The status code of a raw HTTP/1.x response.
fn status(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

/// The sidecars' logs, for failure messages.
fn proxy_logs(node: &TestNode) -> String {
    ["client", "web"]
        .iter()
        .map(|pod| {
            let log = node.agent.logs("default", pod, "istio-proxy");
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            format!(
                "--- {pod}/istio-proxy ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn cluster_ip(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("a ClusterIP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_pods_route_detect_protocols_and_follow_the_outbound_policy() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let _controller = node
        .start_controller(&["--debounce", "50ms", "--protocol-detection-timeout", "1s"])
        .await;

    node.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
         spec:\n  selector: {app: web}\n  ports:\n\
         \x20 - {name: http, port: 9080, targetPort: 9080}\n\
         \x20 - {name: plain, port: 8080, targetPort: 9080}\n\
         \x20 - {name: tcp-db, port: 3306, targetPort: 3306}\n\
         \x20 - {name: db, port: 4000, targetPort: 3306}\n",
    );
    node.apply(&demo_pod("web", "web", true));
    node.apply(&demo_pod("client", "client", true));
    // Not in the mesh and behind no Service: a destination the registry does not know.
    node.apply(&demo_pod("outside", "outside", false));

    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    for name in ["web", "client", "outside"] {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !pods.get(name).await.is_ok_and(|pod| ready(&pod)) {
            assert!(
                Instant::now() < deadline,
                "pod {name} not Ready after 120s\n{}\n--- {name}/istio-init ---\n{}",
                proxy_logs(&node),
                node.agent.logs("default", name, "istio-init"),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let services: Api<Service> = Api::namespaced(node.client.clone(), "default");
    let web_ip = cluster_ip(&services.get("web").await.expect("web Service"));
    let outside_ip = pod_ip(&pods.get("outside").await.expect("outside pod"));
    let client = node.agent.netns("default", "client").expect("client netns");

    // HTTP to the Service's ClusterIP: captured, routed, served by the web pod through its
    // own sidecar (mutual TLS between the two).
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let reply = http_get_in_as(&client, APP_UID, &web_ip, 9080, "/");
        if let Ok(body) = &reply
            && status(body) == Some(200)
        {
            break body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "web over its http port: {reply:?}\n{}",
            proxy_logs(&node)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("web") && body.contains("v1"), "{body}");
    // An undeclared port: detected as HTTP and routed the same way.
    let body = http_get_in_as(&client, APP_UID, &web_ip, 8080, "/").expect("port 8080");
    assert!(status(&body) == Some(200) && body.contains("web"), "{body}");

    // A server-first protocol on a port declared tcp: the greeting comes at once.
    let (greeting, took) = greeting_in(&client, &web_ip, 3306);
    assert_eq!(greeting, "web v1 ready");
    assert!(took < DETECTION, "declared tcp took {took:?}");
    // On an undeclared port the client's sidecar waits for bytes that never come, then
    // treats the connection as opaque TCP: delayed by the detection timeout, not stalled.
    let (greeting, took) = greeting_in(&client, &web_ip, 4000);
    assert_eq!(greeting, "web v1 ready");
    assert!(
        took >= DETECTION - Duration::from_millis(100) && took < DETECTION * 4,
        "undeclared port took {took:?}"
    );

    // The DNS proxy: mesh names from the controller's name table, no hosts entry for them.
    assert_eq!(resolve_in(&client, "web"), web_ip);
    assert_eq!(resolve_in(&client, "web.default.svc.cluster.local"), web_ip);
    // A ServiceEntry host with a virtual IP (in the test range; the capture takes the
    // connection before any route could) whose endpoint is the outside pod: resolved by the
    // sidecar, reached through the virtual IP.
    node.apply(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: orders, namespace: default}}\n\
         spec:\n  hosts: [orders.example.test]\n  addresses: [{ORDERS_VIP}]\n\
         \x20 ports: [{{number: 9080, name: http, protocol: HTTP}}]\n\
         \x20 resolution: STATIC\n  endpoints: [{{address: {outside_ip}}}]\n"
    ));
    eventually(
        Duration::from_secs(20),
        "orders.example.test resolved by the DNS proxy",
        async || (resolve_in(&client, "orders.example.test") == ORDERS_VIP).then_some(()),
    )
    .await;
    let body = http_get_in_as(&client, APP_UID, "orders.example.test", 9080, "/")
        .unwrap_or_else(|e| panic!("orders.example.test: {e}\n{}", proxy_logs(&node)));
    assert!(
        status(&body) == Some(200) && body.contains("outside"),
        "{body}\n{}",
        proxy_logs(&node)
    );
    // A name the mesh does not know is forwarded (the cluster DNS answers NXDOMAIN): no answer.
    assert_eq!(resolve_in(&client, "unknown.example.test"), "");

    // Counted per port by the client's sidecar (asked from inside the pod as the proxy's
    // user, which the capture lets through).
    let client_ip = pod_ip(&pods.get("client").await.expect("client pod"));
    let metrics =
        http_get_in_as(&client, Some(1337), &client_ip, 15000, "/stats/prometheus").expect("stats");
    assert!(
        metrics.contains(
            r#"weft_protocol_detection_timeouts_total{listener="virtualOutbound",destination_port="4000"} 1"#
        ),
        "{metrics}"
    );
    // The DNS proxy's counters: the mesh names above answered from its table, the unknown
    // one (and the search-list tries before them) forwarded to the pod's resolver.
    let dns_count = |result: &str| {
        let prefix = format!("weft_dns_queries_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert!(dns_count("answered_locally") >= 3, "{metrics}");
    assert!(dns_count("forwarded") >= 1, "{metrics}");
    assert_eq!(dns_count("malformed"), 0, "{metrics}");

    // ALLOW_ANY (the default): an unknown destination is passed through, on a port that
    // has HTTP services (the route configuration's catch-all) and on one that has none.
    let body = http_get_in_as(&client, APP_UID, &outside_ip, 9080, "/").expect("outside");
    assert!(body.contains("outside"), "{body}");
    let (greeting, _) = greeting_in(&client, &outside_ip, 3306);
    assert_eq!(greeting, "outside v1 ready");

    // A Sidecar makes the client REGISTRY_ONLY: the unknown destination is refused, and the
    // client's proxy says why; the registered Service still answers.
    node.apply(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
         metadata: {name: client, namespace: default}\n\
         spec:\n  workloadSelector: {labels: {app: client}}\n\
         \x20 outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
    );
    eventually(
        Duration::from_secs(20),
        "the unknown destination blocked",
        async || {
            let (greeting, _) = greeting_in(&client, &outside_ip, 3306);
            greeting.is_empty().then_some(())
        },
    )
    .await;
    // Over HTTP, the catch-all virtual host answers 502 (Istio's block_all).
    let reply = http_get_in_as(&client, APP_UID, &outside_ip, 9080, "/").unwrap_or_default();
    assert_eq!(status(&reply), Some(502), "{reply}");
    let log = node.agent.logs("default", "client", "istio-proxy");
    assert!(
        log.contains("outbound connection blocked") && log.contains("REGISTRY_ONLY"),
        "{log}"
    );
    let body = http_get_in_as(&client, APP_UID, &web_ip, 9080, "/").expect("web");
    assert_eq!(status(&body), Some(200), "{body}");
}
