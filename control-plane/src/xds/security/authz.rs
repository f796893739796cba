//! AuthorizationPolicy → `envoy.filters.http.rbac` (`envoy.extensions.filters.http.rbac.v3.RBAC`),
//! one filter per action in the order DENY, ALLOW, LOG, as istiod builds them
//! (`pilot/pkg/security/authz/builder`), from the rules the model parsed
//! ([`crate::model::security::authz`]).
//!
//! ```text
//! rule ns[<ns>]-policy[<name>]-rule[<i>] = Policy {
//!   permissions: [ and_rules(per `to`: operation tests, then `when` tests on the operation) ]
//!   principals:  [ and_ids(per `from`: source tests, then `when` tests on the source) ]
//! }
//! test = or(values) [, not(or(notValues))]       empty test list = any
//! ```

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TypedExtensionConfig};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal, rbac,
};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, PathMatcher, RegexMatcher, StringMatcher, ValueMatcher,
    list_matcher, metadata_matcher, path_matcher, string_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_xds::contract::{ISTIO_AUTHN_METADATA, RBAC, URI_TEMPLATE_MATCHER};

use super::super::{Proxy, pack};
use super::wire;
use crate::model::Model;
use crate::model::security::authz::REQUEST_CLAIMS;
use crate::model::security::{
    AuthorizationPolicyEntry, AuthzAction, AuthzRule, Cidr, PathPattern, Pattern, PermissionMatch,
    PrincipalMatch, Values,
};

/// The RBAC filters of the policies selecting `proxy`: DENY, then ALLOW, then LOG, each only
/// when some policy has that action. An ALLOW filter is sent whenever an ALLOW policy selects
/// the workload, even if none of its rules translated (it then denies everything).
pub fn rbac_filters(model: &Model, proxy: &Proxy) -> Vec<HttpFilter> {
    by_action(model, proxy, policies)
        .into_iter()
        .map(|(action, policies)| rbac_filter(action, &policies))
        .collect()
}

/// The Envoy RBAC policies of the AuthorizationPolicies selecting `proxy`, each converted by
/// `convert`, grouped by action in filter order: DENY, ALLOW, LOG (only actions some policy has).
pub fn by_action(
    model: &Model,
    proxy: &Proxy,
    convert: impl Fn(&AuthorizationPolicyEntry) -> Vec<(String, Policy)>,
) -> Vec<(AuthzAction, BTreeMap<String, Policy>)> {
    let mut by_action: BTreeMap<AuthzAction, BTreeMap<String, Policy>> = BTreeMap::new();
    for policy in model.authorization_policies_for(&proxy.namespace, &proxy.labels) {
        by_action
            .entry(policy.action)
            .or_default()
            .extend(convert(policy));
    }
    [AuthzAction::Deny, AuthzAction::Allow, AuthzAction::Audit]
        .into_iter()
        .filter_map(|action| Some((action, by_action.remove(&action)?)))
        .collect()
}

/// The `rules` of an RBAC filter (HTTP or network) with `action`.
pub fn rules_for(action: AuthzAction) -> RbacRules {
    RbacRules {
        action: match action {
            AuthzAction::Allow => rbac::Action::Allow,
            AuthzAction::Deny => rbac::Action::Deny,
            AuthzAction::Audit => rbac::Action::Log,
        } as i32,
        ..Default::default()
    }
}

/// One RBAC filter with `policies`.
pub fn rbac_filter(action: AuthzAction, policies: &BTreeMap<String, Policy>) -> HttpFilter {
    let rules = rules_for(action);
    HttpFilter {
        name: RBAC.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(wire::http_rbac(
            &rules, policies,
        ))),
        ..Default::default()
    }
}

/// Istio's name of the Envoy policy of one rule.
pub fn policy_name(namespace: &str, name: &str, index: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{index}]")
}

/// The Envoy policies of one AuthorizationPolicy, by name.
pub fn policies(policy: &AuthorizationPolicyEntry) -> Vec<(String, Policy)> {
    let (namespace, name) = (&policy.key.namespace, &policy.key.name);
    if policy.matches_nothing {
        return vec![(policy_name(namespace, name, 0), never_matches())];
    }
    policy
        .rules
        .iter()
        .map(|rule| (policy_name(namespace, name, rule.index), envoy_policy(rule)))
        .collect()
}

/// The policy of a rule.
pub fn envoy_policy(rule: &AuthzRule) -> Policy {
    Policy {
        permissions: rule
            .permissions
            .iter()
            .map(|tests| {
                let mut rules: Vec<Permission> = tests.iter().flat_map(permissions).collect();
                if rules.is_empty() {
                    rules.push(permission_rule(permission::Rule::Any(true)));
                }
                permission_rule(permission::Rule::AndRules(permission::Set { rules }))
            })
            .collect(),
        principals: rule
            .principals
            .iter()
            .map(|tests| {
                let mut ids: Vec<Principal> = tests.iter().flat_map(principals).collect();
                if ids.is_empty() {
                    ids.push(principal_id(principal::Identifier::Any(true)));
                }
                principal_id(principal::Identifier::AndIds(principal::Set { ids }))
            })
            .collect(),
        ..Default::default()
    }
}

/// istiod's explicit policy for an AuthorizationPolicy without rules: it matches nothing.
fn never_matches() -> Policy {
    Policy {
        permissions: vec![permission_rule(permission::Rule::NotRule(Box::new(
            permission_rule(permission::Rule::Any(true)),
        )))],
        principals: vec![principal_id(principal::Identifier::NotId(Box::new(
            principal_id(principal::Identifier::Any(true)),
        )))],
        ..Default::default()
    }
}

fn permission_rule(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn principal_id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}

/// `or(values)` and `not(or(notValues))`, each when non-empty.
fn permission_set<T>(values: &Values<T>, one: impl Fn(&T) -> Vec<Permission>) -> Vec<Permission> {
    let or = |list: &[T]| {
        permission_rule(permission::Rule::OrRules(permission::Set {
            rules: list.iter().flat_map(&one).collect(),
        }))
    };
    let mut out = Vec::new();
    if !values.values.is_empty() {
        out.push(or(&values.values));
    }
    if !values.not_values.is_empty() {
        out.push(permission_rule(permission::Rule::NotRule(Box::new(or(
            &values.not_values,
        )))));
    }
    out
}

/// `or_ids(values)` and `not_id(or_ids(notValues))`, each when non-empty.
fn principal_set<T>(values: &Values<T>, one: impl Fn(&T) -> Principal) -> Vec<Principal> {
    let or = |list: &[T]| {
        principal_id(principal::Identifier::OrIds(principal::Set {
            ids: list.iter().map(&one).collect(),
        }))
    };
    let mut out = Vec::new();
    if !values.values.is_empty() {
        out.push(or(&values.values));
    }
    if !values.not_values.is_empty() {
        out.push(principal_id(principal::Identifier::NotId(Box::new(or(
            &values.not_values,
        )))));
    }
    out
}

fn permissions(test: &PermissionMatch) -> Vec<Permission> {
    let header = |matcher: HeaderMatcher| permission_rule(permission::Rule::Header(matcher));
    match test {
        PermissionMatch::Host(values) => {
            permission_set(values, |pattern| vec![header(host_matcher(pattern))])
        }
        PermissionMatch::Method(values) => permission_set(values, |pattern| {
            vec![header(header_matcher(":method", pattern, false))]
        }),
        PermissionMatch::Path(values) => permission_set(values, |path| {
            vec![permission_rule(match path {
                PathPattern::Pattern(pattern) => permission::Rule::UrlPath(PathMatcher {
                    rule: Some(path_matcher::Rule::Path(string_matcher(pattern, false))),
                }),
                PathPattern::Template(template) => {
                    permission::Rule::UriTemplate(TypedExtensionConfig {
                        name: URI_TEMPLATE_MATCHER.to_string(),
                        typed_config: Some(pack(&UriTemplateMatchConfig {
                            path_template: template.clone(),
                        })),
                    })
                }
            })]
        }),
        PermissionMatch::Port(values) => permission_set(values, |port| {
            vec![permission_rule(permission::Rule::DestinationPort(*port))]
        }),
        PermissionMatch::DestinationIp(values) => permission_set(values, |cidr| {
            vec![permission_rule(permission::Rule::DestinationIp(
                cidr_range(cidr),
            ))]
        }),
        PermissionMatch::Sni(values) => permission_set(values, |pattern| {
            vec![permission_rule(permission::Rule::RequestedServerName(
                string_matcher(pattern, false),
            ))]
        }),
    }
}

fn principals(test: &PrincipalMatch) -> Vec<Principal> {
    let authenticated = |name: StringMatcher| {
        principal_id(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(name),
            },
        ))
    };
    match test {
        PrincipalMatch::Principal(values) => {
            principal_set(values, |pattern| authenticated(spiffe_matcher(pattern)))
        }
        PrincipalMatch::Identity(values) => {
            principal_set(values, |identity| authenticated(exact(identity, false)))
        }
        PrincipalMatch::Namespace(values) => principal_set(values, |namespace| {
            authenticated(regex(format!(".*/ns/{}/.*", wildcard_regex(namespace))))
        }),
        PrincipalMatch::TrustDomain(values) => principal_set(values, |trust_domain| {
            authenticated(regex(format!(
                "spiffe://{}/.*",
                wildcard_regex(trust_domain)
            )))
        }),
        PrincipalMatch::SourceIp(values) => principal_set(values, |cidr| {
            principal_id(principal::Identifier::DirectRemoteIp(cidr_range(cidr)))
        }),
        PrincipalMatch::RemoteIp(values) => principal_set(values, |cidr| {
            principal_id(principal::Identifier::RemoteIp(cidr_range(cidr)))
        }),
        PrincipalMatch::Header { name, values } => principal_set(values, |pattern| {
            principal_id(principal::Identifier::Header(header_matcher(
                name, pattern, false,
            )))
        }),
        PrincipalMatch::Authn { key, values } => principal_set(values, |pattern| {
            metadata(
                vec![key.to_string()],
                value_matcher::MatchPattern::StringMatch(string_matcher(pattern, false)),
            )
        }),
        PrincipalMatch::Claim { path, values } => principal_set(values, |pattern| {
            let mut keys = vec![REQUEST_CLAIMS.to_string()];
            keys.extend(path.iter().cloned());
            metadata(
                keys,
                value_matcher::MatchPattern::ListMatch(Box::new(ListMatcher {
                    match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(
                        ValueMatcher {
                            match_pattern: Some(value_matcher::MatchPattern::StringMatch(
                                string_matcher(pattern, false),
                            )),
                        },
                    ))),
                })),
            )
        }),
    }
}

/// A principal on the JWT filter's `istio_authn` metadata at `keys`.
fn metadata(keys: Vec<String>, value: value_matcher::MatchPattern) -> Principal {
    let matcher = MetadataMatcher {
        filter: ISTIO_AUTHN_METADATA.to_string(),
        path: keys
            .into_iter()
            .map(|key| metadata_matcher::PathSegment {
                segment: Some(metadata_matcher::path_segment::Segment::Key(key)),
            })
            .collect(),
        value: Some(ValueMatcher {
            match_pattern: Some(value),
        }),
        invert: false,
    };
    // The contract names `metadata` (what istiod sends); Envoy deprecates it for
    // `sourced_metadata`, which the proxy does not read.
    #[allow(deprecated)]
    principal_id(principal::Identifier::Metadata(matcher))
}

/// The `:authority` matcher of one host, case-insensitive, as istiod's `HostMatcher`. An
/// exact host matches only that exact string: `h` does not match `h:8080` (Istio documents
/// this and recommends `hosts: ["h", "h:*"]`; matching the port too would let an ALLOW
/// policy allow, and a `notHosts` exclude, more than in Istio).
fn host_matcher(pattern: &Pattern) -> HeaderMatcher {
    header_matcher(":authority", pattern, true)
}

/// istiod's header matcher: `*` is a presence match, the other forms a string match.
fn header_matcher(name: &str, pattern: &Pattern, ignore_case: bool) -> HeaderMatcher {
    let specifier = match pattern {
        Pattern::Present => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        other => {
            header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(other, ignore_case))
        }
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

/// istiod's string matcher: `*` (present) is the regex `.+`.
fn string_matcher(pattern: &Pattern, ignore_case: bool) -> StringMatcher {
    match pattern {
        Pattern::Exact(value) => exact(value, ignore_case),
        Pattern::Prefix(value) => matcher(
            string_matcher::MatchPattern::Prefix(value.clone()),
            ignore_case,
        ),
        Pattern::Suffix(value) => matcher(
            string_matcher::MatchPattern::Suffix(value.clone()),
            ignore_case,
        ),
        Pattern::Present => regex(".+".to_string()),
    }
}

/// A peer identity pattern: exact and prefix on `spiffe://<value>`, suffix on the value
/// itself, `*` any authenticated peer.
fn spiffe_matcher(pattern: &Pattern) -> StringMatcher {
    match pattern {
        Pattern::Exact(value) => exact(&format!("spiffe://{value}"), false),
        Pattern::Prefix(value) => matcher(
            string_matcher::MatchPattern::Prefix(format!("spiffe://{value}")),
            false,
        ),
        Pattern::Suffix(_) | Pattern::Present => string_matcher(pattern, false),
    }
}

fn exact(value: &str, ignore_case: bool) -> StringMatcher {
    matcher(
        string_matcher::MatchPattern::Exact(value.to_string()),
        ignore_case,
    )
}

fn matcher(pattern: string_matcher::MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        ignore_case,
        match_pattern: Some(pattern),
    }
}

fn regex(regex: String) -> StringMatcher {
    matcher(
        string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex,
            ..Default::default()
        }),
        false,
    )
}

/// A value whose every `*` matches any text, as a regex (istiod replaces `*` with `.*`); the
/// other characters match literally.
fn wildcard_regex(value: &str) -> String {
    value
        .split('*')
        .map(escape_regex)
        .collect::<Vec<_>>()
        .join(".*")
}

/// Escapes the characters RE2 treats specially outside a character class (a Kubernetes
/// namespace name has none, so istiod's output is unchanged).
fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn cidr_range(cidr: &Cidr) -> CidrRange {
    CidrRange {
        address_prefix: cidr.address.to_string(),
        prefix_len: Some(UInt32Value {
            value: cidr.prefix_len,
        }),
    }
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
