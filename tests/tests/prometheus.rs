//! A real Prometheus (Debian's package) scrapes the sidecars' `:15090/stats/prometheus` and the
//! controller's `:15014/metrics`, and the PromQL of Istio's standard dashboards and Kiali answers
//! from Weft's metrics: request rates by workload and code, latency quantiles by service, the
//! control plane's connected proxies. Prometheus' sums equal what the sidecars count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use weft_e2e::prom_text::{scrape, sum};
use weft_e2e::prometheus::{Prometheus, Series, Target};
use weft_e2e::{Mesh, MeshOptions, eventually};

const SERVICE: &str = "reviews.default.svc.cluster.local";

fn by(series: &[Series], keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    series
        .iter()
        .map(|s| {
            let key = keys
                .iter()
                .map(|k| s.labels.get(*k).cloned().unwrap_or_default())
                .collect();
            (key, s.value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_dashboard_queries_answer_from_weft() {
    let mesh = Mesh::start_with(
        &["v1", "v2"],
        &[],
        &MeshOptions {
            identity: true,
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(10)).await;
    let stats = |ip| SocketAddr::new(ip, 15090);
    let sidecars: Vec<SocketAddr> = std::iter::once(mesh.client.ip)
        .chain(mesh.sidecars.iter().map(|s| s.ip))
        .map(stats)
        .collect();
    let mut targets: Vec<Target> = sidecars
        .iter()
        .map(|addr| Target::new("envoy-stats", *addr, "/stats/prometheus"))
        .collect();
    targets.push(Target::new("istiod", mesh.controller.debug, "/metrics"));
    let prometheus = Prometheus::start(
        SocketAddr::new(mesh.net.ip(90), 19090),
        &targets,
        mesh.dir.path(),
    )
    .await;

    // Two halves, with a scrape between them: a rate needs a series' increase after Prometheus
    // first saw it.
    // (The client balances by least request: each half spreads its failures over both
    // versions, or at worst sends them all to one, so a 500 series exists and then moves.)
    let (ok, failed) = (60, 20);
    let send = || async {
        for _ in 0..ok / 2 {
            assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
        }
        for _ in 0..failed / 2 {
            assert_eq!(mesh.get("/?status=500", &[]).await.unwrap().status, 500);
        }
    };
    send().await;
    eventually(Duration::from_secs(15), "Prometheus to see every series", || async {
        let series = prometheus
            .try_query(r#"sum(istio_requests_total{reporter="destination"}) by (destination_workload, response_code)"#)
            .await
            .ok()?;
        let seen = by(&series, &["destination_workload", "response_code"]);
        let has = |w: &str, c: &str| seen.contains_key(&vec![w.to_string(), c.to_string()]);
        (has("reviews-v1", "200")
            && has("reviews-v2", "200")
            && (has("reviews-v1", "500") || has("reviews-v2", "500")))
        .then_some(())
    })
    .await;
    send().await;

    // Istio's service dashboard and Kiali: request rate by destination workload and code.
    let rates = eventually(Duration::from_secs(30), "request rates by workload and code", || async {
        let series = prometheus
            .try_query(r#"sum(rate(istio_requests_total{reporter="destination"}[1m])) by (destination_workload, response_code)"#)
            .await
            .ok()?;
        let rates = by(&series, &["destination_workload", "response_code"]);
        let key = |w: &str, c: &str| vec![w.to_string(), c.to_string()];
        let moving = |w, c| rates.get(&key(w, c)).is_some_and(|r| *r > 0.0);
        (moving("reviews-v1", "200")
            && moving("reviews-v2", "200")
            && (moving("reviews-v1", "500") || moving("reviews-v2", "500")))
        .then_some(rates)
    })
    .await;
    assert!(
        rates
            .keys()
            .all(|k| k[0].starts_with("reviews-v") && (k[1] == "200" || k[1] == "500")),
        "{rates:?}"
    );

    // Prometheus' totals are the sidecars' own, and the failures are exactly those sent.
    let totals = eventually(Duration::from_secs(15), "Prometheus' totals to catch up", || async {
        let mut direct = 0.0;
        for addr in &sidecars[1..] {
            direct += sum(&scrape(*addr, "/stats/prometheus").await?, "istio_requests_total", &[("reporter", "destination")]);
        }
        let series = prometheus
            .try_query(r#"sum(istio_requests_total{reporter="destination"}) by (destination_workload, response_code)"#)
            .await
            .ok()?;
        let totals = by(&series, &["destination_workload", "response_code"]);
        (totals.values().sum::<f64>() == direct).then_some(totals)
    })
    .await;
    let failures: f64 = totals
        .iter()
        .filter(|(k, _)| k[1] == "500")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failures, f64::from(failed), "{totals:?}");
    assert!(
        totals.values().sum::<f64>() >= f64::from(ok + failed),
        "{totals:?}"
    );
    // The client's sidecar reports the same requests as their source.
    let source = prometheus
        .query(r#"sum(istio_requests_total{reporter="source", source_workload="client", response_code="500"})"#)
        .await;
    assert_eq!(source.first().map(|s| s.value), Some(f64::from(failed)));

    // Istio's mesh dashboard: p99 latency by service, from the duration histogram's buckets.
    let p99 = prometheus
        .query("histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[1m])) by (le, destination_service))")
        .await;
    let reviews = p99
        .iter()
        .find(|s| s.labels.get("destination_service").map(String::as_str) == Some(SERVICE))
        .unwrap_or_else(|| panic!("no p99 for {SERVICE}: {p99:?}"));
    assert!(
        reviews.value.is_finite() && reviews.value > 0.0 && reviews.value <= 1000.0,
        "p99 of a loopback request in ms: {}",
        reviews.value
    );
    // mTLS as the security dashboards see it.
    let mtls = prometheus
        .query(
            r#"sum(istio_requests_total{reporter="destination"}) by (connection_security_policy)"#,
        )
        .await;
    assert_eq!(
        by(&mtls, &["connection_security_policy"])
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec![vec!["mutual_tls".to_string()]]
    );

    // The control plane dashboard: the three sidecars connected, and pushes made.
    let xds = prometheus.query("sum(pilot_xds)").await;
    assert_eq!(xds.first().map(|s| s.value), Some(3.0), "{xds:?}");
    let pushes = prometheus.query("sum(pilot_xds_pushes)").await;
    assert!(pushes.first().is_some_and(|s| s.value > 0.0), "{pushes:?}");
}
