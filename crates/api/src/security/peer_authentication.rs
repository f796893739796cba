//! `PeerAuthentication`: the mutual-TLS mode a workload accepts.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::validate_policy_selector;
use crate::networking::PolicyWorkloadSelector;
use crate::validation::{FieldError, Path, Validate};

/// `spec` of a `PeerAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// The workloads the policy applies to; all workloads in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicyWorkloadSelector>,
    /// Mutual TLS settings for the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerAuthenticationMutualTls>,
    /// Port-specific mutual TLS settings, keyed by the workload's port number (at least one
    /// port when set; needs a selector).
    #[serde(
        default,
        deserialize_with = "port_map",
        skip_serializing_if = "Option::is_none"
    )]
    pub port_level_mtls: Option<BTreeMap<u32, PeerAuthenticationMutualTls>>,
}

/// Mutual TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationMutualTls {
    /// The mTLS mode; `UNSET` inherits from the parent policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

/// Mutual TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent; if none, PERMISSIVE.
    Unset,
    /// Connections are plain text.
    Disable,
    /// Plain text and mTLS are both accepted.
    Permissive,
    /// Only mTLS connections are accepted.
    Strict,
}

/// Reads a map whose keys are port numbers written as YAML integers or strings (`8080:` or
/// `"8080":`, as `kubectl get -o yaml` prints them).
fn port_map<'de, D, T>(deserializer: D) -> Result<Option<BTreeMap<u32, T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
    #[serde(untagged)]
    enum PortKey {
        Number(u64),
        Text(String),
    }
    let Some(raw) = Option::<BTreeMap<PortKey, T>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let (port, written) = match &k {
            PortKey::Number(n) => (u32::try_from(*n).ok(), n.to_string()),
            PortKey::Text(s) => (s.parse::<u32>().ok(), s.clone()),
        };
        let Some(port) = port else {
            return Err(serde::de::Error::custom(format!(
                "invalid port key {}: port must be between 1-65535",
                crate::de::quoted(&written)
            )));
        };
        out.insert(port, v);
    }
    Ok(Some(out))
}

impl Validate for PeerAuthentication {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        validate_policy_selector(&path.field("selector"), errors, &self.selector);
        let Some(ports) = &self.port_level_mtls else {
            return;
        };
        let p = path.field("portLevelMtls");
        let selects = self
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if !selects {
            p.push(
                errors,
                "portLevelMtls requires selector: a mesh or namespace wide policy (no selector.matchLabels) cannot have port level mTLS",
            );
        }
        if ports.is_empty() {
            p.push(
                errors,
                "port level mTLS, if defined, must have at least one port",
            );
        }
        for port in ports.keys() {
            if !(1..=65535).contains(port) {
                p.key(&port.to_string())
                    .push(errors, "port must be between 1-65535");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let pa: PeerAuthentication = serde_yaml::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        pa.validate(&Path::root("spec"), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn accepts_istio_examples() {
        assert!(errors("mtls: {mode: STRICT}").is_empty());
        assert!(
            errors(
                "selector: {matchLabels: {app: finance}}\nmtls: {mode: STRICT}\nportLevelMtls: {8080: {mode: DISABLE}, \"9090\": {mode: PERMISSIVE}}"
            )
            .is_empty()
        );
    }

    #[test]
    fn port_level_needs_selector() {
        assert_eq!(
            errors("portLevelMtls: {8080: {mode: DISABLE}, 0: {mode: STRICT}}"),
            [
                "spec.portLevelMtls: portLevelMtls requires selector: a mesh or namespace wide policy (no selector.matchLabels) cannot have port level mTLS",
                "spec.portLevelMtls[0]: port must be between 1-65535"
            ]
        );
    }

    #[test]
    fn rejects_bad_fields() {
        assert!(serde_yaml::from_str::<PeerAuthentication>("mtls: {mode: ON}").is_err());
        assert!(serde_yaml::from_str::<PeerAuthentication>("mtsl: {}").is_err());
        assert!(serde_yaml::from_str::<PeerAuthentication>("portLevelMtls: {http: {}}").is_err());
    }
}
