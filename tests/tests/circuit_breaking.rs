//! Istio's circuit-breaking task end to end (real controller and sidecars): a DestinationRule
//! with `maxConnections: 1`, `http1MaxPendingRequests: 1`, `maxRequestsPerConnection: 1`. One
//! caller at a time never trips it; three at a time, each request held 50 ms by the app, and the
//! third finds the connection and the one pending place taken: `503 UO` at once, never a queue.

use std::time::{Duration, Instant};

use weft_e2e::{Mesh, MeshOptions};

const POLICY: &str = "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}}";

/// `workers` callers each sending `per_worker` requests for `path`: (status, flags, latency).
async fn run(
    mesh: &Mesh,
    workers: usize,
    per_worker: usize,
    path: &str,
) -> Vec<(u16, String, Duration)> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, via, path) = (mesh.http.clone(), mesh.client.outbound(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..per_worker {
                let start = Instant::now();
                let reply = http
                    .request(via, "GET", "reviews:9080", &path, &[])
                    .await
                    .expect("a reply");
                let flags = reply
                    .headers
                    .get("x-weft-response-flags")
                    .map(|v| v.to_str().unwrap_or_default().to_string())
                    .unwrap_or_default();
                out.push((reply.status.as_u16(), flags, start.elapsed()));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    all
}

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
    let one = run(&mesh, 1, 20, "/?delay_ms=50").await;
    assert!(one.iter().all(|r| r.0 == 200), "{one:?}");

    // Three callers: the third at any moment overflows.
    let three = run(&mesh, 3, 20, "/?delay_ms=50").await;
    let overflow: Vec<_> = three.iter().filter(|r| r.0 == 503).collect();
    let ok = three.iter().filter(|r| r.0 == 200).count();
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
    for (_, flags, latency) in &overflow {
        assert_eq!(flags, "UO");
        assert!(
            *latency < Duration::from_millis(45),
            "refused at once, not after a wait: {latency:?}"
        );
    }
}
