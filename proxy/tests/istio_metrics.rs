//! Istio's metrics in process: the metadata exchange on an inbound listener (taken off before
//! the app, answered only to a client that sent its own), the flags a response gets after its
//! head (`DC`: the client left mid-body), gRPC's status from trailers, TCP connections and
//! bytes counted while they flow, Istio's TCP metadata exchange between two sidecars over
//! mutual TLS (both reporters name the peer; the frames reach neither app nor byte counts), and
//! the stats filter's settings (metrics dropped, labels removed, replaced and added; series
//! made equal summed; no filter, no metrics).
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{
    any, cluster, endpoints, listener_with, prefix, route_config, socket, to_cluster, vhost,
};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use envoy_types::pb::google::protobuf::Any;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_proxy::ConfigStore;
use weft_proxy::metrics::exchange::{self, OwnHeaders};
use weft_proxy::metrics::{Metrics, Settings, WorkloadLabels};
use weft_xds::stats::{MetricConfig, PluginConfig, STATS_FILTER, STATS_TYPE_URL};
use weft_xds::type_url;

fn workload(name: &str, app: &str, version: &str) -> WorkloadLabels {
    let labels = [("app", app), ("version", version)]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorkloadLabels::from_pod(name, "default", &labels, "Kubernetes", name)
}

fn metrics(me: WorkloadLabels) -> Arc<Metrics> {
    Arc::new(Metrics::new(Settings {
        enabled: true,
        pod: format!("{}-pod", me.workload),
        node_id: format!(
            "sidecar~127.0.0.1~{}.default~default.svc.cluster.local",
            me.workload
        ),
        local: me,
        trust_domain: "cluster.local".into(),
        max_series: 100,
    }))
}

/// The exposition of `metrics`, as `/stats/prometheus` serves it.
fn text(metrics: &Arc<Metrics>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

/// The value of the one sample line named `name` that has every `label="value"` of `having`.
fn value(text: &str, name: &str, having: &[&str]) -> Option<f64> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| having.iter().all(|h| l.contains(h)))
        .collect();
    assert!(
        lines.len() <= 1,
        "more than one {name} line with {having:?}: {lines:#?}"
    );
    lines
        .first()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Waits until the sample exists with `want`.
async fn wait_for(metrics: &Arc<Metrics>, name: &str, having: &[&str], want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = text(metrics);
        if value(&text, name, having) == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {name} {having:?} = {want} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `listener` (decoded from its `Any`) with `traffic_direction`, recording Istio's metrics
/// with their standard labels.
fn directed(listener: Any, direction: core::TrafficDirection) -> Any {
    let mut l = lds::Listener::decode(listener.value.as_slice()).unwrap();
    l.traffic_direction = direction as i32;
    with_stats(any(&l), standard_stats())
}

/// The stats filter config without overrides, as the controller writes it.
fn standard_stats() -> PluginConfig {
    PluginConfig {
        disable_host_header_fallback: true,
        ..Default::default()
    }
}

/// `listener` with Istio's stats filter (`config`) in every chain: before the router of its
/// connection manager, or before its TCP proxy.
fn with_stats(listener: Any, config: PluginConfig) -> Any {
    let mut l = lds::Listener::decode(listener.value.as_slice()).unwrap();
    let typed = Any {
        type_url: STATS_TYPE_URL.into(),
        value: config.encode_to_vec(),
    };
    for chain in &mut l.filter_chains {
        if let Some(i) = chain
            .filters
            .iter()
            .position(|f| f.name == weft_xds::contract::TCP_PROXY)
        {
            chain.filters.insert(
                i,
                lds::Filter {
                    name: STATS_FILTER.into(),
                    config_type: Some(lds::filter::ConfigType::TypedConfig(typed.clone())),
                },
            );
            continue;
        }
        for f in &mut chain.filters {
            let Some(lds::filter::ConfigType::TypedConfig(a)) = &mut f.config_type else {
                continue;
            };
            let mut m = hcm::HttpConnectionManager::decode(a.value.as_slice()).unwrap();
            let at = m.http_filters.len() - 1;
            m.http_filters.insert(
                at,
                hcm::HttpFilter {
                    name: STATS_FILTER.into(),
                    config_type: Some(hcm::http_filter::ConfigType::TypedConfig(typed.clone())),
                    ..Default::default()
                },
            );
            *a = any(&m);
        }
    }
    any(&l)
}

/// A store serving `listener` (named `l`), whose routes (`routes`) send everything to cluster
/// `name` at `app`.
fn serve(
    metrics: &Arc<Metrics>,
    listener: Any,
    name: &str,
    app: SocketAddr,
) -> (ConfigStore, SocketAddr) {
    let mut store = ConfigStore::new().with_metrics(metrics.clone());
    store
        .apply_response(type_url::CLUSTER, "c1", vec![cluster(name, true)])
        .unwrap();
    store
        .apply_response(type_url::ENDPOINT, "e1", vec![endpoints(name, &[app])])
        .unwrap();
    store
        .apply_response(type_url::LISTENER, "l1", vec![listener])
        .unwrap();
    let addr = store.local_addr("l").unwrap();
    store
        .apply_response(
            type_url::ROUTE,
            "r1",
            vec![route_config(
                "routes",
                vec![vhost(
                    "all",
                    &["*"],
                    vec![to_cluster(prefix("/"), name, None)],
                )],
            )],
        )
        .unwrap();
    (store, addr)
}

/// A body that sends one chunk, then nothing for ever.
struct Hanging(bool);

impl http_body::Body for Hanging {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 {
            return Poll::Pending;
        }
        self.0 = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
    }
}

/// An h2c app: `/stream` sends one chunk and then hangs; `/grpc` answers as a gRPC server
/// failing with status 14 in its trailers; anything else says whether it saw peer metadata.
async fn app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let resp: Response<BoxBody<Bytes, Infallible>> = match req.uri().path() {
                        "/stream" => Response::new(Hanging(false).boxed()),
                        "/grpc" => {
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", "14".parse().unwrap());
                            let body = Full::new(Bytes::from_static(b"\0\0\0\0\0"))
                                .with_trailers(async move { Some(Ok(trailers)) });
                            let mut resp = Response::new(body.boxed());
                            resp.headers_mut()
                                .insert("content-type", "application/grpc".parse().unwrap());
                            resp
                        }
                        _ => {
                            let saw = req.headers().contains_key(&exchange::PEER_METADATA)
                                || req.headers().contains_key(&exchange::PEER_ID);
                            Response::new(
                                Full::new(Bytes::from(format!("saw-metadata={saw}"))).boxed(),
                            )
                        }
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A plain (h1) request to `proxy`, with `headers`: the response head and body.
async fn send(proxy: SocketAddr, path: &str, headers: &HeaderMap) -> (Response<()>, String) {
    let mut req = Request::get(format!("http://{proxy}{path}"))
        .header("host", "reviews")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.headers_mut().extend(headers.clone());
    let resp = common::h1_client().request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn inbound_takes_the_peers_metadata_off_and_answers_with_its_own() {
    let me = workload("reviews-v1", "reviews", "v1");
    let metrics = metrics(me.clone());
    let listener = directed(
        listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {}),
        core::TrafficDirection::Inbound,
    );
    let (_store, addr) = serve(&metrics, listener, "inbound|9080||", app().await);

    let client = workload("client", "client", "");
    let mut headers = HeaderMap::new();
    OwnHeaders::new("client-node", "client-pod", &client).insert(&mut headers);
    let (resp, body) = send(addr, "/", &headers).await;
    assert_eq!(
        body, "saw-metadata=false",
        "the app never sees the exchange"
    );
    let mut answered = resp.headers().clone();
    let theirs = exchange::take(&mut answered).expect("the server answers with its metadata");
    assert_eq!(exchange::decode(&theirs).unwrap().labels(), &me);

    // A client that did not say who it is hears nothing, and is an unknown source.
    let (resp, _) = send(addr, "/", &HeaderMap::new()).await;
    assert!(!resp.headers().contains_key(&exchange::PEER_METADATA));

    let text = text(&metrics);
    let mine = [
        r#"reporter="destination""#,
        r#"destination_workload="reviews-v1""#,
        r#"destination_version="v1""#,
        r#"connection_security_policy="none""#,
        r#"response_code="200""#,
    ];
    let from = |source: &'static str| {
        let mut labels = mine.to_vec();
        labels.push(source);
        labels
    };
    assert_eq!(
        value(
            &text,
            "istio_requests_total",
            &from(r#"source_workload="client""#)
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "istio_requests_total",
            &from(r#"source_workload="unknown""#)
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_is_flagged_dc() {
    let metrics = metrics(workload("client", "client", ""));
    let listener = with_stats(
        listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {}),
        standard_stats(),
    );
    let (_store, addr) = serve(
        &metrics,
        listener,
        "outbound|9080||reviews.default.svc.cluster.local",
        app().await,
    );
    let req = Request::get(format!("http://{addr}/stream"))
        .header("host", "reviews")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let client = common::h1_client();
    let mut resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    // Nothing is recorded while the body is on its way.
    assert_eq!(value(&text(&metrics), "istio_requests_total", &[]), None);
    drop(resp);
    drop(client);
    wait_for(
        &metrics,
        "istio_requests_total",
        &[
            r#"reporter="source""#,
            r#"response_code="200""#,
            r#"response_flags="DC""#,
            r#"destination_service="reviews.default.svc.cluster.local""#,
            r#"destination_service_name="reviews""#,
            r#"destination_service_namespace="default""#,
        ],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn grpc_status_comes_from_the_trailers() {
    let metrics = metrics(workload("client", "client", ""));
    let listener = with_stats(
        listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {}),
        standard_stats(),
    );
    let (_store, addr) = serve(&metrics, listener, "outbound|9090||grpc.test", app().await);
    let req = Request::post(format!("http://{addr}/grpc"))
        .header("host", "grpc.test")
        .header("content-type", "application/grpc")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = common::h2_client().request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .unwrap(),
        "14"
    );
    wait_for(
        &metrics,
        "istio_requests_total",
        &[
            r#"request_protocol="grpc""#,
            r#"response_code="200""#,
            r#"grpc_response_status="14""#,
            r#"destination_service="grpc.test""#,
        ],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn tcp_connections_and_bytes_are_counted_while_they_flow() {
    let metrics = metrics(workload("reviews-v1", "reviews", "v1"));
    // An echo server.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let name = "inbound|3306||";
    let mut store = ConfigStore::new().with_metrics(metrics.clone());
    store
        .apply_response(type_url::CLUSTER, "c1", vec![cluster(name, false)])
        .unwrap();
    store
        .apply_response(
            type_url::ENDPOINT,
            "e1",
            vec![endpoints(name, &[echo_addr])],
        )
        .unwrap();
    let listener = lds::Listener {
        name: "l".into(),
        address: Some(socket("127.0.0.1:0".parse().unwrap())),
        traffic_direction: core::TrafficDirection::Inbound as i32,
        filter_chains: vec![lds::FilterChain {
            filters: vec![lds::Filter {
                name: weft_xds::contract::TCP_PROXY.into(),
                config_type: Some(lds::filter::ConfigType::TypedConfig(any(&tcp::TcpProxy {
                    stat_prefix: "tcp".into(),
                    cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(name.into())),
                    ..Default::default()
                }))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    store
        .apply_response(
            type_url::LISTENER,
            "l1",
            vec![with_stats(any(&listener), standard_stats())],
        )
        .unwrap();
    let addr = store.local_addr("l").unwrap();

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"hello, mesh").await.unwrap();
    let mut buf = [0u8; 11];
    conn.read_exact(&mut buf).await.unwrap();
    let labels = [
        r#"reporter="destination""#,
        r#"request_protocol="tcp""#,
        r#"destination_workload="reviews-v1""#,
        r#"connection_security_policy="none""#,
        r#"response_flags="-""#,
    ];
    // While the connection is open: opened, and its bytes so far.
    wait_for(&metrics, "istio_tcp_connections_opened_total", &labels, 1.0).await;
    wait_for(&metrics, "istio_tcp_received_bytes_total", &labels, 11.0).await;
    wait_for(&metrics, "istio_tcp_sent_bytes_total", &labels, 11.0).await;
    assert_eq!(
        value(
            &text(&metrics),
            "istio_tcp_connections_closed_total",
            &labels
        ),
        Some(0.0)
    );
    drop(conn);
    wait_for(&metrics, "istio_tcp_connections_closed_total", &labels, 1.0).await;

    // No endpoint: opened and closed at once, flagged UH.
    store
        .apply_response(type_url::ENDPOINT, "e2", vec![endpoints(name, &[])])
        .unwrap();
    let mut refused = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = refused.read(&mut buf).await;
    let failed = [r#"reporter="destination""#, r#"response_flags="UH""#];
    wait_for(&metrics, "istio_tcp_connections_opened_total", &failed, 1.0).await;
    wait_for(&metrics, "istio_tcp_connections_closed_total", &failed, 1.0).await;
}

/// The labels both reporters give a TCP connection from `client` to `reviews-v1` when the
/// metadata was exchanged.
fn tcp_between(reporter: &'static str) -> Vec<&'static str> {
    let mut labels = vec![
        r#"request_protocol="tcp""#,
        r#"response_flags="-""#,
        r#"source_workload="client""#,
        r#"source_app="client""#,
        r#"source_canonical_service="client""#,
        r#"source_principal="spiffe://cluster.local/ns/default/sa/client""#,
        r#"destination_workload="reviews-v1""#,
        r#"destination_app="reviews""#,
        r#"destination_version="v1""#,
        r#"destination_canonical_revision="v1""#,
        r#"destination_principal="spiffe://cluster.local/ns/default/sa/reviews""#,
    ];
    labels.push(match reporter {
        // The outbound cluster's host; the test's inbound cluster names no service.
        "source" => r#"destination_service="tcp-echo.default.svc.cluster.local""#,
        _ => r#"destination_service="unknown""#,
    });
    labels.push(match reporter {
        "source" => r#"reporter="source""#,
        _ => r#"reporter="destination""#,
    });
    labels.push(match reporter {
        "source" => r#"connection_security_policy="unknown""#,
        _ => r#"connection_security_policy="mutual_tls""#,
    });
    labels
}

#[tokio::test]
async fn tcp_over_mtls_exchanges_metadata_and_both_reporters_name_the_peer() {
    let client_metrics = metrics(workload("client", "client", ""));
    // The ServiceAccount of the server's certificate.
    let server_metrics = metrics(WorkloadLabels {
        service_account: "reviews".into(),
        ..workload("reviews-v1", "reviews", "v1")
    });
    let mesh = common::mesh::start(
        &client_metrics,
        &server_metrics,
        common::mesh::MeshOptions {
            server_exchange: true,
            client_exchange: true,
            ..Default::default()
        },
    )
    .await;
    // 11 bytes each way: the app gets exactly them (a frame that leaked would be echoed first).
    let conn = common::mesh::echo_through(mesh.entry, b"hello, mesh").await;
    for (metrics, reporter) in [
        (&client_metrics, "source"),
        (&server_metrics, "destination"),
    ] {
        let labels = tcp_between(reporter);
        wait_for(metrics, "istio_tcp_connections_opened_total", &labels, 1.0).await;
        wait_for(metrics, "istio_tcp_received_bytes_total", &labels, 11.0).await;
        wait_for(metrics, "istio_tcp_sent_bytes_total", &labels, 11.0).await;
    }
    assert_eq!(
        mesh.app_received.load(std::sync::atomic::Ordering::Relaxed),
        11
    );
    drop(conn);
    for (metrics, reporter) in [
        (&client_metrics, "source"),
        (&server_metrics, "destination"),
    ] {
        let labels = tcp_between(reporter);
        wait_for(metrics, "istio_tcp_connections_closed_total", &labels, 1.0).await;
        // Still exactly the app's bytes: the frames were never counted.
        let text = text(metrics);
        assert_eq!(
            value(&text, "istio_tcp_received_bytes_total", &labels),
            Some(11.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "istio_tcp_sent_bytes_total", &labels),
            Some(11.0),
            "{text}"
        );
    }
}

#[tokio::test]
async fn without_the_exchange_on_both_sides_no_frame_is_sent_and_peers_are_unknown() {
    // Only the server has the filter: the client does not offer istio-peer-exchange, so the
    // server never writes its frame to a client that would hand it to the app.
    for (server_exchange, client_exchange) in [(true, false), (false, true)] {
        let client_metrics = metrics(workload("client", "client", ""));
        let server_metrics = metrics(workload("reviews-v1", "reviews", "v1"));
        let mesh = common::mesh::start(
            &client_metrics,
            &server_metrics,
            common::mesh::MeshOptions {
                server_exchange,
                client_exchange,
                ..Default::default()
            },
        )
        .await;
        let conn = common::mesh::echo_through(mesh.entry, b"plain bytes").await;
        let source = [
            r#"reporter="source""#,
            r#"destination_workload="unknown""#,
            r#"destination_service="tcp-echo.default.svc.cluster.local""#,
        ];
        let destination = [
            r#"reporter="destination""#,
            r#"source_workload="unknown""#,
            r#"source_principal="spiffe://cluster.local/ns/default/sa/client""#,
            r#"connection_security_policy="mutual_tls""#,
        ];
        wait_for(&client_metrics, "istio_tcp_sent_bytes_total", &source, 11.0).await;
        wait_for(
            &server_metrics,
            "istio_tcp_received_bytes_total",
            &destination,
            11.0,
        )
        .await;
        drop(conn);
        assert_eq!(
            mesh.app_received.load(std::sync::atomic::Ordering::Relaxed),
            11,
            "server {server_exchange}, client {client_exchange}"
        );
    }
}

#[tokio::test]
async fn the_stats_filter_drops_metrics_and_removes_and_adds_labels() {
    let metrics = metrics(workload("reviews-v1", "reviews", "v1"));
    let config = PluginConfig {
        metrics: vec![
            // Every metric: no response code, and the request's method as a label.
            MetricConfig {
                tags_to_remove: vec!["response_code".into()],
                dimensions: [
                    ("request_method".to_string(), "request.method".to_string()),
                    // A standard label replaced by an expression's value.
                    (
                        "destination_version".to_string(),
                        "request.headers['x-version']".to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            },
            MetricConfig {
                name: weft_xds::stats::RESPONSE_BYTES.into(),
                drop: true,
                ..Default::default()
            },
        ],
        ..standard_stats()
    };
    let listener = directed(
        listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {}),
        core::TrafficDirection::Inbound,
    );
    // `directed` added the standard filter; this listener's own replaces it.
    let listener = {
        let mut l = lds::Listener::decode(listener.value.as_slice()).unwrap();
        for f in &mut l.filter_chains[0].filters {
            let Some(lds::filter::ConfigType::TypedConfig(a)) = &mut f.config_type else {
                continue;
            };
            let mut m = hcm::HttpConnectionManager::decode(a.value.as_slice()).unwrap();
            m.http_filters.retain(|f| f.name != STATS_FILTER);
            *a = any(&m);
        }
        with_stats(any(&l), config)
    };
    let (_store, addr) = serve(&metrics, listener, "inbound|9080||", app().await);
    // Two requests that say their version, one that does not.
    let mut v2 = HeaderMap::new();
    v2.insert("x-version", "v2".parse().unwrap());
    send(addr, "/", &v2).await;
    send(addr, "/", &v2).await;
    send(addr, "/", &HeaderMap::new()).await;

    let text = text(&metrics);
    assert_eq!(
        value(
            &text,
            "istio_requests_total",
            &[r#"request_method="GET""#, r#"destination_version="v2""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "istio_requests_total",
            &[
                r#"request_method="GET""#,
                r#"destination_version="unknown""#
            ]
        ),
        Some(1.0),
        "a missing header is `unknown`: {text}"
    );
    assert!(
        !text.contains("response_code="),
        "response_code removed from every metric: {text}"
    );
    assert!(
        !text.contains("istio_response_bytes_bucket{"),
        "response bytes dropped: {text}"
    );
    assert_eq!(
        value(
            &text,
            "istio_request_duration_milliseconds_count",
            &[r#"destination_version="v2""#]
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test]
async fn series_that_the_overrides_make_equal_are_summed() {
    let metrics = metrics(workload("reviews-v1", "reviews", "v1"));
    let config = PluginConfig {
        metrics: vec![MetricConfig {
            name: weft_xds::stats::REQUESTS_TOTAL.into(),
            tags_to_remove: vec!["source_workload".into()],
            ..Default::default()
        }],
        ..standard_stats()
    };
    let listener = with_stats(
        listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {}),
        config,
    );
    let listener = {
        let mut l = lds::Listener::decode(listener.value.as_slice()).unwrap();
        l.traffic_direction = core::TrafficDirection::Inbound as i32;
        any(&l)
    };
    let (_store, addr) = serve(&metrics, listener, "inbound|9080||", app().await);
    // Two workloads of one app: two series inside, one line once `source_workload` is gone.
    for source in ["a", "b"] {
        let mut headers = HeaderMap::new();
        OwnHeaders::new("n", "p", &workload(source, "shared", "")).insert(&mut headers);
        send(addr, "/", &headers).await;
    }
    let text = text(&metrics);
    assert_eq!(
        value(
            &text,
            "istio_requests_total",
            &[r#"reporter="destination""#]
        ),
        Some(2.0),
        "{text}"
    );
    // The other metrics keep the label: one line per source.
    for source in ["a", "b"] {
        let label = format!("source_workload=\"{source}\"");
        assert_eq!(
            value(
                &text,
                "istio_request_duration_milliseconds_count",
                &[label.as_str()]
            ),
            Some(1.0),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_listener_without_the_stats_filter_records_nothing() {
    let metrics = metrics(workload("reviews-v1", "reviews", "v1"));
    let listener = listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {});
    let (_store, addr) = serve(&metrics, listener, "inbound|9080||", app().await);
    let (resp, _) = send(addr, "/", &HeaderMap::new()).await;
    assert_eq!(resp.status(), 200);
    let text = text(&metrics);
    assert!(
        !text.contains("istio_requests_total{"),
        "no filter, no series: {text}"
    );
}

/// Sends one HTTP/1.1 GET on `stream` and reads its whole (small) answer.
async fn get_on(stream: &mut tokio::net::TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("saw-metadata=") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the proxy closed the connection");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn new_settings_apply_to_the_next_request_of_an_open_connection() {
    let metrics = metrics(workload("reviews-v1", "reviews", "v1"));
    let plain = listener_with("l", "127.0.0.1:0".parse().unwrap(), "routes", |_| {});
    let (mut store, addr) = serve(
        &metrics,
        with_stats(plain.clone(), standard_stats()),
        "inbound|9080||",
        app().await,
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    get_on(&mut stream).await;
    let dropped = PluginConfig {
        metrics: vec![MetricConfig {
            name: weft_xds::stats::REQUESTS_TOTAL.into(),
            drop: true,
            ..Default::default()
        }],
        ..standard_stats()
    };
    // The same listener (its socket kept), now dropping the request count.
    store
        .apply_response(type_url::LISTENER, "l2", vec![with_stats(plain, dropped)])
        .unwrap();
    assert_eq!(store.local_addr("l"), Some(addr), "the socket is kept");
    get_on(&mut stream).await;
    let text = text(&metrics);
    assert_eq!(
        value(&text, "istio_requests_total", &[]),
        Some(1.0),
        "the second request, on the same connection, was not counted: {text}"
    );
    // Both requests' durations: two series inside (one per settings) with the same labels,
    // one line.
    assert_eq!(
        value(&text, "istio_request_duration_milliseconds_count", &[]),
        Some(2.0),
        "{text}"
    );
}
