//! The transport step of an accepted connection, before HTTP: plaintext, TLS (STRICT), or
//! detected from the first bytes (PERMISSIVE); the peer's SPIFFE identity from its client
//! certificate.
//!
//! ```text
//!  GuardedIo<TcpStream> ─► listener transport ─┬─ Plaintext ───────────────► DownstreamIo::Plain
//!                                              ├─ Tls: ClientHello? ─ no ──► refused (logged: peer, policy)
//!                                              └─ Detect: ClientHello? ─ no ► DownstreamIo::Plain
//!                                                             └ yes ─► rustls (MeshTls::server) ─► DownstreamIo::Tls { principal, sni }
//! ```

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use weft_net::GuardedIo;

use super::inspect::{Transport, detect};
use super::{MeshTls, TlsError};
use crate::config::listener_transport::{ListenerTransport, MtlsInfo};

/// How long a client has to send its first bytes and finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(
        "plaintext connection from {peer} refused: listener {listener} accepts only mutual TLS (mode {mode}, {policy})"
    )]
    PlaintextRefused {
        peer: SocketAddr,
        listener: String,
        mode: String,
        policy: String,
    },
    #[error("TLS connection from {peer} refused: {source}")]
    Setup {
        peer: SocketAddr,
        #[source]
        source: TlsError,
    },
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {peer} timed out")]
    Timeout { peer: SocketAddr },
    #[error("reading from {peer}: {source}")]
    Io {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A downstream connection after its transport step.
pub struct Accepted {
    pub io: DownstreamIo,
    /// The client certificate's SPIFFE ID (mutual TLS only).
    pub principal: Option<Arc<str>>,
    /// The SNI the client sent (TLS only).
    pub sni: Option<Arc<str>>,
}

/// Runs the transport step of `io` for a listener.
pub async fn accept(
    io: GuardedIo<TcpStream>,
    peer: SocketAddr,
    listener: &str,
    transport: &ListenerTransport,
    mtls: Option<&MtlsInfo>,
    tls: &MeshTls,
) -> Result<Accepted, AcceptError> {
    let (settings, strict) = match transport {
        ListenerTransport::Plaintext => return Ok(plain(io)),
        ListenerTransport::Tls(settings) => (settings, true),
        ListenerTransport::Detect(settings) => (settings, false),
    };
    let seen = detect(io.get_ref(), HANDSHAKE_TIMEOUT)
        .await
        .map_err(|source| AcceptError::Io { peer, source })?;
    if seen == Transport::Plaintext {
        if !strict {
            return Ok(plain(io));
        }
        let info = mtls.cloned().unwrap_or_default();
        return Err(AcceptError::PlaintextRefused {
            peer,
            listener: listener.to_string(),
            mode: if info.mode.is_empty() {
                "STRICT".to_string()
            } else {
                info.mode
            },
            policy: if info.policy.is_empty() {
                "no PeerAuthentication named".to_string()
            } else {
                format!("PeerAuthentication {}", info.policy)
            },
        });
    }
    let config = tls
        .server(&settings.alpn)
        .map_err(|source| AcceptError::Setup { peer, source })?;
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(io))
        .await
        .map_err(|_| AcceptError::Timeout { peer })?
        .map_err(|source| AcceptError::Handshake { peer, source })?;
    let (_, conn) = stream.get_ref();
    let principal = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(weft_identity::verify::peer_uri)
        .map(Arc::from);
    let sni = conn.server_name().map(Arc::from);
    Ok(Accepted {
        io: DownstreamIo::Tls(Box::new(stream)),
        principal,
        sni,
    })
}

fn plain(io: GuardedIo<TcpStream>) -> Accepted {
    Accepted {
        io: DownstreamIo::Plain(io),
        principal: None,
        sni: None,
    }
}

/// A downstream connection: plaintext or TLS, both under the listener's limits and timers.
pub enum DownstreamIo {
    Plain(GuardedIo<TcpStream>),
    Tls(Box<TlsStream<GuardedIo<TcpStream>>>),
}

impl DownstreamIo {
    /// The guarded TCP connection underneath.
    pub fn guarded_mut(&mut self) -> &mut GuardedIo<TcpStream> {
        match self {
            Self::Plain(io) => io,
            Self::Tls(stream) => stream.get_mut().0,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(io) => io.get_ref().local_addr(),
            Self::Tls(stream) => stream.get_ref().0.get_ref().local_addr(),
        }
    }
}

impl AsyncRead for DownstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DownstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
