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
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
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
        io: Either::Right(Box::new(stream)),
        principal,
        sni,
    })
}

fn plain(io: GuardedIo<TcpStream>) -> Accepted {
    Accepted {
        io: Either::Left(io),
        principal: None,
        sni: None,
    }
}

/// A downstream connection: plaintext (`Left`) or TLS (`Right`), both under the listener's
/// limits and timers; tokio-util's `Either` forwards reads and writes.
pub type DownstreamIo = Either<GuardedIo<TcpStream>, Box<TlsStream<GuardedIo<TcpStream>>>>;

/// The guarded TCP connection underneath.
pub fn guarded_mut(io: &mut DownstreamIo) -> &mut GuardedIo<TcpStream> {
    match io {
        Either::Left(io) => io,
        Either::Right(stream) => stream.get_mut().0,
    }
}

/// The local address of the connection (the listener's, or the original destination).
pub fn local_addr(io: &DownstreamIo) -> io::Result<SocketAddr> {
    match io {
        Either::Left(io) => io.get_ref().local_addr(),
        Either::Right(stream) => stream.get_ref().0.get_ref().local_addr(),
    }
}
