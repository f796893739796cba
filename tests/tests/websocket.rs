//! WebSocket and HTTP `CONNECT` through two real sidecars with mutual TLS (STRICT, so the hop
//! between them cannot be plaintext): the handshake goes client → client sidecar (outbound) →
//! server sidecar (inbound, mTLS) → app, the app's 101 (a CONNECT: its 200, as a forward proxy
//! answers) comes back, and bytes cross both ways until the client closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weft_e2e::{MESH_STRICT, Mesh, MeshOptions, eventually};

/// What the app saw of each request: `host`, `connection`, `upgrade` (`-` when absent).
type Seen = Arc<parking_lot::Mutex<Vec<[String; 3]>>>;

/// A WebSocket-like app at `addr`: a handshake is answered 101, then it greets with `hello\n`
/// and echoes every byte until the client closes. Bound with `SO_REUSEADDR`, retried while the
/// address is still taken.
async fn echo_app(addr: SocketAddr) -> Seen {
    let listener = eventually(
        Duration::from_secs(10),
        "the app's address free",
        || async {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.set_reuseaddr(true).ok()?;
            socket.bind(addr).ok()?;
            socket.listen(128).ok()
        },
    )
    .await;
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
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
    seen
}

fn answer(seen: &Seen, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let upgrade = header("upgrade");
    let connect = req.method() == http::Method::CONNECT;
    let host = if connect {
        // A CONNECT's target: its authority-form request line.
        format!("CONNECT {}", req.uri())
    } else {
        header("host")
    };
    seen.lock()
        .push([host, header("connection"), upgrade.clone()]);
    if !upgrade.eq_ignore_ascii_case("websocket") && !connect {
        return Response::new(Full::new(Bytes::from_static(b"not a websocket")));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
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
    let mut resp = Response::new(Full::default());
    if connect {
        // A forward proxy's answer: the tunnel is open.
        return resp;
    }
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert("connection", http::HeaderValue::from_static("Upgrade"));
    headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
    headers.insert(
        "sec-websocket-accept",
        http::HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    );
    resp
}

/// Reads a response head byte by byte (nothing after it is consumed), lower-cased.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("response head within 10 s")
            .expect("read");
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("bytes within 10 s")
        .expect("read");
    buf
}

/// A client sidecar and a server sidecar under STRICT mutual TLS, with the echo app in place
/// of the server's demo app (which speaks neither WebSocket nor CONNECT).
async fn strict_mesh_with_echo_app() -> (Mesh, Seen) {
    let mut mesh = Mesh::start_with(
        &["v1"],
        &[("peer-authentication.yaml", MESH_STRICT)],
        &MeshOptions {
            identity: true,
            ..MeshOptions::default()
        },
    )
    .await;
    mesh.wait_for_version("/", &[], "v1", Duration::from_secs(20))
        .await;
    let app = mesh.apps[0].addr;
    mesh.apps[0].process.kill();
    let seen = echo_app(app).await;
    (mesh, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_crosses_two_sidecars_over_mutual_tls() {
    let (mesh, seen) = strict_mesh_with_echo_app().await;

    let mut stream = TcpStream::connect(mesh.client.outbound())
        .await
        .expect("client sidecar");
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: reviews:9080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("handshake");
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}\nclient sidecar:\n{}\nserver sidecar:\n{}",
        mesh.client.process.log(),
        mesh.sidecars[0].process.log()
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    // Both sidecars kept the upgrade headers, and the authority.
    assert_eq!(
        seen.lock().last().cloned(),
        Some([
            "reviews:9080".to_string(),
            "upgrade".to_string(),
            "websocket".to_string()
        ])
    );

    // Server-first bytes, then messages both ways, then a large one while it echoes.
    assert_eq!(read_n(&mut stream, 6).await, b"hello\n");
    for i in 0..10 {
        let message = format!("message {i} through two sidecars\n");
        stream.write_all(message.as_bytes()).await.expect("write");
        assert_eq!(read_n(&mut stream, message.len()).await, message.as_bytes());
    }
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 253) as u8).collect();
    let (mut read, mut write) = stream.split();
    let send = async { write.write_all(&big).await.expect("write") };
    let receive = async {
        let mut buf = vec![0u8; big.len()];
        tokio::time::timeout(Duration::from_secs(10), read.read_exact(&mut buf))
            .await
            .expect("512 KiB echoed within 10 s")
            .expect("read");
        buf
    };
    let ((), echoed) = tokio::join!(send, receive);
    assert!(echoed == big, "512 KiB echoed intact");

    // The client closes: the close crosses both sidecars, the app's comes back.
    stream.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "closed after the client's close: {end:?} {rest:?}"
    );

    // Plain HTTP still flows through the same sidecars.
    let reply = mesh.get("/", &[]).await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "not a websocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_crosses_two_sidecars_over_mutual_tls() {
    // The app stands for a forward proxy: it answers a CONNECT 200, greets and echoes.
    let (mesh, seen) = strict_mesh_with_echo_app().await;

    let mut stream = TcpStream::connect(mesh.client.outbound())
        .await
        .expect("client sidecar");
    stream
        .write_all(b"CONNECT reviews:9080 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        .await
        .expect("CONNECT");
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("http/1.1 200 ok\r\n"),
        "{head}\nclient sidecar:\n{}\nserver sidecar:\n{}",
        mesh.client.process.log(),
        mesh.sidecars[0].process.log()
    );
    // Both sidecars passed the CONNECT on as a CONNECT, its target unchanged.
    assert_eq!(
        seen.lock().last().map(|s| s[0].clone()).as_deref(),
        Some("CONNECT reviews:9080")
    );
    assert_eq!(read_n(&mut stream, 6).await, b"hello\n");
    for i in 0..5 {
        let message = format!("tunnelled message {i}\n");
        stream.write_all(message.as_bytes()).await.expect("write");
        assert_eq!(read_n(&mut stream, message.len()).await, message.as_bytes());
    }
    stream.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "closed after the client's close: {end:?} {rest:?}"
    );
}
