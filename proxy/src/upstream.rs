//! Upstream clusters at run time: config + balancer + pooled clients, built once per config push.
//!
//! ```text
//!  ClusterConfig + Assignment ─► Cluster { Balancer (atomics), Client h1 | h2c } ◄─ Pools (shared, long-lived)
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;

use crate::balance::Balancer;
use crate::config::{Assignment, ClusterConfig, UpstreamProtocol};

/// The pooled client type: plain TCP, request bodies streamed from the downstream.
pub type HttpClient = Client<HttpConnector, Incoming>;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Long-lived client pools, one per (protocol, connect timeout); survive config pushes.
#[derive(Default)]
pub struct Pools {
    clients: Mutex<HashMap<(bool, Duration), HttpClient>>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("clients", &self.clients.lock().len())
            .finish()
    }
}

impl Pools {
    /// Returns the shared client (config-time only; the data path holds clones).
    pub fn client(&self, http2: bool, connect_timeout: Duration) -> HttpClient {
        self.clients
            .lock()
            .entry((http2, connect_timeout))
            .or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(connect_timeout));
                let mut builder = Client::builder(TokioExecutor::new());
                builder
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .pool_timer(TokioTimer::new())
                    .set_host(false);
                if http2 {
                    builder.http2_only(true).timer(TokioTimer::new());
                }
                builder.build(connector)
            })
            .clone()
    }
}

/// A cluster ready for the data path.
pub struct Cluster {
    pub config: ClusterConfig,
    pub assignment: Assignment,
    pub balancer: Balancer,
    http1: Option<HttpClient>,
    http2: Option<HttpClient>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("balancer", &self.balancer)
            .finish()
    }
}

impl Cluster {
    pub fn new(
        config: ClusterConfig,
        assignment: Assignment,
        pools: &Pools,
        previous: Option<&Cluster>,
    ) -> Self {
        let balancer = Balancer::new(
            config.lb_policy,
            &assignment.endpoints,
            previous
                .filter(|p| p.config.lb_policy == config.lb_policy)
                .map(|p| &p.balancer),
        );
        let (h1, h2) = match config.protocol {
            UpstreamProtocol::Http1 => (true, false),
            UpstreamProtocol::Http2 => (false, true),
            UpstreamProtocol::Downstream => (true, true),
        };
        Self {
            http1: h1.then(|| pools.client(false, config.connect_timeout)),
            http2: h2.then(|| pools.client(true, config.connect_timeout)),
            config,
            assignment,
            balancer,
        }
    }

    /// The client for a request that arrived as HTTP/2 (`downstream_h2`) or not.
    pub fn client(&self, downstream_h2: bool) -> Option<&HttpClient> {
        match self.config.protocol {
            UpstreamProtocol::Http1 => self.http1.as_ref(),
            UpstreamProtocol::Http2 => self.http2.as_ref(),
            UpstreamProtocol::Downstream if downstream_h2 => self.http2.as_ref(),
            UpstreamProtocol::Downstream => self.http1.as_ref(),
        }
    }

    /// Whether this cluster speaks HTTP/2 for a request with the given downstream protocol.
    pub fn uses_http2(&self, downstream_h2: bool) -> bool {
        match self.config.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Downstream => downstream_h2,
        }
    }
}

/// Shared so the store and tests can hold the same pools.
pub type SharedPools = Arc<Pools>;
