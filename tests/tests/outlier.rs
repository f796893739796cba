//! Outlier detection end to end: real controller and sidecars, three reviews endpoints of which
//! some answer 500 to everything (`weftctl demo-app --fail-ratio 1 --fail-status 500`). The
//! client sidecar ejects them, lets them back after `baseEjectionTime` (twice as long the second
//! time), and never ejects more than `maxEjectionPercent` allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weft_e2e::{App, Mesh, MeshOptions, REVIEWS_WITHOUT_RETRIES, eventually};

const FAIL: [&str; 4] = ["--fail-ratio", "1", "--fail-status", "500"];

/// Requests from `workers` clients until `stop`; counts successes and failures.
fn background_load(
    mesh: &Mesh,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, via) = (mesh.http.clone(), mesh.client.outbound());
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match http.request(via, "GET", "reviews:9080", "/", &[]).await {
                    Ok(r) if r.status.is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    (ok, failed, tasks)
}

/// The failing app's request count over time: the spans in which it got no request (its
/// ejections), as (start, length), measured by polling its counter every 20 ms for `watch`.
async fn ejections(app: &App, watch: Duration) -> Vec<(Duration, Duration)> {
    let start = Instant::now();
    let mut spans = Vec::new();
    let mut last = app.stats().await["total"];
    let mut quiet_since: Option<Instant> = None;
    while start.elapsed() < watch {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = app.stats().await["total"];
        match (now == last, quiet_since) {
            (true, None) => quiet_since = Some(Instant::now()),
            (false, Some(since)) => {
                let length = since.elapsed();
                // Gaps of a few polls are just the load's rhythm, not ejections.
                if length > Duration::from_millis(300) {
                    spans.push((since - start, length));
                }
                quiet_since = None;
            }
            _ => {}
        }
        last = now;
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_returns_and_is_ejected_twice_as_long() {
    let mut mesh = Mesh::start_with(
        &["v1", "v2", "v3"],
        &[("reviews-vs.yaml", REVIEWS_WITHOUT_RETRIES)],
        &MeshOptions {
            traffic_policy: Some(
                "{outlierDetection: {consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 1500ms, maxEjectionPercent: 34}}"
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    mesh.restart_app(2, &FAIL).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = background_load(&mesh, 4, stop.clone());
    // The first ejection comes after three 500s; from the first interval on, requests succeed.
    eventually(Duration::from_secs(5), "the first ejection", || async {
        (failed.load(Ordering::Relaxed) >= 3).then_some(())
    })
    .await;
    let spans = ejections(&mesh.apps[2], Duration::from_secs(6)).await;
    let (ok_then, failed_then) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load worker");
    }
    eprintln!("ejections (start, length): {spans:?}; {ok_then} ok, {failed_then} failed");
    // The ejection in force when watching began is cut short; the next ones are whole: a
    // return after baseEjectionTime (+ up to one interval), then twice as long.
    let whole: Vec<Duration> = spans.iter().skip(1).map(|(_, len)| *len).collect();
    assert!(
        !whole.is_empty(),
        "the endpoint came back and was ejected again: {spans:?}"
    );
    assert!(
        whole[0] >= Duration::from_millis(2800) && whole[0] <= Duration::from_millis(3500),
        "a second ejection lasts 2 × 1.5 s (+ an interval): {spans:?}"
    );
    let first = spans[0].1;
    assert!(
        first <= Duration::from_millis(1800),
        "the first ejection lasts 1.5 s (+ an interval): {spans:?}"
    );
    let total = ok_then + failed_then;
    assert!(
        ok_then * 100 >= total * 99,
        "{ok_then} of {total} succeeded: under 99 %"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_holds() {
    let mut mesh = Mesh::start_with(
        &["v1", "v2", "v3"],
        &[("reviews-vs.yaml", REVIEWS_WITHOUT_RETRIES)],
        &MeshOptions {
            traffic_policy: Some(
                "{outlierDetection: {consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 30s, maxEjectionPercent: 34}}"
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    mesh.restart_app(1, &FAIL).await;
    mesh.restart_app(2, &FAIL).await;
    let load = mesh.load(600, 4, &[]).await;
    let (v2, v3) = (
        mesh.apps[1].stats().await["total"],
        mesh.apps[2].stats().await["total"],
    );
    eprintln!(
        "two failing of three, 34 %: v2 got {v2}, v3 got {v3}; {:?}, {} failed",
        load.by_version,
        load.failures.len()
    );
    // One of them was ejected for good (30 s), the other keeps getting its share: 34 % of
    // three endpoints is one.
    let (ejected, kept) = if v2 < v3 { (v2, v3) } else { (v3, v2) };
    assert!(
        ejected <= 10,
        "one failing endpoint is ejected: {v2} / {v3}"
    );
    assert!(
        kept >= 150,
        "the other is not (max 34 % of 3 endpoints): {v2} / {v3}"
    );
    assert_eq!(
        load.by_version.get("v1").copied().unwrap_or(0) + load.failures.len(),
        600
    );
}
