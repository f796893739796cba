//! A real trace backend for the end-to-end tests: Jaeger v2, built from source by
//! `tests/trace/build.sh` (cached under `~/.cache/weft/trace`), with in-memory storage, taking
//! OTLP/gRPC and Zipkin's span API (its collector's `zipkin` receiver) on one address of the
//! test's block and answering Jaeger's query API (`/api/traces`) on another port of it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use crate::{HttpClient, Process};

/// Runs `tests/trace/build.sh` once per test process (a no-op when its stamp matches) and
/// returns the binary. Panics with the build's output when it fails.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("WEFT_JAEGER") {
            return PathBuf::from(path);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("trace/build.sh");
        let run = |args: &[&str]| {
            let output = Command::new("bash")
                .arg(&script)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                output.status.success(),
                "{} {args:?} failed ({}):\n{text}",
                script.display(),
                output.status
            );
            text
        };
        let built = run(&[]);
        let bin = PathBuf::from(run(&["--print-bin-dir"]).trim()).join("jaeger");
        assert!(
            bin.is_file(),
            "{} missing after {}:\n{built}",
            bin.display(),
            script.display()
        );
        bin
    })
}

/// A running Jaeger.
pub struct Jaeger {
    pub process: Process,
    /// OTLP/gRPC.
    pub otlp: SocketAddr,
    /// Zipkin's span API (`POST /api/v2/spans`, v2 JSON).
    pub zipkin: SocketAddr,
    /// The query API and UI.
    pub query: SocketAddr,
    http: HttpClient,
}

/// One trace as Jaeger's query API returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    pub processes: BTreeMap<String, ProcessInfo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(rename = "processID")]
    pub process_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub ref_type: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    pub service_name: String,
}

impl Span {
    /// A tag's value as text.
    pub fn tag(&self, key: &str) -> Option<String> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| match &t.value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    }

    /// The span this one is a child of.
    pub fn parent(&self) -> Option<&str> {
        self.references
            .iter()
            .find(|r| r.ref_type == "CHILD_OF")
            .map(|r| r.span_id.as_str())
    }
}

impl Trace {
    /// The service a span was reported by.
    pub fn service(&self, span: &Span) -> &str {
        self.processes
            .get(&span.process_id)
            .map_or("", |p| p.service_name.as_str())
    }
}

#[derive(Deserialize)]
struct Traces {
    data: Option<Vec<Trace>>,
}

impl Jaeger {
    /// Starts Jaeger on `ip` (OTLP/gRPC on 4317, Zipkin on 9411, the query API on 16686) and
    /// waits until it answers.
    pub async fn start(ip: IpAddr, dir: &Path) -> Self {
        let home = dir.join("jaeger");
        std::fs::create_dir_all(&home).expect("jaeger dir");
        let otlp = SocketAddr::new(ip, 4317);
        let zipkin = SocketAddr::new(ip, 9411);
        let query = SocketAddr::new(ip, 16686);
        let config = format!(
            "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {{level: none}}
    logs: {{level: info}}
extensions:
  jaeger_query:
    storage: {{traces: memstore}}
    http: {{endpoint: '{query}'}}
    grpc: {{endpoint: '{grpc}'}}
  jaeger_storage:
    backends:
      memstore:
        memory: {{max_traces: 10000}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: '{otlp}'}}
  zipkin:
    endpoint: '{zipkin}'
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
",
            grpc = SocketAddr::new(ip, 16685),
        );
        let file = home.join("config.yaml");
        std::fs::write(&file, config).expect("jaeger config");
        let process = Process::spawn(
            "jaeger",
            Command::new(binary()).arg(format!("--config=file:{}", file.display())),
            dir,
        );
        let mut jaeger = Self {
            process,
            otlp,
            zipkin,
            query,
            http: HttpClient::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if jaeger.try_get("/api/services").await.is_ok() {
                return jaeger;
            }
            assert!(
                std::time::Instant::now() < deadline && jaeger.process.is_running(),
                "Jaeger did not answer on {query} within 30 s (or exited); log:\n{}",
                jaeger.process.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_get(&self, path: &str) -> Result<String, String> {
        let reply = self
            .http
            .request(self.query, "GET", &self.query.to_string(), path, &[])
            .await?;
        if !reply.status.is_success() {
            return Err(format!("{path}: {} {}", reply.status, reply.body));
        }
        Ok(reply.body)
    }

    /// The traces Jaeger holds with a span of `service` (at most 100, the newest first).
    pub async fn traces(&self, service: &str) -> Result<Vec<Trace>, String> {
        let body = self
            .try_get(&format!(
                "/api/traces?service={}&limit=100&lookback=1h",
                form_urlencoded::byte_serialize(service.as_bytes()).collect::<String>()
            ))
            .await?;
        let traces: Traces = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        Ok(traces.data.unwrap_or_default())
    }

    /// One trace by id (32 hex digits).
    pub async fn trace(&self, id: &str) -> Result<Option<Trace>, String> {
        let body = match self.try_get(&format!("/api/traces/{id}")).await {
            Ok(body) => body,
            Err(e) if e.contains("404") => return Ok(None),
            Err(e) => return Err(e),
        };
        let traces: Traces = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        Ok(traces.data.unwrap_or_default().into_iter().next())
    }
}
