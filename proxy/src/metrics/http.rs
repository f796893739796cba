//! Istio's HTTP metrics for one request: `istio_requests_total`,
//! `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`; and
//! the moment its access logs are written (`access_log/`), which need the same ending.
//!
//! ```text
//!  handle (http/mod.rs): Started (clock, request header bytes, gRPC?, inbound: the peer's
//!    metadata taken off the request) ─► the request ─► Outcome (flags, cluster's service,
//!    outbound: the peer from the response's metadata, mTLS) ─► Recorded body
//!  Recorded: response bytes as frames pass, grpc-status from trailers ─► at its end (or drop:
//!    DC when the client left first) ─► HttpKey ─► the connection's cached series (else the
//!    table's) ─► counter + three histograms, atomics only; then each access log of the
//!    listener (an `Entry` of what the request kept)
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::Metrics;
use super::exchange::{self, PeerCache};
use super::histogram::Histogram;
use super::labels::{Peer, Reporter, Secured, Security, Service};
use super::view::{Dimensions, Stats};
use crate::access_log::{AccessLogs, Entry, LogRequest};
use crate::error::ResponseFlags;
use crate::http::Downstream;
use crate::upstream::Cluster;
use crate::upstream::idle::Progress;
use std::time::SystemTime;

/// The labels that tell one request series from another (the local workload's are the
/// proxy's own, the same for every series).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpKey {
    pub reporter: Reporter,
    /// The workload at the other end.
    pub peer: Peer,
    /// The other end's identity: from its certificate (inbound) or its metadata (outbound,
    /// over mutual TLS).
    pub peer_principal: Option<Arc<str>>,
    /// Whether this proxy presented its own identity (mutual TLS).
    pub mtls: bool,
    pub service: Service,
    pub grpc: bool,
    pub code: u16,
    pub grpc_status: Option<u16>,
    pub flags: ResponseFlags,
    pub security: Security,
    /// The listener's stats settings (which metrics, which labels).
    pub stats: Arc<Stats>,
    /// The values of the settings' label expressions for this request.
    pub dimensions: Dimensions,
}

/// One series of request metrics.
#[derive(Debug, Default)]
pub struct HttpSeries {
    pub requests: std::sync::atomic::AtomicU64,
    /// Microseconds, exposed in milliseconds.
    pub duration: Histogram<1000>,
    pub request_bytes: Histogram<1>,
    pub response_bytes: Histogram<1>,
}

/// What a downstream connection keeps for its requests' metrics: who reports, the peers
/// seen, and the last series used.
#[derive(Debug)]
pub struct ConnMetrics {
    shared: Arc<Metrics>,
    reporter: Reporter,
    cache: Mutex<ConnCache>,
}

#[derive(Debug, Default)]
struct ConnCache {
    peers: PeerCache,
    last: Option<(HttpKey, Arc<HttpSeries>)>,
}

impl ConnMetrics {
    pub fn new(shared: Arc<Metrics>, reporter: Reporter) -> Self {
        Self {
            shared,
            reporter,
            cache: Mutex::default(),
        }
    }

    pub fn reporter(&self) -> Reporter {
        self.reporter
    }

    /// Whether the proxy records Istio's metrics (and exchanges peer metadata) at all.
    pub fn enabled(&self) -> bool {
        self.shared.enabled
    }

    /// The request starts: its clock, its header bytes and protocol; inbound, its peer's
    /// metadata comes off (the app never sees it). With `logs` (the listener's access logs),
    /// the request head is kept for them. With `stats` (the connection manager's stats
    /// filter, read from the config the request runs on), it is recorded in Istio's metrics.
    /// `None` when there is nothing to record.
    pub fn start<B>(
        &self,
        req: &mut http::Request<B>,
        logs: Option<&AccessLogs>,
        stats: Option<&Arc<Stats>>,
        span: Option<Box<crate::trace::Active>>,
    ) -> Option<Started> {
        let logs = logs.filter(|l| !l.is_empty());
        if !self.shared.enabled && logs.is_none() && span.is_none() {
            return None;
        }
        let stats = stats.filter(|_| self.shared.enabled).cloned();
        // Label values made from the request's attributes need its head, as logs do; so do
        // a span's format tags.
        let attributes = stats.as_ref().is_some_and(|s| s.needs_attributes())
            || span.as_ref().is_some_and(|s| s.needs_entry());
        let logs = match logs {
            None if attributes => Some(&*NO_LOGS),
            logs => logs,
        };
        let grpc = is_grpc(req.headers());
        let peer = match self.reporter {
            Reporter::Destination if self.shared.enabled => {
                exchange::take(req.headers_mut()).map(|v| self.peer(&v))
            }
            _ => None,
        };
        Some(Started {
            at: Instant::now(),
            header_bytes: header_bytes(req.headers()),
            grpc,
            peer,
            log: logs.map(|logs| Box::new((logs.clone(), *LogRequest::of(req)))),
            span,
            stats,
        })
    }

    /// The workload a metadata header value describes (decoded once per connection).
    pub fn peer(&self, value: &HeaderValue) -> Peer {
        self.cache.lock().peers.peer(value)
    }

    /// This proxy's metadata headers, for an outbound request or an inbound response.
    pub fn own_headers(&self) -> &exchange::OwnHeaders {
        &self.shared.own
    }

    /// The series of `key`: the connection's last one when it is the same, else the table's.
    fn series(&self, key: HttpKey) -> Arc<HttpSeries> {
        let mut cache = self.cache.lock();
        if let Some((last, series)) = &cache.last
            && *last == key
        {
            return series.clone();
        }
        let series = self.shared.http.get(&key);
        cache.last = Some((key, series.clone()));
        series
    }
}

/// The access logs of a request kept only for its metrics' label expressions.
static NO_LOGS: std::sync::LazyLock<AccessLogs> = std::sync::LazyLock::new(|| Arc::from([]));

/// A request's metrics so far (from [`ConnMetrics::start`]).
#[derive(Debug)]
pub struct Started {
    at: Instant,
    header_bytes: u64,
    grpc: bool,
    /// Inbound: the client's workload, from its metadata header.
    pub peer: Option<Peer>,
    /// The listener's access logs and the request head they print (boxed: rare).
    log: Option<Box<(AccessLogs, LogRequest)>>,
    /// A sampled request's span.
    span: Option<Box<crate::trace::Active>>,
    /// The stats filter's settings; none: the request is not recorded in the metrics.
    stats: Option<Arc<Stats>>,
}

impl Started {
    /// Whether the request is access-logged or traced (then [`Outcome`] keeps what the logs
    /// and the span print).
    pub fn detailed(&self) -> bool {
        self.log.is_some() || self.span.is_some()
    }
}

/// What the request's way through the proxy found out, for its labels and its log.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What happened besides the status (`DI`, `URX`, …).
    pub flags: ResponseFlags,
    /// The cluster the request was sent to (its service, its name).
    pub cluster: Option<Arc<Cluster>>,
    /// The endpoint of the last attempt.
    pub upstream: Option<std::net::SocketAddr>,
    /// The response is the upstream's, not a reply the proxy made.
    pub via_upstream: bool,
    /// Logged or traced requests only: the route's name and span name (its decorator), and
    /// the `x-request-id` the upstream got.
    pub route_name: Option<String>,
    pub operation: Option<Arc<str>>,
    pub request_id: Option<HeaderValue>,
    /// Outbound: the server's workload, from the response's metadata header.
    pub peer: Option<Peer>,
    /// Outbound: the upstream connection was mutual TLS.
    pub upstream_mtls: bool,
    /// The downstream request body's progress (its byte count), when it has one.
    pub request_body: Option<Arc<Progress>>,
}

/// Wraps `resp`'s body so that the request is recorded when the body ends (or is dropped).
pub(crate) fn record<B: Body>(
    conn: &Arc<ConnMetrics>,
    started: Option<Started>,
    outcome: Outcome,
    downstream: &Downstream,
    resp: Response<B>,
) -> Response<Recorded<B>> {
    let Some(started) = started else {
        return resp.map(|inner| Recorded {
            inner,
            pending: None,
        });
    };
    let flags = resp
        .extensions()
        .get::<ResponseFlags>()
        .copied()
        .unwrap_or_default()
        .with(outcome.flags);
    let (peer, secured) = match conn.reporter {
        Reporter::Destination => (
            started.peer.unwrap_or_else(Peer::unknown),
            Secured::inbound(downstream.principal.as_ref()),
        ),
        Reporter::Source => {
            let peer = outcome.peer.unwrap_or_else(Peer::unknown);
            let server = outcome
                .upstream_mtls
                .then(|| peer.spiffe_id(&conn.shared.trust_domain))
                .flatten();
            (peer, Secured::outbound(outcome.upstream_mtls, server))
        }
    };
    let grpc_status = if started.grpc {
        grpc_status(resp.headers())
    } else {
        None
    };
    let key = HttpKey {
        reporter: conn.reporter,
        peer,
        peer_principal: secured.peer_principal,
        mtls: secured.mtls,
        service: outcome
            .cluster
            .as_ref()
            .map_or_else(Service::unknown, |c| c.config.service.clone()),
        grpc: started.grpc,
        code: resp.status().as_u16(),
        grpc_status,
        flags,
        security: secured.security,
        stats: started.stats.clone().unwrap_or_else(Stats::standard),
        dimensions: Dimensions::default(),
    };
    let response_bytes = header_bytes(resp.headers());
    let trace_id = started.span.as_ref().map(|active| active.trace_id());
    let span = started.span.map(|active| {
        Box::new(Traced {
            active,
            operation: outcome.operation.clone(),
            cluster: outcome.cluster.clone(),
            upstream: outcome.upstream,
            request_id: outcome.request_id.clone(),
        })
    });
    let log = started.log.map(|mut log| {
        if let Some(id) = &outcome.request_id {
            log.1.set_request_id(id);
        }
        Box::new(Logged {
            logs: log.0,
            request: log.1,
            response_headers: resp.headers().clone(),
            cluster: outcome.cluster,
            upstream: outcome.upstream,
            via_upstream: outcome.via_upstream,
            route_name: outcome.route_name,
            start: SystemTime::now()
                .checked_sub(started.at.elapsed())
                .unwrap_or_else(SystemTime::now),
            downstream: downstream.clone(),
            trace_id,
        })
    });
    resp.map(|inner| Recorded {
        // A body with nothing to send may be dropped unpolled: that is its end.
        pending: Some(Pending {
            conn: conn.clone(),
            recorded: started.stats.is_some(),
            key,
            start: started.at,
            request_bytes: started.header_bytes,
            request_body: outcome.request_body,
            response_bytes,
            body_bytes: 0,
            empty: inner.is_end_stream(),
            log,
            span,
        }),
        inner,
    })
}

struct Pending {
    conn: Arc<ConnMetrics>,
    /// Recorded in Istio's metrics (the connection manager has the stats filter).
    recorded: bool,
    key: HttpKey,
    start: Instant,
    /// The request's header bytes (its body's are in `request_body`).
    request_bytes: u64,
    request_body: Option<Arc<Progress>>,
    /// The response's header bytes, then its body's as they pass.
    response_bytes: u64,
    /// The response body's bytes alone (the access log's `BYTES_SENT`).
    body_bytes: u64,
    /// The body had nothing to send: dropping it unpolled is its end, not the client leaving.
    empty: bool,
    /// Access-logged requests: what the logs print (boxed: rare).
    log: Option<Box<Logged>>,
    /// Sampled requests: the span and what it prints.
    span: Option<Box<Traced>>,
}

/// What a sampled request keeps for its span.
struct Traced {
    active: Box<crate::trace::Active>,
    operation: Option<Arc<str>>,
    cluster: Option<Arc<Cluster>>,
    upstream: Option<std::net::SocketAddr>,
    request_id: Option<HeaderValue>,
}

/// What a logged request keeps for its log lines.
struct Logged {
    logs: AccessLogs,
    request: LogRequest,
    response_headers: HeaderMap,
    cluster: Option<Arc<Cluster>>,
    upstream: Option<std::net::SocketAddr>,
    via_upstream: bool,
    route_name: Option<String>,
    start: SystemTime,
    downstream: Downstream,
    trace_id: Option<[u8; 16]>,
}

impl Pending {
    fn finish(mut self) {
        let elapsed = self.start.elapsed();
        let body = self.request_body.as_ref().map_or(0, |p| p.received());
        let entry = self
            .log
            .as_ref()
            .map(|log| log.entry(&self.key, elapsed, body, self.body_bytes));
        let mut dimensions = None;
        if let (Some(log), Some(entry)) = (&self.log, &entry) {
            for access_log in log.logs.iter() {
                access_log.log(entry);
            }
            if self.recorded && self.key.stats.needs_attributes() {
                dimensions = Some(self.key.stats.values(entry));
            }
        }
        if let Some(span) = self.span {
            (*span.active).finish(&crate::trace::Finish {
                operation: span.operation.as_deref(),
                status: self.key.code,
                flags: self.key.flags,
                grpc_status: self.key.grpc_status,
                upstream_cluster: span.cluster.as_ref().map(|c| c.config.name.as_str()),
                upstream_host: span.upstream,
                request_id: span.request_id.as_ref(),
                request_size: body,
                response_size: self.body_bytes,
                entry: entry.as_ref(),
            });
        }
        // The entry borrows the key: its label values are set once the entry is done.
        if let Some(dimensions) = dimensions {
            self.key.dimensions = dimensions;
        }
        if self.recorded {
            let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            let series = self.conn.series(self.key);
            series
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            series.duration.observe(micros);
            series.request_bytes.observe(self.request_bytes + body);
            series.response_bytes.observe(self.response_bytes);
        }
    }
}

impl Logged {
    /// What the access logs print and the label expressions read.
    fn entry<'a>(
        &'a self,
        key: &'a HttpKey,
        duration: std::time::Duration,
        received: u64,
        sent: u64,
    ) -> Entry<'a> {
        Entry {
            tcp: false,
            start: self.start,
            duration,
            request: Some(&self.request),
            response_headers: Some(&self.response_headers),
            code: key.code,
            flags: key.flags,
            grpc_status: key.grpc_status,
            bytes_received: received,
            bytes_sent: sent,
            upstream_host: self.upstream,
            via_upstream: self.via_upstream,
            upstream_cluster: self.cluster.as_ref().map(|c| c.config.name.as_str()),
            route_name: self.route_name.as_deref(),
            downstream_local: self.downstream.local,
            downstream_remote: self.downstream.remote,
            sni: self.downstream.sni.as_deref(),
            downstream_peer: self.downstream.principal.as_deref(),
            upstream_peer: match key.reporter {
                Reporter::Source => key.peer_principal.as_deref(),
                Reporter::Destination => None,
            },
            trace_id: self.trace_id,
            termination: None,
            upstream_local: None,
            upstream_failure: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its request when it ends: normally, with an error (the
    /// error's flag), or dropped before its end (`DC`: the client went away).
    pub struct Recorded<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }

    impl<B> PinnedDrop for Recorded<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut pending) = this.pending.take() {
                if !pending.empty {
                    pending.key.flags.insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                }
                pending.finish();
            }
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for Recorded<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes, Error = crate::upstream::body::BoxError>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let poll = this.inner.as_mut().poll_frame(cx);
        let Some(pending) = this.pending.as_mut() else {
            return poll;
        };
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    pending.response_bytes += data.len() as u64;
                    pending.body_bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    pending.response_bytes += header_bytes(trailers);
                    if pending.key.grpc
                        && let Some(status) = grpc_status(trailers)
                    {
                        pending.key.grpc_status = Some(status);
                    }
                }
                // hyper does not poll again a body that says it has ended.
                if this.inner.is_end_stream()
                    && let Some(pending) = this.pending.take()
                {
                    pending.finish();
                }
            }
            Poll::Ready(Some(Err(e))) => {
                pending
                    .key
                    .flags
                    .insert(crate::error::body_failure_flags(&**e));
                if let Some(pending) = this.pending.take() {
                    pending.finish();
                }
            }
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish();
                }
            }
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes of a header block as Envoy counts them: names and values.
pub fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len()) as u64)
        .sum()
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
