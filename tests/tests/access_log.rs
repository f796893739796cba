//! Access logs end to end: a Telemetry resource turns them on for the mesh, the controller's
//! `--access-log-encoding JSON` makes them JSON lines on the sidecars' stdout; both sidecars
//! log each request with Envoy's fields (the same `x-request-id` on both), and changing the
//! Telemetry to `filter.expression: response.code >= 400` logs only the failures.

use std::time::Duration;

use serde_json::Value;
use weft_e2e::{Mesh, MeshOptions, eventually, write_file};

fn telemetry(filter: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  accessLogging:
  - providers: [{{name: envoy}}]
{filter}"
    )
}

/// The access log lines (JSON objects with a response code) in a process's output.
fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("response_code").is_some())
        .collect()
}

fn with_path<'a>(lines: &'a [Value], path: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["path"] == path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_turns_on_json_access_logs_and_filters_them() {
    let mesh = Mesh::start_with(
        &["v1"],
        &[("telemetry.yaml", &telemetry(""))],
        &MeshOptions {
            controller: vec!["--access-log-encoding".into(), "JSON".into()],
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(10)).await;

    assert_eq!(mesh.get("/?phase=1", &[]).await.unwrap().status, 200);
    assert_eq!(
        mesh.get("/?phase=1&status=500", &[]).await.unwrap().status,
        500
    );
    let (client, server) = eventually(Duration::from_secs(5), "both sidecars' lines", || async {
        let client = lines(&mesh.client.process.log());
        let server = lines(&mesh.sidecars[0].process.log());
        let both = |l: &[Value]| {
            with_path(l, "/?phase=1").len() == 1 && with_path(l, "/?phase=1&status=500").len() == 1
        };
        (both(&client) && both(&server)).then_some((client, server))
    })
    .await;
    let out = with_path(&client, "/?phase=1")[0];
    let inb = with_path(&server, "/?phase=1")[0];
    assert_eq!(out["method"], "GET");
    assert_eq!(out["response_code"], 200);
    assert_eq!(out["response_flags"], "-");
    assert_eq!(out["protocol"], "HTTP/1.1");
    assert_eq!(
        out["upstream_cluster"],
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(
        out["upstream_host"],
        format!("{}:15006", mesh.sidecars[0].ip)
    );
    assert!(
        out["duration"].is_u64() && out["bytes_sent"].as_u64() > Some(0),
        "{out}"
    );
    assert!(
        out["start_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{out}"
    );
    assert_eq!(inb["upstream_cluster"], "inbound|9080||");
    assert_eq!(inb["response_code"], 200);
    assert_eq!(out["response_code_details"], "via_upstream");
    // One request, one id, on both sides (the client's sidecar made it).
    let id = out["request_id"].as_str().expect("a request id");
    assert_eq!(inb["request_id"], id);
    assert_eq!(
        with_path(&client, "/?phase=1&status=500")[0]["response_code"],
        500
    );

    // Only failures from now on.
    write_file(
        &mesh.config_dir(),
        "telemetry.yaml",
        &telemetry("    filter: {expression: \"response.code >= 400\"}\n"),
    );
    // The filter is in force once a successful request is no longer logged: probe until then.
    eventually(Duration::from_secs(10), "the filter in force", || async {
        let probe = format!("/?probe={}", rand_suffix());
        assert_eq!(mesh.get(&probe, &[]).await.unwrap().status, 200);
        // A logged failure right after proves the line would have come.
        let fail = format!("{probe}&status=500");
        assert_eq!(mesh.get(&fail, &[]).await.unwrap().status, 500);
        let client = lines(&mesh.client.process.log());
        (with_path(&client, &probe).is_empty() && with_path(&client, &fail).len() == 1)
            .then_some(())
    })
    .await;
    for _ in 0..3 {
        assert_eq!(mesh.get("/?phase=2", &[]).await.unwrap().status, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            mesh.get("/?phase=2&status=500", &[]).await.unwrap().status,
            500
        );
    }
    eventually(Duration::from_secs(5), "the failures logged", || async {
        let client = lines(&mesh.client.process.log());
        let server = lines(&mesh.sidecars[0].process.log());
        (with_path(&client, "/?phase=2&status=500").len() == 2
            && with_path(&server, "/?phase=2&status=500").len() == 2)
            .then_some(())
    })
    .await;
    let client = lines(&mesh.client.process.log());
    assert!(
        with_path(&client, "/?phase=2").is_empty(),
        "successes are filtered out"
    );
}

/// A suffix that makes each probe's path its own.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
