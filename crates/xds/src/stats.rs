//! Istio's stats filter config (`istio.stats`, `stats.PluginConfig`): which of Istio's
//! standard metrics a listener records, and with which labels. The controller writes one into
//! each connection manager (HTTP filter) and each TCP proxy chain (network filter) whose side
//! records metrics, from the Telemetry resources' `metrics` overrides; no filter, no metrics
//! (as with Envoy).
//!
//! Written out here with prost's derive because no published crate carries istio/proxy's
//! `source/extensions/filters/http/istio_stats/config.proto`; field names, tags and the
//! package are Istio's, so what istiod sends reads the same.

use std::collections::BTreeMap;

/// The filter's name, as an HTTP filter and as a network filter.
pub const STATS_FILTER: &str = "istio.stats";
/// The filter config's type URL.
pub const STATS_TYPE_URL: &str = "type.googleapis.com/stats.PluginConfig";

/// Istio's standard metrics as the stats filter names them (`MetricConfig.name`): the
/// Prometheus names without the `istio_` prefix.
pub const REQUESTS_TOTAL: &str = "requests_total";
pub const REQUEST_DURATION: &str = "request_duration_milliseconds";
pub const REQUEST_BYTES: &str = "request_bytes";
pub const RESPONSE_BYTES: &str = "response_bytes";
pub const TCP_OPENED: &str = "tcp_connections_opened_total";
pub const TCP_CLOSED: &str = "tcp_connections_closed_total";
pub const TCP_SENT: &str = "tcp_sent_bytes_total";
pub const TCP_RECEIVED: &str = "tcp_received_bytes_total";
/// The gRPC message counters: Istio's, which Weft's proxies do not produce.
pub const REQUEST_MESSAGES: &str = "request_messages_total";
pub const RESPONSE_MESSAGES: &str = "response_messages_total";

/// The metrics Weft's proxies record, in the order the proxy keeps them.
pub const RECORDED_METRICS: [&str; 8] = [
    REQUESTS_TOTAL,
    REQUEST_DURATION,
    REQUEST_BYTES,
    RESPONSE_BYTES,
    TCP_OPENED,
    TCP_CLOSED,
    TCP_SENT,
    TCP_RECEIVED,
];

/// One override (`stats.MetricConfig`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricConfig {
    /// Labels to add or replace: name → CEL expression of the value. A `BTreeMap`, so the
    /// encoding (and the resource's version) is the same for the same overrides.
    #[prost(btree_map = "string, string", tag = "1")]
    pub dimensions: BTreeMap<String, String>,
    /// The metric (one of the names above); empty: every metric.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Labels to leave out.
    #[prost(string, repeated, tag = "3")]
    pub tags_to_remove: Vec<String>,
    /// Not implemented by Istio either; must be empty.
    #[prost(string, tag = "4")]
    pub r#match: String,
    /// The metric is not recorded.
    #[prost(bool, tag = "5")]
    pub drop: bool,
}

/// A custom metric (`stats.MetricDefinition`); the proxy refuses them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricDefinition {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
    /// `COUNTER` (0), `GAUGE` (1), `HISTOGRAM` (2).
    #[prost(int32, tag = "3")]
    pub r#type: i32,
}

/// `stats.Reporter`: inferred from the listener's direction (0), or a shared server gateway
/// (1, ambient's waypoints; the proxy refuses it).
pub const REPORTER_UNSPECIFIED: i32 = 0;
pub const REPORTER_SERVER_GATEWAY: i32 = 1;

/// The filter's config (`stats.PluginConfig`; tags 1–5 are reserved by Istio).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginConfig {
    /// Istio falls back to the `Host` header for `destination_service` when the cluster does
    /// not say; Weft's proxies never do (raw authorities are unbounded label values), so the
    /// controller always sets this and the proxy refuses `false`.
    #[prost(bool, tag = "6")]
    pub disable_host_header_fallback: bool,
    /// How often TCP metrics are reported; Weft's TCP counters move as bytes pass.
    #[prost(message, optional, tag = "7")]
    pub tcp_reporting_duration: Option<envoy_types::pb::google::protobuf::Duration>,
    /// Overrides, applied in order.
    #[prost(message, repeated, tag = "8")]
    pub metrics: Vec<MetricConfig>,
    #[prost(message, repeated, tag = "9")]
    pub definitions: Vec<MetricDefinition>,
    #[prost(int32, tag = "10")]
    pub reporter: i32,
    #[prost(message, optional, tag = "11")]
    pub rotation_interval: Option<envoy_types::pb::google::protobuf::Duration>,
    #[prost(message, optional, tag = "12")]
    pub graceful_deletion_interval: Option<envoy_types::pb::google::protobuf::Duration>,
}

impl prost::Name for PluginConfig {
    const NAME: &'static str = "PluginConfig";
    const PACKAGE: &'static str = "stats";

    fn full_name() -> String {
        format!("{}.{}", Self::PACKAGE, Self::NAME)
    }

    fn type_url() -> String {
        STATS_TYPE_URL.to_string()
    }
}

/// `xds.type.v3.TypedStruct` (and its older twin `udpa.type.v1.TypedStruct`): an extension's
/// config as a JSON-like `Struct` under the config's type URL, as Istio's EnvoyFilters and
/// older istiod versions send the stats filter's. envoy-types carries neither.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypedStruct {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<envoy_types::pb::google::protobuf::Struct>,
}

/// The type URLs of [`TypedStruct`].
pub const TYPED_STRUCT_TYPE_URLS: [&str; 2] = [
    "type.googleapis.com/xds.type.v3.TypedStruct",
    "type.googleapis.com/udpa.type.v1.TypedStruct",
];

#[cfg(test)]
mod tests {
    use super::*;
    use prost::{Message, Name};

    #[test]
    fn type_url_and_round_trip() {
        assert_eq!(PluginConfig::type_url(), STATS_TYPE_URL);
        let config = PluginConfig {
            disable_host_header_fallback: true,
            metrics: vec![MetricConfig {
                name: REQUESTS_TOTAL.into(),
                tags_to_remove: vec!["response_code".into()],
                dimensions: [("request_method".to_string(), "request.method".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = config.encode_to_vec();
        assert_eq!(PluginConfig::decode(bytes.as_slice()).unwrap(), config);
        // Istio's field numbers: `metrics` is field 8 (tag byte 8 << 3 | 2).
        assert_eq!(bytes[0], 0x30, "disable_host_header_fallback is field 6");
        assert!(bytes.contains(&0x42), "metrics is field 8");
    }
}
