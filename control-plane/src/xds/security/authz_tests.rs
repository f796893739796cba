//! AuthorizationPolicy → RBAC: every field against what istiod generates for the same policy
//! (istio/istio `pilot/pkg/security/authz/builder/testdata/http/allow-full-rule-*.yaml`, with
//! the contract's differences: request principals on `istio_authn` metadata, service accounts
//! as exact identities, suffix principals as suffix matches), the
//! `*` and `not*` forms, policies without rules, what cannot be translated, and the filter
//! order.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, permission, principal, rbac,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use prost::Message;

use super::{http_filter, rbac_filters};
use crate::model::{MeshSettings, Model};
use crate::testing::{config_from_yaml, model_from_yaml};
use crate::xds::proxy::Proxy;
use crate::xds::security::expect::*;

fn proxy(namespace: &str, labels: &[(&str, &str)]) -> Proxy {
    let mut proxy = Proxy::sidecar(namespace);
    proxy.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    proxy.app_port = Some(9080);
    proxy
}

/// The RBAC filters generated for `proxy`, decoded: (action, policies by name).
fn rbac_of(model: &Model, proxy: &Proxy) -> Vec<(rbac::Action, BTreeMap<String, Policy>)> {
    rbac_filters(model, proxy)
        .iter()
        .map(|filter| {
            assert_eq!(filter.name, "envoy.filters.http.rbac");
            let Some(http_filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                panic!("typed config expected");
            };
            assert_eq!(
                any.type_url,
                "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
            );
            let config = Rbac::decode(any.value.as_slice()).expect("decodes");
            let rules = config.rules.expect("rules");
            (
                rbac::Action::try_from(rules.action).expect("action"),
                rules.policies.into_iter().collect(),
            )
        })
        .collect()
}

/// istiod's `allow-full-rule-in.yaml`, less its `experimental.envoy.filters` condition (tested
/// on its own below).
const FULL_RULE: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-1, namespace: foo}
spec:
  selector:
    matchLabels: {app: httpbin, version: v1}
  rules:
  - from:
    - source:
        serviceAccounts: ["my-ns/my-sa", "sa-only"]
        notServiceAccounts: ["my-ns/my-sa-not", "sa-not-only"]
  - from:
    - source:
        principals: ["principal", "principal-prefix-*", "*-suffix-principal", "*"]
        requestPrincipals: ["requestPrincipals", "requestPrincipals-prefix-*", "*-suffix-requestPrincipals", "*"]
        namespaces: ["ns", "ns-prefix-*", "*-ns-suffix", "*"]
        ipBlocks: ["1.2.3.4", "5.6.0.0/16"]
        remoteIpBlocks: ["1.2.3.4", "5.6.0.0/16"]
        notPrincipals: ["not-principal", "not-principal-prefix-*", "*-not-suffix-principal", "*"]
        notRequestPrincipals: ["not-requestPrincipals", "not-requestPrincipals-prefix-*", "*-not-suffix-requestPrincipals", "*"]
        notNamespaces: ["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]
        notIpBlocks: ["9.0.0.1", "9.2.0.0/16"]
        notRemoteIpBlocks: ["9.0.0.1", "9.2.0.0/16"]
    to:
    - operation:
        methods: ["method", "method-prefix-*", "*-suffix-method", "*"]
        hosts: ["exact.com", "*.suffix.com", "prefix.*", "*"]
        ports: ["80", "90"]
        paths: ["/exact", "/prefix/*", "*/suffix", "*", "/path/template/{*}", "/{**}/path/template"]
        notMethods: ["not-method", "not-method-prefix-*", "*-not-suffix-method", "*"]
        notHosts: ["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]
        notPorts: ["8000", "9000"]
        notPaths: ["/not-exact", "/not-prefix/*", "*/not-suffix", "*", "/not-path/template/{*}", "/{**}/not-path/template"]
    when:
    - key: "request.headers[X-header]"
      values: ["header", "header-prefix-*", "*-suffix-header", "*"]
      notValues: ["not-header", "not-header-prefix-*", "*-not-suffix-header", "*"]
    - key: "source.ip"
      values: ["10.10.10.10", "192.168.10.0/24"]
      notValues: ["90.10.10.10", "90.168.10.0/24"]
    - key: "remote.ip"
      values: ["10.10.10.10", "192.168.10.0/24"]
      notValues: ["90.10.10.10", "90.168.10.0/24"]
    - key: "source.namespace"
      values: ["ns", "ns-prefix-*", "*-ns-suffix", "*"]
      notValues: ["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]
    - key: "source.principal"
      values: ["principal", "principal-prefix-*", "*-suffix-principal", "*"]
      notValues: ["not-principal", "not-principal-prefix-*", "*-not-suffix-principal", "*"]
    - key: "request.auth.principal"
      values: ["requestPrincipals", "requestPrincipals-prefix-*", "*-suffix-requestPrincipals", "*", "https://example.com/*"]
      notValues: ["not-requestPrincipals", "not-requestPrincipals-prefix-*", "*-not-suffix-requestPrincipals", "*"]
    - key: "request.auth.audiences"
      values: ["audiences", "audiences-prefix-*", "*-suffix-audiences", "*"]
      notValues: ["not-audiences", "not-audiences-prefix-*", "*-not-suffix-audiences", "*"]
    - key: "request.auth.presenter"
      values: ["presenter", "presenter-prefix-*", "*-suffix-presenter", "*"]
      notValues: ["not-presenter", "not-presenter-prefix-*", "*-not-suffix-presenter", "*"]
    - key: "request.auth.claims[iss]"
      values: ["iss", "iss-prefix-*", "*-suffix-iss", "*"]
      notValues: ["not-iss", "not-iss-prefix-*", "*-not-suffix-iss", "*"]
    - key: "request.auth.claims[nested1][nested2]"
      values: ["nested", "nested-prefix-*", "*-suffix-nested", "*"]
      notValues: ["not-nested", "not-nested-prefix-*", "*-not-suffix-nested", "*"]
    - key: "destination.ip"
      values: ["10.10.10.10", "192.168.10.0/24"]
      notValues: ["90.10.10.10", "90.168.10.0/24"]
    - key: "destination.port"
      values: ["91", "92"]
      notValues: ["9001", "9002"]
    - key: "connection.sni"
      values: ["exact.com", "*.suffix.com", "prefix.*", "*"]
      notValues: ["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]
"#;

fn full_rule_policies() -> BTreeMap<String, Policy> {
    let model = model_from_yaml(FULL_RULE);
    assert!(model.warnings.is_empty(), "{:#?}", model.warnings);
    let mut filters = rbac_of(
        &model,
        &proxy("foo", &[("app", "httpbin"), ("version", "v1")]),
    );
    assert_eq!(filters.len(), 1, "one ALLOW filter");
    let (action, policies) = filters.remove(0);
    assert_eq!(action, rbac::Action::Allow);
    assert_eq!(
        policies.keys().collect::<Vec<_>>(),
        [
            "ns[foo]-policy[httpbin-1]-rule[0]",
            "ns[foo]-policy[httpbin-1]-rule[1]"
        ]
    );
    policies
}

#[test]
fn service_accounts_are_exact_identities_in_the_trust_domain() {
    let policies = full_rule_policies();
    let rule = &policies["ns[foo]-policy[httpbin-1]-rule[0]"];
    assert_eq!(rule.permissions, [p_and(vec![p_any()])]);
    assert_eq!(
        rule.principals,
        [i_and(
            i_pair(
                vec![
                    i_auth(exact("spiffe://cluster.local/ns/my-ns/sa/my-sa")),
                    i_auth(exact("spiffe://cluster.local/ns/foo/sa/sa-only")),
                ],
                vec![
                    i_auth(exact("spiffe://cluster.local/ns/my-ns/sa/my-sa-not")),
                    i_auth(exact("spiffe://cluster.local/ns/foo/sa/sa-not-only")),
                ],
            )
            .into()
        )]
    );

    // Another trust domain.
    let settings = MeshSettings {
        trust_domain: "example.org".to_string(),
        ..MeshSettings::default()
    };
    let model = Model::build(&config_from_yaml(FULL_RULE), &settings);
    let (_, policies) = rbac_of(
        &model,
        &proxy("foo", &[("app", "httpbin"), ("version", "v1")]),
    )
    .remove(0);
    let principals = &policies["ns[foo]-policy[httpbin-1]-rule[0]"].principals;
    let Some(principal::Identifier::AndIds(set)) = &principals[0].identifier else {
        panic!("and_ids expected: {principals:?}");
    };
    assert_eq!(
        set.ids[0],
        i_or(vec![
            i_auth(exact("spiffe://example.org/ns/my-ns/sa/my-sa")),
            i_auth(exact("spiffe://example.org/ns/foo/sa/sa-only")),
        ])
    );
}

#[test]
fn every_operation_and_permission_condition_field_matches_istiod() {
    let policies = full_rule_policies();
    let rule = &policies["ns[foo]-policy[httpbin-1]-rule[1]"];
    let authority = |m: StringMatcher| p_header(header(":authority", ignore_case(m)));
    let method = |m: StringMatcher| p_header(header(":method", m));
    let mut expected = Vec::new();
    // hosts: case-insensitive; an exact host only exactly (no port); `*` is present.
    expected.extend(p_pair(
        vec![
            authority(exact("exact.com")),
            authority(suffix(".suffix.com")),
            authority(prefix("prefix.")),
            p_header(present(":authority")),
        ],
        vec![
            authority(exact("not-exact.com")),
            authority(suffix(".not-suffix.com")),
            authority(prefix("not-prefix.")),
            p_header(present(":authority")),
        ],
    ));
    expected.extend(p_pair(
        vec![
            method(exact("method")),
            method(prefix("method-prefix-")),
            method(suffix("-suffix-method")),
            p_header(present(":method")),
        ],
        vec![
            method(exact("not-method")),
            method(prefix("not-method-prefix-")),
            method(suffix("-not-suffix-method")),
            p_header(present(":method")),
        ],
    ));
    let mut paths: Vec<Permission> = forms("/exact", "/prefix/", "/suffix")
        .into_iter()
        .map(p_path)
        .collect();
    paths.extend([
        p_template("/path/template/*"),
        p_template("/**/path/template"),
    ]);
    let mut not_paths: Vec<Permission> = forms("/not-exact", "/not-prefix/", "/not-suffix")
        .into_iter()
        .map(p_path)
        .collect();
    not_paths.extend([
        p_template("/not-path/template/*"),
        p_template("/**/not-path/template"),
    ]);
    expected.extend(p_pair(paths, not_paths));
    expected.extend(p_pair(
        vec![p_port(80), p_port(90)],
        vec![p_port(8000), p_port(9000)],
    ));
    // `when` conditions on the operation, in order.
    expected.extend(p_pair(
        vec![p_ip("10.10.10.10", 32), p_ip("192.168.10.0", 24)],
        vec![p_ip("90.10.10.10", 32), p_ip("90.168.10.0", 24)],
    ));
    expected.extend(p_pair(
        vec![p_port(91), p_port(92)],
        vec![p_port(9001), p_port(9002)],
    ));
    expected.extend(p_pair(
        vec![
            p_sni(exact("exact.com")),
            p_sni(suffix(".suffix.com")),
            p_sni(prefix("prefix.")),
            p_sni(regex(".+")),
        ],
        vec![
            p_sni(exact("not-exact.com")),
            p_sni(suffix(".not-suffix.com")),
            p_sni(prefix("not-prefix.")),
            p_sni(regex(".+")),
        ],
    ));
    assert_eq!(rule.permissions.len(), 1, "one `to`");
    let Some(permission::Rule::AndRules(set)) = &rule.permissions[0].rule else {
        panic!("and_rules expected");
    };
    assert_eq!(set.rules.len(), expected.len());
    for (index, (got, want)) in set.rules.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "permission {index}");
    }
}

#[test]
fn every_source_and_principal_condition_field_matches_istiod() {
    let policies = full_rule_policies();
    let rule = &policies["ns[foo]-policy[httpbin-1]-rule[1]"];
    let spiffe = |e: &str, p: &str, s: &str| -> Vec<Principal> {
        vec![
            i_auth(exact(&format!("spiffe://{e}"))),
            i_auth(prefix(&format!("spiffe://{p}"))),
            i_auth(suffix(s)),
            i_auth(regex(".+")),
        ]
    };
    let namespaces = |e: &str, p: &str, s: &str| -> Vec<Principal> {
        [
            format!(".*/ns/{e}/.*"),
            format!(".*/ns/{p}.*/.*"),
            format!(".*/ns/.*{s}/.*"),
            ".*/ns/.*/.*".to_string(),
        ]
        .iter()
        .map(|r| i_auth(regex(r)))
        .collect()
    };
    let authn = |key: &'static str, e: &str, p: &str, s: &str| -> Vec<Principal> {
        forms(e, p, s)
            .into_iter()
            .map(|m| i_authn(key, m))
            .collect()
    };
    let claim = |keys: &'static [&'static str], e: &str, p: &str, s: &str| -> Vec<Principal> {
        forms(e, p, s)
            .into_iter()
            .map(|m| i_claim(keys, m))
            .collect()
    };
    let x_header = |e: &str, p: &str, s: &str| -> Vec<Principal> {
        vec![
            i_header(header("X-header", exact(e))),
            i_header(header("X-header", prefix(p))),
            i_header(header("X-header", suffix(s))),
            i_header(present("X-header")),
        ]
    };
    let mut expected = Vec::new();
    // The source, in istiod's order: principals, request principals, namespaces, remote IPs,
    // peer IPs.
    expected.extend(i_pair(
        spiffe("principal", "principal-prefix-", "-suffix-principal"),
        spiffe(
            "not-principal",
            "not-principal-prefix-",
            "-not-suffix-principal",
        ),
    ));
    expected.extend(i_pair(
        authn(
            "request.auth.principal",
            "requestPrincipals",
            "requestPrincipals-prefix-",
            "-suffix-requestPrincipals",
        ),
        authn(
            "request.auth.principal",
            "not-requestPrincipals",
            "not-requestPrincipals-prefix-",
            "-not-suffix-requestPrincipals",
        ),
    ));
    expected.extend(i_pair(
        namespaces("ns", "ns-prefix-", "-ns-suffix"),
        namespaces("not-ns", "not-ns-prefix-", "-not-ns-suffix"),
    ));
    expected.extend(i_pair(
        vec![i_remote("1.2.3.4", 32), i_remote("5.6.0.0", 16)],
        vec![i_remote("9.0.0.1", 32), i_remote("9.2.0.0", 16)],
    ));
    expected.extend(i_pair(
        vec![i_direct("1.2.3.4", 32), i_direct("5.6.0.0", 16)],
        vec![i_direct("9.0.0.1", 32), i_direct("9.2.0.0", 16)],
    ));
    // Then the `when` conditions on the source, in order.
    expected.extend(i_pair(
        x_header("header", "header-prefix-", "-suffix-header"),
        x_header("not-header", "not-header-prefix-", "-not-suffix-header"),
    ));
    expected.extend(i_pair(
        vec![i_direct("10.10.10.10", 32), i_direct("192.168.10.0", 24)],
        vec![i_direct("90.10.10.10", 32), i_direct("90.168.10.0", 24)],
    ));
    expected.extend(i_pair(
        vec![i_remote("10.10.10.10", 32), i_remote("192.168.10.0", 24)],
        vec![i_remote("90.10.10.10", 32), i_remote("90.168.10.0", 24)],
    ));
    expected.extend(i_pair(
        namespaces("ns", "ns-prefix-", "-ns-suffix"),
        namespaces("not-ns", "not-ns-prefix-", "-not-ns-suffix"),
    ));
    expected.extend(i_pair(
        spiffe("principal", "principal-prefix-", "-suffix-principal"),
        spiffe(
            "not-principal",
            "not-principal-prefix-",
            "-not-suffix-principal",
        ),
    ));
    let mut request_principals = authn(
        "request.auth.principal",
        "requestPrincipals",
        "requestPrincipals-prefix-",
        "-suffix-requestPrincipals",
    );
    request_principals.push(i_authn(
        "request.auth.principal",
        prefix("https://example.com/"),
    ));
    expected.extend(i_pair(
        request_principals,
        authn(
            "request.auth.principal",
            "not-requestPrincipals",
            "not-requestPrincipals-prefix-",
            "-not-suffix-requestPrincipals",
        ),
    ));
    expected.extend(i_pair(
        authn(
            "request.auth.audiences",
            "audiences",
            "audiences-prefix-",
            "-suffix-audiences",
        ),
        authn(
            "request.auth.audiences",
            "not-audiences",
            "not-audiences-prefix-",
            "-not-suffix-audiences",
        ),
    ));
    expected.extend(i_pair(
        authn(
            "request.auth.presenter",
            "presenter",
            "presenter-prefix-",
            "-suffix-presenter",
        ),
        authn(
            "request.auth.presenter",
            "not-presenter",
            "not-presenter-prefix-",
            "-not-suffix-presenter",
        ),
    ));
    const ISS: &[&str] = &["request.auth.claims", "iss"];
    const NESTED: &[&str] = &["request.auth.claims", "nested1", "nested2"];
    expected.extend(i_pair(
        claim(ISS, "iss", "iss-prefix-", "-suffix-iss"),
        claim(ISS, "not-iss", "not-iss-prefix-", "-not-suffix-iss"),
    ));
    expected.extend(i_pair(
        claim(NESTED, "nested", "nested-prefix-", "-suffix-nested"),
        claim(
            NESTED,
            "not-nested",
            "not-nested-prefix-",
            "-not-suffix-nested",
        ),
    ));
    assert_eq!(rule.principals.len(), 1, "one `from`");
    let Some(principal::Identifier::AndIds(set)) = &rule.principals[0].identifier else {
        panic!("and_ids expected");
    };
    assert_eq!(set.ids.len(), expected.len());
    for (index, (got, want)) in set.ids.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "principal {index}");
    }
}

#[test]
fn several_from_and_to_are_alternatives_each_with_the_conditions() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: multi, namespace: foo}
spec:
  rules:
  - from:
    - source: {namespaces: [a]}
    - source: {ipBlocks: ["10.0.0.0/8"]}
    to:
    - operation: {methods: [GET]}
    - operation: {ports: ["8080"]}
    when:
    - {key: "request.headers[x-token]", values: [secret]}
    - {key: destination.port, notValues: ["9090"]}
  - {}
"#,
    );
    let (_, policies) = rbac_of(&model, &proxy("foo", &[])).remove(0);
    let rule = &policies["ns[foo]-policy[multi]-rule[0]"];
    let token = i_or(vec![i_header(header("x-token", exact("secret")))]);
    assert_eq!(
        rule.principals,
        [
            i_and(vec![i_or(vec![i_auth(regex(".*/ns/a/.*"))]), token.clone()]),
            i_and(vec![i_or(vec![i_direct("10.0.0.0", 8)]), token]),
        ]
    );
    let not_9090 = p_not(p_or(vec![p_port(9090)]));
    assert_eq!(
        rule.permissions,
        [
            p_and(vec![
                p_or(vec![p_header(header(":method", exact("GET")))]),
                not_9090.clone()
            ]),
            p_and(vec![p_or(vec![p_port(8080)]), not_9090]),
        ]
    );
    // An empty rule matches everything.
    let empty = &policies["ns[foo]-policy[multi]-rule[1]"];
    assert_eq!(empty.permissions, [p_and(vec![p_any()])]);
    assert_eq!(empty.principals, [i_and(vec![i_any()])]);
}

#[test]
fn ipv6_blocks_and_bare_addresses() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: v6, namespace: foo}
spec:
  rules:
  - from: [{source: {ipBlocks: ["2001:db8::1", "2001:db8::/32"]}}]
"#,
    );
    let (_, policies) = rbac_of(&model, &proxy("foo", &[])).remove(0);
    assert_eq!(
        policies["ns[foo]-policy[v6]-rule[0]"].principals,
        [i_and(vec![i_or(vec![
            i_direct("2001:db8::1", 128),
            i_direct("2001:db8::", 32)
        ])])]
    );
}

/// Istio matches `hosts` as written: an exact host is not also matched with a port (its docs:
/// "exact match authorization policies only match the exact string given for the hosts or
/// notHosts fields"; write `h:*` for the ports), a host with a port only with that port.
#[test]
fn exact_hosts_do_not_match_other_ports() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: hosts, namespace: foo}
spec:
  rules:
  - to: [{operation: {hosts: ["httpbin.foo", "httpbin.foo:*", "api.foo:8080"], notHosts: ["admin.foo"]}}]
"#,
    );
    let (_, policies) = rbac_of(&model, &proxy("foo", &[])).remove(0);
    let authority = |m: StringMatcher| p_header(header(":authority", ignore_case(m)));
    assert_eq!(
        policies["ns[foo]-policy[hosts]-rule[0]"].permissions,
        [p_and(vec![
            p_or(vec![
                authority(exact("httpbin.foo")),
                authority(prefix("httpbin.foo:")),
                authority(exact("api.foo:8080")),
            ]),
            p_not(p_or(vec![authority(exact("admin.foo"))])),
        ])]
    );
}

const ACTIONS: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: foo}
spec:
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: istio-system}
spec:
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: ext-authz}
  rules: [{to: [{operation: {paths: ["/ext"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
"#;

#[test]
fn filters_come_deny_allow_log_and_custom_is_enforced_as_deny() {
    let model = model_from_yaml(ACTIONS);
    let filters = rbac_of(&model, &proxy("foo", &[]));
    let summary: Vec<(rbac::Action, Vec<&str>)> = filters
        .iter()
        .map(|(action, policies)| (*action, policies.keys().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                rbac::Action::Deny,
                vec![
                    "ns[foo]-policy[deny-admin]-rule[0]",
                    "ns[foo]-policy[ext]-rule[0]",
                ]
            ),
            (
                rbac::Action::Allow,
                vec![
                    "ns[foo]-policy[allow-get]-rule[0]",
                    "ns[foo]-policy[allow-nothing]-rule[0]",
                ]
            ),
            (
                rbac::Action::Log,
                vec!["ns[istio-system]-policy[audit-all]-rule[0]"]
            ),
        ]
    );
    // A policy without rules matches nothing (istiod's explicit policy).
    let never = Policy {
        permissions: vec![p_not(p_any())],
        principals: vec![i_not(i_any())],
        ..Default::default()
    };
    assert_eq!(filters[1].1["ns[foo]-policy[allow-nothing]-rule[0]"], never);
    // CUSTOM's rule denies what it matches.
    assert_eq!(
        filters[0].1["ns[foo]-policy[ext]-rule[0]"].permissions,
        [p_and(vec![p_or(vec![p_path(exact("/ext"))])])]
    );
    assert!(
        model.warnings.iter().any(|w| w.object.name == "ext"
            && w.path == "spec.action"
            && w.message.contains("DENY")),
        "{:#?}",
        model.warnings
    );

    // Only the root namespace's AUDIT policy applies in another namespace.
    let elsewhere = rbac_of(&model, &proxy("bar", &[]));
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].0, rbac::Action::Log);
}

#[test]
fn what_cannot_be_translated_never_allows_more() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-mysql, namespace: foo}
spec:
  rules:
  - when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-mysql, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: ["3306"]}}]
    when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}]
"#,
    );
    let filters = rbac_of(&model, &proxy("foo", &[]));
    // DENY: the condition is dropped, the rule denies more (every request on 3306).
    assert_eq!(filters[0].0, rbac::Action::Deny);
    assert_eq!(
        filters[0].1["ns[foo]-policy[deny-mysql]-rule[0]"].permissions,
        [p_and(vec![p_or(vec![p_port(3306)])])]
    );
    // ALLOW: the rule is left out; the filter stays and denies everything.
    assert_eq!(filters[1].0, rbac::Action::Allow);
    assert!(filters[1].1.is_empty(), "{:?}", filters[1].1);
    let reported: Vec<String> = model
        .warnings
        .iter()
        .map(|w| format!("{} {}: {}", w.object.name, w.path, w.message))
        .collect();
    assert!(
        reported
            .iter()
            .any(|w| w.starts_with("allow-mysql spec.rules[0].when[0].key:")
                && w.contains("not supported")
                && w.contains("allows nothing")),
        "{reported:#?}"
    );
    assert!(
        reported
            .iter()
            .any(|w| w.starts_with("deny-mysql spec.rules[0].when[0].key:")
                && w.contains("denies more")),
        "{reported:#?}"
    );
}

#[test]
fn the_same_policies_encode_the_same_bytes() {
    let model = model_from_yaml(&format!("{FULL_RULE}\n---\n{ACTIONS}"));
    let workload = proxy("foo", &[("app", "httpbin"), ("version", "v1")]);
    let first = rbac_filters(&model, &workload);
    let again = rbac_filters(
        &model_from_yaml(&format!("{FULL_RULE}\n---\n{ACTIONS}")),
        &workload,
    );
    assert_eq!(first, again);
}
