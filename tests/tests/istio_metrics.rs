//! Istio's standard metrics end to end: real controller, real sidecars speaking mutual TLS,
//! requests with known outcomes, and the sidecars' `:15090/stats/prometheus`. Counting is
//! exact on both reporters, and the labels are Istio's: workloads from each side's metadata
//! (exchanged in `x-envoy-peer-metadata`), principals, the destination service from the
//! controller's cluster metadata, codes, flags and the connection's security.

use std::net::SocketAddr;
use std::time::Duration;

use weft_e2e::prom_text::{Sample, scrape, select, sum};
use weft_e2e::{Mesh, MeshOptions, eventually};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
";

const REQUESTS: &str = "istio_requests_total";
const SERVICE: &str = "reviews.default.svc.cluster.local";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
const REVIEWS_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// The labels both reporters give a request from the client to reviews-v1.
fn between(reporter: &'static str, code: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("reporter", reporter),
        ("source_workload", "client"),
        ("source_workload_namespace", "default"),
        ("source_app", "client"),
        ("source_canonical_service", "client"),
        ("source_canonical_revision", "latest"),
        ("source_principal", CLIENT_ID),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_app", "reviews"),
        ("destination_version", "v1"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_principal", REVIEWS_ID),
        ("destination_service", SERVICE),
        ("destination_service_name", SERVICE),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", code),
        ("response_flags", "-"),
        (
            "connection_security_policy",
            if reporter == "source" {
                "unknown"
            } else {
                "mutual_tls"
            },
        ),
    ]
}

/// Reviews v1 and the client, sidecars speaking mutual TLS, routes in place; `controller`:
/// more flags for the controller.
async fn mesh(controller: &[String]) -> Mesh {
    let mesh = Mesh::start_with(
        &["v1"],
        &[("reviews-vs.yaml", VS)],
        &MeshOptions {
            identity: true,
            controller: controller.to_vec(),
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(10)).await;
    mesh
}

async fn stats(ip: std::net::IpAddr) -> Vec<Sample> {
    eventually(Duration::from_secs(5), "the stats port", || {
        scrape(SocketAddr::new(ip, 15090), "/stats/prometheus")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_exactly_on_both_reporters_with_istios_labels() {
    let mesh = mesh(&[]).await;
    let (client, server) = (mesh.client.ip, mesh.sidecars[0].ip);
    // Both reporters have recorded the requests that found the routes.
    let ok_source = &between("source", "200");
    let ok_destination = &between("destination", "200");
    let before = eventually(Duration::from_secs(5), "both reporters agree", || async {
        let (c, s) = (stats(client).await, stats(server).await);
        let (a, b) = (
            sum(&c, REQUESTS, ok_source),
            sum(&s, REQUESTS, ok_destination),
        );
        (a > 0.0 && a == b).then_some(a)
    })
    .await;

    let (ok, teapot, faulted, unrouted) = (20, 7, 5, 3);
    for _ in 0..ok {
        assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
    }
    for _ in 0..teapot {
        assert_eq!(mesh.get("/?status=418", &[]).await.unwrap().status, 418);
    }
    for _ in 0..faulted {
        assert_eq!(mesh.get("/fault", &[]).await.unwrap().status, 503);
    }
    for _ in 0..unrouted {
        let reply = mesh
            .http
            .request(mesh.client.outbound(), "GET", "nowhere:9080", "/", &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 404);
    }

    let total = ok + teapot + faulted + unrouted;
    let (c, s) = eventually(Duration::from_secs(5), "every request recorded", || async {
        let (c, s) = (stats(client).await, stats(server).await);
        let source_total = sum(&c, REQUESTS, &[("reporter", "source")]);
        let destination_total = sum(&s, REQUESTS, &[("reporter", "destination")]);
        (source_total == before + f64::from(total)
            && destination_total == before + f64::from(ok + teapot))
        .then_some((c, s))
    })
    .await;

    // 200 and 418: on both reporters, with every label of both sides.
    assert_eq!(sum(&c, REQUESTS, ok_source), before + f64::from(ok));
    assert_eq!(sum(&s, REQUESTS, ok_destination), before + f64::from(ok));
    assert_eq!(
        sum(&c, REQUESTS, &between("source", "418")),
        f64::from(teapot)
    );
    assert_eq!(
        sum(&s, REQUESTS, &between("destination", "418")),
        f64::from(teapot)
    );
    // The fault's abort never left the client's sidecar: the source reports it, flagged FI,
    // for the route's service; the destination never saw it.
    assert_eq!(
        sum(
            &c,
            REQUESTS,
            &[
                ("reporter", "source"),
                ("response_code", "503"),
                ("response_flags", "FI"),
                ("destination_service", SERVICE),
                ("destination_workload", "unknown"),
            ]
        ),
        f64::from(faulted)
    );
    assert_eq!(sum(&s, REQUESTS, &[("response_code", "503")]), 0.0);
    // No route: NR, to no known service.
    assert_eq!(
        sum(
            &c,
            REQUESTS,
            &[
                ("reporter", "source"),
                ("response_code", "404"),
                ("response_flags", "NR"),
                ("destination_service", "unknown"),
            ]
        ),
        f64::from(unrouted)
    );
    // The client's sidecar reports only as the source, the server's only as the destination.
    assert_eq!(sum(&c, REQUESTS, &[("reporter", "destination")]), 0.0);
    assert_eq!(sum(&s, REQUESTS, &[("reporter", "source")]), 0.0);

    // The admin's `/stats` (Envoy's JSON shape) lists the same series with the same counts.
    let admin = SocketAddr::new(server, 15000);
    let reply = mesh
        .http
        .request(
            admin,
            "GET",
            &admin.to_string(),
            "/stats?filter=%5Eistio_requests_total&usedonly&format=json",
            &[],
        )
        .await
        .expect("/stats");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let listed: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let stats = listed["stats"].as_array().expect("stats");
    assert!(!stats.is_empty(), "{}", reply.body);
    let total: f64 = stats
        .iter()
        .map(|s| {
            assert!(
                s["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("istio_requests_total{")),
                "{s}"
            );
            s["value"].as_f64().expect("a number")
        })
        .sum();
    assert_eq!(total, sum(&s, REQUESTS, &[]));

    // The histograms count the same requests, and the sizes are real.
    for (samples, labels) in [(&c, ok_source), (&s, ok_destination)] {
        for histogram in [
            "istio_request_duration_milliseconds",
            "istio_request_bytes",
            "istio_response_bytes",
        ] {
            assert_eq!(
                sum(samples, &format!("{histogram}_count"), labels),
                before + f64::from(ok),
                "{histogram}"
            );
            let inf: Vec<(&str, &str)> = labels.iter().copied().chain([("le", "+Inf")]).collect();
            assert_eq!(
                sum(samples, &format!("{histogram}_bucket"), &inf),
                before + f64::from(ok),
                "{histogram} +Inf bucket"
            );
        }
        assert!(sum(samples, "istio_request_bytes_sum", labels) > 0.0);
        assert!(sum(samples, "istio_response_bytes_sum", labels) > 0.0);
    }
    // The client never sees the exchange: the response's metadata was taken off by its sidecar.
    let reply = mesh.get("/", &[]).await.unwrap();
    assert!(
        !reply.headers.contains_key("x-envoy-peer-metadata")
            && !reply.headers.contains_key("x-envoy-peer-metadata-id"),
        "{:?}",
        reply.headers
    );
    // Every series carries Istio's full label set.
    let one = select(&c, REQUESTS, &[]).next().expect("a series");
    assert_eq!(one.labels.len(), 25, "{:?}", one.labels);
}

/// A Telemetry applied while the mesh runs: the server side's request count loses
/// `response_code`, the client side's gains the request's method; the other metrics keep
/// their labels.
const TELEMETRY: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      tagOverrides: {response_code: {operation: REMOVE}}
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides: {request_method: {value: request.method}}
    - match: {metric: RESPONSE_SIZE, mode: CLIENT}
      disabled: true
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetrys_metric_overrides_reach_both_sidecars_while_they_run() {
    let mesh = mesh(&[]).await;
    let (client, server) = (mesh.client.ip, mesh.sidecars[0].ip);
    weft_e2e::write_file(&mesh.config_dir(), "telemetry.yaml", TELEMETRY);
    // The new settings are in place once a request is counted under them on both sides.
    let method = [("reporter", "source"), ("request_method", "GET")];
    eventually(Duration::from_secs(10), "the overrides applied", || async {
        assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
        let (c, s) = (stats(client).await, stats(server).await);
        let server_applied = s
            .iter()
            .any(|x| x.name == REQUESTS && !x.labels.contains_key("response_code"));
        (sum(&c, REQUESTS, &method) > 0.0 && server_applied).then_some(())
    })
    .await;
    let without_code = |s: &[Sample]| -> f64 {
        s.iter()
            .filter(|x| x.name == REQUESTS && !x.labels.contains_key("response_code"))
            .map(|x| x.value)
            .sum()
    };
    let count = |s: &[Sample], name: &str| -> f64 { sum(s, name, &[]) };
    let (c0, s0) = (stats(client).await, stats(server).await);
    let n = 9;
    for _ in 0..n {
        assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
    }
    let n = f64::from(n);
    eventually(Duration::from_secs(5), "the requests counted", || async {
        let (c, s) = (stats(client).await, stats(server).await);
        (sum(&c, REQUESTS, &method) == sum(&c0, REQUESTS, &method) + n
            && without_code(&s) == without_code(&s0) + n)
            .then_some(())
    })
    .await;
    let (c, s) = (stats(client).await, stats(server).await);
    // Only the request count changed: the server's duration histogram keeps the code.
    let duration = "istio_request_duration_milliseconds_count";
    assert_eq!(
        sum(&s, duration, &[("response_code", "200")]),
        count(&s0, duration) + n
    );
    assert!(
        s.iter()
            .filter(|x| x.name == duration)
            .all(|x| x.labels.contains_key("response_code"))
    );
    // The client's response sizes are no longer recorded; the server's still are.
    assert_eq!(
        count(&c, "istio_response_bytes_count"),
        count(&c0, "istio_response_bytes_count"),
        "the client's response sizes stopped"
    );
    assert_eq!(
        count(&s, "istio_response_bytes_count"),
        count(&s0, "istio_response_bytes_count") + n
    );
}

/// The mesh config is read again while the controller runs (as istiod watches its
/// ConfigMap): a mesh whose default metrics providers are none records nothing; once the file
/// names `prometheus` again, both sidecars record, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_mesh_config_reaches_the_sidecars_without_a_restart() {
    let dir = weft_e2e::TempDir::new().expect("temp dir");
    let mesh_file = dir.path().join("mesh.yaml");
    weft_e2e::write_file(dir.path(), "mesh.yaml", "defaultProviders: {metrics: []}\n");
    let mesh = mesh(&["--mesh-config".into(), mesh_file.display().to_string()]).await;
    let (client, server) = (mesh.client.ip, mesh.sidecars[0].ip);
    for _ in 0..3 {
        assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
    }
    let (c, s) = (stats(client).await, stats(server).await);
    assert_eq!(
        sum(&c, REQUESTS, &[]),
        0.0,
        "no metrics provider: nothing recorded"
    );
    assert_eq!(sum(&s, REQUESTS, &[]), 0.0);

    weft_e2e::write_file(
        dir.path(),
        "mesh.yaml",
        "defaultProviders: {metrics: [prometheus]}\n",
    );
    eventually(Duration::from_secs(15), "both sidecars record", || async {
        assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
        let (c, s) = (stats(client).await, stats(server).await);
        (sum(&c, REQUESTS, &[("reporter", "source")]) > 0.0
            && sum(&s, REQUESTS, &[("reporter", "destination")]) > 0.0)
            .then_some(())
    })
    .await;
    let log = mesh.controller.process.log();
    assert!(log.contains("mesh config changed"), "{log}");
}
