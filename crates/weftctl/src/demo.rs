//! `weftctl demo`: the local demo. Control plane, three app versions with sidecars, and a
//! client sidecar on loopback; traffic shares shown live while the routing changes.
//!
//! ```text
//!  demo traffic ──► client sidecar 127.0.10.10:15001 ──► reviews-vN sidecar 127.0.10.1N:15006 ──► app :9080
//!                          ▲ xDS                                 ▲ xDS
//!                          └──────── weft-controller 127.0.10.1:15010 ◄── copy of examples/local/
//! ```

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::process::{Child, Command};

const CONTROLLER_IP: &str = "127.0.10.1";
const CLIENT_IP: &str = "127.0.10.10";
const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];
const APP_PORT: u16 = 9080;
/// One request in this many carries `end-user: jason`.
const JASON_EVERY: u64 = 4;
const PHASE: Duration = Duration::from_secs(5);

/// The VirtualService the demo switches to half-way through.
const JASON_ROUTE: &str = "\
# Rewritten by `weftctl demo`: jason sees v2; everyone else is split 50/50 between v1 and v3.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
";

pub struct Options {
    /// Directory holding `weft-controller` and `weft-proxy`; found (and built) next to
    /// this executable when not given.
    pub bin_dir: Option<PathBuf>,
    /// The config to start from.
    pub config_dir: PathBuf,
}

/// Runs the demo; every process it starts is stopped when this returns or on Ctrl-C.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let bin_dir = match options.bin_dir {
        Some(dir) => dir,
        None => build_binaries()?,
    };
    let work = tempfile_dir()?;
    let result = tokio::select! {
        result = demo(&bin_dir, &options.config_dir, &work) => result,
        _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted; stopped every process the demo started")),
    };
    // Children are killed on drop inside `demo`; only the scratch directory is left.
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn demo(bin_dir: &Path, config_src: &Path, work: &Path) -> anyhow::Result<()> {
    let config_dir = work.join("config");
    copy_yaml_dir(config_src, &config_dir)?;
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    println!(
        "weft demo: config copied to {}, logs in {}",
        config_dir.display(),
        logs.display()
    );

    let mut children = Processes::default();
    let xds = format!("http://{CONTROLLER_IP}:15010");
    children.spawn(
        &logs,
        "weft-controller",
        Command::new(bin_dir.join("weft-controller"))
            .arg("--config-dir")
            .arg(&config_dir)
            .args(["--xds-address", &format!("{CONTROLLER_IP}:15010")])
            .args(["--debug-address", &format!("{CONTROLLER_IP}:15014")]),
    )?;
    let me = std::env::current_exe().context("locating weftctl")?;
    for (i, version) in VERSIONS.iter().enumerate() {
        let ip = format!("127.0.10.{}", 11 + i);
        children.spawn(
            &logs,
            &format!("reviews-{version}"),
            Command::new(&me).args([
                "demo-app",
                "--listen",
                &format!("{ip}:{APP_PORT}"),
                "--service",
                "reviews",
                "--version",
                version,
            ]),
        )?;
        children.spawn(
            &logs,
            &format!("sidecar-reviews-{version}"),
            Command::new(bin_dir.join("weft-proxy")).args([
                "--xds-address",
                &xds,
                "--instance-ip",
                &ip,
                "--app-port",
                &APP_PORT.to_string(),
                "--workload-name",
                &format!("reviews-{version}"),
                "--labels",
                &format!("app=reviews,version={version}"),
            ]),
        )?;
    }
    children.spawn(
        &logs,
        "sidecar-client",
        Command::new(bin_dir.join("weft-proxy")).args([
            "--xds-address",
            &xds,
            "--instance-ip",
            CLIENT_IP,
            "--workload-name",
            "client",
            "--labels",
            "app=client",
        ]),
    )?;

    let http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let started = Instant::now();
    wait_ready(
        &http,
        &mut children,
        &format!("http://{CONTROLLER_IP}:15014/ready"),
    )
    .await?;
    for ip in ["127.0.10.10", "127.0.10.11", "127.0.10.12", "127.0.10.13"] {
        wait_ready(&http, &mut children, &format!("http://{ip}:15000/ready")).await?;
    }
    println!(
        "weft demo: mesh ready in {:.1}s\n",
        started.elapsed().as_secs_f64()
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Owned here: if the demo is interrupted, dropping the set aborts the workers.
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..8 {
        workers.spawn(drive(http.clone(), tally.clone(), stop.clone(), w));
    }

    println!("phase 1: reviews split 80/10/10 across v1/v2/v3");
    let phase1 = watch_phase(&tally, &mut children, PHASE).await?;

    println!(
        "\nphase 2: rewriting reviews-virtualservice.yaml: end-user jason -> v2, others 50/50 v1/v3"
    );
    let switched = Instant::now();
    tally.mark_switch();
    write_atomically(&config_dir.join("reviews-virtualservice.yaml"), JASON_ROUTE)?;
    let phase2 = watch_phase(&tally, &mut children, PHASE).await?;
    stop.store(true, Ordering::Relaxed);
    workers.join_all().await;
    let moved_after = tally.moved_after();

    println!();
    let mut failures = Vec::new();
    let p1 = phase1.all();
    check(&mut failures, "phase 1 v1 share", p1[0], 80.0, 3.0);
    check(&mut failures, "phase 1 v2 share", p1[1], 10.0, 3.0);
    check(&mut failures, "phase 1 v3 share", p1[2], 10.0, 3.0);
    // Phase 2 is judged on the requests after the switch settled.
    let others = phase2.others();
    check(
        &mut failures,
        "phase 2 others v1 share",
        others[0],
        50.0,
        4.0,
    );
    check(
        &mut failures,
        "phase 2 others v2 share",
        others[1],
        0.0,
        0.5,
    );
    check(
        &mut failures,
        "phase 2 others v3 share",
        others[2],
        50.0,
        4.0,
    );
    check(
        &mut failures,
        "phase 2 jason v2 share",
        phase2.jason()[1],
        100.0,
        0.5,
    );
    match moved_after {
        Some(after) if after <= Duration::from_secs(1) => {
            println!(
                "routing moved {:.0} ms after the file was written",
                after.as_secs_f64() * 1e3
            )
        }
        Some(after) => failures.push(format!(
            "routing took {:.2}s to move (want under 1s)",
            after.as_secs_f64()
        )),
        None => failures.push("routing never moved to the new VirtualService".into()),
    }
    let errors = tally.errors.load(Ordering::Relaxed);
    let total = tally.total();
    println!(
        "{total} requests, {errors} failed, over {:.1}s",
        switched.elapsed().as_secs_f64() + PHASE.as_secs_f64()
    );
    if errors > 0 {
        failures.push(format!("{errors} requests failed"));
    }
    children.stop_all().await;
    if failures.is_empty() {
        println!("weft demo: OK");
        Ok(())
    } else {
        bail!("weft demo: {}", failures.join("; "))
    }
}

fn check(failures: &mut Vec<String>, what: &str, got: f64, want: f64, tolerance: f64) {
    if (got - want).abs() > tolerance {
        failures.push(format!("{what} is {got:.1}%, want {want:.0}±{tolerance}"));
    }
}

/// Request counts by (audience, version); audience 0 is everyone but jason, 1 is jason.
#[derive(Default)]
struct Tally {
    counts: [[AtomicU64; 3]; 2],
    errors: AtomicU64,
    /// Set when the VirtualService was rewritten.
    switch_at: std::sync::OnceLock<Instant>,
    /// Latest time (µs after the switch) a jason request was still served by the old routing.
    last_old_route_us: AtomicU64,
    /// Whether any jason request was served by v2 after the switch.
    saw_new_route: AtomicBool,
}

impl Tally {
    fn snapshot(&self) -> Counts {
        let mut c = Counts::default();
        for (a, row) in self.counts.iter().enumerate() {
            for (v, n) in row.iter().enumerate() {
                c.0[a][v] = n.load(Ordering::Relaxed);
            }
        }
        c
    }

    fn total(&self) -> u64 {
        let c = self.snapshot();
        c.0.iter().flatten().sum()
    }

    fn mark_switch(&self) {
        let _ = self.switch_at.set(Instant::now());
    }

    fn record(&self, jason: bool, version: usize, sent: Instant) {
        self.counts[usize::from(jason)][version].fetch_add(1, Ordering::Relaxed);
        let Some(&switch) = self.switch_at.get() else {
            return;
        };
        if !jason || sent < switch {
            return;
        }
        if version == 1 {
            self.saw_new_route.store(true, Ordering::Relaxed);
        } else {
            let us = u64::try_from(sent.duration_since(switch).as_micros()).unwrap_or(u64::MAX);
            self.last_old_route_us.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// How long after the switch the last request still took the old route.
    fn moved_after(&self) -> Option<Duration> {
        self.saw_new_route
            .load(Ordering::Relaxed)
            .then(|| Duration::from_micros(self.last_old_route_us.load(Ordering::Relaxed)))
    }
}

#[derive(Default, Clone, Copy)]
struct Counts([[u64; 3]; 2]);

impl Counts {
    fn minus(&self, earlier: &Counts) -> Counts {
        let mut c = Counts::default();
        for a in 0..2 {
            for v in 0..3 {
                c.0[a][v] = self.0[a][v] - earlier.0[a][v];
            }
        }
        c
    }
    fn shares(row: [u64; 3]) -> [f64; 3] {
        let total: u64 = row.iter().sum();
        if total == 0 {
            return [0.0; 3];
        }
        row.map(|n| n as f64 * 100.0 / total as f64)
    }
    fn all(&self) -> [f64; 3] {
        Self::shares([0, 1, 2].map(|v| self.0[0][v] + self.0[1][v]))
    }
    fn others(&self) -> [f64; 3] {
        Self::shares(self.0[0])
    }
    fn jason(&self) -> [f64; 3] {
        Self::shares(self.0[1])
    }
}

fn format_shares(label: &str, shares: [f64; 3]) -> String {
    format!(
        "{label:<8} v1 {:5.1}%  v2 {:5.1}%  v3 {:5.1}%",
        shares[0], shares[1], shares[2]
    )
}

/// Prints the shares every half second for `length`; returns the counts of the phase,
/// leaving out its first second (the time a config change takes to settle).
async fn watch_phase(
    tally: &Tally,
    children: &mut Processes,
    length: Duration,
) -> anyhow::Result<Counts> {
    let start = tally.snapshot();
    let started = Instant::now();
    let mut settled = None;
    let mut previous = start;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.tick().await;
    while started.elapsed() < length {
        ticker.tick().await;
        children.check_alive()?;
        let now = tally.snapshot();
        let window = now.minus(&previous);
        previous = now;
        if settled.is_none() && started.elapsed() >= Duration::from_secs(1) {
            settled = Some(now);
        }
        println!(
            "  t={:>4.1}s  {}   |  {}   ({} req/s, {} failed)",
            started.elapsed().as_secs_f64(),
            format_shares("others", window.others()),
            format_shares("jason", window.jason()),
            window.0.iter().flatten().sum::<u64>() * 2,
            tally.errors.load(Ordering::Relaxed),
        );
    }
    let end = tally.snapshot();
    Ok(end.minus(&settled.unwrap_or(start)))
}

async fn drive(
    http: Client<HttpConnector, Empty<Bytes>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    worker: u64,
) {
    let mut n = worker;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let jason = n.is_multiple_of(JASON_EVERY);
        let mut req = http::Request::get(format!("http://{CLIENT_IP}:15001/"))
            .header(http::header::HOST, "reviews:9080");
        if jason {
            req = req.header("end-user", "jason");
        }
        let Ok(req) = req.body(Empty::new()) else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let sent = Instant::now();
        let version = match http.request(req).await {
            Ok(resp) if resp.status().is_success() => {
                let version = resp
                    .headers()
                    .get("x-weft-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| VERSIONS.iter().position(|known| *known == v));
                let _ = resp.into_body().collect().await;
                version
            }
            Ok(resp) => {
                tracing::warn!(status = %resp.status(), "demo request failed");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "demo request failed");
                None
            }
        };
        match version {
            Some(v) => tally.record(jason, v, sent),
            None => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn wait_ready(
    http: &Client<HttpConnector, Empty<Bytes>>,
    children: &mut Processes,
    url: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        children.check_alive()?;
        let uri: http::Uri = url.parse()?;
        if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(1), http.get(uri)).await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} was not ready after 20s; see the logs");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The processes the demo started; all are killed when this is dropped.
#[derive(Default)]
struct Processes(Vec<(String, PathBuf, Child)>);

impl Processes {
    fn spawn(&mut self, logs: &Path, name: &str, command: &mut Command) -> anyhow::Result<()> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.0.push((name.to_owned(), log, child));
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, log, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: Vec<_> = tail.lines().rev().take(15).collect();
                bail!(
                    "{name} exited ({status}); last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    }

    async fn stop_all(&mut self) {
        for (_, _, child) in &mut self.0 {
            let _ = child.start_kill();
        }
        for (_, _, child) in &mut self.0 {
            let _ = child.wait().await;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Builds `weft-controller` and `weft-proxy` with the profile this binary was built with,
/// so the demo never runs stale binaries, and returns their directory.
fn build_binaries() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating weftctl")?;
    let dir = exe
        .parent()
        .context("weftctl has no parent directory")?
        .to_path_buf();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    if manifest.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command.arg("build").arg("--manifest-path").arg(&manifest);
        if dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        command.args(["-p", "weft-controller", "-p", "weft-proxy"]);
        println!("weft demo: building weft-controller and weft-proxy");
        let status = command.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build of weft-controller and weft-proxy failed ({status})");
        }
    }
    for bin in ["weft-controller", "weft-proxy"] {
        if !dir.join(bin).exists() {
            bail!(
                "{bin} not found in {}; build it or pass --bin-dir",
                dir.display()
            );
        }
    }
    Ok(dir)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("weft-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn copy_yaml_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    let entries = std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = path.file_name().context("file without a name")?;
            std::fs::copy(&path, to.join(name))?;
        }
    }
    Ok(())
}

/// Writes via a temporary file and a rename, as editors do, so the watcher never reads half a file.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Parses `ip:port`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, APP_PORT)))
        .map_err(|e| format!("expected IP:PORT, got {s:?}: {e}"))
}
