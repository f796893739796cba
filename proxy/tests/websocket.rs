//! WebSocket (HTTP/1.1 upgrade) through an in-process proxy: the handshake routed to an
//! upgrade echo server on a connection of its own, bytes both ways after the 101, a non-101
//! answer passed back, the headers stripped without `upgrade_configs`, an h2-only cluster
//! refused, the HCM idle timeout and the drain closing tunnels.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_proxy::{ConfigStore, Drain};

const CLUSTER: &str = "outbound|80||chat";

/// The connection manager with Istio's `upgrade_configs: [{upgrade_type: websocket}]`.
fn websocket(m: &mut hcm::HttpConnectionManager) {
    m.upgrade_configs = vec![hcm::http_connection_manager::UpgradeConfig {
        upgrade_type: "websocket".into(),
        ..Default::default()
    }];
}

/// What the echo server saw of the requests that reached it.
#[derive(Default)]
struct Seen {
    connections: std::sync::atomic::AtomicUsize,
    /// `connection` and `upgrade` headers of each request (`-` when absent), and its path.
    requests: parking_lot::Mutex<Vec<(String, String, String)>>,
}

impl Seen {
    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn last(&self) -> (String, String, String) {
        self.requests.lock().last().cloned().expect("a request")
    }
}

/// An upgrade echo server: a WebSocket handshake (`Upgrade: websocket`) is answered `101`, then
/// it greets with `hello\n` and echoes every byte until the client closes. `/refuse` answers
/// 403; any other request 200 `plain`.
async fn echo_server() -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            s.connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(answer(&s, req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

fn answer(seen: &Seen, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
    };
    let (connection, upgrade) = (header("connection"), header("upgrade"));
    let path = req.uri().path().to_string();
    seen.requests
        .lock()
        .push((connection, upgrade.clone(), path.clone()));
    if path == "/refuse" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"no chat for you")));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        return resp;
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Response::new(Full::new(Bytes::from_static(b"plain")));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        // Server-first bytes: the upstream → downstream direction needs no client byte.
        if io.write_all(b"hello\n").await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = io.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        .body(Full::default())
        .unwrap()
}

/// A proxy with the websocket connection manager (or `change`), routing `chat` to `upstream`
/// with a 200 ms route timeout; `h2` makes the cluster h2c-only.
fn proxy_to(
    store: ConfigStore,
    upstream: SocketAddr,
    h2: bool,
    change: impl FnOnce(&mut hcm::HttpConnectionManager),
) -> Proxy {
    let mut proxy = Proxy::start_with(store, change);
    proxy.configure(
        &[(CLUSTER, h2, vec![upstream])],
        vec![vhost(
            "chat",
            &["chat"],
            vec![to_cluster(
                prefix("/"),
                CLUSTER,
                Some(Duration::from_millis(200)),
            )],
        )],
    );
    proxy
}

/// Sends a WebSocket handshake for `path` on `stream`; returns the response head.
async fn handshake(stream: &mut TcpStream, path: &str) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: chat\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    read_head(stream).await
}

/// Reads a response head, byte by byte so nothing after it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("response head within 5 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

/// Reads exactly `n` bytes within 5 s.
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .expect("bytes within 5 s")
        .unwrap();
    buf
}

/// Sends `message` and expects it echoed.
async fn echo(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    assert_eq!(read_n(stream, message.len()).await, message);
}

/// Whether the proxy closed `stream` (end of file or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn websocket_upgrade_is_spliced_both_ways_on_a_connection_of_its_own() {
    let (upstream, seen) = echo_server().await;
    let proxy = proxy_to(ConfigStore::new(), upstream, false, websocket);
    // A plain request first: its upstream connection is pooled, the upgrade must not take it.
    let (status, _, body) = get(&h1_client(), proxy.addr, "chat", "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "plain"));
    assert_eq!(seen.connections(), 1);

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = handshake(&mut stream, "/chat?room=1").await;
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    // The upstream got the upgrade headers, on a new connection.
    assert_eq!(
        seen.last(),
        ("upgrade".into(), "websocket".into(), "/chat".into())
    );
    assert_eq!(seen.connections(), 2, "a dedicated upstream connection");

    assert_eq!(read_n(&mut stream, 6).await, b"hello\n");
    for i in 0..5 {
        echo(&mut stream, format!("message {i}\n").as_bytes()).await;
    }
    // A large message in both directions at once (the echo writes while we still write).
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = stream.split();
    let send = async {
        write.write_all(&big).await.unwrap();
    };
    let receive = async {
        let mut buf = vec![0u8; big.len()];
        read.read_exact(&mut buf).await.unwrap();
        buf
    };
    let ((), echoed) = tokio::join!(send, receive);
    assert!(echoed == big, "256 KiB echoed intact");
    // The route timeout (200 ms) covered the 101 only: an idle pause is no failure.
    tokio::time::sleep(Duration::from_millis(400)).await;
    echo(&mut stream, b"still there\n").await;

    // The client closes its side: the close reaches the server, whose close comes back.
    stream.shutdown().await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

    // The proxy is fine afterwards, and the pooled connection still serves.
    let (status, _, body) = get(&h1_client(), proxy.addr, "chat", "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "plain"));
    assert_eq!(seen.connections(), 2, "the pooled connection was reused");
}

#[tokio::test]
async fn websocket_works_with_the_http1_codec() {
    // codec_type HTTP1 serves connections with hyper's HTTP/1.1 server directly.
    let (upstream, _) = echo_server().await;
    let proxy = proxy_to(ConfigStore::new(), upstream, false, |m| {
        websocket(m);
        m.codec_type = hcm::http_connection_manager::CodecType::Http1 as i32;
    });
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = handshake(&mut stream, "/chat").await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert_eq!(read_n(&mut stream, 6).await, b"hello\n");
    echo(&mut stream, b"over HTTP1").await;
}

#[tokio::test]
async fn an_answer_other_than_101_is_an_ordinary_response() {
    let (upstream, seen) = echo_server().await;
    let proxy = proxy_to(ConfigStore::new(), upstream, false, websocket);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = handshake(&mut stream, "/refuse").await;
    assert!(head.starts_with("http/1.1 403 forbidden\r\n"), "{head}");
    assert!(!head.contains("upgrade"), "{head}");
    assert!(head.contains("content-length: 15\r\n"), "{head}");
    assert_eq!(read_n(&mut stream, 15).await, b"no chat for you");
    assert_eq!(
        seen.last(),
        ("upgrade".into(), "websocket".into(), "/refuse".into())
    );
    // The downstream connection stays an HTTP connection.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert_eq!(read_n(&mut stream, 5).await, b"plain");
}

#[tokio::test]
async fn without_websocket_the_upgrade_headers_are_stripped() {
    let (upstream, seen) = echo_server().await;
    // No upgrade_configs, then websocket explicitly disabled: both strip.
    for change in [
        (|_: &mut hcm::HttpConnectionManager| {}) as fn(&mut hcm::HttpConnectionManager),
        |m| {
            websocket(m);
            m.upgrade_configs[0].enabled = Some(Default::default());
        },
    ] {
        let proxy = proxy_to(ConfigStore::new(), upstream, false, change);
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let head = handshake(&mut stream, "/chat").await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert_eq!(read_n(&mut stream, 5).await, b"plain");
        assert_eq!(seen.last(), ("-".into(), "-".into(), "/chat".into()));
    }
}

#[tokio::test]
async fn a_connect_without_connect_on_the_connection_manager_is_404() {
    let (upstream, seen) = echo_server().await;
    let before = seen.requests.lock().len();
    // WebSocket carried, CONNECT not: the CONNECT is answered here and never reaches the app.
    let proxy = proxy_to(ConfigStore::new(), upstream, false, websocket);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"CONNECT chat:443 HTTP/1.1\r\nHost: chat:443\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("http/1.1 404 not found\r\n"), "{head}");
    assert_eq!(seen.requests.lock().len(), before);
}

#[tokio::test]
async fn an_upgrade_to_an_h2_only_cluster_is_refused_with_503() {
    let (upstream, seen) = echo_server().await;
    let proxy = proxy_to(ConfigStore::new(), upstream, true, websocket);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = handshake(&mut stream, "/chat").await;
    assert!(
        head.starts_with("http/1.1 503 service unavailable\r\n"),
        "{head}"
    );
    let length: usize = head
        .split("content-length: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .and_then(|n| n.parse().ok())
        .expect("content-length");
    let body = String::from_utf8(read_n(&mut stream, length).await).unwrap();
    assert!(body.contains("HTTP/2 only"), "{body}");
    assert_eq!(seen.connections(), 0, "nothing sent upstream");
}

#[tokio::test]
async fn an_idle_tunnel_closes_after_the_hcm_idle_timeout() {
    let (upstream, _) = echo_server().await;
    let proxy = proxy_to(ConfigStore::new(), upstream, false, |m| {
        websocket(m);
        m.common_http_protocol_options = Some(core::HttpProtocolOptions {
            idle_timeout: Some(PbDuration {
                seconds: 0,
                nanos: 300_000_000,
            }),
            ..Default::default()
        });
    });
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = handshake(&mut stream, "/chat").await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert_eq!(read_n(&mut stream, 6).await, b"hello\n");
    // Traffic every 150 ms keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        echo(&mut stream, b"ping").await;
    }
    // ...silence closes it.
    let start = std::time::Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_draining_proxy_closes_tunnels_after_the_drain_period() {
    let (upstream, _) = echo_server().await;
    let drain = Drain::new(Duration::from_millis(500));
    let proxy = proxy_to(
        ConfigStore::with_drain(drain.clone()),
        upstream,
        false,
        websocket,
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = handshake(&mut stream, "/chat").await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert_eq!(read_n(&mut stream, 6).await, b"hello\n");
    assert_eq!(
        drain.open_connections(),
        1,
        "the tunnel counts as a connection"
    );

    drain.start();
    let start = std::time::Instant::now();
    // Within the drain period the tunnel still carries bytes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    echo(&mut stream, b"during the drain").await;
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(2),
        "closed after {elapsed:?}"
    );
    assert!(drain.wait().await, "every connection closed in time");
    assert_eq!(drain.open_connections(), 0);
}
