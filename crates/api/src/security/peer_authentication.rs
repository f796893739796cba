//! `PeerAuthentication`: the mutual-TLS mode a workload accepts.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::networking::PolicyWorkloadSelector;
use crate::validation::{FieldError, Path, Validate, check, validate_port};

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
    /// Port-specific mutual TLS settings, keyed by the workload's port number.
    #[serde(
        default,
        deserialize_with = "port_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub port_level_mtls: BTreeMap<u32, PeerAuthenticationMutualTls>,
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
fn port_map<'de, D, T>(deserializer: D) -> Result<BTreeMap<u32, T>, D::Error>
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
    let raw = Option::<BTreeMap<PortKey, T>>::deserialize(deserializer)?;
    let mut out = BTreeMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let port = match &k {
            PortKey::Number(n) => u32::try_from(*n).ok(),
            PortKey::Text(s) => s.parse::<u32>().ok(),
        };
        let Some(port) = port else {
            return Err(serde::de::Error::custom(format!(
                "invalid port key {k:?}: expected a port number"
            )));
        };
        out.insert(port, v);
    }
    Ok(out)
}

impl Validate for PeerAuthentication {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.selector.validate(&path.field("selector"), errors);
        let selects = self
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if !self.port_level_mtls.is_empty() && !selects {
            path.field("portLevelMtls").push(
                errors,
                "portLevelMtls requires a workload selector (selector.matchLabels)",
            );
        }
        for port in self.port_level_mtls.keys() {
            check(
                &path.field("portLevelMtls").key(&port.to_string()),
                errors,
                validate_port(*port),
            );
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
                "spec.portLevelMtls: portLevelMtls requires a workload selector (selector.matchLabels)",
                "spec.portLevelMtls[0]: port number 0 must be in the range 1..65535"
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
