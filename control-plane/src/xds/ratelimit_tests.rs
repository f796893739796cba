//! LocalRateLimit → local rate limit filters: on the selected workload's inbound connection
//! managers only, for the right ports, rules first-match through `weft.unmatched` entries.

use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::rate_limit::action::ActionSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_filter,
};
use prost::Message;

use super::*;
use crate::testing::model_from_yaml;
use crate::xds::capture::testing::{capturing_proxy, mesh};
use crate::xds::listeners::{VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, listeners};

const LIMITS: &str = r#"
apiVersion: ratelimit.weft.io/v1alpha1
kind: LocalRateLimit
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  ports: [9080]
  limit: {requests: 100, per: 1s, burst: 200}
  rules:
  - name: login
    match: {uri: {exact: /login}, method: {exact: POST}, headers: {x-tier: {}}}
    limit: {requests: 5, per: 1m}
    perHeaderValue: x-user-id
    maxKeys: 10
  - name: rest
    limit: {requests: 50, per: 1s}
  - name: never
    limit: {requests: 1, per: 1s}
"#;

/// The local rate limit configs of every HTTP connection manager of `listener`, per chain.
fn rate_limits(listener: &Listener) -> Vec<(String, Vec<LocalRateLimit>)> {
    listener
        .filter_chains
        .iter()
        .filter_map(|chain| {
            let f = chain.filters.first()?;
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                return None;
            };
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).ok()?;
            let configs = hcm
                .http_filters
                .iter()
                .filter(|f| f.name == LOCAL_RATELIMIT)
                .map(|f| match &f.config_type {
                    Some(http_filter::ConfigType::TypedConfig(any)) => {
                        assert_eq!(any.type_url, weft_xds::contract::LOCAL_RATELIMIT_TYPE_URL);
                        LocalRateLimit::decode(any.value.as_slice()).expect("decodes")
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                hcm.http_filters.last().map(|f| f.name.as_str()),
                Some("envoy.filters.http.router")
            );
            Some((chain.name.clone(), configs))
        })
        .collect()
}

fn inbound(model: &Model, proxy: &Proxy) -> Listener {
    listeners(model, proxy)
        .into_iter()
        .find(|l| l.name == VIRTUAL_INBOUND)
        .expect("inbound listener")
}

#[test]
fn explicit_shape_gets_rule_filters_then_the_workload_filter() {
    let model = model_from_yaml(LIMITS);
    assert!(
        model.warnings.iter().any(|w| w.path == "spec.rules[2]"),
        "{:?}",
        model.warnings
    );
    let mut proxy = Proxy::sidecar("default");
    proxy.labels = [("app".to_string(), "reviews".to_string())].into();
    proxy.app_port = Some(9080);
    let all = rate_limits(&inbound(&model, &proxy));
    // PERMISSIVE: a TLS and a plaintext chain, the same filters on both.
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].1, all[1].1);
    let configs = &all[0].1;
    let prefixes: Vec<&str> = configs.iter().map(|c| c.stat_prefix.as_str()).collect();
    // `never` follows a rule that matches everything: left out.
    assert_eq!(
        prefixes,
        [
            "weft_local_rate_limit.default.reviews.login",
            "weft_local_rate_limit.default.reviews.rest",
            "weft_local_rate_limit.default.reviews",
        ]
    );
    for c in configs {
        assert_eq!(c.status.as_ref().map(|s| s.code), Some(429));
        assert_eq!(
            c.filter_enabled
                .as_ref()
                .and_then(|f| f.default_value.as_ref())
                .map(|v| v.numerator),
            Some(100)
        );
        assert_eq!(
            c.filter_enforced
                .as_ref()
                .and_then(|f| f.default_value.as_ref())
                .map(|v| v.numerator),
            Some(100)
        );
        let header = c.response_headers_to_add[0].header.as_ref().unwrap();
        assert_eq!(
            (header.key.as_str(), header.value.as_str()),
            ("x-envoy-ratelimited", "true")
        );
    }

    // login: its match, then a bucket per x-user-id (10 at most) and one for requests without it.
    let login = &configs[0];
    assert_eq!(login.token_bucket, None);
    assert_eq!(
        login.max_dynamic_descriptors.as_ref().map(|v| v.value),
        Some(10)
    );
    let actions: Vec<_> = login.rate_limits[0]
        .actions
        .iter()
        .map(|a| a.action_specifier.clone().unwrap())
        .collect();
    let ActionSpecifier::HeaderValueMatch(m) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert_eq!(
        (m.descriptor_key.as_str(), m.descriptor_value.as_str()),
        ("weft.rule", "login")
    );
    let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, [":path", ":method", "x-tier"]);
    let ActionSpecifier::RequestHeaders(r) = &actions[1] else {
        panic!("{actions:?}");
    };
    assert_eq!(
        (r.header_name.as_str(), r.skip_if_absent),
        ("x-user-id", true)
    );
    let descriptor = |c: &LocalRateLimit, i: usize| -> Vec<(String, String)> {
        c.descriptors[i]
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        descriptor(login, 0),
        [pair("weft.rule", "login"), pair("x-user-id", "")]
    );
    assert_eq!(descriptor(login, 1), [pair("weft.rule", "login")]);
    let bucket = login.descriptors[0].token_bucket.as_ref().unwrap();
    assert_eq!(bucket.max_tokens, 5);
    assert_eq!(bucket.tokens_per_fill.as_ref().map(|v| v.value), Some(5));
    assert_eq!(bucket.fill_interval.as_ref().map(|d| d.seconds), Some(60));

    // rest: only when login did not match; every request otherwise.
    let rest = &configs[1];
    let actions: Vec<_> = rest.rate_limits[0]
        .actions
        .iter()
        .map(|a| a.action_specifier.clone().unwrap())
        .collect();
    let ActionSpecifier::HeaderValueMatch(not_login) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert_eq!(not_login.expect_match, Some(BoolValue { value: false }));
    assert!(matches!(&actions[1], ActionSpecifier::GenericKey(g) if g.descriptor_value == "rest"));
    assert_eq!(
        descriptor(rest, 0),
        [pair("weft.unmatched", "login"), pair("weft.rule", "rest")]
    );

    // The workload's bucket.
    let workload = configs[2].token_bucket.as_ref().unwrap();
    assert_eq!(
        (
            workload.max_tokens,
            workload.tokens_per_fill.as_ref().unwrap().value
        ),
        (200, 100)
    );
    assert!(configs[2].descriptors.is_empty() && configs[2].rate_limits.is_empty());

    // Outbound never carries them; another workload or port gets none.
    let outbound = listeners(&model, &proxy)
        .into_iter()
        .find(|l| l.name == VIRTUAL_OUTBOUND)
        .unwrap();
    assert!(rate_limits(&outbound).iter().all(|(_, c)| c.is_empty()));
    let mut ratings = proxy.clone();
    ratings.labels = [("app".to_string(), "ratings".to_string())].into();
    assert!(
        rate_limits(&inbound(&model, &ratings))
            .iter()
            .all(|(_, c)| c.is_empty())
    );
    let mut other_port = proxy.clone();
    other_port.app_port = Some(8080);
    assert!(
        rate_limits(&inbound(&model, &other_port))
            .iter()
            .all(|(_, c)| c.is_empty())
    );
    let mut other_namespace = Proxy::sidecar("prod");
    other_namespace.labels = proxy.labels.clone();
    other_namespace.app_port = Some(9080);
    assert!(
        rate_limits(&inbound(&model, &other_namespace))
            .iter()
            .all(|(_, c)| c.is_empty())
    );
}

#[test]
fn capture_shape_limits_the_selected_ports_chains_only() {
    // The reviews pod serves 9080 (http), 5432/3306 (tcp) and 18000 (undeclared).
    let only_9080 = mesh(
        "apiVersion: ratelimit.weft.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: rl, namespace: default}\nspec: {selector: {matchLabels: {app: reviews}}, ports: [9080], limit: {requests: 10, per: 1s}}\n",
    );
    let proxy = capturing_proxy();
    let limited = |model: &Model| -> Vec<String> {
        rate_limits(&inbound(model, &proxy))
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(name, c)| {
                assert_eq!(c.len(), 1);
                name
            })
            .collect()
    };
    let chains = limited(&only_9080);
    assert!(!chains.is_empty());
    assert!(chains.iter().all(|c| c == "0.0.0.0_9080"), "{chains:?}");
    // Without ports: every HTTP chain (the undeclared port's sniffed ones too).
    let every_port = mesh(
        "apiVersion: ratelimit.weft.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: rl, namespace: default}\nspec: {limit: {requests: 10, per: 1s}}\n",
    );
    let chains = limited(&every_port);
    assert!(chains.iter().any(|c| c == "0.0.0.0_9080"), "{chains:?}");
    assert!(chains.iter().any(|c| c == "0.0.0.0_18000"), "{chains:?}");
    // A selector the pod does not match: nothing.
    let elsewhere = mesh(
        "apiVersion: ratelimit.weft.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: rl, namespace: default}\nspec: {selector: {matchLabels: {app: ratings}}, limit: {requests: 10, per: 1s}}\n",
    );
    assert!(limited(&elsewhere).is_empty());
}

#[test]
fn uri_matches_allow_a_query_string() {
    let re = |m: StringMatch| match path_matcher(&m).and_then(|s| s.match_pattern) {
        Some(string_matcher::MatchPattern::SafeRegex(r)) => {
            let full = regex::Regex::new(&format!("^(?:{})$", r.regex)).unwrap();
            Some(full)
        }
        _ => None,
    };
    let exact = re(StringMatch::Exact("/a.b".into())).unwrap();
    assert!(exact.is_match("/a.b") && exact.is_match("/a.b?x=1"));
    assert!(!exact.is_match("/axb") && !exact.is_match("/a.b/c"));
    let regex = re(StringMatch::Regex("/api/v[0-9]+".into())).unwrap();
    assert!(regex.is_match("/api/v2?q") && !regex.is_match("/api/v2/x"));
    assert!(re(StringMatch::Prefix("/login".into())).is_none());
}
