//! `weftctl analyze` (istioctl analyze): findings about a mesh's config, each with Istio's
//! message code where Istio has one (`IST0101`, …) or a Weft code (`WEFT0001`, …) where it
//! has none; the analyzers are pure functions over a [`input::Snapshot`] (`docs/ANALYZE.md`
//! lists every check).
//!
//! ```text
//!  input.rs           files (-f, recursive) and/or the cluster → Snapshot
//!  mesh.rs            what the controller would make of it: hosts, workloads, mTLS, Sidecars
//!  virtual_service.rs IST0101 host / host+subset / gateway, IST0109, WEFT0003
//!  destination_rule.rs IST0127 (a routed subset that selects no workload)
//!  sidecar.rs         WEFT0004 (a Sidecar hides a host a route needs)
//!  gateway.rs         IST0101 selector (live cluster only)
//!  mtls.rs            WEFT0001 / WEFT0002 (plaintext seen by proxies, before STRICT)
//!  unsupported.rs     WEFT0008 (fields and kinds Weft accepts but does not act on yet)
//!  output.rs          istioctl's lines, -o json|yaml, thresholds
//! ```

mod destination_rule;
mod gateway;
pub mod input;
pub mod mesh;
pub mod mtls;
pub mod output;
mod sidecar;
mod unsupported;
pub mod virtual_service;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::remote::KubeArgs;

/// How bad a finding is (istioctl's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message type: its code, its name and its level, as Istio's `messages.yaml` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub code: &'static str,
    pub name: &'static str,
    pub level: Level,
}

const fn message(code: &'static str, name: &'static str, level: Level) -> Message {
    Message { code, name, level }
}

/// Istio's codes (pkg/config/analysis/msg/messages.yaml).
pub const REFERENCED_RESOURCE_NOT_FOUND: Message =
    message("IST0101", "ReferencedResourceNotFound", Level::Error);
pub const SCHEMA_VALIDATION_ERROR: Message =
    message("IST0106", "SchemaValidationError", Level::Error);
pub const CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS: Message = message(
    "IST0109",
    "ConflictingMeshGatewayVirtualServiceHosts",
    Level::Error,
);
pub const NO_MATCHING_WORKLOADS_FOUND: Message =
    message("IST0127", "NoMatchingWorkloadsFound", Level::Warning);
pub const INSUFFICIENT_PERMISSIONS: Message =
    message("IST0141", "InsufficientPermissions", Level::Error);
pub const UNSUPPORTED_KUBERNETES_VERSION: Message =
    message("IST0142", "UnsupportedKubernetesVersion", Level::Error);
pub const PODS_PROXY_IMAGE_MISMATCH: Message = message(
    "IST0158",
    "PodsIstioProxyImageMismatchInNamespace",
    Level::Warning,
);

/// Weft's codes, for what Istio has no analyzer for (`WEFT0001`…; `docs/ANALYZE.md`).
pub const PLAINTEXT_WOULD_BE_REJECTED: Message =
    message("WEFT0001", "PlaintextWouldBeRejected", Level::Error);
pub const PLAINTEXT_TRAFFIC: Message = message("WEFT0002", "PlaintextTraffic", Level::Warning);
pub const VIRTUAL_SERVICE_HOST_NOT_FOUND: Message =
    message("WEFT0003", "VirtualServiceHostNotFound", Level::Warning);
pub const SIDECAR_HIDES_ROUTE_DESTINATION: Message =
    message("WEFT0004", "SidecarHidesRouteDestination", Level::Error);
pub const UNSUPPORTED_CRD_VERSION: Message =
    message("WEFT0005", "UnsupportedCrdVersion", Level::Error);
pub const EXISTING_CONTROL_PLANE: Message =
    message("WEFT0006", "ExistingControlPlane", Level::Info);
pub const METRICS_UNREADABLE: Message = message("WEFT0007", "MetricsUnreadable", Level::Info);
pub const UNSUPPORTED_CONFIG: Message = message("WEFT0008", "UnsupportedConfig", Level::Warning);

/// Every message type weftctl reports (the docs test checks each has its row).
#[cfg(test)]
pub const MESSAGES: &[Message] = &[
    REFERENCED_RESOURCE_NOT_FOUND,
    SCHEMA_VALIDATION_ERROR,
    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
    NO_MATCHING_WORKLOADS_FOUND,
    INSUFFICIENT_PERMISSIONS,
    UNSUPPORTED_KUBERNETES_VERSION,
    PODS_PROXY_IMAGE_MISMATCH,
    PLAINTEXT_WOULD_BE_REJECTED,
    PLAINTEXT_TRAFFIC,
    VIRTUAL_SERVICE_HOST_NOT_FOUND,
    SIDECAR_HIDES_ROUTE_DESTINATION,
    UNSUPPORTED_CRD_VERSION,
    EXISTING_CONTROL_PLANE,
    METRICS_UNREADABLE,
    UNSUPPORTED_CONFIG,
];

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    pub kind: String,
    /// `None` for cluster-scoped objects (and the cluster itself).
    pub namespace: Option<String>,
    pub name: String,
}

impl ResourceRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }

    pub fn cluster(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            namespace: None,
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Where an object was read from: a file and the line its document starts at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub message: Message,
    pub resource: ResourceRef,
    /// The file and line of the object, when it came from a file.
    pub origin: Option<Origin>,
    /// The text, in the wording of Istio's template for the code.
    pub text: String,
}

impl Finding {
    pub fn new(message: Message, resource: ResourceRef, text: impl Into<String>) -> Self {
        Self {
            message,
            resource,
            origin: None,
            text: text.into(),
        }
    }

    pub fn at(mut self, origin: Option<&Origin>) -> Self {
        self.origin = origin.cloned();
        self
    }

    pub fn level(&self) -> Level {
        self.message.level
    }

    /// The sort key: errors first, then by code, resource and text (istioctl sorts by level
    /// and code, then origin).
    fn key(&self) -> (std::cmp::Reverse<Level>, &str, &ResourceRef, &str) {
        (
            std::cmp::Reverse(self.level()),
            self.message.code,
            &self.resource,
            &self.text,
        )
    }
}

/// Every config analyzer over one snapshot, findings sorted, duplicates removed. Invalid
/// documents become IST0106; the metrics samples feed the plaintext check ([`mtls`]).
pub fn analyze(snapshot: &input::Snapshot, traffic: &[mtls::Scrape]) -> Vec<Finding> {
    let mesh = mesh::Mesh::new(snapshot);
    let mut findings: Vec<Finding> = snapshot
        .invalid
        .iter()
        .map(|invalid| {
            Finding::new(
                SCHEMA_VALIDATION_ERROR,
                invalid.resource.clone(),
                format!("Schema validation error: {}", invalid.error),
            )
            .at(invalid.origin.as_ref())
        })
        .collect();
    findings.extend(virtual_service::analyze(&mesh));
    findings.extend(destination_rule::analyze(&mesh));
    findings.extend(sidecar::analyze(&mesh));
    findings.extend(gateway::analyze(&mesh));
    findings.extend(mtls::analyze(&mesh, traffic));
    findings.extend(unsupported::analyze(snapshot));
    sort(&mut findings);
    findings
}

/// Sorts findings (errors first) and drops duplicates.
pub fn sort(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| a.key().cmp(&b.key()));
    findings.dedup();
}

/// `weftctl analyze`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Files or directories (read recursively: every `*.yaml`, `*.yml`, `*.json`) to
    /// analyze; with the cluster, they are laid over it (same kind/namespace/name
    /// replaces), as if applied.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// More files or directories, as the positional arguments.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<PathBuf>,
    /// `false`: analyze the files only (local mode: the controller's config directory, where
    /// ServiceEntries stand for services); `true`: the cluster too (the kubeconfig).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub use_kube: bool,
    /// The namespace to report on (default: the kubeconfig context's with the cluster;
    /// every namespace with files only). Objects in files that name no namespace are put
    /// in it (`default` when it is not given).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Report on every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// How to print the findings.
    #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Log)]
    pub output: output::Format,
    /// Exit non-zero (79, as istioctl) when a finding is at this level or above (any case:
    /// `Error`, as istioctl spells it, or `error`).
    #[arg(long, value_enum, ignore_case = true, default_value_t = Level::Error)]
    pub failure_threshold: Level,
    /// Print only findings at this level or above (any case).
    #[arg(long, value_enum, ignore_case = true, default_value_t = Level::Info)]
    pub output_threshold: Level,
    /// Read the sidecars' metrics (15090 `/stats/prometheus`) to find workloads still
    /// receiving plaintext (WEFT0001/WEFT0002): through the API server's pod proxy with
    /// the cluster, else from `--metrics`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub traffic: bool,
    /// A sidecar's metrics address (`http://HOST:15090`) to read in local mode; repeat for
    /// several.
    #[arg(long, value_name = "URL")]
    pub metrics: Vec<String>,
    /// The cluster's DNS domain (short host names become `<name>.<namespace>.svc.<domain>`).
    #[arg(long, default_value = "cluster.local")]
    pub domain: String,
    /// The mesh's root namespace (mesh-wide Sidecars and PeerAuthentications).
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// How long each request to the cluster or a sidecar may take.
    #[arg(long, default_value = "10s", value_parser = crate::remote::parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Why `weftctl analyze` could not analyze.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("nothing to analyze: give files (-f) or drop --use-kube=false")]
    Nothing,
    #[error("cannot print the findings: {0}")]
    Print(String),
}

/// Exit code when findings reach `--failure-threshold` (istioctl's `ExitAnalyzerFoundIssues`).
pub const EXIT_FOUND_ISSUES: u8 = 79;

/// Runs `weftctl analyze`: returns whether findings reached the failure threshold.
pub async fn run(args: Args) -> Result<bool, AnalyzeError> {
    let mut paths = args.files.clone();
    paths.extend(args.filenames.iter().cloned());
    if paths.is_empty() && !args.use_kube {
        return Err(AnalyzeError::Nothing);
    }
    let settings = input::Settings {
        domain: args.domain.clone(),
        root_namespace: args.root_namespace.clone(),
    };
    let mut traffic = mtls::Scraped::default();
    let (snapshot, scope) = if args.use_kube {
        let api = crate::remote::KubeApi::connect(&args.kube, "--use-kube=false").await?;
        let default_ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| api.default_namespace.clone());
        let cluster = input::from_cluster(&api, &settings, args.timeout).await?;
        let files = input::from_files(&paths, &default_ns, &settings)?;
        let scope = (!args.all_namespaces).then_some(default_ns);
        if args.traffic {
            // Which sidecars to read is decided by the cluster's own config.
            let live = mesh::Mesh::new(&cluster);
            traffic = mtls::scrape_cluster(&api, &live, scope.as_deref(), args.timeout).await;
        }
        (cluster.overlay(files), scope)
    } else {
        let default_ns = args.namespace.clone().unwrap_or_else(|| "default".into());
        let files = input::from_files(&paths, &default_ns, &settings)?;
        let scope = args.namespace.clone().filter(|_| !args.all_namespaces);
        if args.traffic {
            traffic = mtls::scrape_addresses(&args.metrics, args.timeout).await;
        }
        (files, scope)
    };
    let mut findings = analyze(&snapshot, &traffic.scrapes);
    findings.extend(traffic.failures);
    sort(&mut findings);
    let shown: Vec<Finding> = findings
        .into_iter()
        .filter(|f| {
            scope.as_deref().is_none_or(|ns| {
                f.resource
                    .namespace
                    .as_deref()
                    .is_none_or(|found| found == ns)
            })
        })
        .collect();
    let failed = shown.iter().any(|f| f.level() >= args.failure_threshold);
    let printed: Vec<&Finding> = shown
        .iter()
        .filter(|f| f.level() >= args.output_threshold)
        .collect();
    let what = match &scope {
        Some(ns) => format!("namespace: {ns}"),
        None => "all namespaces".to_string(),
    };
    let text = output::render(&printed, args.output).map_err(AnalyzeError::Print)?;
    print!("{text}");
    if args.output == output::Format::Log {
        if printed.is_empty() {
            eprintln!("\u{2714} No validation issues found when analyzing {what}.");
        } else if failed {
            eprintln!("Error: Analyzers found issues when analyzing {what}.");
            eprintln!("See docs/ANALYZE.md for the causes and fixes of each code.");
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests;
