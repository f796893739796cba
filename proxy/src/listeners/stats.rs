//! Metrics of the listeners' connection handling (admin `/stats/prometheus`): protocol
//! detection timeouts per listener and destination port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What the listeners record into: their own counters, and Istio's metrics of the connections
/// and requests they serve.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub stats: std::sync::Arc<ListenerStats>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub tracer: std::sync::Arc<crate::trace::Tracer>,
}

/// The labels of a detection timeout: the listener and the port the client was going to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabels {
    pub listener: String,
    pub destination_port: u16,
}

/// Shared by every listener of the proxy. Counting takes the family's lock only when
/// detection times out, never on a connection's normal path.
#[derive(Debug, Default)]
pub struct ListenerStats {
    detection_timeouts: Family<DetectionLabels, Counter>,
}

impl ListenerStats {
    /// Counts one connection whose protocol detection timed out.
    pub fn detection_timeout(&self, listener: &str, port: u16) {
        self.detection_timeouts
            .get_or_create(&DetectionLabels {
                listener: listener.to_string(),
                destination_port: port,
            })
            .inc();
    }

    /// Adds the metrics to `registry` (prefix `weft`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "protocol_detection_timeouts",
            "Connections whose protocol detection (TLS, HTTP) timed out: the client sent nothing, or too little, within the listener filters timeout (a server-first protocol on a port of undeclared protocol), and was treated as opaque TCP",
            self.detection_timeouts.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_counted_per_listener_and_port() {
        let stats = ListenerStats::default();
        stats.detection_timeout("virtualOutbound", 4000);
        stats.detection_timeout("virtualOutbound", 4000);
        stats.detection_timeout("virtualInbound", 3306);
        let mut registry = Registry::with_prefix("weft");
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"weft_protocol_detection_timeouts_total{listener="virtualOutbound",destination_port="4000"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weft_protocol_detection_timeouts_total{listener="virtualInbound",destination_port="3306"} 1"#
            ),
            "{text}"
        );
    }
}
