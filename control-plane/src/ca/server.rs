//! The TLS gRPC listener on 15012 (istiod's): the CA API for callers with a token, and ADS
//! for proxies that present their workload certificate. The controller's own certificate
//! (DNS names `istiod.<namespace>.svc`, …) is issued by its CA and renewed when the CA
//! changes or at half-life.
//!
//! ```text
//!  BoundedListener ─► TLS handshake (own task, 10 s) ─► TlsIo { PeerInfo } ─► tonic
//!     ├─ /istio.v1.auth.IstioCertificateService/*  token auth (mod.rs)
//!     └─ ADS: require_peer ─► AuthenticatedPeer ─► Generator::connect (namespace check)
//! ```

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::ServerConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tonic::{Request, Status};
use tracing::{debug, error, info};
use weft_identity::CertificateAuthority;
use weft_identity::cert::{CertInfo, certs_from_pem, key_from_pem};
use weft_net::{BoundedListener, GuardedIo};

/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the controller's own serving certificate (renewed at half-life).
pub const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a TLS connection tells the gRPC services about its client.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// The first URI SAN of the client certificate, when one was presented.
    pub uri: Option<String>,
}

/// One accepted TLS connection.
pub struct TlsIo {
    inner: TlsStream<GuardedIo<TcpStream>>,
    info: PeerInfo,
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for TlsIo {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// The DNS names of the controller's certificate: istiod's Service names, so that proxies
/// configured for Istio verify it, plus the Weft ones and `localhost`.
pub fn server_dns_names(namespace: &str) -> Vec<String> {
    let mut names = Vec::new();
    for service in ["istiod", "weft-controller"] {
        names.push(format!("{service}.{namespace}.svc"));
        names.push(format!("{service}.{namespace}.svc.cluster.local"));
    }
    names.push("localhost".to_string());
    names
}

/// The controller's TLS state, kept current by [`spawn_tls_configs`].
pub struct ServingTls {
    /// The rustls configuration of 15012.
    pub configs: watch::Receiver<Arc<ServerConfig>>,
    /// The serving certificate and key alone, for the other TLS servers that present it
    /// (the admission webhooks on 15017, as istiod's).
    pub keys: watch::Receiver<Arc<CertifiedKey>>,
}

/// Keeps a rustls `ServerConfig` for 15012 current: a certificate issued by the CA in use,
/// re-issued when the CA changes and at half-life; client certificates optional (the CA
/// call authenticates by token) but, when presented, verified against the trust bundle.
pub fn spawn_tls_configs(
    mut ca: watch::Receiver<Arc<CertificateAuthority>>,
    dns_names: Vec<String>,
) -> Result<(ServingTls, JoinHandle<()>), String> {
    let first = ca.borrow_and_update().clone();
    let (config, key, renew_at) = server_config(&first, &dns_names)?;
    let (tx, rx) = watch::channel(config);
    let (key_tx, key_rx) = watch::channel(key);
    let task = tokio::spawn(async move {
        let mut renew_at = renew_at;
        loop {
            let wait = renew_at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                changed = ca.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
            let current = ca.borrow_and_update().clone();
            match server_config(&current, &dns_names) {
                Ok((config, key, next)) => {
                    tx.send_replace(config);
                    key_tx.send_replace(key);
                    renew_at = next;
                }
                Err(err) => {
                    error!(error = %err, "cannot renew the controller's TLS certificate; retrying in 10s");
                    renew_at = SystemTime::now() + Duration::from_secs(10);
                }
            }
        }
    });
    Ok((
        ServingTls {
            configs: rx,
            keys: key_rx,
        },
        task,
    ))
}

fn server_config(
    ca: &CertificateAuthority,
    dns_names: &[String],
) -> Result<(Arc<ServerConfig>, Arc<CertifiedKey>, SystemTime), String> {
    let (chain_pem, key_pem) = ca
        .issue_server_cert(dns_names, SERVER_CERT_LIFETIME)
        .map_err(|err| err.to_string())?;
    let chain =
        certs_from_pem("server certificate", chain_pem.as_bytes()).map_err(|e| e.to_string())?;
    let info = CertInfo::parse("server certificate", &chain[0]).map_err(|e| e.to_string())?;
    let key = key_from_pem("server key", key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = weft_identity::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|err| err.to_string())?;
    let certified = Arc::new(CertifiedKey::new(chain, signing));
    let resolver = Arc::new(SingleCertAndKey::from(certified.clone()));
    let config =
        weft_identity::tls::server_config_with(resolver, ca.trust_bundle(), true, &[b"h2"])
            .map_err(|err| err.to_string())?;
    info!(serial = %info.serial, dns = ?info.dns_names, "controller TLS certificate issued");
    Ok((Arc::new(config), certified, info.half_life()))
}

/// The TLS connections of `listener`, each handshaken on its own task so a slow client never
/// holds up the others.
pub fn incoming(
    mut listener: BoundedListener,
    configs: watch::Receiver<Arc<ServerConfig>>,
) -> impl Stream<Item = io::Result<TlsIo>> {
    let (tx, rx) = mpsc::channel::<io::Result<TlsIo>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let acceptor = TlsAcceptor::from(configs.borrow().clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                let peer = accepted.peer;
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(accepted.io)).await;
                let stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        debug!(%peer, error = %err, "TLS handshake failed on 15012");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out on 15012");
                        return;
                    }
                };
                let uri = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(weft_identity::verify::peer_uri);
                let io = TlsIo {
                    inner: stream,
                    info: PeerInfo {
                        remote: Some(peer),
                        uri,
                    },
                };
                let _ = tx.send(Ok(io)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// ADS on 15012 requires a client certificate: its identity goes to the generator, which
/// serves that identity's config only.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub fn require_peer(mut request: Request<()>) -> Result<Request<()>, Status> {
    let uri = request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|peer| peer.uri.clone())
        .ok_or_else(|| {
            Status::unauthenticated(
                "ADS on the TLS port needs a client certificate: the workload certificate issued by this CA",
            )
        })?;
    request
        .extensions_mut()
        .insert(weft_xds::AuthenticatedPeer { uri });
    Ok(request)
}
