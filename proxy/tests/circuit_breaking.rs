//! Circuit breaking in process: beyond a cluster's `max_connections` + `max_pending_requests`
//! (HTTP/1.1) or `max_requests`, a request gets `503 UO` at once, never a queue; and
//! `max_requests_per_connection` makes each request use a connection of its own.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uh;
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::Message;
use weft_xds::type_url;

/// `common::cluster` with circuit breakers and per-connection request limit.
fn limited_cluster(
    name: &str,
    h2: bool,
    thresholds: cds::circuit_breakers::Thresholds,
    max_requests_per_connection: Option<u32>,
) -> Any {
    let mut c = cds::Cluster::decode(cluster(name, h2).value.as_slice()).unwrap();
    c.circuit_breakers = Some(cds::CircuitBreakers {
        thresholds: vec![thresholds],
        ..Default::default()
    });
    if let Some(max) = max_requests_per_connection {
        let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
        let any = c.typed_extension_protocol_options.get_mut(key).unwrap();
        let mut opts = uh::HttpProtocolOptions::decode(any.value.as_slice()).unwrap();
        opts.common_http_protocol_options = Some(
            envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions {
                max_requests_per_connection: Some(UInt32Value { value: max }),
                ..Default::default()
            },
        );
        any.value = opts.encode_to_vec();
    }
    common::any(&c)
}

/// A proxy routing everything to cluster `c` (`cluster`, one endpoint: `upstream`).
fn proxy_to(cluster: Any, upstream: std::net::SocketAddr) -> Proxy {
    let mut proxy = Proxy::start();
    proxy.push(type_url::CLUSTER, vec![cluster]).unwrap();
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("c", &[upstream])])
        .unwrap();
    proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost(
                    "all",
                    &["*"],
                    vec![to_cluster(prefix("/"), "c", None)],
                )],
            )],
        )
        .unwrap();
    proxy
}

fn limit(n: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: n })
}

/// Sends `n` concurrent GETs for `path`; returns (status, flags, elapsed) of each.
async fn concurrent(
    proxy: std::net::SocketAddr,
    n: usize,
    path: &str,
) -> Vec<(u16, String, Duration)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let (status, flags, _) = get(&h1_client(), proxy, "svc", &path, &[]).await;
            (status, flags, start.elapsed())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_connections_and_pending_requests_the_caller_gets_503_uo_at_once() {
    let (upstream, seen) = counting_upstream(None).await;
    let proxy = proxy_to(
        limited_cluster(
            "c",
            false,
            cds::circuit_breakers::Thresholds {
                max_connections: limit(1),
                max_pending_requests: limit(1),
                ..Default::default()
            },
            None,
        ),
        upstream,
    );
    // Five at once, each held 400 ms by the upstream: one on the connection, one waiting for
    // it, three refused at once.
    let results = concurrent(proxy.addr, 5, "/slow/400").await;
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let overflow: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(ok.len(), 2, "{results:?}");
    assert_eq!(overflow.len(), 3, "{results:?}");
    for (_, flags, elapsed) in &overflow {
        assert_eq!(flags, "UO");
        assert!(
            *elapsed < Duration::from_millis(300),
            "not queued: {elapsed:?}"
        );
    }
    assert_eq!(
        seen.accepted.load(Ordering::SeqCst),
        1,
        "max_connections: 1"
    );
    // The pending one waited for the first, then used its connection.
    assert!(
        ok.iter().any(|r| r.2 >= Duration::from_millis(750)),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_requests_the_caller_gets_503_uo_at_once() {
    let (upstream, _) = counting_upstream(Some(100)).await;
    let proxy = proxy_to(
        limited_cluster(
            "c",
            true,
            cds::circuit_breakers::Thresholds {
                max_requests: limit(2),
                ..Default::default()
            },
            None,
        ),
        upstream,
    );
    let results = concurrent(proxy.addr, 4, "/slow/400").await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let overflow: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!((ok, overflow.len()), (2, 2), "{results:?}");
    assert!(
        overflow
            .iter()
            .all(|r| r.1 == "UO" && r.2 < Duration::from_millis(300))
    );
    // The permits come back with the responses: the next ones pass.
    let results = concurrent(proxy.addr, 2, "/slow/10").await;
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_one_means_a_connection_per_request() {
    let (upstream, seen) = counting_upstream(None).await;
    let proxy = proxy_to(
        limited_cluster(
            "c",
            false,
            cds::circuit_breakers::Thresholds::default(),
            Some(1),
        ),
        upstream,
    );
    let client = h1_client();
    for _ in 0..5 {
        let (status, _, _) = get(&client, proxy.addr, "svc", "/", &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 5);
}
