//! Builders of Envoy RBAC protos for the authz tests, shaped as istiod generates them.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use envoy_types::pb::envoy::r#type::matcher::v3 as m;
use envoy_types::pb::google::protobuf::UInt32Value;

use rbac::permission::Rule as R;
use rbac::principal::Identifier as I;

pub fn exact(s: &str) -> m::StringMatcher {
    m::StringMatcher {
        match_pattern: Some(m::string_matcher::MatchPattern::Exact(s.into())),
        ignore_case: false,
    }
}

pub fn prefix(s: &str) -> m::StringMatcher {
    m::StringMatcher {
        match_pattern: Some(m::string_matcher::MatchPattern::Prefix(s.into())),
        ignore_case: false,
    }
}

pub fn regex(s: &str) -> m::StringMatcher {
    m::StringMatcher {
        match_pattern: Some(m::string_matcher::MatchPattern::SafeRegex(
            m::RegexMatcher {
                regex: s.into(),
                ..Default::default()
            },
        )),
        ignore_case: false,
    }
}

pub fn perm(rule: R) -> rbac::Permission {
    rbac::Permission { rule: Some(rule) }
}

pub fn id(identifier: I) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(identifier),
    }
}

pub fn header(name: &str, matcher: m::StringMatcher) -> rt::HeaderMatcher {
    rt::HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(
            matcher,
        )),
        ..Default::default()
    }
}

pub fn header_perm(name: &str, matcher: m::StringMatcher) -> rbac::Permission {
    perm(R::Header(header(name, matcher)))
}

pub fn path_perm(matcher: m::StringMatcher) -> rbac::Permission {
    perm(R::UrlPath(m::PathMatcher {
        rule: Some(m::path_matcher::Rule::Path(matcher)),
    }))
}

pub fn or_perms(rules: Vec<rbac::Permission>) -> rbac::Permission {
    perm(R::OrRules(rbac::permission::Set { rules }))
}

pub fn and_perms(rules: Vec<rbac::Permission>) -> rbac::Permission {
    perm(R::AndRules(rbac::permission::Set { rules }))
}

pub fn cidr(addr: &str, len: u32) -> core::CidrRange {
    core::CidrRange {
        address_prefix: addr.into(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

pub fn authenticated(matcher: m::StringMatcher) -> rbac::Principal {
    id(I::Authenticated(rbac::principal::Authenticated {
        principal_name: Some(matcher),
    }))
}

pub fn or_ids(ids: Vec<rbac::Principal>) -> rbac::Principal {
    id(I::OrIds(rbac::principal::Set { ids }))
}

/// `metadata { filter: istio_authn, path: keys, value }`.
pub fn authn_metadata(keys: &[&str], value: m::value_matcher::MatchPattern) -> m::MetadataMatcher {
    m::MetadataMatcher {
        filter: "istio_authn".into(),
        path: keys
            .iter()
            .map(|k| m::metadata_matcher::PathSegment {
                segment: Some(m::metadata_matcher::path_segment::Segment::Key(
                    k.to_string(),
                )),
            })
            .collect(),
        value: Some(m::ValueMatcher {
            match_pattern: Some(value),
        }),
        invert: false,
    }
}

pub fn string_value(matcher: m::StringMatcher) -> m::value_matcher::MatchPattern {
    m::value_matcher::MatchPattern::StringMatch(matcher)
}

/// `list_match.one_of.string_match` (istiod's claims matcher).
pub fn list_of_string(matcher: m::StringMatcher) -> m::value_matcher::MatchPattern {
    m::value_matcher::MatchPattern::ListMatch(Box::new(m::ListMatcher {
        match_pattern: Some(m::list_matcher::MatchPattern::OneOf(Box::new(
            m::ValueMatcher {
                match_pattern: Some(string_value(matcher)),
            },
        ))),
    }))
}

pub fn policy(
    permissions: Vec<rbac::Permission>,
    principals: Vec<rbac::Principal>,
) -> rbac::Policy {
    rbac::Policy {
        permissions,
        principals,
        ..Default::default()
    }
}

pub fn any_perm() -> rbac::Permission {
    perm(R::Any(true))
}

pub fn any_id() -> rbac::Principal {
    id(I::Any(true))
}

/// An HTTP RBAC filter config with `action` and named policies.
pub fn http_rbac(
    action: rbac::rbac::Action,
    policies: Vec<(&str, rbac::Policy)>,
) -> http_rbac::Rbac {
    http_rbac::Rbac {
        rules: Some(rbac::Rbac {
            action: action as i32,
            policies: policies
                .into_iter()
                .map(|(n, p)| (n.to_string(), p))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
