//! Unit tests of the route generator.

use super::*;
use crate::testing::{SERVICES, bookinfo_model, model_from_yaml};
use crate::xds::route_match::match_applies;
use envoy_types::pb::envoy::config::route::v3::header_matcher;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::protobuf::Duration;
use weft_api::networking::StringMatch;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn vhost<'a>(config: &'a RouteConfiguration, name: &str) -> &'a VirtualHost {
    config
        .virtual_hosts
        .iter()
        .find(|vh| vh.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

fn action(route: &Route) -> &RouteAction {
    match &route.action {
        Some(route::Action::Route(action)) => action,
        other => panic!("route action expected, got {other:?}"),
    }
}

fn cluster(route: &Route) -> &str {
    match &action(route).cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) => name,
        other => panic!("single cluster expected, got {other:?}"),
    }
}

fn with_vs(vs: &str) -> Model {
    model_from_yaml(&format!("{SERVICES}\n---\n{vs}"))
}

fn outbound_for(model: &Model, namespace: &str) -> RouteConfiguration {
    outbound(model, &Proxy::sidecar(namespace))
}

#[test]
fn default_virtual_host_domains_and_route() {
    let config = outbound_for(&bookinfo_model(), "default");
    assert_eq!(config.name, "outbound");
    let ratings = vhost(&config, "ratings.default.svc.cluster.local:9080");
    assert_eq!(
        ratings.domains,
        [
            "ratings.default.svc.cluster.local:9080",
            "ratings:9080",
            "ratings.default:9080",
            "ratings.default.svc:9080",
            "ratings.default.svc.cluster.local",
            "ratings",
            "ratings.default",
            "ratings.default.svc",
        ]
    );
    assert_eq!(ratings.routes.len(), 1);
    let route = &ratings.routes[0];
    assert_eq!(route.name, "default");
    assert_eq!(
        route
            .r#match
            .as_ref()
            .and_then(|m| m.path_specifier.clone()),
        Some(route_match::PathSpecifier::Prefix("/".to_string()))
    );
    assert_eq!(
        cluster(route),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    assert_eq!(action(route).timeout, Some(Duration::default()));
}

#[test]
fn short_names_depend_on_the_proxy_namespace() {
    let model = bookinfo_model();
    let from_other = outbound_for(&model, "other");
    let ratings = vhost(&from_other, "ratings.default.svc.cluster.local:9080");
    assert!(!ratings.domains.iter().any(|d| d == "ratings:9080"));
    assert!(ratings.domains.iter().any(|d| d == "ratings.default:9080"));
    let details = vhost(&from_other, "details.other.svc.cluster.local:9080");
    assert!(details.domains.iter().any(|d| d == "details:9080"));
    let from_default = outbound_for(&model, "default");
    let details = vhost(&from_default, "details.other.svc.cluster.local:9080");
    assert!(!details.domains.iter().any(|d| d == "details:9080"));
}

#[test]
fn bare_domains_go_to_port_80_and_tcp_ports_get_no_virtual_host() {
    let config = outbound_for(&bookinfo_model(), "default");
    let web = vhost(&config, "productpage.default.svc.cluster.local:80");
    assert!(web.domains.iter().any(|d| d == "productpage"));
    assert!(web.domains.iter().any(|d| d == "productpage:80"));
    let app = vhost(&config, "productpage.default.svc.cluster.local:9080");
    assert!(!app.domains.iter().any(|d| d == "productpage"));
    assert!(
        !config
            .virtual_hosts
            .iter()
            .any(|vh| vh.name.ends_with(":3306"))
    );
    let grpc = vhost(&config, "grpc.example.com:50051");
    assert_eq!(grpc.domains, ["grpc.example.com:50051", "grpc.example.com"]);
    let mut all: Vec<&String> = config
        .virtual_hosts
        .iter()
        .flat_map(|vh| &vh.domains)
        .collect();
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), count, "domains must be unique");
}

#[test]
fn alt_hosts_follow_istio() {
    assert_eq!(
        alt_hosts("a.ns.svc.cluster.local", "ns", "cluster.local"),
        ["a", "a.ns", "a.ns.svc"]
    );
    assert_eq!(
        alt_hosts("a.ns.svc.cluster.local", "x", "cluster.local"),
        ["a.ns", "a.ns.svc"]
    );
    assert!(alt_hosts("www.example.com", "ns", "cluster.local").is_empty());
    assert!(alt_hosts("a.b.ns.svc.cluster.local", "ns", "cluster.local").is_empty());
}

#[test]
fn virtual_service_routes_in_order_with_source_labels() {
    let model = bookinfo_model();
    let plain = outbound_for(&model, "default");
    let reviews = vhost(&plain, &format!("{REVIEWS}:9080"));
    let names: Vec<&str> = reviews.routes.iter().map(|r| r.name.as_str()).collect();
    // "canary" needs sourceLabels app=productpage; "unreachable" follows a catch-all.
    assert_eq!(names, ["jason", "split"]);

    let jason = &reviews.routes[0];
    let headers = &jason.r#match.as_ref().expect("match").headers;
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].name, "end-user");
    assert_eq!(
        headers[0].header_match_specifier,
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact("jason".to_string())),
                ignore_case: false,
            }
        ))
    );
    assert_eq!(cluster(jason), format!("outbound|9080|v2|{REVIEWS}"));
    assert_eq!(action(jason).timeout, Some(Duration::default()));

    let split = &reviews.routes[1];
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &action(split).cluster_specifier
    else {
        panic!("weighted clusters expected");
    };
    let weights: Vec<(&str, u32)> = weighted
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map_or(0, |w| w.value)))
        .collect();
    assert_eq!(
        weights,
        [
            ("outbound|9080|v1|reviews.default.svc.cluster.local", 80),
            ("outbound|9080|v3|reviews.default.svc.cluster.local", 20)
        ]
    );
    assert_eq!(
        action(split).timeout,
        Some(Duration {
            seconds: 5,
            nanos: 0
        })
    );

    let mut productpage = Proxy::sidecar("default");
    productpage
        .labels
        .insert("app".to_string(), "productpage".to_string());
    let config = outbound(&model, &productpage);
    let reviews = vhost(&config, &format!("{REVIEWS}:9080"));
    let names: Vec<&str> = reviews.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["jason", "canary", "split"]);
    assert_eq!(
        cluster(&reviews.routes[1]),
        format!("outbound|9080|v3|{REVIEWS}")
    );
}

#[test]
fn no_catch_all_means_no_default_route() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  http:
  - match: [{uri: {exact: /ratings/1}}]
    route: [{destination: {host: ratings}}]
"#,
    );
    let config = outbound_for(&model, "default");
    let ratings = vhost(&config, "ratings.default.svc.cluster.local:9080");
    assert_eq!(ratings.routes.len(), 1);
    assert_eq!(
        ratings.routes[0]
            .r#match
            .as_ref()
            .and_then(|m| m.path_specifier.clone()),
        Some(route_match::PathSpecifier::Path("/ratings/1".to_string()))
    );
    assert_eq!(
        cluster(&ratings.routes[0]),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
}

#[test]
fn match_translation() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: r
    match:
    - name: m
      uri: {regex: "/api/v[0-9]+/.*"}
      ignoreUriCase: true
      method: {exact: GET}
      authority: {prefix: ratings}
      scheme: {exact: http}
      headers:
        x-present: {}
        x-prefix: {prefix: abc}
      withoutHeaders:
        x-debug: {exact: "1"}
      queryParams:
        q: {exact: v}
        flag: {}
    route: [{destination: {host: ratings}}]
"#,
    );
    let config = outbound_for(&model, "default");
    let route = &vhost(&config, "ratings.default.svc.cluster.local:9080").routes[0];
    assert_eq!(route.name, "r.m");
    let matching = route.r#match.as_ref().expect("match");
    assert_eq!(
        matching.path_specifier,
        Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
            regex: "/api/v[0-9]+/.*".to_string(),
            engine_type: None,
        }))
    );
    assert_eq!(matching.case_sensitive, Some(BoolValue { value: false }));
    let headers: Vec<(&str, bool, String)> = matching
        .headers
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.invert_match,
                format!("{:?}", h.header_match_specifier),
            )
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|h| h.0).collect();
    // Istio's order: header conditions by name, then the pseudo-headers.
    assert_eq!(
        names,
        [
            "x-debug",
            "x-prefix",
            "x-present",
            ":method",
            ":authority",
            ":scheme"
        ]
    );
    assert!(headers[0].1, "withoutHeaders inverts");
    assert!(
        matching.headers[0].treat_missing_header_as_empty,
        "withoutHeaders matches requests that lack the header, as in Istio"
    );
    assert!(!headers[1].1);
    assert!(!matching.headers[1].treat_missing_header_as_empty);
    assert!(headers[2].2.contains("PresentMatch(true)"));
    assert!(headers[4].2.contains("Prefix(\"ratings\")"));
    let params: Vec<(&str, String)> = matching
        .query_parameters
        .iter()
        .map(|q| {
            (
                q.name.as_str(),
                format!("{:?}", q.query_parameter_match_specifier),
            )
        })
        .collect();
    assert_eq!(params[0].0, "flag");
    assert!(params[0].1.contains("PresentMatch(true)"));
    assert_eq!(params[1].0, "q");
    assert!(params[1].1.contains("Exact(\"v\")"));
}

#[test]
fn port_and_namespace_scoped_matches() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage]
  http:
  - name: web-only
    match: [{port: 80, uri: {prefix: /web}}]
    route: [{destination: {host: productpage}}]
  - name: from-other
    match: [{sourceNamespace: other}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
  - name: rest
    route: [{destination: {host: productpage}}]
"#,
    );
    let config = outbound_for(&model, "default");
    let names = |vh: &VirtualHost| vh.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let web = vhost(&config, "productpage.default.svc.cluster.local:80");
    assert_eq!(names(web), ["web-only", "rest"]);
    // No destination port and several service ports: the port being routed.
    assert_eq!(
        cluster(&web.routes[1]),
        "outbound|80||productpage.default.svc.cluster.local"
    );
    let app = vhost(&config, "productpage.default.svc.cluster.local:9080");
    assert_eq!(names(app), ["rest"]);
    assert_eq!(
        cluster(&app.routes[0]),
        "outbound|9080||productpage.default.svc.cluster.local"
    );

    // For a proxy in `other`, "from-other" matches every request: as in Istio it is a
    // catch-all and "rest" is never reached.
    let config = outbound_for(&model, "other");
    let web = vhost(&config, "productpage.default.svc.cluster.local:80");
    assert_eq!(names(web), ["web-only", "from-other"]);
    assert_eq!(
        cluster(&web.routes[1]),
        "outbound|9080||productpage.default.svc.cluster.local"
    );
}

#[test]
fn actions_rewrites_and_headers() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: moved
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 308}
  - name: teapot
    match: [{uri: {prefix: /tea}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - name: rewritten
    match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /v2, authority: ratings.internal}
    headers:
      request:
        set: {x-set: a}
        add: {x-add: b}
        remove: [x-remove]
      response:
        set: {x-resp: c}
    route: [{destination: {host: details.other.svc.cluster.local}}]
  - name: authority-header
    headers:
      request:
        set: {":authority": via-header}
    route:
    - destination: {host: ratings}
      headers:
        response: {remove: [server]}
"#,
    );
    let config = outbound_for(&model, "default");
    let routes = &vhost(&config, "ratings.default.svc.cluster.local:9080").routes;
    let Some(route::Action::Redirect(redirect)) = &routes[0].action else {
        panic!("redirect expected");
    };
    assert_eq!(redirect.host_redirect, "new.example.com");
    assert_eq!(
        redirect.path_rewrite_specifier,
        Some(redirect_action::PathRewriteSpecifier::PathRedirect(
            "/new".to_string()
        ))
    );
    assert_eq!(
        redirect.response_code,
        redirect_action::RedirectResponseCode::PermanentRedirect as i32
    );
    let Some(route::Action::DirectResponse(direct)) = &routes[1].action else {
        panic!("direct response expected");
    };
    assert_eq!(direct.status, 418);
    assert_eq!(
        direct.body.as_ref().and_then(|b| b.specifier.clone()),
        Some(data_source::Specifier::InlineString(
            "short and stout".to_string()
        ))
    );

    let rewritten = &routes[2];
    assert_eq!(action(rewritten).prefix_rewrite, "/v2");
    assert_eq!(
        action(rewritten).host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "ratings.internal".to_string()
        ))
    );
    assert_eq!(
        cluster(rewritten),
        "outbound|9080||details.other.svc.cluster.local"
    );
    let added: Vec<(String, String, i32)> = rewritten
        .request_headers_to_add
        .iter()
        .map(|h| {
            let header = h.header.as_ref().expect("header");
            (header.key.clone(), header.value.clone(), h.append_action)
        })
        .collect();
    assert_eq!(
        added,
        [
            (
                "x-set".to_string(),
                "a".to_string(),
                header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            ),
            (
                "x-add".to_string(),
                "b".to_string(),
                header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32
            ),
        ]
    );
    assert_eq!(rewritten.request_headers_to_remove, ["x-remove"]);
    assert_eq!(rewritten.response_headers_to_add.len(), 1);

    let via_header = &routes[3];
    assert!(via_header.request_headers_to_add.is_empty());
    assert_eq!(
        action(via_header).host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "via-header".to_string()
        ))
    );
    assert_eq!(via_header.response_headers_to_remove, ["server"]);
}

#[test]
fn unknown_destinations_still_get_a_cluster_name_and_a_warning() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: nowhere, subset: v1, port: {number: 8080}}}]
"#,
    );
    let config = outbound_for(&model, "default");
    let route = &vhost(&config, "ratings.default.svc.cluster.local:9080").routes[0];
    assert_eq!(
        cluster(route),
        "outbound|8080|v1|nowhere.default.svc.cluster.local"
    );
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.path == "spec.http[0].route[0].destination.host"),
        "{:?}",
        model.warnings
    );
}

#[test]
fn gateway_only_virtual_services_are_ignored() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /only}}]
    route: [{destination: {host: ratings}}]
"#,
    );
    let config = outbound_for(&model, "default");
    let ratings = vhost(&config, "ratings.default.svc.cluster.local:9080");
    assert_eq!(ratings.routes[0].name, "default");
}

#[test]
fn inbound_route_configuration() {
    let config = inbound(9080);
    assert_eq!(config.name, "inbound|9080");
    assert_eq!(config.virtual_hosts.len(), 1);
    assert_eq!(config.virtual_hosts[0].name, "inbound|http|9080");
    assert_eq!(config.virtual_hosts[0].domains, ["*"]);
    assert_eq!(
        cluster(&config.virtual_hosts[0].routes[0]),
        "inbound|9080||"
    );
}

#[test]
fn case_sensitivity_is_explicit_on_matches() {
    let matching = HttpMatchRequest {
        uri: Some(StringMatch::Prefix("/a".to_string())),
        ..Default::default()
    };
    assert_eq!(
        translate_match(&matching).case_sensitive,
        Some(BoolValue { value: true })
    );
    let star = HttpMatchRequest {
        headers: [("x-any".to_string(), StringMatch::Regex("*".to_string()))]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        translate_match(&star).headers[0].header_match_specifier,
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
    );
}

#[test]
fn redirect_ports_follow_istio() {
    let redirect =
        |port: Option<u32>, derive: Option<RedirectPortSelection>, scheme: Option<&str>| {
            redirect_action(
                &HttpRedirect {
                    port,
                    derive_port: derive,
                    scheme: scheme.map(str::to_string),
                    ..Default::default()
                },
                9080,
            )
        };
    assert_eq!(redirect(Some(8443), None, None).port_redirect, 8443);
    assert_eq!(redirect(Some(80), None, None).port_redirect, 0);
    assert_eq!(redirect(Some(443), None, Some("https")).port_redirect, 0);
    assert_eq!(
        redirect(None, Some(RedirectPortSelection::FromRequestPort), None).port_redirect,
        9080
    );
    assert_eq!(
        redirect(None, Some(RedirectPortSelection::FromProtocolDefault), None).port_redirect,
        0
    );
    let plain = redirect(None, None, None);
    assert_eq!(
        plain.response_code,
        redirect_action::RedirectResponseCode::MovedPermanently as i32
    );
    assert_eq!(plain.path_rewrite_specifier, None);
}

#[test]
fn redirect_prefix_rewrite_unless_uri_is_set() {
    let redirect = |uri: Option<&str>, prefix: Option<&str>| {
        redirect_action(
            &HttpRedirect {
                uri: uri.map(str::to_string),
                prefix_rewrite: prefix.map(str::to_string),
                ..Default::default()
            },
            9080,
        )
        .path_rewrite_specifier
    };
    assert_eq!(
        redirect(None, Some("/v2")),
        Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(
            "/v2".into()
        ))
    );
    assert_eq!(
        redirect(Some("/new"), Some("/v2")),
        Some(redirect_action::PathRewriteSpecifier::PathRedirect(
            "/new".into()
        ))
    );
}

#[test]
fn internal_headers_are_not_touched() {
    let ops = HeaderOperations {
        set: [("host".to_string(), "h".to_string())]
            .into_iter()
            .collect(),
        add: [
            (":authority".to_string(), "ignored".to_string()),
            ("x-a".to_string(), "1".to_string()),
        ]
        .into_iter()
        .collect(),
        remove: vec![":path".to_string(), "Host".to_string(), "x-b".to_string()],
    };
    let (add, remove, authority) = header_operations(&ops);
    assert_eq!(add.len(), 1);
    assert_eq!(add[0].header.as_ref().map(|h| h.key.as_str()), Some("x-a"));
    assert_eq!(remove, ["x-b"]);
    assert_eq!(authority.as_deref(), Some("h"), "set wins over add");
}

#[test]
fn gateways_in_a_match_override_source_conditions() {
    let mut proxy = Proxy::sidecar("default");
    proxy.labels.insert("app".to_string(), "a".to_string());
    let with = |gateways: &[&str], labels: &[(&str, &str)]| HttpMatchRequest {
        gateways: gateways.iter().map(|g| g.to_string()).collect(),
        source_labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    assert!(match_applies(&with(&[], &[("app", "a")]), 80, &proxy));
    assert!(!match_applies(&with(&[], &[("app", "b")]), 80, &proxy));
    assert!(match_applies(&with(&["mesh"], &[("app", "b")]), 80, &proxy));
    assert!(!match_applies(&with(&["gw"], &[]), 80, &proxy));
}

#[test]
fn per_destination_headers_go_on_the_weighted_clusters() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
      headers:
        request:
          set: {x-canary: "no"}
        response:
          remove: [x-internal]
    - destination: {host: reviews, subset: v2}
      weight: 50
      headers:
        request:
          add: {x-canary: "yes"}
"#,
    );
    let config = outbound_for(&model, "default");
    let route = &vhost(&config, &format!("{REVIEWS}:9080")).routes[0];
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &action(route).cluster_specifier
    else {
        panic!("weighted clusters expected");
    };
    let [v1, v2] = weighted.clusters.as_slice() else {
        panic!("two clusters expected: {weighted:?}");
    };
    let header = |c: &weighted_cluster::ClusterWeight| {
        let option = &c.request_headers_to_add[0];
        let header = option.header.as_ref().expect("header");
        (
            header.key.clone(),
            header.value.clone(),
            option.append_action,
        )
    };
    assert_eq!(
        header(v1),
        (
            "x-canary".to_string(),
            "no".to_string(),
            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        )
    );
    assert_eq!(v1.response_headers_to_remove, ["x-internal"]);
    assert_eq!(
        header(v2),
        (
            "x-canary".to_string(),
            "yes".to_string(),
            header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32
        )
    );
    // Nothing leaks onto the route itself.
    assert!(route.request_headers_to_add.is_empty());
}

#[test]
fn direct_response_bytes_are_decoded() {
    let model = with_vs(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - directResponse: {status: 200, body: {bytes: aGVsbG8gd29ybGQ}}
"#,
    );
    let config = outbound_for(&model, "default");
    let routes = &vhost(&config, "ratings.default.svc.cluster.local:9080").routes;
    let Some(route::Action::DirectResponse(direct)) = &routes[0].action else {
        panic!("direct response expected");
    };
    assert_eq!(
        direct.body.as_ref().and_then(|b| b.specifier.clone()),
        Some(data_source::Specifier::InlineBytes(b"hello world".to_vec()))
    );
}
