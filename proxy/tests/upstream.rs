//! The upstream connection layer through the whole proxy: authority preserved, h2 stream limits,
//! pool bounds and lifetimes, HTTP/2 PING keepalive, DNS-resolved clusters.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use weft_xds::type_url;

#[tokio::test]
async fn h2_upstream_sees_the_clients_authority() {
    let (up, seen) = counting_upstream(Some(100)).await;
    let mut proxy = Proxy::start();
    proxy.route_all(
        &[("svc", true, vec![up])],
        &["svc.ns.svc.cluster.local:9080", "svc:9080"],
        "svc",
    );
    // HTTP/1.1 downstream with Host, and h2c downstream with :authority: both reach the h2
    // upstream as `:authority` unchanged, never as the endpoint's ip:port.
    let (status, _, body) = get(&h1_client(), proxy.addr, "svc:9080", "/a", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(
        &h2_client(),
        proxy.addr,
        "svc.ns.svc.cluster.local:9080",
        "/b",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = seen.authorities.lock().clone();
    assert_eq!(
        seen,
        vec![
            ("svc:9080".to_string(), http::Version::HTTP_2),
            (
                "svc.ns.svc.cluster.local:9080".to_string(),
                http::Version::HTTP_2
            ),
        ]
    );
}

#[tokio::test]
async fn h1_upstream_sees_the_clients_host_in_origin_form() {
    let (up, seen) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", false, vec![up])], &["svc:9080"], "svc");
    let (status, _, body) = get(&h1_client(), proxy.addr, "svc:9080", "/x?y=1", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        seen.authorities.lock().clone(),
        vec![("svc:9080".to_string(), http::Version::HTTP_11)]
    );
}

#[tokio::test]
async fn h2_stream_limit_opens_more_connections() {
    let (up, seen) = counting_upstream(Some(1)).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", true, vec![up])], &["svc"], "svc");
    // Learn the peer's SETTINGS on a first request, then send 6 slow requests at once.
    let client = h1_client();
    assert_eq!(get(&client, proxy.addr, "svc", "/", &[]).await.0, 200);
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            let addr = proxy.addr;
            tokio::spawn(async move {
                let (status, flags, body) = get(&client, addr, "svc", "/slow/300", &[]).await;
                assert_eq!(status, 200, "{flags} {body}");
                status
            })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert!(
        seen.accepted() >= 6,
        "an upstream allowing one stream per connection must get a connection per concurrent request, got {}",
        seen.accepted()
    );
}

#[tokio::test]
async fn h2_requests_share_one_connection_when_the_peer_allows() {
    let (up, seen) = counting_upstream(Some(100)).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", true, vec![up])], &["svc"], "svc");
    let client = h1_client();
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let addr = proxy.addr;
            tokio::spawn(async move { get(&client, addr, "svc", "/slow/100", &[]).await.0 })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(seen.accepted(), 1, "h2 multiplexes on one connection");
}

#[tokio::test]
async fn h1_keep_alive_reuses_connections() {
    let (up, seen) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", false, vec![up])], &["svc"], "svc");
    let client = h1_client();
    for _ in 0..20 {
        assert_eq!(get(&client, proxy.addr, "svc", "/", &[]).await.0, 200);
    }
    assert_eq!(
        seen.accepted(),
        1,
        "sequential requests reuse one upstream connection"
    );
}

#[tokio::test]
async fn post_bodies_reach_h1_and_h2_upstreams() {
    for h2 in [false, true] {
        let (up, _seen) = counting_upstream(h2.then_some(100)).await;
        let mut proxy = Proxy::start();
        proxy.route_all(&[("svc", h2, vec![up])], &["svc"], "svc");
        let body = Bytes::from(vec![b'x'; 200_000]);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let req = Request::post(format!("http://{}/", proxy.addr))
            .header("host", "svc")
            .body(Full::new(body))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&text).ends_with("body=200000"),
            "h2={h2}: {}",
            String::from_utf8_lossy(&text)
        );
    }
}

#[tokio::test]
async fn endpoint_removed_from_eds_has_its_connections_closed() {
    let (up_a, seen_a) = counting_upstream(None).await;
    let (up_b, _seen_b) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(&[("svc", false, vec![up_a])], &["svc"], "svc");
    assert_eq!(get(&h1_client(), proxy.addr, "svc", "/", &[]).await.0, 200);
    assert_eq!(seen_a.accepted(), 1);
    assert_eq!(
        seen_a.closed(),
        0,
        "the pooled connection stays open while idle"
    );
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("svc", &[up_b])])
        .unwrap();
    eventually(
        "the removed endpoint's pooled connection is closed",
        Duration::from_secs(5),
        || seen_a.closed() == 1,
    )
    .await;
    assert_eq!(get(&h1_client(), proxy.addr, "svc", "/", &[]).await.0, 200);
    assert_eq!(
        seen_a.accepted(),
        1,
        "no new connection to the removed endpoint"
    );
}

#[tokio::test]
async fn endpoint_shared_by_two_clusters_keeps_its_pool_while_one_has_it() {
    let (up, seen) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy.route_all(
        &[("all", false, vec![up]), ("v1", false, vec![up])],
        &["svc"],
        "all",
    );
    assert_eq!(get(&h1_client(), proxy.addr, "svc", "/", &[]).await.0, 200);
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("v1", &[])])
        .unwrap();
    assert_eq!(get(&h1_client(), proxy.addr, "svc", "/", &[]).await.0, 200);
    assert_eq!(seen.closed(), 0);
    assert_eq!(
        seen.accepted(),
        1,
        "one pool per endpoint, shared by clusters"
    );
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let (up, seen) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy
        .push(
            type_url::CLUSTER,
            vec![cluster_with_idle_timeout(
                "svc",
                false,
                Duration::from_millis(200),
            )],
        )
        .unwrap();
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("svc", &[up])])
        .unwrap();
    proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost(
                    "svc",
                    &["svc"],
                    vec![to_cluster(prefix("/"), "svc", None)],
                )],
            )],
        )
        .unwrap();
    assert_eq!(get(&h1_client(), proxy.addr, "svc", "/", &[]).await.0, 200);
    eventually(
        "the idle upstream connection is closed after its idle timeout",
        Duration::from_secs(5),
        || seen.closed() == 1,
    )
    .await;
}

#[tokio::test]
async fn dns_cluster_resolves_and_serves() {
    let (up, seen) = counting_upstream(None).await;
    let mut proxy = Proxy::start();
    proxy
        .push(
            type_url::CLUSTER,
            vec![dns_cluster(
                "dns",
                "localhost",
                up.port(),
                Duration::from_secs(1),
            )],
        )
        .unwrap();
    proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost(
                    "ext",
                    &["ext.example"],
                    vec![to_cluster(prefix("/"), "dns", None)],
                )],
            )],
        )
        .unwrap();
    let cluster = proxy.store.current().clusters["dns"].clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        cluster.dns.as_ref().unwrap().wait_resolved(),
    )
    .await
    .expect("localhost resolves");
    let (status, _, body) = get(&h1_client(), proxy.addr, "ext.example", "/", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.accepted(), 1);
    assert_eq!(
        cluster
            .endpoints()
            .iter()
            .map(|e| e.addr)
            .collect::<Vec<_>>(),
        vec![up]
    );
}

#[tokio::test]
async fn dns_cluster_with_unresolvable_name_answers_503_and_does_not_hang() {
    let mut proxy = Proxy::start();
    proxy
        .push(
            type_url::CLUSTER,
            vec![dns_cluster(
                "dns",
                "no-such-host.invalid",
                80,
                Duration::from_secs(60),
            )],
        )
        .unwrap();
    proxy
        .push(
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost(
                    "ext",
                    &["ext"],
                    vec![to_cluster(prefix("/"), "dns", None)],
                )],
            )],
        )
        .unwrap();
    let cluster: Arc<_> = proxy.store.current().clusters["dns"].clone();
    tokio::time::timeout(
        Duration::from_secs(20),
        cluster.dns.as_ref().unwrap().wait_resolved(),
    )
    .await
    .expect("a failed resolution still completes");
    let (status, flags, _) = get(&h1_client(), proxy.addr, "ext", "/", &[]).await;
    assert_eq!((status, flags.as_str()), (503, "UH"));
}

/// Pushes the h2 keepalive cluster `svc` with `up` behind it, routed for every request.
fn keepalive_cluster(proxy: &mut Proxy, up: std::net::SocketAddr) {
    let cluster = cluster_with_h2_keepalive(
        "svc",
        Duration::from_millis(100),
        Duration::from_millis(300),
    );
    proxy.push(type_url::CLUSTER, vec![cluster]).unwrap();
    proxy
        .push(type_url::ENDPOINT, vec![endpoints("svc", &[up])])
        .unwrap();
    let routes = route_config(
        "outbound",
        vec![vhost(
            "svc",
            &["svc"],
            vec![to_cluster(prefix("/"), "svc", None)],
        )],
    );
    proxy.push(type_url::ROUTE, vec![routes]).unwrap();
}

#[tokio::test]
async fn h2_keepalive_pings_and_keeps_a_connection_its_peer_answers() {
    let (up, seen) = raw_h2::upstream(true).await;
    let mut proxy = Proxy::start();
    keepalive_cluster(&mut proxy, up);
    let client = h1_client();
    assert_eq!(get(&client, proxy.addr, "svc", "/", &[]).await.0, 200);
    eventually(
        "PINGs every 100ms on the upstream connection",
        Duration::from_secs(5),
        || seen.get(&seen.pings) >= 4,
    )
    .await;
    assert_eq!(seen.get(&seen.closed), 0, "answered PINGs keep it open");
    assert_eq!(get(&client, proxy.addr, "svc", "/", &[]).await.0, 200);
    assert_eq!(seen.get(&seen.accepted), 1, "the same connection serves on");
}

#[tokio::test]
async fn h2_keepalive_closes_a_connection_whose_peer_stops_answering() {
    let (up, seen) = raw_h2::upstream(false).await;
    let mut proxy = Proxy::start();
    keepalive_cluster(&mut proxy, up);
    let client = h1_client();
    assert_eq!(get(&client, proxy.addr, "svc", "/", &[]).await.0, 200);
    eventually(
        "the connection closed after an unanswered PING",
        Duration::from_secs(5),
        || seen.get(&seen.closed) == 1,
    )
    .await;
    assert_eq!(
        seen.get(&seen.pings),
        1,
        "closed after the first PING's timeout"
    );
    // The next request opens a new connection instead of waiting on the dead one.
    assert_eq!(get(&client, proxy.addr, "svc", "/", &[]).await.0, 200);
    assert_eq!(seen.get(&seen.accepted), 2);
}
