//! CORS (Envoy `envoy.filters.http.cors`, VirtualService `corsPolicy`): a route's
//! `typed_per_filter_config["envoy.filters.http.cors"]` (`CorsPolicy`) → `Cors`, applied when the
//! listener runs the CORS filter.
//!
//! ```text
//!  CorsPolicy { allow_origin_string_match [exact│prefix│suffix│contains│safe_regex],
//!               allow_methods, allow_headers, expose_headers, max_age (strings as sent),
//!               allow_credentials, forward_not_matching_preflights (default true),
//!               filter_enabled (100 % or 0 %) } ─► Cors (header values built once)
//! ```

use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors;
use http::HeaderValue;

use super::fault::{PER_MILLION, per_million};
use super::matcher::string_match;
use super::route::StringMatch;
use super::{Reason, invalid, reject_leftover, reject_set};

/// A route's CORS policy, as the data path applies it (`http/cors.rs`).
#[derive(Debug)]
pub struct Cors {
    /// Origins allowed; a matcher that matches `*` allows every origin (Envoy).
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Option<HeaderValue>,
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    /// A preflight whose origin is not allowed goes upstream (`true`, Envoy's default and
    /// Istio's `FORWARD`), or is answered 200 without CORS headers (`IGNORE`).
    pub forward_not_matching_preflights: bool,
}

/// Converts a route's `CorsPolicy`; `None` when `filter_enabled` turns it off.
pub(super) fn cors_policy(mut p: cors::CorsPolicy) -> Result<Option<Cors>, Reason> {
    let enabled = match p.filter_enabled.take() {
        None => true,
        Some(fraction) => {
            if !fraction.runtime_key.is_empty() && fraction.default_value.is_none() {
                return Err(Reason::Missing("filter_enabled.default_value"));
            }
            let share = per_million("filter_enabled.default_value", fraction.default_value)?;
            match share {
                0 => false,
                PER_MILLION => true,
                _ => {
                    return Err(Reason::Unsupported(
                        "filter_enabled.default_value other than 0 % or 100 %".into(),
                    ));
                }
            }
        }
    };
    let allow_origins = std::mem::take(&mut p.allow_origin_string_match)
        .into_iter()
        .map(|m| string_match("allow_origin_string_match", m))
        .collect::<Result<Vec<_>, _>>()?;
    let value = |field: &'static str, v: String| -> Result<Option<HeaderValue>, Reason> {
        if v.is_empty() {
            return Ok(None);
        }
        HeaderValue::try_from(v)
            .map(Some)
            .map_err(|e| invalid(field, e.to_string()))
    };
    let allow_methods = value("allow_methods", std::mem::take(&mut p.allow_methods))?;
    let allow_headers = value("allow_headers", std::mem::take(&mut p.allow_headers))?;
    let expose_headers = value("expose_headers", std::mem::take(&mut p.expose_headers))?;
    let max_age = value("max_age", std::mem::take(&mut p.max_age))?;
    let allow_credentials = p.allow_credentials.take().is_some_and(|b| b.value);
    let forward_not_matching_preflights = p
        .forward_not_matching_preflights
        .take()
        .is_none_or(|b| b.value);
    if p.allow_private_network_access
        .take()
        .is_some_and(|b| b.value)
    {
        return Err(Reason::Unsupported("allow_private_network_access".into()));
    }
    reject_set!(p, shadow_enabled);
    reject_leftover(&p, "cors policy")?;
    Ok(enabled.then_some(Cors {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age,
        allow_credentials,
        forward_not_matching_preflights,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
    use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
    use envoy_types::pb::google::protobuf::BoolValue;

    /// Istio's `filter_enabled`: 100 % by default value.
    fn all() -> envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent {
        envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent {
            default_value: Some(envoy_types::pb::envoy::r#type::v3::FractionalPercent {
                numerator: 100,
                denominator: DenominatorType::Hundred as i32,
            }),
            runtime_key: String::new(),
        }
    }

    #[test]
    fn istios_policy_converts_whole() {
        let policy = cors::CorsPolicy {
            allow_origin_string_match: vec![StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix("https://a".into())),
                ..Default::default()
            }],
            allow_methods: "GET,POST".into(),
            allow_headers: "x-a".into(),
            expose_headers: "x-b".into(),
            max_age: "86400".into(),
            allow_credentials: Some(BoolValue { value: true }),
            forward_not_matching_preflights: Some(BoolValue { value: false }),
            filter_enabled: Some(all()),
            ..Default::default()
        };
        let c = cors_policy(policy).unwrap().unwrap();
        assert_eq!(c.allow_origins.len(), 1);
        assert_eq!(c.allow_methods.unwrap(), "GET,POST");
        assert_eq!(c.max_age.unwrap(), "86400");
        assert!(c.allow_credentials && !c.forward_not_matching_preflights);
        let mut off = all();
        if let Some(v) = off.default_value.as_mut() {
            v.numerator = 0;
        }
        let disabled = cors::CorsPolicy {
            filter_enabled: Some(off),
            ..Default::default()
        };
        assert!(cors_policy(disabled).unwrap().is_none());
        let shadow = cors::CorsPolicy {
            shadow_enabled: Some(all()),
            ..Default::default()
        };
        assert!(
            cors_policy(shadow)
                .unwrap_err()
                .to_string()
                .contains("shadow_enabled")
        );
    }
}
