//! The controller's `/metrics` (istiod's names) with real proxies: connected proxies, pushes
//! by type, and a config change's convergence once every proxy ACKed it; the CA's expiry; and
//! the admission webhooks' calls, posted over HTTPS to the real controller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_e2e::{Controller, Mesh, Net, eventually, split_vs, write_file};

/// The value of the sample line `name` (with its labels, as exposed) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_metrics_count_proxies_pushes_and_convergence() {
    let mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let client = weft_e2e::HttpClient::new();
    let url = format!("http://{}/metrics", mesh.controller.debug);
    let scrape = || async { client.get_url(&url).await.ok().map(|r| r.body) };

    // The client sidecar and the two reviews sidecars.
    let text = eventually(Duration::from_secs(10), "pilot_xds 3", || async {
        scrape()
            .await
            .filter(|t| sample(t, "pilot_xds") == Some(3.0))
    })
    .await;
    for kind in ["cds", "eds", "lds", "rds"] {
        let pushes = sample(&text, &format!("pilot_xds_pushes{{type=\"{kind}\"}}"));
        assert!(
            pushes.is_some_and(|n| n >= 3.0),
            "{kind}: {pushes:?}\n{text}"
        );
    }
    assert!(text.contains("# TYPE pilot_xds_pushes counter"), "{text}");
    // The CA (in memory here), and the webhooks' metrics whether or not a webhook is served.
    let now = unix_now();
    let root_end = sample(&text, "citadel_server_root_cert_expiry_timestamp").expect("root expiry");
    let chain_end = sample(&text, "citadel_server_cert_chain_expiry_timestamp").expect("chain");
    assert!(
        root_end > now + 300.0 * 86400.0,
        "root expiry {root_end}, now {now}"
    );
    assert!(chain_end <= root_end, "chain {chain_end}, root {root_end}");
    let root_left = sample(&text, "citadel_server_root_cert_expiry_seconds").expect("seconds");
    assert!((root_left - (root_end - now)).abs() < 60.0, "{root_left}");
    assert!(sample(&text, "citadel_server_cert_chain_expiry_seconds").is_some_and(|s| s > 0.0));
    // Families with labels show once they have a sample (the webhook test below); these
    // have none and show at zero.
    for family in [
        "# TYPE sidecar_injection_requests counter",
        "# TYPE sidecar_injection_success counter",
        "# TYPE sidecar_injection_skip counter",
        "# TYPE sidecar_injection_failure counter",
        "# TYPE sidecar_injection_time_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == family),
            "no {family:?} in\n{text}"
        );
    }
    assert_eq!(sample(&text, "sidecar_injection_requests_total"), Some(0.0));
    let converged_before =
        sample(&text, "pilot_proxy_convergence_time_count").expect("convergence histogram");

    // A route change reaches the client sidecar (and RDS of every proxy that has the
    // route): each proxy that ACKs it adds a convergence sample.
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v2", 100)]),
    );
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(10))
        .await;
    let text = eventually(Duration::from_secs(10), "a convergence sample", || async {
        scrape().await.filter(|t| {
            sample(t, "pilot_proxy_convergence_time_count").is_some_and(|n| n > converged_before)
        })
    })
    .await;
    assert_eq!(
        sample(&text, "pilot_total_xds_rejects{type=\"rds\"}"),
        None,
        "nothing was rejected:\n{text}"
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// One HTTPS request to the webhook, trusting `root` (the CA's root, which issued the
/// webhook's certificate); the status code and body.
async fn webhook_call(
    addr: SocketAddr,
    root: &std::path::Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).expect("root file") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the webhook's certificate chains to the CA's root");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(body).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply))
        .await
        .expect("a reply within 10s")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply).to_string();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

fn validation_review(operation: &str, weights: (i32, i32)) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-1", "operation": operation, "namespace": "default", "name": "reviews",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "userInfo": {},
            "object": {
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"hosts": ["reviews"], "http": [{"route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": weights.0},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": weights.1},
                ]}]},
            },
        },
    })
}

fn pod_review(annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-2", "operation": "CREATE", "namespace": "shop", "name": "",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"generateName": "web-", "annotations": annotations},
                       "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_calls_and_ca_expiry_on_metrics() {
    let net = Net::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, logs, ca) = (
        dir.path().join("config"),
        dir.path().join("logs"),
        dir.path().join("ca"),
    );
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::create_dir_all(&logs).expect("log dir");
    let webhook = SocketAddr::new(net.ip(1), 15017);
    let controller = Controller::start_with(
        net,
        &config,
        &logs,
        &[
            "--ca-dir".into(),
            ca.display().to_string(),
            "--webhook-cert-from-ca".into(),
            "--webhook-address".into(),
            webhook.to_string(),
        ],
    )
    .await;
    let root = ca.join("root-cert.pem");
    let call = |method: &'static str, path: &'static str, body: Vec<u8>| {
        let root = root.clone();
        async move { webhook_call(webhook, &root, method, path, &body).await }
    };
    let json = |value: Value| serde_json::to_vec(&value).expect("json");

    let (status, body) = call(
        "POST",
        "/validate",
        json(validation_review("CREATE", (50, 50))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""allowed":true"#), "{body}");
    for _ in 0..2 {
        let (status, body) = call(
            "POST",
            "/validate",
            json(validation_review("UPDATE", (0, 0))),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("total destination weight = 0"), "{body}");
    }
    let (status, _) = call("POST", "/validate", b"{not a review".to_vec()).await;
    assert_eq!(status, 400);
    let (status, body) = call("POST", "/inject", json(pod_review(json!({})))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""patch":"#), "{body}");
    let (status, _) = call(
        "POST",
        "/inject",
        json(pod_review(json!({"sidecar.istio.io/inject": "false"}))),
    )
    .await;
    assert_eq!(status, 200);
    let bad_port = json!({"traffic.sidecar.istio.io/includeInboundPorts": "http"});
    let (status, body) = call("POST", "/inject", json(pod_review(bad_port))).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""allowed":false"#), "{body}");

    let client = weft_e2e::HttpClient::new();
    let url = format!("http://{}/metrics", controller.debug);
    let text = client.get_url(&url).await.expect("/metrics").body;
    let vs = r#"{group="networking.istio.io",version="v1",resource="virtualservices""#;
    for (name, value) in [
        (format!("galley_validation_passed{vs}}}"), 1.0),
        (format!(r#"galley_validation_failed{vs},reason="invalid_resource"}}"#), 2.0),
        (r#"galley_validation_failed{group="",version="",resource="",reason="yaml_decode_error"}"#.to_string(), 1.0),
        (r#"galley_validation_http_error{status="400"}"#.to_string(), 1.0),
        (r#"weft_webhook_request_duration_seconds_count{webhook="validate"}"#.to_string(), 4.0),
        ("sidecar_injection_requests_total".to_string(), 3.0),
        ("sidecar_injection_success_total".to_string(), 1.0),
        ("sidecar_injection_skip_total".to_string(), 1.0),
        ("sidecar_injection_failure_total".to_string(), 1.0),
        ("sidecar_injection_time_seconds_count".to_string(), 3.0),
        (r#"weft_webhook_request_duration_seconds_count{webhook="inject"}"#.to_string(), 3.0),
    ] {
        assert_eq!(sample(&text, &name), Some(value), "{name}\n{text}");
    }

    // The expiry is the CA's root, as written to its directory.
    let pem = std::fs::read(&root).expect("root-cert.pem");
    let der = weft_identity::cert::certs_from_pem("root", &pem).expect("pem");
    let info = weft_identity::CertInfo::parse("root", &der[0]).expect("root");
    let not_after = info
        .not_after
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert_eq!(
        sample(&text, "citadel_server_root_cert_expiry_timestamp"),
        Some(not_after)
    );
    assert!(
        not_after > unix_now(),
        "the root expires in the future: {not_after}"
    );
}
