//! Constructors of the Envoy RBAC protos the tests expect, named after the YAML of istiod's
//! golden files (`exact`, `prefix`, `or_rules` → `p_or`, `or_ids` → `i_or`, …).

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TypedExtensionConfig};
use envoy_types::pb::envoy::config::rbac::v3::{Permission, Principal, permission, principal};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, PathMatcher, RegexMatcher, StringMatcher, ValueMatcher,
    list_matcher, metadata_matcher, path_matcher, string_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;

pub fn exact(v: &str) -> StringMatcher {
    sm(string_matcher::MatchPattern::Exact(v.into()), false)
}
pub fn prefix(v: &str) -> StringMatcher {
    sm(string_matcher::MatchPattern::Prefix(v.into()), false)
}
pub fn suffix(v: &str) -> StringMatcher {
    sm(string_matcher::MatchPattern::Suffix(v.into()), false)
}
pub fn regex(v: &str) -> StringMatcher {
    sm(
        string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: v.into(),
            ..Default::default()
        }),
        false,
    )
}
pub fn sm(pattern: string_matcher::MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        ignore_case,
        match_pattern: Some(pattern),
    }
}
pub fn ignore_case(mut m: StringMatcher) -> StringMatcher {
    m.ignore_case = true;
    m
}
/// The four forms of a golden list: `x`, `x-prefix-*`, `*-suffix-x`, `*`.
pub fn forms(e: &str, p: &str, s: &str) -> Vec<StringMatcher> {
    vec![exact(e), prefix(p), suffix(s), regex(".+")]
}

pub fn header(name: &str, m: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)),
        ..Default::default()
    }
}
pub fn present(name: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
        ..Default::default()
    }
}
pub fn cidr(address: &str, len: u32) -> CidrRange {
    CidrRange {
        address_prefix: address.into(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

pub fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}
pub fn p_or(rules: Vec<Permission>) -> Permission {
    perm(permission::Rule::OrRules(permission::Set { rules }))
}
pub fn p_and(rules: Vec<Permission>) -> Permission {
    perm(permission::Rule::AndRules(permission::Set { rules }))
}
pub fn p_not(rule: Permission) -> Permission {
    perm(permission::Rule::NotRule(Box::new(rule)))
}
pub fn p_any() -> Permission {
    perm(permission::Rule::Any(true))
}
pub fn p_header(h: HeaderMatcher) -> Permission {
    perm(permission::Rule::Header(h))
}
pub fn p_path(m: StringMatcher) -> Permission {
    perm(permission::Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(m)),
    }))
}
pub fn p_template(template: &str) -> Permission {
    perm(permission::Rule::UriTemplate(TypedExtensionConfig {
        name: "envoy.path.match.uri_template.uri_template_matcher".into(),
        typed_config: Some(crate::xds::pack(&UriTemplateMatchConfig {
            path_template: template.into(),
        })),
    }))
}
pub fn p_port(port: u32) -> Permission {
    perm(permission::Rule::DestinationPort(port))
}
pub fn p_ip(address: &str, len: u32) -> Permission {
    perm(permission::Rule::DestinationIp(cidr(address, len)))
}
pub fn p_sni(m: StringMatcher) -> Permission {
    perm(permission::Rule::RequestedServerName(m))
}

pub fn id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}
pub fn i_or(ids: Vec<Principal>) -> Principal {
    id(principal::Identifier::OrIds(principal::Set { ids }))
}
pub fn i_and(ids: Vec<Principal>) -> Principal {
    id(principal::Identifier::AndIds(principal::Set { ids }))
}
pub fn i_not(principal: Principal) -> Principal {
    id(principal::Identifier::NotId(Box::new(principal)))
}
pub fn i_any() -> Principal {
    id(principal::Identifier::Any(true))
}
pub fn i_auth(m: StringMatcher) -> Principal {
    id(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}
pub fn i_direct(address: &str, len: u32) -> Principal {
    id(principal::Identifier::DirectRemoteIp(cidr(address, len)))
}
pub fn i_remote(address: &str, len: u32) -> Principal {
    id(principal::Identifier::RemoteIp(cidr(address, len)))
}
pub fn i_header(h: HeaderMatcher) -> Principal {
    id(principal::Identifier::Header(h))
}
pub fn metadata_path(keys: &[&str]) -> Vec<metadata_matcher::PathSegment> {
    keys.iter()
        .map(|key| metadata_matcher::PathSegment {
            segment: Some(metadata_matcher::path_segment::Segment::Key(
                key.to_string(),
            )),
        })
        .collect()
}
#[allow(deprecated)]
pub fn i_metadata(keys: &[&str], value: value_matcher::MatchPattern) -> Principal {
    id(principal::Identifier::Metadata(MetadataMatcher {
        filter: "istio_authn".into(),
        path: metadata_path(keys),
        value: Some(ValueMatcher {
            match_pattern: Some(value),
        }),
        invert: false,
    }))
}
pub fn i_authn(key: &str, m: StringMatcher) -> Principal {
    i_metadata(&[key], value_matcher::MatchPattern::StringMatch(m))
}
pub fn i_claim(keys: &[&str], m: StringMatcher) -> Principal {
    i_metadata(
        keys,
        value_matcher::MatchPattern::ListMatch(Box::new(ListMatcher {
            match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(ValueMatcher {
                match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
            }))),
        })),
    )
}

/// `or(values)` and `not(or(notValues))` of a golden value list pair.
pub fn p_pair(values: Vec<Permission>, not_values: Vec<Permission>) -> [Permission; 2] {
    [p_or(values), p_not(p_or(not_values))]
}
pub fn i_pair(values: Vec<Principal>, not_values: Vec<Principal>) -> [Principal; 2] {
    [i_or(values), i_not(i_or(not_values))]
}
