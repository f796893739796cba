//! OTLP/gRPC export: one collector's spans as an `ExportTraceServiceRequest` under their
//! `service.name`, sent as `TraceService/Export` over HTTP/2 through the collector's cluster.
//!
//! ```text
//!  spans ─► ExportTraceServiceRequest { resource service.name, scope weft-proxy }
//!     ─► gRPC frame (5 bytes: uncompressed, length) ─► POST …/TraceService/Export (h2)
//!     ─► 200 and grpc-status 0 (trailers, or the headers of a trailers-only answer)
//! ```
//! The gRPC framing is written here: tonic's client would bring its own channel and bypass
//! the cluster (its endpoints, balancing and mesh TLS, as Envoy's `envoy_grpc`).

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;

use super::export::{ExportError, Target};
use crate::config::ProxyConfig;
use crate::config::trace::Provider;
use crate::upstream::Protocol;

const PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Exports `spans` to `provider`'s collector, reported by `service`.
pub(super) async fn send(
    config: &ProxyConfig,
    provider: &Provider,
    service: &str,
    spans: Vec<otlp::Span>,
) -> Result<(), ExportError> {
    let target = Target::pick(
        config,
        provider,
        &[Protocol::Http2],
        "HTTP/2, which OTLP/gRPC needs (name the collector's port grpc-…)",
    )?;
    let body = grpc_frame(&request(service, spans));
    let resp = target
        .post(
            provider,
            PATH,
            &[
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                ),
                (http::header::TE, HeaderValue::from_static("trailers")),
            ],
            body,
        )
        .await?;
    let (head, body) = resp.into_parts();
    // A trailers-only answer carries grpc-status in its headers.
    let trailers = match head.headers.get("grpc-status") {
        Some(_) => head.headers,
        None => body
            .collect()
            .await
            .map_err(|e| ExportError::Body(e.to_string()))?
            .trailers()
            .cloned()
            .unwrap_or_default(),
    };
    let text = |v: Option<&HeaderValue>| {
        v.and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    match trailers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"0") => Ok(()),
        status => Err(ExportError::Grpc {
            status: status.map_or_else(
                || "(none)".to_string(),
                |s| String::from_utf8_lossy(s).into_owned(),
            ),
            message: text(trailers.get("grpc-message")),
        }),
    }
}

/// One export request: the spans under `service`.
fn request(service: &str, spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(Resource {
                attributes: vec![super::tag("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "weft-proxy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// gRPC's length-prefixed message: not compressed, 4 bytes of length, the message.
fn grpc_frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_grpc_length_prefixed() {
        let req = request(
            "productpage.default",
            vec![otlp::Span {
                name: "op".into(),
                ..Default::default()
            }],
        );
        let framed = grpc_frame(&req);
        assert_eq!(framed[0], 0, "not compressed");
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - 5);
        let back = ExportTraceServiceRequest::decode(&framed[5..]).expect("decodes");
        assert_eq!(back, req);
    }
}
