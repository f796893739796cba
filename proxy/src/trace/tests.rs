use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1 as otlp;

use super::*;
use crate::config::trace::{CustomTag, Export, Provider, TagValue, Tracing};

fn config(random: f64) -> Arc<Tracing> {
    Arc::new(Tracing {
        random_sampling: random,
        client_sampling: 100.0,
        overall_sampling: 100.0,
        max_path_tag_length: 40,
        custom_tags: vec![
            CustomTag {
                name: "istio.canonical_service".into(),
                value: TagValue::Fixed("productpage".into()),
            },
            CustomTag {
                name: "user".into(),
                value: TagValue::Header {
                    name: http::HeaderName::from_static("end-user"),
                    default: Some("anonymous".into()),
                },
            },
        ],
        propagate: true,
        provider: Arc::new(Provider {
            cluster: "outbound|4317||jaeger".into(),
            authority: "jaeger".into(),
            service_name: Some("productpage.default".into()),
            export: Export::OtlpGrpc,
            trace_id_128bit: true,
        }),
    })
}

fn tracer() -> (Arc<Tracer>, ExportTask) {
    Tracer::new(Settings {
        flush_interval: Duration::from_secs(60),
        node_id: "sidecar~10.0.0.1~productpage-1.default~default.svc.cluster.local".into(),
        service_cluster: "productpage.default".into(),
    })
}

fn request(headers: &[(&'static str, &'static str)]) -> Request<()> {
    let mut req = Request::get("/productpage?u=normal")
        .header("host", "productpage:9080")
        .body(())
        .expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(*k, HeaderValue::from_static(v));
    }
    req
}

fn peer() -> SocketAddr {
    "10.0.0.9:40000".parse().expect("addr")
}

fn attr<'a>(span: &'a otlp::Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

#[test]
fn a_request_without_context_starts_a_sampled_trace_and_passes_it_on() {
    let (tracer, mut task) = tracer();
    let mut req = request(&[("end-user", "jason")]);
    let active = start(&tracer, &config(100.0), Kind::Server, &mut req, peer()).expect("sampled");
    let sent = context::extract(req.headers());
    let (trace, span) = sent.parent.expect("the next hop's parent");
    assert_eq!(sent.sampled, Some(true));
    assert_eq!((trace, span), (active.trace, active.span));
    assert!(active.parent.is_none(), "a root span");
    let id = HeaderValue::from_static("req-1");
    (*active).finish(&Finish {
        operation: Some("productpage.default.svc.cluster.local:9080/*"),
        status: 200,
        upstream_cluster: Some("inbound|9080||"),
        request_id: Some(&id),
        response_size: 11,
        ..Default::default()
    });
    let (provider, exported) = task.try_recv().expect("the span was queued");
    assert_eq!(
        provider.service_name.as_deref(),
        Some("productpage.default")
    );
    assert_eq!(exported.trace_id, trace.to_vec());
    assert_eq!(exported.span_id, span.to_vec());
    assert!(exported.parent_span_id.is_empty());
    assert_eq!(exported.kind, otlp::span::SpanKind::Server as i32);
    assert_eq!(
        exported.name,
        "productpage.default.svc.cluster.local:9080/*"
    );
    assert!(exported.end_time_unix_nano >= exported.start_time_unix_nano);
    assert!(exported.start_time_unix_nano > 0);
    assert_eq!(attr(&exported, "http.method"), Some("GET"));
    assert_eq!(attr(&exported, "http.status_code"), Some("200"));
    assert_eq!(attr(&exported, "guid:x-request-id"), Some("req-1"));
    assert_eq!(attr(&exported, "upstream_cluster"), Some("inbound|9080||"));
    assert_eq!(attr(&exported, "response_size"), Some("11"));
    assert_eq!(
        attr(&exported, "istio.canonical_service"),
        Some("productpage")
    );
    assert_eq!(attr(&exported, "user"), Some("jason"));
    assert_eq!(attr(&exported, "peer.address"), Some("10.0.0.9"));
    assert_eq!(
        attr(&exported, "node_id"),
        Some("sidecar~10.0.0.1~productpage-1.default~default.svc.cluster.local")
    );
    // Cut to max_path_tag_length (40).
    assert_eq!(
        attr(&exported, "http.url"),
        Some("http://productpage:9080/productpage?u=no")
    );
    assert!(exported.status.is_none(), "a 200 is not an error");
}

#[test]
fn a_callers_context_is_continued_and_its_decision_honoured() {
    let (tracer, mut task) = tracer();
    // Sampled by the caller although this proxy samples nothing itself.
    let mut req = request(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    let active = start(&tracer, &config(0.0), Kind::Client, &mut req, peer()).expect("sampled");
    let sent = context::extract(req.headers());
    let (trace, span) = sent.parent.expect("parent");
    assert_eq!(
        hex(&trace),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "same trace"
    );
    assert_ne!(
        hex(&span),
        "00f067aa0ba902b7",
        "this proxy's span is the next parent"
    );
    assert_eq!(req.headers()["x-b3-parentspanid"], "00f067aa0ba902b7");
    (*active).finish(&Finish {
        status: 503,
        ..Default::default()
    });
    let (_, exported) = task.try_recv().expect("queued");
    assert_eq!(hex(&exported.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(exported.kind, otlp::span::SpanKind::Client as i32);
    // No decorator: the authority and path, without the query.
    assert_eq!(exported.name, "productpage:9080/productpage");
    assert_eq!(attr(&exported, "error"), Some("true"));
    assert_eq!(
        attr(&exported, "user"),
        Some("anonymous"),
        "the header's default"
    );
    assert_eq!(
        exported.status.as_ref().map(|s| s.code),
        Some(otlp::status::StatusCode::Error as i32)
    );

    // Not sampled by the caller although this proxy samples everything: nothing reported,
    // and the decision travels on.
    let mut req = request(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    assert!(start(&tracer, &config(100.0), Kind::Client, &mut req, peer()).is_none());
    assert_eq!(context::extract(req.headers()).sampled, Some(false));
    assert!(task.try_recv().is_none());
}

/// `no_context_propagation` (Telemetry `disableContextPropagation`): the span is reported, the
/// request goes on without this proxy's context; what the caller sent passes unchanged.
#[test]
fn without_context_propagation_spans_are_reported_and_no_header_is_added() {
    let (tracer, mut task) = tracer();
    let mut quiet = (*config(100.0)).clone();
    quiet.propagate = false;
    let quiet = Arc::new(quiet);
    let mut req = request(&[]);
    let active = start(&tracer, &quiet, Kind::Client, &mut req, peer()).expect("sampled");
    for name in [
        "traceparent",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-sampled",
    ] {
        assert!(req.headers().get(name).is_none(), "{name} added");
    }
    (*active).finish(&Finish {
        status: 200,
        ..Default::default()
    });
    assert!(task.try_recv().is_some(), "the span is still reported");

    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = request(&[("traceparent", caller)]);
    let active = start(&tracer, &quiet, Kind::Client, &mut req, peer()).expect("sampled");
    assert_eq!(req.headers()["traceparent"], caller, "passed unchanged");
    assert!(req.headers().get("x-b3-parentspanid").is_none());
    (*active).finish(&Finish::default());
    let (_, exported) = task.try_recv().expect("queued");
    assert_eq!(
        hex(&exported.parent_span_id),
        "00f067aa0ba902b7",
        "still a child"
    );
}

#[test]
fn random_sampling_decides_for_requests_without_a_decision() {
    let (tracer, _task) = tracer();
    let sampled = |percent: f64| {
        (0..2000)
            .filter(|_| {
                let mut req = request(&[]);
                start(&tracer, &config(percent), Kind::Server, &mut req, peer()).is_some()
            })
            .count()
    };
    assert_eq!(sampled(0.0), 0);
    assert_eq!(sampled(100.0), 2000);
    let quarter = sampled(25.0);
    // 2000 draws at 25 %: 500 expected, more than 6 standard deviations (19.4) either side
    // is a broken sampler, not bad luck.
    assert!((380..=620).contains(&quarter), "{quarter} of 2000 at 25 %");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_zipkin_provider_without_128_bit_ids_starts_64_bit_traces() {
    let (tracer, _task) = tracer();
    let mut tracing = (*config(100.0)).clone();
    tracing.provider = Arc::new(Provider {
        export: Export::ZipkinJson {
            path: "/api/v2/spans".into(),
        },
        trace_id_128bit: false,
        ..(*tracing.provider).clone()
    });
    let tracing = Arc::new(tracing);
    for _ in 0..20 {
        let mut req = request(&[]);
        let active = start(&tracer, &tracing, Kind::Server, &mut req, peer()).expect("sampled");
        let trace = active.trace_id();
        assert_eq!(trace[..8], [0; 8], "the upper half is zero");
        assert_ne!(trace[8..], [0; 8]);
    }
    // A caller's 128-bit trace is continued as it is.
    let mut req = request(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    let active = start(&tracer, &tracing, Kind::Server, &mut req, peer()).expect("sampled");
    assert_eq!(hex(&active.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
}
