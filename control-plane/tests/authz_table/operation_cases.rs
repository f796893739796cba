//! Rows for `to.operation`: hosts, ports, methods, paths (exact, `*` forms, `{*}`/`{**}`
//! templates) and each `not*` form.

use super::harness::{Case, Outcome::*, ap, case, req};

const NO_ALLOW_MATCH: &str =
    "ALLOW policies select the workload and none matches: \"Deny the request.\"";
const DENY_MATCH: &str =
    "\"If there are any DENY policies that match the request, deny the request.\"";
const NO_DENY_MATCH: &str = "no DENY policy matches and no ALLOW policy applies: \"If there are no ALLOW policies for the workload, allow the request.\"";

/// An ALLOW policy with one rule `to: [{operation: <operation>}]`.
fn allow_to(name: &str, operation: &str) -> String {
    ap(
        "default",
        name,
        &format!("{{rules: [{{to: [{{operation: {operation}}}]}}]}}"),
    )
}

/// A DENY policy with one rule `to: [{operation: <operation>}]`.
fn deny_to(name: &str, operation: &str) -> String {
    ap(
        "default",
        name,
        &format!("{{action: DENY, rules: [{{to: [{{operation: {operation}}}]}}]}}"),
    )
}

pub fn cases() -> Vec<Case> {
    let exact_host = allow_to("host", r#"{hosts: ["httpbin.default.svc.cluster.local"]}"#);
    let host_and_port = allow_to("host-port", r#"{hosts: ["httpbin.default:9080"]}"#);
    let host_any_port = allow_to(
        "host-any-port",
        r#"{hosts: ["httpbin.default", "httpbin.default:*"]}"#,
    );
    let suffix_host = allow_to("suffix-host", r#"{hosts: ["*.example.com"]}"#);
    let prefix_host = allow_to("prefix-host", r#"{hosts: ["api.*"]}"#);
    let any_host = allow_to("any-host", r#"{hosts: ["*"]}"#);
    let not_hosts = deny_to("not-hosts", r#"{notHosts: ["*.svc.cluster.local"]}"#);
    let ports = allow_to("ports", r#"{ports: ["9080"]}"#);
    let other_port = allow_to("other-port", r#"{ports: ["8080"]}"#);
    let not_ports = deny_to("not-ports", r#"{notPorts: ["9080"]}"#);
    let methods = allow_to("read-only", r#"{methods: [GET, HEAD]}"#);
    let not_methods = deny_to("not-read", r#"{notMethods: [GET, HEAD]}"#);
    let exact_path = allow_to("data", r#"{paths: ["/data"]}"#);
    let prefix_path = allow_to("info", r#"{paths: ["/info*"]}"#);
    let suffix_path = allow_to("png", r#"{paths: ["*.png"]}"#);
    let one_segment = allow_to("one-segment", r#"{paths: ["/foo/{*}"]}"#);
    let any_segments = allow_to("any-segments", r#"{paths: ["/foo/{*}/bar/{**}"]}"#);
    let trailing = allow_to("trailing", r#"{paths: ["/foo/{**}/"]}"#);
    let not_paths = allow_to("not-admin", r#"{notPaths: ["/admin*"]}"#);
    let deny_delete = deny_to("deny-delete", r#"{methods: [DELETE], paths: ["/data*"]}"#);

    vec![
        // hosts
        case(
            "hosts exact: the same host",
            [exact_host.clone()],
            req(),
            Allowed,
            "hosts: \"A list of hosts as specified in the HTTP request\"; exact match",
        ),
        case(
            "hosts exact: other case",
            [exact_host.clone()],
            req().host("HTTPBIN.Default.SVC.cluster.local"),
            Allowed,
            "hosts: \"The match is case-insensitive.\"",
        ),
        case(
            "hosts exact: the host with a port",
            [exact_host.clone()],
            req().host("httpbin.default.svc.cluster.local:9080"),
            Denied,
            "\"exact match authorization policies only match the exact string given for the hosts or notHosts fields\" (use \"host:*\" for ports)",
        ),
        case(
            "hosts exact: another host",
            [exact_host],
            req().host("reviews.default.svc.cluster.local"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "hosts with port: that host and port",
            [host_and_port.clone()],
            req().host("httpbin.default:9080"),
            Allowed,
            "hosts are matched as the Host header is sent, port included",
        ),
        case(
            "hosts with port: another port",
            [host_and_port],
            req().host("httpbin.default:9081"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "hosts h and h:*: with a port",
            [host_any_port.clone()],
            req().host("httpbin.default:9080"),
            Allowed,
            "best practice: hosts: [\"example.com\", \"example.com:*\"] match the host with and without a port",
        ),
        case(
            "hosts h and h:*: without a port",
            [host_any_port],
            req().host("httpbin.default"),
            Allowed,
            "best practice: hosts: [\"example.com\", \"example.com:*\"] match the host with and without a port",
        ),
        case(
            "hosts *suffix: a subdomain, any case",
            [suffix_host.clone()],
            req().host("API.Example.COM"),
            Allowed,
            "Suffix match \"*abc\", case-insensitive for hosts",
        ),
        case(
            "hosts *suffix: another domain",
            [suffix_host],
            req().host("api.example.org"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "hosts prefix*: matching",
            [prefix_host.clone()],
            req().host("api.internal:8443"),
            Allowed,
            "Prefix match \"abc*\" on the Host",
        ),
        case(
            "hosts prefix*: not matching",
            [prefix_host],
            req().host("www.internal"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "hosts *: any host",
            [any_host],
            req().host("anything.example"),
            Allowed,
            "Presence match: \"*\" will match when value is not empty",
        ),
        case(
            "DENY notHosts: a host outside the mesh domain",
            [not_hosts.clone()],
            req().host("evil.example.com"),
            Denied,
            DENY_MATCH,
        ),
        case(
            "DENY notHosts: a mesh host",
            [not_hosts],
            req(),
            Allowed,
            NO_DENY_MATCH,
        ),
        // ports (the destination port is the app port: no original port before capture)
        case(
            "ports: the destination port",
            [ports],
            req(),
            Allowed,
            "ports: \"A list of ports as specified in the connection\"",
        ),
        case(
            "ports: another port",
            [other_port],
            req(),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY notPorts: the listed port",
            [not_ports],
            req(),
            Allowed,
            "notPorts: negative match; the connection's port is listed, so the DENY rule does not match",
        ),
        case(
            "DENY notPorts: another port",
            [deny_to("not-other-port", r#"{notPorts: ["8080"]}"#)],
            req(),
            Denied,
            DENY_MATCH,
        ),
        // methods
        case(
            "methods: listed",
            [methods.clone()],
            req().method("HEAD"),
            Allowed,
            "methods: \"A list of methods as specified in the HTTP request\"",
        ),
        case(
            "methods: not listed",
            [methods],
            req().method("POST"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "DENY notMethods: a write",
            [not_methods.clone()],
            req().method("PUT"),
            Denied,
            DENY_MATCH,
        ),
        case(
            "DENY notMethods: a read",
            [not_methods],
            req().method("GET"),
            Allowed,
            NO_DENY_MATCH,
        ),
        case(
            "DENY methods and paths: both match",
            [deny_delete.clone()],
            req().method("DELETE").path("/data/1"),
            Denied,
            "\"Operation specifies the operations of a request. Fields in the operation are ANDed together.\"",
        ),
        case(
            "DENY methods and paths: the method alone",
            [deny_delete],
            req().method("DELETE").path("/other"),
            Allowed,
            "fields of an operation are ANDed: the path does not match, so the DENY rule does not",
        ),
        // paths
        case(
            "paths exact: the path, query ignored",
            [exact_path.clone()],
            req().path("/data?page=2"),
            Allowed,
            "paths: exact match on the path (istiod matches url_path, the path without its query)",
        ),
        case(
            "paths exact: a longer path",
            [exact_path],
            req().path("/data/1"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "paths prefix*: below the prefix",
            [prefix_path.clone()],
            req().path("/info/detail"),
            Allowed,
            "Prefix match: \"/info*\" (the example's \"GET method at paths of prefix /info\")",
        ),
        case(
            "paths prefix*: not the prefix",
            [prefix_path],
            req().path("/inf"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "paths *suffix: matching",
            [suffix_path.clone()],
            req().path("/img/logo.png"),
            Allowed,
            "Suffix match: \"*abc\" will match on value \"abc\" and \"xabc\"",
        ),
        case(
            "paths *suffix: not matching",
            [suffix_path],
            req().path("/img/logo.jpg"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "paths {*}: one segment",
            [one_segment.clone()],
            req().path("/foo/bar"),
            Allowed,
            "\"/foo/{*} matches /foo/bar\"",
        ),
        case(
            "paths {*}: two segments",
            [one_segment],
            req().path("/foo/bar/baz"),
            Denied,
            "\"/foo/{*} matches /foo/bar but not /foo/bar/baz\"",
        ),
        case(
            "paths {*} and {**}: zero segments after",
            [any_segments.clone()],
            req().path("/foo/buzz/bar/"),
            Allowed,
            "\"/foo/{*}/bar/{**} matches /foo/buzz/bar/ and /foo/buzz/bar/baz\"",
        ),
        case(
            "paths {*} and {**}: several segments after",
            [any_segments.clone()],
            req().path("/foo/buzz/bar/a/b/c"),
            Allowed,
            "\"{**} matches zero or more globs\"",
        ),
        case(
            "paths {*} and {**}: the literal segment differs",
            [any_segments],
            req().path("/foo/buzz/baz/a"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        case(
            "paths {**}/: with the trailing slash",
            [trailing.clone()],
            req().path("/foo//"),
            Allowed,
            "\"/foo/{**}/ matches /foo/bar/, ... and /foo//\"",
        ),
        case(
            "paths {**}/: without the trailing slash",
            [trailing],
            req().path("/foo/bar"),
            Denied,
            "\"/foo/{**}/ ... but not /foo/bar\"",
        ),
        case(
            "notPaths: another path",
            [not_paths.clone()],
            req().path("/public"),
            Allowed,
            "notPaths: \"A list of negative match of paths\"",
        ),
        case(
            "notPaths: the excluded prefix",
            [not_paths],
            req().path("/admin/users"),
            Denied,
            NO_ALLOW_MATCH,
        ),
        // Several operations of one rule: any of them.
        case(
            "to: either operation",
            [ap(
                "default",
                "either",
                r#"{rules: [{to: [{operation: {methods: [GET], paths: ["/info*"]}}, {operation: {methods: [POST], paths: ["/data"]}}]}]}"#,
            )],
            req().method("POST").path("/data"),
            Allowed,
            "\"A match occurs when at least one source, one operation and all conditions matches the request.\"",
        ),
        case(
            "to: operations do not mix",
            [ap(
                "default",
                "either",
                r#"{rules: [{to: [{operation: {methods: [GET], paths: ["/info*"]}}, {operation: {methods: [POST], paths: ["/data"]}}]}]}"#,
            )],
            req().method("POST").path("/info"),
            Denied,
            "each operation's fields are ANDed: POST /info matches neither operation",
        ),
    ]
}
