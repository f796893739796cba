//! Rows for `when`: every condition key Istio supports on HTTP, with `values` and `notValues`.

use serde_json::json;

use super::harness::{Case, Outcome::*, ap, case, req};
use super::jwt::{claims, verified};

const NO_ALLOW_MATCH: &str =
    "ALLOW policies select the workload and none matches: \"Deny the request.\"";
const DENY_MATCH: &str =
    "\"If there are any DENY policies that match the request, deny the request.\"";
const NO_DENY_MATCH: &str = "no DENY policy matches and no ALLOW policy applies: \"If there are no ALLOW policies for the workload, allow the request.\"";

/// An ALLOW policy with one rule `when: [<condition>]`.
fn allow_when(name: &str, condition: &str) -> String {
    ap(
        "default",
        name,
        &format!("{{rules: [{{when: [{condition}]}}]}}"),
    )
}

/// A DENY policy with one rule `when: [<condition>]`.
fn deny_when(name: &str, condition: &str) -> String {
    ap(
        "default",
        name,
        &format!("{{action: DENY, rules: [{{when: [{condition}]}}]}}"),
    )
}

pub fn cases() -> Vec<Case> {
    let header = allow_when(
        "header",
        r#"{key: "request.headers[x-token]", values: ["abc", "def*"]}"#,
    );
    let header_present = allow_when(
        "header-present",
        r#"{key: "request.headers[x-token]", values: ["*"]}"#,
    );
    let header_not = deny_when(
        "header-not",
        r#"{key: "request.headers[x-env]", notValues: ["staging", "dev"]}"#,
    );
    let source_ip = allow_when(
        "source-ip",
        r#"{key: source.ip, values: ["10.1.0.0/16"], notValues: ["10.1.9.9"]}"#,
    );
    let remote_ip = allow_when("remote-ip", r#"{key: remote.ip, values: ["192.0.2.0/24"]}"#);
    let source_namespace = allow_when(
        "source-namespace",
        r#"{key: source.namespace, values: [other]}"#,
    );
    let source_principal = allow_when(
        "source-principal",
        r#"{key: source.principal, values: ["cluster.local/ns/default/sa/sleep"]}"#,
    );
    let auth_principal = allow_when(
        "auth-principal",
        r#"{key: request.auth.principal, values: ["https://issuer.example/alice"]}"#,
    );
    let audiences = allow_when(
        "audiences",
        r#"{key: request.auth.audiences, values: ["bookstore"]}"#,
    );
    let presenter = allow_when(
        "presenter",
        r#"{key: request.auth.presenter, values: ["web"]}"#,
    );
    let claim_string = allow_when(
        "claim-string",
        r#"{key: "request.auth.claims[tier]", values: ["gold"]}"#,
    );
    let claim_list = allow_when(
        "claim-list",
        r#"{key: "request.auth.claims[groups]", values: ["admins"]}"#,
    );
    let claim_nested = allow_when(
        "claim-nested",
        r#"{key: "request.auth.claims[realm][name]", values: ["eu"]}"#,
    );
    let claim_not = deny_when(
        "claim-not",
        r#"{key: "request.auth.claims[groups]", values: ["guests"]}"#,
    );
    let destination_ip = allow_when(
        "destination-ip",
        r#"{key: destination.ip, values: ["10.2.0.0/16"]}"#,
    );
    let destination_port = allow_when(
        "destination-port",
        r#"{key: destination.port, values: ["9080"]}"#,
    );
    let not_destination_port = deny_when(
        "not-destination-port",
        r#"{key: destination.port, notValues: ["9080"]}"#,
    );
    let sni = allow_when(
        "sni",
        r#"{key: connection.sni, values: ["httpbin.default.svc.cluster.local"]}"#,
    );
    let alice = || verified(claims("alice"));
    let mut single_audience = claims("alice");
    single_audience["aud"] = json!("admin-api");
    single_audience["azp"] = json!("cli");
    single_audience["groups"] = json!("dev");
    single_audience["tier"] = json!("silver");
    single_audience["realm"] = json!({"name": "us"});
    let other = || verified(single_audience.clone());

    vec![
        // request.headers
        case(
            "request.headers: a listed value",
            [header.clone()],
            req().header("x-token", "abc"),
            Allowed,
            "request.headers[x-token]: \"HTTP request headers\"; exact match",
        ),
        case(
            "request.headers: a prefix value",
            [header.clone()],
            req().header("x-token", "defghi"),
            Allowed,
            "Prefix match \"def*\" on the header value",
        ),
        case(
            "request.headers: another value",
            [header.clone()],
            req().header("x-token", "xyz"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "request.headers: missing",
            [header],
            req(),
            Denied,
            "a missing header matches no value; ALLOW present and none matching: deny",
        ),
        case(
            "request.headers: the name in another case",
            [allow_when(
                "header-name-case",
                r#"{key: "request.headers[X-Token]", values: ["abc"]}"#,
            )],
            req().header("x-token", "abc"),
            Allowed,
            "request.headers[X-Token] names an HTTP header, and header names are case-insensitive",
        ),
        case(
            "request.headers *: present",
            [header_present.clone()],
            req().header("x-token", "anything"),
            Allowed,
            "Presence match: \"*\" will match when value is not empty",
        ),
        case(
            "request.headers *: missing",
            [header_present],
            req(),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "request.headers notValues: a value not listed",
            [header_not.clone()],
            req().header("x-env", "prod"),
            Denied,
            "notValues: \"A list of negative match of values for the attribute\"; the DENY rule matches",
        ),
        case(
            "request.headers notValues: a listed value",
            [header_not],
            req().header("x-env", "dev"),
            Allowed,
            NO_DENY_MATCH,
        ),
        // source.ip, remote.ip
        case(
            "source.ip: in the block",
            [source_ip.clone()],
            req().peer_ip("10.1.3.4"),
            Allowed,
            "source.ip: \"Source workload instance IP address, supports single IP or CIDR\"",
        ),
        case(
            "source.ip: the notValues address",
            [source_ip.clone()],
            req().peer_ip("10.1.9.9"),
            Denied,
            "values and notValues both apply: the address is excluded",
        ),
        case(
            "source.ip: outside the block",
            [source_ip],
            req().peer_ip("172.16.0.1"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "remote.ip: in the block",
            [remote_ip.clone()],
            req().peer_ip("192.0.2.99"),
            Allowed,
            "remote.ip: \"Original client IP address as determined by X-Forwarded-For or Proxy Protocol\" (none here: the peer)",
        ),
        case(
            "remote.ip: outside the block",
            [remote_ip],
            req().peer_ip("198.51.100.7"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // source.namespace, source.principal
        case(
            "source.namespace: the listed namespace",
            [source_namespace.clone()],
            req().mtls("other", "sleep"),
            Allowed,
            "source.namespace: \"Source workload instance namespace\" (requires mTLS)",
        ),
        case(
            "source.namespace: plaintext",
            [source_namespace],
            req(),
            Denied,
            "source.namespace requires mutual TLS: plaintext has none",
        ),
        case(
            "source.principal: the listed identity",
            [source_principal.clone()],
            req().mtls("default", "sleep"),
            Allowed,
            "source.principal: \"Source workload identity\" (requires mTLS)",
        ),
        case(
            "source.principal: another identity",
            [source_principal],
            req().mtls("default", "productpage"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "source.serviceAccount: the account in the policy's namespace",
            [allow_when(
                "source-account",
                r#"{key: source.serviceAccount, values: [sleep]}"#,
            )],
            req().mtls("default", "sleep"),
            Allowed,
            "source.serviceAccount is the serviceAccounts attribute: <serviceaccount> in the policy's namespace",
        ),
        case(
            "source.serviceAccount: another account",
            [allow_when(
                "source-account",
                r#"{key: source.serviceAccount, values: [sleep]}"#,
            )],
            req().mtls("default", "curl"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // request.auth.*
        case(
            "request.auth.principal: the listed principal",
            [auth_principal.clone()],
            req().jwt(alice()),
            Allowed,
            "request.auth.principal: \"The principal of the authenticated JWT token\" (<iss>/<sub>)",
        ),
        case(
            "request.auth.principal: no JWT",
            [auth_principal],
            req(),
            Denied,
            "request.auth.principal requires request authentication: no token, no principal",
        ),
        case(
            "request.auth.audiences: one of a list",
            [audiences.clone()],
            req().jwt(alice()),
            Allowed,
            "request.auth.audiences: \"The intended audience(s) for this authentication information\"",
        ),
        case(
            "request.auth.audiences: not among them",
            [audiences],
            req().jwt(other()),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "request.auth.presenter: the listed presenter",
            [presenter.clone()],
            req().jwt(alice()),
            Allowed,
            "request.auth.presenter: \"The authorized presenter of the credential\" (azp)",
        ),
        case(
            "request.auth.presenter: another presenter",
            [presenter],
            req().jwt(other()),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "request.auth.claims string: equal",
            [claim_string.clone()],
            req().jwt(alice()),
            Allowed,
            "request.auth.claims[tier]: \"Claims from the origin JWT\"; the string claim equals the value",
        ),
        case(
            "request.auth.claims string: different",
            [claim_string],
            req().jwt(other()),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "request.auth.claims list: contains the value",
            [claim_list.clone()],
            req().jwt(alice()),
            Allowed,
            "request.auth.claims[groups]: a claim \"of type string or list of strings\" matches when one entry matches",
        ),
        case(
            "request.auth.claims list: a string claim that differs",
            [claim_list],
            req().jwt(other()),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "request.auth.claims nested [a][b]: equal",
            [claim_nested.clone()],
            req().jwt(alice()),
            Allowed,
            "request.auth.claims[realm][name]: nested claims, one bracket per level",
        ),
        case(
            "request.auth.claims nested [a][b]: different",
            [claim_nested],
            req().jwt(other()),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY request.auth.claims: no JWT",
            [claim_not],
            req(),
            Allowed,
            "a DENY rule on a claim does not match a request without a token",
        ),
        // destination.*, connection.sni
        case(
            "destination.ip: in the block",
            [destination_ip.clone()],
            req(),
            Allowed,
            "destination.ip: \"Destination workload instance IP address, supports single IP or CIDR\"",
        ),
        case(
            "destination.ip: outside the block",
            [destination_ip],
            req().dest_ip("10.3.0.7"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "destination.port: the app port",
            [destination_port],
            req(),
            Allowed,
            "destination.port: \"Destination workload instance port\"",
        ),
        case(
            "destination.port: another port",
            [allow_when(
                "destination-port",
                r#"{key: destination.port, values: ["8080"]}"#,
            )],
            req(),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY destination.port notValues: the listed port",
            [not_destination_port],
            req(),
            Allowed,
            "notValues lists the port: the DENY condition does not match",
        ),
        case(
            "DENY destination.port notValues: another port listed",
            [deny_when(
                "not-other-port",
                r#"{key: destination.port, notValues: ["8080"]}"#,
            )],
            req(),
            Denied,
            DENY_MATCH,
        ),
        case(
            "connection.sni: the server name",
            [sni.clone()],
            req().sni("httpbin.default.svc.cluster.local"),
            Allowed,
            "connection.sni: \"The server name indication\"",
        ),
        case(
            "connection.sni: no TLS, no server name",
            [sni],
            req(),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // Conditions are ANDed, with the rule's sources and operations.
        case(
            "when: every condition must match",
            [ap(
                "default",
                "all",
                r#"{rules: [{to: [{operation: {methods: [GET]}}], when: [{key: "request.headers[x-a]", values: ["1"]}, {key: "request.headers[x-b]", values: ["2"]}]}]}"#,
            )],
            req().header("x-a", "1").header("x-b", "3"),
            Denied,
            "\"A match occurs when at least one source, one operation and all conditions matches the request.\"",
        ),
        case(
            "when: all conditions and the operation match",
            [ap(
                "default",
                "all",
                r#"{rules: [{to: [{operation: {methods: [GET]}}], when: [{key: "request.headers[x-a]", values: ["1"]}, {key: "request.headers[x-b]", values: ["2"]}]}]}"#,
            )],
            req().header("x-a", "1").header("x-b", "2"),
            Allowed,
            "\"A match occurs when at least one source, one operation and all conditions matches the request.\"",
        ),
    ]
}
