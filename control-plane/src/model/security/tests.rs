//! Which workloads a policy selects (root namespace, namespace, selector), policies attached
//! with targetRef(s) and CUSTOM policies reported, and the rules' parsing.

use std::collections::BTreeMap;

use super::*;
use crate::model::MeshSettings;
use crate::testing::{config_from_yaml, model_from_yaml};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn selection_follows_istio() {
    let app = Target::Labels(labels(&[("app", "httpbin")]));
    let httpbin = labels(&[("app", "httpbin"), ("version", "v1")]);
    let other = labels(&[("app", "ratings")]);
    // Root namespace, no selector: every workload everywhere.
    assert!(selects(
        "istio-system",
        &Target::AllWorkloads,
        "istio-system",
        "foo",
        &other
    ));
    assert!(selects(
        "istio-system",
        &Target::AllWorkloads,
        "istio-system",
        "istio-system",
        &other
    ));
    // Root namespace, selector: the matching workloads in every namespace.
    assert!(selects(
        "istio-system",
        &app,
        "istio-system",
        "foo",
        &httpbin
    ));
    assert!(selects(
        "istio-system",
        &app,
        "istio-system",
        "bar",
        &httpbin
    ));
    assert!(!selects(
        "istio-system",
        &app,
        "istio-system",
        "foo",
        &other
    ));
    // A namespace: its own workloads only.
    assert!(selects(
        "foo",
        &Target::AllWorkloads,
        "istio-system",
        "foo",
        &other
    ));
    assert!(!selects(
        "foo",
        &Target::AllWorkloads,
        "istio-system",
        "bar",
        &other
    ));
    assert!(selects("foo", &app, "istio-system", "foo", &httpbin));
    assert!(!selects("foo", &app, "istio-system", "foo", &other));
    assert!(!selects("foo", &app, "istio-system", "bar", &httpbin));
    // Every selector label must match; an empty selector matches all.
    let two = Target::Labels(labels(&[("app", "httpbin"), ("version", "v2")]));
    assert!(!selects("foo", &two, "istio-system", "foo", &httpbin));
    assert!(selects(
        "foo",
        &Target::Labels(BTreeMap::new()),
        "istio-system",
        "foo",
        &other
    ));
    // Attached to a gateway: nothing.
    assert!(!selects(
        "foo",
        &Target::Attached,
        "istio-system",
        "foo",
        &httpbin
    ));
    assert!(!selects(
        "istio-system",
        &Target::Attached,
        "istio-system",
        "foo",
        &httpbin
    ));
}

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {action: DENY, rules: [{to: [{operation: {paths: ["/debug*"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-everywhere, namespace: istio-system}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: foo-all, namespace: foo}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: foo-httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway, namespace: foo}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: one-gateway, namespace: foo}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: ["/ext"]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: gateway-jwt, namespace: foo}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}
  jwtRules: [{issuer: "iss", jwks: '{"keys":[]}'}]
"#;

fn selected(model: &Model, namespace: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let labels = labels(pairs);
    model
        .authorization_policies_for(namespace, &labels)
        .map(|policy| format!("{}/{}", policy.key.namespace, policy.key.name))
        .collect()
}

#[test]
fn policies_for_a_workload_and_what_is_reported() {
    let model = model_from_yaml(POLICIES);
    assert_eq!(
        model
            .authorization_policies
            .iter()
            .map(|p| p.key.name.as_str())
            .collect::<Vec<_>>(),
        [
            "ext",
            "foo-all",
            "foo-httpbin",
            "gateway",
            "one-gateway",
            "httpbin-everywhere",
            "mesh-wide"
        ],
        "namespace/name order"
    );
    assert_eq!(
        selected(&model, "foo", &[("app", "httpbin")]),
        [
            "foo/ext",
            "foo/foo-all",
            "foo/foo-httpbin",
            "istio-system/httpbin-everywhere",
            "istio-system/mesh-wide"
        ]
    );
    assert_eq!(
        selected(&model, "foo", &[("app", "ratings")]),
        ["foo/ext", "foo/foo-all", "istio-system/mesh-wide"]
    );
    assert_eq!(
        selected(&model, "bar", &[("app", "httpbin")]),
        ["istio-system/httpbin-everywhere", "istio-system/mesh-wide"]
    );
    let ext = &model.authorization_policies[0];
    assert_eq!(ext.action, AuthzAction::Deny, "CUSTOM is enforced as DENY");
    assert_eq!(ext.target, Target::AllWorkloads);

    let reported: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
    let gateway = "attaching a policy to a Gateway or Service is not supported yet; this policy applies to nothing";
    for expected in [
        format!("AuthorizationPolicy foo/gateway: spec.targetRefs: {gateway}"),
        format!("AuthorizationPolicy foo/one-gateway: spec.targetRef: {gateway}"),
        format!("RequestAuthentication foo/gateway-jwt: spec.targetRef: {gateway}"),
        "AuthorizationPolicy foo/ext: spec.action: CUSTOM (provider \"my-ext-authz\") is not supported yet (no ext_authz); the policy is enforced as a DENY of every request its rules match".to_string(),
    ] {
        assert!(reported.contains(&expected), "missing {expected:?} in {reported:#?}");
    }
    assert_eq!(reported.len(), 4, "{reported:#?}");
    assert!(
        model
            .request_authentications_for("foo", &BTreeMap::new())
            .next()
            .is_none()
    );
}

#[test]
fn the_root_namespace_comes_from_the_settings() {
    let settings = MeshSettings {
        root_namespace: "mesh-config".to_string(),
        ..MeshSettings::default()
    };
    let model = Model::build(&config_from_yaml(POLICIES), &settings);
    // istio-system is an ordinary namespace now.
    assert_eq!(
        selected(&model, "bar", &[("app", "httpbin")]),
        Vec::<String>::new()
    );
    assert_eq!(
        selected(&model, "istio-system", &[("app", "httpbin")]),
        ["istio-system/httpbin-everywhere", "istio-system/mesh-wide"]
    );
}

#[test]
fn patterns_cidrs_and_rules_parse_as_istio_reads_them() {
    assert_eq!(Pattern::parse("*"), Pattern::Present);
    assert_eq!(Pattern::parse("*abc"), Pattern::Suffix("abc".into()));
    assert_eq!(Pattern::parse("abc*"), Pattern::Prefix("abc".into()));
    assert_eq!(Pattern::parse("*abc*"), Pattern::Suffix("abc*".into()));
    assert_eq!(Pattern::parse("a*c"), Pattern::Exact("a*c".into()));
    assert_eq!(
        Cidr::parse("10.1.2.3").map(|c| (c.address.to_string(), c.prefix_len)),
        Ok(("10.1.2.3".to_string(), 32))
    );
    assert_eq!(
        Cidr::parse("fd00::/8").map(|c| (c.address.to_string(), c.prefix_len)),
        Ok(("fd00::".to_string(), 8))
    );
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert!(Cidr::parse("host.example").is_err());

    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: parsed, namespace: foo}
spec:
  rules:
  - from: [{source: {serviceAccounts: [sa, other/sa2]}}]
    to: [{operation: {paths: ["/a/{*}/b/{**}", "/plain*"]}}]
    when:
    - {key: "request.auth.claims[groups]", values: [admin]}
    - {key: "source.serviceAccount", notValues: [blocked]}
    - {key: "request.auth.claims[a]x[b]", values: [v]}
"#,
    );
    let policy = &model.authorization_policies[0];
    // The malformed claim key makes the ALLOW rule untranslatable: left out, reported.
    assert!(policy.rules.is_empty(), "{:#?}", policy.rules);
    assert!(!policy.matches_nothing);
    let reported: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        reported,
        [
            "AuthorizationPolicy foo/parsed: spec.rules[0].when[2].key: \"request.auth.claims[a]x[b]\": expected request.auth.claims[<claim>] or request.auth.claims[<claim>][<nested claim>]…; the rule is left out, so it allows nothing"
        ]
    );

    // The same rule as DENY keeps everything else.
    let spec: weft_api::security::AuthorizationPolicy = serde_yaml::from_str(
        r#"
action: DENY
rules:
- from: [{source: {serviceAccounts: [sa, other/sa2]}}]
  to: [{operation: {paths: ["/a/{*}/b/{**}", "/plain*"]}}]
  when:
  - {key: "request.auth.claims[groups]", values: [admin]}
  - {key: "source.serviceAccount", notValues: [blocked]}
  - {key: "request.auth.claims[a]x[b]", values: [v]}
"#,
    )
    .expect("parses");
    let key = crate::object::ObjectKey::new("AuthorizationPolicy", Some("foo"), "parsed");
    let (entry, warnings) = AuthorizationPolicyEntry::new(&key, &spec, "td.example");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].message.ends_with("denies more, never less)"));
    assert_eq!(
        entry.rules,
        [AuthzRule {
            index: 0,
            principals: vec![vec![
                PrincipalMatch::Identity(Values {
                    values: vec![
                        "spiffe://td.example/ns/foo/sa/sa".into(),
                        "spiffe://td.example/ns/other/sa/sa2".into()
                    ],
                    not_values: vec![],
                }),
                PrincipalMatch::Claim {
                    path: vec!["groups".into()],
                    values: Values {
                        values: vec![Pattern::Exact("admin".into())],
                        not_values: vec![],
                    },
                },
                PrincipalMatch::Identity(Values {
                    values: vec![],
                    not_values: vec!["spiffe://td.example/ns/foo/sa/blocked".into()],
                }),
            ]],
            permissions: vec![vec![PermissionMatch::Path(Values {
                values: vec![
                    PathPattern::Template("/a/*/b/**".into()),
                    PathPattern::Pattern(Pattern::Prefix("/plain".into())),
                ],
                not_values: vec![],
            })]],
        }]
    );
}

#[test]
fn fields_not_translated_yet_are_reported_and_never_widen_access() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-filter-metadata, namespace: foo}
spec:
  rules:
  - when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-trust-domain, namespace: foo}
spec:
  rules:
  - from: [{source: {trustDomains: [cluster.local], notTrustDomains: ["*.example.org"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: scopes, namespace: foo}
spec:
  jwtRules:
  - issuer: iss
    jwks: '{"keys":[]}'
    spaceDelimitedClaims: [custom_scope]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tracing, namespace: foo}
spec:
  tracing:
  - useRequestIdForTraceSampling: false
    customTags:
      sni: {formatter: {value: "%REQUESTED_SERVER_NAME%"}}
      bytes: {formatter: {value: "%UPSTREAM_BYTES_RECEIVED%"}}
"#,
    );
    // An ALLOW rule that needs Envoy filter metadata is left out: it allows nothing.
    let policy = |name: &str| {
        model
            .authorization_policies
            .iter()
            .find(|p| p.key.name == name)
            .unwrap_or_else(|| panic!("policy {name}"))
    };
    assert!(policy("by-filter-metadata").rules.is_empty());
    // Trust domains are translated (xds/security/authz.rs).
    assert_eq!(
        policy("by-trust-domain").rules[0].principals,
        [vec![PrincipalMatch::TrustDomain(Values {
            values: vec!["cluster.local".into()],
            not_values: vec!["*.example.org".into()],
        })]]
    );
    let reported: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
    assert!(
        reported.iter().any(|w| w.starts_with(
            "AuthorizationPolicy foo/by-filter-metadata: spec.rules[0].when[0].key: "
        ) && w.ends_with("the rule is left out, so it allows nothing")),
        "{reported:#?}"
    );
    assert!(
        !reported.iter().any(|w| w.contains("trustDomains")),
        "{reported:#?}"
    );
    let expected = "Telemetry foo/tracing: spec.tracing[0].useRequestIdForTraceSampling: false is not supported yet (proxies sample at random whatever the request id); ignored".to_string();
    assert!(
        reported.contains(&expected),
        "missing {expected:?} in {reported:#?}"
    );
    // A formatter is translated when the proxy has its commands; one it does not have is
    // reported and its tag left out (the proxy would refuse the whole listener).
    assert!(
        reported.iter().any(|w| w.starts_with(
            "Telemetry foo/tracing: spec.tracing[0].customTags[bytes].formatter.value: unknown command %UPSTREAM_BYTES_RECEIVED%"
        ) && w.ends_with("; the tag is not added")),
        "{reported:#?}"
    );
    assert!(
        !reported.iter().any(|w| w.contains("customTags[sni]")),
        "{reported:#?}"
    );
    let tags = &model
        .telemetries
        .iter()
        .find(|t| t.key.name == "tracing")
        .expect("the Telemetry")
        .tracing[0]
        .custom_tags;
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["sni"]);
    // spaceDelimitedClaims is translated (xds/security/jwt.rs).
    assert!(
        !reported.iter().any(|w| w.contains("spaceDelimitedClaims")),
        "{reported:#?}"
    );
}

/// A policy in Istio's dry-run mode is never enforced (Weft has no shadow evaluation yet):
/// it is left out and reported; `istio.io/dry-run: "false"` is an ordinary policy.
#[test]
fn a_dry_run_policy_is_not_enforced() {
    let model = Model::build(
        &config_from_yaml(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-trial
  namespace: foo
  annotations: {istio.io/dry-run: \"true\"}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-for-real
  namespace: foo
  annotations: {istio.io/dry-run: \"false\"}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
",
        ),
        &MeshSettings::default(),
    );
    assert_eq!(selected(&model, "foo", &[]), ["foo/deny-for-real"]);
    let reported: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        reported,
        [
            "AuthorizationPolicy foo/deny-trial: metadata.annotations[istio.io/dry-run]: dry-run is not supported yet (no shadow evaluation); the policy is not enforced"
        ]
    );
}
