use super::*;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::r#type::matcher::v3 as m;
use http::HeaderValue;

fn vhost(name: &str, domains: &[&str]) -> rt::VirtualHost {
    rt::VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

fn table(vhosts: Vec<rt::VirtualHost>) -> RouteConfig {
    RouteConfig::try_from(rt::RouteConfiguration {
        name: "t".into(),
        virtual_hosts: vhosts,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn domain_matching_follows_envoy_precedence() {
    let rc = table(vec![
        vhost("exact", &["reviews:9080", "reviews"]),
        vhost("suffix-short", &["*.com"]),
        vhost("suffix-long", &["*.example.com"]),
        vhost("prefix", &["api.*"]),
        vhost("default", &["*"]),
    ]);
    let pick = |h: &str| rc.select_vhost(h).map(|v| v.name.as_str());
    assert_eq!(pick("reviews:9080"), Some("exact"));
    assert_eq!(pick("REVIEWS:9080"), Some("exact"));
    assert_eq!(pick("reviews"), Some("exact"));
    assert_eq!(pick("a.example.com"), Some("suffix-long"));
    assert_eq!(pick("a.other.com"), Some("suffix-short"));
    assert_eq!(
        pick("api.example.com"),
        Some("suffix-long"),
        "suffix beats prefix"
    );
    assert_eq!(pick("api.internal"), Some("prefix"));
    assert_eq!(pick("reviews:9081"), Some("default"));
    assert_eq!(
        pick(".example.com"),
        Some("suffix-short"),
        "a wildcard needs at least one character"
    );
}

#[test]
fn no_default_vhost_means_no_match() {
    let rc = table(vec![vhost("exact", &["reviews:9080"])]);
    assert!(rc.select_vhost("ratings:9080").is_none());
}

#[test]
fn ignore_port_in_host_matching() {
    let rc = RouteConfig::try_from(rt::RouteConfiguration {
        name: "t".into(),
        virtual_hosts: vec![vhost("exact", &["reviews"])],
        ignore_port_in_host_matching: true,
        ..Default::default()
    })
    .unwrap();
    assert!(rc.select_vhost("reviews:9080").is_some());
    assert!(rc.select_vhost("[::1]").is_none());
}

struct Req {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
}

impl Req {
    fn new(pq: &str) -> Self {
        Self {
            method: Method::GET,
            path_and_query: pq.into(),
            headers: HeaderMap::new(),
        }
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.append(k, HeaderValue::from_static(v));
        self
    }
    fn view(&self) -> RequestView<'_> {
        let (path, query) = match self.path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path_and_query.as_str(), None),
        };
        RequestView {
            method: &self.method,
            authority: "reviews:9080",
            scheme: "http",
            path,
            query,
            path_and_query: &self.path_and_query,
            headers: &self.headers,
        }
    }
}

fn route_match(f: impl FnOnce(&mut rt::RouteMatch)) -> RouteMatch {
    let mut rm = rt::RouteMatch::default();
    f(&mut rm);
    let r = rt::Route {
        r#match: Some(rm),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(rt::route_action::ClusterSpecifier::Cluster("c".into())),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut vh = vhost("v", &["*"]);
    vh.routes.push(r);
    let mut rc = table(vec![vh]);
    rc.virtual_hosts.remove(0).routes.remove(0).matcher
}

fn path(p: rt::route_match::PathSpecifier) -> impl FnOnce(&mut rt::RouteMatch) {
    move |m| m.path_specifier = Some(p)
}

fn sm(p: m::string_matcher::MatchPattern, ignore_case: bool) -> m::StringMatcher {
    m::StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

#[test]
fn path_matching() {
    use rt::route_match::PathSpecifier as P;
    let pre = route_match(path(P::Prefix("/api".into())));
    assert!(pre.matches(&Req::new("/api/v1?x=1").view()));
    assert!(pre.matches(&Req::new("/apix").view()));
    assert!(!pre.matches(&Req::new("/API").view()));
    let exact = route_match(path(P::Path("/login".into())));
    assert!(exact.matches(&Req::new("/login?next=/").view()));
    assert!(!exact.matches(&Req::new("/login/").view()));
    let sep = route_match(path(P::PathSeparatedPrefix("/api".into())));
    assert!(sep.matches(&Req::new("/api").view()));
    assert!(sep.matches(&Req::new("/api/x").view()));
    assert!(!sep.matches(&Req::new("/apix").view()));
    let re = route_match(path(P::SafeRegex(m::RegexMatcher {
        regex: "/users/[0-9]+".into(),
        ..Default::default()
    })));
    assert!(re.matches(&Req::new("/users/42?full=1").view()));
    assert!(
        !re.matches(&Req::new("/users/42/x").view()),
        "regex is a full match"
    );
}

#[test]
fn case_insensitive_path() {
    use rt::route_match::PathSpecifier as P;
    let m = route_match(|m| {
        m.path_specifier = Some(P::Prefix("/Api".into()));
        m.case_sensitive = Some(envoy_types::pb::google::protobuf::BoolValue { value: false });
    });
    assert!(m.matches(&Req::new("/aPI/x").view()));
    let m = route_match(|m| {
        m.path_specifier = Some(P::Path("/Login".into()));
        m.case_sensitive = Some(envoy_types::pb::google::protobuf::BoolValue { value: false });
    });
    assert!(m.matches(&Req::new("/LOGIN").view()));
}

fn with_header(h: rt::HeaderMatcher) -> RouteMatch {
    route_match(move |m| {
        m.path_specifier = Some(rt::route_match::PathSpecifier::Prefix("/".into()));
        m.headers.push(h);
    })
}

#[test]
fn header_matching_with_invert_present_and_pseudo_headers() {
    use m::string_matcher::MatchPattern as P;
    use rt::header_matcher::HeaderMatchSpecifier as S;
    let hm = |name: &str, s: S, invert| rt::HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(s),
        invert_match: invert,
        ..Default::default()
    };
    let exact = with_header(hm(
        "end-user",
        S::StringMatch(sm(P::Exact("jason".into()), false)),
        false,
    ));
    assert!(exact.matches(&Req::new("/").header("end-user", "jason").view()));
    assert!(!exact.matches(&Req::new("/").header("end-user", "Jason").view()));
    assert!(!exact.matches(&Req::new("/").view()));

    let icase = with_header(hm(
        "end-user",
        S::StringMatch(sm(P::Exact("jason".into()), true)),
        false,
    ));
    assert!(icase.matches(&Req::new("/").header("end-user", "JASON").view()));

    let inverted = with_header(hm(
        "end-user",
        S::StringMatch(sm(P::Exact("jason".into()), false)),
        true,
    ));
    assert!(inverted.matches(&Req::new("/").header("end-user", "bob").view()));
    assert!(!inverted.matches(&Req::new("/").header("end-user", "jason").view()));
    assert!(
        !inverted.matches(&Req::new("/").view()),
        "Envoy: a missing header never matches an inverted string match"
    );

    let present = with_header(hm("x-canary", S::PresentMatch(true), false));
    assert!(present.matches(&Req::new("/").header("x-canary", "").view()));
    assert!(!present.matches(&Req::new("/").view()));
    let absent = with_header(hm("x-canary", S::PresentMatch(true), true));
    assert!(absent.matches(&Req::new("/").view()));
    assert!(!absent.matches(&Req::new("/").header("x-canary", "1").view()));

    let method = with_header(hm(
        ":method",
        S::StringMatch(sm(P::Exact("POST".into()), false)),
        false,
    ));
    assert!(!method.matches(&Req::new("/").view()));
    let mut post = Req::new("/");
    post.method = Method::POST;
    assert!(method.matches(&post.view()));

    let authority = with_header(hm(
        ":authority",
        S::StringMatch(sm(P::Prefix("reviews".into()), false)),
        false,
    ));
    assert!(authority.matches(&Req::new("/").view()));
    let pseudo_path = with_header(hm(
        ":path",
        S::StringMatch(sm(P::Contains("x=1".into()), false)),
        false,
    ));
    assert!(pseudo_path.matches(&Req::new("/a?x=1").view()));

    let multi = with_header(hm(
        "x-v",
        S::StringMatch(sm(P::Exact("a,b".into()), false)),
        false,
    ));
    assert!(multi.matches(&Req::new("/").header("x-v", "a").header("x-v", "b").view()));

    let regex = with_header(hm(
        "x-v",
        S::StringMatch(sm(
            P::SafeRegex(m::RegexMatcher {
                regex: "v[0-9]".into(),
                ..Default::default()
            }),
            false,
        )),
        false,
    ));
    assert!(regex.matches(&Req::new("/").header("x-v", "v2").view()));
    assert!(!regex.matches(&Req::new("/").header("x-v", "v22").view()));

    let suffix = with_header(hm(
        "x-v",
        S::StringMatch(sm(P::Suffix("-beta".into()), true)),
        false,
    ));
    assert!(suffix.matches(&Req::new("/").header("x-v", "v2-BETA").view()));
}

#[test]
fn treat_missing_header_as_empty() {
    use m::string_matcher::MatchPattern as P;
    let m = with_header(rt::HeaderMatcher {
        name: "x-e".into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(sm(
            P::Exact(String::new()),
            false,
        ))),
        treat_missing_header_as_empty: true,
        ..Default::default()
    });
    assert!(m.matches(&Req::new("/").view()));
}

#[test]
fn query_parameter_matching() {
    use m::string_matcher::MatchPattern as P;
    use rt::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
    let q = |name: &str, s: Q| {
        route_match(move |m| {
            m.path_specifier = Some(rt::route_match::PathSpecifier::Prefix("/".into()));
            m.query_parameters.push(rt::QueryParameterMatcher {
                name: name.into(),
                query_parameter_match_specifier: Some(s),
            });
        })
    };
    let exact = q("user", Q::StringMatch(sm(P::Exact("a b".into()), false)));
    assert!(exact.matches(&Req::new("/?x=1&user=a%20b").view()));
    assert!(exact.matches(&Req::new("/?user=a+b").view()));
    assert!(!exact.matches(&Req::new("/?user=ab").view()));
    assert!(!exact.matches(&Req::new("/").view()));
    let present = q("debug", Q::PresentMatch(true));
    assert!(present.matches(&Req::new("/?debug").view()));
    assert!(!present.matches(&Req::new("/?nodebug=1").view()));
}
