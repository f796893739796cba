//! Span export: a bounded queue in front of one task that batches finished spans by collector
//! and sends them with OTLP/gRPC (`TraceService/Export`) through the collector's cluster.
//!
//! ```text
//!  Tracer::submit (request tasks; try_send: a full queue drops the span, counted)
//!     ─► ExportTask::run: up to MAX_BATCH spans, or what came within the flush interval
//!        ─► per collector (cluster, service.name): one ExportTraceServiceRequest
//!           ─► the config's cluster ─► an endpoint ─► its HTTP/2 pool (endpoint::send)
//! ```
//! Through the cluster, as Envoy's `envoy_grpc`: the collector's endpoints, balancing and
//! transport security are the mesh's (mutual TLS to a collector with a sidecar). The gRPC
//! framing is written here (5 bytes and a `grpc-status`): tonic's client would bring its own
//! channel and bypass the cluster. A failed export is dropped (counted, warned at most every
//! 10 s): spans are never retried, so a dead collector costs bounded memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::ProxyConfig;
use crate::config::trace::Provider;
use crate::upstream::Protocol;
use crate::upstream::body::RequestBody;

/// Spans sent in one export at most.
pub const MAX_BATCH: usize = 512;
/// Finished spans waiting for export at most (Envoy's OpenTelemetry `max_cache_size` is 1024).
pub const QUEUE: usize = 2048;
/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How spans are exported.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often finished spans are sent (Envoy's OpenTelemetry flush interval is 5 s).
    pub flush_interval: Duration,
    /// The proxy's node id (the `node_id` tag).
    pub node_id: String,
}

/// The request tasks' side: where finished spans go.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<(Arc<Provider>, otlp::Span)>,
    node_id: String,
    pub stats: Arc<Stats>,
}

/// Spans by fate, for the proxy's metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Accepted by a collector.
    pub exported: AtomicU64,
    /// Lost to a full queue.
    pub dropped: AtomicU64,
    /// Lost to a failed export.
    pub failed: AtomicU64,
}

/// The tracer's counters as the proxy's metrics (`weft_trace_spans_total{outcome}`), read at
/// scrape time.
#[derive(Debug)]
pub struct Collector(pub Arc<Stats>);

impl prometheus_client::collector::Collector for Collector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let mut family = encoder.encode_descriptor(
            "trace_spans",
            "Sampled requests' spans by outcome: exported (a collector took them), dropped (the export queue was full), failed (the export failed)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, counter) in [
            ("exported", &self.0.exported),
            ("dropped", &self.0.dropped),
            ("failed", &self.0.failed),
        ] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(counter.load(Ordering::Relaxed))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The exporting task (run it with the proxy's config).
#[derive(Debug)]
pub struct ExportTask {
    rx: mpsc::Receiver<(Arc<Provider>, otlp::Span)>,
    stats: Arc<Stats>,
    flush_interval: Duration,
    last_warning: Option<Instant>,
}

impl Tracer {
    /// A tracer and the task that exports what it is given.
    pub fn new(settings: Settings) -> (Arc<Self>, ExportTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let tracer = Arc::new(Self {
            tx,
            node_id: settings.node_id,
            stats: stats.clone(),
        });
        let task = ExportTask {
            rx,
            stats,
            flush_interval: settings.flush_interval,
            last_warning: None,
        };
        (tracer, task)
    }

    /// A tracer whose spans go nowhere (counted as dropped): for a proxy without an exporter.
    pub fn detached() -> Arc<Self> {
        let (tracer, task) = Self::new(Settings {
            flush_interval: Duration::from_secs(5),
            node_id: String::new(),
        });
        drop(task);
        tracer
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Queues a finished span; a full queue drops it.
    pub fn submit(&self, provider: Arc<Provider>, span: otlp::Span) {
        if self.tx.try_send((provider, span)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no cluster {0:?} in the proxy's config")]
    NoCluster(String),
    #[error("cluster {0:?} has no endpoint")]
    NoEndpoint(String),
    #[error("cannot build the export request to {authority:?}: {reason}")]
    Request { authority: String, reason: String },
    #[error(
        "cluster {0:?} does not speak HTTP/2, which OTLP/gRPC needs (name the collector's port grpc-…)"
    )]
    NotHttp2(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("the collector answered HTTP {0}")]
    Status(StatusCode),
    #[error("the collector's answer broke off: {0}")]
    Body(String),
    #[error("the collector answered grpc-status {status}: {message}")]
    Grpc { status: String, message: String },
}

impl ExportTask {
    /// The next queued span, if any (tests).
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Option<(Arc<Provider>, otlp::Span)> {
        self.rx.try_recv().ok()
    }

    /// Exports until every [`Tracer`] is gone, reading the clusters from `config`.
    pub async fn run(mut self, config: watch::Receiver<Arc<ProxyConfig>>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = MAX_BATCH - batch.len();
            let closed = tokio::select! {
                n = self.rx.recv_many(&mut batch, room) => {
                    if n > 0 && batch.len() < MAX_BATCH {
                        continue;
                    }
                    n == 0
                }
                _ = tick.tick() => false,
            };
            if !batch.is_empty() {
                let snapshot = config.borrow().clone();
                self.export(&snapshot, std::mem::take(&mut batch)).await;
            }
            if closed {
                return;
            }
        }
    }

    async fn export(&mut self, config: &ProxyConfig, batch: Vec<(Arc<Provider>, otlp::Span)>) {
        let mut by_provider: HashMap<Arc<Provider>, Vec<otlp::Span>> = HashMap::new();
        for (provider, span) in batch {
            by_provider.entry(provider).or_default().push(span);
        }
        for (provider, spans) in by_provider {
            let n = spans.len() as u64;
            let body = grpc_frame(&request(&provider, spans));
            match tokio::time::timeout(EXPORT_TIMEOUT, send(config, &provider, body)).await {
                Ok(Ok(())) => {
                    self.stats.exported.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Err(e)) => self.failed(&provider, n, &e),
                Err(_) => self.failed(&provider, n, &ExportError::Timeout(EXPORT_TIMEOUT)),
            }
        }
    }

    fn failed(&mut self, provider: &Provider, spans: u64, error: &ExportError) {
        self.stats.failed.fetch_add(spans, Ordering::Relaxed);
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            self.last_warning = Some(now);
            tracing::warn!(
                cluster = %provider.cluster,
                spans,
                %error,
                "span export failed; spans dropped (warned at most every 10 s)"
            );
        }
    }
}

/// One export request: the spans under their collector's `service.name`.
fn request(provider: &Provider, spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(Resource {
                attributes: vec![super::tag("service.name", provider.service_name.as_str())],
                ..Default::default()
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "weft-proxy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// gRPC's length-prefixed message: not compressed, 4 bytes of length, the message.
fn grpc_frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

async fn send(config: &ProxyConfig, provider: &Provider, body: Bytes) -> Result<(), ExportError> {
    let cluster = config
        .clusters
        .get(&provider.cluster)
        .ok_or_else(|| ExportError::NoCluster(provider.cluster.clone()))?;
    let endpoint = cluster
        .pick(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
        .ok_or_else(|| ExportError::NoEndpoint(provider.cluster.clone()))?;
    if endpoint.pool(Protocol::Http2).is_none() {
        return Err(ExportError::NotHttp2(provider.cluster.clone()));
    }
    let bad = |reason: String| ExportError::Request {
        authority: provider.authority.clone(),
        reason,
    };
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(provider.authority.as_str())
        .path_and_query(PATH)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let req = Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(RequestBody::full(body))
        .map_err(|e| bad(e.to_string()))?;
    let resp = crate::upstream::endpoint::send(
        &endpoint,
        Protocol::Http2,
        cluster.config.connect_timeout,
        req,
    )
    .await?;
    if resp.status() != StatusCode::OK {
        return Err(ExportError::Status(resp.status()));
    }
    let (head, body) = resp.into_parts();
    // A trailers-only answer carries grpc-status in its headers.
    let trailers = match head.headers.get("grpc-status") {
        Some(_) => head.headers,
        None => body
            .collect()
            .await
            .map_err(|e| ExportError::Body(e.to_string()))?
            .trailers()
            .cloned()
            .unwrap_or_default(),
    };
    let text = |v: Option<&HeaderValue>| {
        v.and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    match trailers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"0") => Ok(()),
        status => Err(ExportError::Grpc {
            status: status.map_or_else(
                || "(none)".to_string(),
                |s| String::from_utf8_lossy(s).into_owned(),
            ),
            message: text(trailers.get("grpc-message")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_grpc_length_prefixed() {
        let req = request(
            &Provider {
                cluster: "c".into(),
                authority: "a".into(),
                service_name: "productpage.default".into(),
            },
            vec![otlp::Span {
                name: "op".into(),
                ..Default::default()
            }],
        );
        let framed = grpc_frame(&req);
        assert_eq!(framed[0], 0, "not compressed");
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - 5);
        let back = ExportTraceServiceRequest::decode(&framed[5..]).expect("decodes");
        assert_eq!(back, req);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (tracer, _task) = Tracer::new(Settings {
            flush_interval: Duration::from_secs(60),
            node_id: "n".into(),
        });
        let provider = Arc::new(Provider {
            cluster: "c".into(),
            authority: "a".into(),
            service_name: "s".into(),
        });
        for _ in 0..QUEUE + 3 {
            tracer.submit(provider.clone(), otlp::Span::default());
        }
        assert_eq!(tracer.stats.dropped.load(Ordering::Relaxed), 3);
    }
}
