//! The certificate authority: its key material in Istio's `cacerts` layout (self-signed on
//! first start, or supplied by the operator) and the signing of workload CSRs into SVIDs.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;

use crate::cert::{CertError, CertInfo, TrustBundle, certs_from_pem, to_pem};
use crate::spiffe::SpiffeId;
use crate::verify::signed_by;

/// The four files of Istio's `cacerts` Secret (and of `--ca-dir` in local mode).
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";

/// Leaf certificates are back-dated this much, so a peer whose clock is a little behind
/// accepts a certificate issued a moment ago (Istio back-dates too).
const BACKDATE: Duration = Duration::from_secs(60);

/// Why CA material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{file}: {reason}")]
    Key { file: &'static str, reason: String },
    #[error(
        "{CA_CERT} and {CA_KEY} do not belong together: the key's public key is not the certificate's"
    )]
    KeyMismatch,
    #[error("{CA_CERT} is not a CA certificate (basicConstraints CA:TRUE is required)")]
    NotCa,
    #[error("{CA_CERT} does not chain to any root of {ROOT_CERT}: {reason}")]
    Untrusted { reason: String },
    #[error("cannot generate the self-signed root: {0}")]
    Generate(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{dir}: {present} is present but {missing} is not; the cacerts layout needs {CA_CERT} and {CA_KEY} (and {ROOT_CERT})"
    )]
    Incomplete {
        dir: String,
        present: &'static str,
        missing: &'static str,
    },
}

/// Why a CSR was refused. The message goes back to the caller and into the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the CSR is not valid PEM/DER or its signature does not verify")]
    BadCsr,
    #[error(
        "the CSR asks for identities {requested:?} but the caller is authenticated as {allowed}"
    )]
    IdentityMismatch {
        requested: Vec<String>,
        allowed: String,
    },
    #[error(
        "the CSR asks for a SAN that is not a URI ({0}); only the caller's SPIFFE ID is issued"
    )]
    UnsupportedSan(String),
    #[error("requested validity {requested:?} is not allowed: at most {max:?}")]
    Validity { requested: Duration, max: Duration },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The CA's key material, as the files of Istio's `cacerts` layout hold it.
#[derive(Clone, PartialEq, Eq)]
pub struct CaMaterial {
    /// The signing certificate (`ca-cert.pem`): the root itself, or an intermediate.
    pub ca_cert: String,
    /// Its private key (`ca-key.pem`).
    pub ca_key: String,
    /// The trust bundle (`root-cert.pem`): one or more roots.
    pub root_cert: String,
    /// Certificates between `ca-cert.pem` and the root (`cert-chain.pem`); Istio's tools
    /// write `ca-cert.pem` + intermediates + root here. May be empty.
    pub cert_chain: String,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("ca_cert", &self.ca_cert.len())
            .field("ca_key", &"<redacted>")
            .field("root_cert", &self.root_cert.len())
            .field("cert_chain", &self.cert_chain.len())
            .finish()
    }
}

impl CaMaterial {
    /// A new self-signed root (ECDSA P-256) for `trust_domain`, valid for `lifetime`
    /// (Istio's self-signed root: 10 years), which signs workload certificates itself.
    pub fn self_signed(trust_domain: &str, lifetime: Duration) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|err| CaError::Generate(err.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, trust_domain);
        name.push(DnType::CommonName, "Weft root CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|err| CaError::Generate(err.to_string()))?;
        Ok(Self {
            ca_cert: cert.pem(),
            ca_key: key.serialize_pem(),
            root_cert: cert.pem(),
            cert_chain: String::new(),
        })
    }

    /// Reads the `cacerts` files of `dir`. `Ok(None)` when neither `ca-cert.pem` nor
    /// `ca-key.pem` exists (nothing there yet); an error when only one does. Without
    /// `root-cert.pem` the CA certificate is its own root.
    pub fn read_dir(dir: &Path) -> Result<Option<Self>, CaError> {
        let read = |name: &'static str| -> Result<Option<String>, CaError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(CaError::Read {
                    path: path.display().to_string(),
                    source,
                }),
            }
        };
        let (cert, key) = match (read(CA_CERT)?, read(CA_KEY)?) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (present, _) => {
                let (present, missing) = if present.is_some() {
                    (CA_CERT, CA_KEY)
                } else {
                    (CA_KEY, CA_CERT)
                };
                return Err(CaError::Incomplete {
                    dir: dir.display().to_string(),
                    present,
                    missing,
                });
            }
        };
        let root = read(ROOT_CERT)?.unwrap_or_else(|| cert.clone());
        let chain = read(CERT_CHAIN)?.unwrap_or_default();
        Ok(Some(Self {
            ca_cert: cert,
            ca_key: key,
            root_cert: root,
            cert_chain: chain,
        }))
    }

    /// Writes the four files into `dir` (created if missing; the key with mode 0600),
    /// each through a temporary file and a rename so a reader never sees half a file.
    pub fn write_dir(&self, dir: &Path) -> Result<(), CaError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CaError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text, private) in [
            (CA_KEY, &self.ca_key, true),
            (CA_CERT, &self.ca_cert, false),
            (CERT_CHAIN, &self.cert_chain, false),
            (ROOT_CERT, &self.root_cert, false),
        ] {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            write_file(&tmp, text.as_bytes(), private).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        Ok(())
    }

    /// The files as (name, content) pairs, in the `cacerts` Secret's keys.
    pub fn files(&self) -> [(&'static str, &str); 4] {
        [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (ROOT_CERT, &self.root_cert),
            (CERT_CHAIN, &self.cert_chain),
        ]
    }
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive INTEGER of at most 20 octets, never zero (RFC 5280 4.1.2.2).
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// A CA that signs workload certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// `ca-cert.pem`, then the intermediates of `cert-chain.pem` (without `ca-cert.pem`
    /// and roots): what every issued chain carries after the leaf.
    chain: Vec<CertificateDer<'static>>,
    /// The root that `ca-cert.pem` chains to (the last element of every response).
    root: CertificateDer<'static>,
    bundle: TrustBundle,
    ca_info: CertInfo,
    /// The summary of `root`.
    root_info: CertInfo,
    /// The earliest `notAfter` of `ca-cert.pem`, the intermediates and `root`.
    chain_not_after: SystemTime,
    material: CaMaterial,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("ca", &self.ca_info.subject)
            .field("serial", &self.ca_info.serial)
            .field("roots", &self.bundle.infos().len())
            .finish()
    }
}

impl CertificateAuthority {
    /// Checks the material (key matches certificate, the certificate is a CA and chains to
    /// a root of the bundle) and builds the signer.
    pub fn new(material: CaMaterial) -> Result<Self, CaError> {
        let ca_certs = certs_from_pem(CA_CERT, material.ca_cert.as_bytes())?;
        let ca_der = ca_certs[0].clone();
        let ca_info = CertInfo::parse(CA_CERT, &ca_der)?;
        if !ca_info.is_ca {
            return Err(CaError::NotCa);
        }
        let key = KeyPair::from_pem(&material.ca_key).map_err(|err| CaError::Key {
            file: CA_KEY,
            reason: format!(
                "{err} (PKCS#8 or SEC1 PEM, ECDSA P-256/P-384, Ed25519 or RSA in PKCS#8, is supported)"
            ),
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&ca_der).map_err(|err| CertError::X509 {
                what: CA_CERT.to_string(),
                reason: err.to_string(),
            })?;
        if parsed.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        {
            return Err(CaError::KeyMismatch);
        }
        let bundle = TrustBundle::from_pem(ROOT_CERT, material.root_cert.as_bytes())?;
        let intermediates: Vec<CertificateDer<'static>> =
            if material.cert_chain.trim().is_empty() {
                Vec::new()
            } else {
                certs_from_pem(CERT_CHAIN, material.cert_chain.as_bytes())?
            }
            .into_iter()
            .filter(|cert| *cert != ca_der && !bundle.roots().contains(cert))
            .collect();
        let root = chain_root(&ca_der, &intermediates, &bundle)?;
        let root_info = bundle
            .roots()
            .iter()
            .zip(bundle.infos())
            .find_map(|(der, info)| (*der == root).then(|| info.clone()))
            .ok_or_else(|| CaError::Untrusted {
                reason: "its root is not in the bundle".to_string(),
            })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key).map_err(|err| CaError::Key {
            file: CA_CERT,
            reason: err.to_string(),
        })?;
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        if !bundle.roots().contains(&ca_der) {
            chain.push(ca_der);
            chain.extend(intermediates);
        }
        // What every issued chain carries after the leaf: `ca-cert.pem`, the intermediates
        // (when `ca-cert.pem` is not itself a root), the root.
        let mut chain_not_after = ca_info.not_after.min(root_info.not_after);
        for intermediate in chain.iter().skip(1) {
            let info = CertInfo::parse(CERT_CHAIN, intermediate)?;
            chain_not_after = chain_not_after.min(info.not_after);
        }
        Ok(Self {
            issuer,
            chain,
            root,
            bundle,
            ca_info,
            root_info,
            chain_not_after,
            material,
        })
    }

    /// Signs `csr_pem` for `identity`, valid for `lifetime` from now (back-dated a minute).
    /// The CSR's own subject and extensions are ignored, except its SANs: if it asks for
    /// any, they must be exactly `identity`. Returns Istio's response chain as PEM strings:
    /// leaf, then `ca-cert.pem` and intermediates, then the root.
    pub fn sign(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        lifetime: Duration,
    ) -> Result<Vec<String>, SignError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| SignError::BadCsr)?;
        let wanted = identity.uri();
        let mut requested = Vec::new();
        for san in &csr.params.subject_alt_names {
            match san {
                SanType::URI(uri) => requested.push(uri.as_str().to_string()),
                other => return Err(SignError::UnsupportedSan(format!("{other:?}"))),
            }
        }
        if requested.iter().any(|uri| *uri != wanted) {
            return Err(SignError::IdentityMismatch {
                requested,
                allowed: wanted,
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = rcgen::string::Ia5String::try_from(wanted.as_str())
            .map_err(|err| SignError::Sign(err.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        let leaf = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|err| SignError::Sign(err.to_string()))?;
        let mut out = Vec::with_capacity(self.chain.len() + 2);
        out.push(leaf.pem());
        out.extend(self.chain.iter().map(|c| to_pem(std::slice::from_ref(c))));
        out.push(to_pem(std::slice::from_ref(&self.root)));
        Ok(out)
    }

    /// The roots workloads trust (`root-cert.pem`), possibly several.
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The signing certificate.
    pub fn ca_info(&self) -> &CertInfo {
        &self.ca_info
    }

    /// The root of the bundle that signs: the one `ca-cert.pem` chains to (the bundle may
    /// hold others during a root rotation).
    pub fn root_info(&self) -> &CertInfo {
        &self.root_info
    }

    /// When the signing chain expires: the earliest `notAfter` of `ca-cert.pem`, the
    /// intermediates of `cert-chain.pem` and the signing root.
    pub fn chain_not_after(&self) -> SystemTime {
        self.chain_not_after
    }

    /// The material this CA was built from.
    pub fn material(&self) -> &CaMaterial {
        &self.material
    }

    /// Issues a certificate with DNS SANs (and no SPIFFE ID) directly from a fresh key,
    /// for the controller's own TLS server on 15012. Returns (chain PEM, key PEM).
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        lifetime: Duration,
    ) -> Result<(String, String), SignError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|err| SignError::Sign(err.to_string()))?;
        let mut params = CertificateParams::new(dns_names.to_vec())
            .map_err(|err| SignError::Sign(err.to_string()))?;
        params.distinguished_name = DistinguishedName::new();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        let leaf = params
            .signed_by(&key, &self.issuer)
            .map_err(|err| SignError::Sign(err.to_string()))?;
        let mut chain = leaf.pem();
        chain.push_str(&to_pem(&self.chain));
        Ok((chain, key.serialize_pem()))
    }
}

/// The root of `bundle` that `ca` chains to through `intermediates`: `ca` itself if it is
/// one of the roots, else the root that signs the last link of the chain (signatures checked).
fn chain_root(
    ca: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    bundle: &TrustBundle,
) -> Result<CertificateDer<'static>, CaError> {
    if let Some(root) = bundle.roots().iter().find(|root| *root == ca) {
        return Ok(root.clone());
    }
    let mut current = ca.clone();
    for _ in 0..=intermediates.len() {
        if let Some(root) = bundle.roots().iter().find(|root| signed_by(&current, root)) {
            return Ok(root.clone());
        }
        match intermediates.iter().find(|next| signed_by(&current, next)) {
            Some(next) => current = next.clone(),
            None => break,
        }
    }
    Err(CaError::Untrusted {
        reason: format!(
            "no root of the {} in the bundle signed it (through {} intermediates of {CERT_CHAIN})",
            bundle.roots().len(),
            intermediates.len()
        ),
    })
}

#[cfg(test)]
mod tests;
