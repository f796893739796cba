//! Tests of the analyzers: the fixture with every problem (each finding with its code and
//! object, and nothing else), Istio's clean bookinfo sample (nothing), each analyzer on
//! small inline config, the metrics parser and the output formats.

use std::path::{Path, PathBuf};

use super::input::{Settings, Snapshot, add_text, from_files};
use super::mtls::{Sample, Scrape, parse_metrics};
use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analyze")
        .join(name)
}

/// Istio's samples, shared beside the work trees (never copied into the repo).
fn istio_sample(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/istio/samples/bookinfo")
        .join(path)
}

fn snapshot(yaml: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    add_text(&mut snapshot, yaml, None, "default");
    snapshot
}

/// `(code, "Kind ns/name")` of each finding, sorted.
fn codes(findings: &[Finding]) -> Vec<(&'static str, String)> {
    let mut codes: Vec<_> = findings
        .iter()
        .map(|f| (f.message.code, f.resource.to_string()))
        .collect();
    codes.sort();
    codes
}

fn plaintext(source: &str, destination: &str, value: f64) -> Sample {
    let labels = [
        ("reporter", "destination"),
        ("connection_security_policy", "none"),
        ("source_workload", source),
        ("source_workload_namespace", "shop"),
        ("destination_workload", destination),
        ("destination_workload_namespace", "shop"),
    ];
    Sample {
        name: "istio_requests_total".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

#[test]
fn the_fixture_has_every_problem_and_nothing_else() {
    let snapshot = from_files(&[fixture("problems.yaml")], "default", &Settings::default())
        .expect("fixture reads");
    let ratings = Scrape {
        namespace: "shop".into(),
        workload: "ratings-v1".into(),
        labels: [("app", "ratings"), ("version", "v1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind: "Pod".into(),
        samples: vec![plaintext("legacy-client", "ratings-v1", 12.0)],
    };
    let findings = analyze(&snapshot, &[ratings]);
    let expected = [
        ("IST0101", "VirtualService shop/ratings"),
        ("IST0101", "VirtualService shop/reviewz"),
        ("IST0101", "VirtualService shop/storefront"),
        ("IST0106", "DestinationRule shop/broken"),
        ("IST0109", "VirtualService shop/reviews"),
        ("IST0109", "VirtualService shop/reviews-canary"),
        ("IST0127", "DestinationRule shop/reviews"),
        ("WEFT0001", "PeerAuthentication shop/ratings-strict"),
        ("WEFT0003", "VirtualService shop/reviewz"),
        ("WEFT0004", "Sidecar shop/default"),
        ("WEFT0008", "DestinationRule shop/reviews"),
        ("WEFT0008", "VirtualService shop/storefront"),
    ];
    let expected: Vec<(&str, String)> = expected
        .iter()
        .map(|(code, resource)| (*code, resource.to_string()))
        .collect();
    let lines: Vec<String> = findings.iter().map(output::line).collect();
    assert_eq!(codes(&findings), expected, "{lines:#?}");
    let text = lines.join("\n");
    for wanted in [
        r#"Error [IST0101] (VirtualService shop/reviewz "#,
        r#"Referenced host not found: "reviewz""#,
        r#"Referenced host+subset in destinationrule not found: "ratings+v2""#,
        r#"Referenced gateway not found: "shop-gateway""#,
        "The VirtualServices shop/reviews,shop/reviews-canary associated with mesh gateway define the same host reviews.shop.svc.cluster.local",
        "Warning [IST0127] (DestinationRule shop/reviews ",
        r#"following labels: version=v4 (subset "v4" of reviews.shop.svc.cluster.local, which VirtualService shop/reviews routes to)"#,
        "Workload shop/ratings-v1 still receives plaintext from shop/legacy-client (12 requests",
        r#"hide "details-backup.shop.svc.cluster.local", which VirtualService shop/details routes details.shop.svc.cluster.local to"#,
        "Schema validation error: spec.host:",
        "Warning [WEFT0008] (DestinationRule shop/reviews ",
        "spec.trafficPolicy.proxyProtocol: not supported yet; ignored",
        r#"spec.gateways: gateways are not supported yet; this VirtualService (no "mesh" gateway) is ignored"#,
        "problems.yaml:",
    ] {
        assert!(text.contains(wanted), "{wanted:?} not in\n{text}");
    }
}

/// Nothing is wrong with it; its ingress Gateway is what Weft does not serve yet.
#[test]
fn clean_bookinfo_has_only_its_gateway_reported_as_unsupported() {
    let files = [
        "platform/kube/bookinfo.yaml",
        "networking/destination-rule-all.yaml",
        "networking/virtual-service-all-v1.yaml",
        "networking/bookinfo-gateway.yaml",
    ]
    .map(istio_sample);
    let snapshot = from_files(&files, "default", &Settings::default()).expect("bookinfo reads");
    assert!(snapshot.objects.len() >= 10, "{:?}", snapshot.objects.len());
    assert_eq!(snapshot.services.len(), 4);
    assert!(
        snapshot.workloads.len() >= 6,
        "{:#?} {:#?}",
        snapshot.workloads,
        snapshot.invalid
    );
    let findings = analyze(&snapshot, &[]);
    let lines: Vec<String> = findings.iter().map(output::line).collect();
    assert_eq!(
        codes(&findings),
        [
            ("WEFT0008", "Gateway default/bookinfo-gateway".to_string()),
            ("WEFT0008", "VirtualService default/bookinfo".to_string()),
        ],
        "{lines:#?}"
    );
    assert!(
        lines[0].ends_with("Gateway resources are not supported yet; ignored"),
        "{lines:#?}"
    );
}

#[test]
fn fields_weft_does_not_act_on_are_warnings_with_their_path() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec:
  host: ratings
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {zoneAwareLbSetting: {enabled: true}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh, namespace: shop}
spec:
  tracing: [{useRequestIdForTraceSampling: false}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: clean, namespace: shop}
spec:
  host: details
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 5}}}
"#;
    let findings = analyze(&snapshot(yaml), &[]);
    let lines: Vec<String> = findings.iter().map(output::line).collect();
    assert_eq!(
        lines,
        [
            "Warning [WEFT0008] (DestinationRule shop/ratings) spec.trafficPolicy.portLevelSettings[0].loadBalancer.zoneAwareLbSetting: not supported yet; ignored",
            "Warning [WEFT0008] (Telemetry shop/mesh) spec.tracing[0].useRequestIdForTraceSampling: false is not supported yet (proxies sample at random whatever the request id); ignored",
        ]
    );
}

#[test]
fn a_permissive_workload_receiving_plaintext_is_a_warning_per_pair() {
    let snapshot = snapshot(
        "apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: shop}\n\
         spec: {selector: {app: ratings}, ports: [{port: 9080}]}\n",
    );
    let scrape = Scrape {
        namespace: "shop".into(),
        workload: "ratings-v1-abc".into(),
        labels: [("app".to_string(), "ratings".to_string())].into(),
        kind: "Pod".into(),
        samples: vec![
            plaintext("productpage-v1", "ratings-v1", 3.0),
            plaintext("reviews-v2", "ratings-v1", 5.0),
            // mTLS traffic and zero counters are not plaintext findings.
            Sample {
                value: 9.0,
                labels: {
                    let mut l = plaintext("reviews-v3", "ratings-v1", 0.0).labels;
                    l.insert("connection_security_policy".into(), "mutual_tls".into());
                    l
                },
                name: "istio_requests_total".into(),
            },
            plaintext("reviews-v1", "ratings-v1", 0.0),
        ],
    };
    let findings = analyze(&snapshot, &[scrape]);
    assert_eq!(
        codes(&findings),
        [
            ("WEFT0002", "Pod shop/ratings-v1-abc".to_string()),
            ("WEFT0002", "Pod shop/ratings-v1-abc".to_string())
        ]
    );
    assert!(
        findings[0]
            .text
            .contains("from shop/productpage-v1 (3 requests)")
    );
    assert!(findings[0].text.contains("mTLS mode Permissive"));
    assert!(
        findings[1]
            .text
            .contains("from shop/reviews-v2 (5 requests)")
    );
}

#[test]
fn mtls_mode_follows_istio_precedence() {
    let snapshot = snapshot(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: ns, namespace: legacy}\nspec: {mtls: {mode: PERMISSIVE}}\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: db, namespace: legacy}\n\
         spec: {selector: {matchLabels: {app: db}}, mtls: {mode: UNSET}}\n",
    );
    let mesh = mesh::Mesh::new(&snapshot);
    let mode = |ns: &str, app: &str| {
        let labels = [("app".to_string(), app.to_string())].into();
        let (mode, policy) = mesh.mtls_mode(ns, &labels);
        (mode, policy.map(|p| p.object.name().to_string()))
    };
    use weft_api::security::MtlsMode;
    assert_eq!(
        mode("shop", "x"),
        (MtlsMode::Strict, Some("default".into()))
    );
    assert_eq!(
        mode("legacy", "x"),
        (MtlsMode::Permissive, Some("ns".into()))
    );
    // UNSET inherits the namespace's mode.
    assert_eq!(
        mode("legacy", "db"),
        (MtlsMode::Permissive, Some("ns".into()))
    );
}

#[test]
fn gateway_selectors_are_checked_only_against_the_cluster() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\n\
                metadata: {name: gw, namespace: default}\n\
                spec: {selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n";
    // Weft does not serve Gateways yet (WEFT0008); this test is about their selectors.
    let selectors = |snapshot: &Snapshot| -> Vec<Finding> {
        analyze(snapshot, &[])
            .into_iter()
            .filter(|f| f.message.code != UNSUPPORTED_CONFIG.code)
            .collect()
    };
    let mut files = snapshot(yaml);
    assert!(selectors(&files).is_empty());
    files.live = true;
    let findings = selectors(&files);
    assert_eq!(
        codes(&findings),
        [("IST0101", "Gateway default/gw".to_string())]
    );
    assert_eq!(
        findings[0].text,
        r#"Referenced selector not found: "istio=ingressgateway""#
    );
    // A gateway pod in another namespace satisfies it.
    add_text(
        &mut files,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: gw-1, namespace: istio-system, labels: {istio: ingressgateway}}\n\
         spec: {containers: [{name: istio-proxy, image: weft-proxy}]}\n",
        None,
        "default",
    );
    assert!(selectors(&files).is_empty());
}

#[test]
fn service_entries_stand_for_services_in_local_mode() {
    let snapshot = snapshot(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews}\n\
         spec: {hosts: [reviews.local], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC,\n\
         endpoints: [{address: 127.0.0.1, labels: {version: v1}}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n\
         spec: {host: reviews.local, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n\
         spec: {hosts: [reviews.local], http: [{route: [{destination: {host: reviews.local, subset: v2}}]}]}\n",
    );
    let findings = analyze(&snapshot, &[]);
    assert_eq!(
        codes(&findings),
        [("IST0127", "DestinationRule default/reviews".to_string())]
    );
}

#[test]
fn metrics_text_parses_with_escapes_and_rejects_garbage() {
    let text = "# HELP istio_requests_total x\n# TYPE istio_requests_total counter\n\
                istio_requests_total{reporter=\"destination\",source_workload=\"a\\\"b\",x=\"1,2}\"} 7 1700000000\n\
                up 1\n";
    let samples = parse_metrics(text).expect("parses");
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].labels["source_workload"], "a\"b");
    assert_eq!(samples[0].labels["x"], "1,2}");
    assert_eq!(samples[0].value, 7.0);
    assert_eq!(samples[1].name, "up");
    let error = parse_metrics("ok 1\nbroken{a=b} 1\n").expect_err("bad label");
    assert!(error.starts_with("line 2:"), "{error}");
    assert!(parse_metrics("novalue\n").is_err());
}

#[test]
fn output_formats_carry_code_level_origin_and_reference() {
    let finding = Finding::new(
        REFERENCED_RESOURCE_NOT_FOUND,
        ResourceRef::new("VirtualService", "default", "reviews"),
        r#"Referenced host not found: "reviewz""#,
    )
    .at(Some(&Origin {
        file: "vs.yaml".into(),
        line: 3,
    }));
    assert_eq!(
        output::line(&finding),
        r#"Error [IST0101] (VirtualService default/reviews vs.yaml:3) Referenced host not found: "reviewz""#
    );
    let json = output::render(&[&finding], output::Format::Json).expect("json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert_eq!(value[0]["code"], "IST0101");
    assert_eq!(value[0]["level"], "Error");
    assert_eq!(value[0]["origin"], "VirtualService default/reviews");
    assert_eq!(value[0]["reference"], "vs.yaml:3");
    let yaml = output::render(&[&finding], output::Format::Yaml).expect("yaml");
    assert!(yaml.contains("code: IST0101"), "{yaml}");
}

#[test]
fn files_are_read_recursively_and_bad_paths_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).expect("mkdir");
    std::fs::write(
        nested.join("vs.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n\
         spec: {hosts: [r], http: [{route: [{destination: {host: r}}]}]}\n",
    )
    .expect("write");
    std::fs::write(nested.join("notes.txt"), "not yaml: [").expect("write");
    let snapshot =
        from_files(&[dir.path().to_path_buf()], "shop", &Settings::default()).expect("reads");
    assert_eq!(snapshot.objects.len(), 1);
    assert_eq!(snapshot.objects[0].namespace, "shop");
    let missing = dir.path().join("missing.yaml");
    let error = from_files(std::slice::from_ref(&missing), "shop", &Settings::default())
        .expect_err("missing file")
        .to_string();
    assert!(error.contains(&missing.display().to_string()), "{error}");
}

#[test]
fn every_code_is_documented_once() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ANALYZE.md"),
    )
    .expect("docs/ANALYZE.md");
    let mut seen = std::collections::BTreeSet::new();
    for message in MESSAGES {
        assert!(seen.insert(message.code), "{} twice", message.code);
        let row = format!(
            "| {} | {} | {} |",
            message.code, message.name, message.level
        );
        assert!(doc.contains(&row), "docs/ANALYZE.md lacks the row {row:?}");
    }
}

#[test]
fn files_replace_the_clusters_objects_valid_or_not() {
    let vs = |name: &str, host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\n\
             spec: {{hosts: [{host}], http: [{{route: [{{destination: {{host: {host}}}}}]}}]}}\n"
        )
    };
    let broken = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
                  metadata: {name: dr, namespace: shop}\nspec: {subsets: [{name: v1}]}\n";
    let mut cluster = snapshot(&format!("{}---\n{broken}", vs("a", "x")));
    cluster.live = true;
    assert_eq!((cluster.objects.len(), cluster.invalid.len()), (1, 1));
    // The file fixes the rule and breaks the VirtualService.
    let files = snapshot(&format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: dr, namespace: shop}}\nspec: {{host: x}}\n---\n{}",
        vs("a", "").replace("hosts: []", "hosts: [\"\"]")
    ));
    let overlaid = cluster.overlay(files);
    assert!(overlaid.live);
    let kinds: Vec<String> = overlaid
        .objects
        .iter()
        .map(|o| o.resource().to_string())
        .collect();
    assert_eq!(kinds, ["DestinationRule shop/dr"]);
    let invalid: Vec<String> = overlaid
        .invalid
        .iter()
        .map(|i| i.resource.to_string())
        .collect();
    assert_eq!(invalid, ["VirtualService shop/a"]);
}

/// Serves `body` as the answer to every request, on a loopback port: `http://ADDR`.
async fn serve_metrics(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn local_mode_reads_metrics_addresses_and_groups_by_destination() {
    let metrics = serve_metrics(
        "istio_tcp_connections_opened_total{reporter=\"destination\",connection_security_policy=\"none\",\
         source_workload=\"batch\",source_workload_namespace=\"jobs\",destination_workload=\"db\",\
         destination_workload_namespace=\"shop\",destination_app=\"db\",destination_version=\"v1\"} 4\n\
         istio_requests_total{reporter=\"source\",connection_security_policy=\"none\",\
         source_workload=\"db\",source_workload_namespace=\"shop\",destination_workload=\"x\",\
         destination_workload_namespace=\"shop\"} 9\n",
    )
    .await;
    let scraped = mtls::scrape_addresses(
        &[metrics, "http://127.0.0.1:1".to_string()],
        std::time::Duration::from_secs(5),
    )
    .await;
    // The unreachable address is an Info finding, not a failure.
    assert_eq!(
        codes(&scraped.failures),
        [("WEFT0007", "Metrics http://127.0.0.1:1".to_string())]
    );
    let db = scraped
        .scrapes
        .iter()
        .find(|s| s.workload == "db")
        .expect("db's samples");
    assert_eq!(db.labels.get("version").map(String::as_str), Some("v1"));
    let strict = snapshot(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: db, namespace: shop}\n\
         spec: {selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}\n",
    );
    let findings = analyze(&strict, &scraped.scrapes);
    assert_eq!(
        codes(&findings),
        [("WEFT0001", "PeerAuthentication shop/db".to_string())]
    );
    assert!(
        findings[0]
            .text
            .contains("shop/db still receives plaintext from jobs/batch (4 TCP connections"),
        "{}",
        findings[0].text
    );
}

#[test]
fn a_kubernetes_object_that_does_not_parse_is_named_in_ist0106() {
    let snapshot = snapshot(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\n\
         spec: {ports: [{port: not-a-number}]}\n",
    );
    let findings = analyze(&snapshot, &[]);
    assert_eq!(
        codes(&findings),
        [("IST0106", "Service shop/reviews".to_string())]
    );
}
