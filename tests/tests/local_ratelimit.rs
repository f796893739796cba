//! Local rate limiting end to end (real controller and sidecars, local mode): a LocalRateLimit
//! on reviews; the reviews sidecar answers what is over its buckets with `429`,
//! `x-envoy-ratelimited: true` and flag `RL`, before the app; a bucket per user header.

use std::time::{Duration, Instant};

use weft_e2e::Mesh;

const LIMITS: &str = r#"
apiVersion: ratelimit.weft.io/v1alpha1
kind: LocalRateLimit
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  ports: [9080]
  rules:
  - name: burst
    match: {uri: {prefix: /burst}}
    limit: {requests: 5, per: 10s, burst: 20}
  - name: per-user
    match: {uri: {prefix: /user}}
    limit: {requests: 1, per: 1m, burst: 3}
    perHeaderValue: x-user-id
"#;

/// (status, `x-envoy-ratelimited`, flags) of one reply.
fn outcome(reply: &weft_e2e::Reply) -> (u16, String, String) {
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    (
        reply.status.as_u16(),
        header("x-envoy-ratelimited"),
        header("x-weft-response-flags"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_exactly_the_bucket_and_users_get_their_own() {
    let mesh = Mesh::start(&["v1"], &[("ratelimit.yaml", LIMITS)]).await;
    // `/` matches no rule and the object has no workload limit: never limited.
    mesh.wait_for_routes(Duration::from_secs(5)).await;

    // 60 requests at once over 6 connections: the bucket's 20, plus 5 for each fill that
    // falls within the burst (and one more fill if the bucket's phase is unlucky).
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (http, via) = (mesh.http.clone(), mesh.client.outbound());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..10 {
                let reply = http
                    .request(via, "GET", "reviews:9080", "/burst", &[])
                    .await
                    .expect("a reply");
                out.push(outcome(&reply));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    let elapsed = start.elapsed();
    let ok = all.iter().filter(|o| o.0 == 200).count();
    let refused: Vec<_> = all.iter().filter(|o| o.0 != 200).collect();
    let fills = usize::try_from(elapsed.as_secs() / 10).unwrap_or(usize::MAX) + 1;
    eprintln!("burst: {ok} ok of {} in {elapsed:?}", all.len());
    assert!(
        (20..=20 + 5 * fills).contains(&ok),
        "{ok} passed in {elapsed:?}: {all:?}"
    );
    for o in &refused {
        assert_eq!(
            (o.0, o.1.as_str(), o.2.as_str()),
            (429, "true", "RL"),
            "{all:?}"
        );
    }
    assert_eq!(ok + refused.len(), 60);
    // Other paths are not limited meanwhile.
    assert_eq!(mesh.get("/", &[]).await.expect("reply").status, 200);

    // A bucket per x-user-id value: 3 each, then 429 (a fill of one per minute may fall in).
    let mut per_user = Vec::new();
    for user in ["alice", "bob"] {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let reply = mesh
                .http
                .request(
                    mesh.client.outbound(),
                    "GET",
                    "reviews:9080",
                    "/user",
                    &[("x-user-id", user)],
                )
                .await
                .expect("a reply");
            statuses.push(outcome(&reply));
        }
        per_user.push(statuses);
    }
    for statuses in &per_user {
        assert!(statuses[..3].iter().all(|o| o.0 == 200), "{per_user:?}");
        let refused = statuses[3..].iter().filter(|o| o.0 == 429).count();
        assert!(refused >= 1, "{per_user:?}");
        assert!(
            statuses
                .iter()
                .all(|o| o.0 == 200 || (o.1.as_str(), o.2.as_str()) == ("true", "RL")),
            "{per_user:?}"
        );
    }
}
