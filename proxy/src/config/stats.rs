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
//! The config comes as `stats.PluginConfig`, or as a `TypedStruct` of it (how EnvoyFilters and
//! older istiods write it), read field by field from its JSON-like value.
//!
//! `tcp_reporting_duration`, `rotation_interval` and `graceful_deletion_interval` are accepted
//! and need nothing: TCP counters move as bytes pass, and series are bounded by the proxy's cap
//! rather than expired.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, Struct, Value};
use prost::Message;
use weft_xds::stats::{self as wire, PluginConfig, TypedStruct};

use super::{Reason, invalid};
use crate::access_log::filter::Expression;
use crate::metrics::view::{Metric, MetricSettings, Stats};

pub use weft_xds::stats::{STATS_FILTER, STATS_TYPE_URL};

/// Whether `any` is a stats filter's config: `stats.PluginConfig`, or a `TypedStruct` of it.
pub fn is_stats(any: &Any) -> bool {
    any.type_url == STATS_TYPE_URL
        || typed_struct(any).is_some_and(|t| t.type_url == STATS_TYPE_URL)
}

fn typed_struct(any: &Any) -> Option<TypedStruct> {
    wire::TYPED_STRUCT_TYPE_URLS
        .contains(&any.type_url.as_str())
        .then(|| TypedStruct::decode(any.value.as_slice()).ok())
        .flatten()
}

/// Decodes and converts a stats filter's typed config (see [`is_stats`]).
pub fn stats(any: &Any) -> Result<Arc<Stats>, Reason> {
    let config = match typed_struct(any) {
        Some(t) => from_struct(&t.value.unwrap_or_default())?,
        None => PluginConfig::decode(any.value.as_slice()).map_err(|e| Reason::Decode {
            type_url: STATS_TYPE_URL.to_string(),
            error: e.to_string(),
        })?,
    };
    convert(config)
}

/// A `TypedStruct`'s value (proto3 JSON: lowerCamelCase or the proto's field names) as the
/// message. Written by hand: the message is small, and no crate maps a `Struct` onto prost's
/// types without the message's descriptor.
fn from_struct(value: &Struct) -> Result<PluginConfig, Reason> {
    let mut config = PluginConfig::default();
    for (key, v) in &value.fields {
        let at = |reason: &str| invalid(key.clone(), reason.to_string());
        match snake(key).as_str() {
            "disable_host_header_fallback" => {
                config.disable_host_header_fallback = as_bool(v).ok_or_else(|| at("not a bool"))?;
            }
            "tcp_reporting_duration" => config.tcp_reporting_duration = Some(duration(key, v)?),
            "rotation_interval" => config.rotation_interval = Some(duration(key, v)?),
            "graceful_deletion_interval" => {
                config.graceful_deletion_interval = Some(duration(key, v)?);
            }
            "reporter" => {
                config.reporter = match v.kind.as_ref() {
                    Some(Kind::StringValue(s)) if s == "UNSPECIFIED" => wire::REPORTER_UNSPECIFIED,
                    Some(Kind::StringValue(s)) if s == "SERVER_GATEWAY" => {
                        wire::REPORTER_SERVER_GATEWAY
                    }
                    Some(Kind::NumberValue(n)) if n.fract() == 0.0 => *n as i32,
                    _ => return Err(at("not UNSPECIFIED or SERVER_GATEWAY")),
                };
            }
            "definitions" => {
                let items = as_list(v).ok_or_else(|| at("not a list"))?;
                config.definitions = items
                    .iter()
                    .map(|_| wire::MetricDefinition::default())
                    .collect();
            }
            "metrics" => {
                let items = as_list(v).ok_or_else(|| at("not a list"))?;
                for (i, item) in items.iter().enumerate() {
                    let field = format!("{key}[{i}]");
                    config.metrics.push(metric_config(&field, item)?);
                }
            }
            _ => return Err(invalid(key.clone(), "unknown field of stats.PluginConfig")),
        }
    }
    Ok(config)
}

fn metric_config(field: &str, value: &Value) -> Result<wire::MetricConfig, Reason> {
    let Some(Kind::StructValue(object)) = value.kind.as_ref() else {
        return Err(invalid(field, "not an object"));
    };
    let mut m = wire::MetricConfig::default();
    for (key, v) in &object.fields {
        let path = format!("{field}.{key}");
        let text = |v: &Value| as_str(v).ok_or_else(|| invalid(&path, "not a string"));
        match snake(key).as_str() {
            "name" => m.name = text(v)?,
            "match" => m.r#match = text(v)?,
            "drop" => m.drop = as_bool(v).ok_or_else(|| invalid(&path, "not a bool"))?,
            "tags_to_remove" => {
                for item in as_list(v).ok_or_else(|| invalid(&path, "not a list"))? {
                    m.tags_to_remove.push(text(item)?);
                }
            }
            "dimensions" => {
                let Some(Kind::StructValue(dims)) = v.kind.as_ref() else {
                    return Err(invalid(&path, "not a map of tag names to expressions"));
                };
                for (tag, expr) in &dims.fields {
                    m.dimensions.insert(tag.clone(), text(expr)?);
                }
            }
            _ => return Err(invalid(path, "unknown field of stats.MetricConfig")),
        }
    }
    Ok(m)
}

/// `tagsToRemove` → `tags_to_remove` (proto3 JSON takes either).
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn as_bool(v: &Value) -> Option<bool> {
    match v.kind {
        Some(Kind::BoolValue(b)) => Some(b),
        _ => None,
    }
}

fn as_str(v: &Value) -> Option<String> {
    match &v.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn as_list(v: &Value) -> Option<&[Value]> {
    match &v.kind {
        Some(Kind::ListValue(l)) => Some(&l.values),
        _ => None,
    }
}

/// A proto3 JSON duration (`"15s"`, `"0.5s"`).
fn duration(key: &str, v: &Value) -> Result<PbDuration, Reason> {
    let bad = || invalid(key, "not a duration in seconds such as \"15s\"");
    let text = as_str(v).ok_or_else(bad)?;
    let seconds: f64 = text
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(bad)?;
    Ok(PbDuration {
        seconds: seconds.trunc() as i64,
        nanos: (seconds.fract() * 1e9).round() as i32,
    })
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

    /// JSON as a protobuf `Value`.
    fn pb(json: serde_json::Value) -> Value {
        use serde_json::Value as J;
        let kind = match json {
            J::Null => Kind::NullValue(0),
            J::Bool(b) => Kind::BoolValue(b),
            J::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            J::String(s) => Kind::StringValue(s),
            J::Array(a) => Kind::ListValue(envoy_types::pb::google::protobuf::ListValue {
                values: a.into_iter().map(pb).collect(),
            }),
            J::Object(o) => Kind::StructValue(Struct {
                fields: o.into_iter().map(|(k, v)| (k, pb(v))).collect(),
            }),
        };
        Value { kind: Some(kind) }
    }

    #[test]
    fn a_typed_struct_reads_as_the_message() {
        let json = serde_json::json!({
            "disableHostHeaderFallback": true,
            "tcp_reporting_duration": "2.5s",
            "metrics": [
                {"name": "requests_total", "tagsToRemove": ["response_code"],
                 "dimensions": {"request_method": "request.method"}},
                {"name": "tcp_sent_bytes_total", "drop": true}
            ]
        });
        let Some(Kind::StructValue(value)) = pb(json).kind else {
            panic!("an object");
        };
        let typed = Any {
            type_url: wire::TYPED_STRUCT_TYPE_URLS[0].into(),
            value: TypedStruct {
                type_url: STATS_TYPE_URL.into(),
                value: Some(value.clone()),
            }
            .encode_to_vec(),
        };
        assert!(is_stats(&typed));
        let config = from_struct(&value).unwrap();
        assert_eq!(
            config.tcp_reporting_duration,
            Some(PbDuration {
                seconds: 2,
                nanos: 500_000_000
            })
        );
        let stats = stats(&typed).unwrap();
        assert_eq!(stats.metric(Metric::Requests).remove, ["response_code"]);
        assert!(stats.metric(Metric::TcpSent).drop);
        // Not the stats config: another TypedStruct, or a typo.
        let other = Any {
            type_url: wire::TYPED_STRUCT_TYPE_URLS[1].into(),
            value: TypedStruct {
                type_url: "type.googleapis.com/other.Config".into(),
                value: None,
            }
            .encode_to_vec(),
        };
        assert!(!is_stats(&other));
        let mut typo = value;
        typo.fields.insert(
            "metric".into(),
            Value {
                kind: Some(Kind::BoolValue(true)),
            },
        );
        let e = from_struct(&typo).unwrap_err().to_string();
        assert!(e.contains("metric") && e.contains("unknown field"), "{e}");
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
