//! `weftctl proxy-status` and `proxy-config` in Kubernetes mode, against a fake API server
//! that answers the paths a real one serves: the controller Service's EndpointSlices, and the
//! API server's pod and service proxy to the controllers' debug port and a proxy's admin. The
//! kubeconfig (from `KUBECONFIG`) carries a bearer token the fake server checks. `analyze`'s
//! plaintext check reads a sidecar's metrics through the pod proxy the same way.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::json;

const TOKEN: &str = "secret-token";

/// A fake API server: fixed answers by path and query; every request's path is recorded.
struct FakeApi {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl FakeApi {
    async fn start(answers: Vec<(String, u16, serde_json::Value)>) -> Self {
        let answers: Arc<HashMap<String, (u16, String)>> = Arc::new(
            answers
                .into_iter()
                .map(|(path, status, body)| {
                    // A JSON string is served as its text (metrics), anything else as JSON.
                    let body = match body {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (path, (status, body))
                })
                .collect(),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (answers2, seen2) = (answers.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (answers, seen) = (answers2.clone(), seen2.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let path = request
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        if request.method() != hyper::Method::GET {
                            seen.lock().push(format!("{} {path}", request.method()));
                        }
                        seen.lock().push(path.clone());
                        let authorized = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            == Some(&format!("Bearer {TOKEN}"));
                        let (status, body) = match answers.get(&path) {
                            _ if !authorized => (401, status_json(401, "Unauthorized")),
                            Some((status, body)) => (*status, body.clone()),
                            None => (
                                404,
                                status_json(
                                    404,
                                    "the server could not find the requested resource",
                                ),
                            ),
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(status).expect("a status");
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("config");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: fake, cluster: {{server: \"http://{addr}\"}}}}]\n\
                 users: [{{name: me, user: {{token: {TOKEN}}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: me, namespace: bookinfo}}}}]\n\
                 current-context: fake\n"
            ),
        )
        .expect("kubeconfig");
        Self {
            addr,
            seen,
            _dir: dir,
            kubeconfig,
        }
    }

    /// Runs weftctl with this server's kubeconfig: (success, stdout, stderr).
    async fn weftctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weftctl"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .await
            .expect("weftctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().clone()
    }
}

fn status_json(code: u16, message: &str) -> String {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code})
        .to_string()
}

fn slices(namespace: &str, pods: &[&str]) -> (String, u16, serde_json::Value) {
    let endpoints: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            json!({"addresses": [format!("10.0.0.{}", i + 1)], "conditions": {"ready": true},
                   "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace}})
        })
        .collect();
    let items = if pods.is_empty() {
        json!([])
    } else {
        json!([{
            "metadata": {"name": "weft-controller-x", "namespace": namespace},
            "addressType": "IPv4",
            "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "http-debug", "port": 15014}],
            "endpoints": endpoints,
        }])
    };
    (
        format!(
            "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweft-controller"
        ),
        200,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {}, "items": items}),
    )
}

fn type_status(type_url: &str, short: &str, sent: &str, acked: &str) -> serde_json::Value {
    json!({"type_url": type_url, "type": short, "sent_version": sent, "sent_nonce": "1",
           "sent_ago_ms": 2000, "acked_version": acked, "acked_ago_ms": 1000,
           "nack": null, "last_nack": null, "wildcard": true, "resource_names": [],
           "resource_count": 1})
}

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

fn pod_proxy(namespace: &str, pod: &str, port: u16, path: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_status_asks_every_controller_replica_through_the_api_server() {
    let mut rejected = type_status(RDS, "RDS", "v2", "v1");
    rejected["nack"] = json!({"version": "v2", "message": "route 0: bad regex", "ago_ms": 4000});
    let api = FakeApi::start(vec![
        // Nothing in the chart's namespace: the controller runs in istio-system.
        slices("weft-system", &[]),
        slices("istio-system", &["weft-controller-a", "weft-controller-b"]),
        (
            pod_proxy("istio-system", "weft-controller-a", 15014, "/debug/syncz"),
            200,
            json!([{"id": "sidecar~10.1.0.1~productpage-v1-x.bookinfo~bookinfo.svc.cluster.local",
                    "connected_for_secs": 30, "types": [type_status(CDS, "CDS", "v1", "v1")]}]),
        ),
        (
            pod_proxy("istio-system", "weft-controller-a", 15014, "/version"),
            200,
            json!({"component": "weft-controller", "version": "9.9.9"}),
        ),
        (
            pod_proxy("istio-system", "weft-controller-b", 15014, "/debug/syncz"),
            200,
            json!([{"id": "sidecar~10.1.0.2~reviews-v1-y.bookinfo~bookinfo.svc.cluster.local",
                    "connected_for_secs": 30,
                    "types": [type_status(CDS, "CDS", "v1", "v1"), rejected]}]),
        ),
    ])
    .await;
    let (ok, out, err) = api.weftctl(&["proxy-status"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    let productpage = lines[1].split_whitespace().collect::<Vec<_>>();
    assert_eq!(productpage[0], "productpage-v1-x.bookinfo", "{out}");
    assert!(
        lines[1].contains("weft-controller-a.istio-system  9.9.9"),
        "{out}"
    );
    assert!(
        lines[2].contains("STALE (4s ago; NACK: route 0: bad regex)"),
        "{out}"
    );
    // A controller without /version is shown without one.
    assert!(
        lines[2].ends_with("weft-controller-b.istio-system  -"),
        "{out}"
    );
    assert!(
        api.seen().contains(&pod_proxy(
            "istio-system",
            "weft-controller-b",
            15014,
            "/debug/syncz"
        )),
        "{:?}",
        api.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_endpointslice_access_the_service_proxy_answers_with_a_warning() {
    let api = FakeApi::start(vec![
        (
            slices("weft-system", &[]).0,
            403,
            serde_json::from_str(&status_json(
                403,
                "endpointslices.discovery.k8s.io is forbidden: User \"me\" cannot list resource",
            ))
            .expect("json"),
        ),
        (
            "/api/v1/namespaces/weft-system/services/weft-controller:http-debug/proxy/debug/syncz"
                .into(),
            200,
            json!([]),
        ),
    ])
    .await;
    let (ok, out, err) = api.weftctl(&["proxy-status"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(err.contains("cannot list resource"), "{err}");
    assert!(
        err.contains("only the proxies of the one that answers"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_config_reads_the_pods_admin_through_the_api_server() {
    // Envoy's shapes: `/config_dump` (a ClustersConfigDump) and `/clusters?format=json`.
    let dump = json!({"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        "version_info": "7",
        "dynamic_active_clusters": [{"version_info": "7", "cluster": {
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
            "type": "EDS",
            "eds_cluster_config": {"service_name": "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"}
        }}]
    }]});
    let clusters = json!({"cluster_statuses": [{
        "name": "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
        "host_statuses": [{
            "address": {"socket_address": {"address": "10.1.0.7", "port_value": 9080}},
            "health_status": {"eds_health_status": "HEALTHY"}, "weight": 1
        }]
    }]});
    let configz = json!({"services": [{
        "hostname": "reviews.bookinfo.svc.cluster.local",
        "virtualService": null,
        "destinationRule": "DestinationRule bookinfo/reviews"
    }]});
    let api = FakeApi::start(vec![
        slices("weft-system", &["weft-controller-a"]),
        (
            pod_proxy("weft-system", "weft-controller-a", 15014, "/debug/configz"),
            200,
            configz,
        ),
        // The kubeconfig context's namespace is bookinfo.
        (
            pod_proxy("bookinfo", "reviews-v1-y", 15000, "/config_dump"),
            200,
            dump,
        ),
        (
            pod_proxy("bookinfo", "reviews-v1-y", 15000, "/clusters?format=json"),
            200,
            clusters,
        ),
        (
            pod_proxy("bookinfo", "reviews-v1-y", 15000, "/logging?http=debug"),
            200,
            json!("active loggers:\n  http: debug\n"),
        ),
    ])
    .await;
    let (ok, out, err) = api
        .weftctl(&["proxy-config", "clusters", "reviews-v1-y"])
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "SERVICE FQDN                        PORT  SUBSET  DIRECTION  TYPE  DESTINATION RULE\n\
         reviews.bookinfo.svc.cluster.local  9080  v1      outbound   EDS   reviews.bookinfo\n"
    );
    let (ok, out, err) = api
        .weftctl(&[
            "proxy-config",
            "endpoints",
            "reviews-v1-y.bookinfo",
            "-o",
            "json",
        ])
        .await;
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rows[0]["endpoint"], "10.1.0.7:9080");
    assert_eq!(rows[0]["outlier_check"], "OK");

    // `proxy-config log` POSTs to the pod's `/logging` through the API server.
    let (ok, out, err) = api
        .weftctl(&[
            "proxy-config",
            "log",
            "reviews-v1-y",
            "--level",
            "http:debug",
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("http: debug"), "{out}");
    assert!(
        api.seen.lock().iter().any(|s| s
            == &format!(
                "POST {}",
                pod_proxy("bookinfo", "reviews-v1-y", 15000, "/logging?http=debug")
            )),
        "{:?}",
        api.seen.lock()
    );

    // A pod that is not there: the API server's message and the URL asked.
    let (ok, _, err) = api
        .weftctl(&["proxy-config", "listeners", "gone", "-n", "prod"])
        .await;
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "http://{}/api/v1/namespaces/prod/pods/gone:15000/proxy/config_dump answered 404",
            api.addr
        )),
        "{err}"
    );
}

/// The answers of a cluster with one injected, Running ratings pod in `shop` whose sidecar
/// saw plaintext from a client without a sidecar, and no Istio object.
fn plaintext_cluster() -> Vec<(String, u16, serde_json::Value)> {
    let list = |kind: &str, items: serde_json::Value| json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {}, "items": items});
    let metrics = "# TYPE istio_requests_total counter\n\
        istio_requests_total{reporter=\"destination\",connection_security_policy=\"none\",\
        source_workload=\"legacy-client\",source_workload_namespace=\"shop\",\
        destination_workload=\"ratings-v1\",destination_workload_namespace=\"shop\"} 12\n\
        istio_requests_total{reporter=\"destination\",connection_security_policy=\"mutual_tls\",\
        source_workload=\"reviews-v2\",source_workload_namespace=\"shop\",\
        destination_workload=\"ratings-v1\",destination_workload_namespace=\"shop\"} 40\n";
    vec![
        (
            "/api/v1/namespaces?".into(),
            200,
            list("Namespace", json!([{"metadata": {"name": "shop"}}])),
        ),
        (
            "/api/v1/services?".into(),
            200,
            list(
                "Service",
                json!([{"metadata": {"name": "ratings", "namespace": "shop"},
                        "spec": {"selector": {"app": "ratings"}, "ports": [{"name": "http", "port": 9080}]}}]),
            ),
        ),
        (
            "/api/v1/pods?".into(),
            200,
            list(
                "Pod",
                json!([{"metadata": {"name": "ratings-v1", "namespace": "shop",
                                     "labels": {"app": "ratings", "version": "v1"}},
                        "spec": {"containers": [{"name": "ratings", "image": "ratings:v1"},
                                                {"name": "istio-proxy", "image": "weft-proxy:0.1.0"}]},
                        "status": {"phase": "Running", "podIP": "10.0.0.7"}}]),
            ),
        ),
        (
            "/api/v1/namespaces/shop/pods/ratings-v1:15090/proxy/stats/prometheus".into(),
            200,
            json!(metrics),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_reads_sidecar_metrics_through_the_pod_proxy() {
    let api = FakeApi::start(plaintext_cluster()).await;
    // PERMISSIVE (no policy): a warning per plaintext pair, below the failure threshold.
    let (ok, out, err) = api.weftctl(&["analyze", "-n", "shop"]).await;
    assert!(ok, "{out}{err}\n{:?}", api.seen());
    assert_eq!(
        out.trim(),
        "Warning [WEFT0002] (Pod shop/ratings-v1) Workload shop/ratings-v1 receives plaintext \
         from shop/legacy-client (12 requests) under mTLS mode Permissive: a switch to STRICT \
         would reject it.",
        "{err}"
    );
    assert!(
        api.seen().contains(
            &"/api/v1/namespaces/shop/pods/ratings-v1:15090/proxy/stats/prometheus".to_string()
        ),
        "{:?}",
        api.seen()
    );
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["analyze", "-n", "shop", "--failure-threshold", "Warning"])
        .env("KUBECONFIG", &api.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .expect("weftctl runs");
    assert_eq!(
        status.status.code(),
        Some(79),
        "a warning at --failure-threshold Warning fails: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    // A STRICT policy about to be applied: the same traffic would be rejected.
    let dir = tempfile::tempdir().expect("temp dir");
    let strict = dir.path().join("strict.yaml");
    std::fs::write(
        &strict,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: ratings-strict, namespace: shop}\n\
         spec: {selector: {matchLabels: {app: ratings}}, mtls: {mode: STRICT}}\n",
    )
    .expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["analyze", "-n", "shop", "-o", "json", "-f"])
        .arg(&strict)
        .env("KUBECONFIG", &api.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .expect("weftctl runs");
    assert_eq!(
        out.status.code(),
        Some(79),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(findings.as_array().map(Vec::len), Some(1), "{findings}");
    assert_eq!(findings[0]["code"], "WEFT0001");
    assert_eq!(
        findings[0]["origin"],
        "PeerAuthentication shop/ratings-strict"
    );
    assert_eq!(
        findings[0]["reference"],
        format!("{}:1", strict.display()),
        "{findings}"
    );
    assert!(
        findings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("still receives plaintext from shop/legacy-client")),
        "{findings}"
    );

    // --traffic=false leaves the sidecars alone.
    let before = api.seen().len();
    let (ok, out, _) = api
        .weftctl(&["analyze", "-n", "shop", "--traffic=false"])
        .await;
    assert!(ok && out.is_empty(), "{out}");
    assert!(
        !api.seen()[before..].iter().any(|p| p.contains(":15090")),
        "{:?}",
        api.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_pod_reads_the_cluster_and_the_proxys_sync_state() {
    let mut answers = plaintext_cluster();
    answers.push((
        "/apis/networking.istio.io/v1/virtualservices?".into(),
        200,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualServiceList", "metadata": {},
               "items": [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                          "metadata": {"name": "ratings", "namespace": "shop"},
                          "spec": {"hosts": ["ratings"],
                                   "http": [{"route": [{"destination": {"host": "ratings"}}]}]}}]}),
    ));
    answers.push(slices("weft-system", &["weft-controller-a"]));
    answers.push((
        pod_proxy("weft-system", "weft-controller-a", 15014, "/debug/syncz"),
        200,
        json!([{"id": "sidecar~10.0.0.7~ratings-v1.shop~shop.svc.cluster.local",
                "connected_for_secs": 30, "types": [type_status(CDS, "CDS", "v3", "v2")]}]),
    ));
    let api = FakeApi::start(answers).await;
    let (ok, out, err) = api
        .weftctl(&["describe", "pod", "ratings-v1", "-n", "shop"])
        .await;
    assert!(ok, "{err}\n{:?}", api.seen());
    for wanted in [
        "Pod: ratings-v1",
        "Sidecar: injected, image weft-proxy:0.1.0",
        "Proxy status: CDS STALE (sent 2s ago, no ACK)",
        "Service: ratings",
        "VirtualService: shop/ratings\n   Route 0: all requests -> 100% to ratings",
        "Workload mTLS mode: PERMISSIVE (default)",
    ] {
        assert!(out.contains(wanted), "{wanted:?} not in\n{out}");
    }
    let (ok, _, err) = api
        .weftctl(&["describe", "pod", "nope", "-n", "shop"])
        .await;
    assert!(!ok && err.contains("pod shop/nope not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precheck_asks_the_api_server() {
    let review = |allowed: bool| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {}, "status": {"allowed": allowed, "reason": if allowed { "" } else { "RBAC: denied" }}})
    };
    let answers = vec![
        (
            "/version".to_string(),
            200,
            json!({"major": "1", "minor": "29", "gitVersion": "v1.29.4"}),
        ),
        (
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews?".to_string(),
            201,
            review(false),
        ),
        (
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?".to_string(),
            200,
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinitionList", "metadata": {}, "items": []}),
        ),
        (
            "/apis/apps/v1/deployments?".to_string(),
            200,
            json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": []}),
        ),
        (
            "/api/v1/pods?".to_string(),
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
        ),
    ];
    let api = FakeApi::start(answers).await;
    let (ok, out, err) = api.weftctl(&["x", "precheck"]).await;
    assert!(!ok, "errors fail: {out}{err}");
    assert!(
        out.contains("Error [IST0142] (Cluster kubernetes) The Kubernetes Version \"v1.29.4\" is lower than the minimum version: 1.30"),
        "{out}{err}\n{:?}",
        api.seen()
    );
    assert!(
        out.contains("Error [IST0141] (Cluster kubernetes) Missing required permission to create resource customresourcedefinitions.apiextensions.k8s.io (RBAC: denied)"),
        "{out}"
    );
    assert!(
        out.contains("Error [IST0141] (Namespace weft-system/weft-system) Missing required permission to create resource deployments.apps (RBAC: denied)"),
        "{out}"
    );
}
