//! Istio's bookinfo, unchanged, in the mesh on the test node: the chart installed with Helm,
//! `default` labelled `istio-injection=enabled`, `bookinfo.yaml` applied as published. Every
//! pod gets `istio-init` and the native sidecar through the webhook; productpage's page shows
//! details and reviews, fetched through the sidecars (names resolved by their DNS proxies,
//! connections captured, mutual TLS between them: a capture on the bridge sees no plaintext
//! HTTP between pods); Istio's routing samples take effect within 2 s of `kubectl apply`; an
//! unlabelled namespace and an opted-out pod are untouched; re-injection changes nothing; a
//! Job with a sidecar completes; under STRICT mutual TLS a pod with HTTP and TCP probes
//! becomes Ready through the probes the injector rewrote to the sidecar's status port.
//!
//! The controller is the chart's, in its pod on the test node: proxies reach it through its
//! Service, and the API server reaches its webhooks with the certificate its CA issued, trusted
//! through the `caBundle` it writes into the webhook configurations and keeps there (through a
//! `helm upgrade` and a user's edit).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use weft_e2e::node::images::BOOKINFO_DEPLOYMENTS;
use weft_e2e::node::mesh::{self, wait_for_injection};
use weft_e2e::node::net::http_get_in;
use weft_e2e::node::test_node::{TestNode, pod_ip, ready};
use weft_e2e::{eventually, istio_corpus};

/// What Weft's bookinfo reviews app shows when ratings do not answer (Istio's text).
const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// How soon after `kubectl apply` a routing change must be seen.
const CONVERGENCE: Duration = Duration::from_secs(2);

/// The reviews version a product page names (`Reviews served by: reviews-v2 …`).
fn reviews_version(page: &str) -> Option<String> {
    let rest = page.split("Reviews served by: reviews-").nth(1)?;
    Some(
        rest.chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect(),
    )
}

/// Names of the pod's init containers and containers, and whether `istio-proxy` is a
/// native sidecar (an init container with `restartPolicy: Always`).
fn containers(pod: &Pod) -> (Vec<String>, Vec<String>, bool) {
    let spec = pod.spec.as_ref().expect("spec");
    let inits: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    let native = spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == "istio-proxy" && c.restart_policy.as_deref() == Some("Always"));
    let apps = spec.containers.iter().map(|c| c.name.clone()).collect();
    (inits, apps, native)
}

/// `tcpdump` on the test bridge, writing every TCP packet to a file until stopped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// Frames between two pods are forwarded by the bridge without passing its own
    /// interface, so the capture listens on every interface, for the pods' subnet only.
    fn start(subnet: &str, dir: &std::path::Path) -> Self {
        let file = dir.join("bridge.pcap");
        let mut child = Command::new("tcpdump")
            // -Z root: Debian's tcpdump otherwise drops to its own user, which cannot write
            // into the test's directory.
            // --immediate-mode: packets written as they come, not in blocks that a stop
            // before the block timeout would lose.
            .args([
                "-i",
                "any",
                "-Z",
                "root",
                "--immediate-mode",
                "-U",
                "-s",
                "0",
                "-w",
            ])
            .arg(&file)
            .args(["tcp", "and", "net", subnet])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (apt-get install tcpdump; .ci/run does)");
        // It says "listening on any" once it captures.
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) > 0
            && !line.contains("listening on")
        {
            line.clear();
        }
        assert!(
            line.contains("listening on"),
            "tcpdump did not start: {line}"
        );
        Self { child, file }
    }

    /// Stops the capture and returns it as text (`tcpdump -A`): headers and payloads.
    fn stop(mut self) -> String {
        // SIGINT makes tcpdump flush and exit.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait();
        eprintln!(
            "tcpdump: {status:?}, {} bytes in {}",
            std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0),
            self.file.display()
        );
        let out = Command::new("tcpdump")
            .args(["-n", "-A", "-r"])
            .arg(&self.file)
            .output()
            .expect("tcpdump -r");
        assert!(
            out.status.success(),
            "tcpdump -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `text` without the terminal colours of the proxy's log.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `caBundle` of every webhook of the chart's two configurations.
async fn ca_bundles(node: &TestNode) -> Vec<Option<Vec<u8>>> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(node.client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(node.client.clone());
    let mut bundles = Vec::new();
    if let Ok(config) = mutating.get("weft-sidecar-injector-weft-system").await {
        bundles.extend(
            (config.webhooks.iter().flatten())
                .map(|w| w.client_config.ca_bundle.clone().map(|b| b.0)),
        );
    }
    if let Ok(config) = validating.get("weft-validator-weft-system").await {
        bundles.extend(
            (config.webhooks.iter().flatten())
                .map(|w| w.client_config.ca_bundle.clone().map(|b| b.0)),
        );
    }
    bundles
}

/// The API server calls the validating webhook: an object only it refuses is refused with its
/// words. Waited for (10 s): the node routes the webhook's Service within a poll of its
/// endpoints, and the API server reads a new `caBundle` through an informer.
async fn the_validating_webhook_answers(node: &TestNode) {
    let refused = eventually(
        Duration::from_secs(10),
        "the validating webhook",
        async || {
            let out = node.cluster.kubectl_apply_stdin(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {name: bad-regex, namespace: default}\n\
             spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - uri: {regex: \"/api/(v1\"}\n    \
             route:\n    - destination: {host: reviews}\n",
            );
            assert!(!out.status.success(), "the bad regex was accepted");
            // Not "failed calling webhook" (unreachable, untrusted): its own verdict.
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            stderr
                .contains("admission webhook \"validation.weft.io\" denied the request")
                .then_some(stderr)
        },
    )
    .await;
    assert!(
        refused.contains("spec.http[0].match[0].uri"),
        "the webhook's refusal does not name the field: {refused}"
    );
}

/// The chart renders the webhook configurations without a `caBundle`; the controller writes
/// its CA's root there (the `istio-ca-root-cert` it publishes) and the API server verifies
/// the webhooks with it. A user's edit is undone and a `helm upgrade` keeps it working.
async fn webhooks_trust_the_controllers_ca(node: &TestNode, chart: &str) {
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(node.client.clone(), "weft-system");
    let root = eventually(Duration::from_secs(30), "istio-ca-root-cert", async || {
        configmaps
            .get("istio-ca-root-cert")
            .await
            .ok()?
            .data?
            .remove("root-cert.pem")
    })
    .await;
    let trusted = async || {
        let bundles = ca_bundles(node).await;
        (bundles.len() == 3
            && bundles
                .iter()
                .all(|b| b.as_deref() == Some(root.as_bytes())))
        .then_some(())
    };
    eventually(Duration::from_secs(30), "the webhooks' caBundle", trusted).await;
    the_validating_webhook_answers(node).await;
    node.cluster
        .kubectl_ok(&["create", "namespace", "inject-probe"]);
    node.cluster.kubectl_ok(&[
        "label",
        "namespace",
        "inject-probe",
        "istio-injection=enabled",
    ]);
    wait_for_injection(node, "inject-probe").await;

    node.cluster.kubectl_ok(&[
        "patch",
        "mutatingwebhookconfiguration",
        "weft-sidecar-injector-weft-system",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/webhooks/1/clientConfig/caBundle"}]"#,
    ]);
    eventually(
        Duration::from_secs(10),
        "the removed caBundle written back",
        trusted,
    )
    .await;

    let out = node.cluster.helm(&[
        "upgrade",
        "weft",
        chart,
        "--reuse-values",
        "--wait=false",
        "--set",
        "webhook.timeoutSeconds=9",
    ]);
    assert!(
        out.status.success(),
        "helm upgrade failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(node.client.clone());
    let upgraded = validating
        .get("weft-validator-weft-system")
        .await
        .expect("validating webhook configuration");
    assert_eq!(
        upgraded.webhooks.unwrap_or_default()[0].timeout_seconds,
        Some(9),
        "helm upgrade applied"
    );
    eventually(
        Duration::from_secs(10),
        "the caBundle after helm upgrade",
        trusted,
    )
    .await;
    the_validating_webhook_answers(node).await;
    wait_for_injection(node, "inject-probe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_unchanged_in_the_mesh() {
    let started = Instant::now();
    let node = TestNode::start(env!("CARGO_BIN_EXE_weft-test-node")).await;
    let cluster = &node.cluster;

    // The chart as a user installs it: the controller runs in its pod on the test node, serves
    // the webhooks with a certificate of its own CA and writes their caBundle itself.
    mesh::install(
        &node,
        &[
            "--set-string",
            "meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE=true",
        ],
    )
    .await;
    eprintln!(
        "{:?}: chart installed, controller available",
        started.elapsed()
    );
    webhooks_trust_the_controllers_ca(&node, &mesh::chart()).await;
    eprintln!(
        "{:?}: webhooks trusted through the caBundle the controller keeps",
        started.elapsed()
    );

    cluster.kubectl_ok(&["label", "namespace", "default", "istio-injection=enabled"]);
    let manifest = istio_corpus().join("samples/bookinfo/platform/kube/bookinfo.yaml");
    cluster.kubectl_ok(&["apply", "-n", "default", "-f", &manifest.to_string_lossy()]);
    // An unlabelled namespace's pod (the visitor the page is fetched from) and an opted-out
    // pod in the mesh's namespace: both stored as written.
    cluster.kubectl_ok(&["create", "namespace", "plain"]);
    let plain_pod = |name: &str, namespace: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\n\
             spec: {{containers: [{{name: app, image: 'docker.io/weft/demo-app:1.0', \
             args: ['--listen', '0.0.0.0:9080', '--service', '{name}', '--version', 'v1']}}]}}\n"
        )
    };
    node.apply(&plain_pod("visitor", "plain", "app: visitor"));
    node.apply(&plain_pod(
        "opted-out",
        "default",
        "app: opted-out, sidecar.istio.io/inject: 'false'",
    ));

    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(240);
    for name in BOOKINFO_DEPLOYMENTS {
        loop {
            let available = deployments
                .get(name)
                .await
                .ok()
                .and_then(|d| d.status)
                .is_some_and(|s| s.available_replicas == Some(1));
            if available {
                eprintln!("{:?}: {name} available", started.elapsed());
                break;
            }
            if Instant::now() > deadline {
                let logs = node.agent.logs("default", name, "istio-proxy");
                panic!(
                    "deployment {name} not available after 240s\n{}\n{logs}",
                    cluster.kubectl_ok(&["get", "pods", "-A", "-o", "wide"])
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    eprintln!("{:?}: bookinfo available", started.elapsed());

    // Every bookinfo pod: istio-init, then the proxy as a native sidecar, then the app.
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let list = pods.list(&ListParams::default()).await.expect("pods");
    let mut by_app: BTreeMap<String, Pod> = BTreeMap::new();
    for pod in &list.items {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let (inits, apps, native) = containers(pod);
        if name == "opted-out" {
            assert!(
                inits.is_empty() && apps == ["app"],
                "{name}: {inits:?} {apps:?}"
            );
            continue;
        }
        assert_eq!(inits, ["istio-init", "istio-proxy"], "{name}");
        assert!(native, "{name}: istio-proxy is not a native sidecar");
        assert!(
            !apps.contains(&"istio-proxy".to_string()),
            "{name}: {apps:?}"
        );
        assert!(ready(pod), "{name} not Ready");
        if let (Some(app), Some(version)) = (labels.get("app"), labels.get("version")) {
            by_app.insert(format!("{app}-{version}"), pod.clone());
        }
    }
    assert_eq!(by_app.len(), 6, "{:?}", by_app.keys());
    let plain: Api<Pod> = Api::namespaced(node.client.clone(), "plain");
    let visitor = eventually(Duration::from_secs(60), "visitor Ready", async || {
        plain.get("visitor").await.ok().filter(ready)
    })
    .await;
    let (inits, apps, _) = containers(&visitor);
    assert!(
        inits.is_empty() && apps == ["app"],
        "visitor: {inits:?} {apps:?}"
    );

    // The page, from outside the mesh to productpage's pod (PERMISSIVE accepts plaintext);
    // productpage reaches details and reviews, reviews reaches ratings, all through sidecars.
    let from = node.agent.netns("plain", "visitor").expect("visitor netns");
    let productpage_ip = pod_ip(&by_app["productpage-v1"]);
    let page = || http_get_in(&from, &productpage_ip, 9080, "/productpage").unwrap_or_default();
    let [a, b, c, _] = node.network.gateway().octets();
    let subnet = format!("{a}.{b}.{c}.0/24");
    let capture = Capture::start(&subnet, &node.network.dir());
    let first = eventually(
        Duration::from_secs(30),
        "the product page with details and reviews",
        async || {
            let page = page();
            (page.contains("200 OK") && reviews_version(&page).is_some()).then_some(page)
        },
    )
    .await;
    for expected in ["Book Details", "ISBN-10", "Book Reviews", "Reviewer1"] {
        assert!(first.contains(expected), "{expected:?} missing:\n{first}");
    }
    assert!(!first.contains("unavailable"), "{first}");
    // A few pages more, so that every version of reviews (and ratings) is called.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        if let Some(v) = reviews_version(&page()) {
            seen.insert(v);
        }
        if seen.len() == 3 {
            break;
        }
    }
    let dump = capture.stop();
    assert!(
        dump.contains("GET /productpage"),
        "the capture saw nothing of the visitor's request:\n{}",
        &dump[..dump.len().min(2000)]
    );
    for plaintext in ["GET /details/", "GET /reviews/", "GET /ratings/"] {
        assert!(
            !dump.contains(plaintext),
            "plaintext {plaintext:?} between pods on the bridge"
        );
    }
    eprintln!(
        "{:?}: page served, no plaintext between pods",
        started.elapsed()
    );

    // Istio's routing samples, unchanged: each takes effect within 2 s of the apply.
    let samples = istio_corpus().join("samples/bookinfo/networking");
    let apply = |files: &[&str]| -> Instant {
        for file in files {
            cluster.kubectl_ok(&[
                "apply",
                "-n",
                "default",
                "-f",
                &samples.join(file).to_string_lossy(),
            ]);
        }
        Instant::now()
    };
    // Converged: 5 pages in a row as `expect` says; returns when the first of them came.
    let converged = async |expect: &dyn Fn(Option<&str>) -> bool, headers: &str| -> Instant {
        let mut run: Option<Instant> = None;
        let mut streak = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let at = Instant::now();
            let page = if headers.is_empty() {
                page()
            } else {
                weft_e2e::node::net::http_get_in_with(
                    &from,
                    &productpage_ip,
                    9080,
                    "/productpage",
                    headers,
                )
                .unwrap_or_default()
            };
            if expect(reviews_version(&page).as_deref()) {
                run.get_or_insert(at);
                streak += 1;
                if streak == 5 {
                    return run.expect("set");
                }
            } else {
                run = None;
                streak = 0;
            }
            if Instant::now() > deadline {
                let pod = by_app["productpage-v1"]
                    .metadata
                    .name
                    .clone()
                    .unwrap_or_default();
                let log = node.agent.logs("default", &pod, "istio-proxy");
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "no convergence in 30s; last page:\n{page}\n--- productpage's proxy ---\n{}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                    cluster.kubectl_ok(&["get", "virtualservices,destinationrules", "-A"])
                );
            }
        }
    };
    let applied = apply(&[
        "virtual-service-all-v1.yaml",
        "destination-rule-all-mtls.yaml",
    ]);
    let seen_at = converged(&|v| v == Some("v1"), "").await;
    let took = seen_at.saturating_duration_since(applied);
    assert!(took < CONVERGENCE, "all-v1 took {took:?}");
    eprintln!("all-v1 in force {took:?} after the apply");

    // 80 % v1, 20 % v2.
    let applied = apply(&["virtual-service-reviews-80-20.yaml"]);
    // The first v2 page is the sign of the change (v1 pages are still 80 %): 20 pages
    // without one have a chance of 1 % at most once it is in force.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen_at = loop {
        // Back to back: at 20 %, 20 pages without a v2 happen once in a hundred tries.
        let at = Instant::now();
        if reviews_version(&page()).as_deref() == Some("v2") {
            break at;
        }
        assert!(Instant::now() < deadline, "no v2 page in 30s after 80-20");
    };
    let took = seen_at.saturating_duration_since(applied);
    assert!(
        // Plus the pages it may take to draw a v2 once in force.
        took < CONVERGENCE + Duration::from_secs(1),
        "80-20 took {took:?}"
    );
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..200 {
        *counts
            .entry(reviews_version(&page()).unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!("80-20: {counts:?}");
    let v2 = counts.get("v2").copied().unwrap_or(0);
    let v1 = counts.get("v1").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 200, "{counts:?}");
    // 20 % of 200: 40, three standard deviations (±17) either way.
    assert!((23..=57).contains(&v2), "v2 share {v2}/200: {counts:?}");

    // Signed in as jason (productpage's session cookie, as `POST /login` sets it), productpage
    // sends `end-user: jason` to reviews.
    let applied = apply(&["virtual-service-reviews-jason-v2-v3.yaml"]);
    let seen_at = converged(&|v| v == Some("v2"), "Cookie: session=jason\r\n").await;
    let took = seen_at.saturating_duration_since(applied);
    assert!(took < CONVERGENCE, "jason to v2 took {took:?}");
    eprintln!("jason-v2-v3 in force {took:?} after the apply");
    let _ = converged(&|v| v == Some("v3"), "").await;
    eprintln!("{:?}: routing samples applied", started.elapsed());

    // Istio's fault-injection task, its files unchanged: jason's calls to ratings delayed 7 s,
    // then aborted with 500. Reviews (v2 for jason) gives up on ratings after its own timeout
    // (2.5 s in Weft's bookinfo apps), so jason's page is slow and without ratings; everyone
    // else's is fast.
    let jason = "Cookie: session=jason\r\n";
    let jason_page = || {
        let start = Instant::now();
        let page = weft_e2e::node::net::http_get_in_with(
            &from,
            &productpage_ip,
            9080,
            "/productpage",
            jason,
        )
        .unwrap_or_default();
        (page, start.elapsed())
    };
    let timed_page = || {
        let start = Instant::now();
        let page = page();
        (page, start.elapsed())
    };
    apply(&[
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-delay.yaml",
    ]);
    let took = eventually(
        Duration::from_secs(30),
        "jason's ratings delayed",
        || async {
            let (page, took) = jason_page();
            (reviews_version(&page).as_deref() == Some("v2")
                && page.contains(RATINGS_UNAVAILABLE)
                && took >= Duration::from_millis(2400))
            .then_some(took)
        },
    )
    .await;
    let (other, other_took) = timed_page();
    assert_eq!(reviews_version(&other).as_deref(), Some("v1"), "{other}");
    assert!(
        other_took < Duration::from_secs(1),
        "others are not delayed: {other_took:?}"
    );
    eprintln!("ratings-test-delay: jason's page {took:?} without ratings, others {other_took:?}");
    apply(&["virtual-service-ratings-test-abort.yaml"]);
    let took = eventually(
        Duration::from_secs(30),
        "jason's ratings aborted",
        || async {
            let (page, took) = jason_page();
            (reviews_version(&page).as_deref() == Some("v2")
                && page.contains(RATINGS_UNAVAILABLE)
                && took < Duration::from_secs(1))
            .then_some(took)
        },
    )
    .await;
    eprintln!("ratings-test-abort: jason's page at once ({took:?}), without ratings");

    // Istio's request-timeouts task (its manifests are inline on the page): ratings delayed 2 s
    // for everyone, reviews v2 with a 0.5 s route timeout: the page comes fast, without reviews.
    node.apply(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings, namespace: default}\n\
         spec:\n  hosts: [ratings]\n  http:\n  - fault: {delay: {percentage: {value: 100}, fixedDelay: 2s}}\n\
         \x20   route: [{destination: {host: ratings, subset: v1}}]\n",
    );
    node.apply(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\n\
         spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v2}}]\n\
         \x20   timeout: 0.5s\n",
    );
    let took = eventually(
        Duration::from_secs(30),
        "reviews' 0.5 s timeout",
        || async {
            let (page, took) = timed_page();
            (page.contains("Error fetching product reviews!") && took < Duration::from_millis(1800))
                .then_some(took)
        },
    )
    .await;
    eprintln!("request timeouts: page without reviews in {took:?}");
    eprintln!(
        "{:?}: fault injection and timeout tasks done",
        started.elapsed()
    );

    // Re-injection changes nothing: the stored productpage pod, created again (server-side
    // dry run, through the webhook), comes back with the same containers.
    let mut again = serde_json::to_value(&by_app["productpage-v1"]).expect("json");
    let meta = again["metadata"].as_object_mut().expect("metadata");
    for key in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
        "generateName",
    ] {
        meta.remove(key);
    }
    meta.insert("name".into(), "productpage-again".into());
    again.as_object_mut().expect("pod").remove("status");
    let file = node.network.dir().join("again.json");
    std::fs::write(&file, again.to_string()).expect("write");
    let stored = cluster.kubectl_ok(&[
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        &file.to_string_lossy(),
    ]);
    let stored: Pod = serde_json::from_str(&stored).expect("pod json");
    assert_eq!(containers(&stored), containers(&by_app["productpage-v1"]));
    assert_eq!(
        stored.spec.as_ref().map(|s| s.volumes.clone()),
        by_app["productpage-v1"]
            .spec
            .as_ref()
            .map(|s| s.volumes.clone())
    );

    // A Job in the mesh completes: its app exits, then its sidecar is stopped.
    node.apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: default}\n\
         spec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n\
         \x20     containers:\n      - {name: task, image: docker.io/library/busybox, command: [sh, -c, 'echo done']}\n",
    );
    let jobs: Api<Job> = Api::namespaced(node.client.clone(), "default");
    eventually(Duration::from_secs(90), "Job once succeeded", async || {
        let status = jobs.get("once").await.ok()?.status?;
        (status.succeeded == Some(1)).then_some(())
    })
    .await;
    let job_pods = pods
        .list(&ListParams::default().labels("job-name=once"))
        .await
        .expect("job pods");
    let (inits, _, native) = containers(&job_pods.items[0]);
    assert!(
        native && inits.contains(&"istio-proxy".to_string()),
        "{inits:?}"
    );

    // Probes under STRICT mutual TLS: kubelet's plaintext probes would be refused by the
    // inbound listener; rewritten through the sidecar's status port, the pod becomes Ready.
    node.apply(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: default, namespace: default}\nspec: {mtls: {mode: STRICT}}\n",
    );
    // Its `proxy.istio.io/config` sets the proxy's workers and turns the mesh's DNS capture
    // off for it; a field Weft does not act on comes back as the API server's warning.
    let out = cluster.kubectl_apply_stdin(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probed\n  namespace: default\n  labels: {app: probed}\n\
         \x20 annotations:\n    proxy.istio.io/config: |\n      concurrency: 1\n\
         \x20     proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"false\"}\n      tracing: {sampling: 10}\n\
         spec:\n  containers:\n  - name: web\n    image: docker.io/weft/demo-app:1.0\n\
         \x20   args: ['--listen', '0.0.0.0:9080', '--service', 'probed', '--version', 'v1']\n\
         \x20   ports: [{name: http, containerPort: 9080}]\n\
         \x20   readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}\n\
         \x20   livenessProbe: {tcpSocket: {port: 9080}, periodSeconds: 2}\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Warning: metadata.annotations['proxy.istio.io/config'].tracing: not acted on by Weft"
        ),
        "no warning for tracing: {stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let probed = loop {
        let pod = pods.get("probed").await.expect("pod probed");
        if ready(&pod) {
            break pod;
        }
        assert!(
            Instant::now() < deadline,
            "pod probed not Ready: {:?}\n--- /app-health/web/readyz from the visitor ---\n{:?}\n--- istio-proxy ---\n{}\n--- web ---\n{}",
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.clone()),
            http_get_in(&from, &pod_ip(&pod), 15020, "/app-health/web/readyz"),
            node.agent.logs("default", "probed", "istio-proxy"),
            node.agent.logs("default", "probed", "web")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let web = &probed.spec.as_ref().expect("spec").containers[0];
    let readiness = web
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref());
    assert_eq!(
        readiness.and_then(|h| h.path.as_deref()),
        Some("/app-health/web/readyz"),
        "{web:?}"
    );
    let liveness = web
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref());
    assert_eq!(
        liveness.and_then(|h| h.path.as_deref()),
        Some("/app-health/web/livez"),
        "{web:?}"
    );
    let spec = probed.spec.as_ref().expect("spec");
    let proxy = (spec.init_containers.iter().flatten())
        .find(|c| c.name == "istio-proxy")
        .expect("the sidecar");
    let env: BTreeMap<_, _> = (proxy.env.iter().flatten())
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["WEFT_CONCURRENCY"], "1");
    assert_eq!(env["ISTIO_META_DNS_CAPTURE"], "false");
    let init = (spec.init_containers.iter().flatten())
        .find(|c| c.name == "istio-init")
        .expect("istio-init");
    assert!(
        !init.args.iter().flatten().any(|a| a == "--redirect-dns"),
        "{:?}",
        init.args
    );
    let proxy_log = strip_ansi(&node.agent.logs("default", "probed", "istio-proxy"));
    assert!(proxy_log.contains(" workers=1 "), "{proxy_log}");
    // And STRICT is in force: the visitor's plaintext is refused now.
    eventually(
        Duration::from_secs(10),
        "plaintext refused under STRICT",
        async || (!page().contains("200 OK")).then_some(()),
    )
    .await;
    eprintln!("{:?}: done", started.elapsed());
}
