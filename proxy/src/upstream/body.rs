//! Bodies that cross the proxy: request bodies (streamed, or buffered so a retry can replay them) and upstream response bodies.
//!
//! ```text
//!  downstream Incoming ─► RequestBody::stream ──────────────────────────────► upstream
//!                     │      frames ─► Progress (stream idle timeout; downstream failure ─► DPE)
//!                     └─► buffer(limit) ─► Replay (≤ limit, cloneable for retries)
//!                                      └─► Prefixed (over the limit: buffered part, then the rest)
//!  upstream h1 Incoming │ h2 RecvStream ─► UpstreamBody { in-flight guard, stream slot; h1 conn back to its pool at the end }
//!                                             └─ idle timer (armed only while the upstream keeps the body waiting)
//!  a body that fails after the response head: the downstream stream is reset, the flag is logged
//! ```

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::balance::InFlight;
use super::endpoint::{Failure, h2_failure, hyper_failure};
use super::idle::{Activity, Progress};
use super::pool::{H1Conn, StreamGuard};

/// Errors of bodies crossing the proxy, as hyper wants them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The downstream request body failed while it was being forwarded (malformed chunked
/// framing, fewer bytes than its `content-length`, …): the client's fault, not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("downstream request body failed: {0}")]
pub struct DownstreamBodyError(#[source] pub hyper::Error);

/// A response body stayed idle for the stream idle timeout after the response head.
#[derive(Debug, thiserror::Error)]
#[error("stream idle timeout: no activity for {0:?} after the response head")]
pub struct StreamIdleError(pub Duration);

/// A request body on its way to an upstream.
#[derive(Debug, Default)]
pub struct RequestBody {
    source: Source,
    /// Shared with the request's stream idle timer and failure attribution (streamed bodies).
    progress: Option<Arc<Progress>>,
}

#[derive(Debug, Default)]
enum Source {
    /// No body.
    #[default]
    Empty,
    /// The downstream body, streamed as it arrives.
    Stream(Incoming),
    /// A complete body held in memory: cheap to clone, so an attempt can be replayed.
    Replay(Replay),
    /// A body larger than the buffer limit: what was buffered, then the rest as it arrives.
    Prefixed {
        prefix: VecDeque<Bytes>,
        rest: Incoming,
    },
}

/// A complete request body in memory (data chunks and trailers).
#[derive(Debug, Clone, Default)]
pub struct Replay {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The downstream body, streamed; its frames, end and failure are reported to `progress`.
    pub fn stream(body: Incoming, progress: Option<Arc<Progress>>) -> Self {
        Self {
            source: Source::Stream(body),
            progress,
        }
    }

    /// Reads `body` into memory while it fits in `limit` bytes. A body that fits comes back as
    /// a replayable body (clone it per attempt with [`RequestBody::try_clone`]); a larger one
    /// streams the rest after what was buffered.
    pub async fn buffer(body: Incoming, limit: usize) -> Result<Self, DownstreamBodyError> {
        let mut body = body;
        let mut chunks = VecDeque::new();
        let mut size = 0usize;
        let source = loop {
            if size > limit {
                break Source::Prefixed {
                    prefix: chunks,
                    rest: body,
                };
            }
            let Some(frame) = body.frame().await else {
                break Source::Replay(Replay {
                    chunks,
                    trailers: None,
                });
            };
            match frame.map_err(DownstreamBodyError)?.into_data() {
                Ok(data) => {
                    size += data.len();
                    chunks.push_back(data);
                }
                Err(frame) => {
                    break Source::Replay(Replay {
                        chunks,
                        trailers: frame.into_trailers().ok(),
                    });
                }
            }
        };
        Ok(Self {
            source,
            progress: None,
        })
    }

    /// Another copy of a buffered body, for one more attempt; `None` if the body was streamed.
    pub fn try_clone(&self) -> Option<Self> {
        let source = match &self.source {
            Source::Empty => Source::Empty,
            Source::Replay(r) => Source::Replay(r.clone()),
            Source::Stream(_) | Source::Prefixed { .. } => return None,
        };
        Some(Self {
            source,
            progress: self.progress.clone(),
        })
    }
}

impl Source {
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Stream(b) => b.is_end_stream(),
            Self::Replay(r) => r.chunks.is_empty() && r.trailers.is_none(),
            Self::Prefixed { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = DownstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, DownstreamBodyError>>> {
        let this = self.get_mut();
        let poll = match &mut this.source {
            Source::Empty => Poll::Ready(None),
            Source::Stream(b) => Pin::new(b).poll_frame(cx).map_err(DownstreamBodyError),
            Source::Replay(r) => Poll::Ready(
                r.chunks
                    .pop_front()
                    .map(Frame::data)
                    .or_else(|| r.trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            Source::Prefixed { prefix, rest } => match prefix.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Pin::new(rest).poll_frame(cx).map_err(DownstreamBodyError),
            },
        };
        if let Some(progress) = &this.progress {
            match &poll {
                Poll::Ready(Some(Ok(_))) if this.source.is_end_stream() => {
                    progress.request_complete();
                }
                Poll::Ready(Some(Ok(_))) => progress.touch(),
                Poll::Ready(None) => progress.request_complete(),
                Poll::Ready(Some(Err(_))) => progress.downstream_failed(),
                Poll::Pending => {}
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.source.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Stream(b) => b.size_hint(),
            Source::Replay(r) => {
                SizeHint::with_exact(r.chunks.iter().map(|c| c.len() as u64).sum())
            }
            Source::Prefixed { prefix, rest } => {
                let buffered: u64 = prefix.iter().map(|c| c.len() as u64).sum();
                let mut hint = SizeHint::new();
                hint.set_lower(buffered + rest.size_hint().lower());
                if let Some(upper) = rest.size_hint().upper() {
                    hint.set_upper(buffered + upper);
                }
                hint
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body. The endpoint counts the request as in flight, and an HTTP/2
    /// stream slot stays taken, until the body ends or is dropped; an HTTP/1.1 connection goes
    /// back to its pool only when the body was read to its end. With a stream idle timeout, a
    /// body the upstream leaves idle that long fails (the downstream stream is reset).
    pub struct UpstreamBody {
        kind: Kind,
        in_flight: Option<InFlight>,
        activity: Option<Activity>,
        idle: Option<Duration>,
        // Created the first time the upstream keeps the body waiting.
        #[pin]
        timer: Option<Sleep>,
    }
}

enum Kind {
    Http1 {
        body: Incoming,
        conn: Option<H1Conn>,
    },
    Http2 {
        recv: h2::RecvStream,
        data_done: bool,
        stream: Option<StreamGuard>,
    },
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Http1 { .. } => "UpstreamBody(HTTP/1.1)",
            Kind::Http2 { .. } => "UpstreamBody(HTTP/2)",
        })
    }
}

impl UpstreamBody {
    /// An HTTP/1.1 response body; `conn` goes back to its pool at the end (`None`: a dedicated
    /// connection, which closes instead).
    pub(super) fn http1(body: Incoming, conn: Option<H1Conn>, in_flight: InFlight) -> Self {
        let mut this = Self::new(Kind::Http1 { body, conn });
        this.in_flight = Some(in_flight);
        // A response without a body (204, HEAD, content-length: 0) is done already.
        if this.is_end_stream() {
            this.finish();
        }
        this
    }

    pub(super) fn http2(recv: h2::RecvStream, stream: StreamGuard, in_flight: InFlight) -> Self {
        let mut this = Self::new(Kind::Http2 {
            recv,
            data_done: false,
            stream: Some(stream),
        });
        this.in_flight = Some(in_flight);
        this
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            in_flight: None,
            activity: None,
            idle: None,
            timer: None,
        }
    }

    /// Ties the body to its request: the response head arrived (activity), `idle` bounds the
    /// time without activity from now on, and a failure is attributed with the request's
    /// progress (a failed downstream request body is the client's fault: `DPE`).
    pub fn bind(mut self, mut activity: Activity, idle: Option<Duration>) -> Self {
        if idle.is_some() {
            activity.touch();
        }
        self.activity = Some(activity);
        self.idle = idle;
        self
    }

    /// The request's in-flight guard, for a response whose exchange goes on without a body
    /// (an upgrade's `101`: the tunnel counts against the endpoint while it lasts).
    pub fn into_in_flight(mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// The body ended cleanly: release the endpoint and give the connection back.
    fn finish(&mut self) {
        finish(&mut self.kind, &mut self.in_flight);
    }
}

fn finish(kind: &mut Kind, in_flight: &mut Option<InFlight>) {
    *in_flight = None;
    match kind {
        Kind::Http1 { conn, .. } => {
            if let Some(conn) = conn.take() {
                conn.release();
            }
        }
        Kind::Http2 { stream, .. } => *stream = None,
    }
}

/// The body failed: release the endpoint; the connection is not reused.
fn fail(kind: &mut Kind, in_flight: &mut Option<InFlight>) {
    *in_flight = None;
    match kind {
        Kind::Http1 { conn, .. } => *conn = None,
        Kind::Http2 { stream, .. } => *stream = None,
    }
}

impl Kind {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Failed>>> {
        match self {
            Self::Http1 { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| Failed(hyper_failure(&e), e.into())),
            Self::Http2 {
                recv, data_done, ..
            } => {
                let h2_err = |e: h2::Error| Failed(h2_failure(&e), e.into());
                if *data_done {
                    ready!(recv.poll_trailers(cx))
                        .map_err(h2_err)
                        .transpose()
                        .map(|t| t.map(Frame::trailers))
                        .into()
                } else {
                    match ready!(recv.poll_data(cx)) {
                        Some(Ok(data)) => {
                            // Hand the window back as soon as the bytes move downstream.
                            let _ = recv.flow_control().release_capacity(data.len());
                            Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        Some(Err(e)) => Poll::Ready(Some(Err(h2_err(e)))),
                        None => {
                            *data_done = true;
                            ready!(recv.poll_trailers(cx))
                                .map_err(h2_err)
                                .transpose()
                                .map(|t| t.map(Frame::trailers))
                                .into()
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1 { body, .. } => body.is_end_stream(),
            Self::Http2 { recv, .. } => recv.is_end_stream(),
        }
    }
}

/// A response body failure, classified where the protocol error is at hand.
struct Failed(Failure, BoxError);

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.kind.poll_frame(cx) {
            Poll::Ready(None) => {
                finish(this.kind, this.in_flight);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.kind.is_end_stream() {
                    finish(this.kind, this.in_flight);
                } else if this.idle.is_some()
                    && let Some(activity) = this.activity.as_mut()
                {
                    activity.touch();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(Failed(failure, error)))) => {
                fail(this.kind, this.in_flight);
                // The request body failing tears the upstream exchange down: the client's fault.
                let failure = match this.activity.as_ref() {
                    Some(a) if a.downstream_failed() => Failure::DownstreamProtocol,
                    _ => failure,
                };
                crate::error::log_reset_after_head(failure.flag(), &*error);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => {
                let (Some(idle), Some(activity)) = (*this.idle, this.activity.as_ref()) else {
                    return Poll::Pending;
                };
                if this.timer.is_none() {
                    this.timer
                        .set(Some(tokio::time::sleep_until(activity.idle_deadline(idle))));
                }
                let Some(mut timer) = this.timer.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                loop {
                    ready!(timer.as_mut().poll(cx));
                    let deadline = activity.idle_deadline(idle);
                    if Instant::now() >= deadline {
                        break;
                    }
                    // Activity since the timer was armed.
                    timer.as_mut().reset(deadline);
                }
                fail(this.kind, this.in_flight);
                let error = StreamIdleError(idle);
                crate::error::log_reset_after_head(crate::error::STREAM_IDLE_FLAG, &error);
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Http1 { body, .. } => body.size_hint(),
            Kind::Http2 { .. } => SizeHint::default(),
        }
    }
}
