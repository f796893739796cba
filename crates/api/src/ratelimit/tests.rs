use crate::object::{ConfigObject, Kind, parse_documents};

/// The errors of one `LocalRateLimit` document with `spec`, as `path: message` strings.
fn errors(spec: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: ratelimit.weft.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {{name: r, namespace: default}}\nspec: {spec}\n"
    );
    let docs = parse_documents(&text);
    match &docs[0].result {
        Ok(object) => {
            assert_eq!(object.kind(), Kind::LocalRateLimit);
            Vec::new()
        }
        Err(e) => e.errors().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn validation_table() {
    let cases: &[(&str, &[&str])] = &[
        // Good specs.
        ("{limit: {requests: 100, per: 1s}}", &[]),
        (
            "{selector: {matchLabels: {app: reviews}}, ports: [9080], limit: {requests: 100, per: 1s, burst: 200}}",
            &[],
        ),
        (
            "{rules: [{name: login, match: {uri: {prefix: /login}, method: {exact: POST}, headers: {x-tier: {exact: free}}}, limit: {requests: 5, per: 1m}, perHeaderValue: x-user-id, maxKeys: 10}]}",
            &[],
        ),
        (
            "{rules: [{name: all, limit: {requests: 1, per: 50ms}}]}",
            &[],
        ),
        // Bad specs, each error with its path.
        ("{}", &["spec: at least one of limit or rules must be set"]),
        (
            "{limit: {requests: 0, per: 10ms}}",
            // The schema's minimum first, as the API server checks it before the webhook.
            &["spec.limit.requests: must be at least 1"],
        ),
        (
            "{limit: {requests: 1, per: 10ms}}",
            &["spec.limit.per: must be at least 50ms"],
        ),
        (
            "{limit: {requests: 10, per: 1s, burst: 5}}",
            &["spec.limit.burst: must be at least requests (10)"],
        ),
        (
            "{ports: [0], limit: {requests: 1, per: 1s}}",
            &["spec.ports[0]: port number 0 must be in the range 1..65535"],
        ),
        (
            "{rules: [{name: a, limit: {requests: 5, per: 1m}}, {name: a, limit: {requests: 5, per: 10ms}}]}",
            // The CRD's CEL rule first, as the API server checks it before the webhook.
            &["spec.rules: rule names must be unique"],
        ),
        (
            "{rules: [{name: Login, limit: {requests: 5, per: 1s}}]}",
            &[
                "spec.rules[0].name: \"Login\" is not a DNS-1123 label (lower case letters, digits and '-', at most 63)",
            ],
        ),
        (
            "{rules: [{name: r, match: {uri: {}, headers: {X-Bad: {exact: a}}}, limit: {requests: 5, per: 1s}}]}",
            &[
                "spec.rules[0].match.uri: string match must set one of `exact`, `prefix` or `regex`",
                "spec.rules[0].match.headers[X-Bad]: header name \"X-Bad\" must be lowercase",
            ],
        ),
        (
            "{rules: [{name: r, match: {method: {regex: '('}}, limit: {requests: 5, per: 1s}}]}",
            &["spec.rules[0].match.method.regex: invalid regex"],
        ),
        (
            "{rules: [{name: r, limit: {requests: 5, per: 1s}, maxKeys: 0}]}",
            // The schema's minimum refuses it before the rules are read, as the API server does.
            &["spec.rules[0].maxKeys: must be at least 1"],
        ),
        (
            "{rules: [{name: r, limit: {requests: 5, per: 1s}, perHeaderValue: 'x user'}]}",
            &["spec.rules[0].perHeaderValue: header name \"x user\" is not a valid header name"],
        ),
        (
            "{limit: {requests: 1, per: 1s, brust: 2}}",
            &["spec.limit.brust: unknown field \"brust\""],
        ),
        (
            "{limit: {requests: 1, per: 1s}, global: true}",
            &["spec.global: unknown field \"global\""],
        ),
    ];
    for (spec, want) in cases {
        let got = errors(spec);
        assert_eq!(got.len(), want.len(), "{spec}: {got:?}");
        for (g, w) in got.iter().zip(want.iter()) {
            assert!(g.starts_with(w), "{spec}: got {g:?}, want {w:?}");
        }
    }
}

#[test]
fn defaults_and_round_trip() {
    let docs = parse_documents(
        "apiVersion: ratelimit.weft.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: r}\nspec:\n  limit: {requests: 100, per: 1s}\n  rules: [{name: a, limit: {requests: 5, per: 1m}, perHeaderValue: x-user-id}]\n",
    );
    let Ok(ConfigObject::LocalRateLimit(r)) = &docs[0].result else {
        panic!("{:?}", docs[0].result);
    };
    let limit = r.spec.limit.as_ref().unwrap();
    assert_eq!(limit.max_tokens(), 100);
    assert_eq!(r.spec.rules[0].max_keys(), 1000);
    assert!(r.spec.rules[0].matches_all());
    // Only v1alpha1 is served.
    let docs = parse_documents(
        "apiVersion: ratelimit.weft.io/v1\nkind: LocalRateLimit\nmetadata: {name: r}\nspec: {limit: {requests: 1, per: 1s}}\n",
    );
    assert!(
        docs[0].result.as_ref().unwrap_err().errors()[0]
            .to_string()
            .starts_with("apiVersion: unsupported version")
    );
    let yaml = serde_yaml::to_string(&r.spec).unwrap();
    let back: super::LocalRateLimit = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, r.spec);
}
