//! Istio's stats filter (`istio.stats`, `stats.PluginConfig`) → [`Stats`]: which of Istio's
//! metrics a connection manager or TCP chain records, and with which labels. Where the filter
//! is absent, nothing is recorded (as with Envoy).
//!
//! ```text
//!  PluginConfig.metrics[]: in order, each for one metric (`name`) or all (empty)
//!     drop ─► not recorded │ dimensions{tag: CEL} ─► label added or replaced │ tags_to_remove
//!  definitions (custom metrics), reporter SERVER_GATEWAY, `match`: refused
//! ```
//!
//! `tcp_reporting_duration`, `rotation_interval` and `graceful_deletion_interval` are accepted
//! and need nothing: TCP counters move as bytes pass, and series are bounded by the proxy's cap
//! rather than expired.

use std::sync::Arc;

use prost::Message;
use weft_xds::stats::{self as wire, PluginConfig};

use super::{Reason, invalid};
use crate::access_log::filter::Expression;
use crate::metrics::view::{Metric, MetricSettings, Stats};

pub use weft_xds::stats::{STATS_FILTER, STATS_TYPE_URL};

/// Decodes and converts a stats filter's typed config.
pub fn stats(bytes: &[u8]) -> Result<Arc<Stats>, Reason> {
    let config = PluginConfig::decode(bytes).map_err(|e| Reason::Decode {
        type_url: STATS_TYPE_URL.to_string(),
        error: e.to_string(),
    })?;
    convert(config)
}

fn convert(config: PluginConfig) -> Result<Arc<Stats>, Reason> {
    if !config.definitions.is_empty() {
        return Err(Reason::Unsupported(
            "definitions (custom metrics)".to_string(),
        ));
    }
    if config.reporter != wire::REPORTER_UNSPECIFIED {
        return Err(Reason::Unsupported(format!(
            "reporter {} (a shared server gateway)",
            config.reporter
        )));
    }
    if !config.disable_host_header_fallback {
        return Err(invalid(
            "disable_host_header_fallback",
            "must be true: the proxy never labels metrics with the Host header (its values are unbounded)",
        ));
    }
    if config.metrics.is_empty() {
        return Ok(Stats::standard());
    }
    let mut settings: [MetricSettings; 8] = Default::default();
    let mut expressions: Vec<Expression> = Vec::new();
    for (i, m) in config.metrics.into_iter().enumerate() {
        let field = format!("metrics[{i}]");
        if !m.r#match.is_empty() {
            return Err(Reason::Unsupported(format!("{field}.match")));
        }
        let targets: Vec<Metric> = match m.name.as_str() {
            "" => Metric::ALL.to_vec(),
            // Istio's gRPC message counters: not recorded, so there is nothing to change.
            wire::REQUEST_MESSAGES | wire::RESPONSE_MESSAGES => Vec::new(),
            name => vec![
                Metric::ALL
                    .into_iter()
                    .find(|metric| metric.config_name() == name)
                    .ok_or_else(|| {
                        invalid(
                            format!("{field}.name"),
                            format!(
                                "unknown metric {name:?} (known: {})",
                                wire::RECORDED_METRICS.join(", ")
                            ),
                        )
                    })?,
            ],
        };
        let mut dimensions = Vec::with_capacity(m.dimensions.len());
        for (tag, source) in &m.dimensions {
            let tag_field = format!("{field}.dimensions[{tag:?}]");
            check_label_name(tag).map_err(|reason| invalid(&tag_field, reason))?;
            let index = match expressions.iter().position(|e| e.source() == source) {
                Some(index) => index,
                None => {
                    let e = Expression::compile(source)
                        .map_err(|e| invalid(&tag_field, e.to_string()))?;
                    expressions.push(e);
                    expressions.len() - 1
                }
            };
            dimensions.push((tag.clone(), index));
        }
        for metric in targets {
            let s = &mut settings[metric as usize];
            s.drop |= m.drop;
            for (tag, index) in &dimensions {
                s.remove.retain(|r| r != tag);
                match s.dimensions.iter_mut().find(|(name, _)| name == tag) {
                    Some(slot) => slot.1 = *index,
                    None => s.dimensions.push((tag.clone(), *index)),
                }
            }
            for tag in &m.tags_to_remove {
                s.dimensions.retain(|(name, _)| name != tag);
                if !s.remove.contains(tag) {
                    s.remove.push(tag.clone());
                }
            }
        }
    }
    for s in &mut settings {
        s.remove.sort();
        s.dimensions.sort();
    }
    Ok(Arc::new(Stats::new(settings, expressions)))
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "{name:?}: label names starting with __ are reserved by Prometheus"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_xds::stats::MetricConfig;

    fn config(metrics: Vec<MetricConfig>) -> PluginConfig {
        PluginConfig {
            disable_host_header_fallback: true,
            metrics,
            ..Default::default()
        }
    }

    fn error(config: PluginConfig) -> String {
        convert(config).unwrap_err().to_string()
    }

    #[test]
    fn no_overrides_is_the_standard_settings() {
        let stats = convert(config(vec![])).unwrap();
        assert!(Arc::ptr_eq(&stats, &Stats::standard()));
    }

    #[test]
    fn overrides_apply_in_order_per_metric() {
        let stats = convert(config(vec![
            MetricConfig {
                name: String::new(),
                tags_to_remove: vec!["source_principal".into()],
                ..Default::default()
            },
            MetricConfig {
                name: wire::REQUESTS_TOTAL.into(),
                dimensions: [
                    ("request_method".to_string(), "request.method".to_string()),
                    ("source_principal".to_string(), "'x'".to_string()),
                ]
                .into_iter()
                .collect(),
                tags_to_remove: vec!["response_code".into()],
                ..Default::default()
            },
            MetricConfig {
                name: wire::TCP_SENT.into(),
                drop: true,
                ..Default::default()
            },
            // The gRPC counters are not recorded: accepted, nothing to do.
            MetricConfig {
                name: wire::REQUEST_MESSAGES.into(),
                drop: true,
                ..Default::default()
            },
        ]))
        .unwrap();
        let requests = stats.metric(Metric::Requests);
        assert_eq!(requests.remove, ["response_code"]);
        let names: Vec<&str> = requests
            .dimensions
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            names,
            ["request_method", "source_principal"],
            "a later upsert takes the tag back from an earlier removal"
        );
        assert!(!requests.drop);
        assert_eq!(stats.metric(Metric::Duration).remove, ["source_principal"]);
        assert!(stats.metric(Metric::TcpSent).drop);
        assert!(!stats.metric(Metric::TcpReceived).drop);
        assert!(stats.needs_attributes());
    }

    #[test]
    fn what_the_proxy_cannot_honour_is_refused_naming_the_field() {
        assert!(
            error(PluginConfig::default()).contains("disable_host_header_fallback"),
            "host header fallback"
        );
        let mut defs = config(vec![]);
        defs.definitions.push(wire::MetricDefinition::default());
        assert!(error(defs).contains("definitions"));
        let mut gateway = config(vec![]);
        gateway.reporter = wire::REPORTER_SERVER_GATEWAY;
        assert!(error(gateway).contains("reporter"));
        let e = error(config(vec![MetricConfig {
            name: "requests".into(),
            ..Default::default()
        }]));
        assert!(
            e.contains("metrics[0].name") && e.contains("unknown metric"),
            "{e}"
        );
        let e = error(config(vec![MetricConfig {
            r#match: "true".into(),
            ..Default::default()
        }]));
        assert!(e.contains("metrics[0].match"), "{e}");
        let bad_tag = |tag: &str, value: &str| {
            error(config(vec![MetricConfig {
                dimensions: [(tag.to_string(), value.to_string())].into_iter().collect(),
                ..Default::default()
            }]))
        };
        let e = bad_tag("request-host", "request.host");
        assert!(
            e.contains("metrics[0].dimensions[\"request-host\"]")
                && e.contains("Prometheus label name"),
            "{e}"
        );
        assert!(bad_tag("__x", "request.host").contains("reserved"));
        let e = bad_tag("host", "reqest.host");
        assert!(e.contains("unknown attribute \"reqest\""), "{e}");
        let e = bad_tag("host", "request.host ==");
        assert!(e.contains("not a CEL expression"), "{e}");
    }
}
