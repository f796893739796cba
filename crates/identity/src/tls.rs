//! rustls configurations for mutual TLS between workloads: TLS 1.3 only, the workload's
//! certificate presented, the peer verified against the trust bundle (and, for the client
//! side, its expected SPIFFE identities).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ServerConfig};

use crate::cert::TrustBundle;
use crate::verify::SpiffeServerVerifier;
use crate::workload::WorkloadCert;

/// ALPN values of Istio's sidecar-to-sidecar TLS, in the order Istio's client offers them.
pub const ALPN_ISTIO_PEER_EXCHANGE: &[u8] = b"istio-peer-exchange";
pub const ALPN_ISTIO: &[u8] = b"istio";
pub const ALPN_ISTIO_H2: &[u8] = b"istio-h2";
pub const ALPN_ISTIO_HTTP11: &[u8] = b"istio-http/1.1";
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The one crypto provider of the mesh (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of mesh mTLS: TLS 1.3, `cert` presented, a client certificate that
/// chains to `bundle` required (`optional_client_cert`: allowed to be absent, as on the
/// controller's 15012 where the CA call authenticates by token).
pub fn server_config(
    cert: &WorkloadCert,
    bundle: &TrustBundle,
    optional_client_cert: bool,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsConfigError> {
    server_config_with(
        Arc::new(SingleCertAndKey::from(cert.certified_key())),
        bundle,
        optional_client_cert,
        alpn,
    )
}

/// [`server_config`] with any certificate resolver (the controller's own DNS certificate).
pub fn server_config_with(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    bundle: &TrustBundle,
    optional_client_cert: bool,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsConfigError> {
    let provider = provider();
    let mut verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(bundle.root_store()),
        Arc::clone(&provider),
    );
    if optional_client_cert {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|err| TlsConfigError::Verifier(err.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The client side of mesh mTLS: TLS 1.3, `cert` presented, the server verified against
/// `bundle` and `expected` identities (any identity of the bundle when empty).
pub fn client_config(
    cert: Option<&WorkloadCert>,
    bundle: &TrustBundle,
    expected: Vec<String>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsConfigError> {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier::new(bundle, expected, &provider));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match cert {
        Some(cert) => builder
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(cert.certified_key()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
