//! Protocol detection (Envoy's `tls_inspector` and `http_inspector`): peeks at a new
//! connection's first bytes, without consuming them, to tell which filter chain it takes.
//!
//! ```text
//!  peek ─► 0x16 0x03 … ─► TLS: the ClientHello parsed by rustls (SNI, ALPN offered)   [tls inspector]
//!       ─► anything else ─► raw_buffer; then  "PRI * HTTP/2.0…" ─► h2c                 [http inspector]
//!                                              "METHOD target HTTP/1.x\r\n" ─► http/1.x
//!                                              anything else ─► not HTTP (opaque TCP)
//!  more bytes needed ─► wait (1 ms doubling to 16 ms) until the listener filters timeout
//!  timeout ─► what is known so far (raw_buffer, no application protocol), `timed_out` set
//! ```
//!
//! Peeking keeps the bytes in the socket for the TLS handshake or the HTTP server that
//! follows, so no replay buffer is needed; a socket has no "more data arrived" readiness
//! after a peek, hence the short sleeps while a hello or a request line is incomplete.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{Inspectors, TransportProtocol};

/// The largest prefix inspected: a ClientHello (with post-quantum key shares) or a request
/// line longer than this is decided on what fits.
const MAX_PEEK: usize = 16 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What detection learned about a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// `None` when the TLS inspector is off.
    pub transport: Option<TransportProtocol>,
    /// The SNI of a TLS ClientHello, lowercase.
    pub sni: Option<String>,
    /// ALPN values a TLS ClientHello offers, or `http/1.0` / `http/1.1` / `h2c` from the HTTP
    /// inspector.
    pub application_protocols: Vec<String>,
    /// The listener filters timeout expired before detection finished.
    pub timed_out: bool,
}

/// A TLS record header of a handshake: content type 22, major version 3.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x16, 0x03, ..])
}

/// Runs the enabled inspectors on `stream`.
pub async fn inspect(stream: &TcpStream, inspectors: Inspectors) -> std::io::Result<Seen> {
    let mut buf = vec![0u8; MAX_PEEK];
    // How many bytes the last peek saw, kept for a timeout.
    let mut last = 0;
    let work = async {
        let mut wait = Duration::from_millis(1);
        loop {
            let n = stream.peek(&mut buf).await?;
            last = n;
            let eof_or_full = n == 0 || n == buf.len();
            match decide(&buf[..n], inspectors) {
                Some(decided) => return Ok::<_, std::io::Error>(decided),
                None if eof_or_full => return Ok(partial(&buf[..n], inspectors)),
                None => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(16));
        }
    };
    let Some(timeout) = inspectors.timeout else {
        return work.await;
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(decided) => decided,
        Err(_) => {
            let mut seen = partial(&buf[..last], inspectors);
            seen.timed_out = true;
            Ok(seen)
        }
    }
}

/// What `bytes` (all that arrived so far) decide; `None` when more bytes could change it.
fn decide(bytes: &[u8], inspectors: Inspectors) -> Option<Seen> {
    if bytes.is_empty() {
        return None;
    }
    if inspectors.tls && bytes[0] == 0x16 {
        if bytes.len() < 2 {
            return None;
        }
        if looks_like_tls(bytes) {
            return client_hello(bytes).map(|(sni, alpn)| Seen {
                transport: Some(TransportProtocol::Tls),
                sni,
                application_protocols: alpn,
                timed_out: false,
            });
        }
    }
    let transport = inspectors.tls.then_some(TransportProtocol::RawBuffer);
    let application_protocols = if inspectors.http {
        match http(bytes) {
            Http::Undecided => return None,
            Http::Not => Vec::new(),
            Http::Is(protocol) => vec![protocol.to_string()],
        }
    } else {
        Vec::new()
    };
    Some(Seen {
        transport,
        sni: None,
        application_protocols,
        timed_out: false,
    })
}

/// What is known when no more bytes will come (end of stream, buffer full, timeout).
fn partial(bytes: &[u8], inspectors: Inspectors) -> Seen {
    let tls = inspectors.tls && looks_like_tls(bytes);
    Seen {
        transport: inspectors.tls.then_some(if tls {
            TransportProtocol::Tls
        } else {
            TransportProtocol::RawBuffer
        }),
        ..Seen::default()
    }
}

/// The SNI and ALPN of a complete ClientHello; `None` while it is incomplete. A malformed hello
/// is still TLS (the handshake will fail and say why), without SNI or ALPN.
#[allow(clippy::type_complexity)]
fn client_hello(bytes: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = bytes;
    while !reader.is_empty() {
        if acceptor.read_tls(&mut reader).is_err() {
            return Some((None, Vec::new()));
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            let sni = hello.server_name().map(str::to_ascii_lowercase);
            let alpn = hello
                .alpn()
                .map(|protocols| {
                    protocols
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            Some((sni, alpn))
        }
        Ok(None) => None,
        Err(_) => Some((None, Vec::new())),
    }
}

enum Http {
    Undecided,
    Not,
    Is(&'static str),
}

/// HTTP/1.x request line or h2c preface (Envoy's `http_inspector`).
fn http(bytes: &[u8]) -> Http {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return if bytes.len() >= H2_PREFACE.len() {
            Http::Is("h2c")
        } else {
            Http::Undecided
        };
    }
    // METHOD SP request-target SP HTTP/1.x CRLF
    let line_end = bytes.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &bytes[..line_end.unwrap_or(bytes.len())];
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return if method.is_empty() && line_end.is_none() {
            Http::Undecided
        } else {
            Http::Not
        };
    }
    let Some(target) = parts.next() else {
        return if line_end.is_none() {
            Http::Undecided
        } else {
            Http::Not
        };
    };
    if target.iter().any(|&b| b.is_ascii_control()) {
        return Http::Not;
    }
    let Some(version) = parts.next() else {
        return if line_end.is_none() {
            Http::Undecided
        } else {
            Http::Not
        };
    };
    const V: &[u8] = b"HTTP/1.";
    let m = version.len().min(V.len());
    if version[..m] != V[..m] {
        return Http::Not;
    }
    if line_end.is_none() {
        return if version.len() <= V.len() + 1 {
            Http::Undecided
        } else {
            Http::Not
        };
    }
    match version {
        b"HTTP/1.0" => Http::Is("http/1.0"),
        b"HTTP/1.1" => Http::Is("http/1.1"),
        _ => Http::Not,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
