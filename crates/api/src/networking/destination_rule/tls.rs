//! DestinationRule upstream (client-side) TLS settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::validation::{FieldError, Path, Validate};

/// Upstream TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Plain text.
    #[default]
    Disable,
    /// TLS, verifying the server.
    Simple,
    /// Mutual TLS with user-provided certificates.
    Mutual,
    /// Mutual TLS with Istio's certificates.
    IstioMutual,
}

/// Upstream (client-side) TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// TLS mode.
    #[serde(default)]
    pub mode: TlsMode,
    /// Client certificate file (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client private key file (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Secret holding the certificates (instead of files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Accepted server SANs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
    /// SNI to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Skip server verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

impl Validate for ClientTlsSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        if self.insecure_skip_verify == Some(true) {
            match self.mode {
                TlsMode::Simple
                    if set(&self.ca_certificates)
                        || set(&self.credential_name)
                        || !self.subject_alt_names.is_empty() =>
                {
                    path.push(errors, "cannot specify caCertificates or credentialName or subjectAltNames when insecureSkipVerify is set true");
                }
                TlsMode::Mutual
                    if set(&self.ca_certificates) || !self.subject_alt_names.is_empty() =>
                {
                    path.push(errors, "cannot specify caCertificates or subjectAltNames when insecureSkipVerify is set true");
                }
                _ => {}
            }
        }
        let with_credential =
            matches!(self.mode, TlsMode::Simple | TlsMode::Mutual) && set(&self.credential_name);
        if with_credential {
            if set(&self.client_certificate)
                || set(&self.ca_certificates)
                || set(&self.private_key)
                || set(&self.ca_crl)
            {
                path.push(
                    errors,
                    "cannot specify client certificates or CA certificate or CA CRL if credentialName is set",
                );
            }
            return;
        }
        if self.mode == TlsMode::Mutual {
            if !set(&self.client_certificate) {
                path.field("clientCertificate")
                    .push(errors, "client certificate required for mutual tls");
            }
            if !set(&self.private_key) {
                path.field("privateKey")
                    .push(errors, "private key required for mutual tls");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok};

    #[test]
    fn client_tls() {
        assert_err(
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL}}",
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required",
        );
        assert_err(
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL}}",
            "spec.trafficPolicy.tls.privateKey",
            "private key required",
        );
        assert_ok("host: a\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: secret}}");
        assert_ok(
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}",
        );
        assert_err(
            "host: a\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: s, caCertificates: /ca}}",
            "spec.trafficPolicy.tls",
            "credentialName is set",
        );
    }
}
