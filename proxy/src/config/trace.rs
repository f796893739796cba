//! An HTTP connection manager's `tracing` → [`Tracing`]: how often a request without a trace
//! starts one, the tags every span gets, and the OpenTelemetry collector spans go to.
//!
//! ```text
//!  HttpConnectionManager.tracing ─► random/client/overall sampling (Percent, Envoy's default 100)
//!     ├─► custom_tags: literal │ environment (read now) │ request_header (read per request)
//!     └─► provider envoy.tracers.opentelemetry ─► OpenTelemetryConfig
//!            grpc_service.envoy_grpc{cluster_name, authority} + service_name ─► trace/export.rs
//! ```
//! Anything else a tracer could be given (Zipkin, HTTP export, samplers, resource detectors,
//! metadata tags) is refused, so a proxy never reports less than it was asked to.

use std::sync::Arc;

use envoy_types::pb::envoy::config::trace::v3 as trace;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::r#type::tracing::v3::custom_tag;
use prost::Message;

use super::{Reason, invalid, reject_leftover, reject_set};

/// Envoy's OpenTelemetry tracer.
pub const OPENTELEMETRY: &str = "envoy.tracers.opentelemetry";
const OPENTELEMETRY_CONFIG: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
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
}

/// An OpenTelemetry collector: the cluster spans are exported through (OTLP/gRPC), and the
/// `service.name` they are reported under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider {
    pub cluster: String,
    /// The `:authority` of export requests (the cluster name when not set, as Envoy).
    pub authority: String,
    pub service_name: String,
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
    reject_leftover(&t, "tracing")?;
    Ok(Tracing {
        random_sampling,
        client_sampling,
        overall_sampling,
        max_path_tag_length,
        custom_tags,
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
        Some(custom_tag::Type::Value(_)) => return Err(Reason::Unsupported("value".into())),
        None => return Err(Reason::Missing("literal, environment or request_header")),
    };
    Ok(CustomTag {
        name: tag.tag.into(),
        value,
    })
}

fn provider(p: trace::tracing::Http) -> Result<Provider, Reason> {
    if p.name != OPENTELEMETRY {
        return Err(Reason::UnsupportedValue {
            field: "name",
            value: p.name,
        });
    }
    let any = match p.config_type {
        Some(trace::tracing::http::ConfigType::TypedConfig(any)) => any,
        None => return Err(Reason::Missing("typed_config")),
    };
    if any.type_url != OPENTELEMETRY_CONFIG {
        return Err(Reason::UnsupportedValue {
            field: "typed_config",
            value: any.type_url,
        });
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
        service_name: if service_name.is_empty() {
            // Envoy's default service name.
            "unknown_service:envoy".into()
        } else {
            service_name
        },
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
                service_name: "productpage.default".into(),
            }
        );
    }

    #[test]
    fn what_the_proxy_cannot_report_is_refused_by_name() {
        let base = || hcm::http_connection_manager::Tracing {
            provider: Some(otel(collector())),
            ..Default::default()
        };
        let refused =
            |t: hcm::http_connection_manager::Tracing| tracing(t).expect_err("refused").to_string();
        let zipkin = refused(hcm::http_connection_manager::Tracing {
            provider: Some(trace::tracing::Http {
                name: "envoy.tracers.zipkin".into(),
                config_type: None,
            }),
            ..base()
        });
        assert!(zipkin.contains("envoy.tracers.zipkin"), "{zipkin}");
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
