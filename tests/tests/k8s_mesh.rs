//! Weft on a real kube-apiserver + etcd: the CRDs, the Helm chart and its RBAC, the
//! validating webhook, and the controller turning Kubernetes objects into xDS.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster,
    endpoint::v3::{ClusterLoadAssignment, lb_endpoint},
    route::v3::{RouteConfiguration, route, route_action},
};
use prost::Message;
use tokio::sync::watch;
use weft_e2e::{
    HttpClient, Net, Process, istio_corpus,
    k8s::{KubeCluster, KubeClusterOptions},
    wait_ok,
};
use weft_xds::{AdsClient, Any, ClientConfig, Handler, Node, type_url};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `weft-controller` in Kubernetes mode, as a local process.
struct KubeController {
    process: Process,
    xds: SocketAddr,
    debug: SocketAddr,
}

impl KubeController {
    /// Starts the controller with `kubeconfig`; when `webhook_port` is given it serves the
    /// webhook on 127.0.0.1 with the cluster's serving certificate (SAN 127.0.0.1, signed by
    /// the cluster CA).
    async fn start(
        cluster: &KubeCluster,
        kubeconfig: &Path,
        net: Net,
        webhook_port: Option<u16>,
    ) -> Self {
        let xds = SocketAddr::new(net.ip(1), 15010);
        let debug = SocketAddr::new(net.ip(1), 15014);
        let dir = cluster.dir.path();
        // The CA keeps its root in a Secret of the controller's namespace (the chart's).
        if !cluster
            .kubectl(&["get", "namespace", "weft-system"])
            .status
            .success()
        {
            cluster.kubectl_ok(&["create", "namespace", "weft-system"]);
        }
        let mut command = Command::new(&weft_e2e::bins().controller);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", "weft-system"])
            .args(["--xds-address", &xds.to_string()])
            .args(["--debug-address", &debug.to_string()])
            .args(["--debounce", "50ms"]);
        match webhook_port {
            Some(port) => {
                command
                    .args(["--webhook-address", &format!("127.0.0.1:{port}")])
                    .arg("--webhook-cert")
                    .arg(dir.join("apiserver.crt"))
                    .arg("--webhook-key")
                    .arg(dir.join("apiserver.key"));
            }
            None => {
                command.args(["--webhook-address", &format!("127.0.0.1:{}", free_port())]);
            }
        }
        let mut process = Process::spawn("weft-controller", &mut command, dir);
        wait_ok(&format!("http://{debug}/ready"), &mut process).await;
        Self {
            process,
            xds,
            debug,
        }
    }
}

fn apply_crds(cluster: &KubeCluster) {
    cluster.kubectl_ok(&["apply", "-f", &repo().join("crds").to_string_lossy()]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ]);
}

fn apply_file(cluster: &KubeCluster, path: &Path) {
    let out = cluster.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        out.status.success(),
        "kubectl apply -f {} failed:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Weft's own LocalRateLimits `kubectl apply` must refuse, each with the text the error must
/// contain (the Istio kinds' cases are `crates/api/tests/cases/`, judged by `api_cases`).
const INVALID: &[(&str, &str, &[&str])] = &[
    (
        "LocalRateLimit",
        "{}\n",
        &["at least one of limit or rules"],
    ),
    (
        "LocalRateLimit",
        "limit: {requests: 10, per: 10ms, burst: 5}\n",
        &[
            "spec.limit.per: must be at least 50ms",
            "spec.limit.burst: must be at least requests (10)",
        ],
    ),
    (
        "LocalRateLimit",
        "rules:\n  - name: login\n    limit: {requests: 5, per: 1m}\n    perHeaderValue: X-User\n",
        &["spec.rules[0].perHeaderValue", "lowercase"],
    ),
];

/// Objects that are unusual but valid; `kubectl apply` must accept them.
const VALID: &[(&str, &str)] = &[(
    "LocalRateLimit",
    "selector: {matchLabels: {app: reviews}}\n  limit: {requests: 100, per: 1s, burst: 200}\n  rules:\n  - name: login\n    match: {uri: {prefix: /login}, method: {exact: POST}}\n    limit: {requests: 5, per: 1m}\n    perHeaderValue: x-user-id\n",
)];

fn manifest(kind: &str, name: &str, spec: &str) -> String {
    let group = "ratelimit.weft.io/v1alpha1";
    let spec = if spec.trim() == "{}" {
        " {}".to_string()
    } else {
        format!("\n  {spec}")
    };
    format!(
        "apiVersion: {group}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: default\nspec:{spec}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_chart_rbac_webhook_and_bookinfo() {
    let started = Instant::now();
    let cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    eprintln!("{:?}: cluster up", started.elapsed());
    apply_crds(&cluster);
    eprintln!("{:?}: CRDs established", started.elapsed());
    let crds = cluster.kubectl_ok(&["get", "crds", "-o", "name"]);
    for crd in [
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "gateways.networking.istio.io",
        "serviceentries.networking.istio.io",
        "workloadentries.networking.istio.io",
        "sidecars.networking.istio.io",
        "peerauthentications.security.istio.io",
        "authorizationpolicies.security.istio.io",
        "requestauthentications.security.istio.io",
        "telemetries.telemetry.istio.io",
        "localratelimits.ratelimit.weft.io",
    ] {
        assert!(crds.contains(crd), "{crd} missing from:\n{crds}");
    }

    // The chart installs, with the webhook pointed at the controller we run locally.
    let webhook_port = free_port();
    let ca = std::fs::read(cluster.dir.path().join("ca.crt")).expect("cluster CA");
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(&ca);
    let out = cluster.helm(&[
        "install",
        "weft",
        &repo().join("charts/weft").to_string_lossy(),
        "--set",
        &format!("webhook.url=https://127.0.0.1:{webhook_port}/validate"),
        "--set",
        &format!("webhook.caBundle={ca_b64}"),
        "--set",
        &format!("sidecarInjector.url=https://127.0.0.1:{webhook_port}/inject"),
    ]);
    assert!(
        out.status.success(),
        "helm install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.kubectl_ok(&["get", "deployment/weft-controller", "-n", "weft-system"]);

    // Least privilege: the chart's ServiceAccount reads the registry and Istio config, no more.
    let sa = "system:serviceaccount:weft-system:weft-controller";
    for (verb, resource, allowed) in [
        ("watch", "services", true),
        ("list", "endpointslices.discovery.k8s.io", true),
        ("watch", "virtualservices.networking.istio.io", true),
        ("list", "authorizationpolicies.security.istio.io", true),
        ("create", "pods", false),
        ("get", "secrets", false),
        ("update", "virtualservices.networking.istio.io", false),
    ] {
        let out = cluster.kubectl(&[
            "auth",
            "can-i",
            verb,
            resource,
            "--all-namespaces",
            "--as",
            sa,
        ]);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            answer == "yes",
            allowed,
            "can {sa} {verb} {resource}? got {answer}"
        );
    }

    // The controller, authenticated as that ServiceAccount, does its job.
    let token = cluster.token_for("weft-system", "weft-controller");
    let kubeconfig = cluster.kubeconfig_for_token(&token);
    let net = Net::new();
    eprintln!("{:?}: chart installed", started.elapsed());
    let controller = KubeController::start(&cluster, &kubeconfig, net, Some(webhook_port)).await;
    eprintln!("{:?}: controller ready", started.elapsed());

    // Every bookinfo manifest applies unchanged, through the schema and the webhook. (The
    // cert-manager sample lives in istio-system, which an Istio user has.)
    eprintln!("{:?}: applying the bookinfo corpus", started.elapsed());
    cluster.kubectl_ok(&["create", "namespace", "istio-system"]);
    let bookinfo = istio_corpus().join("samples/bookinfo");
    apply_file(&cluster, &bookinfo.join("platform/kube/bookinfo.yaml"));
    for file in yaml_files(&bookinfo.join("networking")) {
        apply_file(&cluster, &file);
    }

    eprintln!("{:?}: corpus applied", started.elapsed());
    // Invalid objects are refused, naming the field.
    for (i, (kind, spec, expect)) in INVALID.iter().enumerate() {
        let yaml = manifest(kind, &format!("invalid-{i}"), spec);
        let out = cluster.kubectl_apply_stdin(&yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "invalid {kind} #{i} was accepted:\n{yaml}"
        );
        for needle in *expect {
            assert!(
                stderr.contains(needle),
                "invalid {kind} #{i}: error lacks {needle:?}:\n{stderr}\n{yaml}"
            );
        }
    }
    for (i, (kind, spec)) in VALID.iter().enumerate() {
        let yaml = manifest(kind, &format!("valid-{i}"), spec);
        let out = cluster.kubectl_apply_stdin(&yaml);
        assert!(
            out.status.success(),
            "valid {kind} #{i} was refused:\n{}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every API parity case gets Istio's verdict from the schema, CEL rules and webhook.
    let checked = weft_e2e::api_cases::check_all(&cluster);
    eprintln!("{:?}: {checked} API cases judged", started.elapsed());
    let objects = weft_e2e::api_cases::check_corpus(&cluster);
    eprintln!(
        "{:?}: {objects} objects of Istio's corpus accepted",
        started.elapsed()
    );

    // Sidecar injection through the chart's MutatingWebhookConfiguration: a pod created in a
    // namespace labelled istio-injection=enabled is stored with the sidecar; one that opts
    // out, and one in an unlabelled namespace, are stored as written.
    cluster.kubectl_ok(&["create", "namespace", "shop"]);
    cluster.kubectl_ok(&["label", "namespace", "shop", "istio-injection=enabled"]);
    // No controller manager here: the pods' ServiceAccounts are made by hand.
    for namespace in ["shop", "default"] {
        cluster.kubectl_apply_ok(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: default, namespace: {namespace}}}\n"
        ));
    }
    let pod = |name: &str, namespace: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\n\
             spec: {{containers: [{{name: app, image: 'docker.io/weft/demo-app:1.0'}}]}}\n"
        )
    };
    for manifest in [
        pod("injected", "shop", "app: web"),
        pod(
            "opted-out",
            "shop",
            "app: web, sidecar.istio.io/inject: 'false'",
        ),
        pod("plain", "default", "app: web"),
    ] {
        let out = cluster.kubectl_apply_stdin(&manifest);
        assert!(
            out.status.success(),
            "{}\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let init_containers = |name: &str, namespace: &str| {
        cluster.kubectl_ok(&[
            "get",
            "pod",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.initContainers[*].name}",
        ])
    };
    assert_eq!(
        init_containers("injected", "shop"),
        "istio-init istio-proxy"
    );
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "pod",
            "injected",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.labels.security\\.istio\\.io/tlsMode}",
        ]),
        "istio"
    );
    assert_eq!(init_containers("opted-out", "shop"), "");
    assert_eq!(init_containers("plain", "default"), "");
    // A bad annotation is refused with the webhook's words.
    let out = cluster.kubectl_apply_stdin(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: shop\n  annotations:\n    \
         traffic.sidecar.istio.io/includeInboundPorts: http\nspec:\n  containers: [{name: app, image: x}]\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("includeInboundPorts']: \"http\" is not a port"),
        "{stderr}"
    );

    // The controller saw it all through its own (chart-granted) permissions.
    let log = controller.process.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the controller hit RBAC errors:\n{log}"
    );
    let configz = HttpClient::new()
        .get_url(&format!("http://{}/debug/configz", controller.debug))
        .await
        .expect("configz");
    assert!(
        configz.body.contains("reviews"),
        "configz lacks bookinfo:\n{}",
        configz.body
    );
    // Bookinfo's Gateway is watched too, and reported as not supported rather than ignored
    // in silence.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let configz = HttpClient::new()
            .get_url(&format!("http://{}/debug/configz", controller.debug))
            .await
            .expect("configz");
        let body: serde_json::Value = serde_json::from_str(&configz.body).expect("configz is JSON");
        let reported = body["warnings"].as_array().is_some_and(|warnings| {
            warnings.iter().any(|w| {
                w["object"]
                    .as_str()
                    .is_some_and(|o| o.contains("bookinfo-gateway"))
                    && w["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Gateway resources are not supported yet"))
            })
        });
        if reported {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bookinfo Gateway is not reported at /debug/configz:\n{}",
            body["warnings"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a proxy has received, decoded.
#[derive(Default, Clone)]
struct Received {
    routes: BTreeMap<String, RouteConfiguration>,
    endpoints: BTreeMap<String, ClusterLoadAssignment>,
    clusters: Vec<String>,
    /// The SANs each cluster's `tlsMode-istio` transport socket accepts from its servers.
    mesh_sans: BTreeMap<String, Vec<String>>,
    versions: BTreeMap<String, String>,
    /// Responses applied so far, over every connection.
    responses: u64,
}

impl Received {
    /// (cluster, weight) of the first route of the reviews virtual host.
    fn reviews_split(&self) -> Vec<(String, u32)> {
        let Some(config) = self.routes.get("outbound") else {
            return Vec::new();
        };
        let Some(vhost) = config
            .virtual_hosts
            .iter()
            .find(|v| v.name == "reviews.default.svc.cluster.local:9080")
        else {
            return Vec::new();
        };
        let Some(route::Action::Route(action)) =
            vhost.routes.first().and_then(|r| r.action.as_ref())
        else {
            return Vec::new();
        };
        match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(name)) => vec![(name.clone(), 100)],
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn endpoint_ips(&self, cluster: &str) -> Vec<String> {
        let Some(cla) = self.endpoints.get(cluster) else {
            return Vec::new();
        };
        let mut ips: Vec<String> = cla
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .filter_map(|e| match &e.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
                _ => None,
            })
            .filter_map(|a| match &a.address {
                Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s),
                ) => Some(s.address.clone()),
                _ => None,
            })
            .collect();
        ips.sort();
        ips
    }

    /// (`region/zone/subzone`, priority, endpoint count) of each locality of `cluster`.
    fn localities(&self, cluster: &str) -> Vec<(String, u32, usize)> {
        let Some(cla) = self.endpoints.get(cluster) else {
            return Vec::new();
        };
        cla.endpoints
            .iter()
            .map(|l| {
                let place = l.locality.clone().unwrap_or_default();
                (
                    format!("{}/{}/{}", place.region, place.zone, place.sub_zone),
                    l.priority,
                    l.lb_endpoints.len(),
                )
            })
            .collect()
    }
}

/// The exact SANs of a cluster's `tlsMode-istio` transport socket (auto mTLS).
fn mesh_sans(cluster: &Cluster) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        UpstreamTlsContext, common_tls_context::ValidationContextType,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let Some(ConfigType::TypedConfig(any)) = cluster
        .transport_socket_matches
        .iter()
        .find(|m| m.name == "tlsMode-istio")
        .and_then(|m| m.transport_socket.as_ref())
        .and_then(|socket| socket.config_type.as_ref())
    else {
        return Vec::new();
    };
    let Ok(context) = UpstreamTlsContext::decode(any.value.as_slice()) else {
        return vec!["<undecodable UpstreamTlsContext>".to_string()];
    };
    let Some(ValidationContextType::CombinedValidationContext(combined)) = context
        .common_tls_context
        .and_then(|common| common.validation_context_type)
    else {
        return Vec::new();
    };
    combined
        .default_validation_context
        .into_iter()
        .flat_map(|validation| validation.match_typed_subject_alt_names)
        .filter_map(|san| match san.matcher?.match_pattern? {
            MatchPattern::Exact(exact) => Some(exact),
            _ => None,
        })
        .collect()
}

/// A test proxy: the real xDS client, recording what it is sent.
struct Recorder {
    state: Received,
    tx: Arc<watch::Sender<Received>>,
}

impl Handler for Recorder {
    fn apply(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String> {
        match type_url {
            type_url::ROUTE => {
                self.state.routes = resources
                    .iter()
                    .map(|a| {
                        RouteConfiguration::decode(a.value.as_slice()).map(|r| (r.name.clone(), r))
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
            }
            type_url::ENDPOINT => {
                self.state.endpoints = resources
                    .iter()
                    .map(|a| {
                        ClusterLoadAssignment::decode(a.value.as_slice())
                            .map(|c| (c.cluster_name.clone(), c))
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
            }
            type_url::CLUSTER => {
                let clusters = resources
                    .iter()
                    .map(|a| Cluster::decode(a.value.as_slice()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                self.state.clusters = clusters.iter().map(|c| c.name.clone()).collect();
                self.state.mesh_sans = clusters
                    .iter()
                    .map(|c| (c.name.clone(), mesh_sans(c)))
                    .collect();
            }
            _ => {}
        }
        self.state
            .versions
            .insert(type_url.to_string(), version.to_string());
        self.state.responses += 1;
        self.tx.send_replace(self.state.clone());
        Ok(())
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        match type_url {
            type_url::ROUTE => vec!["outbound".to_string()],
            type_url::ENDPOINT => self
                .state
                .clusters
                .iter()
                .filter(|c| c.starts_with("outbound|"))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn proxy_node(net: Net) -> Node {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let mut fields = std::collections::HashMap::new();
    fields.insert("NAMESPACE".to_string(), string("default"));
    fields.insert("INSTANCE_IPS".to_string(), string(&net.ip(10).to_string()));
    fields.insert(
        "LABELS".to_string(),
        Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [("app".to_string(), string("productpage"))]
                    .into_iter()
                    .collect(),
            })),
        },
    );
    Node {
        id: format!(
            "sidecar~{}~productpage.default~default.svc.cluster.local",
            net.ip(10)
        ),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

/// Waits until `check` holds for what the proxy received; returns how long it took.
async fn until(
    rx: &mut watch::Receiver<Received>,
    limit: Duration,
    what: &str,
    check: impl Fn(&Received) -> bool,
) -> Duration {
    let started = Instant::now();
    let reached = matches!(
        tokio::time::timeout(limit, rx.wait_for(|r| check(r))).await,
        Ok(Ok(_))
    );
    assert!(
        reached,
        "timed out after {limit:?} waiting for {what}; have split {:?}",
        rx.borrow().reviews_split()
    );
    started.elapsed()
}

/// Two nodes in two zones of one region (their topology labels are their pods' locality),
/// reviews v1 in the productpage proxy's zone, v2 in the other.
const REVIEWS_PODS: &str = "
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1, topology.istio.io/subzone: rack1}
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
  labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}
---
apiVersion: v1
kind: Pod
metadata: {name: productpage, namespace: default, labels: {app: productpage}}
spec:
  nodeName: node-a
  containers: [{name: productpage, image: docker.io/istio/examples-bookinfo-productpage-v1:1.20.3}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: default, labels: {app: reviews, version: v1}}
spec:
  nodeName: node-a
  serviceAccountName: bookinfo-reviews
  containers: [{name: reviews, image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2, namespace: default, labels: {app: reviews, version: v2}}
spec:
  nodeName: node-b
  containers: [{name: reviews, image: docker.io/istio/examples-bookinfo-reviews-v2:1.20.3}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-hand-made
  namespace: default
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports: [{name: http, port: 9080, protocol: TCP}]
endpoints:
- addresses: [198.18.0.11]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1, namespace: default}
- addresses: [198.18.0.12]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v2, namespace: default}
";

fn set_pod_ready(cluster: &KubeCluster, pod: &str, ip: &str) {
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    );
    cluster.kubectl_ok(&[
        "patch",
        "pod",
        pod,
        "-n",
        "default",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn split_80_20(a: u32, b: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {a}
    - destination: {{host: reviews, subset: v2}}
      weight: {b}
"
    )
}

const V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";
const ALL: &str = "outbound|9080||reviews.default.svc.cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_endpoints_follow_the_api_within_a_second() {
    let mut cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    apply_crds(&cluster);
    let bookinfo = istio_corpus().join("samples/bookinfo");
    apply_file(&cluster, &bookinfo.join("platform/kube/bookinfo.yaml"));
    apply_file(
        &cluster,
        &bookinfo.join("networking/destination-rule-all.yaml"),
    );
    // No controller manager here: create the ServiceAccount pods need.
    cluster.kubectl_ok(&["create", "serviceaccount", "default", "-n", "default"]);
    cluster.kubectl_apply_ok(REVIEWS_PODS);
    set_pod_ready(&cluster, "reviews-v1", "198.18.0.11");
    set_pod_ready(&cluster, "reviews-v2", "198.18.0.12");

    let net = Net::new();
    let admin = cluster.kubeconfig.clone();
    let mut controller = KubeController::start(&cluster, &admin, net, None).await;

    let (tx, mut rx) = watch::channel(Received::default());
    let recorder = Recorder {
        state: Received::default(),
        tx: Arc::new(tx),
    };
    let mut config = ClientConfig::new(format!("http://{}", controller.xds), proxy_node(net));
    config.max_backoff = Duration::from_millis(500);
    let client = tokio::spawn(AdsClient::new(config, recorder).run());

    // Without a VirtualService: the default route, and subset endpoints by pod labels.
    until(&mut rx, Duration::from_secs(5), "the default route", |r| {
        r.reviews_split() == [(ALL.to_string(), 100)]
    })
    .await;
    until(&mut rx, Duration::from_secs(5), "subset endpoints", |r| {
        r.endpoint_ips(V1) == ["198.18.0.11"] && r.endpoint_ips(V2) == ["198.18.0.12"]
    })
    .await;
    // Auto mTLS verifies the servers' identities: each subset's pods' service accounts
    // (reviews-v2 names none: `default`), and the service's are all of them.
    let identity = |sa: &str| format!("spiffe://cluster.local/ns/default/sa/{sa}");
    until(
        &mut rx,
        Duration::from_secs(5),
        "identities from pods",
        |r| r.mesh_sans.get(ALL) == Some(&vec![identity("bookinfo-reviews"), identity("default")]),
    )
    .await;
    let sans = rx.borrow().mesh_sans.clone();
    assert_eq!(
        (sans.get(V1), sans.get(V2)),
        (
            Some(&vec![identity("bookinfo-reviews"), identity("default")]),
            Some(&vec![identity("bookinfo-reviews"), identity("default")])
        ),
        "subset clusters verify the service's identities, as istiod"
    );

    // Apply the corpus 80/20 VirtualService: routes within a second.
    apply_file(
        &cluster,
        &bookinfo.join("networking/virtual-service-reviews-80-20.yaml"),
    );
    let took = until(&mut rx, Duration::from_secs(1), "the 80/20 split", |r| {
        r.reviews_split() == [(V1.to_string(), 80), (V2.to_string(), 20)]
    })
    .await;
    eprintln!("80/20 written → pushed {took:?} later");

    // Edit it: within a second.
    cluster.kubectl_apply_ok(&split_80_20(50, 50));
    let took = until(&mut rx, Duration::from_secs(1), "the 50/50 edit", |r| {
        r.reviews_split() == [(V1.to_string(), 50), (V2.to_string(), 50)]
    })
    .await;
    eprintln!("edit written → pushed {took:?} later");

    // Delete it: back to the default route within a second.
    cluster.kubectl_ok(&["delete", "virtualservice", "reviews", "-n", "default"]);
    let took = until(
        &mut rx,
        Duration::from_secs(1),
        "the default route after delete",
        |r| r.reviews_split() == [(ALL.to_string(), 100)],
    )
    .await;
    eprintln!("delete written → pushed {took:?} later");

    // An endpoint going unready leaves the subset.
    cluster.kubectl_apply_ok(&REVIEWS_PODS.replace(
        "- addresses: [198.18.0.12]\n  conditions: {ready: true}",
        "- addresses: [198.18.0.12]\n  conditions: {ready: false}",
    ));
    let took = until(
        &mut rx,
        Duration::from_secs(1),
        "v2 endpoint removed",
        |r| r.endpoint_ips(V2).is_empty(),
    )
    .await;
    eprintln!("endpoint unready written → pushed {took:?} later");

    // The API server restarts: the watches resume and later changes still arrive.
    cluster.restart_apiserver().await;
    cluster.kubectl_apply_ok(&split_80_20(70, 30));
    until(
        &mut rx,
        Duration::from_secs(15),
        "a change made after the API server restart",
        |r| r.reviews_split() == [(V1.to_string(), 70), (V2.to_string(), 30)],
    )
    .await;

    // The controller restarts: the proxy gets the same config back (same versions).
    let before = rx.borrow().clone();
    controller.process.kill();
    controller = KubeController::start(&cluster, &admin, net, None).await;
    // Every subscribed type is answered again on the new connection, with the same content.
    let after = until(
        &mut rx,
        Duration::from_secs(10),
        "the resync after a controller restart",
        |r| {
            r.responses >= before.responses + 4
                && r.reviews_split() == [(V1.to_string(), 70), (V2.to_string(), 30)]
                && r.endpoint_ips(V1) == ["198.18.0.11"]
        },
    )
    .await;
    eprintln!("controller restart → resynced in {after:?}");
    assert_eq!(
        rx.borrow().versions,
        before.versions,
        "a restarted controller serves the same content"
    );

    // Localities come from the pods' nodes. With outlier detection the mesh's default
    // locality failover applies: the proxy (whose pod runs on node-a) gets v1, in its own
    // zone, at priority 0 and v2 (ready again) at priority 1.
    cluster.kubectl_apply_ok(REVIEWS_PODS);
    cluster.kubectl_apply_ok(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 5}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
",
    );
    until(
        &mut rx,
        Duration::from_secs(5),
        "locality priorities from the nodes",
        |r| {
            r.localities(ALL)
                == [
                    ("r1/z1/rack1".to_string(), 0, 1),
                    ("r1/z2/".to_string(), 1, 1),
                ]
        },
    )
    .await;
    controller.process.assert_running();
    client.abort();
}

/// The chart is lint-clean and renders for the pinned Kubernetes version; a webhook URL
/// without its CA bundle is refused with a clear message.
#[test]
fn chart_lints_and_renders() {
    let helm = &weft_e2e::k8s::k8s_bins().helm;
    let chart = repo().join("charts/weft");
    let lint = Command::new(helm)
        .args(["lint", "--strict"])
        .arg(&chart)
        .output()
        .expect("helm lint");
    assert!(
        lint.status.success(),
        "helm lint failed:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let version =
        std::fs::read_to_string(repo().join("tests/k8s/versions.env")).expect("versions.env");
    let kube_version = version
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .expect("KUBERNETES_VERSION in versions.env");
    let out = Command::new(helm)
        .args(["template", "weft"])
        .arg(&chart)
        .args(["--kube-version", kube_version])
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert!(
            rendered.contains(&format!("\nkind: {kind}\n")),
            "{kind} not rendered"
        );
    }
    // The webhooks' certificate is the controller's (its CA's), and so is their caBundle:
    // the chart renders neither a Secret nor a caBundle, and lets the controller patch its
    // two configurations by name.
    assert!(!rendered.contains("\nkind: Secret\n"), "{rendered}");
    assert!(!rendered.contains("caBundle"), "{rendered}");
    for line in [
        "- --webhook-cert-from-ca",
        "- --validator-webhook-config=weft-validator-weft-system",
        "- --injector-webhook-config=weft-sidecar-injector-weft-system",
        "resourceNames: [weft-sidecar-injector-weft-system]",
        "resourceNames: [weft-validator-weft-system]",
    ] {
        assert!(rendered.contains(line), "{line} not rendered");
    }
    let out = Command::new(helm)
        .args(["template", "weft"])
        .arg(&chart)
        .args(["--set", "webhook.url=https://127.0.0.1:15017/validate"])
        .output()
        .expect("helm template");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhook.url needs webhook.caBundle"));
    let out = Command::new(helm)
        .args(["template", "weft"])
        .arg(&chart)
        .args(["--set", "webhook.tlsSecretName=mine"])
        .output()
        .expect("helm template");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("webhook.tlsSecretName needs webhook.caBundle")
    );
    // Your own certificate: mounted from your Secret, your caBundle, no patching.
    let out = Command::new(helm)
        .args(["template", "weft"])
        .arg(&chart)
        .args([
            "--set",
            "webhook.caBundle=Q0E=",
            "--set",
            "webhook.tlsSecretName=mine",
        ])
        .output()
        .expect("helm template");
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rendered.matches("caBundle: Q0E=").count(), 3, "{rendered}");
    assert!(
        rendered.contains("secret: {secretName: mine}"),
        "{rendered}"
    );
    assert!(rendered.contains("- --webhook-cert=/etc/weft/webhook/tls.crt"));
    assert!(!rendered.contains("--webhook-cert-from-ca") && !rendered.contains("resourceNames"));
}
