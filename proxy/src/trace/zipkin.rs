//! Zipkin export: one collector's spans as Zipkin's v2 JSON span list (Envoy's Zipkin tracer
//! with `collector_endpoint_version: HTTP_JSON`), POSTed to the collector's endpoint path
//! through its cluster.
//!
//! ```text
//!  otlp::Span ─► { traceId, id, parentId, name, kind CLIENT│SERVER, timestamp µs, duration µs,
//!                  localEndpoint.serviceName, tags (string values) }
//!     ─► [span, …] ─► POST <collector_endpoint> (application/json; HTTP/1.1, else HTTP/2)
//!     ─► 2xx (Zipkin answers 202)
//! ```
//! Each proxy's span is its own (Istio's `shared_span_context: false`): a SERVER span is the
//! child of its caller's CLIENT span, never the same id.

use http::HeaderValue;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use serde_json::{Map, Value, json};

use super::export::{ExportError, Target};
use crate::config::ProxyConfig;
use crate::config::trace::Provider;
use crate::upstream::Protocol;

/// Exports `spans` to `provider`'s collector at `path`, reported by `service`.
pub(super) async fn send(
    config: &ProxyConfig,
    provider: &Provider,
    path: &str,
    service: &str,
    spans: &[otlp::Span],
) -> Result<(), ExportError> {
    let target = Target::pick(
        config,
        provider,
        &[Protocol::Http1, Protocol::Http2],
        "HTTP, which Zipkin's span API needs",
    )?;
    let body = encode(service, spans);
    target
        .post(
            provider,
            path,
            &[(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.into(),
        )
        .await?;
    Ok(())
}

/// The v2 JSON span list of `spans`, all reported by `service`.
pub(super) fn encode(service: &str, spans: &[otlp::Span]) -> Vec<u8> {
    let list: Vec<Value> = spans.iter().map(|s| span(service, s)).collect();
    // Serializing a tree of JSON values cannot fail.
    serde_json::to_vec(&list).unwrap_or_default()
}

fn span(service: &str, s: &otlp::Span) -> Value {
    let micros = |nanos: u64| nanos / 1_000;
    let start = micros(s.start_time_unix_nano);
    // Zipkin's duration is at least 1 µs.
    let duration = micros(s.end_time_unix_nano).saturating_sub(start).max(1);
    let mut tags = Map::new();
    for kv in &s.attributes {
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(v)) => v.clone(),
            Some(any_value::Value::BoolValue(v)) => v.to_string(),
            Some(any_value::Value::IntValue(v)) => v.to_string(),
            Some(any_value::Value::DoubleValue(v)) => v.to_string(),
            _ => continue,
        };
        tags.insert(kv.key.clone(), Value::String(value));
    }
    let kind = if s.kind == otlp::span::SpanKind::Client as i32 {
        "CLIENT"
    } else {
        "SERVER"
    };
    let mut out = json!({
        "traceId": hex(&s.trace_id),
        "id": hex(&s.span_id),
        "name": s.name,
        "kind": kind,
        "timestamp": start,
        "duration": duration,
        "localEndpoint": {"serviceName": service},
        "tags": tags,
    });
    if !s.parent_span_id.is_empty()
        && let Value::Object(fields) = &mut out
    {
        fields.insert("parentId".into(), Value::String(hex(&s.parent_span_id)));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

    #[test]
    fn spans_become_zipkin_v2_json() {
        let child = otlp::Span {
            trace_id: vec![0x4b; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            parent_span_id: vec![0xaa; 8],
            name: "reviews.default.svc.cluster.local:9080/*".into(),
            kind: otlp::span::SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_125_456_789,
            attributes: vec![KeyValue {
                key: "http.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("200".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let root = otlp::Span {
            trace_id: vec![0x4b; 16],
            span_id: vec![0xaa; 8],
            kind: otlp::span::SpanKind::Server as i32,
            start_time_unix_nano: 5_000,
            end_time_unix_nano: 5_100,
            ..Default::default()
        };
        let body = encode("productpage.default", &[child, root]);
        let list: Vec<Value> = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            list[0],
            json!({
                "traceId": "4b".repeat(16),
                "id": "0102030405060708",
                "parentId": "aa".repeat(8),
                "name": "reviews.default.svc.cluster.local:9080/*",
                "kind": "CLIENT",
                "timestamp": 1_700_000_000_123_456u64,
                "duration": 2_000,
                "localEndpoint": {"serviceName": "productpage.default"},
                "tags": {"http.status_code": "200"},
            })
        );
        // A root has no parentId; a span shorter than a microsecond lasts one.
        assert_eq!(list[1].get("parentId"), None);
        assert_eq!(list[1]["kind"], "SERVER");
        assert_eq!(list[1]["duration"], 1);
    }
}
