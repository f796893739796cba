use super::*;
use tokio::io::AsyncWriteExt as _;

fn both() -> Inspectors {
    Inspectors {
        tls: true,
        http: true,
        timeout: Some(Duration::from_secs(5)),
        continue_on_timeout: true,
    }
}

/// A real ClientHello with SNI and ALPN, as rustls writes it.
fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
    let provider = weft_identity::tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[test]
fn client_hello_is_tls_with_sni_and_alpn() {
    assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02]));
    assert!(!looks_like_tls(b"GET / HTTP/1.1"));
    let hello = client_hello("Reviews.Default.svc", &["istio-http/1.1", "istio"]);
    let seen = decide(&hello, both()).expect("a whole hello decides");
    assert_eq!(seen.transport, Some(TransportProtocol::Tls));
    assert_eq!(seen.sni.as_deref(), Some("reviews.default.svc"));
    assert_eq!(seen.application_protocols, ["istio-http/1.1", "istio"]);
    // Part of a hello waits for the rest.
    assert_eq!(decide(&hello[..20], both()), None);
    assert_eq!(decide(&hello[..1], both()), None);
}

#[test]
fn http_inspector_sees_request_lines_and_the_h2_preface() {
    let app = |bytes: &[u8]| decide(bytes, both()).map(|s| s.application_protocols);
    assert_eq!(
        app(b"GET /x HTTP/1.1\r\nHost: a\r\n"),
        Some(vec!["http/1.1".into()])
    );
    assert_eq!(app(b"POST / HTTP/1.0\r\n"), Some(vec!["http/1.0".into()]));
    assert_eq!(app(H2_PREFACE), Some(vec!["h2c".into()]));
    // Prefixes of possible HTTP wait for more.
    for partial in [
        &b"G"[..],
        b"GET",
        b"GET /",
        b"GET / HTT",
        b"GET / HTTP/1.1",
        b"PRI * HT",
    ] {
        assert_eq!(app(partial), None, "{:?}", String::from_utf8_lossy(partial));
    }
    // Anything else is decided at once: not HTTP, plaintext.
    for other in [
        &b"\x00\x01binary"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"GET / HTTP/2.0\r\n",
        b"GET / FTP/1.1\r\n",
        b"* OK IMAP ready\r\n",
    ] {
        let seen = decide(other, both()).expect("decided");
        assert!(seen.application_protocols.is_empty(), "{other:?}");
        assert_eq!(seen.transport, Some(TransportProtocol::RawBuffer));
    }
    // With only the TLS inspector, plaintext is decided by the first byte.
    let tls_only = Inspectors {
        http: false,
        ..both()
    };
    assert_eq!(
        decide(b"G", tls_only).map(|s| s.transport),
        Some(Some(TransportProtocol::RawBuffer))
    );
}

#[tokio::test]
async fn inspects_over_a_socket_without_consuming_and_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The request line arrives in two pieces: detection waits for the second.
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    client.write_all(b"GET / HT").await.unwrap();
    let writer = tokio::spawn(async move {
        tokio::task::yield_now().await;
        client.write_all(b"TP/1.1\r\n\r\n").await.unwrap();
        client
    });
    let seen = inspect(&server, both()).await.unwrap();
    assert_eq!(seen.application_protocols, ["http/1.1"]);
    assert!(!seen.timed_out);
    let mut again = [0u8; 16];
    let n = server.peek(&mut again).await.unwrap();
    assert!(
        again[..n].starts_with(b"GET / HTTP/1.1"),
        "nothing consumed"
    );
    drop(writer.await.unwrap());

    // A server-first protocol: the client says nothing; detection gives up at the timeout.
    let _client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let quick = Inspectors {
        timeout: Some(Duration::from_millis(50)),
        ..both()
    };
    let started = std::time::Instant::now();
    let seen = inspect(&server, quick).await.unwrap();
    assert!(seen.timed_out);
    assert_eq!(seen.transport, Some(TransportProtocol::RawBuffer));
    assert!(seen.application_protocols.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}
