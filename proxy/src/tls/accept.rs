//! The transport step of an accepted connection, after its filter chain was chosen:
//! plaintext, or the chain's TLS (mesh mTLS); the peer's SPIFFE identity from its client
//! certificate.
//!
//! ```text
//!  GuardedIo<TcpStream> ─► chain without TLS ──► DownstreamIo::Plain
//!                       └► chain with TLS ─────► rustls (MeshTls::server) ─► DownstreamIo::Tls { principal, sni, alpn }
//! ```
//!
//! A chain agrees to `istio-peer-exchange` in ALPN only when it does Istio's TCP metadata
//! exchange (its `istio.metadata_exchange` filter): a client that offers it then writes its
//! metadata frame first, which any other chain would hand to the app.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use weft_net::GuardedIo;

use super::{MeshTls, TlsError};
use crate::config::tls::DownstreamTls;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection was closed before its chain's network filter.
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
}

/// A downstream connection after its transport step.
pub struct Accepted {
    pub io: DownstreamIo,
    /// The client certificate's SPIFFE ID (mutual TLS only).
    pub principal: Option<Arc<str>>,
    /// The SNI the client sent (TLS only).
    pub sni: Option<Arc<str>>,
    /// The application protocol the TLS handshake chose (TLS only).
    pub alpn: Option<Vec<u8>>,
}

impl Accepted {
    /// Whether the handshake chose Istio's metadata exchange (`istio-peer-exchange`).
    pub fn peer_exchange(&self) -> bool {
        self.alpn.as_deref() == Some(weft_identity::tls::ALPN_ISTIO_PEER_EXCHANGE)
    }
}

/// Runs the transport step of `io`: plaintext without `settings`, else the TLS handshake
/// (agreeing to `istio-peer-exchange` only with `peer_exchange`).
pub async fn accept(
    io: GuardedIo<TcpStream>,
    peer: SocketAddr,
    settings: Option<&DownstreamTls>,
    peer_exchange: bool,
    tls: &MeshTls,
) -> Result<Accepted, AcceptError> {
    let Some(settings) = settings else {
        return Ok(plain(io));
    };
    let config = tls
        .server(&settings.alpn, peer_exchange)
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
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok(Accepted {
        io: Either::Right(Box::new(stream)),
        principal,
        sni,
        alpn,
    })
}

fn plain(io: GuardedIo<TcpStream>) -> Accepted {
    Accepted {
        io: Either::Left(io),
        principal: None,
        sni: None,
        alpn: None,
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
