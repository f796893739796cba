//! RequestAuthentication → `envoy.filters.http.jwt_authn`
//! (`envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`): every JWT rule of every
//! RequestAuthentication selecting the workload (root namespace, namespace and selector
//! policies merged, as istiod does), one provider each, sorted by issuer as istiod sorts them.
//!
//! ```text
//! providers: origins-<i> { issuer, audiences, from_headers/params/cookies, forward,
//!                          forward_payload_header, claim_to_headers,
//!                          payload_in_metadata: <issuer>, local_jwks.inline_string: <JWKS> }
//! rules: [ match prefix "/" → requires_any [ origins-0, …, allow_missing ] ]
//! ```
//!
//! A request without a token passes (authorization decides); a token no provider accepts is
//! rejected with 401.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementOrList, RequirementRule, jwt_provider, jwt_requirement, requirement_rule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::Empty;
use weft_xds::contract::JWT_AUTHN;

use super::super::Proxy;
use super::wire;
use crate::model::Model;
use crate::model::security::JwtRuleEntry;

/// The JWT filter of `proxy`, when a RequestAuthentication with rules selects it.
pub fn jwt_filter(model: &Model, proxy: &Proxy) -> Option<HttpFilter> {
    let mut rules: Vec<&JwtRuleEntry> = model
        .request_authentications_for(&proxy.namespace, &proxy.labels)
        .flat_map(|policy| &policy.rules)
        .collect();
    if rules.is_empty() {
        return None;
    }
    // istiod sorts the merged rules by issuer (stable) so the config is deterministic.
    rules.sort_by(|a, b| a.rule.issuer.cmp(&b.rule.issuer));
    let mut providers = BTreeMap::new();
    let mut requirements = Vec::new();
    for (index, entry) in rules.into_iter().enumerate() {
        let name = provider_name(index);
        providers.insert(name.clone(), provider(entry));
        requirements.push(requirement(jwt_requirement::RequiresType::ProviderName(
            name,
        )));
    }
    requirements.push(requirement(jwt_requirement::RequiresType::AllowMissing(
        Empty {},
    )));
    let config = JwtAuthentication {
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(requirement(
                jwt_requirement::RequiresType::RequiresAny(JwtRequirementOrList { requirements }),
            ))),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    };
    Some(HttpFilter {
        name: JWT_AUTHN.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            wire::jwt_authentication(&config, &providers),
        )),
        ..Default::default()
    })
}

/// Istio's provider names.
pub fn provider_name(index: usize) -> String {
    format!("origins-{index}")
}

fn requirement(requires: jwt_requirement::RequiresType) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(requires),
    }
}

/// The provider of one JWT rule; empty `from_*` lists leave Envoy's defaults
/// (`Authorization: Bearer` and `access_token`).
pub fn provider(entry: &JwtRuleEntry) -> JwtProvider {
    let rule = &entry.rule;
    JwtProvider {
        issuer: rule.issuer.clone().unwrap_or_default(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        from_headers: rule
            .from_headers
            .iter()
            .map(|header| JwtHeader {
                name: header.name.clone(),
                value_prefix: header.prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: rule.issuer.clone().unwrap_or_default(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|claim| JwtClaimToHeader {
                header_name: claim.header.clone(),
                claim_name: claim.claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(entry.jwks.clone())),
            ..Default::default()
        })),
        normalize_payload_in_metadata: Some(jwt_provider::NormalizePayload {
            space_delimited_claims: space_delimited_claims(&rule.space_delimited_claims),
        }),
        ..Default::default()
    }
}

/// The claims Istio always splits at spaces for authorization policies.
pub const DEFAULT_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "permission"];

/// Istio's defaults, then the rule's `spaceDelimitedClaims`, each once.
fn space_delimited_claims(configured: &[String]) -> Vec<String> {
    let mut claims: Vec<String> = DEFAULT_SPACE_DELIMITED_CLAIMS
        .iter()
        .map(|c| (*c).to_string())
        .collect();
    for claim in configured {
        if !claims.contains(claim) {
            claims.push(claim.clone());
        }
    }
    claims
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
