//! In-process data-path tests: a ConfigStore fed directly, real hyper upstreams on loopback.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::r#type::matcher::v3 as m;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use weft_xds::type_url;

#[tokio::test]
async fn routes_by_host_over_h1_and_h2c_in_both_directions() {
    let reviews = upstream("reviews").await;
    let ratings = upstream("ratings").await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[
            ("outbound|9080||reviews", false, vec![reviews]),
            ("outbound|9080||ratings", true, vec![ratings]),
        ],
        vec![
            vhost(
                "reviews:9080",
                &["reviews:9080", "reviews"],
                vec![to_cluster(prefix("/"), "outbound|9080||reviews", None)],
            ),
            vhost(
                "ratings:9080",
                &["ratings:9080"],
                vec![to_cluster(prefix("/"), "outbound|9080||ratings", None)],
            ),
        ],
    );
    for client in [h1_client(), h2_client()] {
        let (status, _, body) = get(&client, proxy.addr, "reviews:9080", "/r?q=1", &[]).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("reviews "), "{body}");
        assert!(
            body.contains(" reviews:9080 /r?q=1 rid=true conn=false"),
            "{body}"
        );
        // ratings is an h2c cluster whatever the downstream protocol.
        let (status, _, body) = get(&client, proxy.addr, "ratings:9080", "/", &[]).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("ratings HTTP/2.0 ratings:9080"), "{body}");
    }
    // Downstream protocol is kept for the reviews cluster.
    let (_, _, body) = get(&h2_client(), proxy.addr, "reviews", "/", &[]).await;
    assert!(body.starts_with("reviews HTTP/2.0"), "{body}");
    let (_, _, body) = get(&h1_client(), proxy.addr, "REVIEWS", "/", &[]).await;
    assert!(body.starts_with("reviews HTTP/1.1"), "{body}");

    let (status, flags, _) = get(&h1_client(), proxy.addr, "unknown:1", "/", &[]).await;
    assert_eq!((status, flags.as_str()), (404, "NR"));
}

#[tokio::test]
async fn absolute_form_request_uses_the_uri_authority() {
    let reviews = upstream("reviews").await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("r", false, vec![reviews])],
        vec![vhost(
            "reviews:9080",
            &["reviews:9080"],
            vec![to_cluster(prefix("/"), "r", None)],
        )],
    );
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://reviews:9080/abs")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("reviews:9080 /abs"),
        "{body:?}"
    );
}

#[tokio::test]
async fn header_routing_and_weighted_split() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let mut jason = prefix("/");
    jason.headers.push(rt::HeaderMatcher {
        name: "end-user".into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(
            m::StringMatcher {
                match_pattern: Some(m::string_matcher::MatchPattern::Exact("jason".into())),
                ignore_case: false,
            },
        )),
        ..Default::default()
    });
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("v1", false, vec![v1]), ("v2", false, vec![v2])],
        vec![vhost(
            "reviews",
            &["reviews"],
            vec![
                to_cluster(jason, "v2", None),
                weighted(prefix("/"), &[("v1", 80), ("v2", 20)]),
            ],
        )],
    );
    let client = h1_client();
    for _ in 0..5 {
        let (_, _, body) = get(
            &client,
            proxy.addr,
            "reviews",
            "/",
            &[("end-user", "jason")],
        )
        .await;
        assert!(body.starts_with("v2 "), "{body}");
    }
    let mut v1_count = 0;
    for _ in 0..2000 {
        let (status, _, body) = get(&client, proxy.addr, "reviews", "/", &[]).await;
        assert_eq!(status, 200);
        if body.starts_with("v1 ") {
            v1_count += 1;
        }
    }
    let share = f64::from(v1_count) / 2000.0;
    assert!((0.75..0.85).contains(&share), "v1 share {share}");
}

#[tokio::test]
async fn route_timeout_gives_504_ut() {
    let slow = upstream("slow").await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("slow", false, vec![slow])],
        vec![vhost(
            "slow",
            &["slow"],
            vec![to_cluster(
                prefix("/"),
                "slow",
                Some(Duration::from_millis(200)),
            )],
        )],
    );
    let (status, flags, body) = get(&h1_client(), proxy.addr, "slow", "/slow/2000", &[]).await;
    assert_eq!((status, flags.as_str()), (504, "UT"));
    assert!(body.contains("upstream request timeout"));
    let (status, _, _) = get(&h1_client(), proxy.addr, "slow", "/slow/10", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn upstream_failures_map_to_envoy_flags() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("dead", false, vec![closed]), ("empty", false, vec![])],
        vec![vhost(
            "all",
            &["*"],
            vec![
                to_cluster(prefix("/dead"), "dead", None),
                to_cluster(prefix("/empty"), "empty", None),
                to_cluster(prefix("/missing"), "missing", None),
            ],
        )],
    );
    let client = h1_client();
    let (status, flags, _) = get(&client, proxy.addr, "x", "/dead", &[]).await;
    assert_eq!((status, flags.as_str()), (503, "UF"));
    let (status, flags, body) = get(&client, proxy.addr, "x", "/empty", &[]).await;
    assert_eq!((status, flags.as_str()), (503, "UH"));
    assert!(body.contains("no healthy upstream"));
    let (status, flags, _) = get(&client, proxy.addr, "x", "/missing", &[]).await;
    assert_eq!((status, flags.as_str()), (503, "NC"));
    let (status, flags, _) = get(&client, proxy.addr, "x", "/other", &[]).await;
    assert_eq!((status, flags.as_str()), (404, "NR"));
}

#[tokio::test]
async fn config_swap_lets_in_flight_request_finish_on_old_config() {
    let old = upstream("old").await;
    let new = upstream("new").await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("old", false, vec![old]), ("new", false, vec![new])],
        vec![vhost(
            "svc",
            &["svc"],
            vec![to_cluster(prefix("/"), "old", None)],
        )],
    );
    let addr = proxy.addr;
    let in_flight =
        tokio::spawn(async move { get(&h1_client(), addr, "svc", "/slow/500", &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost(
                    "svc",
                    &["svc"],
                    vec![to_cluster(prefix("/"), "new", None)],
                )],
            )],
        )
        .unwrap();
    let (_, _, body) = get(&h1_client(), addr, "svc", "/", &[]).await;
    assert!(body.starts_with("new "), "{body}");
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("old "), "{body}");
}

#[tokio::test]
async fn rejected_config_keeps_old_one_serving() {
    let up = upstream("up").await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("up", false, vec![up])],
        vec![vhost(
            "svc",
            &["svc"],
            vec![to_cluster(prefix("/"), "up", None)],
        )],
    );
    let bad = rt::Route {
        r#match: Some(rt::RouteMatch {
            path_specifier: Some(rt::route_match::PathSpecifier::SafeRegex(m::RegexMatcher {
                regex: "(".into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..to_cluster(prefix("/"), "up", None)
    };
    let err = proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost("svc", &["svc"], vec![bad])],
            )],
        )
        .unwrap_err();
    assert!(err.contains(r#"route config "outbound": virtual host "svc": route 0: match.safe_regex "(": regex parse error"#), "{err}");
    let (status, _, body) = get(&h1_client(), proxy.addr, "svc", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("up "));
    let current = proxy.store.current();
    assert_eq!(current.rds.version.as_deref(), Some("v3"));
    assert!(
        current
            .rds
            .last_rejection
            .as_ref()
            .is_some_and(|(v, _)| v == "v4")
    );
}

#[tokio::test]
async fn listener_update_with_same_address_keeps_connection() {
    let up = upstream("up").await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("up", false, vec![up])],
        vec![vhost(
            "svc",
            &["svc"],
            vec![to_cluster(prefix("/"), "up", None)],
        )],
    );
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = || {
        http::Request::get("/")
            .header("host", "svc")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(send.send_request(req()).await.unwrap().status(), 200);
    // Same name and address (port 0 as configured): the socket and connection stay.
    proxy
        .push(
            type_url::LISTENER,
            vec![listener(
                "outbound",
                "127.0.0.1:0".parse().unwrap(),
                "outbound",
            )],
        )
        .unwrap();
    assert_eq!(proxy.store.local_addr("outbound"), Some(proxy.addr));
    let resp = send.send_request(req()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!conn.is_finished());

    // A bind failure NACKs and keeps the old listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = proxy
        .push(
            type_url::LISTENER,
            vec![listener(
                "outbound",
                taken.local_addr().unwrap(),
                "outbound",
            )],
        )
        .unwrap_err();
    assert!(err.contains("cannot bind"), "{err}");
    let (status, _, _) = get(&h1_client(), proxy.addr, "svc", "/", &[]).await;
    assert_eq!(status, 200);

    // Removing the listener stops accepting.
    proxy.push(type_url::LISTENER, vec![]).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err());
}

#[tokio::test]
async fn readiness_and_wanted_names() {
    let mut proxy = Proxy::start();
    assert!(!proxy.store.current().ready());
    proxy.configure(&[("c", false, vec![])], vec![]);
    assert!(proxy.store.current().ready());
    assert_eq!(proxy.store.wanted_names(type_url::ROUTE), vec!["outbound"]);
    assert_eq!(proxy.store.wanted_names(type_url::ENDPOINT), vec!["c"]);
    // The admin's Envoy-shaped dump has the cluster as accepted, and `/clusters` lists it.
    let config = proxy.store.current();
    let xds = proxy.store.xds_state();
    let sources = weft_proxy::admin::config_dump::Sources {
        config: &config,
        xds: &xds,
        identity: None,
        bootstrap: None,
    };
    let dump =
        weft_proxy::admin::config_dump::render(sources, &Default::default()).expect("a dump");
    let clusters = &dump["configs"][0];
    assert_eq!(
        clusters["@type"],
        "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
    );
    assert_eq!(
        clusters["dynamic_active_clusters"][0]["cluster"]["name"],
        "c"
    );
    let text = weft_proxy::admin::clusters::text(&config);
    assert!(text.contains("c::added_via_api::true"), "{text}");
}
