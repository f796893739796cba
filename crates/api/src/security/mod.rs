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
use serde::{Deserialize, Serialize};

use crate::networking::PolicyWorkloadSelector;
use crate::validation::{FieldError, Path, Validate};

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

impl Validate for PolicyTargetReference {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.kind.is_empty() {
            path.field("kind")
                .push(errors, "targetRef kind is required");
        }
        if self.name.is_empty() {
            path.field("name")
                .push(errors, "targetRef name is required");
        }
        if !self.namespace.is_empty() {
            path.field("namespace").push(
                errors,
                "cross namespace referencing is not currently supported",
            );
        }
    }
}

/// Checks `selector`, `targetRef` and `targetRefs` of a policy: at most one of them is set.
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
            "only one of selector, targetRef or targetRefs can be set",
        );
    }
    selector.validate(&path.field("selector"), errors);
    target_ref.validate(&path.field("targetRef"), errors);
    for (i, t) in target_refs.iter().enumerate() {
        t.validate(&path.field("targetRefs").index(i), errors);
    }
}
