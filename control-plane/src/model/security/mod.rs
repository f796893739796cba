//! AuthorizationPolicies and RequestAuthentications in the model: one entry per object (its
//! rules parsed into what the generator translates, [`authz`]; its JWT rules with their key
//! sets, [`jwt`]) and which workloads each one selects, as Istio decides it.
//!
//! Selection: a policy in the root namespace applies mesh-wide (to every workload without a
//! selector, else to the workloads whose labels match, in every namespace); a policy in another
//! namespace applies to that namespace's workloads the same way. A policy attached with
//! `targetRef`/`targetRefs` (gateways) applies to nothing yet (reported by
//! [`crate::unsupported`]).
//!
//! PeerAuthentications ([`peer_authentication`]) decide a workload's inbound mTLS mode with
//! their own precedence (workload over namespace over mesh, one policy per level).

pub mod authz;
pub mod jwt;
pub mod peer_authentication;

use std::collections::BTreeMap;

use weft_api::ConfigObject;
use weft_api::networking::PolicyWorkloadSelector;
use weft_api::security::PolicyTargetReference;

use super::Model;
use crate::jwks::JwksSet;
use crate::source::ConfigSet;

pub use authz::{
    AuthorizationPolicyEntry, AuthzAction, AuthzRule, Cidr, PathPattern, Pattern, PermissionMatch,
    PrincipalMatch, Values,
};
pub use jwt::{EMPTY_JWKS, JwtRuleEntry, RequestAuthenticationEntry};
pub use peer_authentication::{MtlsDecision, MtlsMode, PeerAuthenticationEntry};

/// Which workloads a policy is for, before the namespace scope is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No selector: every workload in scope.
    AllWorkloads,
    /// `selector.matchLabels`: the workloads in scope carrying all these labels.
    Labels(BTreeMap<String, String>),
    /// `targetRef`/`targetRefs` (gateway attachment, not supported yet): no workload.
    Attached,
}

impl Target {
    /// The target of a policy from its selector fields (validation makes them exclusive).
    pub fn of(
        selector: Option<&PolicyWorkloadSelector>,
        target_ref: Option<&PolicyTargetReference>,
        target_refs: &[PolicyTargetReference],
    ) -> Self {
        if target_ref.is_some() || !target_refs.is_empty() {
            Target::Attached
        } else if let Some(selector) = selector {
            Target::Labels(selector.match_labels.clone())
        } else {
            Target::AllWorkloads
        }
    }
}

/// Whether a policy in `policy_namespace` with `target` applies to a workload in `namespace`
/// with `labels`, `root_namespace` being the mesh's root namespace.
pub fn selects(
    policy_namespace: &str,
    target: &Target,
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if policy_namespace != root_namespace && policy_namespace != namespace {
        return false;
    }
    match target {
        Target::AllWorkloads => true,
        Target::Labels(wanted) => wanted
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value)),
        Target::Attached => false,
    }
}

/// Adds the security policies of `config` to the model (ordered by namespace/name, as the
/// config set is), resolving `jwksUri` key sets from `jwks`.
pub(super) fn add(model: &mut Model, config: &ConfigSet, jwks: &JwksSet) {
    for (key, object) in config.objects() {
        match object {
            ConfigObject::AuthorizationPolicy(resource) => {
                // Istio's dry-run mode: the policy is evaluated in shadow and only logged.
                // Weft records no shadow results yet, so such a policy is left out, never
                // enforced, and said so.
                if resource
                    .metadata
                    .annotations
                    .get(weft_api::object::DRY_RUN_ANNOTATION)
                    .and_then(|v| weft_api::object::parse_go_bool(v))
                    == Some(true)
                {
                    model.warnings.push(crate::object::Warning::new(
                        key,
                        format!(
                            "metadata.annotations[{}]",
                            weft_api::object::DRY_RUN_ANNOTATION
                        ),
                        "dry-run is not supported yet (no shadow evaluation); the policy is not enforced",
                    ));
                    continue;
                }
                let (entry, warnings) =
                    AuthorizationPolicyEntry::new(key, &resource.spec, &model.trust_domain);
                model.warnings.extend(warnings);
                model.authorization_policies.push(entry);
            }
            ConfigObject::RequestAuthentication(resource) => {
                let (entry, warnings) = RequestAuthenticationEntry::new(key, &resource.spec, jwks);
                model.warnings.extend(warnings);
                model.request_authentications.push(entry);
            }
            ConfigObject::PeerAuthentication(resource) => {
                let (entry, warnings) =
                    PeerAuthenticationEntry::new(key, resource, &model.root_namespace);
                model.warnings.extend(warnings);
                model.peer_authentications.push(entry);
            }
            _ => {}
        }
    }
    let shadowed = peer_authentication::shadowed(&model.peer_authentications);
    model.warnings.extend(shadowed);
}

impl Model {
    /// The AuthorizationPolicies that apply to a workload in `namespace` with `labels`, in
    /// namespace/name order.
    pub fn authorization_policies_for<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a AuthorizationPolicyEntry> + 'a {
        self.authorization_policies.iter().filter(move |policy| {
            selects(
                &policy.key.namespace,
                &policy.target,
                &self.root_namespace,
                namespace,
                labels,
            )
        })
    }

    /// The RequestAuthentications that apply to a workload in `namespace` with `labels`, in
    /// namespace/name order (root namespace, namespace-wide and selector policies merged).
    pub fn request_authentications_for<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a RequestAuthenticationEntry> + 'a {
        self.request_authentications.iter().filter(move |policy| {
            selects(
                &policy.key.namespace,
                &policy.target,
                &self.root_namespace,
                namespace,
                labels,
            )
        })
    }
}

#[cfg(test)]
mod tests;
