//! The TCP proxy (`envoy.filters.network.tcp_proxy`): a connection's bytes, both ways, to one
//! endpoint of its filter chain's cluster.
//!
//! ```text
//!  Accepted (plaintext │ mTLS) ─► network RBAC (each filter must allow)
//!    ─► cluster of the chain: `cluster` │ `weighted_clusters` (one picked per connection, by weight)
//!    ─► Cluster::pick(original destination) ─► none: closed (BlackHoleCluster: REGISTRY_ONLY, logged)
//!    ─► connect.rs: TCP (from upstream_bind_config) ─► [TLS per the endpoint's transport socket]
//!    ─► metadata exchange (metrics/tcp_exchange.rs): with the downstream when the chain has
//!       istio.metadata_exchange and its TLS chose istio-peer-exchange; with the upstream when
//!       the cluster has it and the server chose it ─► the peer's workload for the metrics
//!    ─► copy both ways until both sides are done (half-close kept), the idle timeout
//!       (GuardedIo), or drain: the drain period, then closed
//!    ─► the chain's access logs (access_log/tcp.rs): one line when it ends, refused (RBAC,
//!       NC, UH, UF) or not
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use rand::RngExt;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use weft_net::RateLimitedLog;
use weft_xds::contract::BLACKHOLE_CLUSTER;

use crate::access_log::tcp::{TcpEnd, TcpLog};
use crate::authz::{ConnFacts, Facts};
use crate::config::{Listener, Network};
use crate::error::ResponseFlags;
use crate::metrics::tcp_exchange::{self, Exchanged, Prefixed};
use crate::metrics::view::Dimensions;
use crate::metrics::{Counted, Metrics, Peer, Reporter, Secured, Service, TcpKey};
use crate::tls::MeshTls;
use crate::tls::accept::Accepted;
use crate::upstream::connect::{ConnectError, UpstreamIo};
use crate::upstream::{Cluster, TlsMode, connect};

/// Logs of blocked destinations: at most one per second (a scanning app must not flood the log).
static BLOCKED_LOG: LazyLock<RateLimitedLog> =
    LazyLock::new(|| RateLimitedLog::new(Duration::from_secs(1)));

/// What a proxied connection needs besides its socket.
pub struct TcpTarget<'a> {
    pub listener: &'a Listener,
    pub chain: usize,
    /// The chain's clusters by entry of its `TcpProxy::clusters`; `None` when not configured.
    pub clusters: &'a [Option<Arc<Cluster>>],
    pub drain: CancellationToken,
    pub drain_period: Duration,
    pub tls: &'a MeshTls,
    /// Istio's TCP metrics.
    pub metrics: &'a Arc<Metrics>,
}

/// Proxies `downstream` (to `destination`, its original destination) until it ends.
pub async fn proxy(
    downstream: Accepted,
    peer: SocketAddr,
    destination: SocketAddr,
    t: TcpTarget<'_>,
) {
    let Network::Tcp(config) = &t.listener.chains[t.chain].network else {
        return;
    };
    let peer_exchange = downstream.peer_exchange();
    let Accepted {
        io, principal, sni, ..
    } = downstream;
    let log = TcpLog::new(
        &config.access_logs,
        peer,
        destination,
        sni.as_deref(),
        principal.as_deref(),
    );
    let write_log = |end: TcpEnd<'_>| {
        if let Some(log) = &log {
            log.write(&end);
        }
    };
    let listener = &t.listener.name;
    let facts = Facts::network(ConnFacts {
        peer,
        local: destination,
        principal: principal.as_deref(),
        sni: sni.as_deref(),
    });
    if let Some(denied) = config
        .rbac
        .iter()
        .map(|r| r.evaluate(&facts))
        .find(|d| d.is_denied())
    {
        let policy = denied.policy().unwrap_or("none");
        tracing::debug!(%peer, %destination, %listener, policy, "RBAC: connection denied");
        let details = format!("rbac_access_denied_matched_policy[{policy}]");
        write_log(TcpEnd {
            termination: Some(&details),
            ..TcpEnd::default()
        });
        return;
    }
    let entry = match config.total_weight() {
        0 | 1 => 0,
        total => config.pick(rand::rng().random_range(0..total)),
    };
    let Some(name) = config.clusters.get(entry).map(|c| c.name.as_str()) else {
        return;
    };
    // The connection's metrics labels, once its cluster, the upstream's TLS and the peer (from
    // the metadata exchange) are known; none when the chain records no metrics (no istio.stats
    // filter).
    let reporter = t.listener.direction.reporter();
    let stats = config.stats.as_ref().filter(|_| t.metrics.enabled());
    let key = |service: Option<&Service>,
               flags: ResponseFlags,
               upstream_mtls: bool,
               upstream: Option<SocketAddr>,
               workload: Peer|
     -> Option<TcpKey> {
        let stats = stats?;
        let dimensions = if stats.needs_attributes() {
            let end = TcpEnd {
                flags,
                cluster: Some(name),
                upstream,
                ..TcpEnd::default()
            };
            stats.values(&crate::access_log::tcp::entry(
                std::time::SystemTime::now(),
                Duration::ZERO,
                (peer, destination),
                sni.as_deref(),
                principal.as_deref(),
                &end,
            ))
        } else {
            Dimensions::default()
        };
        let secured = match reporter {
            Reporter::Destination => Secured::inbound(principal.as_ref()),
            // The server's identity, as its metadata says (as for HTTP).
            Reporter::Source => {
                Secured::outbound(upstream_mtls, workload.spiffe_id(t.metrics.trust_domain()))
            }
        };
        Some(TcpKey {
            reporter,
            peer: workload,
            peer_principal: secured.peer_principal,
            mtls: secured.mtls,
            service: service.cloned().unwrap_or_else(Service::unknown),
            flags,
            security: secured.security,
            stats: stats.clone(),
            dimensions,
        })
    };
    let series_of = |key: Option<TcpKey>| key.and_then(|k| t.metrics.tcp_series(k));
    let Some(cluster) = t.clusters.get(entry).cloned().flatten() else {
        tracing::debug!(%peer, %destination, %listener, cluster = %name, "cluster not configured (NC): connection closed");
        let flags = ResponseFlags::NO_CLUSTER_FOUND;
        if let Some(series) = series_of(key(None, flags, false, None, Peer::unknown())) {
            series.failed();
        }
        write_log(TcpEnd {
            flags,
            ..TcpEnd::default()
        });
        return;
    };
    let service = &cluster.config.service;
    let Some(endpoint) = cluster.pick(destination) else {
        let flags = ResponseFlags::NO_HEALTHY_UPSTREAM;
        if let Some(series) = series_of(key(Some(service), flags, false, None, Peer::unknown())) {
            series.failed();
        }
        if name == BLACKHOLE_CLUSTER {
            if let Some(suppressed) = BLOCKED_LOG.allow() {
                tracing::warn!(
                    %peer,
                    %destination,
                    %listener,
                    suppressed,
                    "outbound connection blocked: no service of the mesh has this address and port, and the outbound traffic policy is REGISTRY_ONLY (add a ServiceEntry to allow it)"
                );
            }
        } else {
            tracing::debug!(%peer, %destination, %listener, cluster = %name, "no healthy upstream (UH): connection closed");
        }
        write_log(TcpEnd {
            flags,
            cluster: Some(name),
            ..TcpEnd::default()
        });
        return;
    };
    let _in_flight = endpoint.start_request();
    let mode = cluster.tls_for(endpoint.addr);
    let upstream = match connect::open(
        endpoint.addr,
        cluster.config.source_address,
        &mode,
        None,
        cluster.config.connect_timeout,
        t.tls,
    )
    .await
    {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::debug!(%peer, %destination, %listener, cluster = %name, error = %e, "upstream connect failed (UF): connection closed");
            let flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
            if let Some(series) = series_of(key(
                Some(service),
                flags,
                false,
                Some(endpoint.addr),
                Peer::unknown(),
            )) {
                series.failed();
            }
            let failure = match &e {
                ConnectError::TlsSetup { source, .. } => Some(source.to_string()),
                ConnectError::TlsHandshake { source, .. } => Some(source.to_string()),
                _ => None,
            };
            write_log(TcpEnd {
                flags,
                cluster: Some(name),
                upstream: Some(endpoint.addr),
                failure: failure.as_deref(),
                ..TcpEnd::default()
            });
            return;
        }
    };
    let tls = matches!(mode, TlsMode::Tls(_));
    let mesh_tls = mode.is_mesh();
    let upstream_local = upstream_local(&upstream);
    // Parsing the certificate costs: only for a line that shows it.
    let upstream_peer = log.as_ref().and_then(|_| upstream_principal(&upstream));
    let mut io = io;
    let mut upstream = upstream;
    // Istio's metadata exchange, before any byte of the app: with the client, then the server.
    let own = t.metrics.own_frame();
    let client = if config.peer_exchange && peer_exchange {
        Some(exchanged(
            tcp_exchange::exchange(&mut io, own, tcp_exchange::TIMEOUT).await,
            peer,
            "client",
        ))
    } else {
        None
    };
    let server = if cluster.config.peer_exchange && chose_peer_exchange(&upstream) {
        Some(exchanged(
            tcp_exchange::exchange(&mut upstream, own, tcp_exchange::TIMEOUT).await,
            endpoint.addr,
            "server",
        ))
    } else {
        None
    };
    let the_peer = match reporter {
        Reporter::Destination => client.as_ref(),
        Reporter::Source => server.as_ref(),
    }
    .map_or_else(Peer::unknown, Exchanged::peer);
    let leftover = |e: Option<Exchanged>| e.map_or_else(Bytes::new, |e| e.leftover);
    tracing::trace!(%peer, %destination, upstream = %endpoint.addr, tls, "proxying");
    let series = series_of(key(
        Some(service),
        ResponseFlags::NONE,
        mesh_tls,
        Some(endpoint.addr),
        the_peer,
    ));
    let mut downstream = Counted::new(Prefixed::new(leftover(client), io), series);
    let mut upstream = Prefixed::new(leftover(server), upstream);
    let result = {
        let copy = tokio::io::copy_bidirectional(&mut downstream, &mut upstream);
        tokio::pin!(copy);
        tokio::select! {
            result = copy.as_mut() => Some(result),
            () = t.drain.cancelled() => {
                tokio::time::timeout(t.drain_period, copy.as_mut()).await.ok()
            }
        }
    };
    match result {
        Some(Ok((received, sent))) => {
            tracing::trace!(%peer, %destination, sent, received, "TCP connection done");
        }
        Some(Err(e)) => {
            tracing::debug!(%peer, %destination, %listener, error = %e, "TCP connection ended with error");
        }
        None => {
            tracing::debug!(%peer, %destination, %listener, "drain period over: TCP connection closed");
        }
    }
    write_log(TcpEnd {
        cluster: Some(name),
        upstream: Some(endpoint.addr),
        upstream_local,
        upstream_peer: upstream_peer.as_deref(),
        received: downstream.received(),
        sent: downstream.sent(),
        ..TcpEnd::default()
    });
}

/// An exchange's result, with its failure logged.
fn exchanged(result: Exchanged, with: SocketAddr, side: &str) -> Exchanged {
    if let Err(e) = &result.peer {
        tracing::debug!(peer = %with, side, error = %e, "TCP metadata exchange: peer unknown");
    }
    result
}

/// Whether the upstream's TLS handshake chose Istio's metadata exchange.
fn chose_peer_exchange(upstream: &UpstreamIo) -> bool {
    match upstream {
        Either::Left(_) => false,
        Either::Right(tls) => {
            tls.get_ref().1.alpn_protocol() == Some(weft_identity::tls::ALPN_ISTIO_PEER_EXCHANGE)
        }
    }
}

fn upstream_local(upstream: &UpstreamIo) -> Option<SocketAddr> {
    match upstream {
        Either::Left(tcp) => tcp.local_addr().ok(),
        Either::Right(tls) => tls.get_ref().0.local_addr().ok(),
    }
}

/// The server certificate's SPIFFE ID (TLS only).
fn upstream_principal(upstream: &UpstreamIo) -> Option<String> {
    match upstream {
        Either::Left(_) => None,
        Either::Right(tls) => tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(weft_identity::verify::peer_uri),
    }
}
