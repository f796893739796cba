//! Config lifecycles through the whole proxy: warming, honest readiness, xDS resource semantics,
//! per-resource rejection, and draining of removed listeners.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_xds::type_url;

fn outbound(
    vhosts: Vec<envoy_types::pb::envoy::config::route::v3::VirtualHost>,
) -> Vec<envoy_types::pb::google::protobuf::Any> {
    vec![route_config("outbound", vhosts)]
}

#[tokio::test]
async fn readiness_waits_for_routes_and_endpoints() {
    let (up, _) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    let reason = |p: &Proxy| p.store.current().not_ready_reason().unwrap_or_default();
    assert!(reason(&proxy).contains("CDS"), "{}", reason(&proxy));
    proxy
        .push(type_url::CLUSTER, vec![cluster("svc", false)])
        .unwrap();
    assert!(reason(&proxy).contains("RDS"), "{}", reason(&proxy));
    proxy
        .push(
            type_url::ROUTE,
            outbound(vec![vhost(
                "svc",
                &["svc"],
                vec![to_cluster(prefix("/"), "svc", None)],
            )]),
        )
        .unwrap();
    assert!(
        reason(&proxy).contains("endpoints") && reason(&proxy).contains("svc"),
        "{}",
        reason(&proxy)
    );
    assert!(!proxy.store.current().ready());
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("svc", &[up])])
        .unwrap();
    assert!(proxy.store.current().ready(), "{}", reason(&proxy));
}

#[tokio::test]
async fn a_cluster_with_no_endpoints_yet_counts_after_the_initial_fetch_timeout() {
    tokio::time::pause();
    let mut proxy = Proxy::start();
    proxy
        .push(type_url::CLUSTER, vec![cluster("svc", false)])
        .unwrap();
    proxy.push(type_url::ROUTE, outbound(vec![])).unwrap();
    assert!(!proxy.store.current().ready());
    tokio::time::advance(weft_proxy::config::INITIAL_FETCH_TIMEOUT + Duration::from_millis(1))
        .await;
    assert!(proxy.store.current().ready());
}

/// A new subset: the route to it arrives before its endpoints (as ADS orders it: CDS, RDS,
/// then EDS after the proxy asks for the new name). Requests never see a 503 meanwhile.
#[tokio::test]
async fn adding_a_subset_under_load_never_fails_a_request() {
    let (v1, _) = counting_upstream(None).await;
    let (v2, seen_v2) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", false, vec![v1])], &["svc"], "svc");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, total, addr) =
                (stop.clone(), failures.clone(), total.clone(), proxy.addr);
            tokio::spawn(async move {
                let client = h1_client();
                while !stop.load(Ordering::Relaxed) {
                    let (status, flags, _) = get(&client, addr, "svc", "/", &[]).await;
                    total.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {status} {flags}");
                    }
                }
            })
        })
        .collect();
    let wait_for_requests = |n: usize| {
        let total = total.clone();
        async move {
            let target = total.load(Ordering::Relaxed) + n;
            eventually("load keeps flowing", Duration::from_secs(10), || {
                total.load(Ordering::Relaxed) >= target
            })
            .await;
        }
    };
    wait_for_requests(50).await;
    proxy
        .push(
            type_url::CLUSTER,
            vec![cluster("svc", false), cluster("svc-v2", false)],
        )
        .unwrap();
    wait_for_requests(50).await;
    proxy
        .push(
            type_url::ROUTE,
            outbound(vec![vhost(
                "svc",
                &["svc"],
                vec![weighted(prefix("/"), &[("svc", 50), ("svc-v2", 50)])],
            )]),
        )
        .unwrap();
    wait_for_requests(100).await;
    assert_eq!(seen_v2.accepted(), 0, "no traffic to the cold subset yet");
    let pending = proxy.store.current().routes["outbound"].pending.is_some();
    assert!(pending, "the new route table waits for svc-v2's endpoints");
    proxy
        .push(
            type_url::ENDPOINT,
            vec![endpoints("svc", &[v1]), endpoints("svc-v2", &[v2])],
        )
        .unwrap();
    eventually(
        "traffic reaches the new subset",
        Duration::from_secs(10),
        || seen_v2.authorities.lock().len() > 10,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "of {} requests",
        total.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn rds_and_eds_responses_missing_a_name_do_not_delete_it() {
    let (up, _) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    // A second listener with its own route config.
    proxy
        .push(
            type_url::LISTENER,
            vec![
                listener("outbound", "127.0.0.1:0".parse().unwrap(), "outbound"),
                listener("other", "127.0.0.2:0".parse().unwrap(), "other"),
            ],
        )
        .unwrap();
    let other = proxy.store.local_addr("other").unwrap();
    proxy
        .push(
            type_url::CLUSTER,
            vec![cluster("a", false), cluster("b", false)],
        )
        .unwrap();
    proxy
        .push(
            type_url::ENDPOINT,
            vec![endpoints("a", &[up]), endpoints("b", &[up])],
        )
        .unwrap();
    proxy
        .push(
            type_url::ROUTE,
            vec![
                route_config(
                    "outbound",
                    vec![vhost("a", &["*"], vec![to_cluster(prefix("/"), "a", None)])],
                ),
                route_config(
                    "other",
                    vec![vhost("b", &["*"], vec![to_cluster(prefix("/"), "b", None)])],
                ),
            ],
        )
        .unwrap();
    // Responses that carry only one of the two names.
    proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost("a", &["*"], vec![to_cluster(prefix("/"), "a", None)])],
            )],
        )
        .unwrap();
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("a", &[up])])
        .unwrap();
    let client = h1_client();
    assert_eq!(
        get(&client, other, "x", "/", &[]).await.0,
        200,
        "route config \"other\" and endpoints of \"b\" kept"
    );
    assert_eq!(get(&client, proxy.addr, "x", "/", &[]).await.0, 200);
    // Unsubscribing removes: drop the listener, and its route config goes with it.
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
    assert!(!proxy.store.current().routes.contains_key("other"));
}

#[tokio::test]
async fn one_bad_resource_does_not_freeze_the_others() {
    let (up, _) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(
        &[("a", false, vec![up]), ("b", false, vec![up])],
        &["svc"],
        "a",
    );
    // An EDS response with one invalid assignment (weight 0) and one valid change.
    let mut bad = envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
        cluster_name: "a".into(),
        ..Default::default()
    };
    bad.endpoints.push(
        envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints {
            lb_endpoints: vec![envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint {
                load_balancing_weight: Some(envoy_types::pb::google::protobuf::UInt32Value {
                    value: 0,
                }),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let (up2, _) = counting_upstream(None).await;
    let err = proxy
        .push(type_url::ENDPOINT, vec![any(&bad), endpoints("b", &[up2])])
        .unwrap_err();
    assert!(
        err.contains("\"a\""),
        "the NACK names the bad resource: {err}"
    );
    let current = proxy.store.current();
    assert_eq!(
        current.clusters["a"].endpoints()[0].addr,
        up,
        "a keeps its old endpoints"
    );
    assert_eq!(
        current.clusters["b"].endpoints()[0].addr,
        up2,
        "b's update applied"
    );
    assert!(current.eds.last_rejection.is_some());
    assert_eq!(get(&h1_client(), proxy.addr, "svc", "/", &[]).await.0, 200);
}

#[tokio::test]
async fn a_removed_listener_closes_its_kept_alive_connections() {
    let (up, _) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", false, vec![up])], &["*"], "svc");
    let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
    conn.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The listener goes away while the connection is idle and kept alive.
    proxy
        .push(
            type_url::LISTENER,
            vec![listener(
                "other",
                "127.0.0.2:0".parse().unwrap(),
                "outbound",
            )],
        )
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the kept-alive connection of a removed listener is closed"
    );
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_removed_listener_lets_in_flight_requests_finish() {
    let (up, seen) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", false, vec![up])], &["*"], "svc");
    let addr = proxy.addr;
    let in_flight =
        tokio::spawn(async move { get(&h1_client(), addr, "svc", "/slow/500", &[]).await });
    eventually(
        "the request reached the upstream",
        Duration::from_secs(5),
        || seen.authorities.lock().len() == 1,
    )
    .await;
    proxy
        .push(
            type_url::LISTENER,
            vec![listener(
                "other",
                "127.0.0.2:0".parse().unwrap(),
                "outbound",
            )],
        )
        .unwrap();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
}
