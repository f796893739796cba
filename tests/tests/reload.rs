//! Hot config changes end to end: edits apply within a second without failing requests,
//! and invalid edits are refused while the previous config keeps serving.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use weft_e2e::{HttpClient, Mesh, split_vs, write_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_applies_within_a_second_with_zero_failed_requests() {
    let mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(5))
        .await;

    // Steady load from 4 workers; each records (sent at, version or error).
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        let via = mesh.client.outbound();
        workers.push(tokio::spawn(async move {
            let http = HttpClient::new();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let outcome = match http.request(via, "GET", "reviews:9080", "/", &[]).await {
                    Ok(r) if r.status.is_success() => Ok(r.version.unwrap_or_default()),
                    Ok(r) => Err(format!("{} {}", r.status, r.body.trim())),
                    Err(e) => Err(e),
                };
                seen.push((sent, outcome));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edited = Instant::now();
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v2", 100)]),
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut failures = Vec::new();
    let mut last_old = None;
    let mut after_switch = 0;
    for worker in workers {
        for (sent, outcome) in worker.await.unwrap() {
            match outcome {
                Err(e) => failures.push(e),
                Ok(v) if v == "v1" && sent > edited => {
                    last_old = Some(last_old.map_or(sent, |t: Instant| t.max(sent)))
                }
                Ok(v) if v == "v2" => after_switch += 1,
                Ok(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} requests failed during the change: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(after_switch > 0, "no request reached v2 after the edit");
    let took = last_old.map(|t| t - edited).unwrap_or_default();
    eprintln!("routing moved {took:?} after the edit; {after_switch} requests on the new route");
    assert!(
        took < Duration::from_secs(1),
        "old routing still served {took:?} after the edit"
    );
}

const INVALID_WEIGHTS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
      weight: 0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_virtual_service_is_rejected_and_previous_keeps_serving() {
    let mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v2", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(5))
        .await;

    write_file(&mesh.config_dir(), "reviews-vs.yaml", INVALID_WEIGHTS);
    let log = weft_e2e::eventually(
        Duration::from_secs(3),
        "the controller to report the bad document",
        || async {
            let log = mesh.controller.process.log();
            log.contains("total destination weight = 0").then_some(log)
        },
    )
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("total destination weight = 0"))
        .unwrap();
    assert!(
        line.contains("reviews-vs.yaml"),
        "the file is named: {line}"
    );
    assert!(line.contains("document 0"), "the document is named: {line}");
    assert!(
        line.contains("spec.http[0].route"),
        "the field path is named: {line}"
    );

    // The last good VirtualService (100% v2) is still in force.
    let load = mesh.load(300, 4, &[]).await;
    assert_eq!(load.by_version.get("v2"), Some(&300), "{load:?}");

    // Fixing the file applies it.
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v1", 100)]),
    );
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
}
