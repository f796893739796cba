//! Istio `HTTPMatchRequest` → Envoy `RouteMatch`, and whether a match applies to a
//! proxy and port.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher,
    route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;
use weft_api::networking::{HttpMatchRequest, StringMatch};

use super::proxy::Proxy;
use crate::model::MESH_GATEWAY;
use crate::service::labels_match;

/// Whether an Istio match can apply to this port and proxy, as Istio's
/// `translateRoute`/`sourceMatchHTTP` decide: `port` must be the routed port; a match
/// naming `gateways` applies to sidecars only when they include `mesh` (its source
/// conditions are then not checked); otherwise `sourceLabels` must be a subset of the
/// proxy's labels and `sourceNamespace` its namespace.
pub fn match_applies(matching: &HttpMatchRequest, port: u32, proxy: &Proxy) -> bool {
    if matching.port.is_some_and(|p| p != 0 && p != port) {
        return false;
    }
    if !matching.gateways.is_empty() {
        return matching
            .gateways
            .iter()
            .any(|gateway| gateway == MESH_GATEWAY);
    }
    labels_match(&matching.source_labels, &proxy.labels)
        && matching
            .source_namespace
            .as_deref()
            .is_none_or(|namespace| namespace.is_empty() || namespace == proxy.namespace)
}

/// Istio's catch-all (`isCatchAllRoute`, judged on the translated route): every path
/// (`prefix: /`, no uri, or regex `*`) with no header or query condition. Conditions on
/// the source (labels, namespace, port) were already applied for this proxy.
pub fn is_catch_all(matching: &HttpMatchRequest) -> bool {
    let all_paths = match &matching.uri {
        None | Some(StringMatch::Present) => true,
        Some(StringMatch::Prefix(prefix)) => prefix == "/",
        Some(StringMatch::Regex(regex)) => regex == "*",
        Some(StringMatch::Exact(_)) => false,
    };
    all_paths
        && matching.headers.is_empty()
        && matching.without_headers.is_empty()
        && matching.query_params.is_empty()
        && matching.method.is_none()
        && matching.authority.is_none()
        && matching.scheme.is_none()
}

/// An Istio match as an Envoy route match.
pub fn translate_match(matching: &HttpMatchRequest) -> RouteMatch {
    let path_specifier = match &matching.uri {
        Some(StringMatch::Exact(path)) => route_match::PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => route_match::PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => {
            route_match::PathSpecifier::SafeRegex(regex_matcher(regex))
        }
        Some(StringMatch::Present) | None => route_match::PathSpecifier::Prefix("/".to_string()),
    };
    // Header conditions sorted by name, then the pseudo-headers, as Istio orders them.
    let mut headers: Vec<HeaderMatcher> = matching
        .headers
        .iter()
        .map(|(name, value)| header_matcher(name, value, false))
        .chain(
            matching
                .without_headers
                .iter()
                .map(|(name, value)| header_matcher(name, value, true)),
        )
        .collect();
    headers.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, value) in [
        (":method", &matching.method),
        (":authority", &matching.authority),
        (":scheme", &matching.scheme),
    ] {
        if let Some(value) = value {
            headers.push(header_matcher(name, value, false));
        }
    }
    let query_parameters = matching
        .query_params
        .iter()
        .map(|(name, value)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(value) {
                Some(matcher) => {
                    query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(matcher)
                }
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: Some(BoolValue {
            value: !matching.ignore_uri_case,
        }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// `invert` is for `withoutHeaders`: as Istio does, a missing header then counts as the
/// empty value, so `withoutHeaders: {x: {exact: a}}` matches requests without `x`.
fn header_matcher(name: &str, value: &StringMatch, invert: bool) -> HeaderMatcher {
    let matcher = string_matcher(value);
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        treat_missing_header_as_empty: invert && matcher.is_some(),
        header_match_specifier: Some(match matcher {
            Some(matcher) => header_matcher::HeaderMatchSpecifier::StringMatch(matcher),
            None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        }),
    }
}

/// An Istio string match as an Envoy one; `None` for presence only: `{}`, regex `*`
/// (Istio's rule) and an empty prefix (which any value has).
pub(crate) fn string_matcher(value: &StringMatch) -> Option<StringMatcher> {
    let pattern = match value {
        StringMatch::Regex(regex) if regex == "*" => return None,
        StringMatch::Prefix(prefix) if prefix.is_empty() => return None,
        StringMatch::Exact(text) => string_matcher::MatchPattern::Exact(text.clone()),
        StringMatch::Prefix(text) => string_matcher::MatchPattern::Prefix(text.clone()),
        StringMatch::Regex(regex) => string_matcher::MatchPattern::SafeRegex(regex_matcher(regex)),
        StringMatch::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}
