//! The CEL rules (`x-kubernetes-validations`) of the generated CRDs: Istio's own, word for
//! word, at the same places as in Istio's published CRDs, so the API server refuses what
//! Istio's API server refuses with Istio's messages. `weft-api`'s validation enforces each
//! of them too (local mode has no API server); the parity test
//! (`crates/api/tests/istio_schema.rs`) fails when a rule of a newer Istio is missing here.
//!
//! The rule every `google.protobuf.Duration` carries (`duration(self) >= duration('1ms')`)
//! comes with the [`crate::duration::Duration`] schema instead, so it follows the types.

use crate::object::Kind;

/// A CEL rule with its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelRule {
    /// Where the rule sits below `spec`, spelled as the parity test spells paths: `""` for
    /// the spec itself, `rules[].from[].source`, `selector.matchLabels{}` (a map's values).
    pub at: &'static str,
    /// The CEL expression (`self` is the node at `at`).
    pub rule: &'static str,
    /// What the API server reports when it fails.
    pub message: &'static str,
}

const fn rule(at: &'static str, rule: &'static str, message: &'static str) -> CelRule {
    CelRule { at, rule, message }
}

/// Istio's rule that the 1 ms floor of durations is checked with, and its message.
pub const DURATION_RULE: (&str, &str) = (
    "duration(self) >= duration('1ms')",
    "must be a valid duration greater than 1ms",
);

const PORT_RANGE: &str = "0 < self && self <= 65535";
const PORT_RANGE_MESSAGE: &str = "port must be between 1-65535";
const UDS_ABSOLUTE: &str = r#"self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true"#;
const UDS_ABSOLUTE_MESSAGE: &str = "UDS must be an absolute path or abstract socket";
const UDS_NOT_DIR: &str = r#"self.startsWith("unix://") ? !self.endsWith("/") : true"#;
const UDS_NO_PORTS: &str =
    r#"(has(self.address) ? self.address : "").startsWith("unix://") ? !has(self.ports) : true"#;
const PORT_NAMES: &str =
    r#"self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))"#;
const ADDRESS_REQUIRED: &str = "has(self.address) || has(self.network)";
const ONE_TARGET: &str = "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1";
const ONE_TARGET_MESSAGE: &str = "only one of targetRefs or selector can be set";
const SAME_NAMESPACE: &str = "self.size() == 0";
const SAME_NAMESPACE_MESSAGE: &str = "cross namespace referencing is not currently supported";
const NO_WILDCARD_IN_SELECTOR: &str = r#"!self.contains("*")"#;

/// A WorkloadEntry's rules (also a WorkloadGroup's `template`), under `at`.
macro_rules! workload_entry_rules {
    ($at:literal, $dot:literal) => {
        [
            rule($at, UDS_NO_PORTS, "UDS may not include ports"),
            rule(
                concat!($at, $dot, "address"),
                UDS_ABSOLUTE,
                UDS_ABSOLUTE_MESSAGE,
            ),
            rule(
                concat!($at, $dot, "address"),
                UDS_NOT_DIR,
                "UDS may not be a dir",
            ),
            rule(
                concat!($at, $dot, "ports"),
                PORT_NAMES,
                "port name must be valid",
            ),
            rule(
                concat!($at, $dot, "ports{}"),
                PORT_RANGE,
                PORT_RANGE_MESSAGE,
            ),
        ]
    };
}

/// The rules of a `matchLabels` selector at `at` (`selector.matchLabels`).
macro_rules! match_labels_rules {
    ($at:literal) => {
        [
            rule(
                $at,
                r#"self.all(key, !key.contains("*"))"#,
                "wildcard not allowed in label key match",
            ),
            rule(
                $at,
                "self.all(key, key.size() != 0)",
                "key must not be empty",
            ),
            rule(
                concat!($at, "{}"),
                NO_WILDCARD_IN_SELECTOR,
                "wildcard not allowed in label value match",
            ),
        ]
    };
}

/// The rules of a policy that picks its workloads by `selector`, `targetRef` or `targetRefs`.
const POLICY_TARGET: [CelRule; 6] = {
    let [a, b, c] = match_labels_rules!("selector.matchLabels");
    [
        rule("", ONE_TARGET, ONE_TARGET_MESSAGE),
        a,
        b,
        c,
        rule(
            "targetRef.namespace",
            SAME_NAMESPACE,
            SAME_NAMESPACE_MESSAGE,
        ),
        rule(
            "targetRefs[].namespace",
            SAME_NAMESPACE,
            SAME_NAMESPACE_MESSAGE,
        ),
    ]
};

/// The rules of server TLS settings (a Gateway server's, a Sidecar ingress listener's) at `at`.
macro_rules! server_tls_rules {
    ($at:literal) => {
        [
            rule(
                $at,
                "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1",
                "only one of credentialNames or tlsCertificates can be set",
            ),
            rule(
                $at,
                "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1",
                "only one of credentialName or credentialNames can be set",
            ),
            rule(
                $at,
                "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1",
                "only one of credentialName or tlsCertificates can be set",
            ),
        ]
    };
}

/// Istio's CEL rules of `kind`'s spec (besides the durations'), in Istio's order.
pub fn istio_rules(kind: Kind) -> Vec<CelRule> {
    match kind {
        Kind::VirtualService | Kind::LocalRateLimit => vec![],
        Kind::DestinationRule => match_labels_rules!("workloadSelector.matchLabels").to_vec(),
        Kind::Gateway => server_tls_rules!("servers[].tls").to_vec(),
        Kind::Sidecar => {
            let mut rules = server_tls_rules!("ingress[].tls").to_vec();
            rules.push(rule(
                "workloadSelector.labels{}",
                NO_WILDCARD_IN_SELECTOR,
                "wildcard is not supported in selector",
            ));
            rules
        }
        Kind::ServiceEntry => vec![
            rule(
                "",
                "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1",
                "only one of WorkloadSelector or Endpoints can be set",
            ),
            rule(
                "",
                r#"!((has(self.addresses) ? self.addresses : []).exists(k, k.contains("/")) && !((has(self.resolution) ? self.resolution : "NONE") in ["STATIC", "NONE"]))"#,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            ),
            rule(
                "",
                r#"((has(self.resolution) ? self.resolution : "NONE") == "NONE") ? !has(self.endpoints) : true"#,
                "NONE mode cannot set endpoints",
            ),
            rule(
                "",
                r#"((has(self.resolution) ? self.resolution : "") == "DNS_ROUND_ROBIN") ? ((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true"#,
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
            ),
            rule("endpoints[]", ADDRESS_REQUIRED, "Address is required"),
            rule("endpoints[]", UDS_NO_PORTS, "UDS may not include ports"),
            rule("endpoints[].address", UDS_ABSOLUTE, UDS_ABSOLUTE_MESSAGE),
            rule("endpoints[].address", UDS_NOT_DIR, "UDS may not be a dir"),
            rule("endpoints[].ports", PORT_NAMES, "port name must be valid"),
            rule("endpoints[].ports{}", PORT_RANGE, PORT_RANGE_MESSAGE),
            rule("hosts[]", r#"self != "*""#, "hostname cannot be wildcard"),
            rule(
                "ports",
                "self.all(l1, self.exists_one(l2, l1.number == l2.number))",
                "port number cannot be duplicated",
            ),
            rule("ports[].number", PORT_RANGE, PORT_RANGE_MESSAGE),
            rule("ports[].targetPort", PORT_RANGE, PORT_RANGE_MESSAGE),
            rule(
                "workloadSelector.labels{}",
                NO_WILDCARD_IN_SELECTOR,
                "wildcard is not supported in selector",
            ),
        ],
        Kind::WorkloadEntry => {
            let mut rules = vec![rule("", ADDRESS_REQUIRED, "Address is required")];
            rules.extend(workload_entry_rules!("", ""));
            rules
        }
        Kind::WorkloadGroup => {
            let mut rules = vec![
                rule("probe.grpc.port", PORT_RANGE, PORT_RANGE_MESSAGE),
                rule("probe.httpGet.port", PORT_RANGE, PORT_RANGE_MESSAGE),
                rule(
                    "probe.httpGet.scheme",
                    r#"self in ["", "HTTP", "HTTPS"]"#,
                    "scheme must be one of [HTTP, HTTPS]",
                ),
                rule("probe.tcpSocket.port", PORT_RANGE, PORT_RANGE_MESSAGE),
            ];
            rules.extend(workload_entry_rules!("template", "."));
            rules
        }
        Kind::PeerAuthentication => {
            let mut rules = vec![
                rule(
                    "",
                    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true",
                    "portLevelMtls requires selector",
                ),
                rule(
                    "portLevelMtls",
                    "self.all(key, 0 < int(key) && int(key) <= 65535)",
                    PORT_RANGE_MESSAGE,
                ),
            ];
            rules.extend(match_labels_rules!("selector.matchLabels"));
            rules
        }
        Kind::AuthorizationPolicy => {
            let mut rules = POLICY_TARGET.to_vec();
            rules.push(rule(
                "rules[].from[].source",
                "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true",
                "Cannot set serviceAccounts with namespaces or principals",
            ));
            rules
        }
        Kind::RequestAuthentication => {
            let mut rules = POLICY_TARGET.to_vec();
            rules.extend([
                rule(
                    "jwtRules[]",
                    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1",
                    "only one of jwks or jwksUri can be set",
                ),
                rule(
                    "jwtRules[].jwks_uri",
                    r#"url(self).getScheme() in ["http", "https"]"#,
                    "url must have scheme http:// or https://",
                ),
                rule(
                    "jwtRules[].jwksUri",
                    r#"url(self).getScheme() in ["http", "https"]"#,
                    "url must have scheme http:// or https://",
                ),
            ]);
            rules
        }
        Kind::Telemetry => {
            let mut rules = POLICY_TARGET.to_vec();
            rules.extend([
                rule(
                    "metrics[].overrides[].tagOverrides{}",
                    r#"((has(self.operation) ? self.operation : "") == "UPSERT") ? (self.value != "") : true"#,
                    "value must be set when operation is UPSERT",
                ),
                rule(
                    "metrics[].overrides[].tagOverrides{}",
                    r#"((has(self.operation) ? self.operation : "") == "REMOVE") ? !has(self.value) : true"#,
                    "value must not be set when operation is REMOVE",
                ),
            ]);
            rules
        }
    }
}

/// Weft's own rules, for its own kinds.
pub fn weft_rules(kind: Kind) -> Vec<CelRule> {
    match kind {
        Kind::LocalRateLimit => vec![
            rule(
                "",
                "has(self.limit) || (has(self.rules) && self.rules.size() > 0)",
                "at least one of limit or rules must be set",
            ),
            rule(
                "rules",
                "self.all(r, !has(r.name) || self.exists_one(s, has(s.name) && s.name == r.name))",
                "rule names must be unique",
            ),
        ],
        _ => vec![],
    }
}

/// Every rule of `kind`'s spec schema.
pub fn cel_rules(kind: Kind) -> Vec<CelRule> {
    let mut rules = istio_rules(kind);
    rules.extend(weft_rules(kind));
    rules
}

/// The schema keys that lead from the spec schema to the node at `at` (see [`CelRule::at`]).
pub(crate) fn schema_path(at: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for segment in at.split('.').filter(|s| !s.is_empty()) {
        let name = segment.trim_end_matches(['[', ']', '{', '}']);
        keys.push("properties".to_string());
        keys.push(name.to_string());
        let mut suffix = &segment[name.len()..];
        while !suffix.is_empty() {
            if let Some(rest) = suffix.strip_prefix("[]") {
                keys.push("items".to_string());
                suffix = rest;
            } else if let Some(rest) = suffix.strip_prefix("{}") {
                keys.push("additionalProperties".to_string());
                suffix = rest;
            } else {
                panic!("bad CEL rule path {at:?}");
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_schema_keys() {
        assert!(schema_path("").is_empty());
        assert_eq!(
            schema_path("rules[].from[].source"),
            [
                "properties",
                "rules",
                "items",
                "properties",
                "from",
                "items",
                "properties",
                "source"
            ]
        );
        assert_eq!(
            schema_path("selector.matchLabels{}"),
            [
                "properties",
                "selector",
                "properties",
                "matchLabels",
                "additionalProperties"
            ]
        );
    }
}
