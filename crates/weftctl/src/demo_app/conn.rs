//! One accepted connection as the app sees it: the socket, wrapped so an injected reset can
//! abort it with a TCP RST, and the instance name the app reports on it (`x-weft-instance`).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use http::{HeaderValue, Version};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// The error the app's service returns to reset a request instead of answering it. hyper
/// resets an HTTP/2 stream whose service fails (RST_STREAM INTERNAL_ERROR) and keeps the
/// connection; on HTTP/1 it ends the connection without writing anything, and the
/// [`Socket`] then closes with a RST.
#[derive(Debug)]
pub struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("demo-app: injected reset")
    }
}

impl std::error::Error for Reset {}

/// A connection's state the requests on it share.
#[derive(Debug)]
pub struct Conn {
    /// `x-weft-instance`: the address the app listens on, or, listening on an unspecified
    /// address (0.0.0.0, ::), the connection's local address (the Pod's IP and port).
    pub instance: Option<HeaderValue>,
    abort: Arc<AtomicBool>,
}

impl Conn {
    /// Resets the request: the whole connection on HTTP/1 (no other request can be in
    /// flight on it), only the stream on HTTP/2.
    pub fn reset(&self, version: Version) -> Reset {
        if version < Version::HTTP_2 {
            self.abort.store(true, Ordering::Relaxed);
        }
        Reset
    }
}

/// Wraps an accepted stream: the socket to serve and the connection's shared state.
pub fn accept(stream: TcpStream, listen: Option<SocketAddr>) -> (Socket, Conn) {
    let instance = instance(listen, stream.local_addr().ok())
        .and_then(|addr| HeaderValue::from_str(&addr.to_string()).ok());
    let abort = Arc::new(AtomicBool::new(false));
    let conn = Conn {
        instance,
        abort: abort.clone(),
    };
    (Socket { stream, abort }, conn)
}

/// Which address names this instance; see [`Conn::instance`].
pub fn instance(listen: Option<SocketAddr>, local: Option<SocketAddr>) -> Option<SocketAddr> {
    match listen {
        Some(listen) if !listen.ip().is_unspecified() => Some(listen),
        _ => local.or(listen),
    }
}

/// A TCP stream that, once its connection is aborted, writes nothing more, does not shut
/// down gracefully (no FIN) and closes with SO_LINGER 0, so the peer sees a RST.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    abort: Arc<AtomicBool>,
}

impl Socket {
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

fn aborted_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, Reset)
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.aborted() {
            // Closing with a zero linger discards what is unsent and sends a RST. If the
            // option cannot be set, the close is an ordinary one, without an answer.
            if let Err(error) = self.stream.set_zero_linger() {
                tracing::debug!(%error, "cannot set SO_LINGER 0 for an injected reset");
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.aborted() {
            // No FIN before the RST.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn instance_is_the_listen_address_unless_unspecified() {
        let local = addr("10.1.2.3:8080");
        assert_eq!(
            instance(addr("127.0.0.1:9080"), local),
            addr("127.0.0.1:9080")
        );
        assert_eq!(instance(addr("0.0.0.0:8080"), local), local);
        assert_eq!(
            instance(addr("[::]:8080"), addr("[fd00::7]:8080")),
            addr("[fd00::7]:8080")
        );
        assert_eq!(instance(addr("0.0.0.0:8080"), None), addr("0.0.0.0:8080"));
        assert_eq!(instance(None, local), local);
    }

    #[test]
    fn only_http1_resets_the_connection() {
        let conn = Conn {
            instance: None,
            abort: Arc::new(AtomicBool::new(false)),
        };
        let _ = conn.reset(Version::HTTP_2);
        assert!(!conn.abort.load(Ordering::Relaxed));
        let _ = conn.reset(Version::HTTP_11);
        assert!(conn.abort.load(Ordering::Relaxed));
    }
}
