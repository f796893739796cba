//! The app's response bodies: whole, or dribbled out in chunks some time apart (a slow answer
//! whose headers come at once: `--slow-body-ms`, `slow_body_ms=N`).

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::Reply;

/// How many chunks a slow body is sent in (fewer when it has fewer bytes).
pub const SLOW_BODY_CHUNKS: usize = 4;

/// A response body of the app.
#[derive(Debug)]
pub enum AppBody {
    Whole(Full<Bytes>),
    Slow(SlowBody),
}

/// `reply` as it is.
pub fn whole(reply: Reply) -> Response<AppBody> {
    reply.map(AppBody::Whole)
}

/// `reply` with its body in [`SLOW_BODY_CHUNKS`] chunks, `gap` apart: the headers and the
/// first chunk at once, the last after `(SLOW_BODY_CHUNKS - 1) · gap`. The length is known,
/// so HTTP/1 sends a `content-length`.
pub async fn slow(reply: Reply, gap: Duration) -> Response<AppBody> {
    let (parts, body) = reply.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    Response::from_parts(parts, AppBody::Slow(SlowBody::new(bytes, gap)))
}

/// A body sent in chunks `gap` apart.
#[derive(Debug)]
pub struct SlowBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    gap: Duration,
    /// The wait before the next chunk, once started.
    wait: Option<Pin<Box<Sleep>>>,
    started: bool,
}

impl SlowBody {
    pub fn new(mut bytes: Bytes, gap: Duration) -> Self {
        let remaining = bytes.len() as u64;
        let size = bytes.len().div_ceil(SLOW_BODY_CHUNKS).max(1);
        let mut chunks = VecDeque::with_capacity(SLOW_BODY_CHUNKS);
        while !bytes.is_empty() {
            chunks.push_back(bytes.split_to(size.min(bytes.len())));
        }
        SlowBody {
            chunks,
            remaining,
            gap,
            wait: None,
            started: false,
        }
    }
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.chunks.is_empty() {
            return Poll::Ready(None);
        }
        if this.started {
            let gap = this.gap;
            let wait = this
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.wait = None;
        }
        this.started = true;
        match this.chunks.pop_front() {
            Some(chunk) => {
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AppBody::Whole(body) => Pin::new(body).poll_frame(cx),
            AppBody::Slow(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AppBody::Whole(body) => body.is_end_stream(),
            AppBody::Slow(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AppBody::Whole(body) => body.size_hint(),
            AppBody::Slow(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    /// The frames of `body` and when each came.
    async fn frames(mut body: SlowBody) -> Vec<(Bytes, Duration)> {
        let start = Instant::now();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                panic!("only data frames");
            };
            frames.push((data, start.elapsed()));
        }
        frames
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_body_comes_in_chunks_a_gap_apart() {
        let gap = Duration::from_millis(100);
        let body = SlowBody::new(Bytes::from_static(b"0123456789"), gap);
        assert_eq!(body.size_hint().exact(), Some(10));
        let frames = frames(body).await;
        let chunks: Vec<&[u8]> = frames.iter().map(|(b, _)| b.as_ref()).collect();
        assert_eq!(chunks, [&b"012"[..], b"345", b"678", b"9"]);
        let times: Vec<Duration> = frames.iter().map(|&(_, t)| t).collect();
        assert_eq!(times, [Duration::ZERO, gap, gap * 2, gap * 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn short_and_empty_slow_bodies() {
        let gap = Duration::from_millis(10);
        let two = frames(SlowBody::new(Bytes::from_static(b"ab"), gap)).await;
        assert_eq!(two.len(), 2);
        let empty = SlowBody::new(Bytes::new(), gap);
        assert!(empty.is_end_stream());
        assert!(frames(empty).await.is_empty());
    }
}
