//! The ADS server's metrics, under istiod's names and labels, so that Istio's control-plane
//! dashboards and alerts read Weft's unchanged.
//!
//! ```text
//!  stream registered / ended ─► pilot_xds (connected proxies)
//!  response generated        ─► pilot_xds_push_time{type} (seconds)
//!  response sent             ─► pilot_xds_pushes{type}
//!  NACK                      ─► pilot_total_xds_rejects{type}
//!  every response a new snapshot caused ACKed ─► pilot_proxy_convergence_time (seconds,
//!                                                 from the source's event: `Generator::changed_at`)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// istiod's label for an xDS type: `type` = `cds`, `eds`, `lds`, `rds`, `sds`, `nds`.
pub type TypeLabels = [(&'static str, &'static str); 1];

/// istiod's buckets for `pilot_proxy_convergence_time`, in seconds.
const CONVERGENCE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for `pilot_xds_push_time`, in seconds.
const PUSH_TIME_BUCKETS: [f64; 8] = [0.01, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0];

/// A counter exposed under its own name, as istiod's are (`pilot_xds_pushes`, not
/// `pilot_xds_pushes_total`): prometheus-client's `Counter` always adds the suffix, and
/// Istio's dashboards query the names without it.
#[derive(Debug, Default)]
pub struct BareCounter(AtomicU64);

impl BareCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for BareCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for BareCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // A gauge's sample line is the bare name: what a counter without suffix looks like.
        encoder.encode_gauge(&(self.get() as i64))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

type HistogramFamily = Family<TypeLabels, Histogram, fn() -> Histogram>;

/// The ADS server's metrics; one per server, shared by its streams.
#[derive(Debug)]
pub struct XdsMetrics {
    connected: Gauge,
    pushes: Family<TypeLabels, BareCounter>,
    rejects: Family<TypeLabels, BareCounter>,
    push_time: HistogramFamily,
    convergence: Histogram,
}

impl Default for XdsMetrics {
    fn default() -> Self {
        Self {
            connected: Gauge::default(),
            pushes: Family::default(),
            rejects: Family::default(),
            push_time: Family::new_with_constructor(|| {
                Histogram::new(PUSH_TIME_BUCKETS.iter().copied())
            }),
            convergence: Histogram::new(CONVERGENCE_BUCKETS.iter().copied()),
        }
    }
}

impl XdsMetrics {
    /// Adds the metrics to `registry` (to be used without a prefix: istiod's names).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pilot_xds",
            "Number of proxies connected to this control plane over ADS",
            self.connected.clone(),
        );
        registry.register(
            "pilot_xds_pushes",
            "Responses sent to proxies, by xDS type",
            self.pushes.clone(),
        );
        registry.register(
            "pilot_total_xds_rejects",
            "Responses proxies rejected (NACKed), by xDS type",
            self.rejects.clone(),
        );
        registry.register(
            "pilot_xds_push_time",
            "Seconds taken to generate one proxy's resources of one xDS type",
            self.push_time.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a config snapshot reaching a proxy's stream to the proxy's ACK of every response it caused",
            self.convergence.clone(),
        );
    }

    pub(crate) fn stream_opened(&self) {
        self.connected.inc();
    }

    pub(crate) fn stream_closed(&self) {
        self.connected.dec();
    }

    pub(crate) fn pushed(&self, label: &'static str) {
        self.pushes.get_or_create(&[("type", label)]).inc();
    }

    pub(crate) fn rejected(&self, label: &'static str) {
        self.rejects.get_or_create(&[("type", label)]).inc();
    }

    pub(crate) fn generated(&self, label: &'static str, took: Duration) {
        self.push_time
            .get_or_create(&[("type", label)])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn converged(&self, took: Duration) {
        self.convergence.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_istiods_names_without_a_suffix() {
        let metrics = XdsMetrics::default();
        metrics.stream_opened();
        metrics.pushed("cds");
        metrics.pushed("cds");
        metrics.rejected("lds");
        metrics.generated("cds", Duration::from_millis(2));
        metrics.converged(Duration::from_millis(700));
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE pilot_xds gauge",
            "pilot_xds 1",
            "# TYPE pilot_xds_pushes counter",
            "pilot_xds_pushes{type=\"cds\"} 2",
            "pilot_total_xds_rejects{type=\"lds\"} 1",
            "pilot_xds_push_time_bucket{le=\"0.01\",type=\"cds\"} 1",
            "pilot_proxy_convergence_time_bucket{le=\"0.5\"} 0",
            "pilot_proxy_convergence_time_bucket{le=\"1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
