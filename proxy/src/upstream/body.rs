//! Bodies that cross the proxy: request bodies (streamed, or buffered so a retry can replay them) and upstream response bodies.
//!
//! ```text
//!  downstream Incoming ─► RequestBody::stream ──────────────────────────────► upstream
//!                     │      frames ─► Progress (stream idle timeout; downstream failure ─► DPE)
//!                     └─► replayable(limit) ─► Tee: streamed to the first attempt and recorded while
//!                                              ≤ limit; a retry replays the recording, then the rest
//!                                              (past the limit: no more attempts)
//!  upstream h1 Incoming │ h2 RecvStream ─► UpstreamBody { in-flight guard, stream slot; h1 conn back to its pool at the end }
//!                                             └─ idle timer (armed only while the upstream keeps the body waiting)
//!  a body that fails after the response head: the downstream stream is reset, the flag is logged
//! ```

use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
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

/// The route timeout passed before the response body ended (Envoy's whole-response timeout).
#[derive(Debug, thiserror::Error)]
#[error("route timeout: the response did not complete in time")]
pub struct RouteTimeoutError;

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

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
    /// A body made here (the proxy's own requests: span exports), sent in one frame.
    Full(Option<Bytes>),
    /// The downstream body, streamed as it arrives.
    Stream(Incoming),
    /// One attempt's view of a body that retries may replay: what was recorded, then the
    /// downstream body as it arrives (recorded while it fits the limit).
    Tee { tee: Arc<Mutex<Tee>>, next: usize },
}

/// A downstream body read once and recorded up to a limit, so that another attempt can send it
/// again (Envoy's retry buffering: past the limit, the request can no longer be retried).
#[derive(Debug)]
pub struct Tee {
    source: Option<Incoming>,
    /// Frames read so far, while they fit `limit`.
    recorded: Vec<Frame<Bytes>>,
    /// Frames read from the source in all.
    read: usize,
    size: usize,
    limit: usize,
    /// More than `limit` bytes were read: the recording is incomplete.
    overflowed: bool,
    /// The downstream body failed.
    failed: bool,
}

/// A request body that can be sent more than once (see [`Tee`]).
#[derive(Debug, Clone)]
pub struct Replayable {
    tee: Arc<Mutex<Tee>>,
    progress: Option<Arc<Progress>>,
}

impl Replayable {
    /// The body for one more attempt, from its first byte; `None` once the body no longer
    /// fits the limit or failed.
    pub fn attempt(&self) -> Option<RequestBody> {
        let tee = lock(&self.tee);
        if tee.overflowed || tee.failed {
            return None;
        }
        drop(tee);
        Some(RequestBody {
            source: Source::Tee {
                tee: self.tee.clone(),
                next: 0,
            },
            progress: self.progress.clone(),
        })
    }
}

fn lock(tee: &Mutex<Tee>) -> parking_lot::MutexGuard<'_, Tee> {
    tee.lock()
}

fn clone_frame(frame: &Frame<Bytes>) -> Frame<Bytes> {
    match frame.data_ref() {
        Some(data) => Frame::data(data.clone()),
        None => Frame::trailers(frame.trailers_ref().cloned().unwrap_or_default()),
    }
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A body the proxy made itself, in one frame.
    pub fn full(bytes: Bytes) -> Self {
        Self {
            source: Source::Full(Some(bytes).filter(|b| !b.is_empty())),
            progress: None,
        }
    }

    /// The downstream body, streamed; its frames, end and failure are reported to `progress`.
    pub fn stream(body: Incoming, progress: Option<Arc<Progress>>) -> Self {
        Self {
            source: Source::Stream(body),
            progress,
        }
    }

    /// The downstream body, streamed to the first attempt as it arrives and recorded while it
    /// fits in `limit` bytes, so that retries can send it again (nothing waits for the body).
    pub fn replayable(body: Incoming, limit: usize, progress: Option<Arc<Progress>>) -> Replayable {
        Replayable {
            tee: Arc::new(Mutex::new(Tee {
                source: Some(body),
                recorded: Vec::new(),
                read: 0,
                size: 0,
                limit,
                overflowed: false,
                failed: false,
            })),
            progress,
        }
    }
}

impl Tee {
    fn poll_frame(
        &mut self,
        next: &mut usize,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, DownstreamBodyError>>> {
        if let Some(frame) = self.recorded.get(*next) {
            *next += 1;
            return Poll::Ready(Some(Ok(clone_frame(frame))));
        }
        if *next < self.read {
            // Frames this attempt did not see were not recorded (an older attempt read past
            // the limit): it cannot send the body whole. `Replayable::attempt` prevents this.
            return Poll::Ready(None);
        }
        let Some(source) = self.source.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(source).poll_frame(cx)) {
            None => {
                self.source = None;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                self.failed = true;
                self.source = None;
                Poll::Ready(Some(Err(DownstreamBodyError(e))))
            }
            Some(Ok(frame)) => {
                self.read += 1;
                *next += 1;
                let len = frame.data_ref().map_or(0, Bytes::len);
                self.size = self.size.saturating_add(len);
                if self.size > self.limit {
                    self.overflowed = true;
                    self.recorded = Vec::new();
                } else if !self.overflowed {
                    self.recorded.push(clone_frame(&frame));
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self, next: usize) -> bool {
        next >= self.read && self.source.as_ref().is_none_or(Incoming::is_end_stream)
    }
}

impl Source {
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(b) => b.is_end_stream(),
            Self::Tee { tee, next } => lock(tee).is_end_stream(*next),
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
        // Bytes read from downstream by this poll (a replay's recorded frames are not).
        let mut fresh = 0;
        let poll = match &mut this.source {
            Source::Empty => Poll::Ready(None),
            Source::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Source::Stream(b) => {
                let poll = Pin::new(b).poll_frame(cx).map_err(DownstreamBodyError);
                if let Poll::Ready(Some(Ok(frame))) = &poll {
                    fresh = frame.data_ref().map_or(0, Bytes::len);
                }
                poll
            }
            Source::Tee { tee, next } => {
                let mut tee = lock(tee);
                let before = tee.size;
                let poll = tee.poll_frame(next, cx);
                fresh = tee.size - before;
                poll
            }
        };
        if let Some(progress) = &this.progress {
            if fresh > 0 {
                progress.add_received(fresh as u64);
            }
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
            Source::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Source::Stream(b) => b.size_hint(),
            Source::Tee { tee, next } => {
                let tee = lock(tee);
                match &tee.source {
                    // Complete: what is left of the recording.
                    None => SizeHint::with_exact(
                        tee.recorded
                            .iter()
                            .skip(*next)
                            .filter_map(Frame::data_ref)
                            .map(|d| d.len() as u64)
                            .sum(),
                    ),
                    // The first attempt's view, or a replay: the source's own hint only holds
                    // for an attempt reading at its head (a replay's recorded part adds to it).
                    Some(source) if *next >= tee.read => source.size_hint(),
                    Some(_) => SizeHint::default(),
                }
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
        // The route timeout's end: the whole response must have arrived by then.
        deadline: Option<Instant>,
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
            deadline: None,
            timer: None,
        }
    }

    /// Ties the body to its request: the response head arrived (activity), `idle` bounds the
    /// time without activity from now on, `deadline` (the route timeout) the time until the
    /// body's end, and a failure is attributed with the request's progress (a failed
    /// downstream request body is the client's fault: `DPE`).
    pub fn bind(
        mut self,
        mut activity: Activity,
        idle: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Self {
        if idle.is_some() {
            activity.touch();
        }
        self.activity = Some(activity);
        self.idle = idle;
        self.deadline = deadline;
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
                Poll::Ready(Some(Err(crate::error::reset_after_head(
                    failure.flag(),
                    error,
                ))))
            }
            Poll::Pending => {
                let idle_deadline = match (*this.idle, this.activity.as_ref()) {
                    (Some(idle), Some(activity)) => Some(activity.idle_deadline(idle)),
                    _ => None,
                };
                let Some(first) = earliest(idle_deadline, *this.deadline) else {
                    return Poll::Pending;
                };
                if this.timer.is_none() {
                    this.timer.set(Some(tokio::time::sleep_until(first)));
                }
                let Some(mut timer) = this.timer.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                let error: BoxError = loop {
                    ready!(timer.as_mut().poll(cx));
                    let now = Instant::now();
                    if let Some(deadline) = *this.deadline
                        && now >= deadline
                    {
                        break crate::error::reset_after_head(
                            crate::error::ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
                            Box::new(RouteTimeoutError),
                        );
                    }
                    let idle_deadline = match (*this.idle, this.activity.as_ref()) {
                        (Some(idle), Some(activity)) => Some(activity.idle_deadline(idle)),
                        _ => None,
                    };
                    if let (Some(idle), Some(at)) = (*this.idle, idle_deadline)
                        && now >= at
                    {
                        break crate::error::reset_after_head(
                            crate::error::ResponseFlags::STREAM_IDLE_TIMEOUT,
                            Box::new(StreamIdleError(idle)),
                        );
                    }
                    // Activity since the timer was armed.
                    match earliest(idle_deadline, *this.deadline) {
                        Some(at) => timer.as_mut().reset(at),
                        None => return Poll::Pending,
                    }
                };
                fail(this.kind, this.in_flight);
                Poll::Ready(Some(Err(error)))
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
