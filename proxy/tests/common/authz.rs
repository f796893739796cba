//! Builders for the inbound listener's authorization filters, shaped as istiod writes them
//! (jwt_authn, then RBAC DENY, ALLOW and LOG), and JWTs signed with the test keys.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::r#type::matcher::v3 as m;
use envoy_types::pb::google::protobuf::{Any, Empty};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::{Message, Name};
use rbac::permission::Rule as R;
use rbac::principal::Identifier as I;
use serde_json::{Value, json};

use super::any;

pub const ISSUER: &str = "https://issuer.example";
/// The request principal of [`token`]'s tokens.
pub const ALICE: &str = "https://issuer.example/alice";

fn key() -> EncodingKey {
    EncodingKey::from_ec_pem(include_bytes!("../data/jwt/ec256.pem")).unwrap()
}

/// The JWKS of the test EC key (kid `ec`).
pub fn jwks() -> String {
    let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("ec".into());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
}

/// An ES256 token of [`ISSUER`] for `sub`, valid for an hour from `valid_from` seconds
/// relative to now.
pub fn token(sub: &str, valid_from: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims: Value = json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": "weft",
        "iat": now + valid_from,
        "exp": now + valid_from + 3600,
        "groups": ["admins"],
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    jsonwebtoken::encode(&header, &claims, &key()).unwrap()
}

fn typed<M: Message + Name>(name: &str, config: &M) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: name.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

pub fn router() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router".into(),
            value: vec![],
        })),
        ..Default::default()
    }
}

/// istiod's jwt_authn for one RequestAuthentication with one jwtRule.
pub fn jwt_filter(jwks: &str) -> hcm::HttpFilter {
    let provider = jwt::JwtProvider {
        issuer: ISSUER.into(),
        audiences: vec!["weft".into()],
        jwks_source_specifier: Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(
            core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(jwks.into())),
                ..Default::default()
            },
        )),
        forward_payload_header: "x-jwt-payload".into(),
        payload_in_metadata: ISSUER.into(),
        ..Default::default()
    };
    let requires = |t| jwt::JwtRequirement {
        requires_type: Some(t),
    };
    use jwt::jwt_requirement::RequiresType as T;
    typed(
        "envoy.filters.http.jwt_authn",
        &jwt::JwtAuthentication {
            providers: [("origins-0".to_string(), provider)].into_iter().collect(),
            rules: vec![jwt::RequirementRule {
                r#match: Some(rt::RouteMatch {
                    path_specifier: Some(rt::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                requirement_type: Some(jwt::requirement_rule::RequirementType::Requires(requires(
                    T::RequiresAny(jwt::JwtRequirementOrList {
                        requirements: vec![
                            requires(T::ProviderName("origins-0".into())),
                            requires(T::AllowMissing(Empty {})),
                        ],
                    }),
                ))),
            }],
            bypass_cors_preflight: true,
            ..Default::default()
        },
    )
}

fn exact(s: &str) -> m::StringMatcher {
    m::StringMatcher {
        match_pattern: Some(m::string_matcher::MatchPattern::Exact(s.into())),
        ignore_case: false,
    }
}

fn prefix(s: &str) -> m::StringMatcher {
    m::StringMatcher {
        match_pattern: Some(m::string_matcher::MatchPattern::Prefix(s.into())),
        ignore_case: false,
    }
}

fn perm(rule: R) -> rbac::Permission {
    rbac::Permission { rule: Some(rule) }
}

fn id(identifier: I) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(identifier),
    }
}

/// istiod's rule shape: and(or(..)) on both sides.
fn rule(permission: rbac::Permission, principal: rbac::Principal) -> rbac::Policy {
    rbac::Policy {
        permissions: vec![perm(R::AndRules(rbac::permission::Set {
            rules: vec![perm(R::OrRules(rbac::permission::Set {
                rules: vec![permission],
            }))],
        }))],
        principals: vec![id(I::AndIds(rbac::principal::Set {
            ids: vec![id(I::OrIds(rbac::principal::Set {
                ids: vec![principal],
            }))],
        }))],
        ..Default::default()
    }
}

fn path(matcher: m::StringMatcher) -> rbac::Permission {
    perm(R::UrlPath(m::PathMatcher {
        rule: Some(m::path_matcher::Rule::Path(matcher)),
    }))
}

fn rbac_filter(action: rbac::rbac::Action, policies: Vec<(&str, rbac::Policy)>) -> hcm::HttpFilter {
    typed(
        "envoy.filters.http.rbac",
        &http_rbac::Rbac {
            rules: Some(rbac::Rbac {
                action: action as i32,
                policies: policies
                    .into_iter()
                    .map(|(n, p)| (n.to_string(), p))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// jwt_authn, then: DENY `/admin*` to anyone; ALLOW GET to anyone and anything to
/// [`ALICE`] (requestPrincipals); LOG `/audited*`; then the router.
pub fn inbound_filters(jwks: &str) -> Vec<hcm::HttpFilter> {
    use rbac::rbac::Action as A;
    #[allow(deprecated)] // istiod still sends `metadata`.
    let alice = id(I::Metadata(m::MetadataMatcher {
        filter: "istio_authn".into(),
        path: vec![m::metadata_matcher::PathSegment {
            segment: Some(m::metadata_matcher::path_segment::Segment::Key(
                "request.auth.principal".into(),
            )),
        }],
        value: Some(m::ValueMatcher {
            match_pattern: Some(m::value_matcher::MatchPattern::StringMatch(exact(ALICE))),
        }),
        invert: false,
    }));
    let get = perm(R::Header(rt::HeaderMatcher {
        name: ":method".into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(
            exact("GET"),
        )),
        ..Default::default()
    }));
    let anyone = id(I::Any(true));
    vec![
        jwt_filter(jwks),
        rbac_filter(
            A::Deny,
            vec![(
                "ns[default]-policy[deny-admin]-rule[0]",
                rule(path(prefix("/admin")), anyone.clone()),
            )],
        ),
        rbac_filter(
            A::Allow,
            vec![
                (
                    "ns[default]-policy[allow-read]-rule[0]",
                    rule(get, anyone.clone()),
                ),
                (
                    "ns[default]-policy[allow-alice]-rule[0]",
                    rule(perm(R::Any(true)), alice),
                ),
            ],
        ),
        rbac_filter(
            A::Log,
            vec![(
                "ns[default]-policy[audit]-rule[0]",
                rule(path(prefix("/audited")), anyone),
            )],
        ),
        router(),
    ]
}

/// A listener like [`super::listener`] whose HCM has `filters`.
pub fn listener_with_filters(
    name: &str,
    addr: SocketAddr,
    rds: &str,
    filters: Vec<hcm::HttpFilter>,
) -> Any {
    let mut l = lds::Listener::decode(super::listener(name, addr, rds).value.as_slice()).unwrap();
    let chain = &mut l.filter_chains[0].filters[0];
    let Some(lds::filter::ConfigType::TypedConfig(any_hcm)) = &mut chain.config_type else {
        unreachable!("the listener has an HCM");
    };
    let mut m = hcm::HttpConnectionManager::decode(any_hcm.value.as_slice()).unwrap();
    m.http_filters = filters;
    *any_hcm = any(&m);
    any(&l)
}
