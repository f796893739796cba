//! Istio's circuit-breaking task end to end (real controller and sidecars): a DestinationRule
//! with `maxConnections: 1`, `http1MaxPendingRequests: 1`, `maxRequestsPerConnection: 1`. One
//! caller at a time never trips it; three at a time, each request held 50 ms by the app, and the
//! third finds the connection and the one pending place taken: `503 UO` at once, never a queue.

use std::time::Duration;

use weft_e2e::{Mesh, MeshOptions};

const POLICY: &str = "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_circuit_breaking_task() {
    let mesh = Mesh::start_with(
        &["v1"],
        &[],
        &MeshOptions {
            traffic_policy: Some(POLICY.into()),
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;

    // One caller: every request has the connection to itself.
    let one = mesh.samples(1, 20, "/?delay_ms=50").await;
    assert!(one.iter().all(|r| r.status == 200), "{one:?}");

    // Three callers: the third at any moment overflows.
    let three = mesh.samples(3, 60, "/?delay_ms=50").await;
    let overflow: Vec<_> = three.iter().filter(|r| r.status == 503).collect();
    let ok = three.iter().filter(|r| r.status == 200).count();
    eprintln!(
        "3 callers: {ok} ok, {} overflowed of {}",
        overflow.len(),
        three.len()
    );
    assert_eq!(ok + overflow.len(), three.len(), "{three:?}");
    assert!(
        overflow.len() >= 5,
        "a third caller must trip the breaker: {three:?}"
    );
    assert!(
        ok >= 20,
        "the connection and the pending place still serve: {three:?}"
    );
    for refused in &overflow {
        assert_eq!(refused.flags, "UO");
        assert!(
            refused.latency < Duration::from_millis(45),
            "refused at once, not after a wait: {:?}",
            refused.latency
        );
    }
}
