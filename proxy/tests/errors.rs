//! Error attribution as Envoy does it, in process: a client's malformed or truncated request body
//! is `400 DPE` (and the upstream request is aborted), an upstream's malformed response `503
//! UPE`, an upstream reset `503 UR`, a close before headers `503 UC`, and the stream idle
//! timeout `504`/`408 SI`. Raw TCP on both sides, so the bytes are exactly the broken ones.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weft_proxy::ConfigStore;
use weft_xds::type_url;

const LIMIT: Duration = Duration::from_secs(10);

/// A proxy whose one listener's connection manager is `common::listener`'s, changed by `hcm`,
/// routing everything to one cluster `c` (`h2`: h2c upstream) with route timeout `timeout`.
struct TestProxy {
    _store: ConfigStore,
    addr: SocketAddr,
}

impl TestProxy {
    fn start(
        upstream: SocketAddr,
        h2: bool,
        timeout: Option<Duration>,
        hcm: impl FnOnce(&mut hcm::HttpConnectionManager),
    ) -> Self {
        let mut store = ConfigStore::new();
        let apply = |store: &mut ConfigStore, url: &str, resources: Vec<Any>| {
            store
                .apply_response(url, "v1", resources)
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        };
        apply(
            &mut store,
            type_url::LISTENER,
            vec![listener_with("127.0.0.1:0".parse().unwrap(), hcm)],
        );
        apply(&mut store, type_url::CLUSTER, vec![cluster("c", h2)]);
        apply(
            &mut store,
            type_url::ENDPOINT,
            vec![endpoints("c", &[upstream])],
        );
        apply(
            &mut store,
            type_url::ROUTE,
            vec![route_config(
                "outbound",
                vec![vhost(
                    "all",
                    &["*"],
                    vec![to_cluster(prefix("/"), "c", timeout)],
                )],
            )],
        );
        let addr = store.local_addr("outbound").unwrap();
        Self {
            _store: store,
            addr,
        }
    }
}

fn listener_with(addr: SocketAddr, change: impl FnOnce(&mut hcm::HttpConnectionManager)) -> Any {
    let mut l =
        lds::Listener::decode(listener("outbound", addr, "outbound").value.as_slice()).unwrap();
    let Some(lds::filter::ConfigType::TypedConfig(any)) =
        &mut l.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config");
    };
    let mut m = hcm::HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    change(&mut m);
    any.value = m.encode_to_vec();
    common::any(&l)
}

fn pb(d: Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// A response as a raw client reads it.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    /// The body bytes read before the connection ended or the body was complete.
    body: Vec<u8>,
    /// The connection ended (EOF or error) before a complete response arrived.
    broken: bool,
}

impl RawResponse {
    fn flags(&self) -> &str {
        header(&self.head, "x-weft-response-flags").unwrap_or("")
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one response (head, then a content-length body, or whatever arrives until EOF).
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("response head in time")
            .unwrap_or(0);
        assert!(
            n > 0,
            "connection ended before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head:?}"));
    let mut body = buf[head_end..].to_vec();
    let length: Option<usize> = header(&head, "content-length").and_then(|v| v.parse().ok());
    let mut broken = false;
    loop {
        if length.is_some_and(|l| body.len() >= l) {
            break;
        }
        match tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("response body in time")
        {
            Ok(0) | Err(_) => {
                broken = length.is_some() || header(&head, "transfer-encoding").is_some();
                break;
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(l) = length {
        broken |= body.len() < l;
    }
    RawResponse {
        status,
        head,
        body,
        broken,
    }
}

/// Sends raw bytes to the proxy; `half_close` shuts the write side down afterwards.
async fn send_raw(proxy: SocketAddr, bytes: &[u8], half_close: bool) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if half_close {
        stream.shutdown().await.unwrap();
    }
    stream
}

/// What a raw upstream got on one connection before it ended.
#[derive(Debug)]
struct Received {
    bytes: Vec<u8>,
}

impl Received {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn body(&self) -> &[u8] {
        let end = self
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.bytes.len(), |i| i + 4);
        &self.bytes[end..]
    }
}

/// An upstream that never answers: it reads each connection to its end (EOF or error) and
/// reports what it got then. A report means the proxy closed (aborted) the upstream request.
async fn sink_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    bytes.extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(Received { bytes });
            });
        }
    });
    (addr, rx)
}

/// An HTTP/1.1 upstream that reads a request head, then does `act` with the connection.
async fn scripted_upstream<F, Fut>(act: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let act = std::sync::Arc::new(act);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let act = act.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                act(stream).await;
            });
        }
    });
    addr
}

async fn aborted(rx: &mut mpsc::UnboundedReceiver<Received>, what: &str) -> Received {
    tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: the upstream request was left open"))
        .unwrap()
}

/// The proxy still serves a well-formed request after the broken one.
async fn still_serves(proxy: SocketAddr) {
    let mut stream = send_raw(
        proxy,
        b"GET /fine HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
        false,
    )
    .await;
    let resp = read_response(&mut stream).await;
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[tokio::test]
async fn truncated_request_body_is_400_dpe_and_aborts_the_upstream_request() {
    let (upstream, mut seen) = sink_upstream().await;
    let proxy = TestProxy::start(upstream, false, None, |_| {});
    // Content-Length 100, 10 bytes, then the client half-closes.
    let mut client = send_raw(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n0123456789",
        true,
    )
    .await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (400, "DPE"), "{resp:?}");
    let got = aborted(&mut seen, "truncated body").await;
    assert!(
        got.text().starts_with("POST /upload HTTP/1.1"),
        "{}",
        got.text()
    );
    assert!(got.body().len() < 100, "{}", got.text());

    // A client that closes altogether: nobody to answer, but the upstream request ends too.
    drop(
        send_raw(
            proxy.addr,
            b"POST /gone HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n0123456789",
            false,
        )
        .await,
    );
    let got = aborted(&mut seen, "client gone").await;
    assert!(got.text().starts_with("POST /gone"), "{}", got.text());
}

#[tokio::test]
async fn malformed_chunked_request_body_is_400_dpe_and_aborts_the_upstream_request() {
    let (upstream, mut seen) = sink_upstream().await;
    let proxy = TestProxy::start(upstream, false, None, |_| {});
    // One good chunk, then a chunk size line that is not hex; the client keeps the
    // connection open, so only the framing error can end the request.
    let mut client = send_raw(
        proxy.addr,
        b"POST /chunks HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        false,
    )
    .await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (400, "DPE"), "{resp:?}");
    let got = aborted(&mut seen, "bad chunk").await;
    assert!(got.text().starts_with("POST /chunks"), "{}", got.text());
    // The request never reached its last chunk.
    assert!(!got.text().ends_with("0\r\n\r\n"), "{}", got.text());
}

#[tokio::test]
async fn h2_upstream_request_is_reset_when_the_downstream_body_fails() {
    // The same client error with an h2c upstream: the request body pipe resets the stream.
    let (upstream, mut resets) = h2_upstream(H2Behaviour::ReadBody).await;
    let proxy = TestProxy::start(upstream, true, None, |_| {});
    let mut client = send_raw(
        proxy.addr,
        b"POST /h2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n0123456789",
        true,
    )
    .await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (400, "DPE"), "{resp:?}");
    let reason = tokio::time::timeout(LIMIT, resets.recv())
        .await
        .expect("the upstream stream was left open")
        .unwrap();
    assert!(reason.starts_with("reset"), "{reason}");
}

#[tokio::test]
async fn garbage_status_line_is_503_upe() {
    let upstream = scripted_upstream(|mut s| async move {
        let _ = s.write_all(b"THIS IS NOT HTTP\r\n\r\n").await;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = TestProxy::start(upstream, false, None, |_| {});
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (503, "UPE"), "{resp:?}");
    assert!(
        String::from_utf8_lossy(&resp.body).contains("protocol error"),
        "{resp:?}"
    );
}

#[tokio::test]
async fn bad_chunked_framing_in_a_response_resets_the_downstream() {
    // The head went downstream already: no local reply is possible, the client sees its
    // response end early (and the proxy logs UPE).
    let upstream = scripted_upstream(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
            .await;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = TestProxy::start(upstream, false, None, |_| {});
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.broken, "the response must not end cleanly: {resp:?}");
    assert!(
        !String::from_utf8_lossy(&resp.body).contains("0\r\n\r\n"),
        "{resp:?}"
    );
}

#[tokio::test]
async fn tcp_reset_after_the_request_is_503_ur() {
    let upstream = scripted_upstream(|s| async move {
        s.set_zero_linger().unwrap();
        drop(s);
    })
    .await;
    let proxy = TestProxy::start(upstream, false, None, |_| {});
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (503, "UR"), "{resp:?}");
}

#[tokio::test]
async fn close_before_headers_is_503_uc() {
    let upstream = scripted_upstream(|s| async move { drop(s) }).await;
    let proxy = TestProxy::start(upstream, false, None, |_| {});
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (503, "UC"), "{resp:?}");
}

#[derive(Clone, Copy)]
enum H2Behaviour {
    /// RST_STREAM(INTERNAL_ERROR) as soon as a request arrives.
    Reset,
    /// Read the request body; report how the stream ended.
    ReadBody,
}

/// An h2c upstream; reports what happened to request streams it read.
async fn h2_upstream(behaviour: H2Behaviour) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let tx = tx.clone();
                    match behaviour {
                        H2Behaviour::Reset => respond.send_reset(h2::Reason::INTERNAL_ERROR),
                        H2Behaviour::ReadBody => {
                            tokio::spawn(async move {
                                let mut body = req.into_body();
                                loop {
                                    match body.data().await {
                                        Some(Ok(_)) => {}
                                        Some(Err(e)) => {
                                            let _ = tx.send(format!("reset: {e}"));
                                            return;
                                        }
                                        None => {
                                            let _ = tx.send("complete".to_string());
                                            return;
                                        }
                                    }
                                }
                            });
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn h2_rst_stream_is_503_ur() {
    let (upstream, _) = h2_upstream(H2Behaviour::Reset).await;
    let proxy = TestProxy::start(upstream, true, None, |_| {});
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (503, "UR"), "{resp:?}");
    assert!(
        String::from_utf8_lossy(&resp.body).contains("remote reset"),
        "{resp:?}"
    );
}

const IDLE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn stream_idle_timeout_is_504_si_when_the_upstream_never_answers() {
    let (upstream, mut seen) = sink_upstream().await;
    // No route timeout: only the stream idle timeout bounds the request.
    let proxy = TestProxy::start(upstream, false, Some(Duration::ZERO), |m| {
        m.stream_idle_timeout = pb(IDLE);
    });
    let started = tokio::time::Instant::now();
    let mut client = send_raw(
        proxy.addr,
        b"GET /hang HTTP/1.1\r\nHost: svc\r\n\r\n",
        false,
    )
    .await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (504, "SI"), "{resp:?}");
    assert!(
        started.elapsed() >= IDLE,
        "fired early: {:?}",
        started.elapsed()
    );
    let got = aborted(&mut seen, "idle upstream").await;
    assert!(got.text().starts_with("GET /hang"), "{}", got.text());
}

#[tokio::test]
async fn stream_idle_timeout_is_408_si_when_the_client_stops_sending_its_body() {
    let (upstream, mut seen) = sink_upstream().await;
    let proxy = TestProxy::start(upstream, false, Some(Duration::ZERO), |m| {
        m.stream_idle_timeout = pb(IDLE);
    });
    let mut client = send_raw(
        proxy.addr,
        b"POST /slow HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n0123456789",
        false,
    )
    .await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (408, "SI"), "{resp:?}");
    let got = aborted(&mut seen, "idle client").await;
    assert!(got.body().len() < 100, "{}", got.text());
}

#[tokio::test]
async fn activity_in_either_direction_keeps_the_stream_alive() {
    // The client trickles its body and then the upstream trickles its response, each for
    // several idle periods: neither is idle, so the exchange completes.
    // Each side pauses a fifth of the idle timeout between writes: a wide margin on a busy machine.
    let step = IDLE / 5;
    let upstream = scripted_upstream(move |mut s| async move {
        // The request body: 100 bytes in 10 writes.
        let mut body = 0;
        let mut chunk = [0u8; 100];
        while body < 100 {
            match s.read(&mut chunk).await {
                Ok(n @ 1..) => body += n,
                _ => return,
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            .await;
        for b in b"0123456789" {
            tokio::time::sleep(step).await;
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = TestProxy::start(upstream, false, Some(Duration::ZERO), |m| {
        m.stream_idle_timeout = pb(IDLE);
    });
    let mut client = send_raw(
        proxy.addr,
        b"POST /trickle HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n",
        false,
    )
    .await;
    for _ in 0..10 {
        tokio::time::sleep(step).await;
        client.write_all(b"0123456789").await.unwrap();
    }
    let resp = read_response(&mut client).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(!resp.broken, "{resp:?}");
    assert_eq!(resp.body, b"0123456789");
}

#[tokio::test]
async fn response_body_idle_after_the_head_resets_the_downstream() {
    let upstream = scripted_upstream(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
            .await;
        // Then nothing, with the connection open.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = TestProxy::start(upstream, false, Some(Duration::ZERO), |m| {
        m.stream_idle_timeout = pb(IDLE);
    });
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.broken, "the stalled response must be cut: {resp:?}");
    assert_eq!(resp.body, b"01234");
}

#[tokio::test]
async fn disabled_stream_idle_timeout_waits_for_the_route_timeout() {
    // Istio sends stream_idle_timeout: 0s: then only the route timeout (here 1 s) applies.
    let (upstream, _seen) = sink_upstream().await;
    let proxy = TestProxy::start(upstream, false, Some(Duration::from_secs(1)), |m| {
        m.stream_idle_timeout = pb(Duration::ZERO);
    });
    let started = tokio::time::Instant::now();
    let mut client = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", false).await;
    let resp = read_response(&mut client).await;
    assert_eq!((resp.status, resp.flags()), (504, "UT"), "{resp:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// An HTTP/1.1 upstream that reads each request body (whatever becomes of it), then answers 200.
async fn reading_upstream() -> SocketAddr {
    use http_body_util::{BodyExt, Full};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_proxy_keeps_serving_after_broken_requests() {
    let proxy = TestProxy::start(reading_upstream().await, false, None, |_| {});
    for bytes in [
        &b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\nshort"[..],
        &b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
    ] {
        let mut client = send_raw(proxy.addr, bytes, true).await;
        let resp = read_response(&mut client).await;
        assert_eq!((resp.status, resp.flags()), (400, "DPE"), "{resp:?}");
    }
    still_serves(proxy.addr).await;
}
