//! `ObjectMeta`: the Kubernetes object metadata Istio objects carry (name, namespace, labels, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::validation::{FieldError, Path, check_labels, is_dns1123_label, is_dns1123_subdomain};

/// The subset of Kubernetes `ObjectMeta` that Weft uses, plus the server-populated fields so that
/// `kubectl get -o yaml` output parses (they are kept, not interpreted).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Object name (required).
    #[serde(default)]
    pub name: String,
    /// Namespace; `None` means "the namespace the config is applied to".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Server-populated resource version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Server-populated generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `generateName`, kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Server-populated UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Server-populated creation time (RFC 3339 text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Server-populated deletion time (RFC 3339 text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Server-populated deletion grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Finalizers, kept as is.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub finalizers: Vec<String>,
    /// Owner references, kept as raw values.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub owner_references: Vec<serde_yaml::Value>,
    /// Managed fields, kept as raw values.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub managed_fields: Vec<serde_yaml::Value>,
    /// Legacy `selfLink`, kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
}

impl ObjectMeta {
    /// Metadata with just a name and namespace.
    pub fn named(name: impl Into<String>, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            namespace: namespace.map(str::to_string),
            ..ObjectMeta::default()
        }
    }

    /// Checks the name (a DNS-1123 subdomain), the namespace (a DNS-1123 label) and label syntax.
    pub fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.name.is_empty() {
            path.field("name").push(errors, "name is required");
        } else if !is_dns1123_subdomain(&self.name) {
            path.field("name").push(
                errors,
                format!(
                    "invalid name {:?}: must be a lowercase RFC 1123 subdomain",
                    self.name
                ),
            );
        }
        if let Some(ns) = &self.namespace
            && !is_dns1123_label(ns)
        {
            path.field("namespace").push(
                errors,
                format!("invalid namespace {ns:?}: must be a lowercase RFC 1123 label"),
            );
        }
        check_labels(&path.field("labels"), errors, &self.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_server_fields() {
        let y = r#"
name: reviews
namespace: default
uid: 3f1c
resourceVersion: "1234"
generation: 3
creationTimestamp: "2024-01-01T00:00:00Z"
deletionTimestamp: null
managedFields:
- manager: kubectl
  operation: Update
ownerReferences:
- apiVersion: v1
  kind: Foo
  name: x
  uid: y
finalizers: [a]
labels: null
annotations:
  kubectl.kubernetes.io/last-applied-configuration: "{}"
"#;
        let m: ObjectMeta = serde_yaml::from_str(y).unwrap();
        assert_eq!(m.name, "reviews");
        assert_eq!(m.resource_version.as_deref(), Some("1234"));
        assert_eq!(m.generation, Some(3));
        assert!(m.labels.is_empty());
        let mut errs = Vec::new();
        m.validate(&Path::root("metadata"), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn validates_name() {
        let m = ObjectMeta::named("Bad_Name", Some("Ns"));
        let mut errs = Vec::new();
        m.validate(&Path::root("metadata"), &mut errs);
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["metadata.name", "metadata.namespace"]);
    }
}
