//! Retries and faults in process: which attempts are retried, where they go, what bodies they
//! carry, and what the caller sees. Real upstreams on 127.0.0.1 that count what reaches them.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::google::protobuf::{Struct, UInt32Value, Value, value::Kind};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_xds::contract::{PREVIOUS_HOSTS, RETRY_METADATA};

/// An upstream that answers `status` to every request and counts them, with the bytes of the
/// request bodies it received.
#[derive(Default)]
struct Counter {
    requests: AtomicUsize,
    body_bytes: AtomicUsize,
}

async fn failing_upstream(status: StatusCode) -> (SocketAddr, Arc<Counter>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::new(Counter::default());
    let seen = counter.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        seen.body_bytes.fetch_add(body.len(), Ordering::SeqCst);
                        let mut resp =
                            Response::new(Full::new(Bytes::from(format!("{} bytes", body.len()))));
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
    (addr, counter)
}

/// An address nothing listens on (connections are refused).
async fn refusing_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn retry_route(retry_on: &str, retries: u32, istio_default: bool) -> rt::Route {
    let mut route = to_cluster(prefix("/"), "c", None);
    if let Some(rt::route::Action::Route(action)) = &mut route.action {
        action.retry_policy = Some(rt::RetryPolicy {
            retry_on: retry_on.into(),
            num_retries: Some(UInt32Value { value: retries }),
            retriable_status_codes: vec![503],
            retry_host_predicate: vec![rt::retry_policy::RetryHostPredicate {
                name: PREVIOUS_HOSTS.into(),
                config_type: None,
            }],
            host_selection_retry_max_attempts: 5,
            retry_back_off: Some(rt::retry_policy::RetryBackOff {
                base_interval: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 0,
                    nanos: 1_000_000,
                }),
                max_interval: None,
            }),
            ..Default::default()
        });
    }
    if istio_default {
        route.metadata = Some(envoy_types::pb::envoy::config::core::v3::Metadata {
            filter_metadata: [(
                RETRY_METADATA.to_string(),
                Struct {
                    fields: [(
                        "non_idempotent".to_string(),
                        Value {
                            kind: Some(Kind::StringValue("before_send".into())),
                        },
                    )]
                    .into_iter()
                    .collect(),
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        });
    }
    route
}

async fn send(
    proxy: SocketAddr,
    method: &str,
    body: &'static [u8],
) -> (StatusCode, String, String) {
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header("host", "svc")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let flags = resp
        .headers()
        .get("x-weft-response-flags")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, flags, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn istios_default_policy_retries_a_get_but_not_a_post_the_upstream_answered() {
    let (upstream, counter) = failing_upstream(StatusCode::SERVICE_UNAVAILABLE).await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("c", false, vec![upstream])],
        vec![vhost(
            "all",
            &["*"],
            vec![retry_route(
                "connect-failure,refused-stream,retriable-status-codes",
                2,
                true,
            )],
        )],
    );
    let (status, _, _) = send(proxy.addr, "GET", b"").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the last attempt's answer"
    );
    assert_eq!(
        counter.requests.load(Ordering::SeqCst),
        3,
        "1 attempt + 2 retries"
    );

    counter.requests.store(0, Ordering::SeqCst);
    let (status, _, _) = send(proxy.addr, "POST", b"order #1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        counter.requests.load(Ordering::SeqCst),
        1,
        "a POST the upstream answered is never re-sent under the default policy"
    );

    // PUT and DELETE are idempotent: retried.
    counter.requests.store(0, Ordering::SeqCst);
    send(proxy.addr, "PUT", b"x").await;
    assert_eq!(counter.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_post_is_retried_when_it_never_reached_the_upstream_and_when_the_user_asks() {
    let (upstream, counter) = failing_upstream(StatusCode::OK).await;
    let refused = refusing_address().await;
    let mut proxy = Proxy::start();
    // Two endpoints, one refusing connections: a POST that met the refusing one goes to the
    // other (it never reached anything).
    proxy.configure(
        &[("c", false, vec![refused, upstream])],
        vec![vhost(
            "all",
            &["*"],
            vec![retry_route(
                "connect-failure,retriable-status-codes",
                2,
                true,
            )],
        )],
    );
    for _ in 0..20 {
        let (status, _, body) = send(proxy.addr, "POST", b"hello").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, "5 bytes");
    }
    assert_eq!(counter.requests.load(Ordering::SeqCst), 20);

    // The user's own policy: a POST answered 503 is re-sent, its body replayed whole each time.
    let (failing, counter) = failing_upstream(StatusCode::SERVICE_UNAVAILABLE).await;
    proxy.configure(
        &[("c", false, vec![failing])],
        vec![vhost("all", &["*"], vec![retry_route("5xx", 3, false)])],
    );
    let (status, flags, _) = send(proxy.addr, "POST", b"0123456789").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(flags, "", "a proxied answer carries no local-reply flag");
    assert_eq!(counter.requests.load(Ordering::SeqCst), 4);
    assert_eq!(
        counter.body_bytes.load(Ordering::SeqCst),
        40,
        "every attempt carried the whole body"
    );
}

#[tokio::test]
async fn connect_failures_exhaust_retries_with_urx() {
    let refused = refusing_address().await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("c", false, vec![refused])],
        vec![vhost(
            "all",
            &["*"],
            vec![retry_route("connect-failure", 2, false)],
        )],
    );
    let (status, flags, _) = send(proxy.addr, "GET", b"").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(flags, "UF,URX");
}

#[tokio::test]
async fn without_a_policy_nothing_is_retried() {
    let (upstream, counter) = failing_upstream(StatusCode::SERVICE_UNAVAILABLE).await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("c", false, vec![upstream])],
        vec![vhost(
            "all",
            &["*"],
            vec![to_cluster(prefix("/"), "c", None)],
        )],
    );
    send(proxy.addr, "GET", b"").await;
    assert_eq!(counter.requests.load(Ordering::SeqCst), 1);
}

/// A route to cluster `c` whose fault delays every request by 1 ms and, with `abort`, answers
/// it with that status.
fn faulty_route(abort: Option<u32>) -> rt::Route {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
    use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
    let all = || {
        Some(FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        })
    };
    let config = fault::HttpFault {
        delay: Some(common_fault::FaultDelay {
            fault_delay_secifier: Some(common_fault::fault_delay::FaultDelaySecifier::FixedDelay(
                envoy_types::pb::google::protobuf::Duration {
                    seconds: 0,
                    nanos: 1_000_000,
                },
            )),
            percentage: all(),
        }),
        abort: abort.map(|status| fault::FaultAbort {
            error_type: Some(fault::fault_abort::ErrorType::HttpStatus(status)),
            percentage: all(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut route = to_cluster(prefix("/"), "c", None);
    route
        .typed_per_filter_config
        .insert("envoy.filters.http.fault".into(), any(&config));
    route
}

#[tokio::test]
async fn a_delayed_request_that_fails_says_both_flags() {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
    let fault_filter = hcm::HttpFilter {
        name: "envoy.filters.http.fault".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault::default(),
        ))),
        ..Default::default()
    };
    let mut proxy = Proxy::start_with(weft_proxy::ConfigStore::new(), |m| {
        m.http_filters.insert(0, fault_filter);
    });
    let refused = refusing_address().await;
    // Delayed, then aborted by the same fault.
    proxy.configure(
        &[("c", false, vec![refused])],
        vec![vhost("all", &["*"], vec![faulty_route(Some(418))])],
    );
    let (status, flags, _) = send(proxy.addr, "GET", b"").await;
    assert_eq!((status.as_u16(), flags.as_str()), (418, "DI,FI"));
    // Delayed, then the upstream refuses the connection.
    proxy.configure(
        &[("c", false, vec![refused])],
        vec![vhost("all", &["*"], vec![faulty_route(None)])],
    );
    let (status, flags, _) = send(proxy.addr, "GET", b"").await;
    assert_eq!((status.as_u16(), flags.as_str()), (503, "UF,DI"));
}
