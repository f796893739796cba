//! AuthorizationPolicy → `envoy.filters.network.rbac` on the capture shape's TCP filter chains,
//! as istiod translates policies for TCP (`pilot/pkg/security/authz/builder`, `forTCP`): the same
//! Envoy policies as the HTTP filters ([`super::authz`]), without the tests a TCP connection
//! cannot answer.
//!
//! ```text
//! HTTP-only tests: hosts, methods, paths (permissions); request headers, requestPrincipals,
//!                  request.auth.* and JWT claims (principals)
//! ALLOW rule with one of them  → left out (it could never match a connection: allows less)
//! DENY / AUDIT rule            → those tests dropped (an emptied side matches anything: denies more)
//! network filters: [rbac DENY?] [rbac ALLOW?] [rbac LOG?] tcp_proxy
//! ```

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::Policy;
use weft_xds::contract::NETWORK_RBAC;

use super::super::Proxy;
use super::{authz, wire};
use crate::model::Model;
use crate::model::security::{
    AuthorizationPolicyEntry, AuthzAction, AuthzRule, PermissionMatch, PrincipalMatch,
};

/// The `stat_prefix` of the network RBAC filters (Envoy requires one; istiod's).
pub const TCP_STAT_PREFIX: &str = "tcp.";

/// The network RBAC filters of the policies selecting `proxy`, for its TCP filter chains:
/// DENY, then ALLOW, then LOG, each only when some policy has that action (an ALLOW filter
/// whose rules all need HTTP allows no connection).
pub fn network_rbac_filters(model: &Model, proxy: &Proxy) -> Vec<Filter> {
    authz::by_action(model, proxy, |policy| authz::policies(&for_tcp(policy)))
        .into_iter()
        .map(|(action, policies)| network_rbac_filter(action, &policies))
        .collect()
}

/// One network RBAC filter with `policies`.
pub fn network_rbac_filter(action: AuthzAction, policies: &BTreeMap<String, Policy>) -> Filter {
    let rules = authz::rules_for(action);
    Filter {
        name: NETWORK_RBAC.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(wire::network_rbac(
            &rules,
            policies,
            TCP_STAT_PREFIX,
        ))),
    }
}

/// A policy as it applies to TCP connections: each rule through [`tcp_rule`].
pub fn for_tcp(policy: &AuthorizationPolicyEntry) -> AuthorizationPolicyEntry {
    AuthorizationPolicyEntry {
        rules: policy
            .rules
            .iter()
            .filter_map(|rule| tcp_rule(rule, policy.action))
            .collect(),
        ..policy.clone()
    }
}

/// A rule for TCP: unchanged without HTTP-only tests; with some, `None` for ALLOW, and the
/// rule without them for DENY and AUDIT.
pub fn tcp_rule(rule: &AuthzRule, action: AuthzAction) -> Option<AuthzRule> {
    let needs_http = rule.principals.iter().flatten().any(principal_needs_http)
        || rule.permissions.iter().flatten().any(permission_needs_http);
    if !needs_http {
        return Some(rule.clone());
    }
    match action {
        AuthzAction::Allow => None,
        AuthzAction::Deny | AuthzAction::Audit => Some(AuthzRule {
            index: rule.index,
            principals: rule
                .principals
                .iter()
                .map(|tests| {
                    tests
                        .iter()
                        .filter(|test| !principal_needs_http(test))
                        .cloned()
                        .collect()
                })
                .collect(),
            permissions: rule
                .permissions
                .iter()
                .map(|tests| {
                    tests
                        .iter()
                        .filter(|test| !permission_needs_http(test))
                        .cloned()
                        .collect()
                })
                .collect(),
        }),
    }
}

/// Tests on the request, which a TCP connection does not have.
fn principal_needs_http(test: &PrincipalMatch) -> bool {
    match test {
        PrincipalMatch::Header { .. }
        | PrincipalMatch::Authn { .. }
        | PrincipalMatch::Claim { .. } => true,
        PrincipalMatch::Principal(_)
        | PrincipalMatch::Identity(_)
        | PrincipalMatch::Namespace(_)
        | PrincipalMatch::TrustDomain(_)
        | PrincipalMatch::SourceIp(_)
        | PrincipalMatch::RemoteIp(_) => false,
    }
}

fn permission_needs_http(test: &PermissionMatch) -> bool {
    match test {
        PermissionMatch::Host(_) | PermissionMatch::Method(_) | PermissionMatch::Path(_) => true,
        PermissionMatch::Port(_) | PermissionMatch::DestinationIp(_) | PermissionMatch::Sni(_) => {
            false
        }
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
