//! An accepted connection that holds its listener's permits and enforces the first-byte and idle timeouts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A connection of a [`crate::BoundedListener`]. Reads and writes fail with
/// [`io::ErrorKind::TimedOut`] (and the server closes the connection) when the peer sent
/// nothing within the first-byte timeout, or when nothing moved either way for the idle
/// timeout. Dropping it frees its place under the listener's limit.
///
/// The timer is lazy: it is armed for the earliest possible deadline and, when it fires
/// after more traffic, re-armed for the real one; so traffic costs one clock read per
/// read or write, not a timer update.
#[derive(Debug)]
pub struct GuardedIo<S> {
    inner: S,
    first_byte_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    accepted: Instant,
    last_activity: Instant,
    seen_first_byte: bool,
    timer: Option<Pin<Box<Sleep>>>,
    _permits: Vec<OwnedSemaphorePermit>,
}

impl<S> GuardedIo<S> {
    pub(crate) fn new(
        inner: S,
        first_byte_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            first_byte_timeout,
            idle_timeout,
            accepted: now,
            last_activity: now,
            seen_first_byte: false,
            timer: None,
            _permits: permits,
        }
    }

    /// Wraps `inner` with the given timeouts and no permits (for tests and in-memory streams).
    pub fn unbounded(
        inner: S,
        first_byte_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Self::new(inner, first_byte_timeout, idle_timeout, Vec::new())
    }

    /// Replaces the timeouts (e.g. with those of the listener's current config).
    pub fn set_timeouts(
        &mut self,
        first_byte_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) {
        self.first_byte_timeout = first_byte_timeout;
        self.idle_timeout = idle_timeout;
        // The armed timer may be later than the new deadline: arm a fresh one.
        self.timer = None;
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// When the connection times out if nothing more happens.
    fn deadline(&self) -> Option<Instant> {
        if !self.seen_first_byte
            && let Some(timeout) = self.first_byte_timeout
        {
            let first = self.accepted + timeout;
            return Some(match self.idle_timeout {
                Some(idle) => first.min(self.last_activity + idle),
                None => first,
            });
        }
        self.idle_timeout.map(|idle| self.last_activity + idle)
    }

    /// `Ready(error)` once the connection has timed out; registers the waker otherwise.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= deadline {
                let what = if self.seen_first_byte {
                    "connection idle timeout"
                } else {
                    "no request within the first-byte timeout"
                };
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            // Traffic moved the deadline on since the timer was armed.
            timer.as_mut().reset(deadline);
        }
    }

    fn activity(&mut self) {
        self.last_activity = Instant::now();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.seen_first_byte = true;
                    this.activity();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.poll_timeout(cx).map(Err),
        }
    }
}

impl<S> GuardedIo<S> {
    /// What a write returned, with the activity recorded and the timeouts checked while
    /// the peer does not take the bytes.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.activity();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => self.poll_timeout(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(feature = "tonic")]
impl tonic::transport::server::Connected for GuardedIo<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_closed_after_the_first_byte_timeout() {
        let (_client, server) = duplex(64);
        let mut io = GuardedIo::unbounded(server, Some(Duration::from_secs(30)), None);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_connection_open_and_silence_closes_it() {
        let (mut client, server) = duplex(64);
        let mut io = GuardedIo::unbounded(
            server,
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(60)),
        );
        let start = Instant::now();
        let mut buf = [0u8; 8];
        // A byte every 40 s: never 60 s of silence, and the first one is in time.
        for _ in 0..4 {
            client.write_all(b"x").await.expect("write");
            assert_eq!(io.read(&mut buf).await.expect("read"), 1);
            tokio::time::advance(Duration::from_secs(40)).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(160));
        // The last byte was read at 120 s: the idle timeout fires at 180 s.
        let err = io.read(&mut buf).await.expect_err("idle timeout");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(180));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_count_as_activity() {
        let (mut client, server) = duplex(1024);
        let mut io = GuardedIo::unbounded(server, None, Some(Duration::from_secs(10)));
        let start = Instant::now();
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(8)).await;
            io.write_all(b"tick").await.expect("write");
        }
        let mut buf = [0u8; 12];
        client.read_exact(&mut buf).await.expect("client reads");
        let mut one = [0u8; 1];
        let err = io.read(&mut one).await.expect_err("idle timeout");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(34));
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeouts_means_no_timer() {
        let (_client, server) = duplex(64);
        let mut io = GuardedIo::unbounded(server, None, None);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf)).await;
        assert!(read.is_err(), "still waiting after an hour");
        assert!(io.timer.is_none());
    }
}
