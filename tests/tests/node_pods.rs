//! The test node runs a pod as its spec says, checked by what the program itself sees and
//! does: the downward API, a projected token the API server's TokenReview accepts for its
//! audience only, ConfigMap and downwardAPI volumes at their paths (read-only where asked),
//! an emptyDir, the user and group of its securityContext; liveness probes inside the
//! container and the kubelet's restart back-off; graceful deletion (SIGTERM, the grace
//! period, SIGKILL; sidecars stopped after the containers, in reverse order); and a test that
//! panics midway leaves nothing behind.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use weft_e2e::eventually;
use weft_e2e::node::images::SHELL_IMAGE as SHELL;
use weft_e2e::node::services::saved_rules;
use weft_e2e::node::test_node::TestNode;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_weft-test-node");

/// The `KEY=value` lines a container printed.
fn printed(logs: &str, key: &str) -> Option<String> {
    logs.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

fn container_status(pod: &Pod, name: &str) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name)
        .cloned()
}

/// Whether network namespace `netns` exists.
fn netns_exists(netns: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(netns))
}

/// Whether process `pid` is gone (or a zombie waiting for its parent to reap it).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |status| {
        status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

/// Waits up to 10 s for every process of `pids` to be gone; panics naming those left.
fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|&pid| gone(pid)) {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            pids.iter().filter(|&&pid| !gone(pid)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids of the processes in network namespace `netns`.
fn pids_in(netns: &str) -> Vec<u32> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

async fn token_review(client: &kube::Client, token: &str, audience: &str) -> serde_json::Value {
    let review: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": [audience]},
    }))
    .expect("TokenReview");
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview answered");
    serde_json::to_value(answer.status).expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_sees_its_env_token_volumes_and_user() {
    let node = TestNode::start(LAUNCHER).await;
    let client = node.client.clone();
    let script = [
        "echo user=$(id -u):$(id -g)",
        "echo env=$POD_NAME/$POD_NAMESPACE/$POD_IP/$SA/$HOSTNAME",
        "echo greeting=$(cat /etc/weft-settings/greeting)",
        "echo labels=$(tr '\\n' , < /etc/podinfo/labels)",
        "echo namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)",
        "echo token=$(cat /var/run/secrets/tokens/weft-token)",
        "touch /etc/weft-settings/new 2>/dev/null && echo read_only=no || echo read_only=yes",
        "touch /var/lib/weft-scratch/mine && echo scratch=$(stat -c %u /var/lib/weft-scratch/mine)",
        "test -e /etc/passwd && echo etc=kept",
        "echo services=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
        "echo done=yes",
        "exec sleep 3600",
    ]
    .join("; ");
    let manifest = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "reader", "namespace": "default"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "settings", "namespace": "default"},
         "data": {"greeting": "hello from a configmap"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "inspect", "namespace": "default",
                      "labels": {"app": "inspect", "tier": "test"}},
         "spec": {
            "serviceAccountName": "reader",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 1234, "runAsGroup": 2345},
            "containers": [{
                "name": "show", "image": format!("{SHELL}:1.36"),
                "command": ["sh", "-c", script],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                ],
                "volumeMounts": [
                    {"name": "settings", "mountPath": "/etc/weft-settings", "readOnly": true},
                    {"name": "podinfo", "mountPath": "/etc/podinfo"},
                    {"name": "token", "mountPath": "/var/run/secrets/tokens"},
                    {"name": "scratch", "mountPath": "/var/lib/weft-scratch"},
                ],
            }],
            "volumes": [
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                    "path": "weft-token", "audience": "weft-test", "expirationSeconds": 600}}]}},
                {"name": "scratch", "emptyDir": {}},
            ],
         }},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "rootless", "namespace": "default"},
         "spec": {"securityContext": {"runAsNonRoot": true},
                  "containers": [{"name": "main", "image": format!("{SHELL}:1.36"),
                                  "command": ["sleep", "3600"]}]}},
    ]});
    node.apply(&manifest.to_string());

    let logs = eventually(
        Duration::from_secs(60),
        "the program's report",
        async || {
            let logs = node.agent.logs("default", "inspect", "show");
            logs.contains("done=yes").then_some(logs)
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods.get("inspect").await.expect("pod");
    let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
    let line = |key: &str| printed(&logs, key).unwrap_or_else(|| panic!("no {key}= in {logs}"));
    assert_eq!(line("user"), "1234:2345");
    assert_eq!(line("env"), format!("inspect/default/{ip}/reader/inspect"));
    assert_eq!(line("greeting"), "hello from a configmap");
    assert_eq!(line("labels"), "app=\"inspect\",tier=\"test\"");
    assert_eq!(line("namespace"), "default");
    assert_eq!(line("read_only"), "yes");
    assert_eq!(line("scratch"), "1234");
    assert_eq!(line("etc"), "kept");
    assert!(line("services").starts_with("198.19."), "{logs}");
    // The paths exist in the pod's mount namespace only.
    for host_path in [
        "/etc/weft-settings",
        "/etc/podinfo",
        "/var/lib/weft-scratch",
    ] {
        assert!(!Path::new(host_path).exists(), "{host_path} on the host");
    }

    // The token is the pod's service account's, for the audience the projection named only.
    let token = line("token");
    let review = token_review(&client, &token, "weft-test").await;
    assert_eq!(review["authenticated"], true, "{review}");
    assert_eq!(
        review["user"]["username"],
        "system:serviceaccount:default:reader"
    );
    assert_eq!(
        review["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["inspect"]),
        "{review}"
    );
    let other = token_review(&client, &token, "someone-else").await;
    assert_ne!(other["authenticated"], true, "{other}");

    // runAsNonRoot with an image that runs as root: refused as the kubelet does.
    let waiting = eventually(Duration::from_secs(30), "rootless refused", async || {
        let pod = pods.get("rootless").await.ok()?;
        container_status(&pod, "main")?.state?.waiting
    })
    .await;
    assert_eq!(
        waiting.reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert!(
        waiting.message.unwrap_or_default().contains("runAsNonRoot"),
        "message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_probes_restart_the_container_with_the_kubelets_back_off() {
    let node = TestNode::start(LAUNCHER).await;
    // The probe passes while /tmp/alive exists in the container's own /tmp (an emptyDir):
    // run on the host, it would fail at once.
    node.apply(
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "lively", "namespace": "default"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "app", "image": format!("{SHELL}:1.36"),
                    "command": ["sh", "-c", "touch /tmp/alive; sleep 3; rm /tmp/alive; exec sleep 3600"],
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]},
                                      "initialDelaySeconds": 1, "periodSeconds": 1,
                                      "failureThreshold": 1},
                }],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }})
        .to_string(),
    );
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    // Killed once the file is gone (SIGTERM: 143), restarted at once the first time.
    let first = eventually(Duration::from_secs(30), "a first restart", async || {
        let status = container_status(&pods.get("lively").await.ok()?, "app")?;
        (status.restart_count >= 1).then_some(status)
    })
    .await;
    let last = first
        .last_state
        .and_then(|s| s.terminated)
        .expect("the last run's state");
    assert_eq!(last.exit_code, 143, "{last:?}");
    let ran = last.finished_at.expect("finishedAt").0.as_second()
        - last.started_at.expect("startedAt").0.as_second();
    assert!(
        ran >= 2,
        "killed after {ran} s: the probe did not look inside"
    );
    // The next failure waits for the back-off (10 s), reported as CrashLoopBackOff.
    let waiting = eventually(Duration::from_secs(30), "CrashLoopBackOff", async || {
        let status = container_status(&pods.get("lively").await.ok()?, "app")?;
        status
            .state?
            .waiting
            .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
    })
    .await;
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("back-off 10s"),
        "{waiting:?}"
    );
    eventually(
        Duration::from_secs(30),
        "the restart after the back-off",
        async || {
            let status = container_status(&pods.get("lively").await.ok()?, "app")?;
            (status.restart_count >= 2 && status.state?.running.is_some()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_sends_sigterm_waits_the_grace_period_then_kills() {
    let node = TestNode::start(LAUNCHER).await;
    let client = node.client.clone();
    // Each process says when it got SIGTERM (ns since the epoch) and leaves 0.3 s later.
    let polite = "trap 'echo TERM=$(date +%s%N); sleep 0.3; exit 0' TERM; echo up=yes; while :; do sleep 0.1; done";
    let sidecar = |name: &str| {
        json!({"name": name, "image": format!("{SHELL}:1.36"), "restartPolicy": "Always",
               "command": ["bash", "-c", polite]})
    };
    node.apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "stubborn", "namespace": "default"},
             "spec": {"terminationGracePeriodSeconds": 3, "containers": [{
                "name": "main", "image": format!("{SHELL}:1.36"),
                "command": ["bash", "-c",
                    "trap 'echo got=TERM' TERM; echo up=yes; while :; do sleep 0.1; done"]}]}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "ordered", "namespace": "default"},
             "spec": {"terminationGracePeriodSeconds": 30,
                "initContainers": [sidecar("first"), sidecar("second")],
                "containers": [{"name": "main", "image": format!("{SHELL}:1.36"),
                                "command": ["bash", "-c", polite]}]}},
        ]})
        .to_string(),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (stubborn, ordered) = eventually(Duration::from_secs(60), "both pods up", async || {
        let up = |pod, c| printed(&node.agent.logs("default", pod, c), "up").is_some();
        let all =
            up("stubborn", "main") && ["first", "second", "main"].iter().all(|c| up("ordered", c));
        let netns = |pod| node.agent.netns("default", pod);
        all.then(|| Some((netns("stubborn")?, netns("ordered")?)))
            .flatten()
    })
    .await;
    let processes = pids_in(&stubborn);
    assert!(!processes.is_empty());

    // A process that ignores SIGTERM lives out the grace period, then is killed.
    let asked = Instant::now();
    pods.delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(Duration::from_secs(20), "stubborn gone", async || {
        (!netns_exists(&stubborn) && pods.get_opt("stubborn").await.ok()?.is_none()).then_some(())
    })
    .await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "stubborn stopped after {took:?}, its grace period is 3 s"
    );
    assert_eq!(
        printed(&node.agent.logs("default", "stubborn", "main"), "got"),
        Some("TERM".into()),
        "SIGTERM came first"
    );
    wait_gone(&processes);

    // Processes that leave on SIGTERM end the deletion long before the grace period; the
    // sidecars get SIGTERM after the main container exited, the last one first.
    let asked = Instant::now();
    pods.delete("ordered", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(Duration::from_secs(20), "ordered gone", async || {
        (!netns_exists(&ordered) && pods.get_opt("ordered").await.ok()?.is_none()).then_some(())
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    let term = |c: &str| -> u128 {
        printed(&node.agent.logs("default", "ordered", c), "TERM")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{c} got no SIGTERM"))
    };
    let (main, second, first) = (term("main"), term("second"), term("first"));
    assert!(
        main < second && second < first,
        "SIGTERM order: main {main}, second {second}, first {first}"
    );
}

#[test]
fn a_test_that_panics_midway_leaves_nothing_behind() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let node = TestNode::start(LAUNCHER).await;
            node.apply(
                &json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "doomed", "namespace": "default"},
                    "spec": {"containers": [{"name": "main", "image": format!("{SHELL}:1.36"),
                        "command": ["bash", "-c", "sleep 3600 & echo up=yes; wait"]}]}})
                .to_string(),
            );
            let netns = eventually(Duration::from_secs(60), "doomed up", async || {
                let up = printed(&node.agent.logs("default", "doomed", "main"), "up");
                up.and(node.agent.netns("default", "doomed"))
            })
            .await;
            let pids = pids_in(&netns);
            let network = &node.network;
            assert!(!saved_rules(network.index()).is_empty(), "no Service rules");
            tx.send((
                netns,
                pids,
                network.bridge(),
                network.dir(),
                network.index(),
            ))
            .expect("send");
            panic!("a test failing midway");
        })
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    let (netns, pids, bridge, dir, index) = rx.recv().expect("what the test had made");
    assert!(pids.len() >= 2, "bash and its sleep: {pids:?}");
    assert!(!netns_exists(&netns), "{netns} left");
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "{bridge} left"
    );
    assert!(!dir.exists(), "{} left", dir.display());
    let rules = saved_rules(index);
    assert!(rules.is_empty(), "Service rules left:\n{rules}");
    wait_gone(&pids);
}
