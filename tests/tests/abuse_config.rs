//! Abusive config files end to end: bad bytes and YAML syntax errors in a live file keep
//! the last good routing; a 50 MB file costs no CPU while unchanged, and the controller's
//! memory comes back when it is removed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_e2e::{
    Controller, HttpClient, Mesh, Net, Sidecar, eventually, reviews_service_yaml, split_vs,
    write_file,
};

/// Writes raw bytes to `dir/name` via a rename, as editors do.
fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("writing config");
    std::fs::rename(&tmp, dir.join(name)).expect("renaming config into place");
}

/// Waits until the controller's log has a line containing every one of `parts`; returns it.
async fn log_line(mesh: &Mesh, parts: &[&str]) -> String {
    eventually(
        Duration::from_secs(5),
        &format!("a controller log line with {parts:?}"),
        || async {
            mesh.controller
                .process
                .log()
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .map(str::to_string)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_and_syntax_errors_keep_routing_until_fixed() {
    let mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v2", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(5))
        .await;
    let config = mesh.config_dir();

    // An edit to v1 with one byte that is not UTF-8 in a comment (line 3, column 5).
    let edit = split_vs(&[("v1", 100)]);
    let (head, tail) = edit.split_at(edit.match_indices('\n').nth(1).expect("3 lines").0 + 1);
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(b"# ca\xe9\n");
    bytes.extend_from_slice(tail.as_bytes());
    write_bytes(&config, "reviews-vs.yaml", &bytes);
    let line = log_line(&mesh, &["reviews-vs.yaml", "not valid UTF-8"]).await;
    assert!(line.contains("line 3, column 5"), "{line}");
    assert!(
        line.contains("keeping the previous version of its 1 object"),
        "{line}"
    );
    let load = mesh.load(200, 4, &[]).await;
    assert_eq!(load.by_version.get("v2"), Some(&200), "{load:?}");

    // Valid UTF-8 now, but not YAML (a tab indents line 11): still the last good version.
    let broken = edit.replace("      weight: 100", "\t weight: 100");
    assert_ne!(broken, edit);
    write_file(&config, "reviews-vs.yaml", &broken);
    let line = log_line(
        &mesh,
        &["reviews-vs.yaml: document 0", "invalid YAML at line 11"],
    )
    .await;
    assert!(line.contains("VirtualService default/reviews"), "{line}");
    assert!(line.contains("column"), "{line}");
    log_line(
        &mesh,
        &[
            "reviews-vs.yaml: document 0",
            "keeping the previous good version",
        ],
    )
    .await;
    let load = mesh.load(200, 4, &[]).await;
    assert_eq!(load.by_version.get("v2"), Some(&200), "{load:?}");

    // Fixed: the new version applies.
    write_file(&config, "reviews-vs.yaml", &edit);
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    log_line(&mesh, &["config errors resolved", "reviews-vs.yaml"]).await;
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}

async fn configz(http: &HttpClient, controller: &Controller) -> Value {
    let reply = http
        .get_url(&format!("http://{}/debug/configz", controller.debug))
        .await
        .expect("configz");
    serde_json::from_str(&reply.body).expect("configz is JSON")
}

/// The local source's counters, once no file is pending or unverified.
async fn settled_stats(http: &HttpClient, controller: &Controller, what: &str) -> Value {
    eventually(Duration::from_secs(20), what, || async {
        let stats = configz(http, controller).await["localSource"].clone();
        (stats["pending"] == 0 && stats["unverified"] == 0).then_some(stats)
    })
    .await
}

/// A valid WorkloadEntry of about `size` bytes (one huge annotation).
fn huge_entry(size: usize) -> String {
    let mut yaml = String::with_capacity(size + 256);
    yaml.push_str(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: huge
  namespace: default
  annotations:
    example.com/blob: ",
    );
    yaml.push_str(&"abcdefghij".repeat(size / 10));
    yaml.push_str("\nspec:\n  address: 10.0.0.1\n  labels: {app: nothing}\n");
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_file_costs_no_cpu_while_unchanged_and_its_memory_returns() {
    let started = Instant::now();
    let net = Net::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::create_dir_all(&logs).expect("log dir");
    write_file(
        &config,
        "reviews-service.yaml",
        &reviews_service_yaml(net, &["v1"]),
    );
    let controller = Controller::start(net, &config, &logs).await;
    let _client = Sidecar::start(
        net.ip(10),
        &controller.xds_url(),
        "client",
        "app=client",
        None,
        &logs,
    )
    .await;
    let setup = started.elapsed();
    let http = HttpClient::new();
    let pid = controller.process.pid().expect("controller pid");
    settled_stats(&http, &controller, "the first load to settle").await;
    let baseline = controller.process.rss_kib();

    let size = 50 * 1024 * 1024;
    write_file(&config, "huge.yaml", &huge_entry(size));
    let written = Instant::now();
    eventually(Duration::from_secs(20), "the huge file to load", || async {
        let page = configz(&http, &controller).await;
        page["objects"]["WorkloadEntry default/huge"]
            .is_object()
            .then_some(())
    })
    .await;
    let loaded_in = written.elapsed();
    let stats = eventually(Duration::from_secs(20), "the huge file to be verified", || async {
        let page = configz(&http, &controller).await;
        let loaded = page["objects"]["WorkloadEntry default/huge"]["object"]["metadata"]
            ["annotations"]["example.com/blob"]
            == format!("<{} bytes>", size / 10 * 10);
        let stats = &page["localSource"];
        (loaded && stats["pending"] == 0 && stats["unverified"] == 0).then(|| stats.clone())
    })
    .await;
    let verified_in = written.elapsed();
    let with_file = controller.process.rss_kib();
    assert!(
        stats["bytes"].as_u64().is_some_and(|b| b > size as u64),
        "{stats}"
    );

    // Unchanged for 5 s: no reads, no parses, (almost) no CPU.
    let before = cpu_ticks(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks = cpu_ticks(pid) - before;
    let window = window.elapsed();
    let cpu = Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64);
    let after = configz(&http, &controller).await["localSource"].clone();
    assert_eq!(after["filesParsed"], stats["filesParsed"], "{after}");
    assert_eq!(after["filesRead"], stats["filesRead"], "{after}");
    assert!(
        after["scans"].as_u64() > stats["scans"].as_u64(),
        "re-scans ran: {after}"
    );
    assert!(
        cpu < Duration::from_millis(50),
        "controller used {cpu:?} of CPU in {window:?} with an unchanged 50 MB file"
    );

    // Removed: its objects go, and the memory comes back.
    std::fs::remove_file(config.join("huge.yaml")).expect("remove");
    eventually(Duration::from_secs(5), "the huge object to go", || async {
        let page = configz(&http, &controller).await;
        page["objects"]["WorkloadEntry default/huge"]
            .is_null()
            .then_some(())
    })
    .await;
    let removed = Instant::now();
    let after_removal = eventually(
        Duration::from_secs(20),
        "RSS back near the baseline",
        || async {
            let rss = controller.process.rss_kib();
            (rss <= baseline * 2).then_some(rss)
        },
    )
    .await;
    eprintln!(
        "50 MB file: loaded in {loaded_in:?}, verified (hashed again) in {verified_in:?}; CPU {cpu:?} \
         over {window:?} unchanged; RSS baseline {baseline} KiB, with the file {with_file} KiB, \
         after removal {after_removal} KiB (within {:?}); setup {setup:?}, the test without its \
         setup {:?}",
        removed.elapsed(),
        started.elapsed() - setup
    );
}
