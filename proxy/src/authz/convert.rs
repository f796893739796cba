//! Envoy RBAC filter configs (HTTP and network) → `Rbac`, rejecting what the engine cannot evaluate.
//!
//! ```text
//!  http RBAC { rules, rules_stat_prefix } │ network RBAC { rules, stat_prefix }
//!    rules { action ALLOW|DENY|LOG, policies } ─► Rbac (policies sorted by name)
//!    rejected, naming the field: shadow_rules, matcher, shadow_matcher, audit_logging_options,
//!    CEL conditions, sourced_metadata, filter_state, custom matchers, delay_deny, ...
//!  absent rules: Envoy enforces nothing ─► a LOG filter without policies
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use prost::Message;
use weft_xds::contract::URI_TEMPLATE_MATCHER_TYPE_URL;

use super::metadata::{DoubleMatch, ISTIO_AUTHN, MetadataKey, MetadataMatch, ValueMatch};
use super::{Action, Cidr, Permission, Policy, Principal, Rbac, UriTemplate};
use crate::config::matcher::{header_match, string_match};
use crate::config::{Reason, StringMatch, invalid, reject_leftover, reject_set};

impl TryFrom<http_rbac::Rbac> for Rbac {
    type Error = Reason;

    fn try_from(mut r: http_rbac::Rbac) -> Result<Self, Reason> {
        // Statistics only.
        r.rules_stat_prefix.clear();
        r.shadow_rules_stat_prefix.clear();
        r.track_per_rule_stats = false;
        reject_set!(r, shadow_rules, matcher, shadow_matcher);
        let rules = r.rules.take();
        reject_leftover(&r, "RBAC")?;
        rules_of(rules)
    }
}

impl TryFrom<net_rbac::Rbac> for Rbac {
    type Error = Reason;

    fn try_from(mut r: net_rbac::Rbac) -> Result<Self, Reason> {
        r.stat_prefix.clear();
        r.shadow_rules_stat_prefix.clear();
        reject_set!(
            r,
            shadow_rules,
            matcher,
            shadow_matcher,
            delay_deny,
            enforcement_type
        );
        let rules = r.rules.take();
        reject_leftover(&r, "network RBAC")?;
        rules_of(rules)
    }
}

fn rules_of(rules: Option<rbac::Rbac>) -> Result<Rbac, Reason> {
    let Some(mut rules) = rules else {
        return Ok(Rbac {
            action: Action::Log,
            policies: Vec::new(),
        });
    };
    if rules.audit_logging_options.is_some() {
        return Err(Reason::Unsupported("rules.audit_logging_options".into()));
    }
    let action = match rbac::rbac::Action::try_from(rules.action) {
        Ok(rbac::rbac::Action::Allow) => Action::Allow,
        Ok(rbac::rbac::Action::Deny) => Action::Deny,
        Ok(rbac::rbac::Action::Log) => Action::Log,
        Err(_) => {
            return Err(Reason::UnsupportedValue {
                field: "rules.action",
                value: rules.action.to_string(),
            });
        }
    };
    let mut named: Vec<(String, rbac::Policy)> =
        std::mem::take(&mut rules.policies).into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut policies = Vec::with_capacity(named.len());
    for (name, p) in named {
        let path = format!("rules.policies[{name:?}]");
        policies.push((Arc::from(name), policy(&path, p)?));
    }
    Ok(Rbac { action, policies })
}

fn policy(path: &str, mut p: rbac::Policy) -> Result<Policy, Reason> {
    if p.condition.is_some() || p.checked_condition.is_some() || p.cel_config.is_some() {
        return Err(Reason::Unsupported(format!(
            "{path}.condition (CEL expressions)"
        )));
    }
    let permissions = std::mem::take(&mut p.permissions);
    let principals = std::mem::take(&mut p.principals);
    reject_leftover(&p, "policy").map_err(|r| r.within(path))?;
    if permissions.is_empty() {
        return Err(invalid(
            format!("{path}.permissions"),
            "at least one permission is required",
        ));
    }
    if principals.is_empty() {
        return Err(invalid(
            format!("{path}.principals"),
            "at least one principal is required",
        ));
    }
    Ok(Policy {
        permissions: permissions
            .into_iter()
            .enumerate()
            .map(|(i, p)| permission(&format!("{path}.permissions[{i}]"), p))
            .collect::<Result<_, _>>()?,
        principals: principals
            .into_iter()
            .enumerate()
            .map(|(i, p)| principal(&format!("{path}.principals[{i}]"), p))
            .collect::<Result<_, _>>()?,
    })
}

// `metadata` and `source_ip` are deprecated in Envoy but still what istiod sends.
#[allow(deprecated)]
fn permission(path: &str, p: rbac::Permission) -> Result<Permission, Reason> {
    use rbac::permission::Rule as R;
    let field = |name: &str| format!("{path}.{name}");
    let set = |name: &str, rules: Vec<rbac::Permission>| -> Result<Vec<Permission>, Reason> {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, p)| permission(&format!("{path}.{name}.rules[{i}]"), p))
            .collect()
    };
    Ok(match p.rule {
        None => return Err(invalid(path, "a permission rule is required")),
        Some(R::Any(true)) => Permission::Any,
        Some(R::Any(false)) => return Err(invalid(field("any"), "must be true")),
        Some(R::AndRules(s)) => Permission::And(set("and_rules", s.rules)?),
        Some(R::OrRules(s)) => Permission::Or(set("or_rules", s.rules)?),
        Some(R::NotRule(p)) => Permission::Not(Box::new(permission(&field("not_rule"), *p)?)),
        Some(R::Header(h)) => {
            Permission::Header(header_match(h).map_err(|r| r.within(&field("header")))?)
        }
        Some(R::UrlPath(m)) => Permission::UrlPath(path_matcher(&field("url_path"), m)?),
        Some(R::UriTemplate(t)) => {
            Permission::UriTemplate(uri_template(&field("uri_template"), t)?)
        }
        Some(R::DestinationIp(c)) => Permission::DestinationIp(cidr(&field("destination_ip"), c)?),
        Some(R::DestinationPort(port)) => {
            Permission::DestinationPort(u16::try_from(port).map_err(|_| {
                invalid(field("destination_port"), format!("{port} is out of range"))
            })?)
        }
        Some(R::DestinationPortRange(r)) => {
            let f = field("destination_port_range");
            if !(0..=65536).contains(&r.start) || !(0..=65536).contains(&r.end) {
                return Err(invalid(f, "start and end must be within [0, 65536]"));
            }
            if r.start >= r.end {
                return Err(invalid(f, "start must be less than end"));
            }
            Permission::DestinationPortRange {
                start: u16::try_from(r.start).map_err(|_| invalid(&f, "start is out of range"))?,
                end: u32::try_from(r.end).map_err(|_| invalid(&f, "end is out of range"))?,
            }
        }
        Some(R::Metadata(m)) => Permission::Metadata(metadata(&field("metadata"), m)?),
        Some(R::RequestedServerName(m)) => Permission::RequestedServerName(
            string_match("requested_server_name", m).map_err(|r| r.within(path))?,
        ),
        Some(R::Matcher(_)) => return Err(Reason::Unsupported(field("matcher"))),
        Some(R::SourcedMetadata(_)) => return Err(Reason::Unsupported(field("sourced_metadata"))),
    })
}

#[allow(deprecated)]
fn principal(path: &str, p: rbac::Principal) -> Result<Principal, Reason> {
    use rbac::principal::Identifier as I;
    let field = |name: &str| format!("{path}.{name}");
    let set = |name: &str, ids: Vec<rbac::Principal>| -> Result<Vec<Principal>, Reason> {
        ids.into_iter()
            .enumerate()
            .map(|(i, p)| principal(&format!("{path}.{name}.ids[{i}]"), p))
            .collect()
    };
    Ok(match p.identifier {
        None => return Err(invalid(path, "a principal identifier is required")),
        Some(I::Any(true)) => Principal::Any,
        Some(I::Any(false)) => return Err(invalid(field("any"), "must be true")),
        Some(I::AndIds(s)) => Principal::And(set("and_ids", s.ids)?),
        Some(I::OrIds(s)) => Principal::Or(set("or_ids", s.ids)?),
        Some(I::NotId(p)) => Principal::Not(Box::new(principal(&field("not_id"), *p)?)),
        Some(I::Authenticated(a)) => Principal::Authenticated(
            a.principal_name
                .map(|m| string_match("principal_name", m))
                .transpose()
                .map_err(|r| r.within(&field("authenticated")))?,
        ),
        Some(I::SourceIp(c)) => Principal::SourceIp(cidr(&field("source_ip"), c)?),
        Some(I::DirectRemoteIp(c)) => {
            Principal::DirectRemoteIp(cidr(&field("direct_remote_ip"), c)?)
        }
        Some(I::RemoteIp(c)) => Principal::RemoteIp(cidr(&field("remote_ip"), c)?),
        Some(I::Header(h)) => {
            Principal::Header(header_match(h).map_err(|r| r.within(&field("header")))?)
        }
        Some(I::UrlPath(m)) => Principal::UrlPath(path_matcher(&field("url_path"), m)?),
        Some(I::Metadata(m)) => Principal::Metadata(metadata(&field("metadata"), m)?),
        Some(I::FilterState(_)) => return Err(Reason::Unsupported(field("filter_state"))),
        Some(I::SourcedMetadata(_)) => return Err(Reason::Unsupported(field("sourced_metadata"))),
        Some(I::Custom(_)) => return Err(Reason::Unsupported(field("custom"))),
    })
}

fn path_matcher(field: &str, m: matcher::PathMatcher) -> Result<StringMatch, Reason> {
    match m.rule {
        Some(matcher::path_matcher::Rule::Path(s)) => {
            string_match("path", s).map_err(|r| r.within(field))
        }
        None => Err(invalid(format!("{field}.path"), "is required")),
    }
}

fn uri_template(field: &str, t: core::TypedExtensionConfig) -> Result<UriTemplate, Reason> {
    let Some(any) = t.typed_config else {
        return Err(invalid(format!("{field}.typed_config"), "is required"));
    };
    if any.type_url != URI_TEMPLATE_MATCHER_TYPE_URL {
        return Err(Reason::Unsupported(format!(
            "{field} extension {:?} ({})",
            t.name, any.type_url
        )));
    }
    let config =
        UriTemplateMatchConfig::decode(any.value.as_slice()).map_err(|e| Reason::Decode {
            type_url: any.type_url.clone(),
            error: format!("{field}: {e}"),
        })?;
    UriTemplate::parse(&config.path_template).map_err(|e| {
        invalid(
            format!("{field}.path_template"),
            format!("{:?}: {e}", config.path_template),
        )
    })
}

pub(crate) fn cidr(field: &str, c: core::CidrRange) -> Result<Cidr, Reason> {
    let addr: IpAddr = c.address_prefix.parse().map_err(|_| {
        invalid(
            format!("{field}.address_prefix"),
            format!("{:?} is not an IP address", c.address_prefix),
        )
    })?;
    // Envoy: an unset prefix length is 0.
    let len = c.prefix_len.map_or(0, |l| l.value);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(invalid(
            format!("{field}.prefix_len"),
            format!("{len} is longer than the address ({max} bits)"),
        ));
    }
    Ok(Cidr {
        addr,
        len: len as u8,
    })
}

fn metadata(field: &str, m: matcher::MetadataMatcher) -> Result<MetadataMatch, Reason> {
    if m.filter != ISTIO_AUTHN {
        return Err(Reason::Unsupported(format!(
            "{field}.filter {:?} (only {ISTIO_AUTHN} metadata is produced by weft-proxy)",
            m.filter
        )));
    }
    let mut keys = Vec::with_capacity(m.path.len());
    for (i, segment) in m.path.into_iter().enumerate() {
        match segment.segment {
            Some(matcher::metadata_matcher::path_segment::Segment::Key(k)) => keys.push(k),
            None => return Err(invalid(format!("{field}.path[{i}].key"), "is required")),
        }
    }
    let Some(first) = keys.first() else {
        return Err(invalid(
            format!("{field}.path"),
            "at least one key is required",
        ));
    };
    let Some(key) = MetadataKey::parse(first) else {
        return Err(Reason::Unsupported(format!(
            "{field}.path[0].key {first:?} (istio_authn has request.auth.principal, \
             request.auth.audiences, request.auth.presenter, request.auth.claims)"
        )));
    };
    if key != MetadataKey::Claims && keys.len() > 1 {
        return Err(invalid(
            format!("{field}.path"),
            format!("{first} has no nested keys"),
        ));
    }
    let value = match m.value {
        Some(v) => value_match(&format!("{field}.value"), v)?,
        None => return Err(invalid(format!("{field}.value"), "is required")),
    };
    Ok(MetadataMatch {
        key,
        claim_path: keys.split_off(1),
        value,
        invert: m.invert,
    })
}

fn value_match(field: &str, v: matcher::ValueMatcher) -> Result<ValueMatch, Reason> {
    use matcher::value_matcher::MatchPattern as M;
    Ok(match v.match_pattern {
        None => return Err(invalid(field, "a match pattern is required")),
        Some(M::NullMatch(_)) => ValueMatch::Null,
        Some(M::BoolMatch(b)) => ValueMatch::Bool(b),
        Some(M::PresentMatch(p)) => ValueMatch::Present(p),
        Some(M::StringMatch(s)) => {
            ValueMatch::String(string_match("string_match", s).map_err(|r| r.within(field))?)
        }
        Some(M::DoubleMatch(d)) => ValueMatch::Double(match d.match_pattern {
            Some(matcher::double_matcher::MatchPattern::Range(r)) => DoubleMatch::Range {
                start: r.start,
                end: r.end,
            },
            Some(matcher::double_matcher::MatchPattern::Exact(x)) => DoubleMatch::Exact(x),
            None => return Err(invalid(format!("{field}.double_match"), "is required")),
        }),
        Some(M::ListMatch(l)) => match l.match_pattern {
            Some(matcher::list_matcher::MatchPattern::OneOf(inner)) => ValueMatch::ListOneOf(
                Box::new(value_match(&format!("{field}.list_match.one_of"), *inner)?),
            ),
            None => return Err(invalid(format!("{field}.list_match.one_of"), "is required")),
        },
        Some(M::OrMatch(o)) => ValueMatch::Or(
            o.value_matchers
                .into_iter()
                .enumerate()
                .map(|(i, v)| value_match(&format!("{field}.or_match.value_matchers[{i}]"), v))
                .collect::<Result<_, _>>()?,
        ),
    })
}
