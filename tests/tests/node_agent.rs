//! The test node's agent on a real API server + kube-controller-manager: a plain Deployment
//! of `weftctl demo-app` scales to three pods that really run, each in its own network
//! namespace; the EndpointSlice lists their addresses; one pod reaches another by pod IP;
//! scaling down stops the processes and removes the namespaces.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use weft_e2e::node::images::{DEMO_APP_IMAGE as IMAGE, SHELL_IMAGE as SHELL};
use weft_e2e::node::net::http_get_in;
use weft_e2e::node::test_node::{TestNode, pod_ip, ready};
use weft_e2e::{bins, eventually};

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: echo
        image: docker.io/weft/demo-app:1.0
        env:
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        args: [--listen, '$(POD_IP):9080', --service, echo, --version, '$(POD_NAME)']
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 9080}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_three_pods_that_reach_each_other() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let (cluster, network, client) = (&node.cluster, &node.network, node.client.clone());
    node.apply(DEPLOYMENT);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = ListParams::default().labels("app=echo");
    let running = eventually(Duration::from_secs(60), "three Ready pods", async || {
        let list = pods.list(&selector).await.ok()?;
        let ready: Vec<Pod> = list.items.into_iter().filter(ready).collect();
        (ready.len() == 3).then_some(ready)
    })
    .await;
    let ips: Vec<String> = running.iter().map(pod_ip).collect();
    for ip in &ips {
        assert!(ip.starts_with("198.18."), "pod IP {ip}");
    }

    // The kube-controller-manager lists them in the Service's EndpointSlice.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let mut expected = ips.clone();
    expected.sort();
    eventually(
        Duration::from_secs(30),
        "the EndpointSlice with the pod IPs",
        async || {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=echo"))
                .await
                .ok()?;
            let mut listed: Vec<String> = list
                .items
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .flat_map(|e| e.addresses.clone())
                .collect();
            listed.sort();
            (listed == expected).then_some(())
        },
    )
    .await;

    // One pod reaches another by pod IP over the bridge: from inside the first pod's
    // namespace (the agent says which it is), to the second pod's app.
    let from = running[0].metadata.name.clone().unwrap_or_default();
    let to = &running[1];
    let to_name = to.metadata.name.clone().unwrap_or_default();
    let netns = node
        .agent
        .netns("default", &from)
        .expect("the first pod's namespace");
    let reply = eventually(
        Duration::from_secs(20),
        "an answer across pods",
        async || {
            let text = http_get_in(&netns, &pod_ip(to), 9080, "/").ok()?;
            text.contains("200 OK").then_some(text)
        },
    )
    .await;
    assert!(reply.contains(&format!("echo {to_name}")), "{reply}");
    eprintln!(
        "{from} -> {to_name} ({}): {}",
        pod_ip(to),
        reply.lines().last().unwrap_or_default()
    );

    // Scaling down: two pods stop, their namespaces go.
    cluster.kubectl_ok(&[
        "scale",
        "deployment",
        "echo",
        "--replicas=1",
        "-n",
        "default",
    ]);
    eventually(Duration::from_secs(60), "two pods gone", async || {
        let list = pods.list(&selector).await.ok()?;
        (list.items.len() == 1).then_some(())
    })
    .await;
    let namespaces = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip")
            .stdout,
    )
    .into_owned();
    let prefix = format!("wt{}-", network.gateway().octets()[2]);
    assert_eq!(
        namespaces
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count(),
        1,
        "{namespaces}"
    );
    drop(node);
}

/// The ready condition of the endpoint at `ip` in the Service's EndpointSlices, if listed.
async fn endpoint_ready(client: &kube::Client, service: &str, ip: &str) -> Option<bool> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .ok()?;
    list.items
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| e.addresses.iter().any(|a| a == ip))
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_take_a_pod_out_of_its_endpoint_slice_and_back() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let client = node.client.clone();
    // The exec probe passes while this file exists (the pod's namespace shares the host's
    // filesystem).
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = flags.path().join("ready");
    let manifest = format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: {IMAGE}:1.0
    env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
    args: [--listen, '$(POD_IP):9080', --service, web, --version, v1]
    ports: [{{name: http, containerPort: 9080}}]
    readinessProbe: {{httpGet: {{port: http, path: /}}, periodSeconds: 1}}
  - name: gate
    image: {IMAGE}:1.0
    env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
    args: [--listen, '$(POD_IP):9081', --service, gate, --version, v1]
    readinessProbe: {{exec: {{command: [test, -e, {flag}]}}, periodSeconds: 1, failureThreshold: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 9080}}]
",
        flag = flag.display()
    );
    node.apply(&manifest);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The HTTP probe passes, the exec one does not: the pod is not Ready, and its endpoint
    // is listed as not ready.
    let ip = eventually(Duration::from_secs(60), "web ready, gate not", async || {
        let pod = pods.get("web").await.ok()?;
        let statuses = pod.status.as_ref()?.container_statuses.clone()?;
        let ready = |name: &str| statuses.iter().any(|s| s.name == name && s.ready);
        (ready("web") && !ready("gate") && !self::ready(&pod)).then(|| pod_ip(&pod))
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "a not-ready endpoint",
        async || (endpoint_ready(&client, "web", &ip).await == Some(false)).then_some(()),
    )
    .await;

    // Passing: Ready, and the endpoint with it.
    std::fs::write(&flag, "").expect("flag");
    eventually(Duration::from_secs(30), "a ready endpoint", async || {
        let pod = pods.get("web").await.ok()?;
        (ready(&pod) && endpoint_ready(&client, "web", &ip).await == Some(true)).then_some(())
    })
    .await;

    // Failing again: out.
    std::fs::remove_file(&flag).expect("flag");
    eventually(
        Duration::from_secs(30),
        "the endpoint not ready again",
        async || {
            let pod = pods.get("web").await.ok()?;
            (!ready(&pod) && endpoint_ready(&client, "web", &ip).await == Some(false)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_containers() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let client = node.client.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("order");
    let marker = dir.path().join("main-of-broken");
    let manifest = format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: ordered, namespace: default}}
spec:
  initContainers:
  - {{name: first, image: '{SHELL}:1.36', command: [sh, -c, 'echo first >> {log}']}}
  - {{name: second, image: '{SHELL}:1.36', command: [sh, -c, 'sleep 1; echo second >> {log}']}}
  containers:
  - {{name: main, image: '{SHELL}:1.36', command: [sh, -c, 'echo main >> {log}; exec sleep 3600']}}
---
apiVersion: v1
kind: Pod
metadata: {{name: broken, namespace: default}}
spec:
  initContainers:
  - {{name: fails, image: '{SHELL}:1.36', command: [sh, -c, 'exit 3']}}
  containers:
  - {{name: main, image: '{SHELL}:1.36', command: [sh, -c, 'touch {marker}; exec sleep 3600']}}
",
        log = log.display(),
        marker = marker.display()
    );
    node.apply(&manifest);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = eventually(
        Duration::from_secs(60),
        "the ordered pod Ready",
        async || {
            let pod = pods.get("ordered").await.ok()?;
            ready(&pod).then_some(pod)
        },
    )
    .await;
    let written = eventually(Duration::from_secs(10), "main's line", async || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("main").then_some(text)
    })
    .await;
    assert_eq!(written, "first\nsecond\nmain\n");
    let status = pod.status.expect("status");
    let init: Vec<(String, Option<String>)> = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let reason = s.state.and_then(|st| st.terminated).and_then(|t| t.reason);
            (s.name, reason)
        })
        .collect();
    assert_eq!(
        init,
        [
            ("first".to_string(), Some("Completed".to_string())),
            ("second".to_string(), Some("Completed".to_string()))
        ]
    );

    // A failing init container runs again and again; the pod stays Pending, not Initialized,
    // and its main container never starts.
    let broken = eventually(
        Duration::from_secs(30),
        "the broken pod retried",
        async || {
            let pod = pods.get("broken").await.ok()?;
            let status = pod.status.clone()?;
            let restarts = status
                .init_container_statuses
                .as_ref()?
                .first()?
                .restart_count;
            (restarts >= 2).then_some(pod)
        },
    )
    .await;
    let status = broken.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Initialized" && c.status == "False"),
    );
    assert!(
        !marker.exists(),
        "the main container of a pod whose init failed ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_sidecar_gates_the_main_container_and_a_job_completes() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("job");
    // The sidecar listens only after 2 s; its startup probe must hold the main container
    // back until then, or the main container's connection fails and so does the Job.
    let manifest = format!(
        "
apiVersion: batch/v1
kind: Job
metadata: {{name: once, namespace: default}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      initContainers:
      - name: sidecar
        image: '{SHELL}:1.36'
        restartPolicy: Always
        env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
        command: [bash, -c, 'sleep 2; exec {weftctl} demo-app --listen $(POD_IP):15000 --service side --version v1']
        startupProbe: {{tcpSocket: {{port: 15000}}, periodSeconds: 1, failureThreshold: 30}}
      containers:
      - name: main
        image: '{SHELL}:1.36'
        env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
        command: [bash, -c, 'exec 3<>/dev/tcp/$(POD_IP)/15000 && echo reached >> {log}']
",
        weftctl = bins().weftctl.display(),
        log = log.display()
    );
    node.apply(&manifest);
    let jobs: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(node.client.clone(), "default");
    let condition = eventually(Duration::from_secs(60), "the Job to finish", async || {
        let job = jobs.get("once").await.ok()?;
        job.status?
            .conditions?
            .into_iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .map(|c| c.type_)
    })
    .await;
    assert_eq!(
        condition,
        "Complete",
        "main wrote: {:?}",
        std::fs::read_to_string(&log)
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("main's line"),
        "reached\n"
    );
    // The pod succeeded, and its sidecar was stopped with it.
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let pod = eventually(
        Duration::from_secs(30),
        "the Job's pod Succeeded",
        async || {
            let list = pods
                .list(&ListParams::default().labels("job-name=once"))
                .await
                .ok()?;
            list.items
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        },
    )
    .await;
    let name = pod.metadata.name.clone().unwrap_or_default();
    eventually(Duration::from_secs(10), "the sidecar stopped", async || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "demo-app --listen .*:15000 --service side"])
            .output()
            .ok()?;
        out.stdout.is_empty().then_some(())
    })
    .await;
    eprintln!("job pod {name} succeeded; the sidecar is gone");
}
