//! The data plane outlives the control plane: proxies keep their last config while the
//! controller is down, and resync when it returns.

use std::time::Duration;

use weft_e2e::{Controller, Mesh, split_vs, write_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_serving_without_the_controller_and_resync_when_it_returns() {
    let mut mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(5))
        .await;

    mesh.controller.process.kill();
    // Long enough for the sidecars to notice and start reconnecting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load = mesh.load(300, 4, &[]).await;
    assert!(
        load.failures.is_empty(),
        "requests failed with the controller down: {:?}",
        load.failures
    );
    assert_eq!(load.by_version.get("v1"), Some(&300));
    for sidecar in mesh
        .sidecars
        .iter_mut()
        .chain(std::iter::once(&mut mesh.client))
    {
        sidecar.process.assert_running();
    }

    // Change the config while the controller is away; a new controller must push it.
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v2", 100)]),
    );
    let config = mesh.config_dir();
    let logs = mesh.log_dir();
    mesh.controller = Controller::start(mesh.net, &config, &logs).await;
    // The client backs off at most a few seconds between attempts.
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(10))
        .await;
    let load = mesh.load(200, 4, &[]).await;
    assert!(load.failures.is_empty(), "{:?}", load.failures);
    assert_eq!(load.by_version.get("v2"), Some(&200));
}
