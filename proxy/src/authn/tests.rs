//! JWT filter tests: tokens signed with fixed test keys (`proxy/tests/data/jwt/`), no network.

use std::time::{SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use envoy_types::pb::google::protobuf::Empty;
use http::request::Parts;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{JwtAuthn, JwtError, challenge};

const ISS: &str = "https://issuer.example";
const OTHER_ISS: &str = "https://other.example";

fn pem(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => include_str!("../../tests/data/jwt/rsa.pem"),
        Algorithm::ES256 => include_str!("../../tests/data/jwt/ec256.pem"),
        Algorithm::ES384 => include_str!("../../tests/data/jwt/ec384.pem"),
        Algorithm::EdDSA => include_str!("../../tests/data/jwt/ed25519.pem"),
        other => panic!("no test key for {other:?}"),
    }
}

fn encoding_key(alg: Algorithm) -> EncodingKey {
    let pem = pem(alg).as_bytes();
    match alg.family() {
        jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
        jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
        _ => EncodingKey::from_ed_pem(pem),
    }
    .unwrap()
}

/// The public JWKS of the test keys, one per `(alg, kid)`.
fn jwks(keys: &[(Algorithm, &str)]) -> String {
    let keys = keys
        .iter()
        .map(|(alg, kid)| {
            let mut jwk = Jwk::from_encoding_key(&encoding_key(*alg), *alg).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &encoding_key(alg)).unwrap()
}

fn claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "sub": "alice",
        "aud": ["bookstore", "https://admin.example/"],
        "azp": "web",
        "exp": now() + 3600,
        "groups": ["dev"],
        "realm": {"level": 3, "admin": true, "name": "eu"},
    })
}

fn token() -> String {
    sign(Algorithm::RS256, "rsa", &claims(ISS))
}

fn provider(issuer: &str) -> jwt::JwtProvider {
    jwt::JwtProvider {
        issuer: issuer.into(),
        jwks_source_specifier: Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(
            core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(jwks(&[
                    (Algorithm::RS256, "rsa"),
                    (Algorithm::PS256, "rsa-ps"),
                    (Algorithm::ES256, "ec256"),
                    (Algorithm::ES384, "ec384"),
                    (Algorithm::EdDSA, "ed"),
                ]))),
                ..Default::default()
            },
        )),
        payload_in_metadata: issuer.into(),
        ..Default::default()
    }
}

fn requirement(t: jwt::jwt_requirement::RequiresType) -> jwt::JwtRequirement {
    jwt::JwtRequirement {
        requires_type: Some(t),
    }
}

fn by_name(name: &str) -> jwt::JwtRequirement {
    requirement(jwt::jwt_requirement::RequiresType::ProviderName(
        name.into(),
    ))
}

fn allow_missing() -> jwt::JwtRequirement {
    requirement(jwt::jwt_requirement::RequiresType::AllowMissing(Empty {}))
}

fn any_of(requirements: Vec<jwt::JwtRequirement>) -> jwt::JwtRequirement {
    requirement(jwt::jwt_requirement::RequiresType::RequiresAny(
        jwt::JwtRequirementOrList { requirements },
    ))
}

/// The filter as istiod writes it: providers `origins-<i>`, one rule `/` requiring any of
/// them or no token at all.
fn istio(providers: Vec<jwt::JwtProvider>) -> jwt::JwtAuthentication {
    let names: Vec<String> = (0..providers.len())
        .map(|i| format!("origins-{i}"))
        .collect();
    let mut requirements: Vec<_> = names.iter().map(|n| by_name(n)).collect();
    requirements.push(allow_missing());
    config(
        names.into_iter().zip(providers).collect(),
        any_of(requirements),
    )
}

fn config(
    providers: Vec<(String, jwt::JwtProvider)>,
    requires: jwt::JwtRequirement,
) -> jwt::JwtAuthentication {
    jwt::JwtAuthentication {
        providers: providers.into_iter().collect(),
        rules: vec![jwt::RequirementRule {
            r#match: Some(rt::RouteMatch {
                path_specifier: Some(rt::route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(jwt::requirement_rule::RequirementType::Requires(requires)),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    }
}

fn filter(c: jwt::JwtAuthentication) -> JwtAuthn {
    JwtAuthn::try_from(c).expect("valid config")
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn valid_token_gives_the_request_principal_and_is_stripped() {
    let f = filter(istio(vec![provider(OTHER_ISS), provider(ISS)]));
    let t = token();
    let mut p = parts("http://reviews/api", &[("authorization", &bearer(&t))]);
    let result = f.authenticate(&mut p).unwrap().expect("a verified token");
    assert_eq!(
        result.principal.as_deref(),
        Some("https://issuer.example/alice")
    );
    assert_eq!(result.presenter.as_deref(), Some("web"));
    assert_eq!(result.audiences, ["bookstore", "https://admin.example/"]);
    // Nested claims stay nested.
    assert_eq!(result.claims["realm"]["name"], "eu");
    assert_eq!(result.claims["groups"], json!(["dev"]));
    assert!(p.headers.get("authorization").is_none(), "token stripped");
}

#[test]
fn every_supported_algorithm_verifies() {
    let f = filter(istio(vec![provider(ISS)]));
    for (alg, kid) in [
        (Algorithm::RS256, "rsa"),
        (Algorithm::PS256, "rsa-ps"),
        (Algorithm::ES256, "ec256"),
        (Algorithm::ES384, "ec384"),
        (Algorithm::EdDSA, "ed"),
    ] {
        let t = sign(alg, kid, &claims(ISS));
        let mut p = parts("/", &[("authorization", &bearer(&t))]);
        let result = f.authenticate(&mut p);
        assert!(matches!(result, Ok(Some(_))), "{alg:?}: {result:?}");
    }
}

fn fails(f: &JwtAuthn, t: &str) -> JwtError {
    let mut p = parts("/", &[("authorization", &bearer(t))]);
    f.authenticate(&mut p).expect_err("must fail")
}

#[test]
fn time_checks_use_the_clock_skew() {
    let f = filter(istio(vec![provider(ISS)]));
    let mut c = claims(ISS);
    c["exp"] = json!(now() - 120);
    assert_eq!(
        fails(&f, &sign(Algorithm::RS256, "rsa", &c)),
        JwtError::Expired
    );
    c["exp"] = json!(now() - 30);
    let mut p = parts(
        "/",
        &[("authorization", &bearer(&sign(Algorithm::RS256, "rsa", &c)))],
    );
    assert!(
        f.authenticate(&mut p).unwrap().is_some(),
        "within the 60 s skew"
    );
    let mut c = claims(ISS);
    c["nbf"] = json!(now() + 120);
    assert_eq!(
        fails(&f, &sign(Algorithm::RS256, "rsa", &c)),
        JwtError::NotYetValid
    );
    // A larger skew accepts it.
    let mut skewed = provider(ISS);
    skewed.clock_skew_seconds = 300;
    let f = filter(istio(vec![skewed]));
    let mut p = parts(
        "/",
        &[("authorization", &bearer(&sign(Algorithm::RS256, "rsa", &c)))],
    );
    assert!(f.authenticate(&mut p).unwrap().is_some());
    // exp that is not a number.
    let mut c = claims(ISS);
    c["exp"] = json!("tomorrow");
    assert!(matches!(
        fails(&f, &sign(Algorithm::RS256, "rsa", &c)),
        JwtError::Malformed(_)
    ));
}

#[test]
fn wrong_issuer_audience_signature_and_key_fail() {
    let mut p = provider(ISS);
    p.audiences = vec!["https://bookstore/".into()];
    let f = filter(istio(vec![p]));
    let unknown = sign(Algorithm::RS256, "rsa", &claims("https://evil.example"));
    assert_eq!(
        fails(&f, &unknown),
        JwtError::UnknownIssuer("https://evil.example".into())
    );
    // Audiences compare without scheme and trailing slash, as Envoy does.
    let mut p = parts("/", &[("authorization", &bearer(&token()))]);
    assert!(f.authenticate(&mut p).unwrap().is_some());
    let mut c = claims(ISS);
    c["aud"] = json!("reviews");
    assert_eq!(
        fails(&f, &sign(Algorithm::RS256, "rsa", &c)),
        JwtError::AudienceNotAllowed
    );
    // Tampered signature, tampered payload.
    let t = token();
    let (rest, sig) = t.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    assert_eq!(
        fails(&f, &format!("{rest}.{flipped}{}", &sig[1..])),
        JwtError::BadSignature
    );
    let other_payload = sign(Algorithm::RS256, "rsa", &{
        let mut c = claims(ISS);
        c["sub"] = json!("mallory");
        c
    });
    let forged = format!(
        "{}.{}.{sig}",
        rest.split('.').next().unwrap(),
        other_payload.split('.').nth(1).unwrap()
    );
    assert_eq!(fails(&f, &forged), JwtError::BadSignature);
    // A kid the JWKS does not have.
    assert_eq!(
        fails(&f, &sign(Algorithm::RS256, "rotated", &claims(ISS))),
        JwtError::NoMatchingKey
    );
    assert!(matches!(fails(&f, "not-a-jwt"), JwtError::Malformed(_)));
    // A key whose alg is RS256 does not verify a PS256 token.
    assert_eq!(
        fails(&f, &sign(Algorithm::PS256, "rsa", &claims(ISS))),
        JwtError::NoMatchingKey
    );
}

#[test]
fn missing_token_with_and_without_allow_missing() {
    let f = filter(istio(vec![provider(ISS)]));
    let mut p = parts("/", &[]);
    assert_eq!(f.authenticate(&mut p).unwrap(), None);
    // Required: only the provider.
    let f = filter(config(
        vec![("origins-0".into(), provider(ISS))],
        by_name("origins-0"),
    ));
    let mut p = parts("http://reviews:9080/api?x=1", &[]);
    let e = f.authenticate(&mut p).unwrap_err();
    assert_eq!(e, JwtError::Missing);
    assert_eq!(
        challenge(&p, &e),
        r#"Bearer realm="http://reviews:9080/api?x=1""#
    );
    let e = fails(&f, "a.b.c");
    assert_eq!(
        challenge(&parts("http://h/p", &[]), &e),
        r#"Bearer realm="http://h/p", error="invalid_token""#
    );
}

#[test]
fn allow_missing_or_failed_passes_bad_tokens() {
    let c = config(
        vec![("origins-0".into(), provider(ISS))],
        any_of(vec![
            by_name("origins-0"),
            requirement(jwt::jwt_requirement::RequiresType::AllowMissingOrFailed(
                Empty {},
            )),
        ]),
    );
    let f = filter(c);
    let mut p = parts("/", &[("authorization", "Bearer a.b.c")]);
    assert_eq!(f.authenticate(&mut p).unwrap(), None);
}

#[test]
fn requires_all_needs_every_provider() {
    let mut second = provider(OTHER_ISS);
    second.from_headers = vec![jwt::JwtHeader {
        name: "x-other".into(),
        value_prefix: String::new(),
    }];
    let c = config(
        vec![("a".into(), provider(ISS)), ("b".into(), second)],
        requirement(jwt::jwt_requirement::RequiresType::RequiresAll(
            jwt::JwtRequirementAndList {
                requirements: vec![by_name("a"), by_name("b")],
            },
        )),
    );
    let f = filter(c);
    let other = sign(Algorithm::ES256, "ec256", &claims(OTHER_ISS));
    let mut p = parts(
        "/",
        &[("authorization", &bearer(&token())), ("x-other", &other)],
    );
    assert!(f.authenticate(&mut p).unwrap().is_some());
    let mut p = parts("/", &[("authorization", &bearer(&token()))]);
    assert_eq!(f.authenticate(&mut p).unwrap_err(), JwtError::Missing);
}

#[test]
fn token_locations_header_prefix_params_and_cookies() {
    let mut p = provider(ISS);
    p.from_headers = vec![jwt::JwtHeader {
        name: "X-Jwt".into(),
        value_prefix: "Token ".into(),
    }];
    p.from_params = vec!["token".into()];
    p.from_cookies = vec!["session".into()];
    let f = filter(istio(vec![p]));
    let t = token();

    let mut req = parts("/", &[("x-jwt", &format!("Token {t}"))]);
    assert!(f.authenticate(&mut req).unwrap().is_some());
    assert!(req.headers.get("x-jwt").is_none());
    // The default locations are not read once others are configured: nothing found, allowed.
    let mut req = parts("/", &[("authorization", &bearer("garbage"))]);
    assert_eq!(f.authenticate(&mut req).unwrap(), None);

    let mut req = parts(&format!("/p?a=1&token={t}&b=2"), &[]);
    assert!(f.authenticate(&mut req).unwrap().is_some());
    assert_eq!(req.uri.path_and_query().unwrap().as_str(), "/p?a=1&b=2");

    let cookie = format!("theme=dark; session={t}");
    let mut req = parts("/", &[("cookie", &cookie)]);
    assert!(f.authenticate(&mut req).unwrap().is_some());
    assert_eq!(req.headers["cookie"], cookie.as_str(), "cookies are kept");

    // The default query parameter.
    let f = filter(istio(vec![provider(ISS)]));
    let mut req = parts(&format!("/p?access_token={t}"), &[]);
    assert!(f.authenticate(&mut req).unwrap().is_some());
    assert_eq!(req.uri.path_and_query().unwrap().as_str(), "/p");
}

#[test]
fn forward_keeps_the_token() {
    let mut p = provider(ISS);
    p.forward = true;
    let f = filter(istio(vec![p]));
    let t = token();
    let mut req = parts("/", &[("authorization", &bearer(&t))]);
    assert!(f.authenticate(&mut req).unwrap().is_some());
    assert_eq!(req.headers["authorization"], bearer(&t).as_str());
}

#[test]
fn outputs_claim_headers_and_payload_header() {
    let mut p = provider(ISS);
    p.forward_payload_header = "x-jwt-payload".into();
    p.claim_to_headers = vec![
        jwt::JwtClaimToHeader {
            header_name: "x-sub".into(),
            claim_name: "sub".into(),
            ..Default::default()
        },
        jwt::JwtClaimToHeader {
            header_name: "x-level".into(),
            claim_name: "realm.level".into(),
            ..Default::default()
        },
        jwt::JwtClaimToHeader {
            header_name: "x-admin".into(),
            claim_name: "realm.admin".into(),
            ..Default::default()
        },
        jwt::JwtClaimToHeader {
            header_name: "x-groups".into(),
            claim_name: "groups".into(),
            ..Default::default()
        },
    ];
    let f = filter(istio(vec![p]));
    let t = token();
    let mut req = parts(
        "/",
        &[
            ("authorization", &bearer(&t)),
            ("x-sub", "forged"),
            ("x-groups", "forged"),
        ],
    );
    assert!(f.authenticate(&mut req).unwrap().is_some());
    assert_eq!(req.headers["x-sub"], "alice");
    assert_eq!(req.headers["x-level"], "3");
    assert_eq!(req.headers["x-admin"], "true");
    // A list is not written, and the client's value is gone.
    assert!(req.headers.get("x-groups").is_none());
    let payload = req.headers["x-jwt-payload"].to_str().unwrap();
    assert_eq!(payload, t.split('.').nth(1).unwrap());
    assert!(!payload.ends_with('='), "base64url without padding");
    // Without a token the forged output headers are removed too.
    let mut req = parts("/", &[("x-sub", "forged")]);
    assert_eq!(f.authenticate(&mut req).unwrap(), None);
    assert!(req.headers.get("x-sub").is_none());
}

/// Istio splits `scope` and `permission` (and the rule's `spaceDelimitedClaims`) at spaces for
/// authorization policies; headers keep the claim as the token has it.
#[test]
fn space_delimited_claims_are_split_in_the_result_only() {
    let mut p = provider(ISS);
    p.normalize_payload_in_metadata = Some(jwt::jwt_provider::NormalizePayload {
        space_delimited_claims: vec![
            "scope".into(),
            "roles".into(),
            "groups".into(),
            "provider.login.scope".into(),
        ],
    });
    p.claim_to_headers = vec![jwt::JwtClaimToHeader {
        header_name: "x-scope".into(),
        claim_name: "scope".into(),
        ..Default::default()
    }];
    let f = filter(istio(vec![p]));
    let mut payload = claims(ISS);
    payload["scope"] = json!("read  write\tadmin");
    payload["roles"] = json!("");
    payload["other"] = json!("a b");
    payload["provider"] = json!({"login": {"scope": "x y"}});
    let t = sign(Algorithm::RS256, "rsa", &payload);
    let mut req = parts("/", &[("authorization", &bearer(&t))]);
    let result = f.authenticate(&mut req).unwrap().expect("verified");
    assert_eq!(result.claims["scope"], json!(["read", "write", "admin"]));
    assert_eq!(
        result.claims["roles"],
        json!([]),
        "an empty string has no word"
    );
    assert_eq!(
        result.claims["groups"],
        json!(["dev"]),
        "a list stays a list"
    );
    assert_eq!(
        result.claims["other"],
        json!("a b"),
        "unnamed claims are whole"
    );
    assert_eq!(
        result.claims["provider"]["login"]["scope"],
        json!(["x", "y"]),
        "a nested claim by its path"
    );
    assert_eq!(req.headers["x-scope"], "read  write\tadmin");
}

#[test]
fn rules_cors_preflight_and_unusable_jwks() {
    // A path no rule covers is not checked.
    let mut c = istio(vec![provider(ISS)]);
    if let Some(rt::route_match::PathSpecifier::Prefix(p)) =
        &mut c.rules[0].r#match.as_mut().unwrap().path_specifier
    {
        *p = "/api".into();
    }
    let f = filter(c);
    let mut req = parts("/public", &[("authorization", "Bearer a.b.c")]);
    assert_eq!(f.authenticate(&mut req).unwrap(), None);
    let mut req = parts("/api/x", &[("authorization", "Bearer a.b.c")]);
    assert!(f.authenticate(&mut req).is_err());
    // CORS preflight is let through.
    let mut req = parts(
        "/api/x",
        &[
            ("authorization", "Bearer a.b.c"),
            ("origin", "http://a"),
            ("access-control-request-method", "GET"),
        ],
    );
    req.method = http::Method::OPTIONS;
    assert_eq!(f.authenticate(&mut req).unwrap(), None);
    // A JWKS without keys (the controller's fetch failed) or not a JWKS: tokens fail.
    for text in [r#"{"keys":[]}"#, "not json"] {
        let mut p = provider(ISS);
        p.jwks_source_specifier = Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(
            core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(text.into())),
                ..Default::default()
            },
        ));
        let f = filter(istio(vec![p]));
        assert_eq!(fails(&f, &token()), JwtError::NoMatchingKey, "{text}");
    }
}

fn reject(c: jwt::JwtAuthentication) -> String {
    JwtAuthn::try_from(c)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn conversion_rejects_what_it_cannot_honour() {
    let mut p = provider(ISS);
    p.jwks_source_specifier = Some(jwt::jwt_provider::JwksSourceSpecifier::RemoteJwks(
        Default::default(),
    ));
    let e = reject(istio(vec![p]));
    assert!(
        e.contains(r#"providers["origins-0"].remote_jwks"#) && e.contains("inlines"),
        "{e}"
    );
    type Edit = fn(&mut jwt::JwtProvider);
    let provider_cases: Vec<(Edit, &str)> = vec![
        (|p| p.subjects = Some(Default::default()), "subjects"),
        (|p| p.require_expiration = true, "require_expiration"),
        (
            |p| p.max_lifetime = Some(Default::default()),
            "max_lifetime",
        ),
        (
            |p| p.pad_forward_payload_header = true,
            "pad_forward_payload_header",
        ),
        (|p| p.header_in_metadata = "h".into(), "header_in_metadata"),
        (
            |p| p.failed_status_in_metadata = "f".into(),
            "failed_status_in_metadata",
        ),
        (
            |p| {
                p.normalize_payload_in_metadata = Some(jwt::jwt_provider::NormalizePayload {
                    space_delimited_claims: vec!["scope".into(), String::new()],
                })
            },
            "normalize_payload_in_metadata.space_delimited_claims[1]",
        ),
        (
            |p| {
                p.from_headers = vec![jwt::JwtHeader {
                    name: "bad header".into(),
                    value_prefix: String::new(),
                }]
            },
            "from_headers[0].name",
        ),
        (|p| p.jwks_source_specifier = None, "local_jwks"),
        (
            |p| {
                p.jwks_source_specifier = Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(
                    core::DataSource {
                        specifier: Some(core::data_source::Specifier::Filename("/j".into())),
                        ..Default::default()
                    },
                ))
            },
            "local_jwks.filename",
        ),
    ];
    for (set, field) in provider_cases {
        let mut p = provider(ISS);
        set(&mut p);
        let e = reject(istio(vec![p]));
        assert!(e.contains(field), "{field}: {e}");
    }
    let mut c = istio(vec![provider(ISS)]);
    c.filter_state_rules = Some(Default::default());
    assert!(reject(c).contains("filter_state_rules"));
    let mut c = istio(vec![provider(ISS)]);
    c.requirement_map.insert("r".into(), by_name("origins-0"));
    assert!(reject(c).contains("requirement_map"));
    let mut c = istio(vec![provider(ISS)]);
    c.rules[0].r#match.as_mut().unwrap().headers = vec![Default::default()];
    assert!(reject(c).contains("rules[0].headers"));
    let mut c = istio(vec![provider(ISS)]);
    c.rules[0].r#match.as_mut().unwrap().path_specifier =
        Some(rt::route_match::PathSpecifier::Path("/x".into()));
    assert!(reject(c).contains("rules[0].match"));
    let mut c = istio(vec![provider(ISS)]);
    c.rules[0].requirement_type = Some(jwt::requirement_rule::RequirementType::RequirementName(
        "r".into(),
    ));
    assert!(reject(c).contains("rules[0].requirement_name"));
    let c = config(vec![("a".into(), provider(ISS))], by_name("nope"));
    let e = reject(c);
    assert!(
        e.contains("rules[0].requires.provider_name") && e.contains("nope"),
        "{e}"
    );
    let c = config(
        vec![("a".into(), provider(ISS))],
        requirement(
            jwt::jwt_requirement::RequiresType::ExtractOnlyWithoutValidation(Default::default()),
        ),
    );
    assert!(reject(c).contains("extract_only_without_validation"));
}
