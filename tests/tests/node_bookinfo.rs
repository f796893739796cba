//! Istio's unchanged `samples/bookinfo/platform/kube/bookinfo.yaml` on the test node, without
//! a mesh: six Deployments Ready, and productpage's page, fetched from inside a pod by pod
//! IP, shows the details and reviews it got from the pods that the Service names resolve to
//! in the test's hosts mapping (the sidecar's DNS proxy takes that mapping's place later).

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use weft_e2e::node::images::BOOKINFO_DEPLOYMENTS;
use weft_e2e::node::net::http_get_in;
use weft_e2e::node::test_node::{TestNode, pod_ip, ready};
use weft_e2e::{eventually, istio_corpus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_runs_unchanged_without_a_mesh() {
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let manifest = istio_corpus().join("samples/bookinfo/platform/kube/bookinfo.yaml");
    node.cluster
        .kubectl_ok(&["apply", "-n", "default", "-f", &manifest.to_string_lossy()]);

    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), "default");
    eventually(
        Duration::from_secs(120),
        "six Deployments available",
        async || {
            for name in BOOKINFO_DEPLOYMENTS {
                let status = deployments.get(name).await.ok()?.status?;
                (status.ready_replicas == Some(1) && status.available_replicas == Some(1))
                    .then_some(())?;
            }
            Some(())
        },
    )
    .await;

    // One Ready pod per version, by its `app-version` name.
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let list = pods.list(&ListParams::default()).await.expect("pods");
    let pod = |name: &str| -> Pod {
        let (app, version) = name.rsplit_once('-').expect("app-version");
        list.items
            .iter()
            .find(|p| {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                ready(p)
                    && labels.get("app").map(String::as_str) == Some(app)
                    && labels.get("version").map(String::as_str) == Some(version)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no Ready pod of {name}"))
    };
    let ip = |p: &Pod| -> Ipv4Addr { pod_ip(p).parse().expect("pod IP") };
    // The Service names, resolved to one pod each: reviews to v2, which calls ratings.
    let (details, reviews, ratings, productpage) = (
        pod("details-v1"),
        pod("reviews-v2"),
        pod("ratings-v1"),
        pod("productpage-v1"),
    );
    node.agent.add_host("details", ip(&details));
    node.agent.add_host("reviews", ip(&reviews));
    node.agent.add_host("ratings", ip(&ratings));

    // From inside the ratings pod, productpage by its pod IP.
    let from = node
        .agent
        .netns(
            "default",
            ratings.metadata.name.as_deref().unwrap_or_default(),
        )
        .expect("the ratings pod's namespace");
    let reviews_pod = reviews.metadata.name.clone().unwrap_or_default();
    let page = eventually(
        Duration::from_secs(30),
        "the product page with details and reviews",
        async || {
            let page = http_get_in(&from, &pod_ip(&productpage), 9080, "/productpage").ok()?;
            (page.contains("200 OK") && page.contains(&format!("pod {reviews_pod}")))
                .then_some(page)
        },
    )
    .await;
    for expected in [
        "Book Details",
        "ISBN-10",
        "Book Reviews",
        "Reviewer1",
        "Reviews served by: reviews-v2",
        "ratings-v1 (via reviews)",
    ] {
        assert!(
            page.contains(expected),
            "{expected:?} missing from:\n{page}"
        );
    }
    assert!(!page.contains("unavailable"), "{page}");
}
