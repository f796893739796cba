//! The connector stack for one endpoint: TCP (connect timeout, TCP_NODELAY) → TLS when the
//! cluster says so (mesh mTLS from the proxy's identity, or files) → protocol handshake.
//!
//! ```text
//!  PoolKey { addr, protocol, tls, source } ─► tcp(addr, source, timeout) ─► [rustls client (tls/)]
//!      ─► h1 handshake │ h2 handshake          (the TCP proxy: open(), no HTTP handshake)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::pool::{PoolKey, Protocol, TlsMode};
use crate::tls::{HttpAlpn, MeshTls, TlsError};

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
    /// The cluster's circuit breakers refused a connection or a wait for one (`UO`).
    #[error("no connection to {addr}: {overflow}")]
    Overflow {
        addr: SocketAddr,
        overflow: super::breakers::Overflow,
    },
    #[error("TLS to {addr}: {source}")]
    TlsSetup {
        addr: SocketAddr,
        #[source]
        source: TlsError,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    TlsHandshake {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A connection to an upstream: plaintext (`Left`) or TLS (`Right`); tokio-util's `Either`
/// forwards reads and writes to whichever it is.
pub type UpstreamIo = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Connects to the pool's endpoint: TCP, then TLS when the pool key says so (offering the
/// pool's HTTP protocol in ALPN over mesh TLS).
pub async fn connect(
    key: &PoolKey,
    timeout: Duration,
    tls: &MeshTls,
) -> Result<UpstreamIo, ConnectError> {
    let http = match key.protocol {
        Protocol::Http1 => HttpAlpn::Http1,
        Protocol::Http2 => HttpAlpn::Http2,
    };
    let io = open(key.addr, key.source, &key.tls, Some(http), timeout, tls).await?;
    if let Some(keepalive) = key.keepalive {
        let tcp = match &io {
            Either::Left(tcp) => tcp,
            Either::Right(tls) => tls.get_ref().0,
        };
        set_keepalive(tcp, keepalive);
    }
    Ok(io)
}

/// TCP keepalive on an upstream connection (the cluster's `tcp_keepalive`); best effort: a
/// socket that refuses it still works.
fn set_keepalive(tcp: &TcpStream, keepalive: crate::config::cluster_http::Keepalive) {
    let mut params = socket2::TcpKeepalive::new();
    if let Some(time) = keepalive.time {
        params = params.with_time(time);
    }
    if let Some(interval) = keepalive.interval {
        params = params.with_interval(interval);
    }
    if let Some(probes) = keepalive.probes {
        params = params.with_retries(probes);
    }
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_keepalive(&params) {
        tracing::debug!(%error, "cannot set TCP keepalive on an upstream connection");
    }
}

/// Opens a connection to `addr` (from `source` when set): TCP, then TLS when `mode` says so.
pub async fn open(
    addr: SocketAddr,
    source: Option<IpAddr>,
    mode: &TlsMode,
    http: Option<HttpAlpn>,
    timeout: Duration,
    tls: &MeshTls,
) -> Result<UpstreamIo, ConnectError> {
    let settings = match mode {
        TlsMode::Plaintext => return Ok(Either::Left(tcp(addr, source, timeout).await?)),
        TlsMode::Tls(settings) => settings,
    };
    // The configuration first: without a certificate there is no point in connecting.
    let config = tls
        .client(settings, http)
        .map_err(|source| ConnectError::TlsSetup { addr, source })?;
    let stream = tcp(addr, source, timeout).await?;
    let name = crate::tls::server_name(settings, addr);
    let handshake = TlsConnector::from(config).connect(name, stream);
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?
        .map_err(|source| ConnectError::TlsHandshake { addr, source })?;
    Ok(Either::Right(Box::new(stream)))
}

/// Opens a TCP connection (bound to `source` when set) with a deadline and Nagle disabled.
pub async fn tcp(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let connect = async {
        let Some(source) = source else {
            return TcpStream::connect(addr).await;
        };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?
        .map_err(|source| ConnectError::Io { addr, source })?;
    // Best effort: a socket that cannot disable Nagle still works, only slower.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
