//! An injected workload on the test node: the injector's mutation of a plain Deployment,
//! applied to the real API server, runs as its spec says: `istio-init` (weft-proxy init, as
//! root with NET_ADMIN) programs the capture in the pod's own namespace and completes, the
//! proxy runs as uid 1337 as a native sidecar, and the app waits for the proxy's startup
//! probe (with no control plane to get a certificate from, it never passes here).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use weft_e2e::eventually;
use weft_e2e::node::images::{DEMO_APP_IMAGE, PROXY_IMAGE};
use weft_e2e::node::test_node::TestNode;
use weft_injector::{InjectConfig, Outcome, inject_template};

/// The uid a process in network namespace `netns` runs `program` as.
fn uid_of(netns: &str, program: &str) -> Option<u32> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            exe.file_name()?.to_str()?.eq(program).then_some(())?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_pod_captures_its_traffic_and_holds_the_app_for_the_proxy() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": "v1"}},
                "spec": {"containers": [{"name": "web", "image": format!("{DEMO_APP_IMAGE}:1.0"),
                         "args": ["--listen", "0.0.0.0:9080", "--service", "web", "--version", "v1"]}]},
            },
        },
    }))
    .expect("deployment");
    let cfg = InjectConfig {
        proxy_image: format!("{PROXY_IMAGE}:test"),
        ..InjectConfig::default()
    };
    let spec = deployment.spec.as_mut().expect("spec");
    assert_eq!(
        inject_template(&mut spec.template, "default", &cfg),
        Ok(Outcome::Injected { warnings: vec![] })
    );
    // The proxy's root-certificate volume names the ConfigMap the controller publishes.
    node.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-ca-root-cert, namespace: default}\n\
         data: {root-cert.pem: ''}\n",
    );
    node.apply(&serde_json::to_string(&deployment).expect("json"));

    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let pod = eventually(
        Duration::from_secs(60),
        "istio-init completed",
        async || {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            list.items.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.init_container_statuses.as_ref())
                    .and_then(|s| s.iter().find(|c| c.name == "istio-init"))
                    .and_then(|c| c.state.as_ref()?.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            })
        },
    )
    .await;
    let name = pod.metadata.name.clone().expect("name");
    let netns = node
        .agent
        .netns("default", &name)
        .expect("the pod's namespace");

    // The capture is in the pod's namespace.
    let rules = std::process::Command::new("ip")
        .args(["netns", "exec", &netns, "iptables-nft-save", "-t", "nat"])
        .output()
        .expect("iptables-nft-save");
    let rules = String::from_utf8_lossy(&rules.stdout);
    for expected in [
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ] {
        assert!(rules.contains(expected), "{expected} in\n{rules}");
    }
    let init_log = node.agent.logs("default", &name, "istio-init");
    assert!(
        init_log.contains("capture programmed (nft backend)"),
        "{init_log}"
    );

    // The proxy runs as 1337; the app has not started: it waits for the proxy's startup probe.
    let uid = eventually(Duration::from_secs(30), "the proxy running", async || {
        uid_of(&netns, "weft-proxy")
    })
    .await;
    assert_eq!(uid, 1337);
    let pod = pods.get(&name).await.expect("pod");
    let status = pod.status.expect("status");
    let web = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "web")
        .expect("web's status");
    assert!(
        web.state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .is_none(),
        "the app started before the proxy was ready: {web:?}"
    );
    assert!(
        uid_of(&netns, "weftctl").is_none(),
        "the app's process runs"
    );
}
