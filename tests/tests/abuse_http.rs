//! Abuse suite, HTTP framing: malformed and truncated request bodies sent with raw TCP through
//! a real client sidecar (loopback only). Each is the client's fault: `400` with response flag
//! `DPE`, never a `503` blaming the upstream; and the sidecar keeps serving afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_e2e::Mesh;

const LIMIT: Duration = Duration::from_secs(10);

/// What a raw client read back.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Connects to `via`, writes `bytes`, half-closes when asked, and reads one response: its
/// head, then a `content-length` body (or whatever comes until the connection ends).
async fn exchange(via: SocketAddr, bytes: &[u8], half_close: bool) -> RawReply {
    let mut stream = TcpStream::connect(via)
        .await
        .expect("connect to the sidecar");
    stream.write_all(bytes).await.expect("write the request");
    if half_close {
        stream.shutdown().await.expect("half-close");
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("a response head within 10 s")
            .unwrap_or(0);
        assert!(
            n > 0,
            "the sidecar closed without answering; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line of {head:?}"));
    let mut reply = RawReply {
        status,
        head,
        body: String::new(),
    };
    let length: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("the response body within 10 s")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    reply.body = String::from_utf8_lossy(&body).into_owned();
    reply
}

/// (what, request bytes, half-close after writing)
const MALFORMED: &[(&str, &[u8], bool)] = &[
    (
        "content-length larger than the body, then half-close",
        b"POST / HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 100\r\n\r\n0123456789",
        true,
    ),
    (
        "chunk size line that is not hex",
        b"POST / HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        false,
    ),
    (
        "chunk longer than its size",
        b"POST / HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloEXTRA\r\n0\r\n\r\n",
        false,
    ),
    (
        "chunked body cut in the middle of a chunk, then half-close",
        b"POST / HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234",
        true,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_bodies_are_400_dpe_and_the_sidecar_keeps_serving() {
    let mut mesh = Mesh::start(&["v1"], &[]).await;
    mesh.wait_for_routes(Duration::from_secs(10)).await;
    let via = mesh.client.outbound();

    for (what, bytes, half_close) in MALFORMED {
        let reply = exchange(via, bytes, *half_close).await;
        assert_eq!(
            (reply.status, reply.header("x-weft-response-flags")),
            (400, Some("DPE")),
            "{what}: {reply:?}"
        );
    }
    // A client that sends part of its body and goes away altogether.
    for _ in 0..20 {
        let mut stream = TcpStream::connect(via).await.expect("connect");
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 1000\r\n\r\npartial",
            )
            .await
            .expect("write");
        drop(stream);
    }

    // Well-formed requests still go through: a body of the declared length, chunked, and plain GETs.
    let reply = exchange(
        via,
        b"POST /ok HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        false,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("v1"), "{reply:?}");
    let reply = exchange(
        via,
        b"POST /ok HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for i in 0..20 {
        let reply = mesh
            .get("/", &[])
            .await
            .unwrap_or_else(|e| panic!("GET {i} after the malformed requests: {e}"));
        assert_eq!(reply.status, 200, "GET {i}: {}", reply.body);
        assert_eq!(reply.version.as_deref(), Some("v1"));
    }
    mesh.client.process.assert_running();
    for sidecar in &mut mesh.sidecars {
        sidecar.process.assert_running();
    }
}
