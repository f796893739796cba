//! Request mirroring in process: the shadow's authority and body, bodies over the 1 MiB record
//! not mirrored, and a mirror target that never answers leaving the caller untouched.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

/// What the mirror target received: method, Host, path, body length.
type Shadow = (String, String, String, usize);

/// An upstream that reads every request whole, reports it and answers `name`; `hang`: it never
/// answers.
async fn recording(
    name: &'static str,
    hang: bool,
) -> (SocketAddr, mpsc::UnboundedReceiver<Shadow>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let host = parts
                            .headers
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let _ = tx.send((
                            parts.method.to_string(),
                            host,
                            parts.uri.path().to_string(),
                            body.len(),
                        ));
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            name.as_bytes(),
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn mirrored_route() -> rt::Route {
    let mut route = to_cluster(prefix("/"), "reviews", None);
    if let Some(rt::route::Action::Route(action)) = &mut route.action {
        action.request_mirror_policies = vec![rt::route_action::RequestMirrorPolicy {
            cluster: "shadow".into(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: 100,
                    denominator: DenominatorType::Hundred as i32,
                }),
                runtime_key: String::new(),
            }),
            ..Default::default()
        }];
    }
    route
}

async fn post(proxy: SocketAddr, path: &str, body: Vec<u8>) -> (u16, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::post(format!("http://{proxy}{path}"))
        .header("host", "reviews:9080")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("the caller is answered in time")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn setup(hang: bool) -> (Proxy, mpsc::UnboundedReceiver<Shadow>) {
    let (reviews, _) = recording("reviews", false).await;
    let (shadow, rx) = recording("shadow", hang).await;
    let mut proxy = Proxy::start();
    proxy.configure(
        &[
            ("reviews", false, vec![reviews]),
            ("shadow", false, vec![shadow]),
        ],
        vec![vhost("reviews", &["reviews:9080"], vec![mirrored_route()])],
    );
    (proxy, rx)
}

#[tokio::test]
async fn shadows_carry_the_body_and_the_shadow_authority_and_large_bodies_are_not_mirrored() {
    let (proxy, mut rx) = setup(false).await;
    let (status, body) = post(proxy.addr, "/orders", vec![b'x'; 10_000]).await;
    assert_eq!(status, 200);
    assert!(
        body == "reviews",
        "the caller gets the real upstream: {body}"
    );
    let shadow = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a shadow")
        .expect("a shadow");
    assert_eq!(
        shadow,
        (
            "POST".to_string(),
            "reviews-shadow:9080".to_string(),
            "/orders".to_string(),
            10_000
        )
    );
    // Over the 1 MiB record: served, not mirrored; the next small request is.
    let before = weft_proxy::http::mirror::stats().dropped_body;
    let (status, _) = post(proxy.addr, "/big", vec![b'y'; (1 << 20) + 1]).await;
    assert_eq!(status, 200);
    let (status, _) = post(proxy.addr, "/small", vec![b'z'; 10]).await;
    assert_eq!(status, 200);
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a shadow")
        .expect("a shadow");
    assert_eq!(next.2, "/small", "the large body was not mirrored");
    assert!(weft_proxy::http::mirror::stats().dropped_body > before);
}

#[tokio::test]
async fn a_mirror_that_never_answers_does_not_hold_the_caller() {
    let (proxy, mut rx) = setup(true).await;
    for i in 0..20 {
        let (status, body) = post(proxy.addr, &format!("/{i}"), b"payload".to_vec()).await;
        assert_eq!(status, 200, "{body}");
    }
    // Every shadow reached the target, which holds them all.
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a shadow")
            .expect("a shadow");
    }
    assert!(weft_proxy::http::mirror::stats().in_flight >= 20);
}
