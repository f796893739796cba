//! TLS peer verification for SPIFFE identities: chains checked against the trust bundle with
//! webpki, then the peer's URI SAN matched against the identities the caller expects.
//!
//! rustls's own `WebPkiServerVerifier` checks a DNS name, but a workload certificate has no
//! DNS name, only a URI SAN; so the server side of a connection is verified here.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert::{CertInfo, TrustBundle};

/// Verifies `end_entity` through `intermediates` to one of `anchors` at `now`, for either
/// TLS usage (workload certificates carry both serverAuth and clientAuth).
pub fn verify_path(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now: SystemTime,
) -> Result<(), webpki::Error> {
    let cert = webpki::EndEntityCert::try_from(end_entity)?;
    let now = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
}

/// Whether `cert` is signed by `issuer` (x509-parser's signature check), for walking a CA
/// chain, which webpki does not do for CA certificates.
pub(crate) fn signed_by(cert: &CertificateDer<'_>, issuer: &CertificateDer<'_>) -> bool {
    let (Ok((_, cert)), Ok((_, issuer))) = (
        X509Certificate::from_der(cert),
        X509Certificate::from_der(issuer),
    ) else {
        return false;
    };
    cert.issuer() == issuer.subject() && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// The SPIFFE URI (first URI SAN) of a peer's leaf certificate.
pub fn peer_uri(end_entity: &CertificateDer<'_>) -> Option<String> {
    CertInfo::parse("peer", end_entity)
        .ok()
        .and_then(|info| info.uris.into_iter().next())
}

/// A rustls server-certificate verifier for workload peers: the chain must lead to a root of
/// the bundle, and the leaf's URI SANs must include one of `expected` (any identity when
/// `expected` is empty, as Envoy with no SAN matcher). The server name is not checked.
pub struct SpiffeServerVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    expected: Vec<String>,
    /// Instead of `expected`: a predicate over the leaf's (URI SANs, DNS SANs).
    matcher: Option<SanPredicate>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Decides whether a leaf's (URI SANs, DNS SANs) are acceptable.
pub type SanPredicate = Arc<dyn Fn(&[String], &[String]) -> bool + Send + Sync>;

impl std::fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("anchors", &self.anchors.len())
            .field("expected", &self.expected)
            .field("custom_matcher", &self.matcher.is_some())
            .finish()
    }
}

impl SpiffeServerVerifier {
    /// A verifier that accepts a leaf whose SANs satisfy `matcher` (`describe` names the
    /// expectation in errors).
    pub fn with_matcher(
        bundle: &TrustBundle,
        describe: Vec<String>,
        matcher: SanPredicate,
        provider: &CryptoProvider,
    ) -> Self {
        let mut verifier = Self::new(bundle, describe, provider);
        verifier.matcher = Some(matcher);
        verifier
    }

    pub fn new(bundle: &TrustBundle, expected: Vec<String>, provider: &CryptoProvider) -> Self {
        let anchors = bundle
            .roots()
            .iter()
            .filter_map(|root| webpki::anchor_from_trusted_cert(root).ok())
            .map(|anchor| anchor.to_owned())
            .collect();
        Self {
            anchors,
            expected,
            matcher: None,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs());
        verify_path(end_entity, intermediates, &self.anchors, now).map_err(webpki_error)?;
        if self.expected.is_empty() && self.matcher.is_none() {
            return Ok(ServerCertVerified::assertion());
        }
        let info = CertInfo::parse("peer", end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let accepted = match &self.matcher {
            Some(matcher) => matcher(&info.uris, &info.dns_names),
            None => info
                .uris
                .iter()
                .chain(&info.dns_names)
                .any(|san| self.expected.iter().any(|want| want == san)),
        };
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(SanMismatch {
                    presented: info.uris.iter().chain(&info.dns_names).cloned().collect(),
                    expected: self.expected.clone(),
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The peer presented a valid certificate for another identity.
#[derive(Debug, thiserror::Error)]
#[error("the peer's certificate is for {presented:?}, expected one of {expected:?}")]
pub struct SanMismatch {
    pub presented: Vec<String>,
    pub expected: Vec<String>,
}

fn webpki_error(err: webpki::Error) -> rustls::Error {
    use rustls::CertificateError as C;
    let kind = match err {
        webpki::Error::BadDer | webpki::Error::BadDerTime => C::BadEncoding,
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        other => C::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(kind)
}
