//! `weftctl analyze` against a real kube-apiserver (`weft_e2e::k8s`): Weft's CRDs and the
//! analyze fixture (`crates/weftctl/tests/fixtures/analyze/problems.yaml`) applied with
//! kubectl, the real binary run with the cluster's kubeconfig: every problem is found with
//! its code and object, a file laid over the cluster adds its own, and Istio's clean
//! bookinfo (read from `shared/corpus/istio`, never copied) gives nothing but its Gateway,
//! which Weft does not serve yet (WEFT0008).
//!
//! There is no kubelet: Pods are API objects only and never Running, so the plaintext
//! check (which reads Running sidecars' metrics) has nothing to read here; its live part is
//! tested against a fake API server in `crates/weftctl/tests/kube_mode.rs`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_e2e::bins;
use weft_e2e::k8s::{KubeCluster, KubeClusterOptions};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn bookinfo(path: &str) -> PathBuf {
    repo("../shared/corpus/istio/samples/bookinfo").join(path)
}

/// Runs `weftctl analyze <args> -o json` on the cluster: (exit code, findings as
/// `(code, origin)` sorted, the whole JSON).
async fn analyze(
    cluster: &KubeCluster,
    args: &[&str],
) -> (Option<i32>, Vec<(String, String)>, Value) {
    let out = tokio::process::Command::new(&bins().weftctl)
        .arg("analyze")
        .args(args)
        .args(["-o", "json", "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("weftctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("weftctl analyze {args:?}: {e}; stderr:\n{stderr}"));
    let mut found: Vec<(String, String)> = json
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default().to_string(),
                f["origin"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    (out.status.code(), found, json)
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_finds_each_problem_in_a_real_cluster_and_nothing_in_bookinfo() {
    let cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    let crds = repo("crds");
    cluster.kubectl_ok(&["apply", "-f", &crds.display().to_string()]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "crd",
        "--all",
        "--timeout=120s",
    ]);
    // Without the controller manager, Pods need their namespace's default ServiceAccount.
    for namespace in ["shop", "bookinfo", "istio-system"] {
        cluster.kubectl_ok(&["create", "namespace", namespace]);
        cluster.kubectl_ok(&["create", "serviceaccount", "default", "-n", namespace]);
    }
    let fixture = repo("crates/weftctl/tests/fixtures/analyze/problems.yaml");
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    // The CRDs' schemas are structural only: the invalid DestinationRule is stored too (with
    // no validating webhook here), and analyze reports it.
    cluster.kubectl_apply_ok(&text);
    cluster.kubectl_ok(&["get", "virtualservice", "reviewz", "-n", "shop"]);

    let expected = pairs(&[
        ("IST0101", "VirtualService shop/ratings"),
        ("IST0101", "VirtualService shop/reviewz"),
        ("IST0101", "VirtualService shop/storefront"),
        ("IST0106", "DestinationRule shop/broken"),
        ("IST0109", "VirtualService shop/reviews"),
        ("IST0109", "VirtualService shop/reviews-canary"),
        ("IST0127", "DestinationRule shop/reviews"),
        ("WEFT0003", "VirtualService shop/reviewz"),
        ("WEFT0004", "Sidecar shop/default"),
        ("WEFT0008", "DestinationRule shop/reviews"),
        ("WEFT0008", "VirtualService shop/storefront"),
    ]);
    let (code, found, json) = analyze(&cluster, &["-n", "shop"]).await;
    assert_eq!(found, expected, "{json:#}");
    assert_eq!(code, Some(79), "errors exit 79");
    assert!(
        json.to_string()
            .contains(r#"Referenced host+subset in destinationrule not found: \"ratings+v2\""#),
        "{json:#}"
    );

    // Only warnings at or above --output-threshold Error are printed; the exit is the same.
    let (code, found, _) = analyze(&cluster, &["-n", "shop", "--output-threshold", "Error"]).await;
    assert_eq!(code, Some(79));
    assert!(
        found
            .iter()
            .all(|(c, _)| !["IST0127", "WEFT0003", "WEFT0008"].contains(&c.as_str())),
        "{found:?}"
    );

    // Files laid over the cluster: they fix the ratings route and the broken rule, and
    // bring a broken rule of their own (IST0106 with its file and line).
    let dir = tempfile::tempdir().expect("temp dir");
    let fix = dir.path().join("fix.yaml");
    std::fs::write(
        &fix,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {name: ratings, namespace: shop}\n\
         spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {name: broken, namespace: shop}\n\
         spec: {host: details, subsets: [{name: v1, labels: {version: v1}}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {name: broken-too, namespace: shop}\nspec: {subsets: [{name: v1}]}\n",
    )
    .expect("write");
    let fix_arg = fix.display().to_string();
    let (_, found, json) = analyze(&cluster, &["-n", "shop", "-f", &fix_arg]).await;
    let mut overlaid: Vec<(String, String)> = expected
        .iter()
        .filter(|(c, o)| {
            let fixed = [
                ("IST0101", "VirtualService shop/ratings"),
                ("IST0106", "DestinationRule shop/broken"),
            ];
            !fixed.contains(&(c.as_str(), o.as_str()))
        })
        .cloned()
        .collect();
    overlaid.push(("IST0106".into(), "DestinationRule shop/broken-too".into()));
    overlaid.sort();
    assert_eq!(found, overlaid, "{json:#}");
    assert!(
        json.to_string().contains(&format!("{fix_arg}:11")),
        "{json:#}"
    );

    // Istio's clean bookinfo, with an ingress gateway pod for its Gateway's selector.
    for file in [
        "platform/kube/bookinfo.yaml",
        "networking/destination-rule-all.yaml",
        "networking/virtual-service-all-v1.yaml",
        "networking/bookinfo-gateway.yaml",
    ] {
        cluster.kubectl_ok(&[
            "apply",
            "-n",
            "bookinfo",
            "-f",
            &bookinfo(file).display().to_string(),
        ]);
    }
    // Weft does not serve gateways yet: the Gateway and the VirtualService bound to it are
    // reported as such (warnings: the exit stays 0 without the selector error).
    let unsupported = [
        ("WEFT0008", "Gateway bookinfo/bookinfo-gateway"),
        ("WEFT0008", "VirtualService bookinfo/bookinfo"),
    ];
    let (code, found, json) = analyze(&cluster, &["-n", "bookinfo"]).await;
    let mut expected = pairs(&unsupported);
    expected.insert(
        0,
        ("IST0101".into(), "Gateway bookinfo/bookinfo-gateway".into()),
    );
    assert_eq!(found, expected, "{json:#}");
    assert_eq!(code, Some(79));
    cluster.kubectl_apply_ok(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: istio-ingressgateway-1\n  namespace: istio-system\n  \
         labels: {istio: ingressgateway}\nspec:\n  containers: [{name: istio-proxy, image: weft-proxy}]\n",
    );
    let (code, found, json) = analyze(&cluster, &["-n", "bookinfo"]).await;
    assert_eq!(found, pairs(&unsupported), "{json:#}");
    assert_eq!(code, Some(0));
}
