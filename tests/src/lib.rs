//! End-to-end test harness: runs the real `weft-controller`, `weft-proxy` and `weftctl
//! demo-app` binaries on loopback and talks to them over real sockets.
//!
//! Every test gets its own block of loopback addresses (`127.<A>.<B>.0/24`), so tests run
//! in parallel with the standard ports (15000, 15001, 15006, 15010, …) on every "pod".
//! Processes are killed when their handle is dropped, also when a test panics.

pub mod api_cases;
pub mod jaeger;
pub mod k8s;
pub mod node;
pub mod prom_text;
pub mod prometheus;
pub mod xds_peer;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

pub use tempfile::TempDir;

/// Paths of the binaries under test.
pub struct Bins {
    pub controller: PathBuf,
    pub proxy: PathBuf,
    pub weftctl: PathBuf,
}

/// Builds the binaries once per test process (only when missing or stale) with the
/// profile the tests were built with, and returns their paths. Panics, never skips, when
/// they cannot be built.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps")
            .to_path_buf();
        let bins = Bins {
            controller: dir.join("weft-controller"),
            proxy: dir.join("weft-proxy"),
            weftctl: dir.join("weftctl"),
        };
        // `cargo test --workspace` has built them already (with its own feature set, which a
        // plain `cargo build` would not reuse); build only when they are missing or older
        // than the sources, e.g. under `cargo test -p weft-e2e` after an edit.
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let oldest = [&bins.controller, &bins.proxy, &bins.weftctl]
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect::<Option<Vec<_>>>()
            .and_then(|times| times.into_iter().min());
        if oldest.is_none() || newest_source(&workspace) > oldest {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .arg("build")
                .arg("--manifest-path")
                .arg(workspace.join("Cargo.toml"));
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            build.args(["-p", "weft-controller", "-p", "weft-proxy", "-p", "weftctl"]);
            let status = build
                .status()
                .expect("running cargo build for the end-to-end binaries");
            assert!(
                status.success(),
                "cargo build of the binaries under test failed"
            );
        }
        for path in [&bins.controller, &bins.proxy, &bins.weftctl] {
            assert!(path.exists(), "{} was not built", path.display());
        }
        bins
    })
}

/// A mesh-wide STRICT PeerAuthentication (root namespace `istio-system`): the hop between two
/// sidecars must be mutual TLS.
pub const MESH_STRICT: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
";

/// Istio's own samples and API (`../shared/corpus/istio/` beside the repo), read in place;
/// panics when it is missing.
pub fn istio_corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/istio");
    assert!(
        dir.is_dir(),
        "the shared Istio corpus is missing at {}",
        dir.display()
    );
    dir
}

/// The newest modification time of the sources the binaries are built from.
fn newest_source(workspace: &Path) -> Option<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Test and bench files are not in the binaries: editing them relinks nothing.
                if !path.ends_with("tests") && !path.ends_with("benches") {
                    walk(&path, newest);
                }
            } else if path.extension().is_some_and(|e| e == "rs" || e == "toml")
                && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            {
                *newest = (*newest).max(Some(modified));
            }
        }
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut newest =
        modified(&workspace.join("Cargo.lock")).max(modified(&workspace.join("Cargo.toml")));
    for dir in ["crates", "proxy", "control-plane"] {
        walk(&workspace.join(dir), &mut newest);
    }
    newest
}

/// A test's block of loopback addresses.
#[derive(Clone, Copy, Debug)]
pub struct Net {
    a: u8,
    b: u8,
}

impl Net {
    /// A fresh block, distinct from every other test's in this and (very likely) any
    /// concurrently running test process.
    pub fn new() -> Self {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let b = NEXT.fetch_add(1, Ordering::Relaxed);
        let a = 100 + (std::process::id() % 100) as u8;
        Self { a, b }
    }

    /// The address of host `n` in this block. By convention 1 is the control plane,
    /// 10 the client sidecar, 11.. the app instances.
    pub fn ip(&self, n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.a, self.b, n))
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process killed (and reaped) on drop, with its output in a log file.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, command: &mut Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("creating a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .env(
                "RUST_LOG",
                std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory (`VmRSS`) in KiB; panics if the process is gone.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("the process is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the process (SIGKILL: no chance to say goodbye) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop, as Kubernetes does).
    pub fn terminate(&mut self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("running kill");
            assert!(status.success(), "kill -TERM {} failed", self.name);
        }
    }

    /// Waits up to `limit` for the process to exit; its exit status, or `None` if still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics with the log's tail if the process has exited.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "{} is not running; its log:\n{}",
                self.name,
                tail(&self.log(), 40)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.name, tail(&self.log(), 60));
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<_> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `weft-controller` in local mode.
pub struct Controller {
    pub process: Process,
    pub xds: SocketAddr,
    pub debug: SocketAddr,
}

impl Controller {
    pub async fn start(net: Net, config_dir: &Path, log_dir: &Path) -> Self {
        Self::start_with(net, config_dir, log_dir, &[]).await
    }

    /// Starts a controller with extra flags.
    pub async fn start_with(net: Net, config_dir: &Path, log_dir: &Path, extra: &[String]) -> Self {
        let xds = SocketAddr::new(net.ip(1), 15010);
        let debug = SocketAddr::new(net.ip(1), 15014);
        let process = Process::spawn(
            "weft-controller",
            Command::new(&bins().controller)
                .arg("--config-dir")
                .arg(config_dir)
                .args(["--xds-address", &xds.to_string()])
                .args(["--debug-address", &debug.to_string()])
                .args(extra),
            log_dir,
        );
        let mut controller = Self {
            process,
            xds,
            debug,
        };
        wait_ok(&format!("http://{debug}/ready"), &mut controller.process).await;
        controller
    }

    pub fn xds_url(&self) -> String {
        format!("http://{}", self.xds)
    }
}

/// A `weft-proxy` sidecar on its own loopback address.
pub struct Sidecar {
    pub process: Process,
    pub ip: IpAddr,
}

impl Sidecar {
    /// Starts a sidecar and waits until it has its first config.
    pub async fn start(
        ip: IpAddr,
        xds_url: &str,
        workload: &str,
        labels: &str,
        app_port: Option<u16>,
        log_dir: &Path,
    ) -> Self {
        Self::start_with(ip, xds_url, workload, labels, app_port, log_dir, &[]).await
    }

    /// Starts a sidecar with extra flags.
    pub async fn start_with(
        ip: IpAddr,
        xds_url: &str,
        workload: &str,
        labels: &str,
        app_port: Option<u16>,
        log_dir: &Path,
        extra: &[String],
    ) -> Self {
        let mut command = Command::new(&bins().proxy);
        command.args(extra);
        command
            .args(["--xds-address", xds_url])
            .args(["--instance-ip", &ip.to_string()])
            .args(["--workload-name", workload])
            .args(["--namespace", "default"])
            .args(["--labels", labels]);
        if let Some(port) = app_port {
            command.args(["--app-port", &port.to_string()]);
        }
        let mut process = Process::spawn(&format!("sidecar-{workload}"), &mut command, log_dir);
        wait_ok(&format!("http://{ip}:15000/ready"), &mut process).await;
        Self { process, ip }
    }

    /// The outbound listener, for clients that use this sidecar.
    pub fn outbound(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15001)
    }
}

/// One instance of the built-in demo app.
pub struct App {
    pub process: Process,
    pub addr: SocketAddr,
}

impl App {
    pub async fn start(addr: SocketAddr, service: &str, version: &str, log_dir: &Path) -> Self {
        Self::start_with(addr, service, version, log_dir, &[]).await
    }

    /// [`App::start`] with extra `weftctl demo-app` flags (failure modes: `--reset-ratio`, …).
    pub async fn start_with(
        addr: SocketAddr,
        service: &str,
        version: &str,
        log_dir: &Path,
        extra: &[String],
    ) -> Self {
        let mut process = Process::spawn(
            &format!("app-{service}-{version}"),
            Command::new(&bins().weftctl)
                .args([
                    "demo-app",
                    "--listen",
                    &addr.to_string(),
                    "--service",
                    service,
                    "--version",
                    version,
                ])
                .args(extra),
            log_dir,
        );
        // The stats endpoint answers even when the app is told to fail every request.
        wait_ok(&format!("http://{addr}/__demo/stats"), &mut process).await;
        Self { process, addr }
    }

    /// The app's request counters (`GET /__demo/stats`): `total`, `ok`, `failed`, `reset`,
    /// `hung`, `delayed`.
    pub async fn stats(&self) -> std::collections::BTreeMap<String, u64> {
        let reply = HttpClient::new()
            .get_url(&format!("http://{}/__demo/stats", self.addr))
            .await
            .unwrap_or_else(|e| panic!("stats of the app at {}: {e}", self.addr));
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("stats of the app at {}: {e}: {}", self.addr, reply.body))
    }
}

/// Polls `url` until it answers 2xx; panics after 20 s or when `process` dies.
pub async fn wait_ok(url: &str, process: &mut Process) {
    let client = HttpClient::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        process.assert_running();
        if let Ok(reply) = client.get_url(url).await
            && reply.status.is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready after 20s; {} log:\n{}",
            process.name,
            tail(&process.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What a request got back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: http::StatusCode,
    /// The demo app's `x-weft-version`, when an app answered.
    pub version: Option<String>,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }

    pub async fn get_url(&self, url: &str) -> Result<Reply, String> {
        let req = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    /// Sends `method path` to `via` (a sidecar's outbound listener) for `host`, with extra headers.
    pub async fn request(
        &self,
        via: SocketAddr,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{via}{path}"))
            .header(http::header::HOST, host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Reply, String> {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out after 10s".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let version = headers
            .get("x-weft-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            version,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Writes `contents` to `dir/name` via a rename, as editors do.
pub fn write_file(dir: &Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("writing config");
    std::fs::rename(&tmp, dir.join(name)).expect("renaming config into place");
}

/// Retries `check` every 20 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reviews service of the tests: a ServiceEntry, one WorkloadEntry per version
/// (addresses `net.ip(11 + i)`, pointing at the sidecar's inbound port), and a
/// DestinationRule with one subset per version.
/// One reply of [`Mesh::samples`]: status, response flags (`x-weft-response-flags`), body, and how
/// long it took.
#[derive(Debug, Clone)]
pub struct Sample {
    pub status: u16,
    pub flags: String,
    pub body: String,
    pub latency: Duration,
}

/// A VirtualService sending every request for reviews to the whole service, without retries
/// (so every failure reaches the caller and outlier detection).
pub const REVIEWS_WITHOUT_RETRIES: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 0}
";

pub fn reviews_service_yaml(net: Net, versions: &[&str]) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: reviews}
",
    );
    for (i, version) in versions.iter().enumerate() {
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-{version}
  namespace: default
spec:
  address: {ip}
  ports: {{http: 15006}}
  labels: {{app: reviews, version: {version}}}
",
            ip = net.ip(11 + i as u8)
        ));
    }
    yaml.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  subsets:
",
    );
    for version in versions {
        yaml.push_str(&format!(
            "  - name: {version}\n    labels: {{version: {version}}}\n"
        ));
    }
    yaml
}

/// A VirtualService for reviews splitting traffic by `weights` (subset, weight).
pub fn split_vs(weights: &[(&str, i32)]) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
",
    );
    for (subset, weight) in weights {
        yaml.push_str(&format!(
            "    - destination: {{host: reviews, subset: {subset}}}\n      weight: {weight}\n"
        ));
    }
    yaml
}

/// Extra flags for the processes of a [`Mesh`].
#[derive(Debug, Clone, Default)]
pub struct MeshOptions {
    /// The address block (default: a new one).
    pub net: Option<Net>,
    pub controller: Vec<String>,
    pub proxy: Vec<String>,
    /// Extra `weftctl demo-app` flags for every reviews app (failure modes).
    pub app: Vec<String>,
    /// The reviews DestinationRule's `trafficPolicy`, as a YAML flow mapping.
    pub traffic_policy: Option<String>,
    /// The locality (`region/zone/subzone`) of each reviews WorkloadEntry, in version order
    /// (none: no locality).
    pub localities: Vec<String>,
    /// Workload identities: the controller runs its CA (`<dir>/ca`, bootstrap tokens in
    /// `<dir>/tokens/default/<service account>`), every sidecar gets a certificate (service
    /// account `reviews` or `client`), and the reviews endpoints are marked as having a
    /// sidecar (`security.istio.io/tlsMode: istio`), so traffic between sidecars is mutual TLS.
    pub identity: bool,
}

/// The flags that give a sidecar its identity in a [`Mesh`] with `identity`.
pub fn identity_flags(net: Net, dir: &Path, service_account: &str) -> Vec<String> {
    vec![
        "--ca-address".into(),
        format!("https://{}", SocketAddr::new(net.ip(1), 15012)),
        "--ca-root-cert".into(),
        dir.join("ca/root-cert.pem").display().to_string(),
        "--ca-token-file".into(),
        dir.join("tokens/default")
            .join(service_account)
            .display()
            .to_string(),
        "--service-account".into(),
        service_account.into(),
    ]
}

/// The whole mesh of a test: control plane, reviews apps with sidecars, a client sidecar.
pub struct Mesh {
    pub net: Net,
    pub dir: TempDir,
    pub controller: Controller,
    pub apps: Vec<App>,
    pub sidecars: Vec<Sidecar>,
    pub client: Sidecar,
    pub http: HttpClient,
}

impl Mesh {
    /// Starts the mesh with reviews `versions` and the extra config files `files`
    /// (name, contents) in the config directory.
    pub async fn start(versions: &[&str], files: &[(&str, &str)]) -> Self {
        Self::start_with(versions, files, &MeshOptions::default()).await
    }

    /// [`Mesh::start`] with extra flags for the controller and the sidecars.
    pub async fn start_with(
        versions: &[&str],
        files: &[(&str, &str)],
        options: &MeshOptions,
    ) -> Self {
        let net = options.net.unwrap_or_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&config).expect("config dir");
        std::fs::create_dir_all(&logs).expect("log dir");
        let mut service = reviews_service_yaml(net, versions);
        for (version, locality) in versions.iter().zip(&options.localities) {
            service = service.replace(
                &format!("  labels: {{app: reviews, version: {version}}}\n"),
                &format!(
                    "  labels: {{app: reviews, version: {version}}}\n  locality: {locality}\n"
                ),
            );
        }
        if let Some(policy) = &options.traffic_policy {
            service = service.replace(
                "  host: reviews\n  subsets:",
                &format!("  host: reviews\n  trafficPolicy: {policy}\n  subsets:"),
            );
        }
        let mut controller_flags = options.controller.clone();
        if options.identity {
            // The reviews workloads have sidecars, with ServiceAccount `reviews`.
            service = service.replace(
                "  labels: {app: reviews, version: ",
                "  serviceAccount: reviews\n  labels: {security.istio.io/tlsMode: istio, app: reviews, version: ",
            );
            let tokens = dir.path().join("tokens/default");
            std::fs::create_dir_all(&tokens).expect("token dir");
            for account in ["reviews", "client"] {
                write_file(
                    &tokens,
                    account,
                    &format!("bootstrap-token-{account}-{}", net.ip(1)),
                );
            }
            controller_flags.extend([
                "--ca-dir".to_string(),
                dir.path().join("ca").display().to_string(),
                "--ca-token-dir".to_string(),
                dir.path().join("tokens").display().to_string(),
            ]);
        }
        write_file(&config, "reviews-service.yaml", &service);
        for (name, contents) in files {
            write_file(&config, name, contents);
        }
        let controller = Controller::start_with(net, &config, &logs, &controller_flags).await;
        // With identities, the sidecars get their config over TLS (15012), as their
        // certificate proves who they are.
        let xds_url = if options.identity {
            format!("https://{}", SocketAddr::new(net.ip(1), 15012))
        } else {
            controller.xds_url()
        };
        let proxy_flags = |account: &str| {
            let mut flags = options.proxy.clone();
            if options.identity {
                flags.extend(identity_flags(net, dir.path(), account));
            }
            flags
        };
        let mut apps = Vec::new();
        let mut sidecars = Vec::new();
        for (i, version) in versions.iter().enumerate() {
            let ip = net.ip(11 + i as u8);
            apps.push(
                App::start_with(
                    SocketAddr::new(ip, 9080),
                    "reviews",
                    version,
                    &logs,
                    &options.app,
                )
                .await,
            );
            sidecars.push(
                Sidecar::start_with(
                    ip,
                    &xds_url,
                    &format!("reviews-{version}"),
                    &format!("app=reviews,version={version}"),
                    Some(9080),
                    &logs,
                    &proxy_flags("reviews"),
                )
                .await,
            );
        }
        let client = Sidecar::start_with(
            net.ip(10),
            &xds_url,
            "client",
            "app=client",
            None,
            &logs,
            &proxy_flags("client"),
        )
        .await;
        Self {
            net,
            dir,
            controller,
            apps,
            sidecars,
            client,
            http: HttpClient::new(),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// `requests` GETs of `path` to reviews through the client sidecar, from `workers`
    /// clients at once (each sends its share one after another): every reply, with its
    /// latency. A request that gets no reply at all fails the test.
    pub async fn samples(&self, workers: usize, requests: usize, path: &str) -> Vec<Sample> {
        let workers = workers.max(1);
        let mut tasks = Vec::new();
        for worker in 0..workers {
            let (http, via, path) = (self.http.clone(), self.client.outbound(), path.to_string());
            let count = requests / workers + usize::from(worker < requests % workers);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
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
                    out.push(Sample {
                        status: reply.status.as_u16(),
                        flags,
                        body: reply.body,
                        latency: start.elapsed(),
                    });
                }
                out
            }));
        }
        let mut all = Vec::with_capacity(requests);
        for task in tasks {
            all.extend(task.await.expect("load worker"));
        }
        all
    }

    /// Restarts reviews app `index` (its version the `index`th of v1, v2, v3) at its address
    /// with `weftctl demo-app` `flags` (failure modes; none: healthy).
    pub async fn restart_app(&mut self, index: usize, flags: &[&str]) {
        let addr = self.apps[index].addr;
        let version = ["v1", "v2", "v3"][index];
        self.apps[index].process.kill();
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        self.apps[index] = App::start_with(addr, "reviews", version, &self.log_dir(), &flags).await;
    }

    /// `GET path` to reviews through the client sidecar.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        self.http
            .request(self.client.outbound(), "GET", "reviews:9080", path, headers)
            .await
    }

    /// Waits until `path` (with `headers`) is answered by `version` ten times in a row,
    /// within `limit`: a single answer could come from a split that merely includes it.
    pub async fn wait_for_version(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        version: &str,
        limit: Duration,
    ) {
        eventually(limit, &format!("{path} to reach {version}"), || async {
            for _ in 0..10 {
                match self.get(path, headers).await {
                    Ok(reply) if reply.version.as_deref() == Some(version) => {}
                    _ => return None,
                }
            }
            Some(())
        })
        .await
    }

    /// Waits until the client sidecar routes reviews at all (its first routes arrived).
    pub async fn wait_for_routes(&self, limit: Duration) {
        eventually(limit, "the first routes", || async {
            self.get("/", &[])
                .await
                .ok()
                .filter(|r| r.status.is_success())
                .map(|_| ())
        })
        .await
    }

    /// Sends `n` requests over `concurrency` connections; returns the count per version
    /// and the failures.
    pub async fn load(&self, n: usize, concurrency: usize, headers: &[(&str, &str)]) -> Load {
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let http = HttpClient::new();
            let via = self.client.outbound();
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let count = n / concurrency + usize::from(worker < n % concurrency);
            tasks.push(tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut load = Load::default();
                for _ in 0..count {
                    match http
                        .request(via, "GET", "reviews:9080", "/", &headers)
                        .await
                    {
                        Ok(reply) if reply.status.is_success() => {
                            *load
                                .by_version
                                .entry(reply.version.unwrap_or_default())
                                .or_default() += 1
                        }
                        Ok(reply) => {
                            load.failures
                                .push(format!("{} {}", reply.status, reply.body.trim()))
                        }
                        Err(e) => load.failures.push(e),
                    }
                }
                load
            }));
        }
        let mut total = Load::default();
        for task in tasks {
            let load = task.await.expect("load worker");
            for (version, n) in load.by_version {
                *total.by_version.entry(version).or_default() += n;
            }
            total.failures.extend(load.failures);
        }
        total
    }
}

/// Outcome of [`Mesh::load`].
#[derive(Debug, Default)]
pub struct Load {
    pub by_version: std::collections::BTreeMap<String, usize>,
    pub failures: Vec<String>,
}

impl Load {
    pub fn total(&self) -> usize {
        self.by_version.values().sum::<usize>() + self.failures.len()
    }

    /// Percentage of all requests answered by `version`.
    pub fn share(&self, version: &str) -> f64 {
        let n = self.by_version.get(version).copied().unwrap_or(0);
        n as f64 * 100.0 / self.total().max(1) as f64
    }
}
