//! The AuthorizationPolicy outcome table: Istio's documented outcomes, checked through both
//! halves of Weft — the controller's translation and the proxy's evaluation.
//!
//! Each row is one or more AuthorizationPolicy (and RequestAuthentication) documents, a request
//! with its connection (peer address and mTLS identity, destination, SNI, headers, a verified
//! JWT or a real signed token), the outcome Istio documents (allowed, 403, 401) and the rule
//! that decides it. Per row (`authz_table/harness.rs`): the YAML is loaded as local mode loads
//! it, the model is built, the controller generates `virtualInbound` for a sidecar in `default`
//! (labels `app=httpbin,version=v1` unless the row says otherwise; app port 9080, which is also
//! the destination port of the facts, as the proxy has no original destination port before
//! transparent capture), its connection manager's HTTP filters are converted with the proxy's
//! own `TryFrom`s (`weft_proxy::authn::JwtAuthn`, `weft_proxy::authz::Rbac`), and the request
//! goes through them in order as Envoy chains them: a JWT failure is 401, a matching DENY
//! policy or an ALLOW filter without a matching policy is 403, LOG only marks the request.
//! Nothing on the Envoy side is written by hand.
//!
//! Rows by topic: `from.source` (`source_cases.rs`), `to.operation` (`operation_cases.rs`),
//! `when` (`condition_cases.rs`), evaluation order and scope (`order_cases.rs`), request
//! authentication with signed tokens (`jwt_cases.rs`). [`the_table_covers_every_field`]
//! keeps the table honest: every field and condition key of the contract appears in an allowed
//! and in a denied row.

#[allow(dead_code)]
#[path = "contract/check.rs"]
mod check;

#[path = "authz_table/condition_cases.rs"]
mod condition_cases;
#[path = "authz_table/harness.rs"]
mod harness;
#[path = "authz_table/jwt.rs"]
mod jwt;
#[path = "authz_table/jwt_cases.rs"]
mod jwt_cases;
#[path = "authz_table/operation_cases.rs"]
mod operation_cases;
#[path = "authz_table/order_cases.rs"]
mod order_cases;
#[path = "authz_table/source_cases.rs"]
mod source_cases;

use std::collections::BTreeSet;

use harness::{Case, Outcome};

/// Every row of the table.
fn all_cases() -> Vec<Case> {
    let mut cases = source_cases::cases();
    cases.extend(operation_cases::cases());
    cases.extend(condition_cases::cases());
    cases.extend(order_cases::cases());
    cases.extend(jwt_cases::cases());
    cases
}

fn assert_no_failures(what: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} rows differ from Istio's documented outcome:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn authorization_policy_outcomes_match_istio() {
    let mut cases = source_cases::cases();
    cases.extend(operation_cases::cases());
    cases.extend(condition_cases::cases());
    cases.extend(order_cases::cases());
    let failures = harness::run(&cases);
    assert_no_failures("AuthorizationPolicy table", cases.len(), &failures);
}

#[test]
fn request_authentication_outcomes_match_istio() {
    let cases = jwt_cases::cases();
    let failures = harness::run(&cases);
    assert_no_failures("RequestAuthentication table", cases.len(), &failures);
}

/// Fields and condition keys of the contract, each with the pattern that finds it in a row's
/// YAML.
const FIELDS: &[(&str, &str)] = &[
    ("principals", r"\bprincipals:"),
    ("notPrincipals", r"\bnotPrincipals:"),
    ("requestPrincipals", r"\brequestPrincipals:"),
    ("notRequestPrincipals", r"\bnotRequestPrincipals:"),
    ("namespaces", r"\bnamespaces:"),
    ("notNamespaces", r"\bnotNamespaces:"),
    ("serviceAccounts", r"\bserviceAccounts:"),
    ("notServiceAccounts", r"\bnotServiceAccounts:"),
    ("ipBlocks", r"\bipBlocks:"),
    ("notIpBlocks", r"\bnotIpBlocks:"),
    ("remoteIpBlocks", r"\bremoteIpBlocks:"),
    ("notRemoteIpBlocks", r"\bnotRemoteIpBlocks:"),
    ("hosts", r"\bhosts:"),
    ("notHosts", r"\bnotHosts:"),
    ("ports", r"\bports:"),
    ("notPorts", r"\bnotPorts:"),
    ("methods", r"\bmethods:"),
    ("notMethods", r"\bnotMethods:"),
    ("paths", r"\bpaths:"),
    ("notPaths", r"\bnotPaths:"),
    ("paths {*}", r"\{\*\}"),
    ("paths {**}", r"\{\*\*\}"),
    ("request.headers", r"request\.headers\["),
    ("source.ip", r"key: source\.ip\b"),
    ("remote.ip", r"key: remote\.ip\b"),
    ("source.namespace", r"key: source\.namespace\b"),
    ("source.principal", r"key: source\.principal\b"),
    ("request.auth.principal", r"key: request\.auth\.principal\b"),
    ("request.auth.audiences", r"key: request\.auth\.audiences\b"),
    ("request.auth.presenter", r"key: request\.auth\.presenter\b"),
    ("request.auth.claims", r"request\.auth\.claims\[\w+\]"),
    (
        "request.auth.claims nested",
        r"request\.auth\.claims\[\w+\]\[\w+\]",
    ),
    ("destination.ip", r"key: destination\.ip\b"),
    ("destination.port", r"key: destination\.port\b"),
    ("connection.sni", r"key: connection\.sni\b"),
    ("notValues", r"\bnotValues:"),
    ("action: DENY", r"action: DENY"),
    ("action: AUDIT", r"action: AUDIT"),
    ("action: CUSTOM", r"action: CUSTOM"),
    ("selector", r"\bselector:"),
    ("root namespace", r"namespace: istio-system"),
    ("another namespace", r"namespace: other\}"),
    ("RequestAuthentication", r"kind: RequestAuthentication"),
];

#[test]
fn the_table_covers_every_field() {
    let cases = all_cases();
    assert!(cases.len() >= 60, "only {} rows", cases.len());
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "two rows named {:?}", case.name);
        assert!(!case.reason.is_empty(), "{:?} gives no reason", case.name);
    }
    let mut missing = Vec::new();
    for (field, pattern) in FIELDS {
        let pattern = regex::Regex::new(pattern).expect("field pattern");
        for outcome in [Outcome::Allowed, Outcome::Denied] {
            let covered = cases.iter().any(|case| {
                case.expect == outcome && case.policies.iter().any(|doc| pattern.is_match(doc))
            });
            if !covered {
                missing.push(format!("{field} in a row {outcome:?}"));
            }
        }
    }
    for (what, covered) in [
        (
            "a row with mutual TLS",
            cases.iter().any(|c| c.request.principal.is_some()),
        ),
        (
            "a row with a verified JWT",
            cases.iter().any(|c| c.request.jwt.is_some()),
        ),
        (
            "a row with a signed token",
            cases
                .iter()
                .any(|c| c.request.headers.iter().any(|(h, _)| *h == "authorization")),
        ),
        (
            "a row with an SNI",
            cases.iter().any(|c| c.request.sni.is_some()),
        ),
        (
            "a 401 row",
            cases.iter().any(|c| c.expect == Outcome::Unauthenticated),
        ),
        (
            "a targetRefs row",
            cases
                .iter()
                .any(|c| c.policies.iter().any(|p| p.contains("targetRefs:"))),
        ),
        ("an audited row", cases.iter().any(|c| c.audited.is_some())),
        (
            "a row without any policy",
            cases.iter().any(|c| c.policies.is_empty()),
        ),
    ] {
        if !covered {
            missing.push(what.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "the table does not cover: {}",
        missing.join(", ")
    );
}
