//! Istio `security.istio.io/v1` resource specs (PeerAuthentication, AuthorizationPolicy,
//! RequestAuthentication), plus the policy target reference shared with `telemetry.istio.io`.
//!
//! Field names follow the protobuf JSON names of istio/api; unknown fields are rejected.

mod authorization_policy;
mod peer_authentication;
mod request_authentication;

pub use authorization_policy::*;
pub use peer_authentication::*;
pub use request_authentication::*;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::Duration;
use crate::networking::PolicyWorkloadSelector;
use crate::validation::{Check, FieldError, Path, Validate};

/// A reference to the resource a policy attaches to (`targetRef`/`targetRefs`), as in
/// `istio.type.v1beta1.PolicyTargetReference`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group of the target (`gateway.networking.k8s.io`, or empty for the core group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 253))]
    pub group: String,
    /// Kind of the target (`Gateway`, `Service`, `ServiceEntry`, `GatewayClass`).
    #[serde(default)]
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the target.
    #[serde(default)]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the target; only the policy's own namespace is supported.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The kinds a policy may attach to, as `(group, kind)`; the core group may be written empty
/// or `core` (Istio's `allowedTargetRefs`).
const TARGET_KINDS: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

impl Validate for PolicyTargetReference {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.name.is_empty() {
            path.field("name")
                .push(errors, "targetRef name must be set");
        } else if self.name.len() > 253 {
            path.field("name")
                .push(errors, "targetRef name must be at most 253 characters");
        }
        if self.kind.is_empty() {
            path.field("kind")
                .push(errors, "targetRef kind must be set");
        } else {
            let group = if self.group.is_empty() {
                "core"
            } else {
                self.group.as_str()
            };
            if !TARGET_KINDS.contains(&(group, self.kind.as_str())) {
                let allowed: Vec<String> = TARGET_KINDS
                    .iter()
                    .map(|(g, k)| format!("{g}/{k}"))
                    .collect();
                path.push(
                    errors,
                    format!(
                        "targetRef must be to one of {} but was {}",
                        allowed.join(", "),
                        crate::de::quoted(&format!("{}/{}", self.group, self.kind))
                    ),
                );
            }
        }
        if !self.namespace.is_empty() {
            path.field("namespace").push(
                errors,
                "cross namespace referencing is not currently supported",
            );
        }
    }
}

/// Checks the `selector` of a policy as Istio does
/// ([`PolicyWorkloadSelector::validate_as_istio`]).
pub(crate) fn validate_policy_selector(
    path: &Path,
    errors: &mut Vec<FieldError>,
    selector: &Option<PolicyWorkloadSelector>,
) {
    if let Some(selector) = selector {
        selector.validate_as_istio(path, errors);
    }
}

/// Checks `selector`, `targetRef` and `targetRefs` of a policy: at most one of them is set,
/// and each is well formed.
pub(crate) fn validate_policy_target(
    path: &Path,
    errors: &mut Vec<FieldError>,
    selector: &Option<PolicyWorkloadSelector>,
    target_ref: &Option<PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        path.push(
            errors,
            "only one of targetRefs or selector can be set (selector, targetRef and targetRefs are exclusive)",
        );
    }
    if target_refs.len() > 16 {
        path.field("targetRefs")
            .push(errors, "may not have more than 16 targets");
    }
    validate_policy_selector(&path.field("selector"), errors, selector);
    target_ref.validate(&path.field("targetRef"), errors);
    for (i, t) in target_refs.iter().enumerate() {
        t.validate(&path.field("targetRefs").index(i), errors);
    }
}

/// A duration of at least 1ms (the CRDs' CEL rule); with `ms_precision`, also a whole number
/// of milliseconds (Istio's `ValidateDuration`).
pub(crate) fn check_min_duration(d: &Duration, ms_precision: bool) -> Check {
    if d.0 < std::time::Duration::from_millis(1) {
        return Err(format!(
            "must be a valid duration greater than 1ms, got {d}"
        ));
    }
    if ms_precision && !d.0.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "only durations to ms precision are supported, got {d}"
        ));
    }
    Ok(())
}

/// Reads a list whose items are objects, refusing a `null` item (the API server's "must be of
/// type object"): read as the default, it would mean something else (an empty rule matches
/// every request).
pub(crate) fn no_null_items<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Option::<Vec<Option<T>>>::deserialize(deserializer)?.unwrap_or_default();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            item.ok_or_else(|| {
                serde::de::Error::custom(format!("item {i} is null: it must be an object"))
            })
        })
        .collect()
}
