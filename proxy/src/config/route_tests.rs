use super::*;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value};

fn route(m: rt::RouteMatch, cluster: &str) -> rt::Route {
    rt::Route {
        r#match: Some(m),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(rt::route_action::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn prefix(p: &str) -> rt::RouteMatch {
    rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    }
}

fn config(routes: Vec<rt::Route>) -> rt::RouteConfiguration {
    rt::RouteConfiguration {
        name: "outbound".into(),
        virtual_hosts: vec![rt::VirtualHost {
            name: "reviews:9080".into(),
            domains: vec!["reviews:9080".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn reject(rc: rt::RouteConfiguration) -> String {
    RouteConfig::try_from(rc).unwrap_err().to_string()
}

fn first_forward(rc: &RouteConfig) -> &ForwardAction {
    match &rc.virtual_hosts[0].routes[0].action {
        Action::Forward(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn converts_default_route_with_envoy_default_timeout() {
    let rc =
        RouteConfig::try_from(config(vec![route(prefix("/"), "outbound|9080||reviews")])).unwrap();
    let f = first_forward(&rc);
    assert!(matches!(&f.clusters, ClusterPick::Single(c) if c.name == "outbound|9080||reviews"));
    assert_eq!(f.timeout, Some(DEFAULT_ROUTE_TIMEOUT));
    assert_eq!(f.cluster_not_found, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn zero_timeout_means_none() {
    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.timeout = Some(PbDuration {
            seconds: 0,
            nanos: 0,
        });
    }
    let rc = RouteConfig::try_from(config(vec![r])).unwrap();
    assert_eq!(first_forward(&rc).timeout, None);
}

#[test]
fn bad_regex_names_resource_vhost_route_and_field() {
    let m = rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::SafeRegex(
            matcher::RegexMatcher {
                regex: "(".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let e = reject(config(vec![
        route(prefix("/a"), "c"),
        route(prefix("/b"), "c"),
        route(m, "c"),
    ]));
    assert!(e.starts_with(r#"route config "outbound": virtual host "reviews:9080": route 2: match.safe_regex "(": regex parse error"#), "{e}");
}

#[test]
fn retry_policies_convert_and_bad_ones_are_named() {
    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.retry_policy = Some(rt::RetryPolicy {
            retry_on: "5xx,connect-failure".into(),
            ..Default::default()
        });
    }
    let rc = RouteConfig::try_from(config(vec![r])).expect("accepted");
    let Action::Forward(f) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("a forward route");
    };
    let retry = f.retry.as_ref().expect("a retry policy");
    assert_eq!(retry.num_retries, 1);
    assert!(!retry.non_idempotent_before_send_only);

    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.retry_policy = Some(rt::RetryPolicy {
            retry_on: "sometimes".into(),
            ..Default::default()
        });
    }
    let e = reject(config(vec![r]));
    assert!(
        e.contains("route 0: retry_policy.retry_on \"sometimes\" is not supported"),
        "{e}"
    );

    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.request_mirror_policies.push(Default::default());
    }
    assert!(reject(config(vec![r])).contains("request_mirror_policies"));
}

#[test]
fn rejects_per_route_upgrade_configs() {
    // Only the connection manager's upgrade_configs are applied (docs/LIMITS.md).
    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.upgrade_configs.push(rt::route_action::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        });
    }
    let e = reject(config(vec![r]));
    assert!(
        e.contains("route 0: route.upgrade_configs is not supported"),
        "{e}"
    );
}

#[test]
fn per_filter_config_holds_faults_only() {
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
    use prost::{Message, Name};
    let abort = fault::HttpFault {
        abort: Some(fault::FaultAbort {
            error_type: Some(fault::fault_abort::ErrorType::HttpStatus(503)),
            percentage: Some(envoy_types::pb::envoy::r#type::v3::FractionalPercent {
                numerator: 100,
                denominator: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let any = envoy_types::pb::google::protobuf::Any {
        type_url: fault::HttpFault::type_url(),
        value: abort.encode_to_vec(),
    };
    let mut r = route(prefix("/"), "c");
    r.typed_per_filter_config
        .insert("envoy.filters.http.fault".into(), any.clone());
    let rc = RouteConfig::try_from(config(vec![r])).expect("accepted");
    let Action::Forward(f) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("a forward route");
    };
    assert!(f.fault.as_ref().is_some_and(|f| f.abort.is_some()));

    let mut r = route(prefix("/"), "c");
    r.typed_per_filter_config
        .insert("envoy.filters.http.cors".into(), any.clone());
    r.typed_per_filter_config
        .insert("envoy.filters.http.fault".into(), any.clone());
    assert!(
        reject(config(vec![r])).contains("typed_per_filter_config[\"envoy.filters.http.cors\"]")
    );
    let mut r = route(prefix("/"), "c");
    r.typed_per_filter_config
        .insert("envoy.filters.http.rbac".into(), any);
    assert!(
        reject(config(vec![r]))
            .contains("typed_per_filter_config[\"envoy.filters.http.rbac\"] is not supported")
    );
}

#[test]
fn rejects_unlisted_fields_by_tag() {
    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.append_x_forwarded_host = true;
    }
    let e = reject(config(vec![r]));
    assert!(e.contains("route action field #"), "{e}");
}

#[test]
fn rejects_vhost_cors_and_missing_domains() {
    let mut rc = config(vec![route(prefix("/"), "c")]);
    rc.virtual_hosts[0].rate_limits.push(Default::default());
    assert!(reject(rc).contains(r#"virtual host "reviews:9080": rate_limits is not supported"#));
    let mut rc = config(vec![]);
    rc.virtual_hosts[0].domains.clear();
    assert!(reject(rc).contains("domains is required"));
}

#[test]
fn rejects_duplicate_domains_and_bad_wildcards() {
    let mut rc = config(vec![]);
    let mut vh2 = rc.virtual_hosts[0].clone();
    vh2.name = "other".into();
    rc.virtual_hosts.push(vh2);
    assert!(reject(rc).contains("more than one virtual host"));
    let mut rc = config(vec![]);
    rc.virtual_hosts[0].domains = vec!["a*b".into()];
    assert!(reject(rc).contains("wildcard"));
}

#[test]
fn weighted_clusters_validate_and_pick() {
    let w = |name: &str, weight| rt::weighted_cluster::ClusterWeight {
        name: name.into(),
        weight: Some(UInt32Value { value: weight }),
        ..Default::default()
    };
    let mut r = route(prefix("/"), "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.cluster_specifier = Some(rt::route_action::ClusterSpecifier::WeightedClusters(
            rt::WeightedCluster {
                clusters: vec![w("v1", 80), w("v2", 20), w("v3", 0)],
                ..Default::default()
            },
        ));
    }
    let rc = RouteConfig::try_from(config(vec![r.clone()])).unwrap();
    let ClusterPick::Weighted { total, .. } = &first_forward(&rc).clusters else {
        panic!()
    };
    assert_eq!(*total, 100);
    let mut counts = HashMap::new();
    for point in 0..*total {
        *counts
            .entry(first_forward(&rc).clusters.pick(point).0.name.clone())
            .or_insert(0) += 1;
    }
    assert_eq!(counts["v1"], 80);
    assert_eq!(counts["v2"], 20);
    assert!(!counts.contains_key("v3"));

    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.cluster_specifier = Some(rt::route_action::ClusterSpecifier::WeightedClusters(
            rt::WeightedCluster {
                clusters: vec![w("v1", 0)],
                ..Default::default()
            },
        ));
    }
    assert!(reject(config(vec![r])).contains("weights sum to 0"));
}

#[test]
fn header_and_query_matchers_convert() {
    let mut m = prefix("/");
    m.case_sensitive = Some(BoolValue { value: false });
    m.headers.push(rt::HeaderMatcher {
        name: ":method".into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(
            matcher::StringMatcher {
                match_pattern: Some(matcher::string_matcher::MatchPattern::Exact("GET".into())),
                ignore_case: false,
            },
        )),
        ..Default::default()
    });
    m.query_parameters.push(rt::QueryParameterMatcher {
        name: "debug".into(),
        query_parameter_match_specifier: Some(
            rt::query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
        ),
    });
    let rc = RouteConfig::try_from(config(vec![route(m, "c")])).unwrap();
    let rm = &rc.virtual_hosts[0].routes[0].matcher;
    assert!(!rm.case_sensitive);
    assert_eq!(rm.headers[0].source, HeaderSource::Method);
    assert!(rm.query[0].value.is_none());
}

#[test]
fn rejects_range_match_and_unknown_pseudo_header() {
    let mut m = prefix("/");
    m.headers.push(rt::HeaderMatcher {
        name: "x-n".into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::RangeMatch(
            Default::default(),
        )),
        ..Default::default()
    });
    assert!(
        reject(config(vec![route(m, "c")]))
            .contains("match.headers[0].range_match is not supported")
    );
    let mut m = prefix("/");
    m.headers.push(rt::HeaderMatcher {
        name: ":protocol".into(),
        ..Default::default()
    });
    assert!(reject(config(vec![route(m, "c")])).contains(":protocol"));
}

#[test]
fn header_values_parse_formatters_and_refuse_unknown_ones() {
    let hvo = |v: &str| core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: "x-a".into(),
            value: v.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ops = header_ops(vec![hvo("100%%")], vec![]).unwrap();
    assert_eq!(ops.add[0].value.as_static().unwrap(), "100%");
    let ops = header_ops(vec![hvo("%DOWNSTREAM_REMOTE_ADDRESS%")], vec![]).unwrap();
    assert!(ops.is_dynamic());
    let e = header_ops(vec![hvo("%NO_SUCH_THING%")], vec![]).unwrap_err();
    assert!(
        e.to_string().contains("headers_to_add[0]") && e.to_string().contains("%NO_SUCH_THING%"),
        "{e}"
    );
    assert!(header_ops(vec![], vec![":path".into()]).is_err());
    assert!(header_ops(vec![], vec!["host".into()]).is_err());
}

#[test]
fn redirect_and_direct_response_convert() {
    let mut r = route(prefix("/old"), "c");
    r.action = Some(rt::route::Action::Redirect(rt::RedirectAction {
        host_redirect: "new.example".into(),
        response_code: rt::redirect_action::RedirectResponseCode::PermanentRedirect as i32,
        path_rewrite_specifier: Some(rt::redirect_action::PathRewriteSpecifier::PrefixRewrite(
            "/new".into(),
        )),
        ..Default::default()
    }));
    let mut d = route(prefix("/health"), "c");
    d.action = Some(rt::route::Action::DirectResponse(
        rt::DirectResponseAction {
            status: 200,
            body: Some(core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString("ok".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ));
    let rc = RouteConfig::try_from(config(vec![r, d])).unwrap();
    assert!(
        matches!(&rc.virtual_hosts[0].routes[0].action, Action::Redirect(r) if r.status == StatusCode::PERMANENT_REDIRECT)
    );
    assert!(
        matches!(&rc.virtual_hosts[0].routes[1].action, Action::Direct(d) if d.body.as_deref() == Some(&b"ok"[..]))
    );

    let mut bad = route(prefix("/"), "c");
    bad.action = Some(rt::route::Action::DirectResponse(
        rt::DirectResponseAction {
            status: 99,
            ..Default::default()
        },
    ));
    assert!(reject(config(vec![bad])).contains("direct_response.status"));
}

#[test]
fn prefix_rewrite_with_regex_is_accepted_as_envoy_does() {
    let m = rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::SafeRegex(
            matcher::RegexMatcher {
                regex: "/a.*".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut r = route(m, "c");
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.prefix_rewrite = "/b".into();
    }
    // Envoy (and so Istio's `rewrite.uri` on a regex match): the whole path is replaced.
    let rc = RouteConfig::try_from(config(vec![r])).unwrap();
    assert!(matches!(
        &rc.virtual_hosts[0].routes[0].action,
        Action::Forward(f) if f.prefix_rewrite.as_deref() == Some("/b")
    ));
}

#[test]
fn cors_regex_rewrites_mirrors_and_cluster_authorities_convert() {
    use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors;
    use prost::{Message, Name};
    let policy = envoy_types::pb::google::protobuf::Any {
        type_url: cors::CorsPolicy::type_url(),
        value: cors::CorsPolicy {
            allow_methods: "GET".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    let mut r = route(prefix("/"), "c");
    r.typed_per_filter_config
        .insert("envoy.filters.http.cors".into(), policy.clone());
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.cluster_specifier = Some(rt::route_action::ClusterSpecifier::WeightedClusters(
            rt::WeightedCluster {
                clusters: ["a", "b"]
                    .iter()
                    .map(|n| rt::weighted_cluster::ClusterWeight {
                        name: (*n).into(),
                        weight: Some(UInt32Value { value: 1 }),
                        host_rewrite_specifier: (*n == "a").then(|| {
                            rt::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                                "a.internal".into(),
                            )
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        ));
        a.regex_rewrite = Some(matcher::RegexMatchAndSubstitute {
            pattern: Some(matcher::RegexMatcher {
                regex: "^/v1/(.*)$".into(),
                ..Default::default()
            }),
            substitution: "/v2/\\1".into(),
        });
        a.request_mirror_policies = vec![rt::route_action::RequestMirrorPolicy {
            cluster: "shadow".into(),
            ..Default::default()
        }];
    }
    r.stat_prefix = "observed".into();
    let rc = RouteConfig::try_from(config(vec![r.clone()])).expect("accepted");
    let f = first_forward(&rc);
    assert_eq!(
        f.cors.as_ref().and_then(|c| c.allow_methods.clone()),
        Some(HeaderValue::from_static("GET"))
    );
    assert_eq!(
        f.regex_rewrite.as_ref().map(|r| r.apply("/v1/x")),
        Some("/v2/x".into())
    );
    let ClusterPick::Weighted { clusters, .. } = &f.clusters else {
        panic!("weighted");
    };
    assert_eq!(
        clusters[0].host_rewrite,
        Some(HeaderValue::from_static("a.internal"))
    );
    assert!(clusters[1].host_rewrite.is_none());
    // The mirror's cluster has a slot of its own.
    assert_eq!(rc.cluster_slots[f.mirrors[0].cluster.slot], "shadow");

    // regex_rewrite and prefix_rewrite exclude each other; CORS needs a route action.
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.prefix_rewrite = "/x".into();
    }
    assert!(reject(config(vec![r])).contains("route.regex_rewrite"));
    let mut direct = rt::Route {
        r#match: Some(prefix("/")),
        action: Some(rt::route::Action::DirectResponse(
            rt::DirectResponseAction {
                status: 200,
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    direct
        .typed_per_filter_config
        .insert("envoy.filters.http.cors".into(), policy);
    assert!(reject(config(vec![direct])).contains("without a route action"));
}
