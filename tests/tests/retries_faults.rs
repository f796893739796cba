//! Retries, the retry budget, fault injection and the route timeout end to end: real
//! controller, real sidecars, demo apps told to misbehave (`weftctl demo-app --reset-ratio`, …).

use std::time::{Duration, Instant};

use weft_e2e::{Mesh, MeshOptions};

fn vs(http_extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews}}}}]
{http_extra}"
    )
}

fn options(app: &[&str], traffic_policy: Option<&str>) -> MeshOptions {
    MeshOptions {
        app: app.iter().map(|s| s.to_string()).collect(),
        traffic_policy: traffic_policy.map(str::to_string),
        ..Default::default()
    }
}

/// A backend that resets 30 % of its requests: with retries (and a budget large enough for a
/// 30 % failure rate: 0.3 + 0.09 + 0.027 + … ≈ 43 % extra attempts), at least 99.5 % succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_backend_that_resets_thirty_percent() {
    let mesh = Mesh::start_with(
        &["v1", "v2"],
        &[(
            "reviews-vs.yaml",
            &vs("    retries: {attempts: 5, retryOn: '5xx,reset,connect-failure'}\n"),
        )],
        &options(
            &["--reset-ratio", "0.3"],
            Some("{retryBudget: {percent: 60}}"),
        ),
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    let n = 2000;
    let load = mesh.load(n, 8, &[]).await;
    let ok = load.by_version.values().sum::<usize>();
    let mut attempts = 0;
    let mut resets = 0;
    for app in &mesh.apps {
        let stats = app.stats().await;
        attempts += stats["total"];
        resets += stats["reset"];
    }
    eprintln!(
        "30% resets: {ok}/{n} succeeded; {attempts} attempts reached the apps, {resets} reset"
    );
    assert!(
        ok * 1000 >= n * 995,
        "only {ok}/{n} succeeded: {:?}",
        &load.failures[..load.failures.len().min(5)]
    );
    // The apps really reset about 30 % of what reached them: the retries were needed.
    let reset_share = resets as f64 / attempts as f64;
    assert!(
        (0.25..0.35).contains(&reset_share),
        "reset share {reset_share:.3}"
    );
}

/// The backend is down (every request reset): the retry budget (the default 20 %) keeps the
/// attempts that reach it within the budget of the offered load, though each request may
/// retry five times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_bounds_attempts_when_the_backend_is_down() {
    let mesh = Mesh::start_with(
        &["v1", "v2"],
        &[(
            "reviews-vs.yaml",
            &vs("    retries: {attempts: 5, retryOn: '5xx,reset,connect-failure'}\n"),
        )],
        &options(&["--reset-ratio", "1"], None),
    )
    .await;
    // `reset=0` spares a request from the app's failures: the routes are in force once it passes.
    weft_e2e::eventually(Duration::from_secs(5), "the first routes", || async {
        mesh.get("/?reset=0", &[])
            .await
            .ok()
            .filter(|r| r.status.is_success())
    })
    .await;
    for app in &mesh.apps {
        mesh.http
            .request(app.addr, "POST", "reviews", "/__demo/stats/reset", &[])
            .await
            .expect("stats reset");
    }
    let n = 1000;
    let load = mesh.load(n, 8, &[]).await;
    assert_eq!(
        load.failures.len(),
        n,
        "every request fails: the backend is down"
    );
    assert!(
        load.failures.iter().all(|f| f.starts_with("503")),
        "{:?}",
        &load.failures[..3]
    );
    let mut attempts = 0;
    for app in &mesh.apps {
        attempts += app.stats().await["total"];
    }
    eprintln!("backend down: {n} requests made {attempts} attempts");
    // Each request's first attempt, 20 % more, and the budget's floor of 3 per window (the
    // window is 10 s; the run takes less, once more for slack).
    let bound = n as u64 + n as u64 / 5 + 6;
    assert!(
        attempts <= bound,
        "{attempts} attempts for {n} requests exceed the budget ({bound})"
    );
    assert!(
        attempts > n as u64 + n as u64 / 10,
        "{attempts} attempts: the budget should still allow retries"
    );
    // Without the budget the same policy would have made up to six attempts per request.
}

/// Fault injection: an abort and a delay, each for its share of 5,000 requests (±2 points).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_percentages_hold_over_five_thousand_requests() {
    let mesh = Mesh::start(
        &["v1"],
        &[(
            "reviews-vs.yaml",
            &vs("    fault:
      abort: {httpStatus: 418, percentage: {value: 30}}
      delay: {fixedDelay: 300ms, percentage: {value: 10}}
"),
        )],
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    let n = 5000usize;
    let (mut aborted, mut delayed, mut ok) = (0, 0, 0);
    for reply in mesh.samples(32, n, "/").await {
        if reply.latency >= Duration::from_millis(300) {
            delayed += 1;
        }
        match reply.status {
            418 => {
                aborted += 1;
                // Delayed first (10 %), the abort says both, as Envoy.
                match reply.flags.as_str() {
                    "FI" => {}
                    "DI,FI" => assert!(reply.latency >= Duration::from_millis(300)),
                    other => panic!("abort flags {other:?}"),
                }
                assert_eq!(reply.body, "fault filter abort");
            }
            200 => ok += 1,
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(aborted + ok, n);
    let abort_share = aborted as f64 * 100.0 / n as f64;
    let delay_share = delayed as f64 * 100.0 / n as f64;
    eprintln!("faults over {n}: aborted {abort_share:.2}%, delayed {delay_share:.2}%");
    assert!(
        (abort_share - 30.0).abs() <= 2.0,
        "abort share {abort_share:.2}%"
    );
    assert!(
        (delay_share - 10.0).abs() <= 2.0,
        "delay share {delay_share:.2}%"
    );
}

/// The route timeout covers the whole response, not only its head: a body that dribbles past
/// it is cut (the client sees an incomplete body), while a fast one is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_covers_the_whole_response() {
    let mesh = Mesh::start(
        &["v1"],
        &[(
            "reviews-vs.yaml",
            &vs("    timeout: 1s\n    retries: {attempts: 0}\n"),
        )],
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    // Four chunks 200 ms apart: done in about 600 ms.
    let fast = mesh.get("/?slow_body_ms=200", &[]).await.expect("a reply");
    assert_eq!(fast.status, 200);
    // Four chunks 500 ms apart: the head comes at once, the body would end after 1.5 s.
    let start = Instant::now();
    let slow = mesh.get("/?slow_body_ms=500", &[]).await;
    let took = start.elapsed();
    assert!(
        slow.is_err(),
        "the body outlived the route timeout and must be cut: {slow:?}"
    );
    assert!(
        took < Duration::from_millis(1400),
        "cut at the route timeout, not at the body's end: {took:?}"
    );
    // A head that comes late is the classic case: 504 UT.
    let late = mesh.get("/?delay_ms=1500", &[]).await.expect("a reply");
    assert_eq!(late.status, 504);
    assert_eq!(late.headers["x-weft-response-flags"], "UT");
}
