//! Bodies that cross the proxy: request bodies (streamed, or buffered so a retry can replay them) and upstream response bodies.
//!
//! ```text
//!  downstream Incoming ─► RequestBody::Stream ───────────────────────────────► upstream
//!                     └─► buffer(limit) ─► RequestBody::Replay (≤ limit, cloneable for retries)
//!                                      └─► RequestBody::Prefixed (over the limit: buffered part, then the rest)
//!  upstream h1 Incoming │ h2 RecvStream ─► UpstreamBody { in-flight guard, stream slot; h1 conn back to its pool at the end }
//! ```

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::balance::InFlight;
use super::pool::{H1Conn, StreamGuard};

/// Errors of bodies crossing the proxy, as hyper wants them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to an upstream.
#[derive(Debug, Default)]
pub enum RequestBody {
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
    /// Reads `body` into memory while it fits in `limit` bytes. A body that fits comes back as
    /// `Replay` (clone it per attempt); a larger one as `Prefixed`, which streams the rest.
    pub async fn buffer(body: Incoming, limit: usize) -> Result<Self, hyper::Error> {
        let mut body = body;
        let mut chunks = VecDeque::new();
        let mut size = 0usize;
        loop {
            if size > limit {
                return Ok(Self::Prefixed {
                    prefix: chunks,
                    rest: body,
                });
            }
            let Some(frame) = body.frame().await else {
                return Ok(Self::Replay(Replay {
                    chunks,
                    trailers: None,
                }));
            };
            match frame?.into_data() {
                Ok(data) => {
                    size += data.len();
                    chunks.push_back(data);
                }
                Err(frame) => {
                    return Ok(Self::Replay(Replay {
                        chunks,
                        trailers: frame.into_trailers().ok(),
                    }));
                }
            }
        }
    }

    /// Another copy of a buffered body, for one more attempt; `None` if the body was streamed.
    pub fn try_clone(&self) -> Option<Self> {
        match self {
            Self::Empty => Some(Self::Empty),
            Self::Replay(r) => Some(Self::Replay(r.clone())),
            Self::Stream(_) | Self::Prefixed { .. } => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Stream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Replay(r) => Poll::Ready(
                r.chunks
                    .pop_front()
                    .map(Frame::data)
                    .or_else(|| r.trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            Self::Prefixed { prefix, rest } => match prefix.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Stream(b) => b.is_end_stream(),
            Self::Replay(r) => r.chunks.is_empty() && r.trailers.is_none(),
            Self::Prefixed { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Stream(b) => b.size_hint(),
            Self::Replay(r) => SizeHint::with_exact(r.chunks.iter().map(|c| c.len() as u64).sum()),
            Self::Prefixed { prefix, rest } => {
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

/// An upstream response body. The endpoint counts the request as in flight, and an HTTP/2
/// stream slot stays taken, until the body ends or is dropped; an HTTP/1.1 connection goes
/// back to its pool only when the body was read to its end.
pub struct UpstreamBody {
    kind: Kind,
    in_flight: Option<InFlight>,
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
    pub(super) fn http1(body: Incoming, conn: H1Conn, in_flight: InFlight) -> Self {
        let mut this = Self {
            kind: Kind::Http1 {
                body,
                conn: Some(conn),
            },
            in_flight: Some(in_flight),
        };
        // A response without a body (204, HEAD, content-length: 0) is done already.
        if this.is_end_stream() {
            this.finish();
        }
        this
    }

    pub(super) fn http2(recv: h2::RecvStream, stream: StreamGuard, in_flight: InFlight) -> Self {
        Self {
            kind: Kind::Http2 {
                recv,
                data_done: false,
                stream: Some(stream),
            },
            in_flight: Some(in_flight),
        }
    }

    /// The body ended cleanly: release the endpoint and give the connection back.
    fn finish(&mut self) {
        self.in_flight = None;
        match &mut self.kind {
            Kind::Http1 { conn, .. } => {
                if let Some(conn) = conn.take() {
                    conn.release();
                }
            }
            Kind::Http2 { stream, .. } => *stream = None,
        }
    }

    /// The body failed: release the endpoint; the connection is not reused.
    fn fail(&mut self) {
        self.in_flight = None;
        match &mut self.kind {
            Kind::Http1 { conn, .. } => *conn = None,
            Kind::Http2 { stream, .. } => *stream = None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let poll: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.kind {
            Kind::Http1 { body, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Http2 {
                recv, data_done, ..
            } => {
                if *data_done {
                    ready!(recv.poll_trailers(cx))
                        .map_err(Into::into)
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
                        Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                        None => {
                            *data_done = true;
                            ready!(recv.poll_trailers(cx))
                                .map_err(Into::into)
                                .transpose()
                                .map(|t| t.map(Frame::trailers))
                                .into()
                        }
                    }
                }
            }
        };
        match &poll {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.fail(),
            Poll::Ready(Some(Ok(_))) if this.is_end_stream() => this.finish(),
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Http1 { body, .. } => body.is_end_stream(),
            Kind::Http2 { recv, .. } => recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Http1 { body, .. } => body.size_hint(),
            Kind::Http2 { .. } => SizeHint::default(),
        }
    }
}
