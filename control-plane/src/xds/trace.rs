//! Tracing: the `tracing` of each HTTP connection manager and the span names of its routes,
//! from the mesh's defaults and the Telemetry resources ([`crate::model::trace`]), as Istio
//! writes them: Envoy's OpenTelemetry tracer exporting over gRPC, or its Zipkin tracer posting
//! v2 JSON, through the collector service's outbound cluster, spans named `<host>:<port>/*` by
//! the routes' decorators and reported as `<canonical service>.<namespace>`, with Istio's
//! `istio.*` tags.
//!
//! ```text
//!  virtualInbound  HCMs ─► SERVER resolution ┐
//!  virtualOutbound HCMs ─► CLIENT resolution ┴─► Tracing { random_sampling, custom_tags,
//!        max_path_tag_length, no_context_propagation (disableContextPropagation), provider:
//!          envoy.tracers.opentelemetry { envoy_grpc outbound|<port>||<host>, service_name }
//!        │ envoy.tracers.zipkin { collector_cluster outbound|<port>||<host>, collector_endpoint,
//!            collector_hostname, HTTP_JSON, trace_id_128bit, shared_span_context false } }
//!  route configs ─► decorator.operation = <destination host>:<port>/* (inbound: the workload's service)
//! ```
//! Envoy's Zipkin tracer has no service name: it reports under the node's cluster, which the
//! proxy sets to the same `<canonical service>.<namespace>`.

use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    Decorator, RouteConfiguration, route, route_action,
};
use envoy_types::pb::envoy::config::trace::v3::{
    OpenTelemetryConfig, ZipkinConfig, tracing as trace, zipkin_config,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager;
use envoy_types::pb::envoy::r#type::tracing::v3::{CustomTag, custom_tag};
use envoy_types::pb::envoy::r#type::v3::Percent;

use super::listeners::{VIRTUAL_INBOUND, VIRTUAL_OUTBOUND};
use super::{Proxy, outbound_cluster_name, pack};
use crate::model::Model;
use crate::model::telemetry::Side;
use crate::model::trace::{Collector, Resolved, resolve};

/// Envoy's OpenTelemetry tracer.
pub const OPENTELEMETRY: &str = "envoy.tracers.opentelemetry";
/// Envoy's Zipkin tracer.
pub const ZIPKIN: &str = "envoy.tracers.zipkin";

/// The `tracing` of the proxy's connection managers on `side`, if it traces.
pub fn hcm_tracing(
    model: &Model,
    proxy: &Proxy,
    side: Side,
) -> Option<http_connection_manager::Tracing> {
    let resolved = resolve(model, &proxy.namespace, &proxy.labels, side)?;
    Some(translate(model, proxy, &resolved))
}

fn translate(model: &Model, proxy: &Proxy, r: &Resolved) -> http_connection_manager::Tracing {
    let canonical = canonical(proxy);
    let mut custom_tags: Vec<CustomTag> = Vec::new();
    if r.istio_tags {
        for (tag, value) in [
            ("istio.canonical_revision", canonical.1.clone()),
            ("istio.canonical_service", canonical.0.clone()),
            ("istio.mesh_id", model.trust_domain.clone()),
            ("istio.namespace", proxy.namespace.clone()),
        ] {
            custom_tags.push(literal(tag, value));
        }
    }
    for (tag, custom) in &r.custom_tags {
        let kind = if let Some(l) = &custom.literal {
            custom_tag::Type::Literal(custom_tag::Literal {
                value: l.value.clone(),
            })
        } else if let Some(e) = &custom.environment {
            custom_tag::Type::Environment(custom_tag::Environment {
                name: e.name.clone(),
                default_value: e.default_value.clone(),
            })
        } else if let Some(h) = &custom.header {
            custom_tag::Type::RequestHeader(custom_tag::Header {
                name: h.name.clone(),
                default_value: h.default_value.clone(),
            })
        } else if let Some(f) = &custom.formatter {
            // Checked against the proxy's commands when the Telemetry was loaded.
            custom_tag::Type::Value(f.value.clone())
        } else {
            continue;
        };
        // A custom tag of the same name replaces Istio's.
        custom_tags.retain(|t| t.tag != *tag);
        custom_tags.push(CustomTag {
            tag: tag.clone(),
            r#type: Some(kind),
        });
    }
    let cluster = outbound_cluster_name(r.port, "", &r.host);
    let (name, config) = match &r.collector {
        Collector::OpenTelemetry => (
            OPENTELEMETRY,
            pack(&OpenTelemetryConfig {
                grpc_service: Some(GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                        grpc_service::EnvoyGrpc {
                            cluster_name: cluster,
                            authority: r.host.clone(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }),
                service_name: format!("{}.{}", canonical.0, proxy.namespace),
                ..Default::default()
            }),
        ),
        Collector::Zipkin {
            path,
            trace_id_128bit,
            w3c,
        } => (
            ZIPKIN,
            pack(&ZipkinConfig {
                collector_cluster: cluster,
                collector_endpoint: path.clone(),
                collector_hostname: r.host.clone(),
                collector_endpoint_version: zipkin_config::CollectorEndpointVersion::HttpJson
                    as i32,
                trace_id_128bit: *trace_id_128bit,
                shared_span_context: Some(envoy_types::pb::google::protobuf::BoolValue {
                    value: false,
                }),
                trace_context_option: if *w3c {
                    zipkin_config::TraceContextOption::UseB3WithW3cPropagation
                } else {
                    zipkin_config::TraceContextOption::UseB3
                } as i32,
                ..Default::default()
            }),
        ),
    };
    http_connection_manager::Tracing {
        random_sampling: Some(Percent { value: r.sampling }),
        max_path_tag_length: r
            .max_path_tag_length
            .map(|value| envoy_types::pb::google::protobuf::UInt32Value { value }),
        custom_tags,
        provider: Some(trace::Http {
            name: name.to_string(),
            config_type: Some(trace::http::ConfigType::TypedConfig(config)),
        }),
        no_context_propagation: r.no_context_propagation,
        ..Default::default()
    }
}

fn literal(tag: &str, value: String) -> CustomTag {
    CustomTag {
        tag: tag.to_string(),
        r#type: Some(custom_tag::Type::Literal(custom_tag::Literal { value })),
    }
}

/// Istio's canonical service and revision of a workload, from its labels.
fn canonical(proxy: &Proxy) -> (String, String) {
    let label = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| proxy.labels.get(*k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let service = label(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| proxy.workload_name.clone());
    let revision = label(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".to_string());
    (service, revision)
}

/// Sets the tracing of every HTTP connection manager of `listener`.
pub fn apply(model: &Model, proxy: &Proxy, listener: &mut Listener) {
    let side = match listener.name.as_str() {
        VIRTUAL_INBOUND => Side::Server,
        VIRTUAL_OUTBOUND => Side::Client,
        _ => return,
    };
    let Some(tracing) = hcm_tracing(model, proxy, side) else {
        return;
    };
    super::listeners::for_each_hcm(listener, |hcm| hcm.tracing = Some(tracing.clone()));
}

/// Names the spans of the proxy's routes (`decorator.operation`) where it traces: an
/// outbound route by its (first) destination, `<host>:<port>/*`; an inbound route by the
/// workload's service on that port.
pub fn decorate(model: &Model, proxy: &Proxy, configs: &mut [RouteConfiguration]) {
    let client = resolve(model, &proxy.namespace, &proxy.labels, Side::Client).is_some();
    let server = resolve(model, &proxy.namespace, &proxy.labels, Side::Server).is_some();
    if !client && !server {
        return;
    }
    for config in configs {
        for vh in &mut config.virtual_hosts {
            for r in &mut vh.routes {
                let Some(route::Action::Route(action)) = &r.action else {
                    continue;
                };
                let cluster = match &action.cluster_specifier {
                    Some(route_action::ClusterSpecifier::Cluster(c)) => c.as_str(),
                    Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                        match w.clusters.first() {
                            Some(c) => c.name.as_str(),
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                let operation = match cluster.split('|').collect::<Vec<_>>().as_slice() {
                    ["outbound", port, _, host] if client => format!("{host}:{port}/*"),
                    ["inbound", port, ..] if server => {
                        match inbound_operation(model, proxy, port) {
                            Some(op) => op,
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                r.decorator = Some(Decorator {
                    operation,
                    propagate: None,
                });
            }
        }
    }
}

/// `<service host>:<service port>/*` of the workload's service whose endpoint here serves
/// `port` (explicit mode: the sidecar's inbound port, where the endpoints point), the first by
/// host.
fn inbound_operation(model: &Model, proxy: &Proxy, port: &str) -> Option<String> {
    let number: u32 = if proxy.capture {
        port.parse().ok()?
    } else {
        u32::from(proxy.inbound_port)
    };
    let services = super::capture::workload_services(model, proxy, Some(number));
    let service = services.first()?;
    let service_port = service.ports.iter().find(|p| {
        service
            .endpoints
            .iter()
            .any(|e| e.serves(p) && e.port_for(p) == number)
    })?;
    Some(format!("{}:{}/*", service.hostname, service_port.number))
}
