//! DestinationRule tunnelling (HTTP CONNECT/POST) and PROXY protocol settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{FieldError, Path, Validate, check, validate_fqdn, validate_port};

/// Tunnel settings (HTTP CONNECT/POST).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Tunnel proxy host (FQDN or IP).
    #[serde(default)]
    pub target_host: String,
    /// Tunnel proxy port.
    #[serde(default)]
    pub target_port: u32,
}

impl Validate for TunnelSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(p) = self.protocol.as_deref()
            && !p.is_empty()
            && p != "CONNECT"
            && p != "POST"
        {
            path.field("protocol")
                .push(errors, "tunnel protocol must be \"CONNECT\" or \"POST\"");
        }
        if validate_fqdn(&self.target_host).is_err() && !crate::validation::is_ip(&self.target_host)
        {
            path.field("targetHost").push(
                errors,
                "tunnel target host must be valid FQDN or IP address",
            );
        }
        check(
            &path.field("targetPort"),
            errors,
            validate_port(self.target_port),
        );
    }
}

/// PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProxyProtocolVersion {
    /// Version 1 (text).
    V1,
    /// Version 2 (binary).
    V2,
}

/// PROXY protocol settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// Version (default V1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ProxyProtocolVersion>,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_err;

    #[test]
    fn tunnel() {
        assert_err(
            "host: a\ntrafficPolicy: {tunnel: {targetHost: 'x..y', targetPort: 0}}",
            "spec.trafficPolicy.tunnel.targetPort",
            "1..65535",
        );
    }
}
