//! Rows for `from.source`: principals, requestPrincipals, namespaces, trustDomains,
//! serviceAccounts, ipBlocks, remoteIpBlocks and each `not*` form.

use super::harness::{Case, Outcome::*, ap, case, req};
use super::jwt::{claims, verified};

const ALLOWED_BY_RULE: &str =
    "\"If any of the ALLOW policies match the request, allow the request.\"";
const NO_ALLOW_MATCH: &str =
    "ALLOW policies select the workload and none matches: \"Deny the request.\"";
const DENY_MATCH: &str =
    "\"If there are any DENY policies that match the request, deny the request.\"";
const NO_DENY_MATCH: &str = "no DENY policy matches and no ALLOW policy applies: \"If there are no ALLOW policies for the workload, allow the request.\"";

pub fn cases() -> Vec<Case> {
    let principals = |values: &str| {
        ap(
            "default",
            "by-principal",
            &format!("{{rules: [{{from: [{{source: {{principals: {values}}}}}]}}]}}"),
        )
    };
    let exact = principals(r#"["cluster.local/ns/default/sa/sleep"]"#);
    let any_peer = principals(r#"["*"]"#);
    let prefix = principals(r#"["cluster.local/ns/default/*"]"#);
    let suffix = principals(r#"["*/sa/sleep"]"#);
    let not_principals = ap(
        "default",
        "not-evil",
        r#"{rules: [{from: [{source: {notPrincipals: ["cluster.local/ns/default/sa/evil"]}}]}]}"#,
    );
    let deny_plaintext = ap(
        "default",
        "deny-plaintext",
        r#"{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}"#,
    );
    let request_principal = ap(
        "default",
        "alice-only",
        r#"{rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]}]}"#,
    );
    let issuer_prefix = ap(
        "default",
        "issuer-prefix",
        r#"{rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]}]}"#,
    );
    let require_jwt = ap(
        "default",
        "require-jwt",
        r#"{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]}"#,
    );
    let namespaces = ap(
        "default",
        "from-other",
        r#"{rules: [{from: [{source: {namespaces: [other]}}]}]}"#,
    );
    let namespace_prefix = ap(
        "default",
        "from-oth",
        r#"{rules: [{from: [{source: {namespaces: ["oth*"]}}]}]}"#,
    );
    let trust_domains = ap(
        "default",
        "from-partner",
        r#"{rules: [{from: [{source: {trustDomains: [partner.example, "*.corp.example"]}}]}]}"#,
    );
    let deny_foreign = ap(
        "default",
        "deny-foreign",
        r#"{action: DENY, rules: [{from: [{source: {notTrustDomains: [cluster.local]}}]}]}"#,
    );
    let deny_outside = ap(
        "default",
        "deny-outside",
        r#"{action: DENY, rules: [{from: [{source: {notNamespaces: [default]}}]}]}"#,
    );
    let accounts = ap(
        "default",
        "by-account",
        r#"{rules: [{from: [{source: {serviceAccounts: [sleep, other/curl]}}]}]}"#,
    );
    let deny_account = ap(
        "default",
        "deny-not-sleep",
        r#"{action: DENY, rules: [{from: [{source: {notServiceAccounts: [sleep]}}]}]}"#,
    );
    let cidr = ap(
        "default",
        "from-cidr",
        r#"{rules: [{from: [{source: {ipBlocks: ["10.1.0.0/16"]}}]}]}"#,
    );
    let bare_ip = ap(
        "default",
        "from-ip",
        r#"{rules: [{from: [{source: {ipBlocks: ["10.1.0.5"]}}]}]}"#,
    );
    let not_ip = ap(
        "default",
        "not-ip",
        r#"{rules: [{from: [{source: {notIpBlocks: ["203.0.113.4"]}}]}]}"#,
    );
    let remote = ap(
        "default",
        "from-remote",
        r#"{rules: [{from: [{source: {remoteIpBlocks: ["192.0.2.0/24"]}}]}]}"#,
    );
    let deny_remote = ap(
        "default",
        "deny-remote",
        r#"{action: DENY, rules: [{from: [{source: {notRemoteIpBlocks: ["10.0.0.0/8", "192.0.2.7"]}}]}]}"#,
    );
    let alice = || verified(claims("alice"));
    let bob = || verified(claims("bob"));
    let mut other_issuer = claims("alice");
    other_issuer["iss"] = "https://other.example".into();
    let other_issuer = verified(other_issuer);

    vec![
        // principals
        case(
            "principals exact: the listed peer",
            [exact.clone()],
            req().mtls("default", "sleep"),
            Allowed,
            "principals: exact match \"abc\" will match on value \"abc\" (peer identity <TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>)",
        ),
        case(
            "principals exact: another peer",
            [exact.clone()],
            req().mtls("default", "productpage"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "principals exact: plaintext has no principal",
            [exact],
            req(),
            Denied,
            "principals \"requires mTLS enabled\": a plaintext request has no peer identity to match",
        ),
        case(
            "principals *: any mTLS peer",
            [any_peer.clone()],
            req().mtls("other", "anyone"),
            Allowed,
            "Presence match: \"*\" will match when value is not empty",
        ),
        case(
            "principals *: plaintext",
            [any_peer],
            req(),
            Denied,
            "Presence match \"*\" needs a non-empty value; plaintext has no principal",
        ),
        case(
            "principals exact: same path, another trust domain",
            [principals(r#"["cluster.local/ns/default/sa/sleep"]"#)],
            req().peer("spiffe://example.org/ns/default/sa/sleep"),
            Denied,
            "the principal is \"<TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>\": another trust domain is another principal",
        ),
        case(
            "principals prefix*: a peer of the namespace",
            [prefix.clone()],
            req().mtls("default", "reviews"),
            Allowed,
            "Prefix match: \"abc*\" will match on value \"abc\" and \"abcd\"",
        ),
        case(
            "principals prefix*: a peer of another namespace",
            [prefix],
            req().mtls("other", "reviews"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "principals *suffix: the account in any namespace",
            [suffix.clone()],
            req().mtls("other", "sleep"),
            Allowed,
            "Suffix match: \"*abc\" will match on value \"abc\" and \"xabc\"",
        ),
        case(
            "principals *suffix: any trust domain",
            [principals(r#"["*/sa/sleep"]"#)],
            req().peer("spiffe://example.org/ns/default/sa/sleep"),
            Allowed,
            "Suffix match: \"*abc\" will match on value \"abc\" and \"xabc\"",
        ),
        case(
            "principals *suffix: another account",
            [suffix],
            req().mtls("default", "sleeper"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "notPrincipals: a peer not listed",
            [not_principals.clone()],
            req().mtls("default", "sleep"),
            Allowed,
            "notPrincipals: \"A list of negative match of peer identities\"; the peer is not listed",
        ),
        case(
            "notPrincipals: the listed peer",
            [not_principals],
            req().mtls("default", "evil"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY notPrincipals *: plaintext is denied",
            [deny_plaintext.clone()],
            req(),
            Denied,
            "DENY notPrincipals [\"*\"] denies requests without a peer identity (plaintext); a matching DENY policy denies",
        ),
        case(
            "DENY notPrincipals *: mTLS passes",
            [deny_plaintext],
            req().mtls("default", "sleep"),
            Allowed,
            NO_DENY_MATCH,
        ),
        // requestPrincipals
        case(
            "requestPrincipals exact: the listed <iss>/<sub>",
            [request_principal.clone()],
            req().jwt(alice()),
            Allowed,
            "requestPrincipals: request identities \"<ISS>/<SUB>\" derived from the JWT; exact match",
        ),
        case(
            "requestPrincipals exact: another subject",
            [request_principal.clone()],
            req().jwt(bob()),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "requestPrincipals exact: no JWT",
            [request_principal],
            req(),
            Denied,
            "requestPrincipals \"requires request authentication enabled\": no token, no request principal",
        ),
        case(
            "requestPrincipals prefix*: the issuer's subjects",
            [issuer_prefix.clone()],
            req().jwt(bob()),
            Allowed,
            "Prefix match on the request principal <ISS>/<SUB>",
        ),
        case(
            "requestPrincipals prefix*: another issuer",
            [issuer_prefix],
            req().jwt(other_issuer),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY notRequestPrincipals *: no JWT is denied",
            [require_jwt.clone()],
            req(),
            Denied,
            "DENY notRequestPrincipals [\"*\"] denies requests without a request principal (Istio's require-JWT pattern)",
        ),
        case(
            "DENY notRequestPrincipals *: a JWT passes",
            [require_jwt],
            req().jwt(alice()),
            Allowed,
            NO_DENY_MATCH,
        ),
        // namespaces
        case(
            "namespaces: a peer of the listed namespace",
            [namespaces.clone()],
            req().mtls("other", "sleep"),
            Allowed,
            "namespaces: \"A list of namespaces derived from the peer certificate\"",
        ),
        case(
            "namespaces: a peer of another namespace",
            [namespaces.clone()],
            req().mtls("default", "sleep"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "namespaces: plaintext",
            [namespaces],
            req(),
            Denied,
            "namespaces \"requires mTLS enabled\": a plaintext request has no namespace",
        ),
        // trustDomains
        case(
            "trustDomains: a peer of the listed trust domain",
            [trust_domains.clone()],
            req().peer("spiffe://partner.example/ns/shop/sa/client"),
            Allowed,
            "trustDomains: \"A list of trust domains derived from the peer certificate\"",
        ),
        case(
            "trustDomains *suffix: a peer whose trust domain ends with it",
            [trust_domains.clone()],
            req().peer("spiffe://eu.corp.example/ns/shop/sa/client"),
            Allowed,
            "trustDomains \"Can be exact, prefix, suffix and presence\"",
        ),
        case(
            "trustDomains: a peer of the mesh's own trust domain",
            [trust_domains.clone()],
            req().mtls("default", "sleep"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "trustDomains: a look-alike in the path is not the trust domain",
            [trust_domains.clone()],
            req().peer("spiffe://cluster.local/ns/partner.example/sa/client"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "trustDomains: plaintext",
            [trust_domains],
            req(),
            Denied,
            "trustDomains \"requires mTLS enabled\": a plaintext request has no trust domain",
        ),
        case(
            "notTrustDomains in a DENY rule: a peer of another trust domain",
            [deny_foreign.clone()],
            req().peer("spiffe://partner.example/ns/shop/sa/client"),
            Denied,
            DENY_MATCH,
        ),
        case(
            "notTrustDomains in a DENY rule: a peer of the mesh's trust domain",
            [deny_foreign],
            req().mtls("default", "sleep"),
            Allowed,
            NO_DENY_MATCH,
        ),
        case(
            "namespaces prefix*: a matching namespace",
            [namespace_prefix.clone()],
            req().mtls("other", "sleep"),
            Allowed,
            "Prefix match: \"abc*\" on the source namespace",
        ),
        case(
            "namespaces prefix*: a namespace without the prefix",
            [namespace_prefix],
            req().mtls("default", "sleep"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY notNamespaces: a peer from outside",
            [deny_outside.clone()],
            req().mtls("other", "sleep"),
            Denied,
            DENY_MATCH,
        ),
        case(
            "DENY notNamespaces: a peer from inside",
            [deny_outside],
            req().mtls("default", "sleep"),
            Allowed,
            NO_DENY_MATCH,
        ),
        // serviceAccounts
        case(
            "serviceAccounts <sa>: in the policy's namespace",
            [accounts.clone()],
            req().mtls("default", "sleep"),
            Allowed,
            "serviceAccounts: \"<serviceaccount> may also be used to use the same namespace as the AuthorizationPolicy\"",
        ),
        case(
            "serviceAccounts <sa>: same name, another namespace",
            [accounts.clone()],
            req().mtls("other", "sleep"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "serviceAccounts <ns>/<sa>: the listed account",
            [accounts],
            req().mtls("other", "curl"),
            Allowed,
            "serviceAccounts: \"This takes the format <namespace>/<serviceaccount>\"",
        ),
        case(
            "DENY notServiceAccounts: another account",
            [deny_account.clone()],
            req().mtls("default", "productpage"),
            Denied,
            DENY_MATCH,
        ),
        case(
            "DENY notServiceAccounts: the listed account",
            [deny_account],
            req().mtls("default", "sleep"),
            Allowed,
            NO_DENY_MATCH,
        ),
        // ipBlocks
        case(
            "ipBlocks CIDR: inside",
            [cidr.clone()],
            req().peer_ip("10.1.200.3"),
            Allowed,
            "ipBlocks: \"populated from the source address of the IP packet\"; CIDR (e.g. 203.0.113.0/24) is supported",
        ),
        case(
            "ipBlocks CIDR: outside",
            [cidr],
            req().peer_ip("10.2.0.1"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "ipBlocks bare IP: that address",
            [bare_ip.clone()],
            req().peer_ip("10.1.0.5"),
            Allowed,
            "ipBlocks: \"Single IP (e.g. 203.0.113.4) ... supported\"",
        ),
        case(
            "ipBlocks bare IP: the next address",
            [bare_ip],
            req().peer_ip("10.1.0.6"),
            Denied,
            "a single IP is that one address only; ALLOW present and none matching: deny",
        ),
        case(
            "notIpBlocks: another address",
            [not_ip.clone()],
            req().peer_ip("203.0.113.5"),
            Allowed,
            "notIpBlocks: \"A list of negative match of IP blocks\"",
        ),
        case(
            "notIpBlocks: the listed address",
            [not_ip],
            req().peer_ip("203.0.113.4"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // remoteIpBlocks (no X-Forwarded-For: the remote address is the peer's)
        case(
            "remoteIpBlocks: inside",
            [remote.clone()],
            req().peer_ip("192.0.2.10"),
            Allowed,
            "remoteIpBlocks: \"This is the same as the remote.ip attribute\" (the client address; no forwarding here)",
        ),
        case(
            "remoteIpBlocks: outside",
            [remote],
            req().peer_ip("198.51.100.1"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY notRemoteIpBlocks: outside the blocks",
            [deny_remote.clone()],
            req().peer_ip("198.51.100.1"),
            Denied,
            DENY_MATCH,
        ),
        case(
            "DENY notRemoteIpBlocks: the bare IP listed",
            [deny_remote],
            req().peer_ip("192.0.2.7"),
            Allowed,
            NO_DENY_MATCH,
        ),
        case(
            "ipBlocks IPv6 CIDR: inside",
            [ap(
                "default",
                "from-v6",
                r#"{rules: [{from: [{source: {ipBlocks: ["2001:db8::/32"]}}]}]}"#,
            )],
            req().peer_ip("2001:db8:1::5"),
            Allowed,
            "ipBlocks: CIDR blocks, IPv6 as IPv4",
        ),
        case(
            "ipBlocks IPv6 CIDR: outside",
            [ap(
                "default",
                "from-v6",
                r#"{rules: [{from: [{source: {ipBlocks: ["2001:db8::/32"]}}]}]}"#,
            )],
            req().peer_ip("2001:db9::5"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // Several sources of one rule: any of them.
        case(
            "from: either source",
            [ap(
                "default",
                "either",
                r#"{rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}, {source: {namespaces: [test]}}]}]}"#,
            )],
            req().mtls("test", "anyone"),
            Allowed,
            "\"A match occurs when at least one source, one operation and all conditions matches the request.\"",
        ),
        case(
            "from: neither source",
            [ap(
                "default",
                "either",
                r#"{rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}, {source: {namespaces: [test]}}]}]}"#,
            )],
            req().mtls("default", "productpage"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // Fields of one source are ANDed.
        case(
            "source fields ANDed: namespace and IP both match",
            [ap(
                "default",
                "and",
                r#"{rules: [{from: [{source: {namespaces: [other], ipBlocks: ["10.1.0.0/16"]}}]}]}"#,
            )],
            req().mtls("other", "sleep"),
            Allowed,
            ALLOWED_BY_RULE,
        ),
        case(
            "source fields ANDed: namespace matches, IP does not",
            [ap(
                "default",
                "and",
                r#"{rules: [{from: [{source: {namespaces: [other], ipBlocks: ["10.9.0.0/16"]}}]}]}"#,
            )],
            req().mtls("other", "sleep"),
            Denied,
            "\"Source specifies the source identities of a request. Fields in the source are ANDed together.\"",
        ),
    ]
}
