//! RequestAuthentication → JwtAuthentication: every JWT rule field, defaults, merged policies
//! (root namespace, namespace, selector) sorted by issuer, and the key sets the controller
//! fetched or could not fetch.

use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use prost::Message;

use super::*;
use crate::jwks::JwksSet;
use crate::model::MeshSettings;
use crate::model::security::EMPTY_JWKS;
use crate::testing::{config_from_yaml, model_from_yaml};

fn proxy(namespace: &str, labels: &[(&str, &str)]) -> Proxy {
    let mut proxy = Proxy::sidecar(namespace);
    proxy.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    proxy.app_port = Some(9080);
    proxy
}

fn decoded(model: &Model, proxy: &Proxy) -> Option<JwtAuthentication> {
    let filter = jwt_filter(model, proxy)?;
    assert_eq!(filter.name, "envoy.filters.http.jwt_authn");
    let Some(http_filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
    );
    Some(JwtAuthentication::decode(any.value.as_slice()).expect("decodes"))
}

fn inline(jwks: &str) -> Option<jwt_provider::JwksSourceSpecifier> {
    Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
        specifier: Some(data_source::Specifier::InlineString(jwks.to_string())),
        ..Default::default()
    }))
}

/// The requirement of the contract: any of the providers, or no token at all.
fn requires_any(names: &[&str]) -> Vec<RequirementRule> {
    let mut requirements: Vec<JwtRequirement> = names
        .iter()
        .map(|name| {
            requirement(jwt_requirement::RequiresType::ProviderName(
                name.to_string(),
            ))
        })
        .collect();
    requirements.push(requirement(jwt_requirement::RequiresType::AllowMissing(
        Empty {},
    )));
    vec![RequirementRule {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        requirement_type: Some(requirement_rule::RequirementType::Requires(requirement(
            jwt_requirement::RequiresType::RequiresAny(JwtRequirementOrList { requirements }),
        ))),
    }]
}

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"x","y":"y","kid":"k"}]}"#;

#[test]
fn every_jwt_rule_field() {
    let model = model_from_yaml(&format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: all-fields, namespace: foo}}
spec:
  jwtRules:
  - issuer: "https://issuer.example"
    audiences: [bookstore, books]
    jwks: '{JWKS}'
    fromHeaders: [{{name: x-jwt-assertion, prefix: "Bearer "}}, {{name: x-token}}]
    fromParams: [my_token]
    fromCookies: [session]
    spaceDelimitedClaims: [roles, scope]
    outputPayloadToHeader: x-jwt-payload
    forwardOriginalToken: true
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}, {{header: x-group, claim: group}}]
    timeout: 10s
"#
    ));
    assert!(model.warnings.is_empty(), "{:#?}", model.warnings);
    let config = decoded(&model, &proxy("foo", &[])).expect("a JWT filter");
    let expected = JwtProvider {
        issuer: "https://issuer.example".into(),
        audiences: vec!["bookstore".into(), "books".into()],
        forward: true,
        from_headers: vec![
            JwtHeader {
                name: "x-jwt-assertion".into(),
                value_prefix: "Bearer ".into(),
            },
            JwtHeader {
                name: "x-token".into(),
                value_prefix: String::new(),
            },
        ],
        from_params: vec!["my_token".into()],
        from_cookies: vec!["session".into()],
        forward_payload_header: "x-jwt-payload".into(),
        payload_in_metadata: "https://issuer.example".into(),
        claim_to_headers: vec![
            JwtClaimToHeader {
                header_name: "x-sub".into(),
                claim_name: "sub".into(),
                ..Default::default()
            },
            JwtClaimToHeader {
                header_name: "x-group".into(),
                claim_name: "group".into(),
                ..Default::default()
            },
        ],
        jwks_source_specifier: inline(JWKS),
        normalize_payload_in_metadata: Some(jwt_provider::NormalizePayload {
            space_delimited_claims: vec!["scope".into(), "permission".into(), "roles".into()],
        }),
        ..Default::default()
    };
    assert_eq!(config.providers.len(), 1);
    assert_eq!(config.providers["origins-0"], expected);
    assert_eq!(config.rules, requires_any(&["origins-0"]));
    assert!(config.bypass_cors_preflight);
}

#[test]
fn defaults_leave_envoy_token_locations() {
    let model = model_from_yaml(&format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: minimal, namespace: foo}}
spec:
  jwtRules: [{{issuer: "iss", jwks: '{JWKS}'}}]
"#
    ));
    let config = decoded(&model, &proxy("foo", &[])).expect("a JWT filter");
    assert_eq!(
        config.providers["origins-0"],
        JwtProvider {
            issuer: "iss".into(),
            payload_in_metadata: "iss".into(),
            jwks_source_specifier: inline(JWKS),
            // Istio always splits these for authorization policies.
            normalize_payload_in_metadata: Some(jwt_provider::NormalizePayload {
                space_delimited_claims: vec!["scope".into(), "permission".into()],
            }),
            ..Default::default()
        }
    );
}

const MERGED: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: mesh, namespace: istio-system}
spec:
  jwtRules: [{issuer: "z-mesh", jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ns-wide, namespace: foo}
spec:
  jwtRules:
  - {issuer: "m-namespace", jwks: '{"keys":[]}'}
  - {issuer: "b-namespace", jwks: '{"keys":[]}'}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules: [{issuer: "a-workload", jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: other-ns, namespace: bar}
spec:
  jwtRules: [{issuer: "other", jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: gateway, namespace: foo}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}
  jwtRules: [{issuer: "gateway", jwks: '{"keys":[]}'}]
"#;

#[test]
fn policies_of_root_namespace_namespace_and_selector_merge_sorted_by_issuer() {
    let model = model_from_yaml(MERGED);
    let issuers = |config: &JwtAuthentication| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = config
            .providers
            .iter()
            .map(|(name, provider)| (name.clone(), provider.issuer.clone()))
            .collect();
        found.sort();
        found
    };
    let httpbin = decoded(&model, &proxy("foo", &[("app", "httpbin")])).expect("filter");
    assert_eq!(
        issuers(&httpbin),
        [
            ("origins-0".to_string(), "a-workload".to_string()),
            ("origins-1".to_string(), "b-namespace".to_string()),
            ("origins-2".to_string(), "m-namespace".to_string()),
            ("origins-3".to_string(), "z-mesh".to_string()),
        ]
    );
    assert_eq!(
        httpbin.rules,
        requires_any(&["origins-0", "origins-1", "origins-2", "origins-3"])
    );
    // Without the label: the namespace and mesh policies.
    let other = decoded(&model, &proxy("foo", &[("app", "ratings")])).expect("filter");
    assert_eq!(other.providers.len(), 3);
    // Another namespace: its own and the mesh policy.
    let bar = decoded(&model, &proxy("bar", &[])).expect("filter");
    assert_eq!(
        issuers(&bar),
        [
            ("origins-0".to_string(), "other".to_string()),
            ("origins-1".to_string(), "z-mesh".to_string()),
        ]
    );
    // A root namespace elsewhere: the istio-system policy is an ordinary namespace policy.
    let settings = MeshSettings {
        root_namespace: "mesh-root".to_string(),
        ..MeshSettings::default()
    };
    let model = Model::build(&config_from_yaml(MERGED), &settings);
    let bar = decoded(&model, &proxy("bar", &[])).expect("filter");
    assert_eq!(bar.providers.len(), 1);
    assert!(decoded(&model, &proxy("baz", &[])).is_none());
}

#[test]
fn fetched_key_sets_are_inline_and_failures_carry_no_keys() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: remote, namespace: foo}
spec:
  jwtRules:
  - {issuer: "good", jwksUri: "https://keys.example/good"}
  - {issuer: "bad", jwksUri: "https://keys.example/bad"}
  - {issuer: "pending", jwksUri: "https://keys.example/pending"}
  - {issuer: "nowhere"}
"#;
    let mut fetched = JwksSet::default();
    fetched.insert("https://keys.example/good", Ok(JWKS.to_string()));
    fetched.insert(
        "https://keys.example/bad",
        Err("HTTP status 500 Internal Server Error".to_string()),
    );
    let model = Model::build_full(
        &config_from_yaml(yaml),
        None,
        &MeshSettings::default(),
        &fetched,
    );
    let config = decoded(&model, &proxy("foo", &[])).expect("filter");
    let jwks_of = |issuer: &str| {
        config
            .providers
            .values()
            .find(|provider| provider.issuer == issuer)
            .map(|provider| provider.jwks_source_specifier.clone())
            .expect("provider")
    };
    assert_eq!(jwks_of("good"), inline(JWKS));
    for issuer in ["bad", "pending", "nowhere"] {
        assert_eq!(jwks_of(issuer), inline(EMPTY_JWKS), "{issuer}");
    }
    let warnings: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "RequestAuthentication foo/remote: spec.jwtRules[1].jwksUri: cannot fetch the JWKS from https://keys.example/bad: HTTP status 500 Internal Server Error; tokens from issuer \"bad\" are rejected (401) until it is fetched",
            "RequestAuthentication foo/remote: spec.jwtRules[2].jwksUri: the JWKS from https://keys.example/pending is not fetched yet; tokens from issuer \"pending\" are rejected (401) until it is",
            "RequestAuthentication foo/remote: spec.jwtRules[3]: neither jwks nor jwksUri is set, and finding the keys through the issuer's OpenID discovery is not supported yet; tokens from issuer \"nowhere\" are rejected (401)",
        ]
    );
}

#[test]
fn no_request_authentication_no_filter() {
    let model = model_from_yaml(MERGED);
    // A targetRef policy applies to nothing; `baz` has no policy but the mesh one.
    let settings = MeshSettings {
        root_namespace: "elsewhere".to_string(),
        ..MeshSettings::default()
    };
    let without_mesh = Model::build(&config_from_yaml(MERGED), &settings);
    assert!(decoded(&without_mesh, &proxy("baz", &[])).is_none());
    assert!(
        decoded(&model, &proxy("baz", &[]))
            .expect("the mesh policy")
            .providers
            .values()
            .all(|provider| provider.issuer != "gateway")
    );
}
