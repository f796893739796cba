//! HTTP/1.1 upgrades (WebSocket) and `CONNECT` tunnels: the request is routed like any other (a `CONNECT` by its authority, as a request for `/`), sent on an upstream connection of its own, and after `101 Switching Protocols` (a `CONNECT`: any 2xx) the two streams are spliced.
//!
//! ```text
//!  downstream HTTP/1.1 GET, Connection: upgrade, Upgrade: websocket   (HCM upgrade_configs: websocket)
//!          or HTTP/1.1 CONNECT host:port                              (HCM upgrade_configs: CONNECT)
//!    ─► router, policy as usual: route, cluster, balancer, rewrites, header mutations
//!    ─► endpoint::send_upgrade: a new HTTP/1.1 connection (its pool's TLS and ALPN), never pooled,
//!       Connection/Upgrade kept; h2-only cluster: 503; the route timeout covers the answer only
//!       (a CONNECT keeps its authority-form target)
//!    ─► not 101 (CONNECT: not 2xx): an ordinary response (the dedicated connection closes after it)
//!    ─► 101 (CONNECT: 2xx): upstream stream taken over ─► the same downstream ─► Tunnel parked in the connection's Slot
//!  serve_connection (http/mod.rs): hyper hands the downstream socket over ─► run():
//!    copy_bidirectional(downstream, upstream) until either side closes, the HCM idle timeout
//!    (the downstream socket's GuardedIo), or drain: the drain period, then closed
//! ```
//!
//! Without websocket on the connection manager, over HTTP/2, or for other upgrade types, the
//! upgrade headers are removed as hop-by-hop headers and the request is an ordinary one. A
//! `CONNECT` without CONNECT on the connection manager is answered 404, as Envoy answers it.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::headers::strip_hop_by_hop;
use crate::upstream::InFlight;

/// What a request asks to turn into a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `Upgrade: websocket`: tunnelled after the upstream's `101`.
    WebSocket,
    /// `CONNECT host:port`: forwarded as is (the upstream, e.g. a forward proxy, opens the
    /// tunnel) and tunnelled after its 2xx.
    Connect,
}

impl Kind {
    /// Whether the upstream's answer opened the tunnel.
    pub(super) fn switched(self, status: http::StatusCode) -> bool {
        match self {
            Self::WebSocket => status == http::StatusCode::SWITCHING_PROTOCOLS,
            Self::Connect => status.is_success(),
        }
    }
}

/// What `req` asks to tunnel, among what the connection manager carries: a WebSocket upgrade
/// (HTTP/1.1, `Upgrade: websocket` and `Connection: upgrade`, tokens compared
/// case-insensitively, as Envoy does) or an HTTP/1.1 `CONNECT`. Costs a method comparison and
/// one header lookup on ordinary requests.
pub(super) fn requested<B>(req: &Request<B>, websocket: bool, connect: bool) -> Option<Kind> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    if req.method() == http::Method::CONNECT {
        return connect.then_some(Kind::Connect);
    }
    (websocket
        && req.headers().contains_key(header::UPGRADE)
        && has_token(req.headers(), &header::UPGRADE, "websocket")
        && has_token(req.headers(), &header::CONNECTION, "upgrade"))
    .then_some(Kind::WebSocket)
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Removes hop-by-hop headers except the upgrade's own: `Connection: upgrade` and `Upgrade`
/// (its value as received) go on to the next hop.
pub(super) fn strip_hop_by_hop_keeping_upgrade(headers: &mut HeaderMap, request: bool) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers, request);
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
}

/// An upgrade answered with `101`: the upstream stream, and the downstream one hyper hands
/// over once it has written the `101`.
pub(crate) struct Tunnel {
    pub downstream: OnUpgrade,
    pub upstream: Upgraded,
    pub endpoint: SocketAddr,
    /// The endpoint counts the tunnel as a request in flight while it lasts.
    pub in_flight: Option<InFlight>,
}

/// Where a downstream connection's handler leaves its tunnel for the connection's task, which
/// runs it once hyper is done with the connection (one upgrade per HTTP/1.1 connection; a
/// connection without one never touches it).
#[derive(Default)]
pub(crate) struct Slot(Mutex<Option<Tunnel>>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upgrade::Slot")
    }
}

impl Slot {
    pub fn put(&self, tunnel: Tunnel) {
        *self.0.lock() = Some(tunnel);
    }

    pub fn take(&self) -> Option<Tunnel> {
        self.0.lock().take()
    }
}

/// Splices the two upgraded streams until both sides are done, one fails (the downstream
/// socket's idle timeout among them), or the drain period runs out: from `drain_deadline` when
/// the connection was already draining, else from when `drain` fires.
pub(super) async fn run(
    tunnel: Tunnel,
    peer: SocketAddr,
    drain: &CancellationToken,
    drain_deadline: Option<Instant>,
    drain_period: Duration,
) {
    let endpoint = tunnel.endpoint;
    let downstream = match tunnel.downstream.await {
        Ok(downstream) => downstream,
        Err(e) => {
            // The client went away before hyper could hand the connection over.
            tracing::debug!(%peer, %endpoint, error = %e, "downstream upgrade failed: tunnel not opened");
            return;
        }
    };
    let _in_flight = tunnel.in_flight;
    let mut downstream = TokioIo::new(downstream);
    let mut upstream = TokioIo::new(tunnel.upstream);
    let copy = tokio::io::copy_bidirectional(&mut downstream, &mut upstream);
    tokio::pin!(copy);
    let deadline = match drain_deadline {
        Some(deadline) => deadline,
        None => tokio::select! {
            result = copy.as_mut() => return done(peer, endpoint, result),
            () = drain.cancelled() => Instant::now() + drain_period,
        },
    };
    match tokio::time::timeout_at(deadline, copy).await {
        Ok(result) => done(peer, endpoint, result),
        Err(_) => {
            tracing::debug!(%peer, %endpoint, "drain period over: closing the upgraded connection");
        }
    }
}

fn done(peer: SocketAddr, endpoint: SocketAddr, result: std::io::Result<(u64, u64)>) {
    match result {
        Ok((sent, received)) => {
            tracing::trace!(%peer, %endpoint, sent, received, "upgraded connection done");
        }
        Err(e) => {
            tracing::debug!(%peer, %endpoint, error = %e, "upgraded connection ended with error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::get("/chat").version(version);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    fn websocket(req: &Request<()>) -> bool {
        requested(req, true, true) == Some(Kind::WebSocket)
    }

    #[test]
    fn websocket_handshakes_are_recognised() {
        let handshake = [("connection", "Upgrade"), ("upgrade", "websocket")];
        assert!(websocket(&request(Version::HTTP_11, &handshake)));
        // Not carried by this connection manager: an ordinary request.
        assert_eq!(
            requested(&request(Version::HTTP_11, &handshake), false, true),
            None
        );
        // Tokens in lists, any case (Firefox sends "keep-alive, Upgrade").
        assert!(websocket(&request(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket")
            ]
        )));
        assert!(websocket(&request(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive"),
                ("connection", "upgrade"),
                ("upgrade", "websocket")
            ]
        )));
    }

    #[test]
    fn connect_requests_are_tunnels_where_carried() {
        let connect = |version| {
            Request::connect("forward-proxy.example:3128")
                .version(version)
                .body(())
                .unwrap()
        };
        assert_eq!(
            requested(&connect(Version::HTTP_11), false, true),
            Some(Kind::Connect)
        );
        assert_eq!(requested(&connect(Version::HTTP_11), true, false), None);
        assert_eq!(requested(&connect(Version::HTTP_2), true, true), None);
        // The upstream opens a CONNECT tunnel with any 2xx, a WebSocket with 101 only.
        assert!(Kind::Connect.switched(http::StatusCode::OK));
        assert!(Kind::Connect.switched(http::StatusCode::NO_CONTENT));
        assert!(!Kind::Connect.switched(http::StatusCode::SWITCHING_PROTOCOLS));
        assert!(!Kind::Connect.switched(http::StatusCode::PROXY_AUTHENTICATION_REQUIRED));
        assert!(Kind::WebSocket.switched(http::StatusCode::SWITCHING_PROTOCOLS));
        assert!(!Kind::WebSocket.switched(http::StatusCode::OK));
    }

    #[test]
    fn other_requests_are_not_upgrades() {
        for (version, headers) in [
            // No Connection: upgrade, or no Upgrade.
            (Version::HTTP_11, &[("upgrade", "websocket")][..]),
            (Version::HTTP_11, &[("connection", "upgrade")][..]),
            // Another protocol.
            (
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            ),
            // HTTP/1.0 has no upgrades; HTTP/2 would need extended CONNECT.
            (
                Version::HTTP_10,
                &[("connection", "upgrade"), ("upgrade", "websocket")][..],
            ),
            (
                Version::HTTP_2,
                &[("connection", "upgrade"), ("upgrade", "websocket")][..],
            ),
            (Version::HTTP_11, &[][..]),
        ] {
            assert_eq!(
                requested(&request(version, headers), true, true),
                None,
                "{version:?} {headers:?}"
            );
        }
    }

    #[test]
    fn upgrade_headers_survive_the_hop_by_hop_strip() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade, x-hop"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZQ=="),
        );
        strip_hop_by_hop_keeping_upgrade(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZQ==");
        assert!(
            !h.contains_key("keep-alive") && !h.contains_key("x-hop"),
            "{h:?}"
        );
        assert_eq!(h.len(), 3, "{h:?}");
    }
}
