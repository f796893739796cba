//! A test's Kubernetes node in one call: a real API server with its controller manager, a pod
//! network, and the agent running the pods with the tests' image table ([`ImageTable::weft`])
//! and routing the Services (the `kubernetes` one to this API server).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::agent::{NodeAgent, NodeConfig};
use super::images::ImageTable;
use super::net::Network;
use crate::bins;
use crate::k8s::{KubeCluster, KubeClusterOptions};

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
        let out = self.cluster.kubectl_apply_stdin(manifest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
