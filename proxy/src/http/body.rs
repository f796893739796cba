//! Response bodies: the upstream's streamed body (holding its endpoint's in-flight count) or a local one.
//!
//! ```text
//!  upstream Incoming ─► UpstreamBody { InFlight guard } ─┐
//!  local reply Full<Bytes> ──────────────────────────────┴─► Either ─► downstream
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::balance::InFlight;

/// What the proxy answers with.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Streams the upstream response; the endpoint counts as busy until the body ends or is dropped.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    guard: Option<InFlight>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, guard: InFlight) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(poll, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
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
