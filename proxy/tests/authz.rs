//! In-process authorization tests: an inbound listener with istiod's jwt_authn and RBAC
//! (DENY, ALLOW, LOG) filters, a real upstream on 127.0.0.1 that records what reaches it.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::authz::{inbound_filters, jwks, listener_with_filters, token};
use common::*;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_proxy::ConfigStore;
use weft_xds::type_url;

/// An upstream that counts requests and answers with the headers the filters may touch.
async fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let h = |name: &str| {
                        req.headers()
                            .get(name)
                            .map_or("-", |v| v.to_str().unwrap_or("?"))
                            .to_string()
                    };
                    let body = format!(
                        "authorization={} payload={}",
                        h("authorization"),
                        h("x-jwt-payload")
                    );
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

struct Inbound {
    store: ConfigStore,
    addr: SocketAddr,
}

/// A store with listener "inbound" on 127.0.0.1 carrying `filters`, routing everything to `app`.
fn inbound(filters: Vec<hcm::HttpFilter>, app: SocketAddr) -> Inbound {
    let mut store = ConfigStore::new();
    let any_addr = "127.0.0.1:0".parse().unwrap();
    store
        .apply_response(
            type_url::LISTENER,
            "l1",
            vec![listener_with_filters(
                "inbound",
                any_addr,
                "inbound|9080",
                filters,
            )],
        )
        .unwrap();
    let addr = store.local_addr("inbound").unwrap();
    route_inbound_to(&mut store, app);
    Inbound { store, addr }
}

struct Reply {
    status: u16,
    flags: String,
    challenge: String,
    body: String,
}

async fn send(addr: SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> Reply {
    let client = h1_client();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", "reviews:9080");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, flags, challenge) = (
        resp.status().as_u16(),
        header("x-weft-response-flags"),
        header("www-authenticate"),
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        flags,
        challenge,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn deny_allow_log_and_jwt_filters_decide_before_the_upstream() {
    let (app, upstream_requests) = echo_upstream().await;
    let proxy = inbound(inbound_filters(&jwks()), app);
    let count = || upstream_requests.load(Ordering::SeqCst);
    let alice = token("alice", 0);

    // ALLOW: GET by anyone.
    let r = send(proxy.addr, "GET", "/reviews/1", None).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "authorization=- payload=-")
    );
    assert_eq!(count(), 1);

    // DENY wins over ALLOW, before the upstream.
    for bearer in [None, Some(alice.as_str())] {
        let r = send(proxy.addr, "GET", "/admin/users", bearer).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.body, "RBAC: access denied");
        assert_eq!(r.flags, "RBAC");
    }
    assert_eq!(count(), 1, "a denied request never reaches the upstream");

    // ALLOW: no policy matches a POST without a token.
    let r = send(proxy.addr, "POST", "/reviews", None).await;
    assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(count(), 1);

    // With alice's token the requestPrincipals policy allows it; the token is stripped and
    // its payload forwarded.
    let r = send(proxy.addr, "POST", "/reviews", Some(&alice)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let payload = alice.split('.').nth(1).unwrap();
    assert_eq!(r.body, format!("authorization=- payload={payload}"));
    assert_eq!(count(), 2);

    // A bad, expired or unknown-key token: 401 with Envoy's body and challenge.
    let tampered = format!("{}x", &alice[..alice.len() - 1]);
    let expired = token("alice", -7200);
    for bad in [tampered.as_str(), expired.as_str(), "not.a.jwt"] {
        let r = send(proxy.addr, "GET", "/reviews/1?x=1", Some(bad)).await;
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(r.body, "Jwt verification fails");
        assert_eq!(r.flags, "", "no response flag for a JWT failure");
        assert_eq!(
            r.challenge,
            r#"Bearer realm="http://reviews:9080/reviews/1?x=1", error="invalid_token""#
        );
    }
    assert_eq!(count(), 2);

    // LOG never denies.
    let r = send(proxy.addr, "GET", "/audited/page", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(count(), 3);

    // Over h2c too.
    let (status, _, _) = get(&h2_client(), proxy.addr, "reviews:9080", "/admin", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(count(), 3);
}

#[tokio::test]
async fn a_listener_with_an_unknown_filter_is_nacked_naming_it() {
    let (app, _) = echo_upstream().await;
    let mut proxy = inbound(inbound_filters(&jwks()), app);
    let mut filters = inbound_filters(&jwks());
    filters.insert(
        1,
        hcm::HttpFilter {
            name: "envoy.filters.http.ext_proc".into(),
            ..Default::default()
        },
    );
    let any_addr = "127.0.0.1:0".parse().unwrap();
    let nack = proxy
        .store
        .apply_response(
            type_url::LISTENER,
            "l2",
            vec![listener_with_filters(
                "inbound",
                any_addr,
                "inbound|9080",
                filters,
            )],
        )
        .expect_err("NACK");
    assert!(
        nack.contains("envoy.filters.http.ext_proc") && nack.contains("http_filters[1]"),
        "{nack}"
    );
    // The previous listener keeps serving with its filters.
    assert_eq!(send(proxy.addr, "GET", "/ok", None).await.status, 200);
    assert_eq!(send(proxy.addr, "GET", "/admin", None).await.status, 403);
}
