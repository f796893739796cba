//! Conversion tests: istiod-shaped RBAC configs are accepted; each unsupported field is rejected by name.
#![allow(deprecated)] // `metadata` and `source_ip`: deprecated in Envoy, still what istiod sends.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3 as m;
use envoy_types::pb::envoy::r#type::v3::Int32Range;
use envoy_types::pb::google::api::expr::v1alpha1 as cel;
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};

use super::test_support::*;
use super::{Action, Rbac};
use rbac::permission::Rule as R;
use rbac::principal::Identifier as I;
use rbac::rbac::Action as A;

fn reject(config: http_rbac::Rbac) -> String {
    Rbac::try_from(config)
        .expect_err("the config must be rejected")
        .to_string()
}

/// A config whose only policy has `permission` and `principal`.
fn with(permission: rbac::Permission, principal: rbac::Principal) -> http_rbac::Rbac {
    http_rbac(
        A::Allow,
        vec![("p", policy(vec![permission], vec![principal]))],
    )
}

pub fn uri_template(template: &str) -> rbac::Permission {
    perm(R::UriTemplate(core::TypedExtensionConfig {
        name: "envoy.path.match.uri_template.uri_template_matcher".into(),
        typed_config: Some(Any {
            type_url: UriTemplateMatchConfig::type_url(),
            value: UriTemplateMatchConfig {
                path_template: template.into(),
            }
            .encode_to_vec(),
        }),
    }))
}

#[test]
fn accepts_istiod_policies_sorted_by_name() {
    let config = http_rbac(
        A::Deny,
        vec![
            (
                "ns[foo]-policy[deny-admin]-rule[0]",
                policy(
                    vec![and_perms(vec![or_perms(vec![path_perm(prefix("/admin"))])])],
                    vec![and_perms_ids()],
                ),
            ),
            (
                "ns[foo]-policy[a-first]-rule[0]",
                policy(vec![any_perm()], vec![any_id()]),
            ),
        ],
    );
    let rbac = Rbac::try_from(config).expect("accepted");
    assert_eq!(rbac.action, Action::Deny);
    let names: Vec<&str> = rbac.policies.iter().map(|(n, _)| &**n).collect();
    assert_eq!(
        names,
        [
            "ns[foo]-policy[a-first]-rule[0]",
            "ns[foo]-policy[deny-admin]-rule[0]"
        ]
    );
}

fn and_perms_ids() -> rbac::Principal {
    id(I::AndIds(rbac::principal::Set {
        ids: vec![or_ids(vec![authenticated(regex(".*/ns/foo/.*"))])],
    }))
}

#[test]
fn absent_rules_enforce_nothing_and_stat_prefixes_are_ignored() {
    let rbac = Rbac::try_from(http_rbac::Rbac {
        rules_stat_prefix: "x".into(),
        ..Default::default()
    })
    .expect("accepted");
    assert_eq!((rbac.action, rbac.policies.len()), (Action::Log, 0));
    let net = net_rbac::Rbac {
        stat_prefix: "tcp.".into(),
        rules: http_rbac(
            A::Allow,
            vec![("p", policy(vec![any_perm()], vec![any_id()]))],
        )
        .rules,
        ..Default::default()
    };
    assert_eq!(Rbac::try_from(net).expect("accepted").action, Action::Allow);
}

#[test]
fn rejects_filter_fields_it_cannot_apply() {
    let mut c = with(any_perm(), any_id());
    c.shadow_rules = c.rules.clone();
    assert!(reject(c).contains("shadow_rules"));
    let mut c = with(any_perm(), any_id());
    c.matcher = Some(Default::default());
    assert!(reject(c).contains("matcher is not supported"));
    let mut c = with(any_perm(), any_id());
    c.shadow_matcher = Some(Default::default());
    assert!(reject(c).contains("shadow_matcher"));
    let mut c = with(any_perm(), any_id());
    if let Some(r) = &mut c.rules {
        r.audit_logging_options = Some(Default::default());
    }
    assert!(reject(c).contains("rules.audit_logging_options"));
    let mut c = with(any_perm(), any_id());
    if let Some(r) = &mut c.rules {
        r.action = 7;
    }
    assert!(reject(c).contains("rules.action"));
}

#[test]
fn rejects_network_filter_fields_it_cannot_apply() {
    let base = || net_rbac::Rbac {
        rules: with(any_perm(), any_id()).rules,
        ..Default::default()
    };
    let mut c = base();
    c.delay_deny = Some(Duration {
        seconds: 1,
        nanos: 0,
    });
    assert!(
        Rbac::try_from(c)
            .unwrap_err()
            .to_string()
            .contains("delay_deny")
    );
    let mut c = base();
    c.enforcement_type = net_rbac::rbac::EnforcementType::Continuous as i32;
    assert!(
        Rbac::try_from(c)
            .unwrap_err()
            .to_string()
            .contains("enforcement_type")
    );
    let mut c = base();
    c.shadow_rules = c.rules.clone();
    assert!(
        Rbac::try_from(c)
            .unwrap_err()
            .to_string()
            .contains("shadow_rules")
    );
}

#[test]
fn rejects_cel_conditions_naming_the_policy() {
    let mut p = policy(vec![any_perm()], vec![any_id()]);
    p.condition = Some(cel::Expr::default());
    let e = reject(http_rbac(A::Allow, vec![("ns[a]-policy[b]-rule[0]", p)]));
    assert!(
        e.contains(r#"rules.policies["ns[a]-policy[b]-rule[0]"].condition"#),
        "{e}"
    );
    let mut p = policy(vec![any_perm()], vec![any_id()]);
    p.checked_condition = Some(Default::default());
    assert!(reject(http_rbac(A::Allow, vec![("p", p)])).contains("condition"));
}

#[test]
fn rejects_unsupported_permission_and_principal_kinds() {
    let cases: Vec<(http_rbac::Rbac, &str)> = vec![
        (
            with(perm(R::Matcher(Default::default())), any_id()),
            r#"rules.policies["p"].permissions[0].matcher"#,
        ),
        (
            with(perm(R::SourcedMetadata(Default::default())), any_id()),
            "permissions[0].sourced_metadata",
        ),
        (
            with(any_perm(), id(I::FilterState(Default::default()))),
            "principals[0].filter_state",
        ),
        (
            with(any_perm(), id(I::Custom(Default::default()))),
            "principals[0].custom",
        ),
        (
            with(any_perm(), id(I::SourcedMetadata(Default::default()))),
            "principals[0].sourced_metadata",
        ),
        (
            with(
                or_perms(vec![any_perm(), perm(R::Matcher(Default::default()))]),
                any_id(),
            ),
            "permissions[0].or_rules.rules[1].matcher",
        ),
        (
            with(any_perm(), or_ids(vec![id(I::Custom(Default::default()))])),
            "principals[0].or_ids.ids[0].custom",
        ),
        (with(perm(R::Any(false)), any_id()), "permissions[0].any"),
        (
            with(rbac::Permission { rule: None }, any_id()),
            "permissions[0]",
        ),
        (
            http_rbac(A::Allow, vec![("p", policy(vec![], vec![any_id()]))]),
            "permissions: at least one permission",
        ),
        (
            http_rbac(A::Allow, vec![("p", policy(vec![any_perm()], vec![]))]),
            "principals: at least one principal",
        ),
    ];
    for (config, field) in cases {
        let e = reject(config);
        assert!(e.contains(field), "{field}: {e}");
    }
}

#[test]
fn rejects_bad_matcher_values_naming_the_field() {
    let cases: Vec<(http_rbac::Rbac, &str)> = vec![
        (
            with(perm(R::DestinationIp(cidr("10.0.0.300", 8))), any_id()),
            "destination_ip.address_prefix",
        ),
        (
            with(any_perm(), id(I::RemoteIp(cidr("10.0.0.0", 33)))),
            "remote_ip.prefix_len",
        ),
        (
            with(perm(R::DestinationPort(70000)), any_id()),
            "destination_port",
        ),
        (
            with(
                perm(R::DestinationPortRange(Int32Range { start: 9, end: 9 })),
                any_id(),
            ),
            "destination_port_range",
        ),
        (
            with(header_perm(":bogus", exact("x")), any_id()),
            "permissions[0].header",
        ),
        (
            with(path_perm(regex("(")), any_id()),
            "url_path.path.safe_regex",
        ),
        (
            with(uri_template("/a/**/*"), any_id()),
            "uri_template.path_template",
        ),
        (
            with(
                perm(R::UriTemplate(core::TypedExtensionConfig {
                    name: "x".into(),
                    typed_config: Some(Any {
                        type_url: "type.googleapis.com/some.Other".into(),
                        value: vec![],
                    }),
                })),
                any_id(),
            ),
            "uri_template extension",
        ),
        (
            with(
                any_perm(),
                id(I::Metadata(m::MetadataMatcher {
                    filter: "envoy.filters.http.jwt_authn".into(),
                    ..authn_metadata(&["x"], string_value(exact("a")))
                })),
            ),
            "metadata.filter",
        ),
        (
            with(
                any_perm(),
                id(I::Metadata(authn_metadata(
                    &["source.principal"],
                    string_value(exact("a")),
                ))),
            ),
            "metadata.path[0].key",
        ),
        (
            with(
                any_perm(),
                id(I::Metadata(authn_metadata(
                    &["request.auth.principal", "x"],
                    string_value(exact("a")),
                ))),
            ),
            "metadata.path",
        ),
    ];
    for (config, field) in cases {
        let e = reject(config);
        assert!(e.contains(field), "{field}: {e}");
    }
}
