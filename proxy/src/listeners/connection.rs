//! One accepted connection, from the socket to its filter chain's network filter.
//!
//! ```text
//!  accepted ─► destination: SO_ORIGINAL_DST (original_dst listener filter) │ local address
//!           ─► select::candidates (port, IP) ─► [inspect.rs: TLS / HTTP, only if they differ]
//!           ─► select::choose ─► none: closed (STRICT plaintext: warned, naming the policy)
//!           ─► tls/accept.rs: plaintext │ the chain's TLS
//!           ─► Network::Http ─► http::serve_connection     Network::Tcp ─► tcp::proxy
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::inspect::{self, Seen};
use super::select;
use super::stats::Telemetry;
use crate::config::{Network, ProxyConfig, TransportProtocol};
use crate::limits::DownstreamLimits;
use crate::tls::MeshTls;
use crate::tls::accept::AcceptError;

/// Which chain of which listener serves a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRef {
    /// The listener's configured address (its key in the snapshot).
    pub listener: SocketAddr,
    pub chain: usize,
}

/// What a connection's handling needs besides the socket.
pub(super) struct Context {
    pub addr: SocketAddr,
    pub rx: watch::Receiver<Arc<ProxyConfig>>,
    pub token: CancellationToken,
    pub period: Duration,
    pub limits: Arc<DownstreamLimits>,
    pub tls: MeshTls,
    pub telemetry: Telemetry,
}

/// Serves one accepted connection until it ends.
pub(super) async fn serve(accepted: weft_net::Accepted, cx: Context) {
    let peer = accepted.peer;
    let mut io = accepted.io;
    let config = cx.rx.borrow().clone();
    let Some(active) = config.listener(&cx.addr) else {
        return;
    };
    let listener = &active.config;
    let destination = destination(io.get_ref(), listener.original_dst).unwrap_or(cx.addr);
    let candidates = select::candidates(listener, destination);
    let seen = if select::needs_inspection(listener, &candidates) {
        // A client that sends nothing at all is held no longer than the first-byte timeout,
        // whichever of the two ends first.
        let mut inspectors = listener.inspectors;
        let first_byte = cx.limits.header_read_timeout;
        let silenced = match (first_byte, inspectors.timeout) {
            (Some(first), Some(detect)) if first < detect => true,
            (Some(_), None) => true,
            _ => false,
        };
        if silenced {
            inspectors.timeout = first_byte;
        }
        match inspect::inspect(io.get_ref(), inspectors).await {
            Ok(seen) if seen.timed_out && silenced => {
                tracing::debug!(%peer, listener = %listener.name, "the first bytes (TLS hello or request line) did not arrive within the first-byte timeout: connection closed");
                return;
            }
            Ok(seen) => seen,
            Err(e) => {
                tracing::debug!(%peer, listener = %listener.name, error = %e, "reading the first bytes failed");
                return;
            }
        }
    } else {
        Seen::default()
    };
    if seen.timed_out {
        cx.telemetry
            .stats
            .detection_timeout(&listener.name, destination.port());
        if !listener.inspectors.continue_on_timeout {
            tracing::debug!(%peer, listener = %listener.name, %destination, "protocol detection timed out: connection closed");
            return;
        }
        tracing::debug!(%peer, listener = %listener.name, %destination, "protocol detection timed out: treated as opaque TCP");
    }
    let Some(index) = select::choose(listener, &candidates, &seen) else {
        let wanted_tls = candidates.iter().any(|&i| {
            listener.chains[i].matcher.transport_protocol == Some(TransportProtocol::Tls)
        });
        if wanted_tls && seen.transport == Some(TransportProtocol::RawBuffer) {
            let info = listener.mtls.clone().unwrap_or_default();
            let err = AcceptError::PlaintextRefused {
                peer,
                listener: listener.name.clone(),
                mode: if info.mode.is_empty() {
                    "STRICT".to_string()
                } else {
                    info.mode
                },
                policy: if info.policy.is_empty() {
                    "no PeerAuthentication named".to_string()
                } else {
                    format!("PeerAuthentication {}", info.policy)
                },
            };
            tracing::warn!("{err}");
        } else {
            tracing::debug!(%peer, listener = %listener.name, %destination, ?seen, "no filter chain matches: connection closed");
        }
        return;
    };
    let chain = &listener.chains[index];
    if let Network::Tcp(tcp) = &chain.network {
        // Opaque bytes: no first-byte deadline (server-first protocols), the proxy's idle timeout.
        io.set_timeouts(None, tcp.idle_timeout);
    }
    let peer_exchange = matches!(&chain.network, Network::Tcp(tcp) if tcp.peer_exchange);
    let accepted = crate::tls::accept::accept(io, peer, chain.tls.as_ref(), peer_exchange, &cx.tls);
    let secured = match accepted.await {
        Ok(secured) => secured,
        Err(err) => {
            tracing::debug!("{err}");
            return;
        }
    };
    let at = ChainRef {
        listener: cx.addr,
        chain: index,
    };
    match &chain.network {
        Network::Http(_) => {
            crate::http::serve_connection(
                secured,
                peer,
                destination,
                at,
                cx.rx,
                cx.token,
                cx.period,
                cx.limits,
                &cx.telemetry.metrics,
                &cx.telemetry.tracer,
            )
            .await;
        }
        Network::Tcp(_) => {
            let target = crate::tcp::TcpTarget {
                listener,
                chain: index,
                clusters: active.chains.get(index).map_or(&[], |c| &c.clusters),
                drain: cx.token,
                drain_period: cx.period,
                tls: &cx.tls,
                metrics: &cx.telemetry.metrics,
            };
            crate::tcp::proxy(secured, peer, destination, target).await;
        }
    }
}

/// Where the client was going: the original destination of a redirected connection, else the
/// address it connected to.
fn destination(stream: &TcpStream, original_dst: bool) -> Option<SocketAddr> {
    let local = stream.local_addr().ok();
    if !original_dst {
        return local;
    }
    let socket = socket2::SockRef::from(stream);
    let original = match local {
        Some(SocketAddr::V6(_)) => socket.original_dst_v6(),
        _ => socket.original_dst_v4(),
    };
    // Not redirected (no NAT entry): the connection was addressed to the listener itself.
    original.ok().and_then(|a| a.as_socket()).or(local)
}
