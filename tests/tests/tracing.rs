//! Distributed tracing end to end: bookinfo's four apps (`weftctl demo-app --role …`, which
//! forward the trace headers as Istio's apps do) each behind its sidecar, a controller whose
//! mesh config names an OpenTelemetry (or a Zipkin) provider, and a real Jaeger receiving the
//! spans (OTLP/gRPC, or Zipkin v2 JSON). One request to productpage is one trace: a SERVER span
//! per sidecar that received a request and a CLIENT span per call, each the child of the span
//! that caused it, reported under Istio's service names (`<app>.<namespace>`), with the
//! request's `x-request-id`, Istio's and the Telemetry's tags. A caller's B3 context is
//! continued, not replaced. A workload with `disableSpanReporting` reports nothing and leaves
//! the trace whole around it.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use weft_e2e::jaeger::{Jaeger, Span, Trace};
use weft_e2e::{Controller, HttpClient, Net, Process, Sidecar, bins, eventually, write_file};

/// The apps: role, version, address index in the test's block.
const APPS: [(&str, &str, u8); 4] = [
    ("productpage", "v1", 11),
    ("details", "v1", 12),
    ("reviews", "v2", 13),
    ("ratings", "v1", 14),
];

fn services(net: Net, jaeger: &Jaeger) -> String {
    let mut yaml = String::new();
    for (app, version, n) in APPS {
        yaml.push_str(&format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {app}, namespace: default}}
spec:
  hosts: [{app}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {app}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {app}-{version}, namespace: default}}
spec:
  address: {ip}
  ports: {{http: 15006}}
  labels: {{app: {app}, version: {version}}}
---
",
            ip = net.ip(n)
        ));
    }
    // The collector, outside the mesh's sidecars (as Istio's addons are): OTLP, and Zipkin's
    // API under Istio's zipkin Service name.
    yaml.push_str(&format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: jaeger-collector, namespace: observability}}
spec:
  hosts: [jaeger-collector.observability.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 4317, name: grpc-otlp, protocol: GRPC}}]
  endpoints: [{{address: {ip}, ports: {{grpc-otlp: {otlp}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: zipkin, namespace: istio-system}}
spec:
  hosts: [zipkin.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9411, name: http-zipkin, protocol: HTTP}}]
  endpoints: [{{address: {ip}, ports: {{http-zipkin: {zipkin}}}}}]
",
        ip = jaeger.otlp.ip(),
        otlp = jaeger.otlp.port(),
        zipkin = jaeger.zipkin.port(),
    ));
    yaml
}

/// Every request is sampled, and every span gets the test's tag.
const TELEMETRY: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - randomSamplingPercentage: 100
    customTags:
      test: {literal: {value: tracing-e2e}}
";

const OTEL_MESH_CONFIG: &str = "extensionProviders:
- name: otel
  opentelemetry:
    service: observability/jaeger-collector.observability.svc.cluster.local
    port: 4317
defaultProviders:
  tracing: [otel]
";

/// Istio's Zipkin setup: the `zipkin` Service of `istio-system` on 9411.
const ZIPKIN_MESH_CONFIG: &str = "extensionProviders:
- name: zipkin
  zipkin:
    service: zipkin.istio-system.svc.cluster.local
    port: 9411
defaultProviders:
  tracing: [zipkin]
";

struct Bookinfo {
    _dir: tempfile::TempDir,
    jaeger: Jaeger,
    productpage: IpAddr,
    _controller: Controller,
    _sidecars: Vec<Sidecar>,
    _apps: Vec<Process>,
}

/// Bookinfo under `mesh_config`, with the files of `extra` in the config directory too.
async fn bookinfo(mesh_config: &str, extra: &[(&str, &str)]) -> Bookinfo {
    let net = Net::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, logs) = (dir.path().join("config"), dir.path().join("logs"));
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::create_dir_all(&logs).expect("log dir");
    let jaeger = Jaeger::start(net.ip(91), &logs).await;
    write_file(&config, "services.yaml", &services(net, &jaeger));
    write_file(&config, "telemetry.yaml", TELEMETRY);
    for (name, text) in extra {
        write_file(&config, name, text);
    }
    write_file(dir.path(), "mesh.yaml", mesh_config);
    let controller = Controller::start_with(
        net,
        &config,
        &logs,
        &[
            "--mesh-config".into(),
            dir.path().join("mesh.yaml").display().to_string(),
        ],
    )
    .await;
    let mut apps = Vec::new();
    let mut sidecars = Vec::new();
    for (app, version, n) in APPS {
        let ip = net.ip(n);
        // Each app calls the others through its own sidecar, as an HTTP proxy.
        apps.push(Process::spawn(
            &format!("app-{app}"),
            Command::new(&bins().weftctl)
                .args(["demo-app", "--role", app, "--version", version])
                .args(["--listen", &SocketAddr::new(ip, 9080).to_string()])
                .env("HTTP_PROXY", format!("http://{ip}:15001"))
                .env("HOSTNAME", format!("{app}-{version}-0")),
            &logs,
        ));
        sidecars.push(
            Sidecar::start_with(
                ip,
                &controller.xds_url(),
                &format!("{app}-{version}"),
                &format!("app={app},version={version}"),
                Some(9080),
                &logs,
                &["--trace-flush-interval".into(), "200ms".into()],
            )
            .await,
        );
    }
    Bookinfo {
        _dir: dir,
        jaeger,
        productpage: net.ip(11),
        _controller: controller,
        _sidecars: sidecars,
        _apps: apps,
    }
}

/// The trace of the request with `x-request-id`, once Jaeger has all `spans` of it.
async fn trace_of(jaeger: &Jaeger, request_id: &str, spans: usize) -> Trace {
    eventually(
        Duration::from_secs(20),
        &format!("{spans} spans of request {request_id} in Jaeger"),
        async || {
            let traces = jaeger.traces("productpage.default").await.ok()?;
            let trace = traces.into_iter().find(|t| {
                t.spans
                    .iter()
                    .any(|s| s.tag("guid:x-request-id").as_deref() == Some(request_id))
            })?;
            (trace.spans.len() >= spans).then_some(trace)
        },
    )
    .await
}

/// The product page with ratings through productpage's sidecar, once the routes reached every
/// sidecar (until then a call may fail); then one request with `x-request-id: request_id`.
async fn product_page(mesh: &Bookinfo, request_id: &str) {
    let http = HttpClient::new();
    let inbound = SocketAddr::new(mesh.productpage, 15006);
    eventually(
        Duration::from_secs(20),
        "the product page with ratings",
        async || {
            let reply = http
                .request(inbound, "GET", "productpage:9080", "/productpage", &[])
                .await
                .ok()?;
            (reply.status == 200
                && reply.body.contains("Reviews served by: reviews-v2")
                && !reply
                    .body
                    .contains("Ratings service is currently unavailable"))
            .then_some(())
        },
    )
    .await;

    let reply = http
        .request(
            inbound,
            "GET",
            "productpage:9080",
            "/productpage",
            &[("x-request-id", request_id)],
        )
        .await
        .expect("the product page");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn summary(trace: &Trace) -> Vec<String> {
    trace
        .spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} parent={:?} kind={:?}",
                trace.service(s),
                s.span_id,
                s.operation_name,
                s.parent(),
                s.tag("span.kind")
            )
        })
        .collect()
}

/// The span of `service` of `kind` whose name contains `operation`.
fn find<'t>(trace: &'t Trace, service: &str, kind: &str, operation: &str) -> &'t Span {
    trace
        .spans
        .iter()
        .find(|s| {
            trace.service(s) == service
                && s.tag("span.kind").as_deref() == Some(kind)
                && s.operation_name.contains(operation)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {kind} span of {service} ({operation}): {:#?}",
                summary(trace)
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_bookinfo_is_one_trace_in_jaeger() {
    let mesh = bookinfo(OTEL_MESH_CONFIG, &[]).await;
    product_page(&mesh, "trace-e2e-1").await;
    one_whole_trace(&mesh.jaeger, "trace-e2e-1").await;
}

/// Istio's Zipkin provider: the same trace, reported as Zipkin v2 JSON to Jaeger's Zipkin
/// receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipkin_provider_gives_the_same_trace_in_jaeger() {
    let mesh = bookinfo(ZIPKIN_MESH_CONFIG, &[]).await;
    product_page(&mesh, "trace-e2e-zipkin").await;
    one_whole_trace(&mesh.jaeger, "trace-e2e-zipkin").await;
}

/// reviews' sidecars report no span and leave the trace headers to reviews, which forwards
/// them: ratings' span is the child of productpage's call to reviews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_with_span_reporting_disabled_is_left_out_of_the_trace() {
    let telemetry = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  tracing: [{disableSpanReporting: true}]
";
    let mesh = bookinfo(OTEL_MESH_CONFIG, &[("reviews.yaml", telemetry)]).await;
    product_page(&mesh, "trace-e2e-disabled").await;
    // productpage (SERVER and its two CLIENT spans), details and ratings (SERVER).
    let trace = trace_of(&mesh.jaeger, "trace-e2e-disabled", 5).await;
    let summary = summary(&trace);
    let to_reviews = find(
        &trace,
        "productpage.default",
        "client",
        "reviews.default.svc.cluster.local:9080/*",
    );
    let ratings = find(
        &trace,
        "ratings.default",
        "server",
        "ratings.default.svc.cluster.local:9080/*",
    );
    assert_eq!(
        ratings.parent(),
        Some(to_reviews.span_id.as_str()),
        "ratings continues productpage's call to reviews: {summary:#?}"
    );
    assert!(
        trace
            .spans
            .iter()
            .all(|s| trace.service(s) != "reviews.default"),
        "{summary:#?}"
    );
    assert_eq!(trace.spans.len(), 5, "{summary:#?}");
}

/// The trace of the request `request_id`: seven spans, each the child of the span that caused
/// it, with their names, services and tags.
async fn one_whole_trace(jaeger: &Jaeger, request_id: &str) {
    // productpage (SERVER), its calls to details and reviews (CLIENT), details and reviews
    // (SERVER), reviews' call to ratings (CLIENT), ratings (SERVER).
    let trace = trace_of(jaeger, request_id, 7).await;
    let summary = summary(&trace);
    assert_eq!(trace.spans.len(), 7, "{summary:#?}");
    let find = |service: &str, kind: &str, operation: &str| find(&trace, service, kind, operation);
    let root = find("productpage.default", "server", "productpage");
    assert_eq!(
        root.parent(),
        None,
        "productpage's span is the root: {summary:#?}"
    );
    let to_details = find(
        "productpage.default",
        "client",
        "details.default.svc.cluster.local:9080/*",
    );
    let to_reviews = find(
        "productpage.default",
        "client",
        "reviews.default.svc.cluster.local:9080/*",
    );
    let details = find(
        "details.default",
        "server",
        "details.default.svc.cluster.local:9080/*",
    );
    let reviews = find(
        "reviews.default",
        "server",
        "reviews.default.svc.cluster.local:9080/*",
    );
    let to_ratings = find(
        "reviews.default",
        "client",
        "ratings.default.svc.cluster.local:9080/*",
    );
    let ratings = find(
        "ratings.default",
        "server",
        "ratings.default.svc.cluster.local:9080/*",
    );
    for (child, parent) in [
        (to_details, root),
        (to_reviews, root),
        (details, to_details),
        (reviews, to_reviews),
        (to_ratings, reviews),
        (ratings, to_ratings),
    ] {
        assert_eq!(
            child.parent(),
            Some(parent.span_id.as_str()),
            "{} ({}) is the child of {} ({}): {summary:#?}",
            child.operation_name,
            trace.service(child),
            parent.operation_name,
            trace.service(parent),
        );
    }
    for span in &trace.spans {
        assert_eq!(span.trace_id, trace.trace_id);
        assert_eq!(span.tag("guid:x-request-id").as_deref(), Some(request_id));
        assert_eq!(
            span.tag("test").as_deref(),
            Some("tracing-e2e"),
            "the Telemetry's tag"
        );
        assert_eq!(span.tag("http.status_code").as_deref(), Some("200"));
        assert_eq!(span.tag("istio.namespace").as_deref(), Some("default"));
    }
    assert_eq!(
        ratings.tag("istio.canonical_service").as_deref(),
        Some("ratings")
    );
    assert_eq!(
        reviews.tag("istio.canonical_revision").as_deref(),
        Some("v2")
    );
    assert_eq!(
        to_ratings.tag("upstream_cluster").as_deref(),
        Some("outbound|9080||ratings.default.svc.cluster.local")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_b3_context_is_continued() {
    let mesh = bookinfo(OTEL_MESH_CONFIG, &[]).await;
    let http = HttpClient::new();
    let inbound = SocketAddr::new(mesh.productpage, 15006);
    let trace_id = "463ac35c9f6413ad48485a3953bb6124";
    let caller_span = "a2fb4a1d1a96d312";
    eventually(Duration::from_secs(20), "the product page", async || {
        let reply = http
            .request(
                inbound,
                "GET",
                "productpage:9080",
                "/productpage",
                &[
                    ("x-request-id", "trace-e2e-b3"),
                    ("x-b3-traceid", trace_id),
                    ("x-b3-spanid", caller_span),
                    ("x-b3-sampled", "1"),
                ],
            )
            .await
            .ok()?;
        (reply.status == 200).then_some(())
    })
    .await;
    let trace = eventually(
        Duration::from_secs(20),
        "the caller's trace in Jaeger",
        async || {
            let trace = mesh.jaeger.trace(trace_id).await.ok()??;
            trace
                .spans
                .iter()
                .any(|s| trace.service(s) == "ratings.default")
                .then_some(trace)
        },
    )
    .await;
    let root = trace
        .spans
        .iter()
        .find(|s| {
            trace.service(s) == "productpage.default"
                && s.tag("span.kind").as_deref() == Some("server")
        })
        .expect("productpage's server span");
    assert_eq!(
        root.parent(),
        Some(caller_span),
        "the caller's span is its parent"
    );
}
