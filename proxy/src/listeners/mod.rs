//! Reconciles bound sockets with the LDS listeners: bind new, keep unchanged, stop and drain removed.
//!
//! ```text
//!  LDS apply ─► prepare(addresses): bind the new ones (a failure rejects only that listener)
//!            ─► config published ─► commit(final addresses): start accept loops, stop removed ones
//!  accept loop (weft-net BoundedListener: connection limits, accept backoff, first-byte timeout)
//!              ─► Drain::spawn_connection: connection.rs (destination, chain, transport)
//!                                          ─► http::serve_connection │ tcp::proxy
//!  removed listener ─► its token cancelled ─► no more accepts; its connections drain, then close
//! ```

mod connection;
pub mod inspect;
mod select;
mod stats;

pub use connection::ChainRef;
pub use stats::{ListenerStats, Telemetry};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;
use crate::drain::Drain;
use crate::limits::DownstreamLimits;
use crate::tls::MeshTls;

struct Running {
    local: SocketAddr,
    token: CancellationToken,
}

/// Owns the listening sockets, keyed by the address each listener is configured with.
pub struct ListenerManager {
    rx: watch::Receiver<Arc<ProxyConfig>>,
    drain: Drain,
    runtime: Option<Handle>,
    running: HashMap<SocketAddr, Running>,
    staged: HashMap<SocketAddr, (String, std::net::TcpListener)>,
    limits: Arc<DownstreamLimits>,
    tls: MeshTls,
    telemetry: Telemetry,
}

impl ListenerManager {
    pub fn new(
        rx: watch::Receiver<Arc<ProxyConfig>>,
        drain: Drain,
        limits: Arc<DownstreamLimits>,
    ) -> Self {
        Self {
            rx,
            drain,
            runtime: Handle::try_current().ok(),
            running: HashMap::new(),
            staged: HashMap::new(),
            tls: MeshTls::default(),
            limits,
            telemetry: Telemetry {
                stats: Arc::default(),
                metrics: Arc::new(crate::metrics::Metrics::disabled()),
                tracer: crate::trace::Tracer::detached(),
            },
        }
    }

    /// The counters of every listener's connections.
    pub fn stats(&self) -> Arc<ListenerStats> {
        self.telemetry.stats.clone()
    }

    /// The actual local address of the socket for configured address `addr`.
    pub fn local_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.running.get(&addr).map(|r| r.local)
    }

    /// Binds every address not bound yet. Returns `(listener name, error)` for each address
    /// that could not be bound; running sockets are untouched.
    pub fn prepare<'a>(
        &mut self,
        desired: impl Iterator<Item = (&'a str, SocketAddr)>,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (name, addr) in desired {
            if self.running.contains_key(&addr) || self.staged.contains_key(&addr) {
                continue;
            }
            match weft_net::bind(addr) {
                Ok(socket) => {
                    self.staged.insert(addr, (name.to_string(), socket));
                }
                Err(e) => errors.push((
                    name.to_string(),
                    format!("listener {name:?}: cannot bind {addr}: {e}"),
                )),
            }
        }
        errors
    }

    /// Starts accepting on the prepared sockets that are in `active`; stops (and drains) the
    /// running ones that are not; closes prepared sockets that were not used.
    pub fn commit(&mut self, active: &[SocketAddr]) {
        let removed: Vec<SocketAddr> = self
            .running
            .keys()
            .filter(|a| !active.contains(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(r) = self.running.remove(&addr) {
                tracing::info!(%addr, "listener removed: no longer accepting; its connections drain");
                r.token.cancel();
            }
        }
        let staged = std::mem::take(&mut self.staged);
        let Some(runtime) = self.runtime.clone() else {
            tracing::error!("no Tokio runtime: cannot start listeners");
            return;
        };
        let _enter = runtime.enter();
        for (addr, (name, socket)) in staged {
            if !active.contains(&addr) {
                continue;
            }
            let local = socket.local_addr().unwrap_or(addr);
            let listener = match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot register listener socket");
                    continue;
                }
            };
            let token = self.drain.listener_token();
            let limits = self.limits.traffic();
            tracing::info!(
                listener = %name,
                %addr,
                %local,
                max_connections = limits.max_connections,
                "listening"
            );
            let bounded = weft_net::BoundedListener::new(
                listener,
                name,
                limits,
                Some(self.limits.budget.clone()),
            );
            runtime.spawn(accept_loop(
                bounded,
                addr,
                self.rx.clone(),
                self.drain.clone(),
                token.clone(),
                self.limits.clone(),
                self.tls.clone(),
                self.telemetry.clone(),
            ));
            self.running.insert(addr, Running { local, token });
        }
    }
}

impl ListenerManager {
    /// Where TLS listeners get their server configuration (the proxy's identity).
    pub fn set_tls(&mut self, tls: MeshTls) {
        self.tls = tls;
    }

    /// Where connections and requests are recorded (Istio's metrics).
    pub fn set_metrics(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        self.telemetry.metrics = metrics;
    }

    /// Where sampled requests' spans go.
    pub fn set_tracer(&mut self, tracer: Arc<crate::trace::Tracer>) {
        self.telemetry.tracer = tracer;
    }
}

impl Drop for ListenerManager {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.token.cancel();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    mut listener: weft_net::BoundedListener,
    addr: SocketAddr,
    rx: watch::Receiver<Arc<ProxyConfig>>,
    drain: Drain,
    token: CancellationToken,
    limits: Arc<DownstreamLimits>,
    tls: MeshTls,
    telemetry: Telemetry,
) {
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let cx = connection::Context {
            addr,
            rx: rx.clone(),
            token: token.clone(),
            period: drain.period(),
            limits: limits.clone(),
            tls: tls.clone(),
            telemetry: telemetry.clone(),
        };
        drain.spawn_connection(connection::serve(accepted, cx));
    }
}
