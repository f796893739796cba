//! The TCP proxy (`envoy.filters.network.tcp_proxy`): a connection's bytes, both ways, to one
//! endpoint of its filter chain's cluster.
//!
//! ```text
//!  Accepted (plaintext │ mTLS) ─► network RBAC (each filter must allow)
//!    ─► cluster of the chain: `cluster` │ `weighted_clusters` (one picked per connection, by weight)
//!    ─► Cluster::pick(original destination) ─► none: closed (BlackHoleCluster: REGISTRY_ONLY, logged)
//!    ─► connect.rs: TCP (from upstream_bind_config) ─► [TLS per the endpoint's transport socket]
//!    ─► copy both ways until both sides are done (half-close kept), the idle timeout
//!       (GuardedIo), or drain: the drain period, then closed
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rand::RngExt;
use tokio_util::sync::CancellationToken;
use weft_net::RateLimitedLog;
use weft_xds::contract::BLACKHOLE_CLUSTER;

use crate::access_log::Entry;
use crate::authz::{ConnFacts, Facts};
use crate::config::{Listener, Network};
use crate::error::ResponseFlags;
use crate::metrics::view::Dimensions;
use crate::metrics::{Counted, Metrics, Peer, Reporter, Secured, Service, TcpKey};
use crate::tls::MeshTls;
use crate::tls::accept::Accepted;
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
    let listener = &t.listener.name;
    let facts = Facts::network(ConnFacts {
        peer,
        local: destination,
        principal: downstream.principal.as_deref(),
        sni: downstream.sni.as_deref(),
    });
    if let Some(denied) = config
        .rbac
        .iter()
        .map(|r| r.evaluate(&facts))
        .find(|d| d.is_denied())
    {
        tracing::debug!(%peer, %destination, %listener, policy = denied.policy().unwrap_or(""), "RBAC: connection denied");
        return;
    }
    let entry = match config.total_weight() {
        0 | 1 => 0,
        total => config.pick(rand::rng().random_range(0..total)),
    };
    let Some(name) = config.clusters.get(entry).map(|c| c.name.as_str()) else {
        return;
    };
    // The connection's metrics labels, once its cluster and the upstream's TLS are known; none
    // when the chain records no metrics (no istio.stats filter).
    let reporter = t.listener.direction.reporter();
    let stats = config.stats.as_ref().filter(|_| t.metrics.enabled());
    let key = |service: Option<&Service>,
               flags: ResponseFlags,
               upstream_mtls: bool,
               upstream: Option<SocketAddr>|
     -> Option<TcpKey> {
        let stats = stats?;
        let dimensions = if stats.needs_attributes() {
            stats.values(&Entry {
                start: std::time::SystemTime::now(),
                duration: Duration::ZERO,
                request: None,
                response_headers: None,
                code: 0,
                flags,
                grpc_status: None,
                bytes_received: 0,
                bytes_sent: 0,
                upstream_host: upstream,
                via_upstream: false,
                upstream_cluster: Some(name),
                route_name: None,
                downstream_local: destination,
                downstream_remote: peer,
                sni: downstream.sni.as_deref(),
                downstream_peer: downstream.principal.as_deref(),
                upstream_peer: None,
                trace_id: None,
            })
        } else {
            Dimensions::default()
        };
        let secured = match reporter {
            Reporter::Destination => Secured::inbound(downstream.principal.as_ref()),
            // No metadata exchange on opaque TCP yet: the server's identity is not known.
            Reporter::Source => Secured::outbound(upstream_mtls, None),
        };
        Some(TcpKey {
            reporter,
            // No metadata exchange on opaque TCP yet: the peer's workload is not known.
            peer: Peer::unknown(),
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
        if let Some(series) = series_of(key(None, ResponseFlags::NO_CLUSTER_FOUND, false, None)) {
            series.failed();
        }
        return;
    };
    let service = &cluster.config.service;
    let Some(endpoint) = cluster.pick(destination) else {
        if let Some(series) = series_of(key(
            Some(service),
            ResponseFlags::NO_HEALTHY_UPSTREAM,
            false,
            None,
        )) {
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
            if let Some(series) = series_of(key(
                Some(service),
                ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
                false,
                Some(endpoint.addr),
            )) {
                series.failed();
            }
            return;
        }
    };
    let tls = matches!(mode, TlsMode::Tls(_));
    let mesh_tls = mode.is_mesh();
    tracing::trace!(%peer, %destination, upstream = %endpoint.addr, tls, "proxying");
    let series = series_of(key(
        Some(service),
        ResponseFlags::NONE,
        mesh_tls,
        Some(endpoint.addr),
    ));
    let mut downstream = match series {
        Some(series) => tokio_util::either::Either::Left(Counted::new(downstream.io, series)),
        None => tokio_util::either::Either::Right(downstream.io),
    };
    let mut upstream = upstream;
    let copy = tokio::io::copy_bidirectional(&mut downstream, &mut upstream);
    tokio::pin!(copy);
    let result = tokio::select! {
        result = copy.as_mut() => result,
        () = t.drain.cancelled() => {
            match tokio::time::timeout(t.drain_period, copy.as_mut()).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    match result {
        Ok((sent, received)) => {
            tracing::trace!(%peer, %destination, sent, received, "TCP connection done");
        }
        Err(e) => {
            tracing::debug!(%peer, %destination, %listener, error = %e, "TCP connection ended with error");
        }
    }
}
