//! In-process local rate limiting: an inbound listener with `envoy.filters.http.local_ratelimit`
//! filters shaped as the controller sends them (a workload bucket; rules with first match and a
//! bucket per header value), a real upstream on 127.0.0.1 counting what reaches it. Refills are
//! driven by tokio's clock: fill intervals of an hour, which real time never reaches, and the
//! paused clock advanced between bursts.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::authz::{listener_with_filters, router};
use common::*;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3 as common_rl;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::envoy::r#type::v3 as ty;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use http::Request;
use http_body_util::{BodyExt, Empty};
use weft_proxy::ConfigStore;
use weft_xds::type_url;

const HOUR: Duration = Duration::from_secs(3600);

fn bucket(tokens_per_fill: u32, max_tokens: u32) -> ty::TokenBucket {
    ty::TokenBucket {
        max_tokens,
        tokens_per_fill: Some(UInt32Value {
            value: tokens_per_fill,
        }),
        fill_interval: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 3600,
            nanos: 0,
        }),
    }
}

/// What the controller puts in every filter: 429, on for every request, x-envoy-ratelimited.
fn base(stat_prefix: &str) -> LocalRateLimit {
    let all = || core::RuntimeFractionalPercent {
        default_value: Some(ty::FractionalPercent {
            numerator: 100,
            denominator: 0,
        }),
        runtime_key: String::new(),
    };
    LocalRateLimit {
        stat_prefix: stat_prefix.into(),
        status: Some(ty::HttpStatus { code: 429 }),
        filter_enabled: Some(all()),
        filter_enforced: Some(all()),
        response_headers_to_add: vec![core::HeaderValueOption {
            header: Some(core::HeaderValue {
                key: "x-envoy-ratelimited".into(),
                value: "true".into(),
                ..Default::default()
            }),
            append_action: core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd
                as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn filter(config: &LocalRateLimit) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: "envoy.filters.http.local_ratelimit".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

fn workload(tokens_per_fill: u32, burst: u32) -> hcm::HttpFilter {
    filter(&LocalRateLimit {
        token_bucket: Some(bucket(tokens_per_fill, burst)),
        ..base("weft_local_rate_limit.default.reviews")
    })
}

fn header(name: &str, pattern: matcher::string_matcher::MatchPattern) -> rt::HeaderMatcher {
    rt::HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(
            matcher::StringMatcher {
                match_pattern: Some(pattern),
                ignore_case: false,
            },
        )),
        ..Default::default()
    }
}

fn entry(key: &str, value: &str) -> common_rl::rate_limit_descriptor::Entry {
    common_rl::rate_limit_descriptor::Entry {
        key: key.into(),
        value: value.into(),
    }
}

/// A rule's filter as the controller builds it: `earlier` rules' matches negated, its own
/// match (`None`: every request), a bucket per `per_header` value (and one without it).
fn rule(
    name: &str,
    earlier: &[(&str, Vec<rt::HeaderMatcher>)],
    matching: Option<Vec<rt::HeaderMatcher>>,
    tokens: u32,
    per_header: Option<&str>,
) -> hcm::HttpFilter {
    use rt::rate_limit::action::{
        ActionSpecifier as A, GenericKey, HeaderValueMatch, RequestHeaders,
    };
    let mut actions = Vec::new();
    let mut entries = Vec::new();
    for (other, headers) in earlier {
        actions.push(A::HeaderValueMatch(HeaderValueMatch {
            descriptor_key: "weft.unmatched".into(),
            descriptor_value: (*other).into(),
            expect_match: Some(BoolValue { value: false }),
            headers: headers.clone(),
            ..Default::default()
        }));
        entries.push(entry("weft.unmatched", other));
    }
    actions.push(match matching {
        Some(headers) => A::HeaderValueMatch(HeaderValueMatch {
            descriptor_key: "weft.rule".into(),
            descriptor_value: name.into(),
            expect_match: Some(BoolValue { value: true }),
            headers,
            ..Default::default()
        }),
        None => A::GenericKey(GenericKey {
            descriptor_key: "weft.rule".into(),
            descriptor_value: name.into(),
            ..Default::default()
        }),
    });
    entries.push(entry("weft.rule", name));
    let mut descriptors = Vec::new();
    if let Some(h) = per_header {
        actions.push(A::RequestHeaders(RequestHeaders {
            header_name: h.into(),
            descriptor_key: h.into(),
            skip_if_absent: true,
        }));
        let mut keyed = entries.clone();
        keyed.push(entry(h, ""));
        descriptors.push(common_rl::LocalRateLimitDescriptor {
            entries: keyed,
            token_bucket: Some(bucket(tokens, tokens)),
            shadow_mode: false,
        });
    }
    descriptors.push(common_rl::LocalRateLimitDescriptor {
        entries,
        token_bucket: Some(bucket(tokens, tokens)),
        shadow_mode: false,
    });
    filter(&LocalRateLimit {
        rate_limits: vec![rt::RateLimit {
            actions: actions
                .into_iter()
                .map(|a| rt::rate_limit::Action {
                    action_specifier: Some(a),
                })
                .collect(),
            ..Default::default()
        }],
        descriptors,
        max_dynamic_descriptors: per_header.map(|_| UInt32Value { value: 100 }),
        ..base(&format!("weft_local_rate_limit.default.reviews.{name}"))
    })
}

fn push_listener(store: &mut ConfigStore, version: &str, mut filters: Vec<hcm::HttpFilter>) {
    filters.push(router());
    store
        .apply_response(
            type_url::LISTENER,
            version,
            vec![listener_with_filters(
                "inbound",
                "127.0.0.1:0".parse().unwrap(),
                "inbound|9080",
                filters,
            )],
        )
        .unwrap();
}

/// A store with listener "inbound" carrying `filters`, routing everything to `app`.
fn inbound(filters: Vec<hcm::HttpFilter>, app: SocketAddr) -> (ConfigStore, SocketAddr) {
    let mut store = ConfigStore::new();
    push_listener(&mut store, "l1", filters);
    let addr = store.local_addr("inbound").unwrap();
    route_inbound_to(&mut store, app);
    (store, addr)
}

#[derive(Debug, PartialEq)]
struct Reply {
    status: u16,
    flags: String,
    limited: String,
    body: String,
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", "reviews:9080");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = h1_client()
        .request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, flags, limited) = (
        resp.status().as_u16(),
        header("x-weft-response-flags"),
        header("x-envoy-ratelimited"),
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        flags,
        limited,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Statuses of `n` requests.
async fn statuses(
    addr: SocketAddr,
    n: usize,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(send(addr, method, path, headers).await.status);
    }
    out
}

/// Moves tokio's clock by `by` at once, then lets it run in real time again.
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

fn count(s: &[u16], status: u16) -> usize {
    s.iter().filter(|&&x| x == status).count()
}

#[tokio::test]
async fn a_burst_passes_then_429_rl_until_the_bucket_fills_again() {
    let (app, seen) = counting_upstream(None).await;
    let (mut store, addr) = inbound(vec![workload(3, 5)], app);
    let reached = || seen.authorities.lock().len();

    let burst = statuses(addr, 5, "GET", "/", &[]).await;
    assert_eq!(
        burst, [200; 5],
        "the bucket starts full: the whole burst passes"
    );
    let refused = send(addr, "GET", "/", &[]).await;
    assert_eq!(
        refused,
        Reply {
            status: 429,
            flags: "RL".into(),
            limited: "true".into(),
            body: "local_rate_limited".into(),
        }
    );
    assert_eq!(reached(), 5, "a refused request never reaches the app");

    // A push that keeps the filter (another version, same config) keeps the empty bucket.
    push_listener(&mut store, "l2", vec![workload(3, 5)]);
    assert_eq!(send(addr, "GET", "/", &[]).await.status, 429);

    // One interval later: tokens_per_fill (3) more, not the burst.
    jump(HOUR).await;
    let after = statuses(addr, 5, "GET", "/", &[]).await;
    assert_eq!(after, [200, 200, 200, 429, 429]);
    // Long after: full again, capped at max_tokens.
    jump(HOUR * 10).await;
    assert_eq!(count(&statuses(addr, 7, "GET", "/", &[]).await, 200), 5);

    // A push that changes the limit starts from a full new bucket.
    push_listener(&mut store, "l3", vec![workload(1, 2)]);
    assert_eq!(statuses(addr, 3, "GET", "/", &[]).await, [200, 200, 429]);
    assert_eq!(reached(), 5 + 3 + 5 + 2);
}

#[tokio::test]
async fn per_header_value_buckets_separate_users() {
    let (app, _) = counting_upstream(None).await;
    let (_store, addr) = inbound(vec![rule("api", &[], None, 2, Some("x-user-id"))], app);
    let alice = [("x-user-id", "alice")];
    let bob = [("x-user-id", "bob")];
    assert_eq!(statuses(addr, 3, "GET", "/", &alice).await, [200, 200, 429]);
    assert_eq!(
        statuses(addr, 3, "GET", "/", &bob).await,
        [200, 200, 429],
        "bob has his own bucket"
    );
    // Requests without the header share one bucket.
    assert_eq!(statuses(addr, 3, "GET", "/", &[]).await, [200, 200, 429]);
    let refused = send(addr, "GET", "/", &alice).await;
    assert_eq!((refused.status, refused.flags.as_str()), (429, "RL"));
    jump(HOUR).await;
    assert_eq!(statuses(addr, 3, "GET", "/", &alice).await, [200, 200, 429]);
}

#[tokio::test]
async fn rules_first_match_wins_and_the_workload_limit_applies_too() {
    use matcher::string_matcher::MatchPattern as P;
    let (app, _) = counting_upstream(None).await;
    let login = vec![
        header(":path", P::Prefix("/login".into())),
        header(":method", P::Exact("POST".into())),
    ];
    let filters = vec![
        rule("login", &[], Some(login.clone()), 1, None),
        rule("rest", &[("login", login)], None, 4, None),
        workload(2, 6),
    ];
    let (_store, addr) = inbound(filters, app);

    // login: 1 token. A refused login takes nothing from `rest` nor the workload.
    assert_eq!(
        statuses(addr, 3, "POST", "/login?next=/", &[]).await,
        [200, 429, 429]
    );
    // A GET of /login is not the login rule's: `rest` (4 tokens).
    assert_eq!(statuses(addr, 2, "GET", "/login", &[]).await, [200, 200]);
    assert_eq!(
        statuses(addr, 3, "GET", "/reviews", &[]).await,
        [200, 200, 429]
    );
    // An hour later: login 1, rest 4, and the workload 1 + 2 tokens: the workload's bucket
    // refuses the fourth request although `rest` still has tokens.
    jump(HOUR).await;
    let mixed = [
        send(addr, "POST", "/login", &[]).await.status,
        send(addr, "GET", "/reviews", &[]).await.status,
    ];
    assert_eq!(mixed, [200, 200]);
    let r = send(addr, "GET", "/reviews", &[]).await;
    assert_eq!((r.status, r.limited.as_str()), (200, ""));
    let r = send(addr, "GET", "/reviews", &[]).await;
    assert_eq!(
        (r.status, r.flags.as_str(), r.limited.as_str()),
        (429, "RL", "true")
    );
}

#[tokio::test]
async fn a_filter_it_cannot_apply_is_nacked_naming_the_field() {
    let mut store = ConfigStore::new();
    let mut config = LocalRateLimit {
        token_bucket: Some(bucket(1, 1)),
        ..base("x")
    };
    config.local_rate_limit_per_downstream_connection = true;
    let error = store
        .apply_response(
            type_url::LISTENER,
            "l1",
            vec![listener_with_filters(
                "inbound",
                "127.0.0.1:0".parse().unwrap(),
                "inbound|9080",
                vec![filter(&config), router()],
            )],
        )
        .unwrap_err();
    assert!(
        error.contains("http_filters[0] (envoy.filters.http.local_ratelimit)")
            && error.contains("local_rate_limit_per_downstream_connection"),
        "{error}"
    );
}
