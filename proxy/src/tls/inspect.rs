//! TLS detection (Envoy's `tls_inspector`): a PERMISSIVE listener peeks at the first bytes of
//! a connection to tell a TLS ClientHello from plaintext, without consuming them.

use std::time::Duration;

use tokio::net::TcpStream;

/// What a connection starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    Plaintext,
}

/// A TLS record header of a handshake: content type 22, major version 3.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x16, 0x03, ..])
}

/// Peeks until two bytes have arrived (or the peer closed, or `timeout`): a connection that
/// sends nothing is plaintext (it is an HTTP client waiting for nothing, or will time out).
pub async fn detect(stream: &TcpStream, timeout: Duration) -> std::io::Result<Transport> {
    let mut buf = [0u8; 2];
    let peek = async {
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 || n >= 2 || buf[0] != 0x16 {
                return Ok::<_, std::io::Error>(n);
            }
            // One byte of a possible TLS record: wait for the next.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let n = match tokio::time::timeout(timeout, peek).await {
        Ok(n) => n?,
        Err(_) => return Ok(Transport::Plaintext),
    };
    Ok(if looks_like_tls(&buf[..n]) {
        Transport::Tls
    } else {
        Transport::Plaintext
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_is_tls() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02]));
        assert!(!looks_like_tls(b"GET / HTTP/1.1"));
        assert!(!looks_like_tls(b"PRI * HTTP/2.0"));
        assert!(!looks_like_tls(&[0x16]));
    }

    #[tokio::test]
    async fn detects_over_a_socket() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        for (bytes, want) in [
            (&[0x16u8, 0x03, 0x01][..], Transport::Tls),
            (&b"GET / HTTP/1.1\r\n"[..], Transport::Plaintext),
        ] {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            client.write_all(bytes).await.expect("write");
            assert_eq!(
                detect(&server, Duration::from_secs(5)).await.expect("peek"),
                want
            );
            // Nothing was consumed.
            let mut again = vec![0u8; bytes.len()];
            let n = server.peek(&mut again).await.expect("peek");
            assert_eq!(&again[..n], &bytes[..n]);
        }
    }
}
