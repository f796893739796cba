//! The connector stack for one endpoint: TCP (connect timeout, TCP_NODELAY) → (TLS: the mTLS issue) → protocol handshake.
//!
//! ```text
//!  PoolKey { addr, protocol, tls } ─► tcp(addr, timeout) ─► [tls(identity)] ─► h1 handshake │ h2 handshake
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Why a new upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/1.1 handshake with {addr} failed: {source}")]
    Http1 {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("HTTP/2 handshake with {addr} failed: {source}")]
    Http2 {
        addr: SocketAddr,
        #[source]
        source: h2::Error,
    },
    #[error("endpoint {addr} was removed from its cluster")]
    PoolClosed { addr: SocketAddr },
}

/// Opens a TCP connection with a deadline and Nagle disabled.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?
        .map_err(|source| ConnectError::Io { addr, source })?;
    // Best effort: a socket that cannot disable Nagle still works, only slower.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
