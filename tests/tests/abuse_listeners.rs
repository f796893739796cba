//! Abuse suite, listeners: idle floods, slow clients and SIGTERM against the real binaries,
//! on loopback only. Every listener of the proxy (15001, 15006, 15000, 15021) and of the
//! controller (15010, 15012, 15014, 15017) is tried.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use weft_e2e::{
    Controller, Mesh, MeshOptions, Net, Process, Sidecar, eventually, split_vs, write_file,
};

/// Idle connections opened against each listener in turn.
const FLOOD: usize = 5000;

/// The header-read (and first-byte) timeout the processes of these tests run with.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A self-signed certificate for `weft-webhook` (the name the test client asks for).
struct WebhookCert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl WebhookCert {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("webhook.crt");
        let key = dir.path().join("webhook.key");
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=weft-webhook"])
            .args(["-addext", "subjectAltName=DNS:weft-webhook"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl CLI is needed (.ci/run installs it)");
        assert!(
            status.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        Self {
            _dir: dir,
            cert,
            key,
        }
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.cert).expect("cert file") {
            roots.add(cert.expect("cert")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

fn options(net: Net, cert: &WebhookCert) -> MeshOptions {
    let timeout = format!("{}s", HEADER_READ_TIMEOUT.as_secs());
    MeshOptions {
        net: Some(net),
        controller: vec![
            "--header-read-timeout".into(),
            timeout.clone(),
            "--webhook-address".into(),
            webhook_address(net).to_string(),
            "--webhook-cert".into(),
            cert.cert.display().to_string(),
            "--webhook-key".into(),
            cert.key.display().to_string(),
        ],
        proxy: vec!["--header-read-timeout".into(), timeout],
        ..MeshOptions::default()
    }
}

/// The controller's TLS port (CA and ADS), by default next to its plaintext ADS.
fn secure_address(net: Net) -> SocketAddr {
    SocketAddr::new(net.ip(1), 15012)
}

fn webhook_address(net: Net) -> SocketAddr {
    SocketAddr::new(net.ip(1), 15017)
}

/// Opens `n` connections to `addr` and leaves them silent.
async fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(
            TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("connect {addr}: {e}")),
        );
    }
    conns
}

/// Waits until the server has closed every connection (EOF or reset), up to `limit`.
async fn all_closed(conns: &mut [TcpStream], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64];
    for (i, conn) in conns.iter_mut().enumerate() {
        loop {
            match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
                Err(_) => return Err(format!("connection {i} still open after {limit:?}")),
                Ok(Ok(0) | Err(_)) => break,
                // A reply (e.g. 408) before the close: keep reading.
                Ok(Ok(_)) => {}
            }
        }
    }
    Ok(())
}

/// Sends one HTTPS request to the webhook and returns the status line.
async fn webhook_get_ready(cert: &WebhookCert, addr: SocketAddr) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from("weft-webhook").map_err(|e| e.to_string())?;
    let mut tls = cert
        .connector()
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /ready HTTP/1.1\r\nHost: weft-webhook\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    let text = String::from_utf8_lossy(&reply);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// A plain HTTP/1.1 GET `path` on a fresh connection; the status line.
async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
        .await
        .map_err(|_| "no reply within 5s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_floods_exhaust_no_listener() {
    // This process holds a flood at a time; raise its open-file limit as the binaries do.
    let open_files = weft_net::raise_open_file_limit();
    assert!(
        open_files >= (FLOOD as u64) * 2,
        "this test needs an open-file limit of at least {} (ulimit -Hn), not {open_files}",
        FLOOD * 2
    );
    let net = Net::new();
    let cert = WebhookCert::new();
    let mut mesh = Mesh::start_with(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
        &options(net, &cert),
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let client = mesh.client.ip;
    let reviews_v1 = mesh.sidecars[0].ip;
    let listeners = [
        ("proxy outbound", SocketAddr::new(client, 15001)),
        ("proxy inbound", SocketAddr::new(reviews_v1, 15006)),
        ("proxy admin", SocketAddr::new(client, 15000)),
        ("proxy health", SocketAddr::new(client, 15021)),
        ("controller ADS", mesh.controller.xds),
        ("controller CA and ADS (TLS)", secure_address(net)),
        ("controller debug", mesh.controller.debug),
        ("controller webhook", webhook_address(net)),
    ];
    let mut version = "v1";
    for (round, (name, addr)) in listeners.into_iter().enumerate() {
        let started = Instant::now();
        let mut conns = flood(addr, FLOOD).await;

        // Traffic flows and config pushes land while the connections are held.
        let load = mesh.load(100, 4, &[]).await;
        assert!(
            load.failures.is_empty(),
            "{name} flooded: requests failed: {:?}",
            load.failures
        );
        version = if version == "v1" { "v2" } else { "v1" };
        write_file(
            &mesh.config_dir(),
            "reviews-vs.yaml",
            &split_vs(&[(version, 100)]),
        );
        mesh.wait_for_version("/", &[], version, Duration::from_secs(10))
            .await;
        // A listener whose limit is above the flood still takes new clients: a new proxy
        // gets its config, the inbound listener answers.
        if name == "controller ADS" {
            let logs = mesh.log_dir();
            let mut extra = Sidecar::start(
                net.ip(30 + round as u8),
                &mesh.controller.xds_url(),
                "latecomer",
                "app=latecomer",
                None,
                &logs,
            )
            .await;
            extra.process.assert_running();
        }
        if name == "proxy inbound" {
            let status = plain_get(addr, "reviews:9080", "/").await;
            assert!(
                status.as_deref().is_ok_and(|s| s.contains(" 200 ")),
                "inbound during the flood: {status:?}"
            );
        }

        // The server closes the silent connections after the first-byte timeout…
        all_closed(&mut conns, HEADER_READ_TIMEOUT + Duration::from_secs(8))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        drop(conns);
        // …and the listener serves again.
        let check = match name {
            "proxy admin" => plain_get(addr, "admin", "/ready").await,
            "proxy health" => plain_get(addr, "health", "/healthz/ready").await,
            "controller debug" => plain_get(addr, "debug", "/ready").await,
            "controller webhook" => webhook_get_ready(&cert, addr).await,
            "proxy outbound" | "proxy inbound" => plain_get(addr, "reviews:9080", "/").await,
            _ => Ok(" 200 ".to_string()),
        };
        assert!(
            check.as_deref().is_ok_and(|s| s.contains(" 200 ")),
            "{name} after the flood: {check:?}"
        );
        eprintln!(
            "{name}: flood of {FLOOD} handled in {:?}",
            started.elapsed()
        );
    }

    // No accept loop ran out of file descriptors, and overload was logged, not spammed.
    let controller_log = mesh.controller.process.log();
    let client_log = mesh.client.process.log();
    for (who, log) in [
        ("controller", &controller_log),
        ("client sidecar", &client_log),
    ] {
        assert_eq!(count(log, "accept failed"), 0, "{who} log:\n{log}");
    }
    // Debug and webhook (1024 each) overflowed once each; admin and health too.
    for (who, log) in [
        ("controller", &controller_log),
        ("client sidecar", &client_log),
    ] {
        let lines = count(log, "closing new connections");
        assert!(
            (1..=4).contains(&lines),
            "{who}: {lines} overload lines:\n{log}"
        );
    }
    mesh.controller.process.assert_running();
    mesh.client.process.assert_running();
}

/// Writes one byte of an unfinished request every 200 ms until the server closes the
/// connection; how long that took, or `None` after `limit`.
async fn trickle_until_closed(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    let request = b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut buf = [0u8; 256];
    for byte in request.iter().cycle() {
        if started.elapsed() > limit {
            return None;
        }
        if tcp.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let read = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_hold_bounded_memory() {
    let net = Net::new();
    let cert = WebhookCert::new();
    let mesh = Mesh::start_with(
        &["v1"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
        &options(net, &cert),
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let client = mesh.client.ip;
    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(8);

    // Headers that never finish, one byte at a time: closed by the header-read timeout
    // although bytes keep coming.
    for (name, addr) in [
        ("proxy outbound", SocketAddr::new(client, 15001)),
        ("proxy inbound", SocketAddr::new(mesh.sidecars[0].ip, 15006)),
        ("proxy admin", SocketAddr::new(client, 15000)),
        ("proxy health", SocketAddr::new(client, 15021)),
        ("controller debug", mesh.controller.debug),
    ] {
        let took = trickle_until_closed(addr, limit).await;
        assert!(
            took.is_some(),
            "{name}: a slow header was not cut off within {limit:?}"
        );
    }

    // Silent connections (nothing after connect), including ADS (HTTP/2) and the webhook
    // (before its TLS handshake): closed by the first-byte timeout.
    for (name, addr) in [
        ("controller ADS", mesh.controller.xds),
        ("controller CA and ADS (TLS)", secure_address(net)),
        ("controller webhook", webhook_address(net)),
        ("proxy outbound", SocketAddr::new(client, 15001)),
    ] {
        let mut conns = flood(addr, 1).await;
        all_closed(&mut conns, limit)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    // Slow bodies: 40 webhook clients declare 8 MiB and stop one byte short. Memory stays
    // bounded (the body budget), every one is answered or closed within the body timeout.
    let baseline = mesh.controller.process.rss_kib();
    let mut clients = Vec::new();
    for _ in 0..40 {
        let connector = cert.connector();
        let addr = webhook_address(net);
        clients.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("weft-webhook").expect("name");
            let mut tls = connector.connect(name, tcp).await.expect("TLS");
            let declared = 8 * 1024 * 1024;
            let head = format!(
                "POST /validate HTTP/1.1\r\nHost: weft-webhook\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < declared - 1 {
                let n = chunk.len().min(declared - 1 - sent);
                if tls.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                sent += n;
            }
            let mut reply = Vec::new();
            let _ = tls.read_to_end(&mut reply).await;
        }));
    }
    let started = Instant::now();
    let mut peak = baseline;
    while clients.iter().any(|c| !c.is_finished()) {
        peak = peak.max(mesh.controller.process.rss_kib());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "slow webhook clients still connected after 30s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "webhook slow bodies: RSS {} MiB → peak {} MiB, done in {:?}",
        baseline / 1024,
        peak / 1024,
        started.elapsed()
    );
    // The body budget is 64 MiB; without it 40 × 8 MiB would be held.
    assert!(grown_mib < 160, "controller RSS grew by {grown_mib} MiB");
    assert!(webhook_get_ready(&cert, webhook_address(net)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_controller_with_connected_proxies_and_a_restart_binds_at_once() {
    let mut mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let client = weft_e2e::HttpClient::new();
    let syncz = format!("http://{}/debug/syncz", mesh.controller.debug);
    eventually(
        Duration::from_secs(10),
        "three proxies connected",
        || async { (connected_proxies(&client, &syncz).await? == 3).then_some(()) },
    )
    .await;

    let started = Instant::now();
    mesh.controller.process.terminate();
    let status = mesh
        .controller
        .process
        .wait_exit(Duration::from_secs(8))
        .await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the controller did not exit cleanly within 8s (grace period 5s): {status:?}\n{}",
        mesh.controller.process.log()
    );
    let took = started.elapsed();
    let log = mesh.controller.process.log();
    assert!(log.contains("ending ADS streams"), "{log}");
    eprintln!("controller stopped {took:?} after SIGTERM");

    // The proxies keep serving, and a new controller binds the same ports at once.
    let load = mesh.load(100, 4, &[]).await;
    assert!(load.failures.is_empty(), "{:?}", load.failures);
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v2", 100)]),
    );
    let config = mesh.config_dir();
    let logs = mesh.log_dir();
    mesh.controller = Controller::start(mesh.net, &config, &logs).await;
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(15))
        .await;
    assert_no_leftover(&mesh.controller.process, Path::new(&logs));
}

/// The restarted controller's log shows it took its ports without an error.
fn assert_no_leftover(controller: &Process, logs: &Path) {
    let log = controller.log();
    assert!(
        !log.contains("cannot listen"),
        "restart could not bind (logs in {}):\n{log}",
        logs.display()
    );
}

/// `kill -<signal> <pid>`.
fn signal(process: &Process, signal: &str) {
    let pid = process.pid().expect("process is running");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The number of proxies with an ADS stream, from `/debug/syncz`.
async fn connected_proxies(client: &weft_e2e::HttpClient, syncz: &str) -> Option<usize> {
    let reply = client.get_url(syncz).await.ok()?;
    let proxies: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
    Some(proxies.as_array()?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_drop_a_proxy_that_stopped_answering() {
    let options = MeshOptions {
        controller: [
            "--xds-keepalive-interval",
            "1s",
            "--xds-keepalive-timeout",
            "1s",
        ]
        .map(String::from)
        .to_vec(),
        ..MeshOptions::default()
    };
    let mesh = Mesh::start_with(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 100)]))],
        &options,
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(10))
        .await;
    let client = weft_e2e::HttpClient::new();
    let syncz = format!("http://{}/debug/syncz", mesh.controller.debug);
    eventually(
        Duration::from_secs(10),
        "three proxies connected",
        || async { (connected_proxies(&client, &syncz).await? == 3).then_some(()) },
    )
    .await;

    // A frozen proxy answers no ping: the controller drops its stream.
    signal(&mesh.client.process, "STOP");
    eventually(
        Duration::from_secs(10),
        "the frozen proxy dropped",
        || async { (connected_proxies(&client, &syncz).await? == 2).then_some(()) },
    )
    .await;
    let log = mesh.controller.process.log();
    signal(&mesh.client.process, "CONT");

    // Thawed, it reconnects and gets the config changed meanwhile.
    eventually(Duration::from_secs(15), "the proxy back", || async {
        (connected_proxies(&client, &syncz).await? == 3).then_some(())
    })
    .await;
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v2", 100)]),
    );
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(15))
        .await;
    assert!(log.contains("ADS stream ended"), "{log}");
}
