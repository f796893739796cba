//! Span export, whatever the collector's protocol: a bounded queue in front of one task that
//! batches finished spans, splits each batch by collector and hands every share to its
//! protocol's encoder, through the collector's cluster.
//!
//! ```text
//!  Tracer::submit (request tasks; try_send: a full queue drops the span, counted)
//!     ─► ExportTask::run: up to MAX_BATCH spans, or what came within the flush interval
//!        ─► per collector (Provider), under its service name (or the proxy's service cluster)
//!           ├─ Export::OtlpGrpc   ─► otlp_grpc.rs: ExportTraceServiceRequest, gRPC over HTTP/2
//!           └─ Export::ZipkinJson ─► zipkin.rs: Zipkin v2 JSON spans, POST (HTTP/1.1 │ HTTP/2)
//!              ─► Target: the config's cluster ─► an endpoint ─► its pool (endpoint::send)
//! ```
//! Through the cluster, as Envoy's `envoy_grpc` and Zipkin's `collector_cluster`: the
//! collector's endpoints, balancing and transport security are the mesh's (mutual TLS to a
//! collector with a sidecar). Spans wait as OTLP span messages whatever the protocol; each
//! encoder reads them from there. A failed export is dropped (counted, warned at most every
//! 10 s): spans are never retried, so a dead collector costs bounded memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::trace::v1 as otlp;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::ProxyConfig;
use crate::config::trace::{Export, Provider};
use crate::upstream::body::RequestBody;
use crate::upstream::{Endpoint, Protocol, UpstreamBody};

/// Spans sent in one export at most.
pub const MAX_BATCH: usize = 512;
/// Finished spans waiting for export at most (Envoy's OpenTelemetry `max_cache_size` is 1024).
pub const QUEUE: usize = 2048;
/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How spans are exported.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often finished spans are sent (Envoy's OpenTelemetry flush interval is 5 s).
    pub flush_interval: Duration,
    /// The proxy's node id (the `node_id` tag).
    pub node_id: String,
    /// The proxy's service cluster, Istio's `<canonical service>.<namespace>`: the service of
    /// spans whose collector names none (Zipkin's, as Envoy reports under the node's cluster).
    pub service_cluster: String,
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
    service_cluster: String,
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
            service_cluster: settings.service_cluster,
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
            service_cluster: String::new(),
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
    #[error("cluster {cluster:?} does not speak {needs}")]
    Protocol {
        cluster: String,
        needs: &'static str,
    },
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
            let service = provider
                .service_name
                .as_deref()
                .unwrap_or(&self.service_cluster);
            let send = async {
                match &provider.export {
                    Export::OtlpGrpc => {
                        super::otlp_grpc::send(config, &provider, service, spans).await
                    }
                    Export::ZipkinJson { path } => {
                        super::zipkin::send(config, &provider, path, service, &spans).await
                    }
                }
            };
            match tokio::time::timeout(EXPORT_TIMEOUT, send).await {
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

/// Where one export goes: an endpoint of the collector's cluster and the protocol to it.
pub(super) struct Target {
    endpoint: Arc<Endpoint>,
    protocol: Protocol,
    connect_timeout: Duration,
}

impl Target {
    /// An endpoint of `provider`'s cluster, spoken to with the first of `protocols` it has
    /// (`needs` names them for the error).
    pub(super) fn pick(
        config: &ProxyConfig,
        provider: &Provider,
        protocols: &[Protocol],
        needs: &'static str,
    ) -> Result<Self, ExportError> {
        let cluster = config
            .clusters
            .get(&provider.cluster)
            .ok_or_else(|| ExportError::NoCluster(provider.cluster.clone()))?;
        let endpoint = cluster
            .pick(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
            .ok_or_else(|| ExportError::NoEndpoint(provider.cluster.clone()))?;
        let protocol = protocols
            .iter()
            .copied()
            .find(|p| endpoint.pool(*p).is_some())
            .ok_or_else(|| ExportError::Protocol {
                cluster: provider.cluster.clone(),
                needs,
            })?;
        Ok(Self {
            endpoint,
            protocol,
            connect_timeout: cluster.config.connect_timeout,
        })
    }

    /// POSTs `body` to `path` at the collector's authority, with `headers`; a non-2xx
    /// answer is an error.
    pub(super) async fn post(
        &self,
        provider: &Provider,
        path: &str,
        headers: &[(http::HeaderName, http::HeaderValue)],
        body: bytes::Bytes,
    ) -> Result<Response<UpstreamBody>, ExportError> {
        let bad = |reason: String| ExportError::Request {
            authority: provider.authority.clone(),
            reason,
        };
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(provider.authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut req = Request::post(uri)
            .version(match self.protocol {
                Protocol::Http1 => http::Version::HTTP_11,
                Protocol::Http2 => http::Version::HTTP_2,
            })
            .body(RequestBody::full(body))
            .map_err(|e| bad(e.to_string()))?;
        for (name, value) in headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        if self.protocol == Protocol::Http1 {
            // HTTP/2 carries the authority in the URI; HTTP/1.1 in `Host`.
            let host =
                http::HeaderValue::from_str(&provider.authority).map_err(|e| bad(e.to_string()))?;
            req.headers_mut().insert(http::header::HOST, host);
        }
        let resp = crate::upstream::endpoint::send(
            &self.endpoint,
            self.protocol,
            self.connect_timeout,
            req,
        )
        .await?;
        if !resp.status().is_success() {
            return Err(ExportError::Status(resp.status()));
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (tracer, _task) = Tracer::new(Settings {
            flush_interval: Duration::from_secs(60),
            node_id: "n".into(),
            service_cluster: "s.default".into(),
        });
        let provider = Arc::new(Provider {
            cluster: "c".into(),
            authority: "a".into(),
            service_name: Some("s".into()),
            export: Export::OtlpGrpc,
            trace_id_128bit: true,
        });
        for _ in 0..QUEUE + 3 {
            tracer.submit(provider.clone(), otlp::Span::default());
        }
        assert_eq!(tracer.stats.dropped.load(Ordering::Relaxed), 3);
    }
}
