//! Tracing through a real listener: a connection manager with Envoy's Zipkin tracer as Istio
//! configures it reports each request's span as Zipkin v2 JSON to a collector reached through
//! its cluster, the app getting the proxy's span as its parent; a connection manager without
//! `tracing` (Istio's output for `disableSpanReporting: true`) passes the caller's trace
//! headers through untouched and reports nothing.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use envoy_types::pb::envoy::config::trace::v3 as trace;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::r#type::v3::Percent;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::Value;
use weft_proxy::ConfigStore;
use weft_proxy::trace::{Settings, Tracer};

const COLLECTOR: &str = "outbound|9411||zipkin.istio-system.svc.cluster.local";

/// One request a [`recorder`] received.
#[derive(Debug, Clone)]
struct Received {
    method: http::Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A server (HTTP/1.1 and h2c) that records every request and answers `status`.
async fn recorder(status: StatusCode) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let (head, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        seen.lock().push(Received {
                            method: head.method,
                            path: head.uri.path().to_string(),
                            headers: head.headers,
                            body,
                        });
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

/// The HCM `tracing` Istio writes for a `zipkin` extension provider.
fn zipkin_tracing() -> hcm::http_connection_manager::Tracing {
    let config = trace::ZipkinConfig {
        collector_cluster: COLLECTOR.into(),
        collector_endpoint: "/api/v2/spans".into(),
        collector_hostname: "zipkin.istio-system.svc.cluster.local".into(),
        collector_endpoint_version: trace::zipkin_config::CollectorEndpointVersion::HttpJson as i32,
        trace_id_128bit: true,
        shared_span_context: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    };
    hcm::http_connection_manager::Tracing {
        random_sampling: Some(Percent { value: 100.0 }),
        provider: Some(trace::tracing::Http {
            name: "envoy.tracers.zipkin".into(),
            config_type: Some(trace::tracing::http::ConfigType::TypedConfig(any(&config))),
        }),
        ..Default::default()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn zipkin_spans_reach_the_collector_through_its_cluster() {
    let (app, app_log) = recorder(StatusCode::OK).await;
    let (zipkin, collector) = recorder(StatusCode::ACCEPTED).await;
    let (tracer, task) = Tracer::new(Settings {
        flush_interval: Duration::from_millis(50),
        node_id: "router~10.0.0.1~gateway-1.default~default.svc.cluster.local".into(),
        service_cluster: "gateway.default".into(),
    });
    let store = ConfigStore::new().with_tracer(tracer.clone());
    // A tag made when the span ends, from what an access log would print (Telemetry
    // `customTags[].formatter`); a value the request lacks is empty, not `-`.
    let mut tracing = zipkin_tracing();
    tracing
        .custom_tags
        .push(envoy_types::pb::envoy::r#type::tracing::v3::CustomTag {
            tag: "outcome".into(),
            r#type: Some(
                envoy_types::pb::envoy::r#type::tracing::v3::custom_tag::Type::Value(
                    "%UPSTREAM_CLUSTER%/%RESPONSE_CODE%/%REQ(X-MISSING)%".into(),
                ),
            ),
        });
    let mut proxy = Proxy::start_with(store, |m| m.tracing = Some(tracing));
    tokio::spawn(task.run(proxy.store.subscribe()));
    proxy.configure(
        &[("app", false, vec![app]), (COLLECTOR, false, vec![zipkin])],
        vec![vhost(
            "app",
            &["app"],
            vec![to_cluster(prefix("/"), "app", None)],
        )],
    );
    let (status, _, _) = get(
        &h1_client(),
        proxy.addr,
        "app",
        "/hello",
        &[("x-request-id", "zipkin-1")],
    )
    .await;
    assert_eq!(status, 200);
    eventually("a span at the collector", Duration::from_secs(10), || {
        !collector.lock().is_empty()
    })
    .await;
    let posted = collector.lock()[0].clone();
    assert_eq!(posted.method, http::Method::POST);
    assert_eq!(posted.path, "/api/v2/spans");
    assert_eq!(
        header(&posted.headers, "host"),
        Some("zipkin.istio-system.svc.cluster.local")
    );
    assert_eq!(
        header(&posted.headers, "content-type"),
        Some("application/json")
    );
    let spans: Vec<Value> = serde_json::from_slice(&posted.body).expect("a JSON span list");
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    // The app's request carried this proxy's span as its parent.
    let sent = app_log.lock()[0].headers.clone();
    let traceparent: Vec<&str> = header(&sent, "traceparent")
        .expect("traceparent to the app")
        .split('-')
        .collect();
    assert_eq!(span["traceId"], traceparent[1], "{span:#}");
    assert_eq!(span["id"], traceparent[2], "{span:#}");
    assert_eq!(header(&sent, "x-b3-spanid"), Some(traceparent[2]));
    assert_eq!(span.get("parentId"), None, "a root span: {span:#}");
    assert_eq!(span["kind"], "SERVER");
    assert_eq!(span["name"], "app/hello");
    assert_eq!(span["localEndpoint"]["serviceName"], "gateway.default");
    assert_eq!(span["tags"]["guid:x-request-id"], "zipkin-1");
    assert_eq!(span["tags"]["http.status_code"], "200");
    assert_eq!(span["tags"]["upstream_cluster"], "app");
    assert_eq!(span["tags"]["outcome"], "app/200/", "{span:#}");
    assert!(
        span["timestamp"].as_u64().is_some_and(|t| t > 0),
        "{span:#}"
    );
    eventually("the export counted", Duration::from_secs(5), || {
        tracer
            .stats
            .exported
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
}

#[tokio::test]
async fn spans_a_zipkin_collector_refuses_are_counted_failed() {
    let (app, _) = recorder(StatusCode::OK).await;
    let (zipkin, collector) = recorder(StatusCode::BAD_REQUEST).await;
    let (tracer, task) = Tracer::new(Settings {
        flush_interval: Duration::from_millis(50),
        node_id: "n".into(),
        service_cluster: "app.default".into(),
    });
    let store = ConfigStore::new().with_tracer(tracer.clone());
    let mut proxy = Proxy::start_with(store, |m| m.tracing = Some(zipkin_tracing()));
    tokio::spawn(task.run(proxy.store.subscribe()));
    proxy.route_all(
        &[("app", false, vec![app]), (COLLECTOR, false, vec![zipkin])],
        &["app"],
        "app",
    );
    let (status, _, _) = get(&h1_client(), proxy.addr, "app", "/", &[]).await;
    assert_eq!(status, 200, "the request is not the export's business");
    let ordering = std::sync::atomic::Ordering::Relaxed;
    eventually("the refused span counted", Duration::from_secs(10), || {
        tracer.stats.failed.load(ordering) == 1
    })
    .await;
    assert_eq!(collector.lock().len(), 1, "sent once, never retried");
    assert_eq!(tracer.stats.exported.load(ordering), 0);
}

#[tokio::test]
async fn without_tracing_trace_headers_pass_untouched_and_nothing_is_reported() {
    let (app, app_log) = recorder(StatusCode::OK).await;
    // A tracer without an exporter: a span handed to it would be counted as dropped.
    let tracer = Tracer::detached();
    let store = ConfigStore::new().with_tracer(tracer.clone());
    let mut proxy = Proxy::start_with(store, |_| {});
    proxy.route_all(&[("app", false, vec![app])], &["app"], "app");
    let context = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "1"),
    ];
    let client = h1_client();
    let (status, _, _) = get(&client, proxy.addr, "app", "/with", &context).await;
    assert_eq!(status, 200);
    // Without a context, none is made up.
    let (status, _, _) = get(&client, proxy.addr, "app", "/without", &[]).await;
    assert_eq!(status, 200);
    let log = app_log.lock().clone();
    assert_eq!(log.len(), 2);
    for (name, value) in context {
        assert_eq!(header(&log[0].headers, name), Some(value), "{name}");
    }
    assert_eq!(header(&log[0].headers, "x-b3-parentspanid"), None);
    for name in ["traceparent", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"] {
        assert_eq!(header(&log[1].headers, name), None, "{name}");
    }
    let stats = &tracer.stats;
    let ordering = std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            stats.exported.load(ordering),
            stats.dropped.load(ordering),
            stats.failed.load(ordering)
        ),
        (0, 0, 0),
        "no span was made"
    );
}
