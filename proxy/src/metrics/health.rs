//! The proxy's own health, computed at scrape time from the state the proxy already keeps,
//! under Envoy's names (and Istio's `cluster_name` label) where Envoy has them, so Envoy's
//! dashboards and alerts read Weft's proxies: the xDS connection and updates, the workload
//! certificate's expiry, and per cluster its connections, requests and outlier ejections.
//!
//! ```text
//!  scrape ─► ProxyHealth::encode ─┬─ XdsState (connection, per type: version, ACK/NACK counts)
//!                                 ├─ identity watch (the current certificate's notAfter)
//!                                 └─ ProxyConfig watch ─► clusters ─► endpoints, pools, breakers, outlier
//! ```
//!
//! Nothing here runs per request. Series are bounded: one per xDS type, one per cluster (never
//! per endpoint). Envoy's counters keep Envoy's names (no `_total`), so they are exposed as
//! gauges whose value only grows; Weft's own counters follow Prometheus' conventions.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;

use crate::config::ProxyConfig;
use crate::config::xds_state::XdsState;

/// What the health metrics read.
#[derive(Debug)]
pub struct ProxyHealth {
    pub xds: Arc<XdsState>,
    pub config: watch::Receiver<Arc<ProxyConfig>>,
    pub identity: Option<crate::identity::Identity>,
}

/// One cluster's numbers at a scrape.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClusterHealth {
    pub name: String,
    pub cx_active: u64,
    pub rq_active: u64,
    pub rq_pending_active: u64,
    pub membership_total: u64,
    pub membership_healthy: u64,
    pub ejections_active: u64,
    pub ejections_enforced_total: u64,
}

/// The numbers of every cluster, sorted by name.
pub fn cluster_health(config: &ProxyConfig) -> Vec<ClusterHealth> {
    let mut rows: Vec<ClusterHealth> = config
        .clusters
        .values()
        .map(|cluster| {
            let endpoints = cluster.endpoints();
            let ejected = endpoints.iter().filter(|e| e.is_ejected()).count() as u64;
            ClusterHealth {
                name: cluster.config.name.clone(),
                cx_active: endpoints
                    .iter()
                    .flat_map(|e| e.pools())
                    .map(|p| p.open_connections() as u64)
                    .sum(),
                rq_active: endpoints.iter().map(|e| e.in_flight() as u64).sum(),
                rq_pending_active: u64::from(cluster.breakers.pending_requests()),
                membership_total: endpoints.len() as u64,
                membership_healthy: endpoints.len() as u64 - ejected,
                ejections_active: ejected,
                ejections_enforced_total: cluster
                    .outlier
                    .as_ref()
                    .map_or(0, |o| o.stats().ejections_enforced_total),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// A stable number for a version string (Envoy's `*.version` gauges are a hash of it): FNV-1a,
/// cut to 53 bits so that the float a Prometheus sample is holds it exactly.
pub fn version_hash(version: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in version.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash & ((1 << 53) - 1)) as i64
}

/// Envoy's stat prefix for the types it has type-wide stats for.
fn envoy_prefix(type_url: &str) -> Option<&'static str> {
    match type_url {
        weft_xds::type_url::CLUSTER => Some("envoy_cluster_manager_cds"),
        weft_xds::type_url::LISTENER => Some("envoy_listener_manager_lds"),
        _ => None,
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl ProxyHealth {
    fn encode_xds(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        gauge(
            encoder,
            "envoy_control_plane_connected_state",
            "Whether the proxy has a stream to the xDS server: 1 connected, 0 not",
            i64::from(self.xds.is_connected()),
        )?;
        let (connects, disconnects) = self.xds.connection_counts();
        ConstCounter::new(connects).encode(encoder.encode_descriptor(
            "weft_xds_connects",
            "Streams to the xDS server established since start",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(disconnects).encode(encoder.encode_descriptor(
            "weft_xds_disconnects",
            "Streams to the xDS server lost since start (the proxy reconnects)",
            None,
            MetricType::Counter,
        )?)?;
        let types = self.xds.summaries();
        for (type_url, version, accepted, rejected) in &types {
            let Some(prefix) = envoy_prefix(type_url) else {
                continue;
            };
            gauge(
                encoder,
                &format!("{prefix}_update_success"),
                "Responses accepted (a counter under Envoy's name)",
                i64::try_from(*accepted).unwrap_or(i64::MAX),
            )?;
            gauge(
                encoder,
                &format!("{prefix}_update_rejected"),
                "Responses rejected, NACKed (a counter under Envoy's name)",
                i64::try_from(*rejected).unwrap_or(i64::MAX),
            )?;
            gauge(
                encoder,
                &format!("{prefix}_version"),
                "A hash of the version last accepted (weft_xds_config_version_info has the version)",
                version.as_deref().map_or(0, version_hash),
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "weft_xds_update_success",
            "xDS responses accepted (ACKed), per resource type",
            None,
            MetricType::Counter,
        )?;
        for (type_url, _, accepted, _) in &types {
            ConstCounter::new(*accepted)
                .encode(family.encode_family(&[("type_url", type_url.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "weft_xds_update_rejected",
            "xDS responses rejected (NACKed), in whole or in part, per resource type",
            None,
            MetricType::Counter,
        )?;
        for (type_url, _, _, rejected) in &types {
            ConstCounter::new(*rejected)
                .encode(family.encode_family(&[("type_url", type_url.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "weft_xds_config_version_info",
            "The version last accepted per resource type, in the version label (always 1)",
            None,
            MetricType::Gauge,
        )?;
        for (type_url, version, _, _) in &types {
            if let Some(version) = version {
                let labels = [
                    ("type_url", type_url.as_str()),
                    ("version", version.as_str()),
                ];
                ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_cert(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        let Some(not_after) = identity.borrow().cert.as_ref().map(|c| c.info.not_after) else {
            return Ok(());
        };
        let unix = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = not_after
            .duration_since(SystemTime::now())
            .map_or(0, |d| d.as_secs());
        gauge(
            encoder,
            "envoy_server_days_until_first_cert_expiring",
            "Whole days until the workload certificate expires",
            i64::try_from(left / 86_400).unwrap_or(i64::MAX),
        )?;
        gauge(
            encoder,
            "weft_workload_cert_expiration_timestamp_seconds",
            "When the workload certificate expires (its notAfter), in seconds since the epoch",
            i64::try_from(unix).unwrap_or(i64::MAX),
        )?;
        gauge(
            encoder,
            "weft_workload_cert_seconds_until_expiry",
            "Seconds until the workload certificate expires (0 once expired)",
            i64::try_from(left).unwrap_or(i64::MAX),
        )
    }

    fn encode_clusters(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let rows = cluster_health(&self.config.borrow().clone());
        type Pick = fn(&ClusterHealth) -> u64;
        let metrics: [(&str, &str, Pick); 7] = [
            (
                "envoy_cluster_upstream_cx_active",
                "Connections open to the cluster's endpoints (pools shared by clusters count in each)",
                |c| c.cx_active,
            ),
            (
                "envoy_cluster_upstream_rq_active",
                "Requests in flight to the cluster's endpoints",
                |c| c.rq_active,
            ),
            (
                "envoy_cluster_upstream_rq_pending_active",
                "Requests waiting for a connection to the cluster",
                |c| c.rq_pending_active,
            ),
            (
                "envoy_cluster_membership_total",
                "Endpoints of the cluster",
                |c| c.membership_total,
            ),
            (
                "envoy_cluster_membership_healthy",
                "Endpoints of the cluster not ejected by outlier detection",
                |c| c.membership_healthy,
            ),
            (
                "envoy_cluster_outlier_detection_ejections_active",
                "Endpoints of the cluster ejected by outlier detection now",
                |c| c.ejections_active,
            ),
            (
                "envoy_cluster_outlier_detection_ejections_enforced_total",
                "Ejections made by the cluster's outlier detection (a counter under Envoy's name; restarts when the detection's settings change)",
                |c| c.ejections_enforced_total,
            ),
        ];
        for (name, help, pick) in metrics {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                let value = i64::try_from(pick(row)).unwrap_or(i64::MAX);
                ConstGauge::new(value)
                    .encode(family.encode_family(&[("cluster_name", row.name.as_str())])?)?;
            }
        }
        Ok(())
    }
}

impl Collector for ProxyHealth {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_xds(&mut encoder)?;
        self.encode_cert(&mut encoder)?;
        self.encode_clusters(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::xds_state::Outcome;

    #[test]
    fn xds_state_reads_under_envoys_names() {
        let xds = Arc::new(XdsState::default());
        xds.connected();
        let cds = weft_xds::type_url::CLUSTER;
        xds.record(cds, "v1", None, Outcome::default(), |_| true);
        xds.record(cds, "v2", Some("bad"), Outcome::default(), |_| true);
        let (_tx, rx) = watch::channel(Arc::new(ProxyConfig::default()));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProxyHealth {
            xds,
            config: rx,
            identity: None,
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "envoy_control_plane_connected_state 1",
            "weft_xds_connects_total 1",
            "envoy_cluster_manager_cds_update_success 1",
            "envoy_cluster_manager_cds_update_rejected 1",
            &format!("envoy_cluster_manager_cds_version {}", version_hash("v1")),
            &format!(r#"weft_xds_update_rejected_total{{type_url="{cds}"}} 1"#),
            &format!(r#"weft_xds_config_version_info{{type_url="{cds}",version="v1"}} 1"#),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn version_hashes_are_stable_and_exact_as_floats() {
        assert_eq!(version_hash("v1"), version_hash("v1"));
        assert_ne!(version_hash("v1"), version_hash("v2"));
        assert!(version_hash("2024-01-01T00:00:00Z/42") < 1 << 53);
    }
}
