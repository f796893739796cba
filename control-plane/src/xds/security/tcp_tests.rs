//! AuthorizationPolicy → network RBAC: HTTP-only tests leave ALLOW rules out and are dropped
//! from DENY and AUDIT rules; TCP tests stay; decoded from the generated filters.

use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::config::rbac::v3::rbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use prost::Message;
use weft_xds::contract::NETWORK_RBAC_TYPE_URL;

use super::*;
use crate::testing::model_from_yaml;
use crate::xds::security::expect::*;

fn proxy(namespace: &str) -> Proxy {
    let mut proxy = Proxy::sidecar(namespace);
    proxy.labels = [("app".to_string(), "db".to_string())].into();
    proxy
}

/// The network RBAC filters generated for `proxy`, decoded: (action, policies by name).
fn rbac_of(model: &Model, proxy: &Proxy) -> Vec<(rbac::Action, BTreeMap<String, Policy>)> {
    network_rbac_filters(model, proxy)
        .iter()
        .map(|filter| {
            assert_eq!(filter.name, NETWORK_RBAC);
            let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                panic!("typed config expected");
            };
            assert_eq!(any.type_url, NETWORK_RBAC_TYPE_URL);
            let config = NetworkRbac::decode(any.value.as_slice()).expect("decodes");
            assert_eq!(config.stat_prefix, TCP_STAT_PREFIX);
            let rules = config.rules.expect("rules");
            (
                rbac::Action::try_from(rules.action).expect("action"),
                rules.policies.into_iter().collect(),
            )
        })
        .collect()
}

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: foo}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/foo/sa/client]}}]
    to: [{operation: {ports: ["5432"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
  - to: [{operation: {methods: [GET], ports: ["8080"]}}]
  - when: [{key: "request.headers[x-user]", values: [admin]}]
  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]
    when: [{key: connection.sni, values: [db.example.com]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec:
  action: DENY
  rules:
  - from: [{source: {namespaces: [untrusted], requestPrincipals: ["*"]}}]
    to: [{operation: {paths: [/admin], ports: ["5432"]}}]
  - to: [{operation: {hosts: [db.example.com]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: foo}
spec:
  action: AUDIT
  rules:
  - when: [{key: "request.auth.claims[groups]", values: [ops]}, {key: destination.port, values: ["5432"]}]
"#;

#[test]
fn allow_rules_needing_http_are_left_out() {
    let filters = rbac_of(&model_from_yaml(POLICIES), &proxy("foo"));
    let actions: Vec<rbac::Action> = filters.iter().map(|(action, _)| *action).collect();
    assert_eq!(
        actions,
        [rbac::Action::Deny, rbac::Action::Allow, rbac::Action::Log]
    );
    let allow = &filters[1].1;
    // Rules 1 (request principals), 2 (methods) and 3 (request header) cannot match a
    // connection; 0 and 4 translate as for HTTP.
    assert_eq!(
        allow.keys().collect::<Vec<_>>(),
        [
            "ns[foo]-policy[allow]-rule[0]",
            "ns[foo]-policy[allow]-rule[4]"
        ]
    );
    assert_eq!(
        allow["ns[foo]-policy[allow]-rule[0]"],
        Policy {
            permissions: vec![p_and(vec![p_or(vec![p_port(5432)])])],
            principals: vec![i_and(vec![i_or(vec![i_auth(exact(
                "spiffe://cluster.local/ns/foo/sa/client"
            ))])])],
            ..Default::default()
        }
    );
    assert_eq!(
        allow["ns[foo]-policy[allow]-rule[4]"],
        Policy {
            permissions: vec![p_and(vec![p_or(vec![p_sni(exact("db.example.com"))])])],
            principals: vec![i_and(vec![i_or(vec![i_direct("10.0.0.0", 8)])])],
            ..Default::default()
        }
    );
}

#[test]
fn deny_and_audit_rules_drop_what_needs_http() {
    let filters = rbac_of(&model_from_yaml(POLICIES), &proxy("foo"));
    let deny = &filters[0].1;
    // Rule 0: the namespace and the port stay, the request principal and path go.
    assert_eq!(
        deny["ns[foo]-policy[deny]-rule[0]"],
        Policy {
            permissions: vec![p_and(vec![p_or(vec![p_port(5432)])])],
            principals: vec![i_and(vec![i_or(vec![i_auth(regex(".*/ns/untrusted/.*"))])])],
            ..Default::default()
        }
    );
    // Rule 1 needed only the host: it now denies every connection.
    assert_eq!(
        deny["ns[foo]-policy[deny]-rule[1]"],
        Policy {
            permissions: vec![p_and(vec![p_any()])],
            principals: vec![i_and(vec![i_any()])],
            ..Default::default()
        }
    );
    // AUDIT: the claim dropped, the port kept.
    let audit = &filters[2].1;
    assert_eq!(
        audit["ns[foo]-policy[audit]-rule[0]"],
        Policy {
            permissions: vec![p_and(vec![p_or(vec![p_port(5432)])])],
            principals: vec![i_and(vec![i_any()])],
            ..Default::default()
        }
    );
}

#[test]
fn an_allow_policy_without_tcp_rules_still_allows_nothing_else() {
    let model = model_from_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http-only, namespace: foo}
spec:
  rules: [{to: [{operation: {paths: [/api]}}]}]
"#,
    );
    assert_eq!(
        rbac_of(&model, &proxy("foo")),
        [(rbac::Action::Allow, BTreeMap::new())]
    );
    // Nothing selects a workload elsewhere: no filter.
    assert!(rbac_of(&model, &proxy("bar")).is_empty());
}
