//! Tracing reaches the proxy's domain config: the mesh's OpenTelemetry or Zipkin provider and
//! sampling, a Telemetry's overrides and custom tags, Istio's `istio.*` tags and the span names
//! of the routes (`decorator.operation`), in the explicit and the capture shape; a side with
//! `disableSpanReporting` and a mesh without tracing get nothing.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rds;
use weft_controller::model::trace::MeshTracing;
use weft_controller::model::{MeshSettings, Model};
use weft_proxy::config::trace::{Export, TagValue, Tracing};
use weft_proxy::config::{Listener, Network, RouteConfig};
use weft_xds::type_url;

use super::check::{APP_PORT, Generated, ProxySpec, controller_proxy, convert, free_ports};
use super::fixtures::config_from;

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, labels: {app: shop}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: jaeger, namespace: observability}
spec:
  hosts: [jaeger-collector.observability.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 4317, name: grpc-otlp, protocol: GRPC}]
  endpoints: [{address: 127.0.0.9}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: zipkin, namespace: istio-system}
spec:
  hosts: [zipkin.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9411, name: http-query, protocol: HTTP}]
  endpoints: [{address: 127.0.0.10}]
"#;

/// The shop workload samples everything, adds a header tag, and sends no trace context from its
/// server side (`disableContextPropagation`), which is the only side this Telemetry sets.
const TELEMETRY: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  tracing:
  - match: {mode: SERVER}
    randomSamplingPercentage: 100
    disableContextPropagation: true
    customTags:
      user: {header: {name: end-user, defaultValue: anonymous}}
      team: {literal: {value: payments}}
      sni: {formatter: {value: "%REQUESTED_SERVER_NAME%"}}
"#;

fn mesh() -> MeshSettings {
    let mesh = weft_api::mesh::MeshConfig::from_yaml(
        "defaultConfig: {tracing: {sampling: 5, maxPathTagLength: 99}}
extensionProviders:
- name: otel
  opentelemetry: {service: observability/jaeger-collector.observability.svc.cluster.local, port: 4317}
defaultProviders: {tracing: [otel]}
",
    )
    .expect("mesh config");
    MeshSettings {
        tracing: MeshTracing::from_mesh(&mesh),
        ..MeshSettings::default()
    }
}

fn spec(app: &str, capture: Option<String>) -> ProxySpec {
    ProxySpec {
        label: app.into(),
        namespace: "default".into(),
        labels: vec![("app".into(), app.into()), ("version".into(), "v2".into())],
        app_port: Some(APP_PORT),
        capture,
    }
}

/// Per listener, the tracing of its connection managers.
type ByListener = HashMap<String, Vec<Option<Tracing>>>;
/// Every route (`<route config>/<virtual host>`) with its span name.
type Operations = Vec<(String, Option<String>)>;

/// The proxy's view of what the controller generates for `spec`.
fn converted(model: &Model, spec: &ProxySpec) -> (ByListener, Operations) {
    let (outbound, inbound) = free_ports();
    let generated = Generated::new(model, &controller_proxy(spec, outbound, inbound));
    let mut tracing = HashMap::new();
    for r in &generated.listeners {
        let listener = convert::<lds::Listener, Listener>(r, type_url::LISTENER, |l| &l.name)
            .unwrap_or_else(|e| panic!("listener {}: {e}", r.name));
        let of_chains = listener
            .chains
            .iter()
            .filter_map(|c| match &c.network {
                Network::Http(m) => Some(m.tracing.as_deref().cloned()),
                Network::Tcp(_) => None,
            })
            .collect();
        tracing.insert(listener.name.clone(), of_chains);
    }
    let mut operations = Vec::new();
    for r in &generated.routes {
        let config =
            convert::<rds::RouteConfiguration, RouteConfig>(r, type_url::ROUTE, |c| &c.name)
                .unwrap_or_else(|e| panic!("routes {}: {e}", r.name));
        for vh in &config.virtual_hosts {
            for route in &vh.routes {
                operations.push((
                    format!("{}/{}", config.name, vh.name),
                    route.operation.as_deref().map(str::to_string),
                ));
            }
        }
    }
    (tracing, operations)
}

fn tag<'a>(t: &'a Tracing, name: &str) -> Option<&'a TagValue> {
    t.custom_tags
        .iter()
        .find(|c| &*c.name == name)
        .map(|c| &c.value)
}

fn fixed(value: &str) -> TagValue {
    TagValue::Fixed(value.into())
}

#[test]
fn the_mesh_provider_and_a_workloads_telemetry_reach_the_connection_managers() {
    let set = config_from(&[("services.yaml", SERVICES), ("telemetry.yaml", TELEMETRY)]);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    let model = Model::build_with_registry(&set, None, &mesh());
    assert!(
        model.warnings.iter().all(|w| w.object.kind != "MeshConfig"),
        "{:#?}",
        model.warnings
    );
    for capture in [None, Some("127.0.0.1".to_string())] {
        let (tracing, operations) = converted(&model, &spec("shop", capture.clone()));
        let shape = if capture.is_some() {
            "capture"
        } else {
            "explicit"
        };
        let inbound = tracing["virtualInbound"]
            .iter()
            .flatten()
            .next()
            .unwrap_or_else(|| panic!("{shape}: the inbound HCM traces"));
        let outbound = tracing["virtualOutbound"]
            .iter()
            .flatten()
            .next()
            .unwrap_or_else(|| panic!("{shape}: the outbound HCM traces"));
        for t in [inbound, outbound] {
            assert_eq!(
                t.provider.cluster,
                "outbound|4317||jaeger-collector.observability.svc.cluster.local"
            );
            assert_eq!(
                t.provider.authority,
                "jaeger-collector.observability.svc.cluster.local"
            );
            assert_eq!(t.provider.service_name.as_deref(), Some("shop.default"));
            assert_eq!(t.max_path_tag_length, 99);
            assert_eq!(tag(t, "istio.canonical_service"), Some(&fixed("shop")));
            assert_eq!(tag(t, "istio.canonical_revision"), Some(&fixed("v2")));
            assert_eq!(tag(t, "istio.namespace"), Some(&fixed("default")));
            assert_eq!(tag(t, "istio.mesh_id"), Some(&fixed("cluster.local")));
        }
        // SERVER: the workload's Telemetry; CLIENT: the mesh's defaults.
        assert_eq!(inbound.random_sampling, 100.0, "{shape}");
        assert_eq!(outbound.random_sampling, 5.0, "{shape}");
        assert!(!inbound.propagate, "{shape}: disableContextPropagation");
        assert!(outbound.propagate, "{shape}");
        assert_eq!(tag(inbound, "team"), Some(&fixed("payments")));
        assert!(
            matches!(tag(inbound, "user"), Some(TagValue::Header { name, default: Some(d) }) if name == "end-user" && &**d == "anonymous"),
            "{:?}",
            tag(inbound, "user")
        );
        assert_eq!(tag(outbound, "team"), None);
        assert!(
            matches!(tag(inbound, "sni"), Some(TagValue::Format(_))),
            "{:?}",
            tag(inbound, "sni")
        );
        // Span names: outbound by destination, inbound by the workload's service.
        let outbound_op = operations
            .iter()
            .find(|(at, _)| at.contains("shop.example.internal:9080"))
            .unwrap_or_else(|| panic!("{shape}: no route to shop: {operations:?}"));
        assert_eq!(
            outbound_op.1.as_deref(),
            Some("shop.example.internal:9080/*"),
            "{shape}"
        );
        if capture.is_some() {
            let inbound_op = operations
                .iter()
                .find(|(at, _)| at.contains("inbound|http|9080"))
                .unwrap_or_else(|| panic!("no inbound route: {operations:?}"));
            assert_eq!(
                inbound_op.1.as_deref(),
                Some("shop.example.internal:9080/*")
            );
        }
    }
}

#[test]
fn without_tracing_nothing_is_set() {
    let set = config_from(&[("services.yaml", SERVICES)]);
    // The default mesh config: tracing enabled, but no provider.
    let model = Model::build_with_registry(&set, None, &MeshSettings::default());
    let (tracing, operations) = converted(&model, &spec("shop", Some("127.0.0.1".into())));
    assert!(
        tracing.values().flatten().all(Option::is_none),
        "{tracing:#?}"
    );
    assert!(
        operations.iter().all(|(_, op)| op.is_none()),
        "{operations:?}"
    );
}

#[test]
fn an_unusable_provider_is_reported_and_nothing_traces() {
    let set = config_from(&[("services.yaml", SERVICES)]);
    let mesh = weft_api::mesh::MeshConfig::from_yaml(
        "extensionProviders:
- name: otel
  opentelemetry: {service: collector.nowhere.svc.cluster.local, port: 4317}
- name: zipkin
  zipkin: {service: jaeger-collector.observability.svc.cluster.local, port: 9411}
defaultProviders: {tracing: [otel]}
",
    )
    .expect("mesh config");
    let settings = MeshSettings {
        tracing: MeshTracing::from_mesh(&mesh),
        ..MeshSettings::default()
    };
    let model = Model::build_with_registry(&set, None, &settings);
    let warning = model
        .warnings
        .iter()
        .find(|w| w.object.kind == "MeshConfig")
        .expect("a warning on the mesh config");
    assert_eq!(warning.path, "defaultProviders.tracing[0]");
    assert!(
        warning
            .message
            .contains("collector.nowhere.svc.cluster.local"),
        "{warning:?}"
    );
    let (tracing, _) = converted(&model, &spec("shop", None));
    assert!(tracing.values().flatten().all(Option::is_none));

    // A Telemetry naming a provider that does not trace, and one whose service lacks the
    // port: reported with their paths.
    let telemetry = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{providers: [{name: stdout}]}, {providers: [{name: zipkin}]}]
";
    let mesh = weft_api::mesh::MeshConfig::from_yaml(
        "extensionProviders:
- name: stdout
  envoyFileAccessLog: {path: /dev/stdout}
- name: zipkin
  zipkin: {service: jaeger-collector.observability.svc.cluster.local, port: 9411}
",
    )
    .expect("mesh config");
    let settings = MeshSettings {
        tracing: MeshTracing::from_mesh(&mesh),
        ..MeshSettings::default()
    };
    let set = config_from(&[("services.yaml", SERVICES), ("t.yaml", telemetry)]);
    let model = Model::build_with_registry(&set, None, &settings);
    let on_telemetry = |path: &str| {
        model
            .warnings
            .iter()
            .find(|w| w.object.kind == "Telemetry" && w.path == path)
            .unwrap_or_else(|| panic!("no warning at {path}: {:#?}", model.warnings))
            .message
            .clone()
    };
    let stdout = on_telemetry("spec.tracing[0].providers[0]");
    assert!(
        stdout.contains("opentelemetry and zipkin providers only"),
        "{stdout}"
    );
    let port = on_telemetry("spec.tracing[1].providers[0]");
    assert!(port.contains("has no port 9411"), "{port}");
    let (tracing, _) = converted(&model, &spec("shop", None));
    assert!(tracing.values().flatten().all(Option::is_none));
}

fn mesh_settings(mesh_yaml: &str) -> MeshSettings {
    let mesh = weft_api::mesh::MeshConfig::from_yaml(mesh_yaml).expect("mesh config");
    MeshSettings {
        tracing: MeshTracing::from_mesh(&mesh),
        ..MeshSettings::default()
    }
}

/// The tracing of the first connection manager of `listener` that has one.
fn first<'a>(tracing: &'a ByListener, listener: &str) -> Option<&'a Tracing> {
    tracing.get(listener)?.iter().flatten().next()
}

#[test]
fn a_zipkin_provider_reaches_the_connection_managers() {
    let settings = mesh_settings(
        "defaultConfig: {tracing: {maxPathTagLength: 99}}
extensionProviders:
- name: zipkin
  zipkin:
    service: istio-system/zipkin.istio-system.svc.cluster.local
    port: 9411
    maxTagLength: 77
    path: /custom/spans
    enable64bitTraceId: true
    timeout: 3s
defaultProviders: {tracing: [zipkin]}
",
    );
    let set = config_from(&[("services.yaml", SERVICES)]);
    let model = Model::build_with_registry(&set, None, &settings);
    let timeout = model
        .warnings
        .iter()
        .find(|w| w.object.kind == "MeshConfig")
        .expect("a warning for the ignored field");
    assert_eq!(timeout.path, "extensionProviders[0].zipkin.timeout");
    for capture in [None, Some("127.0.0.1".to_string())] {
        let (tracing, operations) = converted(&model, &spec("shop", capture));
        for listener in ["virtualInbound", "virtualOutbound"] {
            let t = first(&tracing, listener)
                .unwrap_or_else(|| panic!("{listener} traces: {tracing:#?}"));
            assert_eq!(
                t.provider.cluster,
                "outbound|9411||zipkin.istio-system.svc.cluster.local"
            );
            assert_eq!(
                t.provider.authority,
                "zipkin.istio-system.svc.cluster.local"
            );
            assert_eq!(
                t.provider.export,
                Export::ZipkinJson {
                    path: "/custom/spans".into()
                }
            );
            // Envoy's Zipkin tracer reports under the proxy's service cluster.
            assert_eq!(t.provider.service_name, None);
            assert!(!t.provider.trace_id_128bit, "enable64bitTraceId");
            // The provider's maxTagLength wins over the mesh's maxPathTagLength, as in Istio.
            assert_eq!(t.max_path_tag_length, 77);
            assert_eq!(tag(t, "istio.canonical_service"), Some(&fixed("shop")));
        }
        assert!(
            operations
                .iter()
                .any(|(_, op)| op.as_deref() == Some("shop.example.internal:9080/*")),
            "{operations:?}"
        );
    }
    // Without the optional fields: Istio's defaults.
    let settings = mesh_settings(
        "extensionProviders:
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
defaultProviders: {tracing: [zipkin]}
",
    );
    let model = Model::build_with_registry(&set, None, &settings);
    let (tracing, _) = converted(&model, &spec("shop", None));
    let t = first(&tracing, "virtualOutbound").expect("traced");
    assert_eq!(
        t.provider.export,
        Export::ZipkinJson {
            path: "/api/v2/spans".into()
        }
    );
    assert!(t.provider.trace_id_128bit);
    assert_eq!(t.max_path_tag_length, 256, "Envoy's default");
}

/// Istio's `disableSpanReporting`: the side it applies to gets no `tracing` at all (Istio
/// writes none: its proxy reports nothing and leaves the trace headers to the app); the other
/// side still traces, and a more specific level's `false` turns reporting back on.
#[test]
fn disable_span_reporting_leaves_its_side_untraced() {
    let settings = mesh_settings(
        "extensionProviders:
- name: otel
  opentelemetry: {service: jaeger-collector.observability.svc.cluster.local, port: 4317}
defaultProviders: {tracing: [otel]}
",
    );
    let root = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: 100}]
";
    let namespace = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: no-client-spans, namespace: default}
spec:
  tracing: [{match: {mode: CLIENT}, disableSpanReporting: true}]
";
    let traced = |files: &[(&str, &str)]| {
        let mut all = vec![("services.yaml", SERVICES), ("root.yaml", root)];
        all.extend_from_slice(files);
        let model = Model::build_with_registry(&config_from(&all), None, &settings);
        let (tracing, operations) = converted(&model, &spec("shop", Some("127.0.0.1".into())));
        let inbound = first(&tracing, "virtualInbound").map(|t| t.random_sampling);
        let outbound = first(&tracing, "virtualOutbound").map(|t| t.random_sampling);
        let outbound_op = operations
            .iter()
            .find(|(at, _)| at.contains("shop.example.internal:9080") && !at.contains("inbound"))
            .and_then(|(_, op)| op.clone());
        (inbound, outbound, outbound_op)
    };
    // Only the namespace's client side is off: inbound traced (its sampling the root's),
    // outbound not, and outbound routes get no span names.
    assert_eq!(traced(&[("ns.yaml", namespace)]), (Some(100.0), None, None));
    // The workload's own Telemetry turns reporting back on.
    let workload = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  tracing: [{disableSpanReporting: false}]
";
    assert_eq!(
        traced(&[("ns.yaml", namespace), ("shop.yaml", workload)]),
        (
            Some(100.0),
            Some(100.0),
            Some("shop.example.internal:9080/*".to_string())
        )
    );
    // Both sides off: nothing traced.
    let all_off = namespace.replace("{match: {mode: CLIENT}, ", "{");
    assert_eq!(traced(&[("ns.yaml", &all_off)]), (None, None, None));
}
