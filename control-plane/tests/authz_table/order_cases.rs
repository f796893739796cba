//! Rows for how policies combine and where they apply: evaluation order, AUDIT, allow-all and
//! allow-nothing, the root namespace, other namespaces, selectors, CUSTOM and targetRefs.

use super::harness::{Case, Outcome::*, ap, case, req};
use super::jwt::{claims, verified};

pub fn cases() -> Vec<Case> {
    let allow_all = ap("default", "allow-all", "{rules: [{}]}");
    let allow_nothing = ap("default", "allow-nothing", "{}");
    let deny_post = ap(
        "default",
        "deny-post",
        "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}",
    );
    let allow_get = ap(
        "default",
        "allow-get",
        "{rules: [{to: [{operation: {methods: [GET]}}]}]}",
    );
    let allow_from_other = ap(
        "default",
        "allow-from-other",
        "{rules: [{from: [{source: {namespaces: [other]}}]}]}",
    );
    let audit_get = ap(
        "default",
        "audit-get",
        "{action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}",
    );
    let custom = ap(
        "default",
        "ext-authz",
        r#"{action: CUSTOM, provider: {name: my-custom-authz}, rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]}"#,
    );
    let root_nothing = ap("istio-system", "mesh-allow-nothing", "{}");
    let root_deny_v1 = ap(
        "istio-system",
        "mesh-deny-v1-delete",
        "{selector: {matchLabels: {version: v1}}, action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}",
    );
    let other_nothing = ap("other", "allow-nothing", "{}");
    let selected_nothing = ap(
        "default",
        "httpbin-allow-nothing",
        "{selector: {matchLabels: {app: httpbin}}}",
    );
    let unselected_nothing = ap(
        "default",
        "reviews-allow-nothing",
        "{selector: {matchLabels: {app: reviews}}}",
    );
    let attached_nothing = ap(
        "default",
        "gateway-allow-nothing",
        "{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]}",
    );

    // The reference page's first example, verbatim but for the namespace.
    let istio_example = ap(
        "default",
        "httpbin",
        r#"{action: ALLOW, rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}, {source: {namespaces: [test]}}], to: [{operation: {methods: [GET], paths: ["/info*"]}}, {operation: {methods: [POST], paths: ["/data"]}}], when: [{key: "request.auth.claims[iss]", values: ["https://accounts.google.com"]}]}]}"#,
    );
    let google = || {
        let mut claims = claims("alice");
        claims["iss"] = "https://accounts.google.com".into();
        verified(claims)
    };

    vec![
        case(
            "the reference example: sleep, GET /info, Google token",
            [istio_example.clone()],
            req().mtls("default", "sleep").path("/info/x").jwt(google()),
            Allowed,
            "\"It allows requests from service account cluster.local/ns/default/sa/sleep ... GET method at paths of prefix /info ... when the request has a valid JWT token issued by https://accounts.google.com\"",
        ),
        case(
            "the reference example: namespace test, POST /data, Google token",
            [istio_example.clone()],
            req()
                .mtls("test", "client")
                .method("POST")
                .path("/data")
                .jwt(google()),
            Allowed,
            "\"or namespace test ... POST method at path /data\"",
        ),
        case(
            "the reference example: another issuer",
            [istio_example.clone()],
            req().mtls("default", "sleep").path("/info").jwt(verified(claims("alice"))),
            Denied,
            "\"when the request has a valid JWT token issued by https://accounts.google.com\" ... \"Any other requests will be denied.\"",
        ),
        case(
            "the reference example: POST /info",
            [istio_example],
            req().mtls("default", "sleep").method("POST").path("/info").jwt(google()),
            Denied,
            "\"Any other requests will be denied.\"",
        ),
        case(
            "no policy: allowed",
            [],
            req().method("DELETE"),
            Allowed,
            "\"If there are no ALLOW policies for the workload, allow the request.\"",
        ),
        case(
            "rules [{}]: allow-all",
            [allow_all.clone()],
            req().method("DELETE").path("/anything"),
            Allowed,
            "\"An empty rule is always matched\": the allow-all policy allows every request",
        ),
        case(
            "spec {}: allow-nothing",
            [allow_nothing.clone()],
            req(),
            Denied,
            "rules \"If not set, the match will never occur. This is equivalent to setting a default of deny ... if the action is ALLOW\"",
        ),
        case(
            "allow-nothing plus allow-all: allowed",
            [allow_nothing, allow_all.clone()],
            req(),
            Allowed,
            "\"If any of the ALLOW policies match the request, allow the request.\"",
        ),
        case(
            "DENY beats ALLOW: a denied method",
            [allow_all.clone(), deny_post.clone()],
            req().method("POST"),
            Denied,
            "\"the deny policies are evaluated first\": a matching DENY policy denies even if an ALLOW policy matches",
        ),
        case(
            "DENY beats ALLOW: another method",
            [allow_all.clone(), deny_post.clone()],
            req().method("GET"),
            Allowed,
            "no DENY policy matches and an ALLOW policy does: allow",
        ),
        case(
            "only DENY policies, none matching",
            [deny_post],
            req().method("PUT"),
            Allowed,
            "\"If there are no ALLOW policies for the workload, allow the request.\"",
        ),
        case(
            "ALLOW policies, none matching",
            [allow_get.clone(), allow_from_other.clone()],
            req().method("POST"),
            Denied,
            "\"If any of the ALLOW policies match the request, allow the request. Deny the request.\"",
        ),
        case(
            "ALLOW policies, the second matching",
            [allow_get.clone(), allow_from_other],
            req().method("POST").mtls("other", "sleep"),
            Allowed,
            "\"If any of the ALLOW policies match the request, allow the request.\"",
        ),
        case(
            "DENY with rules [{}]: deny-all",
            [ap("default", "deny-all", "{action: DENY, rules: [{}]}"), allow_all.clone()],
            req(),
            Denied,
            "\"An empty rule is always matched\": a DENY policy with it denies every request",
        ),
        // AUDIT
        case(
            "AUDIT only, matching: allowed and audited",
            [audit_get.clone()],
            req(),
            Allowed,
            "\"AUDIT policies do not affect whether requests are allowed or denied\"; the request is marked for audit",
        )
        .audited("ns[default]-policy[audit-get]-rule[0]"),
        case(
            "AUDIT only, not matching: allowed",
            [audit_get.clone()],
            req().method("POST"),
            Allowed,
            "\"AUDIT policies do not affect whether requests are allowed or denied\"",
        ),
        case(
            "AUDIT matching does not allow past an ALLOW policy",
            [audit_get.clone(), ap(
                "default",
                "allow-post",
                "{rules: [{to: [{operation: {methods: [POST]}}]}]}",
            )],
            req(),
            Denied,
            "\"Requests will be allowed or denied based solely on CUSTOM, DENY and ALLOW actions.\"",
        ),
        case(
            "AUDIT with DENY: denied",
            [audit_get, ap("default", "deny-all", "{action: DENY, rules: [{}]}")],
            req(),
            Denied,
            "AUDIT does not change a DENY decision",
        ),
        // Scope: root namespace, other namespaces, selectors, targetRefs.
        case(
            "root namespace allow-nothing applies to every namespace",
            [root_nothing.clone()],
            req(),
            Denied,
            "\"If set to root namespace, the policy applies to all namespaces in a mesh.\"",
        ),
        case(
            "root namespace allow-nothing plus a namespace ALLOW",
            [root_nothing, allow_get],
            req(),
            Allowed,
            "ALLOW policies of every scope are considered together: one matches, so allow",
        ),
        case(
            "root namespace selector: the workload's label",
            [root_deny_v1.clone()],
            req().method("DELETE"),
            Denied,
            "a root-namespace selector \"will additionally match with workloads in all namespaces\"",
        ),
        case(
            "root namespace selector: another version",
            [root_deny_v1],
            req().method("DELETE"),
            Allowed,
            "the selector does not match the workload's labels: the policy does not apply",
        )
        .labels(&[("app", "httpbin"), ("version", "v2")])
        .unselected(),
        case(
            "another namespace's policy does not apply",
            [other_nothing],
            req(),
            Allowed,
            "\"The selector will match with workloads in the same namespace as the authorization policy\"",
        )
        .unselected(),
        case(
            "selector matching the workload",
            [selected_nothing],
            req(),
            Denied,
            "the policy \"applies to workloads containing label app: httpbin ... It allows nothing\"",
        ),
        case(
            "selector not matching the workload",
            [unselected_nothing],
            req(),
            Allowed,
            "the selector selects other workloads: no policy applies here",
        )
        .unselected(),
        case(
            "targetRefs: attached to a gateway, not to this workload",
            [attached_nothing],
            req(),
            Allowed,
            "targetRefs attach the policy to the referenced resources (a gateway), not to sidecars: nothing applies",
        )
        .unselected(),
        // CUSTOM (no ext_authz: enforced as DENY on its rules, reported by the controller)
        case(
            "CUSTOM matching: denied",
            [custom.clone(), allow_all.clone()],
            req().path("/admin/users"),
            Denied,
            "CUSTOM is evaluated first; without an extension provider Weft enforces its rules as DENY (never a silent allow)",
        ),
        case(
            "CUSTOM not matching: allowed",
            [custom, allow_all],
            req().path("/public"),
            Allowed,
            "the CUSTOM rules do not match; the allow-all policy allows",
        ),
    ]
}
