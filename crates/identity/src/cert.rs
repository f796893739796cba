//! Certificates as Weft reads them: PEM in, parsed summaries (serial, SANs, validity) out,
//! and the trust bundle (one or more roots) that peers are verified against.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::spiffe::SpiffeId;

/// Why PEM or a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("{what}: no PEM {kind} block found")]
    NoPem { what: String, kind: &'static str },
    #[error("{what}: invalid PEM: {reason}")]
    Pem { what: String, reason: String },
    #[error("{what}: not a valid X.509 certificate: {reason}")]
    X509 { what: String, reason: String },
    #[error("{what}: certificate {subject:?} is not a CA certificate (basicConstraints CA:TRUE)")]
    NotCa { what: String, subject: String },
}

/// Every `CERTIFICATE` block of `pem`; `what` names the source in errors. At least one.
pub fn certs_from_pem(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| CertError::Pem {
            what: what.to_string(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::NoPem {
            what: what.to_string(),
            kind: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The first private key block of `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_pem(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::NoPem {
            what: what.to_string(),
            kind: "PRIVATE KEY",
        },
        other => CertError::Pem {
            what: what.to_string(),
            reason: other.to_string(),
        },
    })
}

/// PEM text of DER certificates.
pub fn to_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str(&pem_block("CERTIFICATE", cert.as_ref()));
    }
    out
}

/// One PEM block.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What an operator wants to know about a certificate (the proxy's `/certs`, the
/// controller's debug page, logs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Serial number, lower-case hex.
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    /// URI SANs (SPIFFE IDs).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    #[serde(serialize_with = "unix_seconds")]
    pub not_before: SystemTime,
    #[serde(serialize_with = "unix_seconds")]
    pub not_after: SystemTime,
    pub is_ca: bool,
}

fn unix_seconds<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    s.serialize_u64(seconds)
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(what: &str, der: &[u8]) -> Result<Self, CertError> {
        let x509_err = |reason: String| CertError::X509 {
            what: what.to_string(),
            reason,
        };
        let (_, cert) = X509Certificate::from_der(der).map_err(|err| x509_err(err.to_string()))?;
        let mut uris = Vec::new();
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => uris.push((*uri).to_string()),
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_string()),
                    _ => {}
                }
            }
        }
        let time = |t: x509_parser::time::ASN1Time| {
            let seconds = t.timestamp();
            if seconds <= 0 {
                UNIX_EPOCH
            } else {
                UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
            }
        };
        let validity = cert.validity();
        Ok(Self {
            serial: cert.raw_serial_as_string().replace(':', ""),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            uris,
            dns_names,
            not_before: time(validity.not_before),
            not_after: time(validity.not_after),
            is_ca: cert.is_ca(),
        })
    }

    /// The first URI SAN that is a workload SPIFFE ID.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        self.uris.iter().find_map(|uri| uri.parse().ok())
    }

    /// The instant halfway through the validity period: when a workload renews.
    pub fn half_life(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + lifetime / 2
    }
}

/// The roots peers are verified against. It may hold several roots: during a root CA
/// rotation it holds the old and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<CertificateDer<'static>>,
    infos: Vec<CertInfo>,
}

impl TrustBundle {
    /// Reads one or more CA certificates.
    pub fn from_pem(what: &str, pem: &[u8]) -> Result<Self, CertError> {
        let roots = certs_from_pem(what, pem)?;
        let infos = roots
            .iter()
            .map(|der| CertInfo::parse(what, der))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(info) = infos.iter().find(|info| !info.is_ca) {
            return Err(CertError::NotCa {
                what: what.to_string(),
                subject: info.subject.clone(),
            });
        }
        Ok(Self { roots, infos })
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub fn infos(&self) -> &[CertInfo] {
        &self.infos
    }

    /// The bundle as PEM (what `root-cert.pem` and the `istio-ca-root-cert` ConfigMap hold).
    pub fn to_pem(&self) -> String {
        to_pem(&self.roots)
    }

    /// A rustls root store with every root.
    pub fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        // Every root parsed as a certificate above; webpki may still refuse one it cannot use
        // as an anchor, which then simply anchors nothing.
        let (_added, _ignored) = store.add_parsable_certificates(self.roots.iter().cloned());
        store
    }
}
