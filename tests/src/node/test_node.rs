//! A test's Kubernetes node in one call: a real API server with its controller manager, a pod
//! network, and the agent running the pods with the tests' image table ([`ImageTable::weft`])
//! and routing the Services (the `kubernetes` one to this API server).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::agent::{NodeAgent, NodeConfig};
use super::images::ImageTable;
use super::net::Network;
use crate::k8s::{KubeCluster, KubeClusterOptions};
use crate::{Process, bins, wait_ok};

/// A cluster with its controller manager, and the test node running its pods. Dropped, it
/// stops the pods and removes their namespaces, then the cluster.
pub struct TestNode {
    // Declared first: dropped first, so the pods stop before the cluster does.
    pub agent: NodeAgent,
    pub network: Arc<Network>,
    pub client: kube::Client,
    pub cluster: KubeCluster,
}

impl TestNode {
    /// `launcher` is the `weft-test-node` binary: `env!("CARGO_BIN_EXE_weft-test-node")`.
    pub async fn start(launcher: &str) -> Self {
        let cluster = KubeCluster::start(KubeClusterOptions {
            controller_manager: true,
        })
        .await;
        let network = Arc::new(Network::create().expect("test network (needs root and iproute2)"));
        let client = cluster.client().await;
        let mut config = NodeConfig::new(ImageTable::weft(bins()), launcher);
        config.apiserver = Some(cluster.apiserver_addr());
        let agent = NodeAgent::start(client.clone(), network.clone(), config).await;
        Self {
            agent,
            network,
            client,
            cluster,
        }
    }

    /// `kubectl apply` of `manifest`; panics with kubectl's words if it is refused.
    pub fn apply(&self, manifest: &str) {
        self.cluster.kubectl_apply_ok(manifest);
    }
}

impl TestNode {
    /// Waits up to `limit` for the pods `names` in `default` to be Ready, and returns them;
    /// panics naming the first that is not, with the tails of its sidecar's logs.
    pub async fn wait_ready(&self, names: &[&str], limit: std::time::Duration) -> Vec<Pod> {
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), "default");
        let deadline = std::time::Instant::now() + limit;
        let mut out = Vec::new();
        for name in names {
            loop {
                if let Ok(pod) = pods.get(name).await
                    && ready(&pod)
                {
                    out.push(pod);
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    let tail = |container: &str| {
                        let log = self.agent.logs("default", name, container);
                        let lines: Vec<&str> = log.lines().rev().take(40).collect();
                        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
                    };
                    panic!(
                        "pod {name} not Ready after {limit:?}\n--- {name}/istio-init ---\n{}\n--- {name}/istio-proxy ---\n{}",
                        tail("istio-init"),
                        tail("istio-proxy")
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        out
    }
}

/// Whether the pod's `Ready` condition is true.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP, or empty.
pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

impl TestNode {
    /// Weft's controller in Kubernetes mode for this node's pods: Istio's CRDs applied and
    /// established, the controller in `weft-system` listening on the bridge's gateway (ADS on
    /// 15010, the CA on 15012) with `extra` flags, and its Service name in the pods' hosts.
    /// Returns once `/ready`; killed when the returned process is dropped.
    pub async fn start_controller(&self, extra: &[&str]) -> Process {
        let gateway = self.network.gateway();
        let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        self.cluster
            .kubectl_ok(&["apply", "-f", &crds.to_string_lossy()]);
        self.cluster.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd",
            "--all",
        ]);
        self.cluster
            .kubectl_ok(&["create", "namespace", "weft-system"]);
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let debug = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(&bins().controller);
        command
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .args(["--namespace", "weft-system"])
            .args(["--xds-address", &format!("{gateway}:15010")])
            .args(["--debug-address", &debug.to_string()])
            .args(["--webhook-address", &format!("127.0.0.1:{}", free_port())])
            .args(extra);
        let mut controller =
            Process::spawn("weft-controller", &mut command, self.cluster.dir.path());
        wait_ok(&format!("http://{debug}/ready"), &mut controller).await;
        self.agent
            .add_host("weft-controller.weft-system.svc", gateway);
        controller
    }
}
