//! Mutual TLS between real sidecars: identities from the controller's CA, traffic between
//! sidecars encrypted (a packet capture holds no plaintext HTTP), STRICT refusing plaintext
//! with a log line naming the peer and the policy, PERMISSIVE serving both, and certificate
//! and root rotation under a constant 500 requests/s with zero failures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_e2e::{HttpClient, MESH_STRICT, Mesh, MeshOptions, eventually, write_file};
use weft_identity::CaMaterial;

const MESH_PERMISSIVE: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: PERMISSIVE
";

fn identity_options(extra_proxy: &[&str]) -> MeshOptions {
    MeshOptions {
        identity: true,
        proxy: extra_proxy.iter().map(ToString::to_string).collect(),
        ..MeshOptions::default()
    }
}

/// The admin `/certs` JSON of a sidecar.
async fn certs(http: &HttpClient, ip: std::net::IpAddr) -> serde_json::Value {
    let reply = http
        .get_url(&format!("http://{ip}:15000/certs"))
        .await
        .expect("admin /certs");
    serde_json::from_str(&reply.body).expect("JSON")
}

/// A plaintext HTTP request straight to a sidecar's inbound port: the answer's first line,
/// or `None` when the connection is closed without one.
async fn plaintext_to(addr: SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines()
        .next()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
}

/// `tcpdump` writing the packets of `filter` on loopback into a file.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    async fn start(dir: &Path, filter: &str) -> Self {
        let file = dir.join("capture.pcap");
        let log = dir.join("tcpdump.log");
        let child = Command::new("tcpdump")
            // -Z root: keep writing into the test's private temp dir (tcpdump would otherwise
            // switch to its own user).
            .args(["-i", "lo", "--immediate-mode", "-U", "-s", "0", "-Z", "root", "-w"])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("tcpdump log"))
            .spawn()
            .expect("tcpdump (Debian package tcpdump, installed by .ci/run) must be on PATH and run as root");
        eventually(Duration::from_secs(10), "tcpdump listening", || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("listening on").then_some(())
        })
        .await;
        Self { child, file }
    }

    fn stop(mut self) -> Vec<u8> {
        // SIGINT makes tcpdump flush and exit.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let log =
            std::fs::read_to_string(self.file.with_file_name("tcpdump.log")).unwrap_or_default();
        std::fs::read(&self.file)
            .unwrap_or_else(|e| panic!("capture file: {e}; tcpdump said:\n{log}"))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_talk_mutual_tls_and_strict_refuses_plaintext() {
    let mesh = Mesh::start_with(
        &["v1"],
        &[("peer-authentication.yaml", MESH_STRICT)],
        &identity_options(&[]),
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(20))
        .await;
    // The controller's CA counts what it issued under istiod's name (every sidecar got one).
    let metrics = mesh
        .http
        .get_url(&format!("http://{}/metrics", mesh.controller.debug))
        .await
        .expect("controller /metrics");
    let issued = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("citadel_server_success_cert_issuance_count "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        issued.is_some_and(|n| n >= 2),
        "the client and reviews sidecars' certificates: {issued:?}\n{}",
        metrics.body
    );
    let reviews = mesh.sidecars[0].ip;
    let reviews_inbound = SocketAddr::new(reviews, 15006);

    let capture = Capture::start(
        mesh.dir.path(),
        &format!("tcp and host {reviews} and port 15006"),
    )
    .await;
    for i in 0..20 {
        let reply = mesh
            .get(
                &format!("/secret-path-{i}"),
                &[("x-canary", "plaintext-marker")],
            )
            .await
            .expect("request");
        assert!(reply.status.is_success(), "{} {}", reply.status, reply.body);
    }
    // The packets reach the file as they are captured (--immediate-mode, -U).
    let file = capture.file.clone();
    eventually(Duration::from_secs(10), "the capture written", || async {
        (std::fs::metadata(&file).map_or(0, |m| m.len()) > 4096).then_some(())
    })
    .await;
    let packets = capture.stop();
    assert!(
        contains(&packets, &[0x17, 0x03, 0x03]),
        "TLS application-data records were captured (the connection may predate the capture, so no handshake is expected)"
    );
    for plaintext in [
        &b"secret-path"[..],
        b"plaintext-marker",
        b"HTTP/1.1",
        b"reviews:9080",
        b"GET /",
    ] {
        assert!(
            !contains(&packets, plaintext),
            "{:?} crossed between the sidecars in plaintext",
            String::from_utf8_lossy(plaintext)
        );
    }

    let server = certs(&mesh.http, reviews).await;
    assert_eq!(
        server["identity"],
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    let client = certs(&mesh.http, mesh.client.ip).await;
    assert_eq!(
        client["identity"],
        "spiffe://cluster.local/ns/default/sa/client"
    );
    assert_eq!(client["roots"].as_array().map(Vec::len), Some(1));

    // STRICT: a plaintext client is refused, and the sidecar says who and why.
    assert_eq!(
        plaintext_to(reviews_inbound).await,
        None,
        "STRICT answered plaintext"
    );
    let sidecar = &mesh.sidecars[0].process;
    eventually(
        Duration::from_secs(10),
        "the refusal logged with peer and policy",
        || async {
            let log = sidecar.log();
            (log.contains("plaintext connection from 127.")
                && log.contains("PeerAuthentication istio-system/default"))
            .then_some(())
        },
    )
    .await;

    // PERMISSIVE: the same port serves plaintext too.
    write_file(
        &mesh.config_dir(),
        "peer-authentication.yaml",
        MESH_PERMISSIVE,
    );
    let first_line = eventually(
        Duration::from_secs(20),
        "plaintext served under PERMISSIVE",
        || async { plaintext_to(reviews_inbound).await },
    )
    .await;
    assert!(first_line.starts_with("HTTP/1.1 200"), "{first_line}");
    let reply = mesh.get("/", &[]).await.expect("request");
    assert!(
        reply.status.is_success(),
        "mutual TLS still works under PERMISSIVE"
    );
}

/// Sends GET requests at `rate` per second until `stop`; returns (sent, failures).
async fn constant_load(mesh: &Mesh, rate: u32, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let via = mesh.client.outbound();
    let http = HttpClient::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let http = http.clone();
        sent += 1;
        tasks.spawn(async move {
            match http.request(via, "GET", "reviews:9080", "/", &[]).await {
                Ok(reply) if reply.status.is_success() => None,
                Ok(reply) => Some(format!("{} {}", reply.status, reply.body.trim())),
                Err(err) => Some(err),
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Some(failure) = result.expect("request task") {
            failures.push(failure);
        }
    }
    (sent, failures)
}

async fn issued(mesh: &Mesh, ip: std::net::IpAddr) -> u64 {
    certs(&mesh.http, ip).await["issued"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_root_rotate_under_load_without_failures() {
    // Certificates of 4 s: each sidecar renews about every 2 s.
    let mesh = Mesh::start_with(
        &["v1"],
        &[("peer-authentication.yaml", MESH_STRICT)],
        &identity_options(&["--workload-cert-ttl", "4s"]),
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(20))
        .await;
    let ips = [mesh.sidecars[0].ip, mesh.client.ip];
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let mesh = &mesh;
        async move { constant_load(mesh, 500, stop).await }
    };
    let rotation = async {
        // Several renewals of every certificate.
        let start = [issued(&mesh, ips[0]).await, issued(&mesh, ips[1]).await];
        for (ip, before) in ips.iter().zip(start) {
            eventually(Duration::from_secs(30), "three renewals", || async {
                (issued(&mesh, *ip).await >= before + 3).then_some(())
            })
            .await;
        }

        // Root rotation: old root → old + new bundle → new signer → new root only.
        let ca_dir = mesh.dir.path().join("ca");
        let old = CaMaterial::read_dir(&ca_dir)
            .expect("read")
            .expect("the CA");
        let new = CaMaterial::self_signed("cluster.local", Duration::from_secs(86_400))
            .expect("new root");
        let both = format!("{}{}", old.root_cert, new.root_cert);
        CaMaterial {
            root_cert: both.clone(),
            ..old.clone()
        }
        .write_dir(&ca_dir)
        .expect("step 1");
        for ip in ips {
            eventually(Duration::from_secs(30), "both roots trusted", || async {
                (certs(&mesh.http, ip).await["roots"]
                    .as_array()
                    .map(Vec::len)
                    == Some(2))
                .then_some(())
            })
            .await;
        }
        CaMaterial {
            root_cert: both,
            ..new.clone()
        }
        .write_dir(&ca_dir)
        .expect("step 2");
        // Every sidecar renews (twice, to be past the controller's reload) from the new signer.
        let now = [issued(&mesh, ips[0]).await, issued(&mesh, ips[1]).await];
        for (ip, before) in ips.iter().zip(now) {
            eventually(
                Duration::from_secs(30),
                "renewed from the new root",
                || async { (issued(&mesh, *ip).await >= before + 3).then_some(()) },
            )
            .await;
        }
        new.write_dir(&ca_dir).expect("step 3");
        for ip in ips {
            eventually(Duration::from_secs(30), "the old root gone", || async {
                (certs(&mesh.http, ip).await["roots"]
                    .as_array()
                    .map(Vec::len)
                    == Some(1))
                .then_some(())
            })
            .await;
        }
        // Keep the load on the new root for a few renewals more.
        let now = issued(&mesh, ips[1]).await;
        eventually(
            Duration::from_secs(30),
            "renewals on the new root",
            || async { (issued(&mesh, ips[1]).await >= now + 2).then_some(()) },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
    };
    let ((sent, failures), ()) = tokio::join!(load, rotation);
    assert!(sent > 2000, "the load ran ({sent} requests)");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}
