//! An HTTP connection manager's `tracing` → [`Tracing`]: how often a request without a trace
//! starts one, the tags every span gets, and the collector spans go to.
//!
//! ```text
//!  HttpConnectionManager.tracing ─► random/client/overall sampling (Percent, Envoy's default 100)
//!     ├─► custom_tags: literal │ environment (read now) │ request_header (read per request)
//!     │                │ value (an access log format, rendered when the span ends)
//!     └─► provider ─┬─ envoy.tracers.opentelemetry ─► OpenTelemetryConfig
//!                   │     grpc_service.envoy_grpc{cluster_name, authority} + service_name
//!                   └─ envoy.tracers.zipkin ─► ZipkinConfig
//!                         collector_cluster, collector_endpoint (HTTP_JSON), collector_hostname,
//!                         trace_id_128bit; shared_span_context false
//!                   ─► Provider ─► trace/export.rs (OTLP/gRPC │ Zipkin v2 JSON)
//! ```
//! Anything else a tracer could be given (other tracers, OTLP over HTTP, Zipkin's proto or gRPC
//! encodings, `collector_service`, shared span contexts, samplers, resource detectors, metadata
//! tags) is refused, so a proxy never reports less than it was asked to. Zipkin's
//! `trace_context_option` is accepted either way: the proxy reads and writes both B3 and W3C
//! headers (`trace/context.rs`).

use std::sync::Arc;

use envoy_types::pb::envoy::config::trace::v3 as trace;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::r#type::tracing::v3::custom_tag;
use prost::Message;

use super::{Reason, invalid, reject_leftover, reject_set};

/// Envoy's OpenTelemetry tracer.
pub const OPENTELEMETRY: &str = "envoy.tracers.opentelemetry";
const OPENTELEMETRY_CONFIG: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
/// Envoy's Zipkin tracer.
pub const ZIPKIN: &str = "envoy.tracers.zipkin";
const ZIPKIN_CONFIG: &str = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig";
/// Envoy's default `max_path_tag_length`.
const DEFAULT_MAX_PATH_TAG_LENGTH: usize = 256;

/// What one connection manager's tracing says, converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// Percentage of requests without a sampling decision that are sampled (`random_sampling`).
    pub random_sampling: f64,
    /// Percentage of requests with `x-client-trace-id` that are sampled (`client_sampling`).
    pub client_sampling: f64,
    /// The cap on all of it (`overall_sampling`).
    pub overall_sampling: f64,
    /// Longest `http.url` tag value, in bytes.
    pub max_path_tag_length: usize,
    /// Tags every span gets.
    pub custom_tags: Vec<CustomTag>,
    /// `false` (`no_context_propagation`): the request goes upstream without the proxy's trace
    /// context headers (its span is still reported; headers the client sent pass unchanged).
    pub propagate: bool,
    /// Where spans go.
    pub provider: Arc<Provider>,
}

/// One custom tag, with its value or where the value comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomTag {
    pub name: Arc<str>,
    pub value: TagValue,
}

/// A custom tag's value.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// A literal, or an environment variable read when the config was applied.
    Fixed(Arc<str>),
    /// A request header; without it, the default (or no tag).
    Header {
        name: http::HeaderName,
        default: Option<Arc<str>>,
    },
    /// Envoy's `value`: an access log format (`%REQUESTED_SERVER_NAME%`), rendered when the
    /// span ends (Telemetry `customTags[].formatter`).
    Format(Arc<crate::access_log::format::Template>),
}

/// A collector: the cluster spans are exported through, how, and the service name they are
/// reported under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider {
    pub cluster: String,
    /// The `:authority` (`Host`) of export requests (the cluster name when not set, as Envoy).
    pub authority: String,
    /// The spans' service; `None`: the proxy's own service cluster, as Envoy's Zipkin tracer
    /// reports under the node's cluster.
    pub service_name: Option<String>,
    pub export: Export,
    /// New traces get 128-bit ids; otherwise 64-bit ones (the upper half zero).
    pub trace_id_128bit: bool,
}

/// How a collector takes spans.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Export {
    /// OTLP/gRPC `TraceService/Export` (the cluster must speak HTTP/2).
    OtlpGrpc,
    /// Zipkin's v2 JSON span list, POSTed to `path` (`collector_endpoint`).
    ZipkinJson { path: String },
}

/// Converts an HCM's `tracing` (field names relative to it).
pub(super) fn tracing(mut t: hcm::http_connection_manager::Tracing) -> Result<Tracing, Reason> {
    let percent = |field: &'static str, p: Option<envoy_types::pb::envoy::r#type::v3::Percent>| {
        let value = p.map_or(100.0, |p| p.value);
        if (0.0..=100.0).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                format!("tracing.{field}"),
                format!("{value} is not a percentage in 0..=100"),
            ))
        }
    };
    let random_sampling = percent("random_sampling", t.random_sampling.take())?;
    let client_sampling = percent("client_sampling", t.client_sampling.take())?;
    let overall_sampling = percent("overall_sampling", t.overall_sampling.take())?;
    let max_path_tag_length = t
        .max_path_tag_length
        .take()
        .map_or(DEFAULT_MAX_PATH_TAG_LENGTH, |v| v.value as usize);
    let custom_tags = std::mem::take(&mut t.custom_tags)
        .into_iter()
        .enumerate()
        .map(|(i, tag)| custom_tag(tag).map_err(|e| e.within(&format!("tracing.custom_tags[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let provider = match t.provider.take() {
        Some(p) => provider(p).map_err(|e| e.within("tracing.provider"))?,
        None => return Err(Reason::Missing("tracing.provider")),
    };
    // `verbose` only adds log events to spans.
    t.verbose = false;
    let propagate = !std::mem::take(&mut t.no_context_propagation);
    reject_leftover(&t, "tracing")?;
    Ok(Tracing {
        random_sampling,
        client_sampling,
        overall_sampling,
        max_path_tag_length,
        custom_tags,
        propagate,
        provider: Arc::new(provider),
    })
}

fn custom_tag(
    tag: envoy_types::pb::envoy::r#type::tracing::v3::CustomTag,
) -> Result<CustomTag, Reason> {
    if tag.tag.is_empty() {
        return Err(Reason::Missing("tag"));
    }
    let value = match tag.r#type {
        Some(custom_tag::Type::Literal(l)) => TagValue::Fixed(l.value.into()),
        Some(custom_tag::Type::Environment(e)) => {
            if e.name.is_empty() {
                return Err(Reason::Missing("environment.name"));
            }
            let value = std::env::var(&e.name).unwrap_or(e.default_value);
            TagValue::Fixed(value.into())
        }
        Some(custom_tag::Type::RequestHeader(h)) => TagValue::Header {
            name: http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                invalid(
                    "request_header.name",
                    format!("{:?} is not a header name", h.name),
                )
            })?,
            default: (!h.default_value.is_empty()).then(|| h.default_value.into()),
        },
        Some(custom_tag::Type::Metadata(_)) => return Err(Reason::Unsupported("metadata".into())),
        Some(custom_tag::Type::Value(v)) => TagValue::Format(Arc::new(
            crate::access_log::format::Template::parse(&v)
                .map_err(|e| invalid("value", e.to_string()))?,
        )),
        None => return Err(Reason::Missing("literal, environment or request_header")),
    };
    Ok(CustomTag {
        name: tag.tag.into(),
        value,
    })
}

fn provider(p: trace::tracing::Http) -> Result<Provider, Reason> {
    let expected = match p.name.as_str() {
        OPENTELEMETRY => OPENTELEMETRY_CONFIG,
        ZIPKIN => ZIPKIN_CONFIG,
        _ => {
            return Err(Reason::UnsupportedValue {
                field: "name",
                value: p.name,
            });
        }
    };
    let any = match p.config_type {
        Some(trace::tracing::http::ConfigType::TypedConfig(any)) => any,
        None => return Err(Reason::Missing("typed_config")),
    };
    if any.type_url != expected {
        return Err(Reason::UnsupportedValue {
            field: "typed_config",
            value: any.type_url,
        });
    }
    if p.name == ZIPKIN {
        return zipkin(&any);
    }
    let mut config =
        trace::OpenTelemetryConfig::decode(any.value.as_slice()).map_err(|e| Reason::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        })?;
    use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
    let mut grpc = config
        .grpc_service
        .take()
        .ok_or(Reason::Missing("typed_config.grpc_service"))?;
    let envoy_grpc = match grpc.target_specifier.take() {
        Some(TargetSpecifier::EnvoyGrpc(g)) => g,
        Some(TargetSpecifier::GoogleGrpc(_)) => {
            return Err(Reason::Unsupported(
                "typed_config.grpc_service.google_grpc".into(),
            ));
        }
        None => return Err(Reason::Missing("typed_config.grpc_service.envoy_grpc")),
    };
    if envoy_grpc.cluster_name.is_empty() {
        return Err(Reason::Missing(
            "typed_config.grpc_service.envoy_grpc.cluster_name",
        ));
    }
    // The export timeout and retry policy are the proxy's own (trace/export.rs).
    grpc.timeout = None;
    reject_set!(grpc, initial_metadata, retry_policy);
    reject_leftover(&grpc, "typed_config.grpc_service")?;
    let service_name = std::mem::take(&mut config.service_name);
    reject_set!(config, http_service, exporter, resource_detectors, sampler);
    reject_leftover(&config, "typed_config")?;
    Ok(Provider {
        authority: if envoy_grpc.authority.is_empty() {
            envoy_grpc.cluster_name.clone()
        } else {
            envoy_grpc.authority
        },
        cluster: envoy_grpc.cluster_name,
        service_name: Some(if service_name.is_empty() {
            // Envoy's default service name.
            "unknown_service:envoy".into()
        } else {
            service_name
        }),
        export: Export::OtlpGrpc,
        trace_id_128bit: true,
    })
}

/// Envoy's Zipkin tracer as Istio configures it: v2 JSON over HTTP to the collector's cluster,
/// each proxy's span its own (`shared_span_context: false`).
fn zipkin(any: &envoy_types::pb::google::protobuf::Any) -> Result<Provider, Reason> {
    use trace::zipkin_config::{CollectorEndpointVersion, TraceContextOption};
    let mut config =
        trace::ZipkinConfig::decode(any.value.as_slice()).map_err(|e| Reason::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        })?;
    let cluster = std::mem::take(&mut config.collector_cluster);
    if cluster.is_empty() {
        return Err(Reason::Missing("typed_config.collector_cluster"));
    }
    let path = std::mem::take(&mut config.collector_endpoint);
    if path.is_empty() {
        return Err(Reason::Missing("typed_config.collector_endpoint"));
    }
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(invalid(
            "typed_config.collector_endpoint",
            format!("{path:?} is not a request path"),
        ));
    }
    let version = std::mem::take(&mut config.collector_endpoint_version);
    if version != CollectorEndpointVersion::HttpJson as i32 {
        let name = CollectorEndpointVersion::try_from(version)
            .map_or_else(|_| version.to_string(), |v| v.as_str_name().to_string());
        return Err(Reason::Unsupported(format!(
            "typed_config.collector_endpoint_version {name} (HTTP_JSON only)"
        )));
    }
    // Envoy's default (unset) shares the caller's span id with the server span; Weft's proxy
    // always makes its own span, as Istio asks with `false`.
    if config.shared_span_context.take().is_none_or(|v| v.value) {
        return Err(Reason::Unsupported(
            "typed_config.shared_span_context other than false".into(),
        ));
    }
    let hostname = std::mem::take(&mut config.collector_hostname);
    let trace_id_128bit = std::mem::take(&mut config.trace_id_128bit);
    // B3 only, or B3 and W3C: the proxy reads and writes both either way.
    if TraceContextOption::try_from(config.trace_context_option).is_ok() {
        config.trace_context_option = 0;
    }
    reject_set!(config, split_spans_for_request, collector_service);
    reject_leftover(&config, "typed_config")?;
    Ok(Provider {
        authority: if hostname.is_empty() {
            cluster.clone()
        } else {
            hostname
        },
        cluster,
        service_name: None,
        export: Export::ZipkinJson { path },
        trace_id_128bit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
    use envoy_types::pb::envoy::r#type::tracing::v3 as tag;
    use envoy_types::pb::envoy::r#type::v3::Percent;
    use envoy_types::pb::google::protobuf::Any;

    fn otel(config: trace::OpenTelemetryConfig) -> trace::tracing::Http {
        trace::tracing::Http {
            name: OPENTELEMETRY.into(),
            config_type: Some(trace::tracing::http::ConfigType::TypedConfig(Any {
                type_url: OPENTELEMETRY_CONFIG.into(),
                value: config.encode_to_vec(),
            })),
        }
    }

    fn collector() -> trace::OpenTelemetryConfig {
        trace::OpenTelemetryConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: "outbound|4317||jaeger.obs.svc.cluster.local".into(),
                        authority: "jaeger.obs.svc.cluster.local".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            service_name: "productpage.default".into(),
            ..Default::default()
        }
    }

    #[test]
    fn istios_opentelemetry_tracing_converts() {
        let t = tracing(hcm::http_connection_manager::Tracing {
            random_sampling: Some(Percent { value: 25.0 }),
            max_path_tag_length: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 64 }),
            custom_tags: vec![
                tag::CustomTag {
                    tag: "istio.canonical_service".into(),
                    r#type: Some(custom_tag::Type::Literal(custom_tag::Literal {
                        value: "productpage".into(),
                    })),
                },
                tag::CustomTag {
                    tag: "env".into(),
                    r#type: Some(custom_tag::Type::Environment(custom_tag::Environment {
                        name: "PATH".into(),
                        default_value: "none".into(),
                    })),
                },
                tag::CustomTag {
                    tag: "unset".into(),
                    r#type: Some(custom_tag::Type::Environment(custom_tag::Environment {
                        name: "WEFT_TEST_NO_SUCH_VARIABLE".into(),
                        default_value: "fallback".into(),
                    })),
                },
                tag::CustomTag {
                    tag: "user".into(),
                    r#type: Some(custom_tag::Type::RequestHeader(custom_tag::Header {
                        name: "end-user".into(),
                        default_value: String::new(),
                    })),
                },
            ],
            provider: Some(otel(collector())),
            ..Default::default()
        })
        .expect("converts");
        assert_eq!(t.random_sampling, 25.0);
        assert!(
            t.propagate,
            "propagation is on unless no_context_propagation"
        );
        assert_eq!((t.client_sampling, t.overall_sampling), (100.0, 100.0));
        assert_eq!(t.max_path_tag_length, 64);
        assert_eq!(
            t.custom_tags[0].value,
            TagValue::Fixed("productpage".into())
        );
        let path = std::env::var("PATH").expect("PATH");
        assert_eq!(t.custom_tags[1].value, TagValue::Fixed(path.into()));
        assert_eq!(t.custom_tags[2].value, TagValue::Fixed("fallback".into()));
        assert!(
            matches!(&t.custom_tags[3].value, TagValue::Header { name, default: None } if name == "end-user")
        );
        assert_eq!(
            *t.provider,
            Provider {
                cluster: "outbound|4317||jaeger.obs.svc.cluster.local".into(),
                authority: "jaeger.obs.svc.cluster.local".into(),
                service_name: Some("productpage.default".into()),
                export: Export::OtlpGrpc,
                trace_id_128bit: true,
            }
        );
    }

    /// Istio's `ZipkinConfig` (the legacy collector fields it sends every proxy).
    fn istio_zipkin() -> trace::ZipkinConfig {
        trace::ZipkinConfig {
            collector_cluster: "outbound|9411||zipkin.istio-system.svc.cluster.local".into(),
            collector_endpoint: "/api/v2/spans".into(),
            collector_hostname: "zipkin.istio-system.svc.cluster.local".into(),
            collector_endpoint_version: trace::zipkin_config::CollectorEndpointVersion::HttpJson
                as i32,
            trace_id_128bit: true,
            shared_span_context: Some(envoy_types::pb::google::protobuf::BoolValue {
                value: false,
            }),
            ..Default::default()
        }
    }

    fn zipkin_provider(config: &trace::ZipkinConfig) -> trace::tracing::Http {
        trace::tracing::Http {
            name: ZIPKIN.into(),
            config_type: Some(trace::tracing::http::ConfigType::TypedConfig(Any {
                type_url: ZIPKIN_CONFIG.into(),
                value: config.encode_to_vec(),
            })),
        }
    }

    fn with_provider(p: trace::tracing::Http) -> Result<Tracing, Reason> {
        tracing(hcm::http_connection_manager::Tracing {
            provider: Some(p),
            ..Default::default()
        })
    }

    #[test]
    fn value_tags_are_access_log_formats_checked_when_they_arrive() {
        let with_value = |value: &str| {
            tracing(hcm::http_connection_manager::Tracing {
                provider: Some(otel(collector())),
                custom_tags: vec![tag::CustomTag {
                    tag: "sni".into(),
                    r#type: Some(custom_tag::Type::Value(value.into())),
                }],
                ..Default::default()
            })
        };
        let t = with_value("%REQUESTED_SERVER_NAME%").expect("converts");
        assert!(matches!(t.custom_tags[0].value, TagValue::Format(_)));
        let error = with_value("%NOPE%").unwrap_err().to_string();
        assert!(
            error.contains("tracing.custom_tags[0].value") && error.contains("%NOPE%"),
            "{error}"
        );
    }

    #[test]
    fn no_context_propagation_converts() {
        let t = tracing(hcm::http_connection_manager::Tracing {
            provider: Some(otel(collector())),
            no_context_propagation: true,
            ..Default::default()
        })
        .expect("converts");
        assert!(!t.propagate);
    }

    #[test]
    fn istios_zipkin_tracing_converts() {
        let t = with_provider(zipkin_provider(&istio_zipkin())).expect("converts");
        assert_eq!(
            *t.provider,
            Provider {
                cluster: "outbound|9411||zipkin.istio-system.svc.cluster.local".into(),
                authority: "zipkin.istio-system.svc.cluster.local".into(),
                service_name: None,
                export: Export::ZipkinJson {
                    path: "/api/v2/spans".into()
                },
                trace_id_128bit: true,
            }
        );
        // 64-bit ids (Istio's enable64bitTraceId), Envoy's default Host, B3 with W3C.
        let mut config = istio_zipkin();
        config.trace_id_128bit = false;
        config.collector_hostname = String::new();
        config.trace_context_option =
            trace::zipkin_config::TraceContextOption::UseB3WithW3cPropagation as i32;
        let t = with_provider(zipkin_provider(&config)).expect("converts");
        assert!(!t.provider.trace_id_128bit);
        assert_eq!(t.provider.authority, t.provider.cluster);
    }

    #[test]
    fn zipkin_settings_the_proxy_cannot_honour_are_refused_by_name() {
        let refused = |change: &dyn Fn(&mut trace::ZipkinConfig)| {
            let mut config = istio_zipkin();
            change(&mut config);
            with_provider(zipkin_provider(&config))
                .expect_err("refused")
                .to_string()
        };
        for (change, expected) in [
            (
                Box::new(|c: &mut trace::ZipkinConfig| {
                    c.collector_endpoint_version =
                        trace::zipkin_config::CollectorEndpointVersion::HttpProto as i32;
                }) as Box<dyn Fn(&mut trace::ZipkinConfig)>,
                "tracing.provider.typed_config.collector_endpoint_version HTTP_PROTO",
            ),
            (
                Box::new(|c| c.shared_span_context = None),
                "tracing.provider.typed_config.shared_span_context",
            ),
            (
                Box::new(|c| c.collector_cluster = String::new()),
                "tracing.provider.typed_config.collector_cluster: is required",
            ),
            (
                Box::new(|c| c.collector_endpoint = "api/v2/spans".into()),
                "tracing.provider.typed_config.collector_endpoint: \"api/v2/spans\" is not a request path",
            ),
            (
                Box::new(|c| {
                    #[allow(deprecated)]
                    {
                        c.split_spans_for_request = true;
                    }
                }),
                "split_spans_for_request",
            ),
            (
                Box::new(|c| c.collector_service = Some(Default::default())),
                "collector_service",
            ),
        ] {
            let error = refused(&*change);
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
        // A Zipkin name with another tracer's config.
        let mismatched = with_provider(trace::tracing::Http {
            name: ZIPKIN.into(),
            ..otel(collector())
        })
        .expect_err("refused")
        .to_string();
        assert!(mismatched.contains("OpenTelemetryConfig"), "{mismatched}");
    }

    #[test]
    fn what_the_proxy_cannot_report_is_refused_by_name() {
        let base = || hcm::http_connection_manager::Tracing {
            provider: Some(otel(collector())),
            ..Default::default()
        };
        let refused =
            |t: hcm::http_connection_manager::Tracing| tracing(t).expect_err("refused").to_string();
        let datadog = refused(hcm::http_connection_manager::Tracing {
            provider: Some(trace::tracing::Http {
                name: "envoy.tracers.datadog".into(),
                config_type: None,
            }),
            ..base()
        });
        assert!(datadog.contains("envoy.tracers.datadog"), "{datadog}");
        let over = refused(hcm::http_connection_manager::Tracing {
            random_sampling: Some(Percent { value: 120.0 }),
            ..base()
        });
        assert!(
            over.contains("tracing.random_sampling: 120 is not a percentage"),
            "{over}"
        );
        let mut http_export = collector();
        http_export.http_service = Some(Default::default());
        let http = refused(hcm::http_connection_manager::Tracing {
            provider: Some(otel(http_export)),
            ..base()
        });
        assert!(http.contains("http_service"), "{http}");
        let metadata = refused(hcm::http_connection_manager::Tracing {
            custom_tags: vec![tag::CustomTag {
                tag: "m".into(),
                r#type: Some(custom_tag::Type::Metadata(Default::default())),
            }],
            ..base()
        });
        assert!(
            metadata.contains("tracing.custom_tags[0].metadata"),
            "{metadata}"
        );
        let missing = refused(hcm::http_connection_manager::Tracing::default());
        assert!(
            missing.contains("tracing.provider is required"),
            "{missing}"
        );
    }
}
