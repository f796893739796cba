//! Adding a subset and routing to it in the same change, under steady load, fails no request:
//! the new route waits until the new cluster has its endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft_e2e::{Mesh, reviews_service_yaml, split_vs, write_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_subset_under_load_fails_no_request() {
    let mut mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
    )
    .await;
    // Start with only subset v1 in the DestinationRule.
    let full = reviews_service_yaml(mesh.net, &["v1", "v2"]);
    let v1_only = full.replace("  - name: v2\n    labels: {version: v2}\n", "");
    assert_ne!(full, v1_only, "the fixture has a v2 subset to remove");
    write_file(&mesh.config_dir(), "reviews-service.yaml", &v1_only);
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(5))
        .await;
    let load = mesh.load(200, 4, &[]).await;
    assert!(load.failures.is_empty(), "{:?}", load.failures);

    // Under load: add the subset and route half the traffic to it, in one change.
    let ok = Arc::new(AtomicUsize::new(0));
    let running = {
        let http = weft_e2e::HttpClient::new();
        let via = mesh.client.outbound();
        let ok = ok.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut v2 = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            // Until v2 has answered 50 times (or the deadline).
            while v2 < 50 && tokio::time::Instant::now() < deadline {
                match http.request(via, "GET", "reviews:9080", "/", &[]).await {
                    Ok(r) if r.status.is_success() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        v2 += usize::from(r.version.as_deref() == Some("v2"));
                    }
                    Ok(r) => failures.push(format!("{} {}", r.status, r.body.trim())),
                    Err(e) => failures.push(e),
                }
            }
            (v2, failures)
        })
    };
    weft_e2e::eventually(Duration::from_secs(5), "load running", || {
        let ok = ok.clone();
        async move { (ok.load(Ordering::Relaxed) >= 20).then_some(()) }
    })
    .await;
    write_file(&mesh.config_dir(), "reviews-service.yaml", &full);
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v1", 50), ("v2", 50)]),
    );
    let (v2, failures) = running.await.expect("load task");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed while the subset was added: {:?}",
        failures.len(),
        ok.load(Ordering::Relaxed) + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(v2, 50, "traffic reached the new subset");
    mesh.client.process.assert_running();
}
