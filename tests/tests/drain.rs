//! A sidecar stopped with SIGTERM drains: it stops accepting, reports not ready, lets every
//! in-flight request finish, and exits 0 within the drain period.

use std::time::Duration;

use weft_e2e::{Mesh, eventually, split_vs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut mesh = Mesh::start(&["v1"], &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))]).await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(5))
        .await;

    // 12 requests that the app answers after 1.5 s, each on its own connection.
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let client = weft_e2e::HttpClient::new();
            let via = mesh.client.outbound();
            tokio::spawn(async move {
                client
                    .request(via, "GET", "reviews:9080", "/?delay_ms=1500", &[])
                    .await
            })
        })
        .collect();
    // Wait until the client sidecar has all of them in flight.
    let admin = format!("http://{}:15000/clusters?format=json", mesh.client.ip);
    let http = weft_e2e::HttpClient::new();
    eventually(Duration::from_secs(5), "12 requests in flight", || {
        let http = http.clone();
        let admin = admin.clone();
        async move {
            let dump: serde_json::Value =
                serde_json::from_str(&http.get_url(&admin).await.ok()?.body).ok()?;
            // Envoy's `/clusters?format=json`: each endpoint's `rq_active` stat.
            let in_flight: u64 = dump["cluster_statuses"]
                .as_array()?
                .iter()
                .flat_map(|c| c["host_statuses"].as_array().cloned().unwrap_or_default())
                .flat_map(|h| h["stats"].as_array().cloned().unwrap_or_default())
                .filter(|s| s["name"] == "rq_active")
                .filter_map(|s| s["value"].as_str().and_then(|v| v.parse::<u64>().ok()))
                .sum();
            (in_flight == 12).then_some(())
        }
    })
    .await;

    mesh.client.process.terminate();
    // Draining: not ready, and no new connections.
    let health = format!("http://{}:15021/healthz/ready", mesh.client.ip);
    eventually(
        Duration::from_secs(2),
        "readiness 503 while draining",
        || {
            let http = http.clone();
            let health = health.clone();
            async move {
                let r = http.get_url(&health).await.ok()?;
                (r.status == 503 && r.body.contains("draining")).then_some(())
            }
        },
    )
    .await;
    eventually(Duration::from_secs(2), "outbound listener closed", || {
        let via = mesh.client.outbound();
        async move {
            tokio::net::TcpStream::connect(via)
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;

    for r in requests {
        let reply = r.await.expect("request task");
        let reply = reply.expect("in-flight request completes during the drain");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.version.as_deref(), Some("v1"));
    }
    let status = mesh
        .client
        .process
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("the sidecar exits within its drain period");
    assert!(
        status.success(),
        "exit status {status}: {}",
        mesh.client.process.log()
    );
    assert!(
        mesh.client.process.log().contains("drained"),
        "{}",
        mesh.client.process.log()
    );
}
