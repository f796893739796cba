//! Distributed tracing: one span per request per connection manager with `tracing` set, as
//! Envoy's OpenTelemetry and Zipkin tracers make them, exported with OTLP/gRPC or as Zipkin v2
//! JSON.
//!
//! ```text
//!  handle (http/mod.rs) ─► start: the request's context (context.rs: traceparent │ b3 │ x-b3-*)
//!     ├─ decision: the caller's, else random_sampling (client_sampling with x-client-trace-id),
//!     │            capped by overall_sampling
//!     ├─ the request leaves with this proxy's span as the next hop's parent (sampled or not)
//!     └─ sampled: an Active span rides with the request's metrics (metrics/http.rs)
//!  response body ends ─► Active::finish: Envoy's tags + custom tags ─► Tracer queue (bounded;
//!     full: dropped and counted) ─► export.rs: batches by collector ─► otlp_grpc.rs (OTLP/gRPC
//!     Export) │ zipkin.rs (v2 JSON POST) through the collector's cluster (its pools, TLS and
//!     balancing), every flush interval
//! ```
//! A connection manager without `tracing` leaves trace headers alone and costs nothing. The
//! span kind is the listener's direction: an OUTBOUND listener's requests are CLIENT spans (a
//! sidecar's outbound, and Istio's gateway listeners, which are OUTBOUND too), the others SERVER
//! spans; Istio's sidecars (and its gateways, by default) do not spawn a separate upstream span.

pub mod context;
pub mod export;
mod otlp_grpc;
mod zipkin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Request};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1 as otlp;
use rand::RngExt;

use crate::config::trace::{TagValue, Tracing};
use crate::error::ResponseFlags;
pub use export::{ExportTask, Settings, Tracer};

/// Whose side of a call a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Outbound: this proxy calls a service.
    Client,
    /// Inbound, or a gateway: this proxy is called.
    Server,
}

const CLIENT_TRACE_ID: http::HeaderName = http::HeaderName::from_static("x-client-trace-id");

/// A sampled request's span, until its response ends.
#[derive(Debug)]
pub struct Active {
    tracer: Arc<Tracer>,
    config: Arc<Tracing>,
    trace: context::TraceId,
    span: context::SpanId,
    parent: Option<context::SpanId>,
    kind: Kind,
    start: SystemTime,
    /// The span's name when its route has no decorator: Envoy's `<authority><path>`, without
    /// the query.
    default_name: String,
    /// The tags known when the request arrived.
    tags: Vec<KeyValue>,
}

/// What the request's way through the proxy adds to its span.
#[derive(Debug, Default)]
pub struct Finish<'a> {
    /// The route's `decorator.operation`, else `<authority><path>` is the span's name.
    pub operation: Option<&'a str>,
    pub status: u16,
    pub flags: ResponseFlags,
    pub grpc_status: Option<u16>,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_host: Option<SocketAddr>,
    pub request_id: Option<&'a HeaderValue>,
    pub request_size: u64,
    pub response_size: u64,
    /// What the access logs print of the request, for the config's format tags (kept only
    /// when [`Active::needs_entry`]).
    pub entry: Option<&'a crate::access_log::Entry<'a>>,
}

/// The request arrives at a connection manager with `config`: its trace context is read, a
/// sampling decision made, and the request leaves with this proxy's span as its parent.
/// `Some` when the request is sampled (then its span is reported when it ends).
pub fn start<B>(
    tracer: &Arc<Tracer>,
    config: &Arc<Tracing>,
    kind: Kind,
    req: &mut Request<B>,
    peer: SocketAddr,
) -> Option<Box<Active>> {
    let incoming = context::extract(req.headers());
    let mut rng = rand::rng();
    let sampled = incoming.sampled.unwrap_or_else(|| {
        let percent = if req.headers().contains_key(&CLIENT_TRACE_ID) {
            config.client_sampling
        } else {
            config.random_sampling
        };
        roll(&mut rng, percent) && roll(&mut rng, config.overall_sampling)
    });
    let trace = match incoming.parent {
        Some((trace, _)) => trace,
        None if config.provider.trace_id_128bit => nonzero(&mut rng),
        // A 64-bit trace id (Zipkin's `trace_id_128bit: false`): the upper half zero.
        None => {
            let low: [u8; 8] = nonzero(&mut rng);
            let mut trace = [0; 16];
            trace[8..].copy_from_slice(&low);
            trace
        }
    };
    let span: context::SpanId = nonzero(&mut rng);
    let parent = incoming.parent.map(|(_, span)| span);
    if config.propagate {
        context::inject(req.headers_mut(), &trace, &span, parent.as_ref(), sampled);
    }
    if !sampled {
        return None;
    }
    Some(Box::new(Active {
        tracer: tracer.clone(),
        trace,
        span,
        parent,
        kind,
        start: SystemTime::now(),
        default_name: format!(
            "{}{}",
            crate::http::request_authority(req),
            req.uri().path()
        ),
        tags: request_tags(config, req, peer),
        config: config.clone(),
    }))
}

fn roll(rng: &mut impl RngExt, percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && rng.random_range(0.0..100.0) < percent)
}

fn nonzero<const N: usize>(rng: &mut impl RngExt) -> [u8; N] {
    loop {
        let id: [u8; N] = rng.random();
        if id != [0; N] {
            return id;
        }
    }
}

fn tag(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Envoy's request tags, the node's, and the custom tags.
fn request_tags<B>(config: &Tracing, req: &Request<B>, peer: SocketAddr) -> Vec<KeyValue> {
    let headers = req.headers();
    let authority = crate::http::request_authority(req);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut url = format!("http://{authority}{path}");
    if url.len() > config.max_path_tag_length {
        let mut end = config.max_path_tag_length;
        while !url.is_char_boundary(end) {
            end -= 1;
        }
        url.truncate(end);
    }
    let mut tags = vec![
        tag("component", "proxy"),
        tag("http.url", url),
        tag("http.method", req.method().as_str()),
        tag("http.protocol", format!("{:?}", req.version())),
        tag("peer.address", peer.ip().to_string()),
        tag(
            "downstream_cluster",
            header(headers, "x-envoy-downstream-service-cluster").unwrap_or("-"),
        ),
        tag(
            "user_agent",
            header(headers, http::header::USER_AGENT).unwrap_or("-"),
        ),
    ];
    for custom in &config.custom_tags {
        let value = match &custom.value {
            TagValue::Fixed(v) => Some(v.as_ref()),
            TagValue::Header { name, default } => header(headers, name).or(default.as_deref()),
            // Rendered when the span ends.
            TagValue::Format(_) => None,
        };
        if let Some(value) = value {
            tags.push(tag(&custom.name, value));
        }
    }
    tags
}

impl Active {
    /// Whether the config has tags made from what the access logs print ([`Finish::entry`]).
    pub fn needs_entry(&self) -> bool {
        self.config
            .custom_tags
            .iter()
            .any(|t| matches!(t.value, TagValue::Format(_)))
    }

    /// The span's trace.
    pub fn trace_id(&self) -> context::TraceId {
        self.trace
    }

    /// The request's response ended: its span goes to the exporter.
    pub fn finish(self, end: &Finish<'_>) {
        let Active {
            tracer,
            config,
            trace,
            span,
            parent,
            kind,
            start,
            default_name,
            mut tags,
        } = self;
        let name = end.operation.map_or(default_name, str::to_string);
        tags.push(tag("http.status_code", end.status.to_string()));
        tags.push(tag("response_flags", end.flags.to_string()));
        tags.push(tag("request_size", end.request_size.to_string()));
        tags.push(tag("response_size", end.response_size.to_string()));
        tags.push(tag("node_id", tracer.node_id()));
        if let Some(cluster) = end.upstream_cluster {
            tags.push(tag("upstream_cluster", cluster));
            tags.push(tag("upstream_cluster.name", cluster));
        }
        if let Some(host) = end.upstream_host {
            tags.push(tag("upstream_address", host.to_string()));
        }
        if let Some(id) = end.request_id.and_then(|v| v.to_str().ok()) {
            tags.push(tag("guid:x-request-id", id));
        }
        if let Some(status) = end.grpc_status {
            tags.push(tag("grpc.status_code", status.to_string()));
        }
        if let Some(entry) = end.entry {
            for custom in &config.custom_tags {
                if let TagValue::Format(format) = &custom.value {
                    tags.push(tag(&custom.name, format.render_tag(entry)));
                }
            }
        }
        // Envoy marks a span failed for 5xx and for failures without a response (flags).
        let failed = end.status >= 500 || end.grpc_status.is_some_and(|s| s != 0);
        if failed {
            tags.push(tag("error", "true"));
        }
        let end_time = SystemTime::now();
        let nanos = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let span = otlp::Span {
            trace_id: trace.to_vec(),
            span_id: span.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind: match kind {
                Kind::Client => otlp::span::SpanKind::Client,
                Kind::Server => otlp::span::SpanKind::Server,
            } as i32,
            start_time_unix_nano: nanos(start),
            end_time_unix_nano: nanos(end_time),
            attributes: tags,
            status: failed.then(|| otlp::Status {
                code: otlp::status::StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        };
        tracer.submit(config.provider.clone(), span);
    }
}

#[cfg(test)]
mod tests;
