//! LocalRateLimit end to end through the proxy's converters: the inbound connection manager's
//! local rate limit filters, as the proxy reads them, must carry every field of the object
//! (buckets, rule matches in order, first match, per-header buckets and their bound, the
//! refusal's status and header).

use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3 as lds;
use weft_proxy::config::local_ratelimit::{Action, BucketSpec, LocalRateLimit};
use weft_proxy::config::{HeaderSource, HttpFilter, Listener, Network};

use super::check::{APP_PORT, ConfigCase, Generated, ProxySpec, controller_proxy, free_ports};
use super::fixtures::config_from;

const LIMITS: &str = r#"
apiVersion: ratelimit.weft.io/v1alpha1
kind: LocalRateLimit
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: contract}}
  ports: [9080]
  limit: {requests: 100, per: 1s, burst: 200}
  rules:
  - name: login
    match:
      uri: {prefix: /login}
      method: {exact: POST}
      headers: {x-tier: {exact: free}, x-trace: {}}
    limit: {requests: 5, per: 1m}
    perHeaderValue: x-user-id
    maxKeys: 10
  - name: api
    match: {uri: {regex: "/api/v[0-9]+"}}
    limit: {requests: 50, per: 500ms, burst: 60}
---
apiVersion: ratelimit.weft.io/v1alpha1
kind: LocalRateLimit
metadata: {name: other-port, namespace: default}
spec: {ports: [8080], limit: {requests: 1, per: 1s}}
"#;

/// The local rate limit filters of every chain of the inbound listener, as the proxy reads them.
fn converted(labels: &[(&str, &str)]) -> Vec<Vec<LocalRateLimit>> {
    let set = config_from(&[("ratelimit.yaml", LIMITS)]);
    assert!(set.errors.is_empty(), "ratelimit.yaml: {:#?}", set.errors);
    let case = ConfigCase::local("ratelimit.yaml", set);
    let (outbound, inbound) = free_ports();
    let spec = ProxySpec {
        label: "server".into(),
        namespace: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        app_port: Some(APP_PORT),
        capture: None,
    };
    let generated = Generated::new(&case.model(), &controller_proxy(&spec, outbound, inbound));
    let mut out = Vec::new();
    for resource in &generated.listeners {
        let listener: lds::Listener =
            prost::Message::decode(resource.body.value.as_slice()).expect("listener");
        let listener = Listener::try_from(listener).expect("the proxy accepts the listener");
        for chain in listener.chains {
            let Network::Http(manager) = chain.network else {
                continue;
            };
            let limits = manager
                .http_filters
                .into_iter()
                .filter_map(|f| match f {
                    HttpFilter::LocalRateLimit(l) => Some(*l),
                    _ => None,
                })
                .collect();
            out.push(limits);
        }
    }
    out
}

#[test]
fn every_local_rate_limit_field_reaches_the_proxy() {
    let chains = converted(&[("app", "contract")]);
    let inbound: Vec<&Vec<LocalRateLimit>> = chains.iter().filter(|c| !c.is_empty()).collect();
    // The inbound listener's TLS and plaintext chains (PERMISSIVE); outbound has none.
    assert_eq!(inbound.len(), 2);
    let limits = inbound[0];
    assert_eq!(limits.len(), 3, "login, api, the workload's");
    for l in limits {
        assert!(l.enforced, "{}", l.stat_prefix);
        assert_eq!(l.status.as_u16(), 429);
        assert_eq!(l.response_headers.len(), 1);
        let (name, value, append) = &l.response_headers[0];
        assert_eq!(
            (name.as_str(), value.to_str().unwrap(), *append),
            ("x-envoy-ratelimited", "true", false)
        );
    }
    let [login, api, workload] = &limits[..] else {
        unreachable!()
    };

    // The workload's bucket: burst 200, 100 per second, no descriptors.
    assert_eq!(
        workload.default_bucket,
        Some(BucketSpec {
            max_tokens: 200,
            tokens_per_fill: 100,
            fill_interval: Duration::from_secs(1)
        })
    );
    assert!(workload.rate_limits.is_empty() && workload.descriptors.is_empty());

    // login: its match (path, method, headers), a bucket per x-user-id (10 kept), one without.
    assert_eq!(login.default_bucket, None);
    assert_eq!(login.max_dynamic, 10);
    let [
        Action::HeaderValueMatch {
            key,
            value,
            expect_match: true,
            headers,
        },
        Action::RequestHeaders {
            header,
            key: header_key,
            skip_if_absent: true,
        },
    ] = &login.rate_limits[0][..]
    else {
        panic!("{:?}", login.rate_limits);
    };
    assert_eq!((key.as_str(), value.as_str()), ("weft.rule", "login"));
    let sources: Vec<&HeaderSource> = headers.iter().map(|h| &h.source).collect();
    assert_eq!(sources[..2], [&HeaderSource::Path, &HeaderSource::Method]);
    assert_eq!(headers.len(), 4, "path, method, x-tier, x-trace");
    assert_eq!(
        (header.as_str(), header_key.as_str()),
        ("x-user-id", "x-user-id")
    );
    let five_a_minute = BucketSpec {
        max_tokens: 5,
        tokens_per_fill: 5,
        fill_interval: Duration::from_secs(60),
    };
    let rule = |v: &str| ("weft.rule".to_string(), Some(v.to_string()));
    assert_eq!(login.descriptors.len(), 2);
    assert_eq!(
        login.descriptors[0].entries,
        [rule("login"), ("x-user-id".to_string(), None)]
    );
    assert_eq!(login.descriptors[1].entries, [rule("login")]);
    assert!(login.descriptors.iter().all(|d| d.bucket == five_a_minute));

    // api: only when login did not match (first match wins).
    let [
        Action::HeaderValueMatch {
            key,
            value,
            expect_match: false,
            headers: not_login,
        },
        Action::HeaderValueMatch {
            expect_match: true, ..
        },
    ] = &api.rate_limits[0][..]
    else {
        panic!("{:?}", api.rate_limits);
    };
    assert_eq!(
        (key.as_str(), value.as_str(), not_login.len()),
        ("weft.unmatched", "login", 4)
    );
    assert_eq!(
        api.descriptors[0].entries,
        [
            ("weft.unmatched".to_string(), Some("login".to_string())),
            rule("api")
        ]
    );
    assert_eq!(
        api.descriptors[0].bucket,
        BucketSpec {
            max_tokens: 60,
            tokens_per_fill: 50,
            fill_interval: Duration::from_millis(500)
        }
    );

    // A workload the selector does not pick gets only the namespace-wide object's, and that
    // one is for port 8080: nothing on 9080.
    assert!(converted(&[("app", "ratings")]).iter().all(Vec::is_empty));
}
