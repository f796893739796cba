//! A real Prometheus (Debian's `prometheus` package) for the end-to-end tests: it scrapes the
//! given targets every second, on a loopback address of the test's own block, and answers
//! PromQL over its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{HttpClient, Process};

/// One scrape target: a job name, an address and a metrics path.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub addr: SocketAddr,
    pub path: String,
}

impl Target {
    pub fn new(job: &str, addr: SocketAddr, path: &str) -> Self {
        Self {
            job: job.into(),
            addr,
            path: path.into(),
        }
    }
}

/// One series of a PromQL instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A running Prometheus.
pub struct Prometheus {
    pub process: Process,
    pub addr: SocketAddr,
    http: HttpClient,
}

/// The Prometheus binary: `$WEFT_PROMETHEUS`, else `prometheus` on the `PATH` (Debian's
/// package, which `.ci/run` installs). Missing, the test fails saying so.
fn binary() -> String {
    if let Ok(path) = std::env::var("WEFT_PROMETHEUS") {
        return path;
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("prometheus").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "no `prometheus` on the PATH: install Debian's prometheus package (apt-get install prometheus; .ci/run does), or set WEFT_PROMETHEUS"
    );
    "prometheus".into()
}

impl Prometheus {
    /// Starts Prometheus on `addr`, scraping `targets` every second; waits until every
    /// target is up.
    pub async fn start(addr: SocketAddr, targets: &[Target], dir: &Path) -> Self {
        let home = dir.join("prometheus");
        std::fs::create_dir_all(home.join("data")).expect("prometheus dir");
        let mut config = String::from(
            "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        // One scrape config per job, with all of its targets (job names must be unique).
        let mut jobs: Vec<(&str, &str, Vec<String>)> = Vec::new();
        for t in targets {
            match jobs.iter_mut().find(|(job, _, _)| *job == t.job) {
                Some((_, path, addrs)) => {
                    assert_eq!(*path, t.path, "one metrics path per job ({})", t.job);
                    addrs.push(format!("'{}'", t.addr));
                }
                None => jobs.push((&t.job, &t.path, vec![format!("'{}'", t.addr)])),
            }
        }
        for (job, path, addrs) in jobs {
            config.push_str(&format!(
                "- job_name: {job}\n  metrics_path: {path}\n  static_configs: [{{targets: [{}]}}]\n",
                addrs.join(", ")
            ));
        }
        let file = home.join("prometheus.yml");
        std::fs::write(&file, config).expect("prometheus.yml");
        let process = Process::spawn(
            "prometheus",
            Command::new(binary())
                .arg(format!("--config.file={}", file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    home.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                // Debian's defaults point at /usr/share/prometheus; the tests need neither.
                .arg("--web.console.templates=/nonexistent")
                .arg("--web.console.libraries=/nonexistent"),
            dir,
        );
        let mut prometheus = Self {
            process,
            addr,
            http: HttpClient::new(),
        };
        let want = targets.len() as f64;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let up = prometheus.try_query("sum(up)").await;
            if up
                .as_ref()
                .is_ok_and(|up| up.first().map(|s| s.value) == Some(want))
            {
                return prometheus;
            }
            if std::time::Instant::now() > deadline || !prometheus.process.is_running() {
                let health = prometheus
                    .http
                    .request(addr, "GET", &addr.to_string(), "/api/v1/targets", &[])
                    .await
                    .map(|r| r.body);
                panic!(
                    "Prometheus: not every target up (after 30s, or it exited) (sum(up): {up:?});\ntargets: {health:?}\nlog:\n{}",
                    prometheus.process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An instant query; `Err` while Prometheus does not answer or refuses the query.
    pub async fn try_query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let path = format!(
            "/api/v1/query?query={}",
            form_urlencoded::byte_serialize(promql.as_bytes()).collect::<String>()
        );
        let reply = self
            .http
            .request(self.addr, "GET", &self.addr.to_string(), &path, &[])
            .await?;
        let body: serde_json::Value = serde_json::from_str(&reply.body)
            .map_err(|e| format!("{promql}: not JSON ({e}): {}", reply.body))?;
        if body["status"] != "success" {
            return Err(format!("{promql}: {}", reply.body));
        }
        let result = body["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("{promql}: no result: {}", reply.body))?;
        result
            .iter()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("{promql}: bad value in {series}"))?;
                Ok(Series { labels, value })
            })
            .collect()
    }

    /// An instant query; a refused query fails the test with Prometheus' answer.
    pub async fn query(&self, promql: &str) -> Vec<Series> {
        self.try_query(promql)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
