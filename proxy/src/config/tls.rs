//! Transport sockets: Envoy `UpstreamTlsContext` / `DownstreamTlsContext` → what the proxy's
//! TLS layer (`crate::tls`) applies.
//!
//! ```text
//!  TransportSocket "envoy.transport_sockets.tls"
//!     UpstreamTlsContext ─► UpstreamTls::Mesh  (SDS "default" + "ROOTCA": the proxy's own identity)
//!                       └─► UpstreamTls::Files (certificates from files: DestinationRule SIMPLE/MUTUAL)
//!     DownstreamTlsContext ─► DownstreamTls (mesh mTLS, client certificate required)
//!  TransportSocket "envoy.transport_sockets.raw_buffer" ─► plaintext
//! ```
//! SDS secrets are resolved locally: `default` is the workload certificate and `ROOTCA` the
//! trust bundle of `crate::identity`; no other secret name is known.

use std::path::PathBuf;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use prost::Message;

use super::{Reason, invalid, reject_leftover, reject_set};

pub use weft_xds::contract::{
    RAW_BUFFER_TRANSPORT_SOCKET, ROOTCA_SECRET, TLS_TRANSPORT_SOCKET, WORKLOAD_SECRET,
};

const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/// A subject-alternative-name matcher of a validation context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SanMatch {
    /// Which SANs it looks at; `None`: every kind (Envoy's deprecated untyped matchers).
    pub kind: Option<SanKind>,
    pub pattern: SanPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SanKind {
    Dns,
    Uri,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SanPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

impl SanMatch {
    pub fn matches(&self, kind: SanKind, san: &str) -> bool {
        if self.kind.is_some_and(|k| k != kind) {
            return false;
        }
        match &self.pattern {
            SanPattern::Exact(p) => san == p,
            SanPattern::Prefix(p) => san.starts_with(p.as_str()),
            SanPattern::Suffix(p) => san.ends_with(p.as_str()),
            SanPattern::Contains(p) => san.contains(p.as_str()),
        }
    }
}

/// TLS towards an upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamTls {
    /// Mesh mutual TLS: the workload certificate (`default`) presented, the peer verified
    /// against the trust bundle (`ROOTCA`) and `sans` (any identity when empty).
    Mesh {
        sni: Option<String>,
        alpn: Vec<String>,
        sans: Vec<SanMatch>,
    },
    /// TLS with files: DestinationRule SIMPLE (no client certificate) or MUTUAL.
    Files {
        sni: Option<String>,
        alpn: Vec<String>,
        /// Trusted roots; `None`: the system's (`/etc/ssl/certs/ca-certificates.crt`).
        ca: Option<PathBuf>,
        /// `false`: the server certificate is not verified (`insecureSkipVerify`).
        verify: bool,
        sans: Vec<SanMatch>,
        client_cert: Option<(PathBuf, PathBuf)>,
    },
}

impl UpstreamTls {
    pub fn sni(&self) -> Option<&str> {
        match self {
            Self::Mesh { sni, .. } | Self::Files { sni, .. } => sni.as_deref(),
        }
    }
}

/// TLS of a downstream filter chain: mesh mTLS, a client certificate of the bundle required.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DownstreamTls {
    pub alpn: Vec<String>,
    pub require_client_certificate: bool,
}

/// A transport socket: `None` for plaintext (raw_buffer).
pub fn upstream_socket(socket: core::TransportSocket) -> Result<Option<Arc<UpstreamTls>>, Reason> {
    match transport(socket, UPSTREAM_TLS_TYPE)? {
        None => Ok(None),
        Some(bytes) => {
            let context = tls::UpstreamTlsContext::decode(bytes.as_slice())
                .map_err(|e| invalid("transport_socket.typed_config", e.to_string()))?;
            upstream(context).map(|tls| Some(Arc::new(tls)))
        }
    }
}

/// A downstream transport socket: `None` for plaintext.
pub fn downstream_socket(socket: core::TransportSocket) -> Result<Option<DownstreamTls>, Reason> {
    match transport(socket, DOWNSTREAM_TLS_TYPE)? {
        None => Ok(None),
        Some(bytes) => {
            let context = tls::DownstreamTlsContext::decode(bytes.as_slice())
                .map_err(|e| invalid("transport_socket.typed_config", e.to_string()))?;
            downstream(context).map(Some)
        }
    }
}

/// The typed config bytes of a TLS socket, `None` for raw_buffer.
fn transport(socket: core::TransportSocket, tls_type: &str) -> Result<Option<Vec<u8>>, Reason> {
    use core::transport_socket::ConfigType;
    let typed = socket.config_type.map(|ConfigType::TypedConfig(any)| any);
    match socket.name.as_str() {
        RAW_BUFFER_TRANSPORT_SOCKET => match typed {
            Some(any) if any.type_url != RAW_BUFFER_TYPE => Err(invalid(
                "transport_socket.typed_config",
                format!("expected {RAW_BUFFER_TYPE}, got {}", any.type_url),
            )),
            _ => Ok(None),
        },
        TLS_TRANSPORT_SOCKET => match typed {
            Some(any) if any.type_url == tls_type => Ok(Some(any.value)),
            Some(any) => Err(invalid(
                "transport_socket.typed_config",
                format!("expected {tls_type}, got {}", any.type_url),
            )),
            None => Err(Reason::Missing("transport_socket.typed_config")),
        },
        other => Err(Reason::UnsupportedValue {
            field: "transport_socket.name",
            value: other.to_string(),
        }),
    }
}

fn upstream(mut c: tls::UpstreamTlsContext) -> Result<UpstreamTls, Reason> {
    let sni = Some(std::mem::take(&mut c.sni)).filter(|s| !s.is_empty());
    let common = c.common_tls_context.take().unwrap_or_default();
    (|| {
        reject_set!(
            c,
            auto_host_sni,
            auto_sni_san_validation,
            allow_renegotiation,
            max_session_keys,
            enforce_rsa_key_usage
        );
        reject_leftover(&c, "UpstreamTlsContext")
    })()?;
    let common = common_context(common)?;
    match common.certificate {
        Certificate::Sds => match common.validation {
            Validation::Sds { sans } => Ok(UpstreamTls::Mesh {
                sni,
                alpn: common.alpn,
                sans,
            }),
            _ => Err(invalid(
                "common_tls_context",
                "the workload certificate (SDS \"default\") goes with the trust bundle (SDS \"ROOTCA\")",
            )),
        },
        Certificate::Files(cert, key) => {
            files(sni, common.alpn, common.validation, Some((cert, key)))
        }
        Certificate::None => files(sni, common.alpn, common.validation, None),
    }
}

fn files(
    sni: Option<String>,
    alpn: Vec<String>,
    validation: Validation,
    client_cert: Option<(PathBuf, PathBuf)>,
) -> Result<UpstreamTls, Reason> {
    let (ca, verify, sans) = match validation {
        Validation::None => (None, false, Vec::new()),
        Validation::Files { ca, sans } => (ca, true, sans),
        Validation::Sds { .. } => {
            return Err(invalid(
                "common_tls_context",
                "the trust bundle (SDS \"ROOTCA\") goes with the workload certificate (SDS \"default\")",
            ));
        }
    };
    Ok(UpstreamTls::Files {
        sni,
        alpn,
        ca,
        verify,
        sans,
        client_cert,
    })
}

fn downstream(mut c: tls::DownstreamTlsContext) -> Result<DownstreamTls, Reason> {
    let require_client_certificate = c.require_client_certificate.take().is_some_and(|b| b.value);
    let common = c.common_tls_context.take().unwrap_or_default();
    c.disable_stateful_session_resumption = false;
    (|| {
        reject_set!(
            c,
            require_sni,
            session_timeout,
            ocsp_staple_policy,
            full_scan_certs_on_sni_mismatch,
            prefer_client_ciphers,
            session_ticket_keys_type
        );
        reject_leftover(&c, "DownstreamTlsContext")
    })()?;
    let common = common_context(common)?;
    if !matches!(common.certificate, Certificate::Sds)
        || !matches!(common.validation, Validation::Sds { .. } | Validation::None)
    {
        return Err(invalid(
            "common_tls_context",
            "downstream TLS serves the workload certificate (SDS \"default\") and verifies clients against the trust bundle (SDS \"ROOTCA\")",
        ));
    }
    if let Validation::Sds { sans } = &common.validation
        && !sans.is_empty()
    {
        return Err(Reason::Unsupported(
            "match_typed_subject_alt_names on a downstream context (authorize clients with RBAC)"
                .into(),
        ));
    }
    if require_client_certificate && matches!(common.validation, Validation::None) {
        return Err(invalid(
            "require_client_certificate",
            "needs a validation context (SDS \"ROOTCA\")",
        ));
    }
    Ok(DownstreamTls {
        alpn: common.alpn,
        require_client_certificate,
    })
}

enum Certificate {
    None,
    Sds,
    Files(PathBuf, PathBuf),
}

enum Validation {
    None,
    Sds {
        sans: Vec<SanMatch>,
    },
    Files {
        ca: Option<PathBuf>,
        sans: Vec<SanMatch>,
    },
}

struct Common {
    certificate: Certificate,
    validation: Validation,
    alpn: Vec<String>,
}

fn common_context(mut c: tls::CommonTlsContext) -> Result<Common, Reason> {
    use tls::common_tls_context::ValidationContextType as V;
    if let Some(params) = c.tls_params.take() {
        tls_params(params)?;
    }
    let alpn = std::mem::take(&mut c.alpn_protocols);
    let sds = std::mem::take(&mut c.tls_certificate_sds_secret_configs);
    let files = std::mem::take(&mut c.tls_certificates);
    let certificate = match (sds.as_slice(), files.as_slice()) {
        ([], []) => Certificate::None,
        ([secret], []) => {
            sds_name(
                secret,
                WORKLOAD_SECRET,
                "tls_certificate_sds_secret_configs[0]",
            )?;
            Certificate::Sds
        }
        ([], [cert]) => {
            let chain = data_source_file(
                cert.certificate_chain.as_ref(),
                "tls_certificates[0].certificate_chain",
            )?;
            let key =
                data_source_file(cert.private_key.as_ref(), "tls_certificates[0].private_key")?;
            let mut rest = cert.clone();
            rest.certificate_chain = None;
            rest.private_key = None;
            reject_leftover(&rest, "TlsCertificate")?;
            Certificate::Files(chain, key)
        }
        _ => {
            return Err(invalid(
                "tls_certificates",
                "exactly one certificate: one SDS secret or one certificate_chain/private_key pair",
            ));
        }
    };
    let validation = match c.validation_context_type.take() {
        None => Validation::None,
        Some(V::ValidationContext(v)) => {
            let (ca, sans) = validation_context(v)?;
            Validation::Files { ca, sans }
        }
        Some(V::ValidationContextSdsSecretConfig(secret)) => {
            sds_name(
                &secret,
                ROOTCA_SECRET,
                "validation_context_sds_secret_config",
            )?;
            Validation::Sds { sans: Vec::new() }
        }
        Some(V::CombinedValidationContext(combined)) => {
            let secret = combined
                .validation_context_sds_secret_config
                .ok_or(Reason::Missing(
                    "combined_validation_context.validation_context_sds_secret_config",
                ))?;
            sds_name(
                &secret,
                ROOTCA_SECRET,
                "combined_validation_context.validation_context_sds_secret_config",
            )?;
            let (ca, sans) =
                validation_context(combined.default_validation_context.unwrap_or_default())?;
            if ca.is_some() {
                return Err(invalid(
                    "combined_validation_context.default_validation_context.trusted_ca",
                    "the trust bundle comes from SDS \"ROOTCA\"",
                ));
            }
            Validation::Sds { sans }
        }
        Some(_) => {
            return Err(Reason::Unsupported(
                "validation_context_certificate_provider".into(),
            ));
        }
    };
    reject_leftover(&c, "CommonTlsContext")?;
    Ok(Common {
        certificate,
        validation,
        alpn,
    })
}

/// Only TLS 1.2 and 1.3 exist for rustls, so a maximum below 1.2 cannot be honoured. The
/// minimum needs no check: mesh TLS is 1.3 only, file-based TLS offers 1.2 and 1.3 whatever
/// the parameters say.
fn tls_params(mut p: tls::TlsParameters) -> Result<(), Reason> {
    use tls::tls_parameters::TlsProtocol as V;
    let max = V::try_from(p.tls_maximum_protocol_version).unwrap_or(V::TlsAuto);
    if matches!(max, V::TlSv10 | V::TlSv11) {
        return Err(Reason::UnsupportedValue {
            field: "tls_params.tls_maximum_protocol_version",
            value: max.as_str_name().to_string(),
        });
    }
    p.tls_minimum_protocol_version = 0;
    p.tls_maximum_protocol_version = 0;
    // Cipher and curve lists are rustls's own (all modern AEADs, X25519/P-256/P-384).
    p.cipher_suites.clear();
    p.ecdh_curves.clear();
    reject_leftover(&p, "TlsParameters")
}

fn sds_name(secret: &tls::SdsSecretConfig, want: &str, field: &str) -> Result<(), Reason> {
    if secret.name != want {
        return Err(invalid(
            field,
            format!(
                "SDS secret {:?} is unknown: the proxy serves only \"{WORKLOAD_SECRET}\" (its workload certificate) and \"{ROOTCA_SECRET}\" (the trust bundle)",
                secret.name
            ),
        ));
    }
    Ok(())
}

fn data_source_file(source: Option<&core::DataSource>, field: &str) -> Result<PathBuf, Reason> {
    use core::data_source::Specifier;
    match source.and_then(|s| s.specifier.as_ref()) {
        Some(Specifier::Filename(path)) if !path.is_empty() => Ok(PathBuf::from(path)),
        Some(_) => Err(invalid(field, "only a filename is supported")),
        None => Err(invalid(field, "is required")),
    }
}

#[allow(deprecated)] // match_subject_alt_names: deprecated in Envoy, still honoured.
fn validation_context(
    mut v: tls::CertificateValidationContext,
) -> Result<(Option<PathBuf>, Vec<SanMatch>), Reason> {
    let ca = match v.trusted_ca.take() {
        None => None,
        Some(source) => Some(data_source_file(Some(&source), "trusted_ca")?),
    };
    let mut sans = Vec::new();
    for (i, m) in std::mem::take(&mut v.match_typed_subject_alt_names)
        .into_iter()
        .enumerate()
    {
        let field = format!("match_typed_subject_alt_names[{i}]");
        use tls::subject_alt_name_matcher::SanType as T;
        let kind = match T::try_from(m.san_type) {
            Ok(T::Dns) => SanKind::Dns,
            Ok(T::Uri) => SanKind::Uri,
            _ => {
                return Err(invalid(&field, "only DNS and URI SANs are supported"));
            }
        };
        let matcher = m.matcher.ok_or(Reason::Missing("matcher"))?;
        sans.push(SanMatch {
            kind: Some(kind),
            pattern: san_pattern(matcher, &field)?,
        });
    }
    for (i, m) in std::mem::take(&mut v.match_subject_alt_names)
        .into_iter()
        .enumerate()
    {
        sans.push(SanMatch {
            kind: None,
            pattern: san_pattern(m, &format!("match_subject_alt_names[{i}]"))?,
        });
    }
    reject_leftover(&v, "CertificateValidationContext")?;
    Ok((ca, sans))
}

fn san_pattern(m: matcher::StringMatcher, field: &str) -> Result<SanPattern, Reason> {
    use matcher::string_matcher::MatchPattern as P;
    if m.ignore_case {
        return Err(invalid(field, "ignore_case is not supported for SANs"));
    }
    match m.match_pattern {
        Some(P::Exact(s)) => Ok(SanPattern::Exact(s)),
        Some(P::Prefix(s)) => Ok(SanPattern::Prefix(s)),
        Some(P::Suffix(s)) => Ok(SanPattern::Suffix(s)),
        Some(P::Contains(s)) => Ok(SanPattern::Contains(s)),
        _ => Err(invalid(
            field,
            "only exact, prefix, suffix and contains are supported",
        )),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
