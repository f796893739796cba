//! Rows with a RequestAuthentication: real signed tokens through the generated jwt_authn filter,
//! then the RBAC filters on what it verified.

use super::harness::{Case, Outcome::*, ap, case, ra, req};
use super::jwt::{ISSUER, claims, expired_token, foreign_token, jwks, token};

pub fn cases() -> Vec<Case> {
    let authn = ra(
        "default",
        "jwt",
        &format!(
            "{{jwtRules: [{{issuer: \"{ISSUER}\", jwks: '{}'}}]}}",
            jwks()
        ),
    );
    let authn_other_ns = ra(
        "other",
        "jwt",
        &format!(
            "{{jwtRules: [{{issuer: \"{ISSUER}\", jwks: '{}'}}]}}",
            jwks()
        ),
    );
    let require_any = ap(
        "default",
        "require-jwt",
        r#"{rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}"#,
    );
    let require_bob = ap(
        "default",
        "require-bob",
        r#"{rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/bob"]}}]}]}"#,
    );
    let require_admins = ap(
        "default",
        "require-admins",
        r#"{rules: [{when: [{key: "request.auth.claims[groups]", values: ["admins"]}]}]}"#,
    );
    let alice = || token(&claims("alice"));
    let require_write_scope = ap(
        "default",
        "require-write",
        r#"{rules: [{when: [{key: "request.auth.claims[scope]", values: ["write"]}]}]}"#,
    );
    let require_role_b = ap(
        "default",
        "require-role-b",
        r#"{rules: [{when: [{key: "request.auth.claims[roles]", values: ["b"]}]}]}"#,
    );
    let authn_roles = ra(
        "default",
        "jwt",
        &format!(
            "{{jwtRules: [{{issuer: \"{ISSUER}\", jwks: '{}', spaceDelimitedClaims: [roles]}}]}}",
            jwks()
        ),
    );
    let scoped = || {
        let mut c = claims("alice");
        c["scope"] = serde_json::json!("read write");
        c["roles"] = serde_json::json!("a b");
        token(&c)
    };

    vec![
        case(
            "RequestAuthentication + requestPrincipals *: no token",
            [authn.clone(), require_any.clone()],
            req(),
            Denied,
            "a request without a token passes authentication but has no request principal: the ALLOW policy denies it (403)",
        ),
        case(
            "RequestAuthentication + requestPrincipals *: a valid token",
            [authn.clone(), require_any.clone()],
            req().bearer(alice()),
            Allowed,
            "a valid token gives the request principal <iss>/<sub>, which requestPrincipals [\"*\"] matches",
        ),
        case(
            "RequestAuthentication: a token signed with another key",
            [authn.clone(), require_any.clone()],
            req().bearer(foreign_token("alice")),
            Unauthenticated,
            "RequestAuthentication: a request with an invalid token is rejected (401)",
        ),
        case(
            "RequestAuthentication: an expired token",
            [authn.clone(), require_any.clone()],
            req().bearer(expired_token("alice")),
            Unauthenticated,
            "RequestAuthentication: a request with an invalid (expired) token is rejected (401)",
        ),
        case(
            "RequestAuthentication without a policy: no token is allowed",
            [authn.clone()],
            req(),
            Allowed,
            "RequestAuthentication alone accepts requests without a token; authorization must require one",
        ),
        case(
            "requestPrincipals exact: the token of another subject",
            [authn.clone(), require_bob.clone()],
            req().bearer(alice()),
            Denied,
            "the verified principal https://issuer.example/alice is not the listed one (403)",
        ),
        case(
            "requestPrincipals exact: the token of that subject",
            [authn.clone(), require_bob],
            req().bearer(token(&claims("bob"))),
            Allowed,
            "the verified principal is the listed one",
        ),
        case(
            "request.auth.claims from a verified token",
            [authn.clone(), require_admins],
            req().bearer(alice()),
            Allowed,
            "the token's groups claim contains admins",
        ),
        case(
            "request.auth.claims[scope]: one word of a space-delimited scope",
            [authn.clone(), require_write_scope],
            req().bearer(scoped()),
            Allowed,
            "Istio splits the scope and permission claims at spaces: \"read write\" has write",
        ),
        case(
            "request.auth.claims of another claim: matched whole by default",
            [authn.clone(), require_role_b.clone()],
            req().bearer(scoped()),
            Denied,
            "only scope, permission and spaceDelimitedClaims are split: \"a b\" is not b (403)",
        ),
        case(
            "spaceDelimitedClaims: the rule's own claim split at spaces",
            [authn_roles, require_role_b],
            req().bearer(scoped()),
            Allowed,
            "spaceDelimitedClaims [roles] splits \"a b\", which has b",
        ),
        case(
            "RequestAuthentication of another namespace: the token is not verified",
            [authn_other_ns, require_any],
            req().bearer(alice()),
            Denied,
            "a RequestAuthentication applies to its own namespace: no JWT filter here, no request principal (403)",
        ),
    ]
}
