//! The workload side: a private key made where it is used (it never leaves the process),
//! its CSR, and the certificate the CA returns, ready for rustls.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::cert::{CertError, CertInfo, certs_from_pem};
use crate::spiffe::SpiffeId;

/// Why a workload key, CSR or certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot generate a key or CSR: {0}")]
    Generate(String),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("the CA returned an empty certificate chain")]
    EmptyChain,
    #[error("the CA returned a certificate for {got:?}, expected {want}")]
    WrongIdentity { got: Vec<String>, want: String },
    #[error("the CA returned a certificate for another key than the CSR's")]
    WrongKey,
    #[error("rustls refused the key: {0}")]
    Key(String),
}

/// A fresh ECDSA P-256 key (Istio's agent uses RSA 2048 by default; P-256 is much cheaper
/// per handshake and every peer in the mesh accepts it).
pub struct WorkloadKey {
    key: KeyPair,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkloadKey(ECDSA P-256, <redacted>)")
    }
}

impl WorkloadKey {
    pub fn generate() -> Result<Self, WorkloadError> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|key| Self { key })
            .map_err(|err| WorkloadError::Generate(err.to_string()))
    }

    /// A PEM CSR for `id`: its only SAN is the SPIFFE URI, the subject is empty.
    pub fn csr_pem(&self, id: &SpiffeId) -> Result<String, WorkloadError> {
        let generate = |err: rcgen::Error| WorkloadError::Generate(err.to_string());
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = rcgen::string::Ia5String::try_from(id.uri()).map_err(generate)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(generate)
    }

    /// A CSR that asks for arbitrary URI SANs (tests of the CA's refusals).
    pub fn csr_pem_for_uris(&self, uris: &[&str]) -> Result<String, WorkloadError> {
        let generate = |err: rcgen::Error| WorkloadError::Generate(err.to_string());
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for uri in uris {
            let uri = rcgen::string::Ia5String::try_from(*uri).map_err(generate)?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(generate)
    }
}

/// A workload's certificate and key, checked and ready to present.
#[derive(Debug, Clone)]
pub struct WorkloadCert {
    pub id: SpiffeId,
    /// The leaf's summary (serial, SANs, validity).
    pub info: CertInfo,
    /// Leaf and intermediates: what the workload presents (the root is not sent).
    pub chain: Vec<CertificateDer<'static>>,
    certified: Arc<CertifiedKey>,
}

impl WorkloadCert {
    /// Takes the CA's response (Istio's: leaf first, root last) for `key`'s CSR, checking
    /// the leaf is for `id` and for this key.
    pub fn from_response(
        key: WorkloadKey,
        chain_pem: &[String],
        id: &SpiffeId,
        provider: &CryptoProvider,
    ) -> Result<Self, WorkloadError> {
        let mut certs = Vec::new();
        for (i, pem) in chain_pem.iter().enumerate() {
            certs.extend(certs_from_pem(&format!("cert_chain[{i}]"), pem.as_bytes())?);
        }
        if certs.is_empty() {
            return Err(WorkloadError::EmptyChain);
        }
        let info = CertInfo::parse("cert_chain[0]", &certs[0])?;
        if !info.uris.iter().any(|uri| *uri == id.uri()) {
            return Err(WorkloadError::WrongIdentity {
                got: info.uris.clone(),
                want: id.uri(),
            });
        }
        let (_, leaf) =
            x509_parser::parse_x509_certificate(&certs[0]).map_err(|err| CertError::X509 {
                what: "cert_chain[0]".to_string(),
                reason: err.to_string(),
            })?;
        if leaf.public_key().raw
            != rcgen::PublicKeyData::subject_public_key_info(&key.key).as_slice()
        {
            return Err(WorkloadError::WrongKey);
        }
        // Present the leaf and intermediates; the last element is the root.
        if certs.len() > 1 {
            certs.pop();
        }
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.serialize_der()));
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|err| WorkloadError::Key(err.to_string()))?;
        let certified = Arc::new(CertifiedKey::new(certs.clone(), signing));
        Ok(Self {
            id: id.clone(),
            info,
            chain: certs,
            certified,
        })
    }

    /// The key and chain for rustls (`ResolvesServerCert` / `ResolvesClientCert`).
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }
}
