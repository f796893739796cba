//! Evaluation tests: Envoy's RBAC semantics for every permission and principal kind.
#![allow(deprecated)] // `metadata` and `source_ip`: deprecated in Envoy, still what istiod sends.

use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::r#type::v3::Int32Range;
use serde_json::json;

use super::convert_tests::uri_template;
use super::test_support::*;
use super::{ConnFacts, Decision, Facts, Rbac, UriTemplate};
use crate::authn::AuthnResult;
use rbac::permission::Rule as R;
use rbac::principal::Identifier as I;
use rbac::rbac::Action as A;

fn conn() -> ConnFacts<'static> {
    ConnFacts {
        peer: "10.1.2.3:40000".parse().unwrap(),
        local: "10.9.0.1:9080".parse().unwrap(),
        principal: Some("spiffe://cluster.local/ns/foo/sa/sleep"),
        sni: Some("outbound_.9080_._.reviews.foo.svc.cluster.local"),
    }
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// An ALLOW filter with one policy: does it let the request through?
fn allows(permission: rbac::Permission, principal: rbac::Principal, facts: &Facts<'_>) -> bool {
    let rbac = Rbac::try_from(http_rbac(
        A::Allow,
        vec![("p", policy(vec![permission], vec![principal]))],
    ))
    .expect("valid config");
    !rbac.evaluate(facts).is_denied()
}

fn get(uri: &str) -> http::Request<()> {
    request("GET", uri, &[])
}

#[test]
fn actions_follow_envoy() {
    let req = get("http://reviews/");
    let facts = Facts::http(&req, conn(), None);
    let matching = || {
        vec![(
            "ns[foo]-policy[p]-rule[0]",
            policy(vec![any_perm()], vec![any_id()]),
        )]
    };
    let never = || {
        vec![(
            "ns[foo]-policy[q]-rule[0]",
            policy(vec![path_perm(exact("/nope"))], vec![any_id()]),
        )]
    };
    let eval = |action, policies| {
        let rbac = Rbac::try_from(http_rbac(action, policies)).unwrap();
        let d = rbac.evaluate(&facts);
        (
            d.is_denied(),
            d.policy().map(str::to_string),
            matches!(d, Decision::Audit { .. }),
        )
    };
    let p = Some("ns[foo]-policy[p]-rule[0]".to_string());
    assert_eq!(eval(A::Deny, matching()), (true, p.clone(), false));
    assert_eq!(eval(A::Deny, never()), (false, None, false));
    assert_eq!(eval(A::Allow, matching()), (false, p.clone(), false));
    assert_eq!(eval(A::Allow, never()), (true, None, false));
    // An ALLOW filter without policies denies everything.
    assert_eq!(eval(A::Allow, vec![]), (true, None, false));
    assert_eq!(eval(A::Log, matching()), (false, p, true));
    assert_eq!(eval(A::Log, never()), (false, None, false));
}

#[test]
fn a_policy_needs_a_permission_and_a_principal() {
    let req = get("http://reviews/api");
    let facts = Facts::http(&req, conn(), None);
    let rbac = Rbac::try_from(http_rbac(
        A::Allow,
        vec![(
            "p",
            policy(
                vec![path_perm(exact("/other")), path_perm(exact("/api"))],
                vec![authenticated(exact("spiffe://x")), any_id()],
            ),
        )],
    ))
    .unwrap();
    assert!(!rbac.evaluate(&facts).is_denied());
    let rbac = Rbac::try_from(http_rbac(
        A::Allow,
        vec![(
            "p",
            policy(
                vec![path_perm(exact("/api"))],
                vec![authenticated(exact("spiffe://x"))],
            ),
        )],
    ))
    .unwrap();
    assert!(rbac.evaluate(&facts).is_denied());
}

#[test]
fn permissions_header_path_and_combinators() {
    let req = request(
        "POST",
        "http://reviews.foo:9080/api/v1?x=1",
        &[("x-token", "a"), ("x-token", "b")],
    );
    let f = Facts::http(&req, conn(), None);
    // Multi-valued headers are joined with ",".
    assert!(allows(header_perm("x-token", exact("a,b")), any_id(), &f));
    assert!(!allows(header_perm("x-token", exact("a")), any_id(), &f));
    assert!(allows(header_perm(":method", exact("POST")), any_id(), &f));
    assert!(allows(
        header_perm(":authority", prefix("reviews.foo")),
        any_id(),
        &f
    ));
    // :path has the query; url_path does not.
    assert!(allows(
        header_perm(":path", exact("/api/v1?x=1")),
        any_id(),
        &f
    ));
    assert!(allows(path_perm(exact("/api/v1")), any_id(), &f));
    assert!(!allows(path_perm(exact("/api/v1?x=1")), any_id(), &f));
    assert!(allows(
        and_perms(vec![
            path_perm(prefix("/api")),
            header_perm(":method", exact("POST"))
        ]),
        any_id(),
        &f
    ));
    assert!(!allows(
        and_perms(vec![
            path_perm(prefix("/api")),
            header_perm(":method", exact("GET"))
        ]),
        any_id(),
        &f
    ));
    assert!(allows(
        or_perms(vec![path_perm(exact("/x")), path_perm(prefix("/api/"))]),
        any_id(),
        &f
    ));
    assert!(allows(
        perm(R::NotRule(Box::new(path_perm(exact("/x"))))),
        any_id(),
        &f
    ));
    assert!(!allows(
        perm(R::NotRule(Box::new(path_perm(prefix("/api"))))),
        any_id(),
        &f
    ));
}

#[test]
fn permissions_destination_and_sni() {
    let req = get("http://reviews/");
    let f = Facts::http(&req, conn(), None);
    assert!(allows(perm(R::DestinationPort(9080)), any_id(), &f));
    assert!(!allows(perm(R::DestinationPort(80)), any_id(), &f));
    let range = |start, end| perm(R::DestinationPortRange(Int32Range { start, end }));
    assert!(allows(range(9000, 9081), any_id(), &f));
    assert!(!allows(range(9000, 9080), any_id(), &f));
    assert!(allows(
        perm(R::DestinationIp(cidr("10.9.0.0", 16))),
        any_id(),
        &f
    ));
    assert!(!allows(
        perm(R::DestinationIp(cidr("10.8.0.0", 16))),
        any_id(),
        &f
    ));
    assert!(allows(
        perm(R::RequestedServerName(prefix("outbound_.9080_"))),
        any_id(),
        &f
    ));
    // Without SNI the server name is empty.
    let plain = ConnFacts {
        sni: None,
        ..conn()
    };
    let f = Facts::http(&req, plain, None);
    assert!(allows(
        perm(R::RequestedServerName(exact(""))),
        any_id(),
        &f
    ));
}

#[test]
fn principals_identity_and_addresses() {
    let req = get("http://reviews/");
    let f = Facts::http(&req, conn(), None);
    // Istio's shapes: exact principal, namespace regex, "*" as any authenticated peer.
    assert!(allows(
        any_perm(),
        authenticated(exact("spiffe://cluster.local/ns/foo/sa/sleep")),
        &f
    ));
    assert!(allows(any_perm(), authenticated(regex(".*/ns/foo/.*")), &f));
    assert!(!allows(
        any_perm(),
        authenticated(regex(".*/ns/bar/.*")),
        &f
    ));
    let any_peer = id(I::Authenticated(rbac::principal::Authenticated {
        principal_name: None,
    }));
    assert!(allows(any_perm(), any_peer.clone(), &f));
    // A plaintext peer is not authenticated, whatever the matcher.
    let plain = ConnFacts {
        principal: None,
        ..conn()
    };
    let pf = Facts::http(&req, plain, None);
    assert!(!allows(any_perm(), any_peer, &pf));
    assert!(!allows(any_perm(), authenticated(regex(".+")), &pf));
    assert!(allows(
        any_perm(),
        id(I::NotId(Box::new(authenticated(regex(".+"))))),
        &pf
    ));
    // Addresses: the direct peer is the remote address too.
    assert!(allows(
        any_perm(),
        id(I::DirectRemoteIp(cidr("10.1.2.3", 32))),
        &f
    ));
    assert!(allows(
        any_perm(),
        id(I::RemoteIp(cidr("10.1.0.0", 16))),
        &f
    ));
    #[allow(deprecated)]
    let source = id(I::SourceIp(cidr("10.0.0.0", 8)));
    assert!(allows(any_perm(), source, &f));
    assert!(!allows(
        any_perm(),
        id(I::DirectRemoteIp(cidr("10.1.2.4", 32))),
        &f
    ));
    assert!(!allows(
        any_perm(),
        id(I::DirectRemoteIp(cidr("::1", 128))),
        &f
    ));
    // A forwarded address is not trusted.
    let fwd = request(
        "GET",
        "http://reviews/",
        &[("x-forwarded-for", "192.168.0.1")],
    );
    let ff = Facts::http(&fwd, conn(), None);
    assert!(!allows(
        any_perm(),
        id(I::RemoteIp(cidr("192.168.0.1", 32))),
        &ff
    ));
    // Header and path principals.
    let req = request("GET", "http://reviews/p", &[("x-user", "jason")]);
    let f = Facts::http(&req, conn(), None);
    assert!(allows(
        any_perm(),
        id(I::Header(header("x-user", exact("jason")))),
        &f
    ));
    assert!(allows(
        any_perm(),
        id(I::UrlPath(
            envoy_types::pb::envoy::r#type::matcher::v3::PathMatcher {
                rule: Some(
                    envoy_types::pb::envoy::r#type::matcher::v3::path_matcher::Rule::Path(exact(
                        "/p"
                    ))
                ),
            }
        )),
        &f
    ));
    // And/or of principals.
    assert!(allows(
        any_perm(),
        id(I::AndIds(rbac::principal::Set {
            ids: vec![
                authenticated(regex(".*/ns/foo/.*")),
                id(I::Header(header("x-user", exact("jason"))))
            ]
        })),
        &f
    ));
}

#[test]
fn ipv6_and_mapped_addresses() {
    let req = get("http://reviews/");
    let v6 = ConnFacts {
        peer: "[2001:db8::5]:1".parse().unwrap(),
        ..conn()
    };
    let f = Facts::http(&req, v6, None);
    assert!(allows(
        any_perm(),
        id(I::DirectRemoteIp(cidr("2001:db8::", 32))),
        &f
    ));
    assert!(!allows(
        any_perm(),
        id(I::DirectRemoteIp(cidr("10.0.0.0", 8))),
        &f
    ));
    let mapped = ConnFacts {
        peer: "[::ffff:10.1.2.3]:1".parse().unwrap(),
        ..conn()
    };
    let f = Facts::http(&req, mapped, None);
    assert!(allows(
        any_perm(),
        id(I::DirectRemoteIp(cidr("10.1.2.3", 32))),
        &f
    ));
    // A range without a prefix length is /0 (Envoy's default).
    let all = envoy_types::pb::envoy::config::core::v3::CidrRange {
        address_prefix: "192.168.1.1".into(),
        prefix_len: None,
    };
    assert!(allows(any_perm(), id(I::DirectRemoteIp(all)), &f));
}

fn authn() -> AuthnResult {
    AuthnResult {
        principal: Some("https://issuer.example/alice".into()),
        audiences: vec!["bookstore".into(), "admin".into()],
        presenter: Some("web-client".into()),
        claims: json!({
            "iss": "https://issuer.example",
            "sub": "alice",
            "aud": ["bookstore", "admin"],
            "azp": "web-client",
            "groups": ["dev", "ops"],
            "role": "editor",
            "realm": {"access": {"roles": ["reader"]}, "level": 3, "admin": true},
        }),
    }
}

#[test]
fn metadata_reads_the_verified_jwt() {
    use envoy_types::pb::envoy::r#type::matcher::v3 as m;
    let req = get("http://reviews/");
    let result = authn();
    let f = Facts::http(&req, conn(), Some(&result));
    let none = Facts::http(&req, conn(), None);
    let meta = |keys: &[&str], v| id(I::Metadata(authn_metadata(keys, v)));
    let principal = meta(
        &["request.auth.principal"],
        string_value(exact("https://issuer.example/alice")),
    );
    assert!(allows(any_perm(), principal.clone(), &f));
    // No token: no metadata, requestPrincipals never match (and their negation does).
    assert!(!allows(any_perm(), principal.clone(), &none));
    assert!(allows(any_perm(), id(I::NotId(Box::new(principal))), &none));
    assert!(allows(
        any_perm(),
        meta(
            &["request.auth.presenter"],
            string_value(exact("web-client"))
        ),
        &f
    ));
    // aud is a list here: a string matcher matches any of it.
    assert!(allows(
        any_perm(),
        meta(&["request.auth.audiences"], string_value(exact("admin"))),
        &f
    ));
    // Claims: list or string, with istiod's list_match.one_of; nested claims by path.
    let claim = |path: &[&str], v: &str| {
        let mut keys = vec!["request.auth.claims"];
        keys.extend_from_slice(path);
        meta(&keys, list_of_string(exact(v)))
    };
    assert!(allows(any_perm(), claim(&["groups"], "ops"), &f));
    assert!(!allows(any_perm(), claim(&["groups"], "qa"), &f));
    assert!(allows(any_perm(), claim(&["role"], "editor"), &f));
    assert!(allows(
        any_perm(),
        claim(&["realm", "access", "roles"], "reader"),
        &f
    ));
    assert!(!allows(
        any_perm(),
        claim(&["realm", "missing"], "reader"),
        &f
    ));
    assert!(allows(
        any_perm(),
        meta(
            &["request.auth.claims", "role"],
            string_value(exact("editor"))
        ),
        &f
    ));
    // Other value matchers and invert.
    let v = |p| p;
    assert!(allows(
        any_perm(),
        meta(
            &["request.auth.claims", "realm", "admin"],
            v(m::value_matcher::MatchPattern::BoolMatch(true))
        ),
        &f
    ));
    assert!(allows(
        any_perm(),
        meta(
            &["request.auth.claims", "realm", "level"],
            v(m::value_matcher::MatchPattern::DoubleMatch(
                m::DoubleMatcher {
                    match_pattern: Some(m::double_matcher::MatchPattern::Range(
                        envoy_types::pb::envoy::r#type::v3::DoubleRange {
                            start: 1.0,
                            end: 5.0
                        }
                    )),
                }
            ))
        ),
        &f
    ));
    assert!(allows(
        any_perm(),
        meta(
            &["request.auth.claims", "realm"],
            v(m::value_matcher::MatchPattern::PresentMatch(true))
        ),
        &f
    ));
    let mut inverted = authn_metadata(
        &["request.auth.claims", "role"],
        string_value(exact("editor")),
    );
    inverted.invert = true;
    assert!(!allows(any_perm(), id(I::Metadata(inverted.clone())), &f));
    assert!(allows(any_perm(), id(I::Metadata(inverted)), &none));
}

#[test]
fn network_evaluation_ignores_http_rules() {
    let f = Facts::network(conn());
    let result = authn();
    let mut with_authn = Facts::network(conn());
    with_authn.authn = Some(&result);
    assert!(!allows(header_perm(":method", exact("GET")), any_id(), &f));
    assert!(!allows(path_perm(prefix("/")), any_id(), &f));
    assert!(!allows(uri_template("/**"), any_id(), &f));
    assert!(!allows(
        any_perm(),
        id(I::Metadata(authn_metadata(
            &["request.auth.principal"],
            string_value(prefix(""))
        ))),
        &with_authn
    ));
    assert!(!allows(
        any_perm(),
        id(I::Header(header("x", prefix("")))),
        &f
    ));
    // The connection's facts still count.
    assert!(allows(perm(R::DestinationPort(9080)), any_id(), &f));
    assert!(allows(any_perm(), authenticated(regex(".*/ns/foo/.*")), &f));
}

#[test]
fn uri_templates_match_as_envoy_documents() {
    let t = |s: &str| UriTemplate::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    // Envoy's documented examples.
    assert!(t("/videos/*/*/*.m4s").matches("/videos/123414/hls/1080p5000_00001.m4s"));
    assert!(t("/videos/{file}").matches("/videos/1080p5000_00001.m4s"));
    assert!(t("/**.mpd").matches("/content/123/india/dash/55/manifest.mpd"));
    // `*` is exactly one non-empty segment; `**` any number.
    assert!(!t("/videos/*").matches("/videos/a/b"));
    assert!(!t("/videos/*").matches("/videos/"));
    assert!(t("/videos/**").matches("/videos/a/b"));
    assert!(t("/videos/**").matches("/videos/"));
    assert!(!t("/videos/**").matches("/other/a"));
    // Istio's {*} and {**}.
    assert!(t("/api/*/reviews").matches("/api/v1/reviews"));
    assert!(!t("/api/*/reviews").matches("/api/v1/x/reviews"));
    // Named variables with patterns.
    assert!(t("/api/{version=v1/*}/items").matches("/api/v1/x/items"));
    assert!(!t("/api/{version=v1/*}/items").matches("/api/v2/x/items"));
    assert!(t("/files/{path=**}").matches("/files/a/b/c.txt"));
    assert!(t("/a/").matches("/a/"));
    assert!(!t("/a/").matches("/a"));
    // Literals are literal.
    assert!(t("/a.b").matches("/a.b"));
    assert!(!t("/a.b").matches("/axb"));
    // Bad templates, as Envoy refuses them.
    for bad in [
        "videos",
        "/a/**/*",
        "/a/**/{x}",
        "/{x}/{x}",
        "/a b",
        "/a*b",
        "/{1x}",
        "/a//b",
        "/{x=}",
        "/{x=*.mp4}",
        "/{a}/{b}/{c}/{d}/{e}/{f}",
    ] {
        assert!(UriTemplate::parse(bad).is_err(), "{bad} must be refused");
    }
    // A uri_template permission reads the path without query.
    let req = get("http://reviews/videos/a/b.mp4?x=1");
    let f = Facts::http(&req, conn(), None);
    assert!(allows(uri_template("/videos/**.mp4"), any_id(), &f));
}
