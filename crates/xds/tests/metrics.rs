//! The ADS server's metrics (istiod's names), driven by raw requests over an in-process
//! gRPC stream (paused time).

mod common;

use std::time::Duration;

use prometheus_client::registry::Registry;
use weft_xds::type_url::{CLUSTER, LISTENER};

use common::*;

fn metrics_text(harness: &ServerHarness) -> String {
    let mut registry = Registry::default();
    harness.server.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

/// Waits until the metrics hold `line` (the server applies requests asynchronously).
async fn wait_metric(harness: &ServerHarness, line: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics_text(harness);
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {line:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn has(harness: &ServerHarness, line: &str) -> bool {
    metrics_text(harness).lines().any(|l| l == line)
}

#[tokio::test(start_paused = true)]
async fn pushes_rejects_connections_and_convergence_are_counted() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    stream.subscribe(LISTENER, &[]);
    let lds = stream.next().await;
    stream.ack(&cds, &[]);
    stream.ack(&lds, &[]);
    wait_metric(&harness, "pilot_xds 1").await;
    wait_metric(&harness, r#"pilot_xds_pushes{type="cds"} 1"#).await;
    wait_metric(&harness, r#"pilot_xds_pushes{type="lds"} 1"#).await;
    assert!(has(&harness, "# TYPE pilot_xds_pushes counter"));
    assert!(
        metrics_text(&harness)
            .lines()
            .any(|l| l.starts_with("pilot_xds_push_time_count{") && l.contains(r#"type="cds""#)),
        "generation time observed per type"
    );
    // The first responses of a stream are not a config change: no convergence yet.
    assert!(has(&harness, "pilot_proxy_convergence_time_count 0"));

    // A change to clusters and listeners converges once the proxy ACKed both.
    let changed = |clusters| {
        base_snapshot()
            .with(CLUSTER, clusters)
            .with(LISTENER, vec![listener("virtualOutbound", "other")])
    };
    harness.publish(changed(vec![cluster("a"), cluster("c")]));
    let first = stream.next().await;
    let second = stream.next().await;
    stream.ack(&first, &[]);
    wait_metric(&harness, r#"pilot_xds_pushes{type="lds"} 2"#).await;
    wait_metric(&harness, r#"pilot_xds_pushes{type="cds"} 2"#).await;
    harness
        .wait_status("the first ACK", |s| {
            s.first().is_some_and(|p| {
                p.types.iter().any(|t| {
                    t.type_url == first.type_url
                        && t.acked_version.as_deref() == Some(first.version_info.as_str())
                })
            })
        })
        .await;
    assert!(
        has(&harness, "pilot_proxy_convergence_time_count 0"),
        "one of two ACKs is not convergence"
    );
    stream.ack(&second, &[]);
    wait_metric(&harness, "pilot_proxy_convergence_time_count 1").await;

    // A rejected push is counted by type and does not converge.
    harness.publish(changed(vec![cluster("bad")]));
    let rejected = stream.next().await;
    assert_eq!(rejected.type_url, CLUSTER);
    stream.nack(&rejected, &first.version_info, "cluster bad: unsupported");
    wait_metric(&harness, r#"pilot_total_xds_rejects{type="cds"} 1"#).await;
    // The next change starts the clock again and converges on its own ACK.
    harness.publish(changed(vec![cluster("fixed")]));
    let fixed = stream.next().await;
    assert!(has(&harness, "pilot_proxy_convergence_time_count 1"));
    stream.ack(&fixed, &[]);
    wait_metric(&harness, "pilot_proxy_convergence_time_count 2").await;

    drop(stream);
    wait_metric(&harness, "pilot_xds 0").await;
}

/// Convergence is measured from the source's event, not from the push: a change the source saw
/// two seconds before the generator reached the stream lands in the 3 s bucket.
#[tokio::test(start_paused = true)]
async fn convergence_counts_from_the_source_event() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    stream.ack(&cds, &[]);
    wait_metric(&harness, r#"pilot_xds_pushes{type="cds"} 1"#).await;
    let seen = std::time::Instant::now()
        .checked_sub(Duration::from_secs(2))
        .expect("two seconds after boot");
    let mut changed = base_snapshot().with(CLUSTER, vec![cluster("z")]);
    changed.changed_at = Some(seen);
    harness.publish(changed);
    let pushed = stream.next().await;
    stream.ack(&pushed, &[]);
    wait_metric(&harness, "pilot_proxy_convergence_time_count 1").await;
    assert!(has(
        &harness,
        r#"pilot_proxy_convergence_time_bucket{le="1.0"} 0"#
    ));
    assert!(has(
        &harness,
        r#"pilot_proxy_convergence_time_bucket{le="3.0"} 1"#
    ));
    let sum = metrics_text(&harness)
        .lines()
        .find_map(|l| l.strip_prefix("pilot_proxy_convergence_time_sum "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a sum");
    assert!(sum >= 2.0, "measured from the event: {sum}");
}
