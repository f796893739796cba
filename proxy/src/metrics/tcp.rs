//! Istio's TCP metrics for one proxied connection: `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total`,
//! `istio_tcp_sent_bytes_total`.
//!
//! ```text
//!  tcp.rs: cluster, endpoint, connect ─► TcpKey (flags: UH, UF when it failed) ─► series
//!    connected: the downstream side wrapped in Counted: opened +1 now, bytes as they pass
//!               (a long connection's counters move while it lives), closed +1 on drop; the
//!               connection's own totals too (its access log line), with or without a series
//!    failed:    opened +1 and closed +1 at once
//! ```

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::labels::{Peer, Reporter, Security, Service};
use super::view::{Dimensions, Stats};
use crate::error::ResponseFlags;

/// The labels that tell one TCP series from another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpKey {
    pub reporter: Reporter,
    pub peer: Peer,
    pub peer_principal: Option<Arc<str>>,
    /// Whether this proxy presented its own identity (mutual TLS).
    pub mtls: bool,
    pub service: Service,
    pub flags: ResponseFlags,
    pub security: Security,
    /// The chain's stats settings (which metrics, which labels).
    pub stats: Arc<Stats>,
    /// The values of the settings' label expressions for this connection.
    pub dimensions: Dimensions,
}

/// One series of TCP metrics.
#[derive(Debug, Default)]
pub struct TcpSeries {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    /// Bytes sent to the downstream peer.
    pub sent: AtomicU64,
    /// Bytes received from the downstream peer.
    pub received: AtomicU64,
}

impl TcpSeries {
    /// A connection that ended before it carried anything (no endpoint, connect failure).
    pub fn failed(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The downstream side of a proxied connection, counting what it carries: into its series
    /// (opened when made, closed when dropped) and into its own totals.
    pub struct Counted<IO> {
        #[pin]
        io: IO,
        series: Option<Arc<TcpSeries>>,
        sent: u64,
        received: u64,
    }

    impl<IO> PinnedDrop for Counted<IO> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(series) = &this.series {
                series.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<IO> Counted<IO> {
    /// Counts `io`'s bytes, into `series` when metrics are on.
    pub fn new(io: IO, series: Option<Arc<TcpSeries>>) -> Self {
        if let Some(series) = &series {
            series.opened.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            io,
            series,
            sent: 0,
            received: 0,
        }
    }

    /// Bytes sent to the downstream peer so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes received from the downstream peer so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

impl<IO: AsyncRead> AsyncRead for Counted<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.io.poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before) as u64;
        if read > 0 {
            *this.received += read;
            if let Some(series) = this.series {
                series.received.fetch_add(read, Ordering::Relaxed);
            }
        }
        poll
    }
}

impl<IO: AsyncWrite> AsyncWrite for Counted<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            count_sent(this.sent, this.series.as_deref(), *n);
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            count_sent(this.sent, this.series.as_deref(), *n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

fn count_sent(total: &mut u64, series: Option<&TcpSeries>, n: usize) {
    *total += n as u64;
    if let Some(series) = series {
        series.sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_both_ways_and_the_close_are_counted() {
        let series = Arc::new(TcpSeries::default());
        let (near, mut far) = tokio::io::duplex(64);
        let mut counted = Counted::new(near, Some(series.clone()));
        assert_eq!(series.opened.load(Ordering::Relaxed), 1);
        far.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        counted.read_exact(&mut buf).await.unwrap();
        counted.write_all(b"hi!").await.unwrap();
        // Counted while the connection lives, not only at its end.
        assert_eq!(series.received.load(Ordering::Relaxed), 5);
        assert_eq!(series.sent.load(Ordering::Relaxed), 3);
        assert_eq!(series.closed.load(Ordering::Relaxed), 0);
        assert_eq!((counted.received(), counted.sent()), (5, 3));
        drop(counted);
        assert_eq!(series.closed.load(Ordering::Relaxed), 1);
    }
}
