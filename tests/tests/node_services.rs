//! The test node's Service networking (`weft_e2e::node::services`, `cluster_dns`): pods reach
//! a Service by ClusterIP and by name, spread over its endpoints (itself included); the host
//! reaches it too (as the API server reaches a webhook); the rules follow the endpoints as a
//! Deployment scales and leave nothing behind; a pod reaches the API server in-cluster, with
//! its ServiceAccount token and the `kubernetes` Service's variables, as kube-rs's
//! `Config::infer` would.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use weft_e2e::eventually;
use weft_e2e::node::net::{http_get_in, resolve_in_as};
use weft_e2e::node::services::saved_rules;
use weft_e2e::node::test_node::{TestNode, pod_ip, ready};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_weft-test-node");

const WEB: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: docker.io/weft/demo-app:1.0
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        args: [--listen, '0.0.0.0:8080', --service, web, --version, '$(POD_NAME)']
        ports: [{name: web, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: web}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: busybox, command: [sh, -c, 'exec sleep 3600']}
";

/// The pod that answered a demo-app response (its version is the pod's name).
fn answered_by(response: &str) -> Option<String> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("web "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

/// `GET /` of `host:port` from inside `netns`: the pod that answered.
fn pod_behind(netns: &str, host: &str, port: u16) -> Option<String> {
    answered_by(&http_get_in(netns, host, port, "/").ok()?)
}

/// `GET /` of `addr` from the host itself: the pod that answered.
fn pod_behind_from_host(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    answered_by(&response)
}

/// Requests through `fetch` until every pod of `expected` has answered (and no other).
async fn until_all_answer(
    what: &str,
    expected: &BTreeSet<String>,
    fetch: impl Fn() -> Option<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = BTreeSet::new();
    while seen != *expected {
        assert!(
            Instant::now() < deadline,
            "{what}: only {seen:?} of {expected:?} answered in 30 s"
        );
        match fetch() {
            Some(pod) => {
                assert!(
                    expected.contains(&pod),
                    "{what}: {pod} is not one of {expected:?}"
                );
                seen.insert(pod);
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The Ready pods of the web Deployment, by name, with their IPs.
async fn web_pods(pods: &Api<Pod>) -> Vec<(String, String)> {
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), pod_ip(p)))
        .collect()
}

/// The endpoints the rules of network `index` send `default/web:http` to.
fn web_rule_endpoints(index: u8) -> BTreeSet<String> {
    saved_rules(index)
        .lines()
        .filter(|l| l.contains("default/web:http"))
        .filter_map(|l| l.split("--to-destination ").nth(1))
        .map(|to| to.trim().to_string())
        .collect()
}

/// Scales the web Deployment to `replicas` and waits until that many pods are Ready and the
/// rules send the Service to exactly them; returns their names.
async fn scale_web(node: &TestNode, pods: &Api<Pod>, replicas: usize) -> BTreeSet<String> {
    node.cluster.kubectl_ok(&[
        "scale",
        "deployment/web",
        "-n",
        "default",
        &format!("--replicas={replicas}"),
    ]);
    let index = node.network.index();
    eventually(
        Duration::from_secs(60),
        &format!("{replicas} web endpoints in the rules"),
        async || {
            let running = web_pods(pods).await;
            let ips: BTreeSet<String> =
                running.iter().map(|(_, ip)| format!("{ip}:8080")).collect();
            (running.len() == replicas && web_rule_endpoints(index) == ips)
                .then(|| running.into_iter().map(|(name, _)| name).collect())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_the_host_reach_services_by_cluster_ip_and_name() {
    let node = TestNode::start(LAUNCHER).await;
    node.apply(WEB);
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let web = scale_web(&node, &pods, 2).await;
    eventually(
        Duration::from_secs(60),
        "the client pod Ready",
        async || pods.get("client").await.ok().filter(ready).map(drop),
    )
    .await;
    let services: Api<Service> = Api::namespaced(node.client.clone(), "default");
    let service = services.get("web").await.expect("web Service");
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("web's ClusterIP");
    let client = node.agent.netns("default", "client").expect("client netns");

    // By name, from the cluster DNS: the short name through the ClusterFirst search list,
    // the full name, another namespace's Service.
    eventually(Duration::from_secs(10), "web resolved", async || {
        (resolve_in_as(&client, None, "web") == cluster_ip).then_some(())
    })
    .await;
    assert_eq!(
        resolve_in_as(&client, None, "web.default.svc.cluster.local"),
        cluster_ip
    );
    assert_eq!(
        resolve_in_as(&client, None, "kubernetes.default"),
        "198.19.0.1"
    );
    // A name that is no Service's fails at once (NXDOMAIN), not after resolver timeouts.
    let started = Instant::now();
    assert_eq!(resolve_in_as(&client, None, "nothing-here"), "");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an unknown name took {:?}",
        started.elapsed()
    );

    // By ClusterIP: both endpoints answer over some requests; by name too.
    until_all_answer("both web pods by ClusterIP", &web, || {
        pod_behind(&client, &cluster_ip, 80)
    })
    .await;
    assert!(pod_behind(&client, "web", 80).is_some_and(|pod| web.contains(&pod)));

    // A web pod through its own Service reaches itself too (hairpin: masqueraded, and the
    // bridge sends the packet back out of the port it came in on).
    let first = web.first().expect("a web pod");
    let own = node.agent.netns("default", first).expect("web netns");
    until_all_answer("both web pods from a web pod", &web, || {
        pod_behind(&own, &cluster_ip, 80)
    })
    .await;

    // The host, as the API server calling a webhook's Service (nat OUTPUT).
    let addr: SocketAddr = format!("{cluster_ip}:80").parse().expect("address");
    until_all_answer("both web pods from the host", &web, || {
        pod_behind_from_host(addr)
    })
    .await;

    // Endpoints follow the Deployment: down to one pod, which alone answers...
    let one = scale_web(&node, &pods, 1).await;
    for _ in 0..10 {
        let pod = pod_behind(&client, &cluster_ip, 80);
        assert!(
            pod.as_ref().is_some_and(|p| one.contains(p)),
            "{pod:?} not in {one:?}"
        );
    }
    // ...then up to three, which all answer.
    let three = scale_web(&node, &pods, 3).await;
    until_all_answer("three web pods by ClusterIP", &three, || {
        pod_behind(&client, &cluster_ip, 80)
    })
    .await;

    // Torn down with the node: no chain, no jump left.
    let index = node.network.index();
    assert!(!saved_rules(index).is_empty());
    drop(node);
    eventually(Duration::from_secs(20), "the rules removed", async || {
        saved_rules(index).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_the_api_server_in_cluster() {
    let node = TestNode::start(LAUNCHER).await;
    // What an in-cluster client does: the Service's variables, or its DNS name, with the
    // mounted token and CA. `/version` is open to all; listing pods needs rights the account
    // lacks, so the refusal names who the token proved to be.
    node.apply(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: default}
---
apiVersion: v1
kind: Pod
metadata: {name: in-cluster, namespace: default}
spec:
  serviceAccountName: reader
  restartPolicy: Never
  containers:
  - name: curl
    image: busybox
    command:
    - sh
    - -c
    - |
      env | grep '^KUBERNETES_' | sort
      SA=/var/run/secrets/kubernetes.io/serviceaccount
      get() { curl -sS --max-time 5 --cacert $SA/ca.crt -H "Authorization: Bearer $(cat $SA/token)" -w ' status=%{http_code}' "$1" | tr -d '\n'; }
      echo "by-name: $(get https://kubernetes.default.svc/version)"
      echo "by-env: $(get https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $SA/namespace)/pods)"
"#,
    );
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let phase = eventually(Duration::from_secs(60), "the pod finished", async || {
        let pod = pods.get("in-cluster").await.ok()?;
        pod.status
            .and_then(|s| s.phase)
            .filter(|p| p == "Succeeded" || p == "Failed")
    })
    .await;
    let logs = node.agent.logs("default", "in-cluster", "curl");
    assert_eq!(phase, "Succeeded", "{logs}");
    for expected in [
        "KUBERNETES_SERVICE_HOST=198.19.0.1\n",
        "KUBERNETES_SERVICE_PORT=443\n",
        "KUBERNETES_SERVICE_PORT_HTTPS=443\n",
        "KUBERNETES_PORT=tcp://198.19.0.1:443\n",
        "KUBERNETES_PORT_443_TCP_ADDR=198.19.0.1\n",
    ] {
        assert!(logs.contains(expected), "{expected} in\n{logs}");
    }
    let line = |prefix: &str| {
        logs.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let by_name = line("by-name: ");
    assert!(
        by_name.contains("\"gitVersion\"") && by_name.ends_with("status=200"),
        "{logs}"
    );
    let by_env = line("by-env: ");
    assert!(
        by_env.contains("system:serviceaccount:default:reader") && by_env.ends_with("status=403"),
        "{logs}"
    );
}
