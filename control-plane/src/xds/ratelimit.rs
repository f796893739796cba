//! LocalRateLimit → Envoy's local rate limit HTTP filters on a workload's inbound connection
//! manager. Pure functions of `(Model, Proxy, port)`; `listeners.rs` and `capture/inbound.rs`
//! put them after the security filters, before the router:
//!
//! ```text
//! virtualInbound HCM http_filters: [jwt_authn?] [rbac*] [local_ratelimit: rule]* [local_ratelimit: limit]? router
//!   per LocalRateLimit selecting the workload on port P, in namespace/name order:
//!   rule i  → LocalRateLimit { stat_prefix, no token_bucket,
//!               rate_limits: [{actions: [header_value_match(rule j, expect_match: false) → (weft.unmatched, j)]  for j < i
//!                                       header_value_match(rule i) │ generic_key  → (weft.rule, i)
//!                                       request_headers(perHeaderValue, skip_if_absent)  → (header, value)]}]
//!               descriptors: [(unmatched…, weft.rule=i, header=""), (unmatched…, weft.rule=i)] with the rule's bucket,
//!               max_dynamic_descriptors: maxKeys }
//!   limit   → LocalRateLimit { stat_prefix, token_bucket }
//!   both    → status 429, filter_enabled/enforced 100 %, response_headers_to_add x-envoy-ratelimited: true
//! ```
//!
//! One filter per rule keeps each rule's `maxKeys` its own (Envoy's `max_dynamic_descriptors`
//! is per filter) and first match wins through the `weft.unmatched` entries: a rule's
//! descriptor is produced only when no earlier rule matched. The rules' filters come before the
//! workload's, so a request a rule refuses takes no token of the workload's bucket. A rule's
//! `uri` is matched on `:path`, which carries the query string: an exact or regex `uri` is sent
//! as a `safe_regex` that also allows `?<query>` after it.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RateLimit, header_matcher, rate_limit,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    LocalRateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::{
    FractionalPercent, HttpStatus, StatusCode, TokenBucket, fractional_percent,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use weft_api::networking::StringMatch;
use weft_api::ratelimit::{RateLimitMatch, RateLimitRule, TokenBucket as Bucket};
use weft_xds::contract::{LOCAL_RATELIMIT, RATELIMIT_RULE_KEY, RATELIMIT_UNMATCHED_KEY};

use super::route_match::string_matcher;
use super::{Proxy, duration, pack};
use crate::model::Model;
use crate::model::ratelimit::LocalRateLimitEntry;

/// The header Envoy's local rate limit filter adds to the responses it refuses.
pub const RATE_LIMITED_HEADER: &str = "x-envoy-ratelimited";

/// The local rate limit filters of `proxy`'s inbound connection manager for its `port`, in
/// order (router excluded).
pub fn inbound_rate_limit_filters(model: &Model, proxy: &Proxy, port: u32) -> Vec<HttpFilter> {
    model
        .local_rate_limits_for(&proxy.namespace, &proxy.labels, port)
        .flat_map(filters_of)
        .collect()
}

/// The filters of one LocalRateLimit: a filter per rule that can apply, then the workload's.
fn filters_of(entry: &LocalRateLimitEntry) -> Vec<HttpFilter> {
    let prefix = format!(
        "weft_local_rate_limit.{}.{}",
        entry.key.namespace, entry.key.name
    );
    let mut filters = Vec::new();
    let rules = &entry.spec.rules;
    for (i, rule) in rules.iter().enumerate() {
        filters.push(filter(rule_config(
            &format!("{prefix}.{}", rule.name),
            &rules[..i],
            rule,
        )));
        if rule.matches_all() {
            // First match wins: the rules after it never apply (warned by the model).
            break;
        }
    }
    if let Some(limit) = &entry.spec.limit {
        filters.push(filter(LocalRateLimit {
            token_bucket: Some(token_bucket(limit)),
            ..base(&prefix)
        }));
    }
    filters
}

fn filter(config: LocalRateLimit) -> HttpFilter {
    HttpFilter {
        name: LOCAL_RATELIMIT.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(&config))),
        ..Default::default()
    }
}

/// What every filter carries: Envoy's refusal (429, `x-envoy-ratelimited: true`), always on.
fn base(stat_prefix: &str) -> LocalRateLimit {
    let all = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        }),
        runtime_key: String::new(),
    };
    LocalRateLimit {
        stat_prefix: stat_prefix.to_string(),
        status: Some(HttpStatus {
            code: StatusCode::TooManyRequests as i32,
        }),
        filter_enabled: Some(all()),
        filter_enforced: Some(all()),
        response_headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: RATE_LIMITED_HEADER.to_string(),
                value: "true".to_string(),
                ..Default::default()
            }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn token_bucket(bucket: &Bucket) -> TokenBucket {
    TokenBucket {
        max_tokens: bucket.max_tokens(),
        tokens_per_fill: Some(UInt32Value {
            value: bucket.requests,
        }),
        fill_interval: Some(duration(bucket.per.as_std())),
    }
}

fn entry(key: &str, value: &str) -> rate_limit_descriptor::Entry {
    rate_limit_descriptor::Entry {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// Rule `rule`'s filter, `earlier` being the rules before it.
fn rule_config(
    stat_prefix: &str,
    earlier: &[RateLimitRule],
    rule: &RateLimitRule,
) -> LocalRateLimit {
    use rate_limit::action::{ActionSpecifier, GenericKey, HeaderValueMatch, RequestHeaders};
    let mut actions = Vec::new();
    let mut entries = Vec::new();
    for previous in earlier {
        actions.push(ActionSpecifier::HeaderValueMatch(HeaderValueMatch {
            descriptor_key: RATELIMIT_UNMATCHED_KEY.to_string(),
            descriptor_value: previous.name.clone(),
            expect_match: Some(BoolValue { value: false }),
            headers: previous
                .match_
                .as_ref()
                .map(header_matchers)
                .unwrap_or_default(),
            ..Default::default()
        }));
        entries.push(entry(RATELIMIT_UNMATCHED_KEY, &previous.name));
    }
    let matchers = rule
        .match_
        .as_ref()
        .map(header_matchers)
        .unwrap_or_default();
    actions.push(if matchers.is_empty() {
        ActionSpecifier::GenericKey(GenericKey {
            descriptor_key: RATELIMIT_RULE_KEY.to_string(),
            descriptor_value: rule.name.clone(),
            ..Default::default()
        })
    } else {
        ActionSpecifier::HeaderValueMatch(HeaderValueMatch {
            descriptor_key: RATELIMIT_RULE_KEY.to_string(),
            descriptor_value: rule.name.clone(),
            expect_match: Some(BoolValue { value: true }),
            headers: matchers,
            ..Default::default()
        })
    });
    entries.push(entry(RATELIMIT_RULE_KEY, &rule.name));
    let bucket = Some(token_bucket(&rule.limit));
    let mut descriptors = Vec::new();
    let mut max_dynamic_descriptors = None;
    if let Some(header) = &rule.per_header_value {
        actions.push(ActionSpecifier::RequestHeaders(RequestHeaders {
            header_name: header.clone(),
            descriptor_key: header.clone(),
            skip_if_absent: true,
        }));
        let mut keyed = entries.clone();
        // An empty value: a bucket per distinct value (Envoy's wildcard descriptor).
        keyed.push(entry(header, ""));
        descriptors.push(LocalRateLimitDescriptor {
            entries: keyed,
            token_bucket: bucket,
            shadow_mode: false,
        });
        max_dynamic_descriptors = Some(UInt32Value {
            value: rule.max_keys(),
        });
    }
    // Without perHeaderValue, and for requests without the header: one shared bucket.
    descriptors.push(LocalRateLimitDescriptor {
        entries,
        token_bucket: bucket,
        shadow_mode: false,
    });
    LocalRateLimit {
        rate_limits: vec![RateLimit {
            actions: actions
                .into_iter()
                .map(|a| rate_limit::Action {
                    action_specifier: Some(a),
                })
                .collect(),
            ..Default::default()
        }],
        descriptors,
        max_dynamic_descriptors,
        ..base(stat_prefix)
    }
}

/// A rule's match as header matchers (all must hold): `:path`, `:method`, then the headers.
fn header_matchers(matching: &RateLimitMatch) -> Vec<HeaderMatcher> {
    let mut out = Vec::new();
    if let Some(uri) = &matching.uri {
        out.push(matcher(":path", path_matcher(uri)));
    }
    if let Some(method) = &matching.method {
        out.push(matcher(":method", string_matcher(method)));
    }
    for (name, value) in &matching.headers {
        out.push(matcher(name, string_matcher(value)));
    }
    out
}

fn matcher(name: &str, value: Option<StringMatcher>) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(match value {
            Some(m) => header_matcher::HeaderMatchSpecifier::StringMatch(m),
            None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        }),
        ..Default::default()
    }
}

/// The `:path` matcher of a `uri` match: `:path` carries the query, which Istio's `uri` does not
/// see, so an exact path or a regex may be followed by `?<query>`.
fn path_matcher(uri: &StringMatch) -> Option<StringMatcher> {
    const QUERY: &str = r"(\?.*)?";
    let regex = match uri {
        StringMatch::Exact(path) => format!("{}{QUERY}", regex::escape(path)),
        StringMatch::Regex(regex) if regex != "*" => format!("(?:{regex}){QUERY}"),
        other => return string_matcher(other),
    };
    Some(StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex,
            ..Default::default()
        })),
        ignore_case: false,
    })
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
