//! The injected faults and the request counters end to end on loopback: an app serves on an
//! ephemeral port and is asked over real sockets, HTTP/1.1 and h2c, what a mesh would see
//! (failure statuses, TCP and stream resets, hung and slow answers, the stats endpoint).

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::{Instant, timeout},
};

use super::{App, Config, Faults, Identity, Role};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `role` with `faults` on an ephemeral loopback port, for as long as the test runs.
async fn start_role(role: Role, faults: Faults) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App {
        role,
        identity: Identity {
            service: role.name().to_owned(),
            version: "v1".to_owned(),
        },
        config: Config::default(),
        faults: Faults {
            fault_seed: faults.fault_seed.or(Some(1)),
            ..faults
        },
    };
    tokio::spawn(super::serve(listener, app));
    addr
}

async fn start(faults: Faults) -> SocketAddr {
    start_role(Role::Echo, faults).await
}

/// An HTTP/1.1 connection to `addr`.
async fn h1(addr: SocketAddr) -> http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// An h2c (prior knowledge) connection to `addr`.
async fn h2c(addr: SocketAddr) -> http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

fn request(method: Method, addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap()
}

/// A GET on an HTTP/1.1 connection, its response head or the connection's error.
async fn send(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> hyper::Result<Response<Incoming>> {
    sender.ready().await?;
    timeout(
        TIMEOUT,
        sender.send_request(request(Method::GET, addr, path)),
    )
    .await
    .expect("an answer in time")
}

/// A GET on a new connection that must answer; its status and body.
async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let response = send(&mut h1(addr).await, addr, path).await.unwrap();
    let status = response.status();
    (status, text(response).await)
}

async fn text(response: Response<Incoming>) -> String {
    let body = timeout(TIMEOUT, response.into_body().collect())
        .await
        .expect("a body in time")
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The app's counters.
async fn stats(addr: SocketAddr) -> Value {
    let (status, body) = get(addr, "/__demo/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the counters until `counter` reaches `want`, for at most [`TIMEOUT`].
async fn await_counter(addr: SocketAddr, counter: &str, want: u64) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stats = stats(addr).await;
        if stats[counter] == want {
            return stats;
        }
        assert!(Instant::now() < deadline, "{counter} never {want}: {stats}");
        tokio::task::yield_now().await;
    }
}

fn counters(total: u64, ok: u64, failed: u64, reset: u64, hung: u64, delayed: u64) -> Value {
    json!({"total": total, "ok": ok, "failed": failed, "reset": reset, "hung": hung, "delayed": delayed})
}

/// Sends a GET over a raw TCP connection; what came back before the connection ended, and
/// how it ended.
async fn raw_get(addr: SocketAddr, path: &str) -> (Vec<u8>, std::io::Result<usize>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: echo\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let end = timeout(TIMEOUT, stream.read_to_end(&mut received))
        .await
        .expect("the connection ends in time");
    (received, end)
}

#[tokio::test]
async fn fail_ratio_one_answers_the_fail_status() {
    let addr = start(Faults {
        fail_ratio: 1.0,
        fail_status: StatusCode::TOO_MANY_REQUESTS,
        ..Faults::default()
    })
    .await;
    let mut sender = h1(addr).await;
    for _ in 0..3 {
        let response = send(&mut sender, addr, "/").await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["x-weft-service"], "echo");
        assert_eq!(response.headers()["x-weft-version"], "v1");
        assert_eq!(
            response.headers()["x-weft-instance"],
            addr.to_string().as_str()
        );
        assert_eq!(text(response).await, "echo v1 injected failure 429\n");
    }
    // status=N asks for its own answer, never the injected failure.
    let (status, body) = get(addr, "/?status=200").await;
    assert_eq!(
        (status, body.starts_with("echo v1 host=")),
        (StatusCode::OK, true)
    );
    assert_eq!(stats(addr).await, counters(4, 1, 3, 0, 0, 0));
}

#[tokio::test]
async fn no_faults_answers_and_names_the_instance() {
    let addr = start(Faults::default()).await;
    let response = send(&mut h1(addr).await, addr, "/hello?delay_ms=0")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-weft-instance"],
        addr.to_string().as_str()
    );
    let body = text(response).await;
    assert_eq!(
        body,
        format!("echo v1 host={addr} path=/hello protocol=HTTP/1.1 received=0\n")
    );
    let (status, _) = get(addr, "/?status=503").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stats(addr).await, counters(2, 1, 1, 0, 0, 0));
}

#[tokio::test]
async fn reset_ratio_one_resets_http1_connections_with_a_rst() {
    let addr = start(Faults {
        reset_ratio: 1.0,
        fail_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    for _ in 0..2 {
        let (received, end) = raw_get(addr, "/").await;
        assert!(
            received.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
        let error = end.expect_err("a reset, not an orderly close");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    }
    // A hyper client sees a connection error, no response.
    let answer = send(&mut h1(addr).await, addr, "/").await;
    assert!(answer.is_err(), "{answer:?}");
    // The stats endpoint is never reset, and counts nothing of its own.
    assert_eq!(stats(addr).await, counters(3, 0, 0, 3, 0, 0));
    // reset=0 spares one request from the flag.
    let (status, _) = get(addr, "/?reset=0").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "fail still applies"
    );
}

#[tokio::test]
async fn reset_query_resets_one_request() {
    let addr = start(Faults::default()).await;
    let (received, end) = raw_get(addr, "/?reset=1").await;
    assert!(received.is_empty());
    assert_eq!(end.expect_err("reset").kind(), ErrorKind::ConnectionReset);
    let (status, _) = get(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats(addr).await, counters(2, 1, 0, 1, 0, 0));
}

#[tokio::test]
async fn http2_resets_the_stream_not_the_connection() {
    let addr = start(Faults::default()).await;
    let mut sender = h2c(addr).await;
    let error = timeout(
        TIMEOUT,
        sender.send_request(request(Method::GET, addr, "/?reset=1")),
    )
    .await
    .expect("in time")
    .expect_err("a reset, not a response");
    let reason = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason);
    assert_eq!(reason, Some(h2::Reason::INTERNAL_ERROR), "{error:?}");
    // The same connection still answers.
    sender.ready().await.unwrap();
    let response = sender
        .send_request(request(Method::GET, addr, "/"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(text(response).await.contains("protocol=HTTP/2.0"));
    assert_eq!(stats(addr).await, counters(2, 1, 0, 1, 0, 0));
}

#[tokio::test]
async fn a_ratio_fails_its_share_of_requests() {
    let addr = start(Faults {
        fail_ratio: 0.3,
        fault_seed: Some(2024),
        ..Faults::default()
    })
    .await;
    let mut sender = h1(addr).await;
    let n: u64 = 2000;
    let mut failed: u64 = 0;
    for _ in 0..n {
        let response = send(&mut sender, addr, "/").await.unwrap();
        let status = response.status();
        text(response).await;
        match status {
            StatusCode::SERVICE_UNAVAILABLE => failed += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!((520..=680).contains(&failed), "{failed} of {n} failed");
    assert_eq!(stats(addr).await, counters(n, n - failed, failed, 0, 0, 0));
}

#[tokio::test]
async fn hang_never_answers() {
    let addr = start(Faults::default()).await;
    let mut sender = h1(addr).await;
    sender.ready().await.unwrap();
    let answer = timeout(
        Duration::from_millis(200),
        sender.send_request(request(Method::GET, addr, "/?hang=1")),
    )
    .await;
    assert!(answer.is_err(), "answered: {answer:?}");
    await_counter(addr, "hung", 1).await;
    // A hung request's client going away does not disturb the app.
    drop(sender);
    let (status, _) = get(addr, "/?hang=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats(addr).await, counters(2, 1, 0, 0, 1, 0));
}

#[tokio::test]
async fn hang_ratio_one_never_answers_over_http2_either() {
    let addr = start(Faults {
        hang_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let mut sender = h2c(addr).await;
    let answer = timeout(
        Duration::from_millis(200),
        sender.send_request(request(Method::GET, addr, "/")),
    )
    .await;
    assert!(answer.is_err(), "answered: {answer:?}");
    await_counter(addr, "hung", 1).await;
}

#[tokio::test]
async fn slow_body_arrives_in_chunks() {
    let addr = start(Faults::default()).await;
    let gap = Duration::from_millis(100);
    let sent = Instant::now();
    let response = send(&mut h1(addr).await, addr, "/?slow_body_ms=100")
        .await
        .unwrap();
    let head_at = sent.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = timeout(TIMEOUT, body.frame()).await.expect("in time") {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push(data);
        }
    }
    let done_at = sent.elapsed();
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(done_at >= gap * 3, "whole body after {done_at:?}");
    assert!(head_at < done_at, "head {head_at:?}, body {done_at:?}");
    let body: Vec<u8> = chunks.concat();
    assert!(body.starts_with(b"echo v1 host="), "{body:?}");
    assert_eq!(stats(addr).await, counters(1, 1, 0, 0, 0, 0));
}

#[tokio::test]
async fn delay_ratio_one_waits_and_counts() {
    let delay = Duration::from_millis(150);
    let addr = start(Faults {
        delay_ratio: 1.0,
        delay_ms: 150,
        ..Faults::default()
    })
    .await;
    let sent = Instant::now();
    let (status, _) = get(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sent.elapsed() >= delay,
        "answered after {:?}",
        sent.elapsed()
    );
    // delay_ms=0 spares one request from the flag.
    get(addr, "/?delay_ms=0").await;
    assert_eq!(stats(addr).await, counters(2, 2, 0, 0, 0, 1));
}

#[tokio::test]
async fn stats_count_and_zero() {
    let addr = start(Faults::default()).await;
    get(addr, "/").await;
    get(addr, "/?status=500").await;
    get(addr, "/?delay_ms=1").await;
    let (_, end) = raw_get(addr, "/?reset=1").await;
    assert!(end.is_err());
    let counted = counters(4, 2, 1, 1, 0, 1);
    assert_eq!(stats(addr).await, counted);
    let mut sender = h1(addr).await;
    sender.ready().await.unwrap();
    let zeroed = sender
        .send_request(request(Method::POST, addr, "/__demo/stats/reset"))
        .await
        .unwrap();
    assert_eq!(zeroed.status(), StatusCode::OK);
    let held: Value = serde_json::from_str(&text(zeroed).await).unwrap();
    assert_eq!(held, counted, "the reset answers what the counters held");
    assert_eq!(stats(addr).await, counters(0, 0, 0, 0, 0, 0));
    let (status, _) = get(addr, "/__demo/stats/reset").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(stats(addr).await, counters(0, 0, 0, 0, 0, 0));
}

#[tokio::test]
async fn bookinfo_roles_take_the_flags_but_not_the_query() {
    let addr = start_role(
        Role::Ratings,
        Faults {
            fail_ratio: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let (status, body) = get(addr, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, "ratings v1 injected failure 503\n");
    let addr = start_role(Role::Ratings, Faults::default()).await;
    let (status, body) = get(addr, "/health?reset=1&hang=1&status=500").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stats(addr).await, counters(1, 1, 0, 0, 0, 0));
}
