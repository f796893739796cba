//! Weft's `ratelimit.weft.io/v1alpha1` `LocalRateLimit`: token buckets a workload's sidecar
//! applies to its own inbound HTTP requests (a workload bucket, and first-match rules with
//! their own buckets, optionally one per value of a header). Istio needs an EnvoyFilter for it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::duration::Duration;
use crate::networking::{PolicyWorkloadSelector, StringMatch};
use crate::validation::{
    FieldError, Path, Validate, check, is_dns1123_label, validate_match_header_name, validate_port,
};

/// The smallest fill interval (`per`), as Envoy's local rate limit filter requires.
pub const MIN_FILL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// The default of `maxKeys`: how many per-header-value buckets a rule keeps.
pub const DEFAULT_MAX_KEYS: u32 = 1000;

/// `spec` of a `LocalRateLimit`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimit {
    /// The workloads whose inbound requests are limited; every workload of the namespace when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicyWorkloadSelector>,
    /// The workload's inbound ports the limits apply to; every HTTP inbound port when empty.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64))]
    pub ports: Vec<u32>,
    /// One bucket for every request of the workload (per proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<TokenBucket>,
    /// Rules with their own buckets; the first whose match holds applies (and `limit` too).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64))]
    pub rules: Vec<RateLimitRule>,
}

/// A token bucket: `requests` tokens added every `per`, at most `burst` kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenBucket {
    /// Tokens added per `per` (at least 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub requests: u32,
    /// The fill interval (at least 50ms).
    #[serde(default)]
    pub per: Duration,
    /// The bucket's size (default `requests`; at least `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl TokenBucket {
    /// The bucket's size: `burst`, else `requests`.
    pub fn max_tokens(&self) -> u32 {
        self.burst.unwrap_or(self.requests)
    }
}

/// One rule: the requests it matches and their bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRule {
    /// The rule's name, unique in the list (a DNS label).
    #[serde(default)]
    pub name: String,
    /// The requests the rule applies to; every request when empty.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<RateLimitMatch>,
    /// The rule's bucket.
    #[serde(default)]
    pub limit: TokenBucket,
    /// A bucket per distinct value of this request header (requests without it share one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_header_value: Option<String>,
    /// At most this many per-value buckets (default 1000); the least recently used goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_keys: Option<u32>,
}

impl RateLimitRule {
    /// `maxKeys`, else [`DEFAULT_MAX_KEYS`].
    pub fn max_keys(&self) -> u32 {
        self.max_keys.unwrap_or(DEFAULT_MAX_KEYS)
    }

    /// True when the rule matches every request.
    pub fn matches_all(&self) -> bool {
        self.match_.as_ref().is_none_or(RateLimitMatch::is_empty)
    }
}

/// Conditions on a request; all given ones must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitMatch {
    /// The path (without the query string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// The method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Request headers, by lower-case name (`{}`: present).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, StringMatch>,
}

impl RateLimitMatch {
    /// True when no condition is given.
    pub fn is_empty(&self) -> bool {
        self.uri.is_none() && self.method.is_none() && self.headers.is_empty()
    }
}

fn validate_bucket(path: &Path, errors: &mut Vec<FieldError>, bucket: &TokenBucket) {
    if bucket.requests == 0 {
        path.field("requests").push(errors, "must be at least 1");
    }
    let per = bucket.per.as_std();
    if per < MIN_FILL_INTERVAL {
        path.field("per").push(errors, "must be at least 50ms");
    } else if !per.subsec_nanos().is_multiple_of(1_000_000) {
        path.field("per")
            .push(errors, "only durations to ms precision are supported");
    }
    if let Some(burst) = bucket.burst
        && burst < bucket.requests
    {
        path.field("burst").push(
            errors,
            format!("must be at least requests ({})", bucket.requests),
        );
    }
}

impl Validate for LocalRateLimit {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(selector) = &self.selector {
            selector.validate(&path.field("selector"), errors);
        }
        for (i, port) in self.ports.iter().enumerate() {
            check(&path.field("ports").index(i), errors, validate_port(*port));
        }
        if self.limit.is_none() && self.rules.is_empty() {
            path.push(errors, "at least one of limit or rules must be set");
        }
        if let Some(limit) = &self.limit {
            validate_bucket(&path.field("limit"), errors, limit);
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let p = path.field("rules").index(i);
            if !is_dns1123_label(&rule.name) {
                p.field("name").push(
                    errors,
                    format!(
                        "{:?} is not a DNS-1123 label (lower case letters, digits and '-', at most 63)",
                        rule.name
                    ),
                );
            } else if self.rules[..i].iter().any(|r| r.name == rule.name) {
                p.field("name")
                    .push(errors, format!("duplicate rule name {:?}", rule.name));
            }
            if let Some(m) = &rule.match_ {
                let mp = p.field("match");
                if let Some(uri) = &m.uri {
                    uri.validate_required(&mp.field("uri"), errors);
                }
                if let Some(method) = &m.method {
                    method.validate_required(&mp.field("method"), errors);
                }
                for (name, value) in &m.headers {
                    let hp = mp.field("headers").key(name);
                    check(&hp, errors, validate_match_header_name(name));
                    value.validate_optional(&hp, errors);
                }
            }
            validate_bucket(&p.field("limit"), errors, &rule.limit);
            if let Some(header) = &rule.per_header_value {
                check(
                    &p.field("perHeaderValue"),
                    errors,
                    validate_match_header_name(header),
                );
            }
            if rule.max_keys == Some(0) {
                p.field("maxKeys").push(errors, "must be at least 1");
            }
            if rule.max_keys.is_some() && rule.per_header_value.is_none() {
                p.field("maxKeys")
                    .push(errors, "only applies with perHeaderValue");
            }
        }
    }
}

#[cfg(test)]
mod tests;
