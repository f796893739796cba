//! `envoy.filters.http.local_ratelimit` (`LocalRateLimit`) → [`LocalRateLimit`], the token
//! buckets the data path checks before routing ([`crate::http::rate_limit`]).
//!
//! ```text
//!  LocalRateLimit { stat_prefix, status (429), filter_enabled/enforced (0 % │ 100 %),
//!                   response_headers_to_add (literal values), token_bucket ─► the default bucket,
//!                   always_consume_default_token_bucket (default true),
//!                   rate_limits [{actions: generic_key │ header_value_match │ request_headers}]
//!                     ─► request descriptors,
//!                   descriptors [{entries (value "" = one bucket per value), token_bucket}],
//!                   max_dynamic_descriptors (default 20) }
//!  anything else that changes behaviour ─► rejected naming the field
//! ```
//!
//! The buckets of a filter are kept across pushes while its config (the encoded `typed_config`)
//! stays the same: a conversion makes new buckets, then the store hands each converted
//! listener to [`BucketRegistry::adopt_into`], which swaps in the buckets of an identical
//! config still alive. So a push that does not change a limit does not refill its buckets, and
//! the chains and ports that carry the same filter share them.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3 as lrl;
use envoy_types::pb::envoy::r#type::v3 as ty;
use http::{HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;

use super::matcher::{header_match, header_ops};
use super::{HeaderMatch, Reason, invalid};
use crate::http::rate_limit::Buckets;

/// Envoy's default `max_dynamic_descriptors`.
pub const DEFAULT_MAX_DYNAMIC_DESCRIPTORS: u32 = 20;
/// Envoy's smallest fill interval.
pub const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// One local rate limit filter, converted once per push.
#[derive(Debug)]
pub struct LocalRateLimit {
    /// Observability only (kept for logs).
    pub stat_prefix: String,
    /// Whether it refuses requests at all (`filter_enabled` and `filter_enforced` 100 %; both
    /// 0 % by default, as Envoy: the filter then does nothing).
    pub enforced: bool,
    /// The refusal's status (`status`, default 429).
    pub status: StatusCode,
    /// Added to a refusal: (name, value, append).
    pub response_headers: Arc<[(HeaderName, HeaderValue, bool)]>,
    /// `token_bucket`: every request's bucket (none: only descriptors limit).
    pub default_bucket: Option<BucketSpec>,
    /// `always_consume_default_token_bucket`: the default bucket also for requests a descriptor
    /// matched.
    pub always_consume_default: bool,
    /// `rate_limits`: each entry's actions make one request descriptor (or none).
    pub rate_limits: Vec<Vec<Action>>,
    /// `descriptors`: the first one a request descriptor fully matches limits it.
    pub descriptors: Vec<Descriptor>,
    /// `max_dynamic_descriptors`: per wildcard descriptor, the per-value buckets kept.
    pub max_dynamic: u32,
    /// The buckets (run-time state), shared by identical configs.
    pub buckets: Arc<Buckets>,
    /// The encoded `typed_config`: identical configs share their buckets.
    pub config_key: Vec<u8>,
}

/// A token bucket's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
}

/// A rate limit action: one entry of a request descriptor.
#[derive(Debug)]
pub enum Action {
    /// `generic_key`: always `(key, value)`.
    GenericKey { key: String, value: String },
    /// `header_value_match`: `(key, value)` when all `headers` match (`expect_match`) or when
    /// they do not (`!expect_match`); else no descriptor.
    HeaderValueMatch {
        key: String,
        value: String,
        expect_match: bool,
        headers: Vec<HeaderMatch>,
    },
    /// `request_headers`: `(key, the header's value)`; an absent header gives no descriptor,
    /// or with `skip_if_absent` no entry.
    RequestHeaders {
        header: HeaderName,
        key: String,
        skip_if_absent: bool,
    },
}

/// A configured descriptor: its entries (`None`: any value, one bucket per value) and bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<(String, Option<String>)>,
    pub bucket: BucketSpec,
}

impl Descriptor {
    /// Whether it has a wildcard entry (a bucket per distinct value).
    pub fn is_dynamic(&self) -> bool {
        self.entries.iter().any(|(_, v)| v.is_none())
    }
}

/// The live buckets of the filter configs converted so far, by encoded config.
#[derive(Debug, Default)]
pub struct BucketRegistry(Mutex<HashMap<Vec<u8>, Weak<Buckets>>>);

impl BucketRegistry {
    /// Gives `limit` the buckets of an identical config still alive, else registers its own.
    pub fn adopt(&self, limit: &mut LocalRateLimit) {
        let mut map = self.0.lock();
        map.retain(|_, b| b.strong_count() > 0);
        match map.get(&limit.config_key).and_then(Weak::upgrade) {
            Some(live) => limit.buckets = live,
            None => {
                map.insert(limit.config_key.clone(), Arc::downgrade(&limit.buckets));
            }
        }
    }

    /// [`BucketRegistry::adopt`] for every local rate limit filter of a converted listener.
    pub fn adopt_into(&self, listener: &mut super::Listener) {
        for chain in &mut listener.chains {
            if let super::Network::Http(manager) = &mut chain.network {
                for filter in &mut manager.http_filters {
                    if let super::HttpFilter::LocalRateLimit(limit) = filter {
                        self.adopt(limit);
                    }
                }
            }
        }
    }
}

fn bucket(field: &str, b: ty::TokenBucket) -> Result<BucketSpec, Reason> {
    if b.max_tokens == 0 {
        return Err(invalid(format!("{field}.max_tokens"), "must be at least 1"));
    }
    let tokens_per_fill = b.tokens_per_fill.map_or(1, |v| v.value);
    if tokens_per_fill == 0 {
        return Err(invalid(
            format!("{field}.tokens_per_fill"),
            "must be at least 1",
        ));
    }
    let interval = b
        .fill_interval
        .ok_or_else(|| invalid(format!("{field}.fill_interval"), "is required"))?;
    let fill_interval = u64::try_from(interval.seconds)
        .ok()
        .zip(u32::try_from(interval.nanos).ok())
        .map(|(s, n)| Duration::new(s, n))
        .filter(|d| *d >= MIN_FILL_INTERVAL)
        .ok_or_else(|| invalid(format!("{field}.fill_interval"), "must be at least 50ms"))?;
    Ok(BucketSpec {
        max_tokens: b.max_tokens,
        tokens_per_fill,
        fill_interval,
    })
}

/// `Some(true)` for 100 %, `Some(false)` for 0 % (and unset, Envoy's default); other shares
/// are not supported.
fn all_or_nothing(field: &str, p: Option<core::RuntimeFractionalPercent>) -> Result<bool, Reason> {
    use ty::fractional_percent::DenominatorType as D;
    // A runtime key reads Envoy's runtime, which the proxy does not have: as Envoy without
    // that key, the default value applies.
    let Some(value) = p.and_then(|p| p.default_value) else {
        return Ok(false);
    };
    let whole: u32 = match D::try_from(value.denominator) {
        Ok(D::Hundred) => 100,
        Ok(D::TenThousand) => 10_000,
        Ok(D::Million) => 1_000_000,
        Err(_) => return Err(invalid(format!("{field}.denominator"), "unknown value")),
    };
    match value.numerator {
        0 => Ok(false),
        n if n >= whole => Ok(true),
        _ => Err(Reason::Unsupported(format!(
            "{field}: a share other than 0 % or 100 %"
        ))),
    }
}

fn action(field: &str, a: rt::rate_limit::Action) -> Result<Action, Reason> {
    use rt::rate_limit::action::ActionSpecifier as S;
    match a.action_specifier {
        Some(S::GenericKey(g)) => {
            if !g.default_value.is_empty() {
                return Err(Reason::Unsupported(format!(
                    "{field}.generic_key.default_value"
                )));
            }
            Ok(Action::GenericKey {
                key: or_default(g.descriptor_key, "generic_key"),
                value: g.descriptor_value,
            })
        }
        Some(S::HeaderValueMatch(m)) => {
            if !m.default_value.is_empty() {
                return Err(Reason::Unsupported(format!(
                    "{field}.header_value_match.default_value"
                )));
            }
            if m.headers.is_empty() {
                return Err(invalid(
                    format!("{field}.header_value_match.headers"),
                    "at least one header matcher is required",
                ));
            }
            let headers = m
                .headers
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    header_match(h)
                        .map_err(|r| r.within(&format!("{field}.header_value_match.headers[{i}]")))
                })
                .collect::<Result<_, _>>()?;
            Ok(Action::HeaderValueMatch {
                key: or_default(m.descriptor_key, "header_match"),
                value: m.descriptor_value,
                expect_match: m.expect_match.is_none_or(|b| b.value),
                headers,
            })
        }
        Some(S::RequestHeaders(r)) => {
            let header = HeaderName::try_from(r.header_name.as_str()).map_err(|e| {
                invalid(
                    format!("{field}.request_headers.header_name"),
                    format!("{:?}: {e}", r.header_name),
                )
            })?;
            if r.descriptor_key.is_empty() {
                return Err(invalid(
                    format!("{field}.request_headers.descriptor_key"),
                    "is required",
                ));
            }
            Ok(Action::RequestHeaders {
                header,
                key: r.descriptor_key,
                skip_if_absent: r.skip_if_absent,
            })
        }
        Some(other) => Err(Reason::Unsupported(format!(
            "{field}: action {}",
            action_name(&other)
        ))),
        None => Err(invalid(field, "an action is required")),
    }
}

fn action_name(a: &rt::rate_limit::action::ActionSpecifier) -> &'static str {
    use rt::rate_limit::action::ActionSpecifier as S;
    match a {
        S::SourceCluster(_) => "source_cluster",
        S::DestinationCluster(_) => "destination_cluster",
        S::RequestHeaders(_) => "request_headers",
        S::QueryParameters(_) => "query_parameters",
        S::RemoteAddress(_) => "remote_address",
        S::GenericKey(_) => "generic_key",
        S::HeaderValueMatch(_) => "header_value_match",
        #[allow(deprecated)]
        S::DynamicMetadata(_) => "dynamic_metadata",
        S::Metadata(_) => "metadata",
        S::Extension(_) => "extension",
        S::MaskedRemoteAddress(_) => "masked_remote_address",
        S::QueryParameterValueMatch(_) => "query_parameter_value_match",
        S::RemoteAddressMatch(_) => "remote_address_match",
    }
}

fn or_default(key: String, default: &str) -> String {
    if key.is_empty() {
        default.to_string()
    } else {
        key
    }
}

fn rate_limit(field: &str, r: rt::RateLimit) -> Result<Vec<Action>, Reason> {
    if r.stage.is_some_and(|s| s.value != 0) {
        return Err(Reason::Unsupported(format!("{field}.stage")));
    }
    if !r.disable_key.is_empty() {
        return Err(Reason::Unsupported(format!("{field}.disable_key")));
    }
    if r.limit.is_some() {
        return Err(Reason::Unsupported(format!("{field}.limit")));
    }
    if r.hits_addend.is_some() {
        return Err(Reason::Unsupported(format!("{field}.hits_addend")));
    }
    if r.apply_on_stream_done {
        return Err(Reason::Unsupported(format!("{field}.apply_on_stream_done")));
    }
    if r.x_ratelimit_option != 0 {
        return Err(Reason::Unsupported(format!("{field}.x_ratelimit_option")));
    }
    if r.actions.is_empty() {
        return Err(invalid(
            format!("{field}.actions"),
            "at least one action is required",
        ));
    }
    r.actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| action(&format!("{field}.actions[{i}]"), a))
        .collect()
}

impl LocalRateLimit {
    /// Converts a filter's config; `encoded` is its `typed_config` value (its identity for the
    /// buckets, [`with_registry`]).
    pub fn convert(c: lrl::LocalRateLimit, encoded: &[u8]) -> Result<Self, Reason> {
        if c.stat_prefix.is_empty() {
            return Err(invalid("stat_prefix", "is required"));
        }
        let status = match c.status {
            None => StatusCode::TOO_MANY_REQUESTS,
            Some(s) => u16::try_from(s.code)
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .filter(|code| code.as_u16() >= 400)
                .ok_or_else(|| {
                    invalid(
                        "status.code",
                        format!("{} is not a 4xx or 5xx status", s.code),
                    )
                })?,
        };
        let enabled = all_or_nothing("filter_enabled", c.filter_enabled)?;
        let enforced = all_or_nothing("filter_enforced", c.filter_enforced)?;
        if !c.request_headers_to_add_when_not_enforced.is_empty() {
            return Err(Reason::Unsupported(
                "request_headers_to_add_when_not_enforced".into(),
            ));
        }
        let ops = header_ops(c.response_headers_to_add, Vec::new())
            .map_err(|r| r.within("response_headers_to_add"))?;
        let mut response_headers = Vec::with_capacity(ops.add.len());
        for (i, add) in ops.add.into_iter().enumerate() {
            use core::header_value_option::HeaderAppendAction as A;
            let Some(value) = add.value.as_static() else {
                return Err(Reason::Unsupported(format!(
                    "response_headers_to_add[{i}]: %FORMATTERS% in a local rate limit's headers"
                )));
            };
            let append = match add.action {
                A::AppendIfExistsOrAdd => true,
                A::OverwriteIfExistsOrAdd => false,
                other => {
                    return Err(Reason::Unsupported(format!(
                        "response_headers_to_add[{i}].append_action {other:?}"
                    )));
                }
            };
            response_headers.push((add.name, value.clone(), append));
        }
        if c.stage != 0 {
            return Err(Reason::Unsupported("stage".into()));
        }
        if c.local_rate_limit_per_downstream_connection {
            return Err(Reason::Unsupported(
                "local_rate_limit_per_downstream_connection".into(),
            ));
        }
        if c.local_cluster_rate_limit.is_some() {
            return Err(Reason::Unsupported("local_cluster_rate_limit".into()));
        }
        if c.enable_x_ratelimit_headers != 0 {
            return Err(Reason::Unsupported("enable_x_ratelimit_headers".into()));
        }
        if c.vh_rate_limits != 0 {
            return Err(Reason::Unsupported("vh_rate_limits".into()));
        }
        if c.rate_limited_as_resource_exhausted {
            return Err(Reason::Unsupported(
                "rate_limited_as_resource_exhausted".into(),
            ));
        }
        if c.enable_retry_after_header {
            return Err(Reason::Unsupported("enable_retry_after_header".into()));
        }
        let default_bucket = c
            .token_bucket
            .map(|b| bucket("token_bucket", b))
            .transpose()?;
        let rate_limits = c
            .rate_limits
            .into_iter()
            .enumerate()
            .map(|(i, r)| rate_limit(&format!("rate_limits[{i}]"), r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut descriptors = Vec::with_capacity(c.descriptors.len());
        for (i, d) in c.descriptors.into_iter().enumerate() {
            let field = format!("descriptors[{i}]");
            if d.shadow_mode {
                return Err(Reason::Unsupported(format!("{field}.shadow_mode")));
            }
            if d.entries.is_empty() {
                return Err(invalid(
                    format!("{field}.entries"),
                    "at least one entry is required",
                ));
            }
            let bucket = bucket(
                &format!("{field}.token_bucket"),
                d.token_bucket
                    .ok_or_else(|| invalid(format!("{field}.token_bucket"), "is required"))?,
            )?;
            let entries = d
                .entries
                .into_iter()
                .map(|e| (e.key, Some(e.value).filter(|v| !v.is_empty())))
                .collect();
            descriptors.push(Descriptor { entries, bucket });
        }
        if !descriptors.is_empty() && rate_limits.is_empty() {
            return Err(Reason::Unsupported(
                "descriptors without rate_limits (the route's rate_limits are not supported; set them in the filter)".into(),
            ));
        }
        let max_dynamic = match c.max_dynamic_descriptors {
            None => DEFAULT_MAX_DYNAMIC_DESCRIPTORS,
            Some(v) if v.value >= 1 => v.value,
            Some(_) => {
                return Err(invalid("max_dynamic_descriptors", "must be at least 1"));
            }
        };
        let buckets = Arc::new(Buckets::new(default_bucket, &descriptors, max_dynamic));
        Ok(LocalRateLimit {
            stat_prefix: c.stat_prefix,
            enforced: enabled && enforced,
            status,
            response_headers: response_headers.into(),
            default_bucket,
            always_consume_default: c
                .always_consume_default_token_bucket
                .is_none_or(|b| b.value),
            rate_limits,
            descriptors,
            max_dynamic,
            buckets,
            config_key: encoded.to_vec(),
        })
    }
}

#[cfg(test)]
#[path = "local_ratelimit_tests.rs"]
mod tests;
