//! Outlier detection at run time: one detector per cluster (`weft_lb::outlier`), the endpoints'
//! health flags the balancer reads, and the sweep that lets ejected endpoints back.
//!
//! ```text
//!  attempt result (http/policy.rs) ─► Cluster::record ─► detector.record(endpoint's Host)
//!                                                         └─ threshold crossed ─► ejected (logged)
//!  Cluster::pick ─► some ejected and not in panic ─► Balancer::pick_where(not ejected)
//!  sweep task, every `interval` (holds a Weak: ends with the cluster's detector)
//!    └─► ejection time over ─► the endpoint returns (logged)
//! ```
//!
//! The detector and the endpoints' `Host`s outlive config pushes that keep the cluster's outlier
//! settings: an endpoint keeps its state while its address stays.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use weft_lb::outlier::{Detector, Host, Outcome};

use crate::config::outlier::OutlierConfig;

/// An endpoint's outlier state.
pub type EndpointHealth = Arc<Host<SocketAddr>>;

/// The outlier detection of one cluster.
#[derive(Debug)]
pub struct ClusterOutlier {
    cluster: String,
    config: OutlierConfig,
    detector: Detector<SocketAddr>,
    hosts: Mutex<HashMap<SocketAddr, EndpointHealth>>,
}

impl ClusterOutlier {
    /// A detector for `cluster`, with its sweep task (when a runtime is there to run it).
    pub fn start(cluster: &str, config: OutlierConfig) -> Arc<Self> {
        let this = Arc::new(Self {
            cluster: cluster.to_string(),
            detector: Detector::new(config.detection.clone()),
            config,
            hosts: Mutex::new(HashMap::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&this)));
        }
        this
    }

    /// The settings this detector runs with.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// The health of the endpoint at `addr`: its existing state, or a new one.
    pub fn host(&self, addr: SocketAddr) -> EndpointHealth {
        self.hosts
            .lock()
            .entry(addr)
            .or_insert_with(|| Arc::new(Host::with_tag(addr)))
            .clone()
    }

    /// The cluster's endpoints are now `addrs`: the others are forgotten.
    pub fn set_endpoints(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let mut hosts = self.hosts.lock();
        let mut kept = HashMap::with_capacity(hosts.len());
        for addr in addrs {
            let host = hosts
                .remove(&addr)
                .unwrap_or_else(|| Arc::new(Host::with_tag(addr)));
            kept.insert(addr, host);
        }
        *hosts = kept;
        self.detector.set_hosts(hosts.values().cloned());
    }

    /// Records an attempt's outcome for the endpoint whose health is `host`.
    pub fn record(&self, host: &Host<SocketAddr>, outcome: Outcome) {
        if let Some(ejection) = self.detector.record(host, outcome, Instant::now()) {
            tracing::warn!(
                cluster = %self.cluster,
                endpoint = %host.tag(),
                reason = %ejection.kind,
                consecutive = ejection.consecutive,
                ejected_for = ?ejection.duration,
                times_ejected = ejection.times_ejected,
                ejected_hosts = ejection.ejected_hosts,
                total_hosts = ejection.total_hosts,
                "outlier detection: endpoint ejected"
            );
        }
    }

    /// Whether some endpoint is ejected and the balancer must avoid it: not when the share of
    /// endpoints left is under the panic threshold (then every endpoint is used, as Envoy).
    pub fn avoid_ejected(&self) -> bool {
        let counts = self.detector.counts();
        counts.ejected > 0 && counts.healthy_fraction() * 100.0 >= self.config.panic_threshold
    }

    /// The detector's generation: it moves whenever an endpoint is ejected or returns.
    pub fn generation(&self) -> u64 {
        self.detector.generation()
    }

    /// Endpoints ejected now, of all.
    pub fn counts(&self) -> weft_lb::outlier::HostCounts {
        self.detector.counts()
    }

    /// The detector's counters (`outlier_detection.ejections_*`), since it was built.
    pub fn stats(&self) -> weft_lb::outlier::Stats {
        self.detector.stats()
    }
}

/// Lets ejected endpoints back, every `interval`, while the detector lives.
async fn sweep(outlier: Weak<ClusterOutlier>) {
    let Some(interval) = outlier.upgrade().map(|o| o.config.detection.interval) else {
        return;
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(outlier) = outlier.upgrade() else {
            return;
        };
        for host in outlier.detector.sweep(Instant::now()) {
            tracing::info!(
                cluster = %outlier.cluster,
                endpoint = %host.tag(),
                "outlier detection: endpoint returns"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weft_lb::outlier::Config;

    use super::*;

    fn config(max_percent: u32, panic: f64) -> OutlierConfig {
        OutlierConfig {
            detection: Config {
                consecutive_5xx: Some(2),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_percent: max_percent,
                ..Config::default()
            },
            panic_threshold: panic,
        }
    }

    #[test]
    fn hosts_keep_their_state_while_their_address_stays() {
        let outlier = ClusterOutlier::start("c", config(100, 0.0));
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        outlier.set_endpoints([a, b]);
        let host_a = outlier.host(a);
        outlier.record(&host_a, Outcome::Status(500));
        outlier.record(&host_a, Outcome::Status(500));
        assert!(host_a.is_ejected());
        assert!(outlier.avoid_ejected());
        outlier.set_endpoints([a]);
        assert!(Arc::ptr_eq(&outlier.host(a), &host_a));
        assert!(host_a.is_ejected(), "kept across the update");
        outlier.set_endpoints([b]);
        assert!(
            !outlier.host(a).is_ejected(),
            "a removed endpoint is forgotten"
        );
    }

    #[test]
    fn panic_mode_uses_every_endpoint() {
        let outlier = ClusterOutlier::start("c", config(100, 60.0));
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        outlier.set_endpoints([a, b]);
        let host_a = outlier.host(a);
        outlier.record(&host_a, Outcome::Status(503));
        outlier.record(&host_a, Outcome::Status(503));
        assert!(host_a.is_ejected());
        assert!(
            !outlier.avoid_ejected(),
            "50 % healthy is under the 60 % panic threshold"
        );
    }
}
