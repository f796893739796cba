//! HTTP/1.1 upgrades (WebSocket): the handshake is routed like any request, sent on an upstream connection of its own, and after `101 Switching Protocols` the two upgraded streams are spliced.
//!
//! ```text
//!  downstream HTTP/1.1 GET, Connection: upgrade, Upgrade: websocket   (HCM upgrade_configs: websocket)
//!    ─► router, policy as usual: route, cluster, balancer, rewrites, header mutations
//!    ─► endpoint::send_upgrade: a new HTTP/1.1 connection (its pool's TLS and ALPN), never pooled,
//!       Connection/Upgrade kept; h2-only cluster: 503; the route timeout covers the answer only
//!    ─► not 101: an ordinary response (the dedicated connection closes after it)
//!    ─► 101: upstream stream taken over ─► 101 downstream ─► Tunnel parked in the connection's Slot
//!  serve_connection (http/mod.rs): hyper hands the downstream socket over ─► run():
//!    copy_bidirectional(downstream, upstream) until either side closes, the HCM idle timeout
//!    (the downstream socket's GuardedIo), or drain: the drain period, then closed
//! ```
//!
//! Without websocket on the connection manager, over HTTP/2, or for other upgrade types, the
//! upgrade headers are removed as hop-by-hop headers and the request is an ordinary one.

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

/// Whether `req` asks for a WebSocket upgrade: HTTP/1.1, `Upgrade: websocket` and
/// `Connection: upgrade` (tokens compared case-insensitively, as Envoy does). Costs one header
/// lookup on requests without `Upgrade`.
pub(super) fn requested<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && has_token(req.headers(), &header::UPGRADE, "websocket")
        && has_token(req.headers(), &header::CONNECTION, "upgrade")
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

    #[test]
    fn websocket_handshakes_are_recognised() {
        let handshake = [("connection", "Upgrade"), ("upgrade", "websocket")];
        assert!(requested(&request(Version::HTTP_11, &handshake)));
        // Tokens in lists, any case (Firefox sends "keep-alive, Upgrade").
        assert!(requested(&request(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket")
            ]
        )));
        assert!(requested(&request(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive"),
                ("connection", "upgrade"),
                ("upgrade", "websocket")
            ]
        )));
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
            assert!(
                !requested(&request(version, headers)),
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
