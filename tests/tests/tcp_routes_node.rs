//! VirtualService `tcp` and `tls` routes end to end on the test node, with the controller in
//! Kubernetes mode and captured, injected pods: Istio's TCP traffic shifting task re-enacted
//! (a TCP echo service with v1 and v2, all connections to v1, then 80/20 measured over many
//! connections), and TLS passthrough routed by the ClientHello's SNI (an exact name to v1, a
//! `*.` wildcard to v2) on a `tls` port.
//!
//! Istio's `samples/tcp-echo` files are not in the shared corpus, so the objects are written
//! here after the task's shape: `tcp-echo` Service ports `tcp` 9000 (and a `tls` port), one
//! Deployment per version, `destination-rule-all`-style subsets, the `tcp` route 80/20. The
//! echo servers are `weftctl demo-app --banner-listen`: they greet `tcp-echo <version> ready`
//! on connect (so the version that answered is known without TLS at the backend), then echo.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use weft_e2e::eventually;
use weft_e2e::node::mesh::injected_demo_pod;
use weft_e2e::node::net::lines_in;
use weft_e2e::node::test_node::TestNode;

/// The uid the clients run as inside their pod: anything but the proxy's 1337.
const APP_UID: Option<u32> = Some(1000);
/// Connections measured for the 80/20 split.
const SHIFT_CONNECTIONS: usize = 400;

/// An injected pod: `weftctl demo-app` as `tcp-echo <version>` greeting on 9000, or (no
/// version) a client that only runs the test's commands.
fn pod(name: &str, version: Option<&str>) -> String {
    let (app, args) = match version {
        Some(version) => (
            "tcp-echo",
            serde_json::json!([
                "--listen",
                "0.0.0.0:9080",
                "--service",
                "tcp-echo",
                "--version",
                version,
                "--banner-listen",
                "0.0.0.0:9000"
            ]),
        ),
        None => (
            "client",
            serde_json::json!([
                "--listen",
                "0.0.0.0:9080",
                "--service",
                "client",
                "--version",
                "v1"
            ]),
        ),
    };
    let mut labels = serde_json::json!({"app": app});
    if let Some(version) = version {
        labels["version"] = version.into();
    }
    injected_demo_pod(name, labels, args)
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: tcp-echo, namespace: default}\n\
spec:\n  selector: {app: tcp-echo}\n  ports:\n\
\x20 - {name: tcp, port: 9000, targetPort: 9000}\n\
\x20 - {name: tls, port: 9443, targetPort: 9000}\n";

const DESTINATION_RULE: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
metadata: {name: tcp-echo, namespace: default}\n\
spec:\n  host: tcp-echo\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";

/// The VirtualService: the `tcp` route of port 9000 with `v1`'s and `v2`'s weights, and the TLS
/// routes of port 9443 (`v1.echo.test` to v1, any other `*.echo.test` to v2).
fn virtual_service(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: tcp-echo, namespace: default}}\n\
         spec:\n  hosts: [tcp-echo, \"*.echo.test\"]\n\
         \x20 tcp:\n  - match: [{{port: 9000}}]\n    route:\n\
         \x20   - {{destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v1}}, weight: {v1}}}\n\
         \x20   - {{destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v2}}, weight: {v2}}}\n\
         \x20 tls:\n\
         \x20 - match: [{{port: 9443, sniHosts: [v1.echo.test]}}]\n\
         \x20   route: [{{destination: {{host: tcp-echo, port: {{number: 9443}}, subset: v1}}}}]\n\
         \x20 - match: [{{port: 9443, sniHosts: [\"*.echo.test\"]}}]\n\
         \x20   route: [{{destination: {{host: tcp-echo, port: {{number: 9443}}, subset: v2}}}}]\n"
    )
}

/// The first TLS record a client sends: a ClientHello for `server_name`.
fn client_hello(server_name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("ClientHello");
    hello
}

/// `count` connections from inside `netns` (as the app) to `ip:port`, each sending `first`
/// (if any) and reading the server's greeting: the greetings, one per connection (empty when
/// none came).
fn greetings(netns: &str, ip: &str, port: u16, first: Option<&[u8]>, count: usize) -> Vec<String> {
    let send = first.map_or(String::new(), |bytes| {
        let escaped: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
        format!("printf '{escaped}' >&3; ")
    });
    let script = format!(
        "for i in $(seq {count}); do \
           line=; \
           if exec 3<>/dev/tcp/{ip}/{port}; then {send}line=$(timeout 5 head -n 1 <&3); \
           exec 3<&- 3>&-; fi; \
           echo \"$line\"; \
         done"
    );
    lines_in(netns, APP_UID, &script, count)
}

fn share(lines: &[String], greeting: &str) -> usize {
    lines.iter().filter(|l| *l == greeting).count()
}

/// The sidecars' logs, for failure messages.
fn proxy_logs(node: &TestNode) -> String {
    ["client", "tcp-echo-v1", "tcp-echo-v2"]
        .iter()
        .map(|pod| {
            let log = node.agent.logs("default", pod, "istio-proxy");
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!(
                "--- {pod}/istio-proxy ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const V1: &str = "tcp-echo v1 ready";
const V2: &str = "tcp-echo v2 ready";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_traffic_shifting_and_tls_routes_by_sni() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let _controller = node.start_controller(&["--debounce", "50ms"]).await;

    node.apply(SERVICE);
    node.apply(DESTINATION_RULE);
    // The task's first step: every connection to v1.
    node.apply(&virtual_service(100, 0));
    for (name, version) in [("tcp-echo-v1", Some("v1")), ("tcp-echo-v2", Some("v2"))] {
        node.apply(&pod(name, version));
    }
    node.apply(&pod("client", None));
    node.wait_ready(
        &["tcp-echo-v1", "tcp-echo-v2", "client"],
        Duration::from_secs(120),
    )
    .await;
    let services: Api<Service> = Api::namespaced(node.client.clone(), "default");
    let service = services.get("tcp-echo").await.expect("tcp-echo Service");
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    let client = node.agent.netns("default", "client").expect("client netns");

    // All to v1: once the route is in force (both endpoints ready, the subset's too), every
    // connection is answered by v1.
    eventually(
        Duration::from_secs(30),
        "connections to tcp-echo answered by v1",
        async || (greetings(&client, &ip, 9000, None, 5) == [V1; 5]).then_some(()),
    )
    .await;
    let all_v1 = greetings(&client, &ip, 9000, None, 50);
    assert_eq!(share(&all_v1, V1), 50, "{all_v1:?}\n{}", proxy_logs(&node));

    // 80/20: wait for v2 to answer, then measure.
    node.apply(&virtual_service(80, 20));
    eventually(
        Duration::from_secs(30),
        "v2 answering after the 80/20 route",
        async || (share(&greetings(&client, &ip, 9000, None, 20), V2) > 0).then_some(()),
    )
    .await;
    let started = Instant::now();
    let shifted = greetings(&client, &ip, 9000, None, SHIFT_CONNECTIONS);
    let (v1, v2) = (share(&shifted, V1), share(&shifted, V2));
    let n = SHIFT_CONNECTIONS as f64;
    let expected = 0.2 * n;
    let sigma = (n * 0.2 * 0.8).sqrt();
    println!(
        "tcp traffic shifting: {v1} v1, {v2} v2 of {SHIFT_CONNECTIONS} connections ({:.1} % v2, expected 20 % ± {:.1} points at 3σ) in {:?}",
        100.0 * v2 as f64 / n,
        300.0 * sigma / n,
        started.elapsed()
    );
    assert_eq!(
        v1 + v2,
        SHIFT_CONNECTIONS,
        "every connection answered: {shifted:?}"
    );
    assert!(
        (v2 as f64 - expected).abs() <= 3.0 * sigma,
        "v2 got {v2} of {SHIFT_CONNECTIONS}, expected {expected} ± {:.0}",
        3.0 * sigma
    );

    // TLS passthrough by SNI on the `tls` port: the exact name to v1, the wildcard to v2,
    // every time; the ClientHello reaches the backend unchanged (it is not TLS-terminated).
    let by_name = |name: &str| greetings(&client, &ip, 9443, Some(&client_hello(name)), 20);
    let exact = by_name("v1.echo.test");
    assert_eq!(share(&exact, V1), 20, "{exact:?}\n{}", proxy_logs(&node));
    let wildcard = by_name("canary.echo.test");
    assert_eq!(
        share(&wildcard, V2),
        20,
        "{wildcard:?}\n{}",
        proxy_logs(&node)
    );
    let deeper = by_name("a.b.echo.test");
    assert_eq!(share(&deeper, V2), 20, "{deeper:?}");
    // Neither name, or no TLS: the service's own cluster, both versions.
    let other = by_name("other.test");
    assert_eq!(share(&other, V1) + share(&other, V2), 20, "{other:?}");
    let plain = greetings(&client, &ip, 9443, Some(b"hello\n"), 20);
    assert_eq!(share(&plain, V1) + share(&plain, V2), 20, "{plain:?}");
}
