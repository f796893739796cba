//! A VirtualService HTTP route's `corsPolicy` in Envoy's terms, as Istio translates it: the
//! route's `typed_per_filter_config["envoy.filters.http.cors"]` (`CorsPolicy`), and the CORS
//! filter every outbound connection manager carries (before the fault filter).
//!
//! ```text
//!  allowOrigins [exact│prefix│regex] (+ deprecated allowOrigin, exact) ─► allow_origin_string_match
//!  allowMethods / allowHeaders / exposeHeaders ─► comma-joined strings; maxAge ─► seconds
//!  allowCredentials ─► allow_credentials; filter_enabled 100 %
//!  unmatchedPreflights FORWARD ─► forward_not_matching_preflights true │ IGNORE ─► false │ unset
//! ```

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use weft_api::networking::{CorsPolicy, UnmatchedPreflights};
use weft_xds::contract::CORS;

use super::pack;
use super::route_match::string_matcher as to_string_matcher;

/// The CORS filter of an outbound connection manager: an empty `Cors`, so that routes'
/// policies apply (Istio's sidecar outbound filter chain).
pub fn cors_filter() -> HttpFilter {
    HttpFilter {
        name: CORS.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &cors::Cors::default(),
        ))),
        ..Default::default()
    }
}

/// A route's CORS policy as the per-route config of the CORS filter.
pub fn cors_config(policy: &CorsPolicy) -> Any {
    let mut origins: Vec<StringMatcher> = policy
        .allow_origins
        .iter()
        .filter_map(to_string_matcher)
        .collect();
    if policy.allow_origins.is_empty() {
        origins.extend(policy.allow_origin.iter().map(|origin| StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(origin.clone())),
            ignore_case: false,
        }));
    }
    pack(&cors::CorsPolicy {
        allow_origin_string_match: origins,
        allow_methods: policy.allow_methods.join(","),
        allow_headers: policy.allow_headers.join(","),
        expose_headers: policy.expose_headers.join(","),
        max_age: policy
            .max_age
            .map(|age| age.0.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: policy.allow_credentials.map(|value| BoolValue { value }),
        forward_not_matching_preflights: match policy.unmatched_preflights {
            Some(UnmatchedPreflights::Forward) => Some(BoolValue { value: true }),
            Some(UnmatchedPreflights::Ignore) => Some(BoolValue { value: false }),
            Some(UnmatchedPreflights::UnspecifiedPreflights) | None => None,
        },
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: DenominatorType::Hundred as i32,
            }),
            runtime_key: String::new(),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_translates_as_istio() {
        let policy: CorsPolicy = serde_yaml::from_str(
            "{allowOrigins: [{exact: 'https://a.example'}, {prefix: 'https://b.'}, {regex: 'https://.*\\.c'}], allowMethods: [GET, POST], allowHeaders: [x-a, x-b], exposeHeaders: [x-c], maxAge: 24h, allowCredentials: true, unmatchedPreflights: IGNORE}",
        )
        .unwrap();
        let config: cors::CorsPolicy =
            prost::Message::decode(cors_config(&policy).value.as_slice()).unwrap();
        assert_eq!(config.allow_origin_string_match.len(), 3);
        assert_eq!(config.allow_methods, "GET,POST");
        assert_eq!(config.allow_headers, "x-a,x-b");
        assert_eq!(config.expose_headers, "x-c");
        assert_eq!(config.max_age, "86400");
        assert_eq!(config.allow_credentials, Some(BoolValue { value: true }));
        assert_eq!(
            config.forward_not_matching_preflights,
            Some(BoolValue { value: false })
        );
        let legacy: CorsPolicy = serde_yaml::from_str("{allowOrigin: ['*']}").unwrap();
        let config: cors::CorsPolicy =
            prost::Message::decode(cors_config(&legacy).value.as_slice()).unwrap();
        assert_eq!(
            config.allow_origin_string_match[0].match_pattern,
            Some(string_matcher::MatchPattern::Exact("*".into()))
        );
        assert!(config.forward_not_matching_preflights.is_none());
    }
}
