//! Locality load balancing end to end: a real controller and sidecars, reviews v1 in the
//! client's zone, v2 elsewhere in its region, v3 in another region (WorkloadEntry
//! `locality`), the client sidecar started with `--locality`.
//!
//! - failover (the mesh default with outlier detection): everything goes to the client's zone;
//!   with v1 failing and ejected, to the next priority (v2, never v3); when v1 answers again
//!   and its ejection ends, back to v1;
//! - `distribute`: the client's requests spread over the localities by the given weights.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_e2e::{Mesh, MeshOptions, REVIEWS_WITHOUT_RETRIES, eventually};

fn options(traffic_policy: &str) -> MeshOptions {
    MeshOptions {
        traffic_policy: Some(traffic_policy.into()),
        localities: ["r1/z1/s1", "r1/z2/s1", "r2/z1/s1"]
            .map(String::from)
            .to_vec(),
        proxy: ["--locality", "r1/z1/s1"].map(String::from).to_vec(),
        ..Default::default()
    }
}

/// Which version answered each of `n` requests (`failed` for anything but a 200).
async fn versions(mesh: &Mesh, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let key = match mesh.get("/", &[]).await {
            Ok(reply) if reply.status.is_success() => reply.version.unwrap_or_default(),
            _ => "failed".to_string(),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_zone_fails_over_to_the_next_priority_and_back() {
    let mut mesh = Mesh::start_with(
        &["v1", "v2", "v3"],
        &[("reviews-vs.yaml", REVIEWS_WITHOUT_RETRIES)],
        &options(
            "{outlierDetection: {consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 2s, maxEjectionPercent: 100}}",
        ),
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    // Healthy: the client's own zone takes everything.
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let healthy = versions(&mesh, 200).await;
    assert_eq!(healthy.get("v1"), Some(&200), "{healthy:?}");

    // v1 fails: two 500s eject it, and the same region's zone (P1) takes over; the other
    // region (P2) gets nothing while P1 is healthy.
    mesh.restart_app(0, &["--fail-ratio", "1", "--fail-status", "500"])
        .await;
    eventually(Duration::from_secs(10), "v2 to take over", || async {
        let got = versions(&mesh, 20).await;
        (got.get("v2") == Some(&20)).then_some(())
    })
    .await;
    let failed_over = versions(&mesh, 300).await;
    assert_eq!(failed_over.get("v2"), Some(&300), "{failed_over:?}");

    // v1 answers again: when its ejection ends, the first requests succeed and it keeps P0.
    mesh.restart_app(0, &[]).await;
    eventually(
        Duration::from_secs(10),
        "v1 to take its traffic back",
        || async {
            let got = versions(&mesh, 20).await;
            (got.get("v1") == Some(&20)).then_some(())
        },
    )
    .await;
    let back = versions(&mesh, 200).await;
    assert_eq!(back.get("v1"), Some(&200), "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribute_spreads_by_locality_weight() {
    let mesh = Mesh::start_with(
        &["v1", "v2", "v3"],
        &[("reviews-vs.yaml", REVIEWS_WITHOUT_RETRIES)],
        &options(
            "{loadBalancer: {localityLbSetting: {distribute: [{from: 'r1/z1/*', to: {'r1/z1/*': 70, 'r2/*': 30}}]}}}",
        ),
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    eventually(Duration::from_secs(10), "v3 to get a share", || async {
        let got = versions(&mesh, 20).await;
        got.contains_key("v3").then_some(())
    })
    .await;
    let n = 2000;
    let got = versions(&mesh, n).await;
    let share = |v: &str| got.get(v).copied().unwrap_or(0) as f64 * 100.0 / n as f64;
    // r1/z2 (v2) is in no `to`: it takes nothing.
    assert_eq!(got.get("v2"), None, "{got:?}");
    assert!(
        (share("v1") - 70.0).abs() <= 4.0,
        "v1 takes 70 % ± 4: {got:?}"
    );
    assert!(
        (share("v3") - 30.0).abs() <= 4.0,
        "v3 takes 30 % ± 4: {got:?}"
    );
}
