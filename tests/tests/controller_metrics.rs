//! The controller's `/metrics` (istiod's names) with real proxies: connected proxies, pushes
//! by type, and a config change's convergence once every proxy ACKed it.

use std::time::Duration;

use weft_e2e::{Mesh, eventually, split_vs, write_file};

/// The value of the sample line `name` (with its labels, as exposed) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_metrics_count_proxies_pushes_and_convergence() {
    let mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let client = weft_e2e::HttpClient::new();
    let url = format!("http://{}/metrics", mesh.controller.debug);
    let scrape = || async { client.get_url(&url).await.ok().map(|r| r.body) };

    // The client sidecar and the two reviews sidecars.
    let text = eventually(Duration::from_secs(10), "pilot_xds 3", || async {
        scrape()
            .await
            .filter(|t| sample(t, "pilot_xds") == Some(3.0))
    })
    .await;
    for kind in ["cds", "eds", "lds", "rds"] {
        let pushes = sample(&text, &format!("pilot_xds_pushes{{type=\"{kind}\"}}"));
        assert!(
            pushes.is_some_and(|n| n >= 3.0),
            "{kind}: {pushes:?}\n{text}"
        );
    }
    assert!(text.contains("# TYPE pilot_xds_pushes counter"), "{text}");
    let converged_before =
        sample(&text, "pilot_proxy_convergence_time_count").expect("convergence histogram");

    // A route change reaches the client sidecar (and RDS of every proxy that has the
    // route): each proxy that ACKs it adds a convergence sample.
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v2", 100)]),
    );
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(10))
        .await;
    let text = eventually(Duration::from_secs(10), "a convergence sample", || async {
        scrape().await.filter(|t| {
            sample(t, "pilot_proxy_convergence_time_count").is_some_and(|n| n > converged_before)
        })
    })
    .await;
    assert_eq!(
        sample(&text, "pilot_total_xds_rejects{type=\"rds\"}"),
        None,
        "nothing was rejected:\n{text}"
    );
}
