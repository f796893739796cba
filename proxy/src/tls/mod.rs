//! TLS on the data path: rustls configurations for mesh mutual TLS, built from the proxy's
//! identity (certificate + trust bundle) and cached until the identity changes; file-based
//! TLS for DestinationRule SIMPLE/MUTUAL; the server side of a filter chain's TLS.
//!
//! ```text
//!  identity (watch) ─► MeshTls ─┬─► client(UpstreamTls, HTTP ALPN) ─► Arc<ClientConfig>  (upstream/connect.rs)
//!                               └─► server(alpn)                   ─► Arc<ServerConfig>  (accept.rs)
//! ```
//! Configurations are built when a connection needs one and the identity changed since
//! (a renewed certificate or a new bundle): new connections use the new certificate, open
//! connections keep theirs. The lock is taken per new connection, never per request.

pub mod accept;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use weft_identity::cert::{certs_from_pem, key_from_pem};
use weft_identity::verify::SanPredicate;
use weft_identity::{SpiffeServerVerifier, TrustBundle};

use crate::config::tls::{SanKind, SanMatch, UpstreamTls};
use crate::identity::{Identity, IdentityState};

/// The system's trust store, for SIMPLE/MUTUAL TLS without `caCertificates` (Debian's path).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// ALPN a mesh server accepts: Istio's values and the plain HTTP ones.
pub const MESH_SERVER_ALPN: [&[u8]; 6] = [
    weft_identity::tls::ALPN_ISTIO_PEER_EXCHANGE,
    weft_identity::tls::ALPN_ISTIO,
    weft_identity::tls::ALPN_ISTIO_H2,
    weft_identity::tls::ALPN_ISTIO_HTTP11,
    weft_identity::tls::ALPN_H2,
    weft_identity::tls::ALPN_HTTP11,
];

/// Why TLS could not be set up for a connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("mutual TLS needs a workload identity: this proxy runs without --ca-address")]
    NoIdentity,
    #[error("mutual TLS needs the workload certificate, which the proxy does not have yet{0}")]
    NoCertificate(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

#[derive(Default)]
struct Cache {
    /// The identity state the configs were built from.
    state: Option<Arc<IdentityState>>,
    servers: HashMap<Vec<Vec<u8>>, Arc<ServerConfig>>,
    clients: HashMap<(Arc<UpstreamTls>, Option<HttpAlpn>), Arc<ClientConfig>>,
}

/// The HTTP protocol a mesh TLS connection carries, offered in ALPN as Istio's sidecars do
/// (`istio-http/1.1` / `istio-h2` first), so the server's inbound listener can tell HTTP from
/// opaque TCP on a port of undeclared protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpAlpn {
    Http1,
    Http2,
}

impl HttpAlpn {
    fn protocols(self) -> [&'static [u8]; 3] {
        use weft_identity::tls::{
            ALPN_H2, ALPN_HTTP11, ALPN_ISTIO, ALPN_ISTIO_H2, ALPN_ISTIO_HTTP11,
        };
        match self {
            Self::Http1 => [ALPN_ISTIO_HTTP11, ALPN_ISTIO, ALPN_HTTP11],
            Self::Http2 => [ALPN_ISTIO_H2, ALPN_ISTIO, ALPN_H2],
        }
    }
}

/// Builds and caches the rustls configurations of the data path.
#[derive(Clone, Default)]
pub struct MeshTls {
    identity: Option<Identity>,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls")
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl MeshTls {
    pub fn new(identity: Option<Identity>) -> Self {
        Self {
            identity,
            cache: Arc::default(),
        }
    }

    /// The client configuration for `tls`; mesh TLS that carries HTTP offers `http`'s ALPN
    /// instead of the cluster's.
    pub fn client(
        &self,
        tls: &Arc<UpstreamTls>,
        http: Option<HttpAlpn>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let state = self.state();
        let mut cache = self.cache.lock();
        refresh(&mut cache, state.as_ref());
        let key = (tls.clone(), http);
        if let Some(config) = cache.clients.get(&key) {
            return Ok(config.clone());
        }
        let config = Arc::new(match tls.as_ref() {
            UpstreamTls::Mesh { alpn, sans, .. } => {
                let (cert, bundle) = mesh_material(state.as_deref(), self.identity.is_some())?;
                let provider = weft_identity::tls::provider();
                let verifier = verifier(&bundle, sans, &provider);
                let mut config = ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| TlsError::Config(e.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(
                        cert.certified_key(),
                    )));
                config.alpn_protocols = match http {
                    Some(http) => http.protocols().iter().map(|p| p.to_vec()).collect(),
                    None => alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
                };
                config
            }
            UpstreamTls::Files {
                alpn,
                ca,
                verify,
                sans,
                client_cert,
                ..
            } => files_client(alpn, ca.as_deref(), *verify, sans, client_cert.as_ref())?,
        });
        cache.clients.insert(key, config.clone());
        Ok(config)
    }

    /// The server configuration of mesh mTLS: the workload certificate, a client certificate
    /// of the bundle required, TLS 1.3, ALPN from `alpn` plus Istio's values
    /// (`istio-peer-exchange` only with `peer_exchange`: the chain does the exchange).
    pub fn server(
        &self,
        alpn: &[String],
        peer_exchange: bool,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let state = self.state();
        let mut protocols: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        for extra in MESH_SERVER_ALPN {
            if extra == weft_identity::tls::ALPN_ISTIO_PEER_EXCHANGE && !peer_exchange {
                continue;
            }
            if !protocols.iter().any(|p| p.as_slice() == extra) {
                protocols.push(extra.to_vec());
            }
        }
        let mut cache = self.cache.lock();
        refresh(&mut cache, state.as_ref());
        if let Some(config) = cache.servers.get(&protocols) {
            return Ok(config.clone());
        }
        let (cert, bundle) = mesh_material(state.as_deref(), self.identity.is_some())?;
        let refs: Vec<&[u8]> = protocols.iter().map(Vec::as_slice).collect();
        let config = Arc::new(
            weft_identity::tls::server_config(&cert, &bundle, false, &refs)
                .map_err(|e| TlsError::Config(e.to_string()))?,
        );
        cache.servers.insert(protocols, config.clone());
        Ok(config)
    }

    fn state(&self) -> Option<Arc<IdentityState>> {
        self.identity.as_ref().map(|rx| rx.borrow().clone())
    }
}

/// Drops cached configs built from another identity state.
fn refresh(cache: &mut Cache, state: Option<&Arc<IdentityState>>) {
    let same = match (&cache.state, state) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        cache.state = state.cloned();
        cache.servers.clear();
        cache.clients.clear();
    }
}

fn mesh_material(
    state: Option<&IdentityState>,
    enabled: bool,
) -> Result<(Arc<weft_identity::WorkloadCert>, Arc<TrustBundle>), TlsError> {
    if !enabled {
        return Err(TlsError::NoIdentity);
    }
    let state = state.ok_or(TlsError::NoIdentity)?;
    match (&state.cert, &state.bundle) {
        (Some(cert), Some(bundle)) => Ok((cert.clone(), bundle.clone())),
        _ => Err(TlsError::NoCertificate(
            state
                .last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
        )),
    }
}

fn san_predicate(sans: &[SanMatch]) -> SanPredicate {
    let sans = sans.to_vec();
    Arc::new(move |uris: &[String], dns: &[String]| {
        sans.iter().any(|m| {
            uris.iter().any(|u| m.matches(SanKind::Uri, u))
                || dns.iter().any(|d| m.matches(SanKind::Dns, d))
        })
    })
}

fn verifier(
    bundle: &TrustBundle,
    sans: &[SanMatch],
    provider: &rustls::crypto::CryptoProvider,
) -> SpiffeServerVerifier {
    if sans.is_empty() {
        return SpiffeServerVerifier::new(bundle, Vec::new(), provider);
    }
    let describe = sans.iter().map(|m| format!("{:?}", m.pattern)).collect();
    SpiffeServerVerifier::with_matcher(bundle, describe, san_predicate(sans), provider)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn files_client(
    alpn: &[String],
    ca: Option<&Path>,
    verify: bool,
    sans: &[SanMatch],
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<ClientConfig, TlsError> {
    let provider = weft_identity::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let ca_path = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
    let builder = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
    } else {
        let pem = read(ca_path)?;
        let file_err = |reason: String| TlsError::File {
            path: ca_path.display().to_string(),
            reason,
        };
        if sans.is_empty() {
            let mut roots = RootCertStore::empty();
            for cert in certs_from_pem(&ca_path.display().to_string(), &pem)
                .map_err(|e| file_err(e.to_string()))?
            {
                roots.add(cert).map_err(|e| file_err(e.to_string()))?;
            }
            builder.with_root_certificates(roots)
        } else {
            let bundle = TrustBundle::from_pem(&ca_path.display().to_string(), &pem)
                .map_err(|e| file_err(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier(&bundle, sans, &provider)))
        }
    };
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certs_from_pem(&cert.display().to_string(), &read(cert)?).map_err(|e| {
                TlsError::File {
                    path: cert.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
            let key_der = key_from_pem(&key.display().to_string(), &read(key)?).map_err(|e| {
                TlsError::File {
                    path: key.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}

/// The server name of an upstream TLS connection: the SNI, else the endpoint's IP.
pub fn server_name(tls: &UpstreamTls, addr: std::net::SocketAddr) -> ServerName<'static> {
    tls.sni()
        .and_then(|sni| ServerName::try_from(sni.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
}

/// Any server certificate; handshake signatures are still checked. Used for a
/// DestinationRule's `insecureSkipVerify` and for HTTPS app probes (kubelet's
/// `InsecureSkipVerify`, see [`crate::app_health`]).
#[derive(Debug)]
pub(crate) struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl NoVerification {
    /// The verifier for `provider`'s signature algorithms.
    pub(crate) fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
