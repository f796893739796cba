//! Plaintext before STRICT: which workloads still receive plaintext, from their own
//! sidecars' metrics (15090 `/stats/prometheus`: `istio_requests_total` and
//! `istio_tcp_connections_opened_total` with `reporter="destination"` and
//! `connection_security_policy="none"`). [`analyze`] is pure over (config, samples):
//!
//! - the workload's PeerAuthentication mode (the config analyzed, files included) is
//!   STRICT: WEFT0001 (Error) on that policy, the switch would reject this traffic;
//! - PERMISSIVE or DISABLE: WEFT0002 (Warning) on the workload, one per
//!   (source → destination) pair, to fix before a switch to STRICT.
//!
//! [`scrape_cluster`] reads the sidecars through the API server's pod proxy
//! (`…/pods/<pod>:15090/proxy/stats/prometheus`): every injected, Running pod whose mode in
//! the cluster is not STRICT already (its counters then predate the switch).
//! [`scrape_addresses`] reads `--metrics` addresses (local mode); the workload is then the
//! metrics' `destination_workload`, its labels `app`/`version` from `destination_app` and
//! `destination_version`.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_api::security::MtlsMode;

use super::mesh::{Labels, Mesh};
use super::{
    Finding, METRICS_UNREADABLE, PLAINTEXT_TRAFFIC, PLAINTEXT_WOULD_BE_REJECTED, ResourceRef,
};
use crate::remote::{KubeApi, Remote};

/// The sidecars' Prometheus port and path.
pub const METRICS_PORT: u16 = 15090;
pub const METRICS_PATH: &str = "/stats/prometheus";

const REQUESTS: &str = "istio_requests_total";
const CONNECTIONS: &str = "istio_tcp_connections_opened_total";

/// One sample of a text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus' text exposition format (version 0.0.4): `name{l="v",…} value
/// [timestamp]` lines; comments and blank lines are skipped. An error names the line.
/// (A small reader of the sample lines, which is all the check needs.)
pub fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let (found, brace) = parse_labels(inner).map_err(|why| bad(&why))?;
            labels = found;
            rest = &inner[brace + 1..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .map_err(|_| bad("a value that is not a number"))?,
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// Parses `k="v",k="v"}`: the labels and the index of the closing brace.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, usize), String> {
    let mut labels = BTreeMap::new();
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let trimmed = rest.trim_start_matches([',', ' ']);
        at += rest.len() - trimmed.len();
        if trimmed.starts_with('}') {
            return Ok((labels, at));
        }
        let eq = trimmed.find('=').ok_or("a label without =")?;
        let key = trimmed[..eq].trim().to_string();
        let value_text = trimmed[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut escaped = false;
        let mut close = None;
        for (i, c) in value_text.char_indices() {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    close = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let close = close.ok_or("an unterminated label value")?;
        labels.insert(key, value);
        at += eq + 2 + close + 1;
    }
}

/// The metrics of one workload's sidecar.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scrape {
    pub namespace: String,
    /// The pod, or (local mode) the metrics' `destination_workload`.
    pub workload: String,
    /// The workload's labels (PeerAuthentication selectors match them).
    pub labels: Labels,
    /// `Pod` or `Workload`: the kind findings name.
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// What scraping found: the metrics read, and the sidecars that could not be read
/// (WEFT0007, Info).
#[derive(Debug, Default)]
pub struct Scraped {
    pub scrapes: Vec<Scrape>,
    pub failures: Vec<Finding>,
}

/// Plaintext seen by one sidecar, per (source namespace/workload, destination
/// namespace/workload): (requests, TCP connections).
type Pairs = BTreeMap<(String, String), (f64, f64)>;

fn plaintext_pairs(scrape: &Scrape) -> Pairs {
    let mut pairs = Pairs::new();
    let label = |s: &Sample, key: &str| {
        s.labels
            .get(key)
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    };
    for sample in &scrape.samples {
        let requests = sample.name == REQUESTS;
        if !(requests || sample.name == CONNECTIONS)
            || sample.labels.get("reporter").map(String::as_str) != Some("destination")
            || sample
                .labels
                .get("connection_security_policy")
                .map(String::as_str)
                != Some("none")
            || sample.value <= 0.0
        {
            continue;
        }
        let source = format!(
            "{}/{}",
            label(sample, "source_workload_namespace"),
            label(sample, "source_workload")
        );
        let destination = format!(
            "{}/{}",
            label(sample, "destination_workload_namespace"),
            label(sample, "destination_workload")
        );
        let entry = pairs.entry((source, destination)).or_default();
        if requests {
            entry.0 += sample.value;
        } else {
            entry.1 += sample.value;
        }
    }
    pairs
}

fn counts(requests: f64, connections: f64) -> String {
    let mut parts = Vec::new();
    if requests > 0.0 {
        parts.push(format!("{requests} requests"));
    }
    if connections > 0.0 {
        parts.push(format!("{connections} TCP connections"));
    }
    parts.join(", ")
}

/// WEFT0001/WEFT0002 for every (source → destination) pair seen in plaintext.
pub fn analyze(mesh: &Mesh<'_>, scrapes: &[Scrape]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for scrape in scrapes {
        let (mode, policy) = mesh.mtls_mode(&scrape.namespace, &scrape.labels);
        for ((source, destination), (requests, connections)) in plaintext_pairs(scrape) {
            let seen = counts(requests, connections);
            let finding = match (mode, policy) {
                (MtlsMode::Strict, Some(policy)) => Finding::new(
                    PLAINTEXT_WOULD_BE_REJECTED,
                    policy.resource(),
                    format!(
                        "Workload {destination} still receives plaintext from {source} ({seen}, \
                         seen by {} {}/{}); this STRICT policy will reject it. Inject a sidecar \
                         into the source, or keep PERMISSIVE until it is gone.",
                        scrape.kind, scrape.namespace, scrape.workload
                    ),
                )
                .at(policy.origin.as_ref()),
                _ => Finding::new(
                    PLAINTEXT_TRAFFIC,
                    ResourceRef::new(&scrape.kind, &scrape.namespace, &scrape.workload),
                    format!(
                        "Workload {destination} receives plaintext from {source} ({seen}) under \
                         mTLS mode {mode:?}{}: a switch to STRICT would reject it.",
                        policy
                            .map(|p| format!(
                                " (PeerAuthentication {}/{})",
                                p.namespace,
                                p.object.name()
                            ))
                            .unwrap_or_default()
                    ),
                ),
            };
            findings.push(finding);
        }
    }
    findings
}

/// Reads the sidecars of the injected, Running pods (in `namespace`, else everywhere)
/// whose mode in `live` (the cluster's own config) is not STRICT.
pub async fn scrape_cluster(
    api: &KubeApi,
    live: &Mesh<'_>,
    namespace: Option<&str>,
    timeout: Duration,
) -> Scraped {
    let mut tasks = tokio::task::JoinSet::new();
    for workload in live.workloads() {
        if workload.kind != "Pod"
            || !workload.injected
            || workload.running_ip.is_none()
            || namespace.is_some_and(|ns| ns != workload.namespace)
            || live.mtls_mode(&workload.namespace, &workload.labels).0 == MtlsMode::Strict
        {
            continue;
        }
        let remote = api.pod(&workload.namespace, &workload.name, METRICS_PORT);
        let scrape = Scrape {
            namespace: workload.namespace.clone(),
            workload: workload.name.clone(),
            labels: workload.labels.clone(),
            kind: "Pod".into(),
            samples: Vec::new(),
        };
        tasks.spawn(async move {
            let read = read(&remote, timeout).await;
            (scrape, read)
        });
    }
    let mut scraped = Scraped::default();
    while let Some(done) = tasks.join_next().await {
        let Ok((mut scrape, read)) = done else {
            continue;
        };
        match read {
            Ok(samples) => {
                scrape.samples = samples;
                scraped.scrapes.push(scrape);
            }
            Err(error) => scraped.failures.push(unreadable(
                ResourceRef::new("Pod", &scrape.namespace, &scrape.workload),
                &error,
            )),
        }
    }
    scraped
        .scrapes
        .sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    scraped
}

/// Reads `--metrics` addresses (local mode): one scrape per destination workload found in
/// each.
pub async fn scrape_addresses(addresses: &[String], timeout: Duration) -> Scraped {
    let mut scraped = Scraped::default();
    for address in addresses {
        let read = match Remote::direct(address) {
            Ok(remote) => read(&remote, timeout).await,
            Err(error) => Err(error.to_string()),
        };
        match read {
            Ok(samples) => scraped.scrapes.extend(by_destination(samples)),
            Err(error) => scraped
                .failures
                .push(unreadable(ResourceRef::cluster("Metrics", address), &error)),
        }
    }
    scraped
}

/// Groups samples by their destination workload (local mode, where no pod is known).
pub fn by_destination(samples: Vec<Sample>) -> Vec<Scrape> {
    let mut by: BTreeMap<(String, String), Scrape> = BTreeMap::new();
    for sample in samples {
        let get = |key: &str| sample.labels.get(key).filter(|v| *v != "unknown").cloned();
        let (Some(namespace), Some(workload)) = (
            get("destination_workload_namespace"),
            get("destination_workload"),
        ) else {
            continue;
        };
        let mut labels = Labels::new();
        if let Some(app) = get("destination_app") {
            labels.insert("app".into(), app);
        }
        if let Some(version) = get("destination_version") {
            labels.insert("version".into(), version);
        }
        by.entry((namespace.clone(), workload.clone()))
            .or_insert_with(|| Scrape {
                namespace,
                workload,
                labels,
                kind: "Workload".into(),
                samples: Vec::new(),
            })
            .samples
            .push(sample);
    }
    by.into_values().collect()
}

async fn read(remote: &Remote, timeout: Duration) -> Result<Vec<Sample>, String> {
    let body = remote
        .get(METRICS_PATH, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body);
    parse_metrics(&text).map_err(|e| format!("{}: {e}", remote.url(METRICS_PATH)))
}

fn unreadable(resource: ResourceRef, error: &str) -> Finding {
    Finding::new(
        METRICS_UNREADABLE,
        resource,
        format!("Cannot read the sidecar's metrics, its plaintext traffic is not checked: {error}"),
    )
}
