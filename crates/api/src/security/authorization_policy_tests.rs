//! Unit tests of `AuthorizationPolicy` validation.

use super::*;

fn errors(yaml: &str) -> Vec<String> {
    let ap: AuthorizationPolicy = serde_yaml::from_str(yaml).expect("parses");
    let mut errs = Vec::new();
    ap.validate(&Path::root("spec"), &mut errs);
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn accepts_istio_examples() {
    let yaml = r#"
selector: {matchLabels: {app: httpbin}}
action: ALLOW
rules:
- from:
  - source: {principals: ["cluster.local/ns/default/sa/sleep"], ipBlocks: ["10.0.0.0/8"]}
  - source: {namespaces: [test], notRemoteIpBlocks: ["1.2.3.4"]}
  to:
  - operation: {methods: [GET], paths: ["/info*"], ports: ["8080"]}
  when:
  - key: request.auth.claims[iss]
    values: ["https://accounts.google.com"]
  - key: destination.port
    notValues: ["9090"]
- {}
"#;
    assert_eq!(errors(yaml), Vec::<String>::new());
    assert!(errors("{}").is_empty());
    assert!(errors("action: DENY\nrules: [{}]").is_empty());
    assert!(
            errors("action: CUSTOM\nprovider: {name: ext-authz}\nrules: [{to: [{operation: {paths: [/admin]}}]}]")
                .is_empty()
        );
    assert!(
        errors("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]")
            .is_empty()
    );
}

#[test]
fn reports_paths() {
    let yaml = r#"
selector: {matchLabels: {app: a}}
targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}
provider: {name: x}
rules:
- from: [{source: {}}, {}]
  to: [{operation: {ports: ["http"]}}]
  when: [{key: source.ip, values: ["10.0.0.0/99"]}, {key: bogus}]
"#;
    assert_eq!(
        errors(yaml),
        [
            "spec: only one of targetRefs or selector can be set (selector, targetRef and targetRefs are exclusive)",
            "spec.provider: provider can only be set with the CUSTOM action, found ALLOW",
            "spec.rules[0].from[0].source: from.source must not be empty: set at least one of its fields",
            "spec.rules[0].from[1].source: from.source must be set",
            "spec.rules[0].to[0].operation.ports[0]: bad port \"http\": must be a number in 0..65535",
            "spec.rules[0].when[0].values[0]: \"10.0.0.0/99\" is not a valid CIDR block",
            "spec.rules[0].when[1]: at least one of values or notValues must be set for key \"bogus\"",
        ]
    );
    assert_eq!(
        errors("action: CUSTOM"),
        [
            "spec.rules: the CUSTOM action without rules is meaningless as it will never be triggered; add an empty rule {} to trigger it for every request"
        ]
    );
    assert_eq!(
        errors(
            "action: CUSTOM\nrules: [{when: [{key: \"request.auth.claims[group]\", values: [admin]}]}]"
        ),
        [
            "spec.provider.name: provider.name must not be empty with the CUSTOM action",
            "spec.rules[0].when[0].key: \"request.auth.claims[group]\" is currently not supported with the CUSTOM action",
        ]
    );
}

#[test]
fn istio_helper_rules() {
    assert!(check_path_template("/path/template/{*}").is_ok());
    assert!(check_path_template("/{**}/path/template").is_ok());
    assert!(check_path_template("/a/{*}/b/{**}").is_ok());
    assert!(check_path_template("*/suffix").is_ok());
    assert!(check_path_template("/{**}/{*}").is_err());
    assert!(check_path_template("/{name}").is_err());
    assert!(check_path_template("/{*}/a b").is_err());
    assert!(check_service_account("sa").is_ok());
    assert!(check_service_account("ns/sa").is_ok());
    assert!(check_service_account("ns/sa/x").is_err());
    assert!(check_service_account("/sa").is_err());
    assert!(check_service_account("ns/").is_err());
    assert!(check_service_account("ns/*").is_err());
    assert!(check_port("0").is_ok());
    assert!(check_port("65535").is_ok());
    assert!(check_port("+80").is_err());
    assert!(check_port("65536").is_err());
    assert!(check_ip("10.0.0.0/8").is_ok());
    assert!(check_ip("10.0.0.0/08").is_err());
    assert!(check_map_key("request.headers[x]").is_ok());
    assert!(check_map_key("request.auth.claims[a][b]").is_ok());
    assert!(check_map_key("request.headers[]").is_err());
    assert!(check_condition_key("request.experimental.inline.headers[x]").is_ok());
    assert!(check_condition_key("destination.name").is_err());
}

#[test]
fn trust_domains_are_source_fields() {
    assert!(errors("rules: [{from: [{source: {trustDomains: [cluster.local]}}]}]").is_empty());
    assert_eq!(
        errors("rules: [{from: [{source: {notTrustDomains: [\"\"]}}]}]"),
        ["spec.rules[0].from[0].source.notTrustDomains[0]: empty value is not allowed"]
    );
}

#[test]
fn rejects_unknown_fields_and_values() {
    assert!(serde_yaml::from_str::<AuthorizationPolicy>("action: PERMIT").is_err());
    assert!(
        serde_yaml::from_str::<AuthorizationPolicy>(
            "rules: [{from: [{source: {principal: [a]}}]}]"
        )
        .is_err()
    );
}
