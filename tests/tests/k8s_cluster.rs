//! Smoke tests of the Kubernetes test cluster harness (`weft_e2e::k8s`): the real
//! kube-apiserver, etcd and kube-controller-manager built from source, on loopback.

use std::time::Duration;

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    core::v1::Pod,
    discovery::v1::EndpointSlice,
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use weft_e2e::{
    eventually,
    k8s::{KubeCluster, KubeClusterOptions},
};

/// `KEY=value` from tests/k8s/versions.env.
fn pinned(key: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/versions.env");
    let text = std::fs::read_to_string(path).expect("reading tests/k8s/versions.env");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} not in {path}"))
        .trim()
        .to_string()
}

fn stdout(output: &std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_namespaces_and_service_account_tokens() {
    let cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    let kubernetes = pinned("KUBERNETES_VERSION");

    // /version, as the API server reports it, and kubectl's own version.
    let version = cluster.client().await.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, kubernetes);
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );
    let kubectl: serde_json::Value =
        serde_json::from_str(&cluster.kubectl_ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(kubectl["clientVersion"]["gitVersion"], kubernetes.as_str());
    assert_eq!(kubectl["serverVersion"]["gitVersion"], kubernetes.as_str());
    let helm = stdout(&cluster.helm(&["version", "--short"]), "helm version");
    assert!(
        helm.starts_with(&pinned("HELM_VERSION")),
        "helm version: {helm}"
    );

    let namespaces = cluster.kubectl_ok(&["get", "ns", "-o", "name"]);
    for ns in ["namespace/default", "namespace/kube-system"] {
        assert!(namespaces.lines().any(|l| l == ns), "{ns} in {namespaces}");
    }
    cluster.kubectl_ok(&["get", "crds"]);
    stdout(&cluster.helm(&["list", "-A"]), "helm list");

    // A TokenRequest token authenticates as its ServiceAccount.
    cluster.kubectl_ok(&["create", "namespace", "mesh"]);
    cluster.kubectl_ok(&["create", "serviceaccount", "reviews", "-n", "mesh"]);
    let token = cluster.token_for("mesh", "reviews");
    let as_token = cluster.kubeconfig_for_token(&token);
    let whoami = cluster.kubectl_ok(&[
        "auth",
        "whoami",
        "--kubeconfig",
        as_token.to_str().unwrap(),
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami, "system:serviceaccount:mesh:reviews");

    let reviews: Api<TokenReview> = Api::all(cluster.client().await);
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:mesh:reviews")
    );
    let garbage = TokenReview {
        spec: TokenReviewSpec {
            token: Some("not-a-token".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = reviews
        .create(&PostParams::default(), &garbage)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(status.authenticated, Some(true));

    // Dropping the cluster stops it.
    let address = cluster.server.trim_start_matches("https://").to_string();
    drop(cluster);
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "kube-apiserver still listening on {address} after drop"
    );
}

const POD_IP: &str = "198.18.0.10";

fn pod_yaml(namespace: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: {namespace}
  labels: {{app: web}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  containers:
  - name: web
    image: registry.invalid/web:1
    ports: [{{containerPort: 8080, name: http}}]
"
    )
}

/// Plays the kubelet: the Pod runs at [`POD_IP`] and is Ready.
async fn set_pod_running(pods: &Api<Pod>, name: &str) -> Pod {
    let now = "2026-01-01T00:00:00Z";
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "198.18.0.1",
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("setting the status of pod {name}: {e}"))
}

fn assert_running(pod: &Pod) {
    let status = pod.status.as_ref().expect("pod status");
    assert_eq!(status.pod_ip.as_deref(), Some(POD_IP));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_status_subresource_and_apiserver_restart() {
    let mut cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    // No controller manager: create the account the ServiceAccount admission wants.
    cluster.kubectl_ok(&["create", "namespace", "apps"]);
    cluster.kubectl_ok(&["create", "serviceaccount", "default", "-n", "apps"]);
    let created = cluster.kubectl_apply_stdin(&pod_yaml("apps", "node-1"));
    stdout(&created, "kubectl apply pod");

    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "apps");
    let patched = set_pod_running(&pods, "web-0").await;
    assert_running(&patched);
    assert_running(&pods.get("web-0").await.unwrap());
    let ip = cluster.kubectl_ok(&[
        "get",
        "pod",
        "web-0",
        "-n",
        "apps",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    assert_eq!(ip, POD_IP);

    // Everything lives in etcd: a restarted API server serves the same objects.
    let server = cluster.server.clone();
    cluster.restart_apiserver().await;
    assert_eq!(cluster.server, server);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "apps");
    let after = pods.get("web-0").await.unwrap();
    assert_running(&after);
    assert_eq!(after.metadata.uid, patched.metadata.uid);
    cluster.kubectl_ok(&["get", "serviceaccount", "default", "-n", "apps"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_manager_publishes_endpointslices_for_ready_pods() {
    let cluster = KubeCluster::start(KubeClusterOptions {
        controller_manager: true,
    })
    .await;
    let client = cluster.client().await;
    cluster.kubectl_ok(&["create", "namespace", "shop"]);
    // The EndpointSlice controller leaves out Pods on Nodes it does not know.
    stdout(
        &cluster.kubectl_apply_stdin(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels: {topology.kubernetes.io/zone: zone-a}\n",
        ),
        "kubectl apply node",
    );
    stdout(
        &cluster.kubectl_apply_stdin(
            "apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
",
        ),
        "kubectl apply service",
    );
    let cluster_ip = cluster.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(cluster_ip.starts_with("198.19."), "clusterIP {cluster_ip}");

    // The namespace's default ServiceAccount comes from the controller manager, and Pods
    // are refused until it exists.
    eventually(Duration::from_secs(30), "pod web-0 created", || async {
        cluster
            .kubectl_apply_stdin(&pod_yaml("shop", "node-1"))
            .status
            .success()
            .then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    assert_running(&set_pod_running(&pods, "web-0").await);

    let slices: Api<EndpointSlice> = Api::namespaced(client, "shop");
    let selector = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = eventually(
        Duration::from_secs(60),
        "an EndpointSlice with 198.18.0.10",
        || {
            let slices = slices.clone();
            let selector = selector.clone();
            async move {
                let list = slices.list(&selector).await.ok()?;
                list.items.into_iter().find(|s| {
                    s.endpoints
                        .iter()
                        .any(|e| e.addresses.iter().any(|a| a == POD_IP))
                })
            }
        },
    )
    .await;
    assert_eq!(slice.address_type, "IPv4");
    let endpoint = slice
        .endpoints
        .iter()
        .find(|e| e.addresses.iter().any(|a| a == POD_IP))
        .unwrap();
    assert_eq!(
        endpoint.conditions.as_ref().and_then(|c| c.ready),
        Some(true)
    );
    assert_eq!(endpoint.node_name.as_deref(), Some("node-1"));
    assert_eq!(endpoint.zone.as_deref(), Some("zone-a"));
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080))
    );
}
