//! Endpoints of an `ORIGINAL_DST` cluster: one per original destination seen, made on first
//! use and kept (with its pools) while the map has room, as Envoy's original-destination
//! cluster adds hosts on the fly.
//!
//! ```text
//!  pick(destination) ─► map[destination] ─► Endpoint { pools (not in the PoolRegistry) }
//!                       absent: made now; a full map first drops (and closes) the idle ones
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;

use super::balance::{Endpoint, EndpointPools};
use super::pool::{Pool, PoolKey, PoolSettings, TlsMode};
use crate::tls::MeshTls;

/// Destinations kept at most; beyond, an endpoint is made per use and not kept.
const MAX_DESTINATIONS: usize = 1024;

pub(super) struct OriginalDstEndpoints {
    protocols: (bool, bool),
    settings: PoolSettings,
    tls: TlsMode,
    source: Option<IpAddr>,
    mesh_tls: MeshTls,
    // A lock per cluster, taken only for passthrough traffic, for a map lookup.
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
}

impl OriginalDstEndpoints {
    pub fn new(
        protocols: (bool, bool),
        settings: PoolSettings,
        tls: TlsMode,
        source: Option<IpAddr>,
        mesh_tls: MeshTls,
    ) -> Self {
        Self {
            protocols,
            settings,
            tls,
            source,
            mesh_tls,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint for `destination`.
    pub fn endpoint(&self, destination: SocketAddr) -> Arc<Endpoint> {
        let mut endpoints = self.endpoints.lock();
        if let Some(endpoint) = endpoints.get(&destination) {
            return endpoint.clone();
        }
        if endpoints.len() >= MAX_DESTINATIONS {
            endpoints.retain(|_, e| {
                let busy = e.in_flight() > 0;
                if !busy {
                    e.pools().for_each(|p| p.close());
                }
                busy
            });
        }
        let endpoint = Arc::new(self.make(destination));
        if endpoints.len() < MAX_DESTINATIONS {
            endpoints.insert(destination, endpoint.clone());
        }
        endpoint
    }

    fn make(&self, addr: SocketAddr) -> Endpoint {
        let pool = |protocol| {
            Arc::new(Pool::with_tls(
                PoolKey {
                    addr,
                    protocol,
                    tls: self.tls.clone(),
                    source: self.source,
                    keepalive: None,
                },
                self.settings,
                self.mesh_tls.clone(),
            ))
        };
        Endpoint::new(addr, 1, EndpointPools::for_protocols(self.protocols, pool))
    }
}

impl Drop for OriginalDstEndpoints {
    fn drop(&mut self) {
        for endpoint in self.endpoints.get_mut().values() {
            endpoint.pools().for_each(|p| p.close());
        }
    }
}
