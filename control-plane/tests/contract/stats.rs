//! Telemetry `metrics` reach the proxy's stats settings (`istio.stats` in every chain): the
//! root namespace's, the namespace's and the workload's overrides merged per side as Istio
//! merges them (tags removed and upserted, metrics dropped, a side switched off), in the
//! explicit and the capture shape; what proxies cannot act on is reported with its path.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3 as lds;
use weft_controller::model::{MeshSettings, Model};
use weft_proxy::config::{Listener, Network};
use weft_proxy::metrics::view::{Metric, Stats};
use weft_xds::type_url;

use super::check::{APP_PORT, Generated, ProxySpec, controller_proxy, free_ports};
use super::fixtures::config_from;

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9000, name: tcp, protocol: TCP}]
  endpoints: [{address: 127.0.0.1, labels: {app: shop}}]
"#;

/// Mesh-wide: no `request_protocol`. The namespace: the request's method on outbound request
/// counts. The shop workload: no TCP bytes sent inbound, and a bad expression and an unknown
/// custom metric, both reported and left out.
const LAYERED: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - tagOverrides: {request_protocol: {operation: REMOVE}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: namespace, namespace: default}
spec:
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides: {request_method: {value: request.method}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  metrics:
  - overrides:
    - match: {metric: TCP_SENT_BYTES, mode: SERVER}
      disabled: true
    - match: {metric: REQUEST_DURATION}
      tagOverrides: {broken: {value: "reqest.host"}}
    - match: {customMetric: my_counter}
      disabled: true
"#;

fn spec(app: &str, capture: Option<String>) -> ProxySpec {
    ProxySpec {
        label: app.into(),
        namespace: "default".into(),
        labels: vec![("app".into(), app.into())],
        app_port: Some(APP_PORT),
        capture,
    }
}

/// Per listener, the stats settings of each chain (`None`: no filter, nothing recorded).
type ByListener = HashMap<String, Vec<Option<Arc<Stats>>>>;

fn converted(model: &Model, spec: &ProxySpec) -> ByListener {
    let (outbound, inbound) = free_ports();
    let generated = Generated::new(model, &controller_proxy(spec, outbound, inbound));
    let mut out = HashMap::new();
    for r in &generated.listeners {
        let listener =
            super::check::convert::<lds::Listener, Listener>(r, type_url::LISTENER, |l| &l.name)
                .unwrap_or_else(|e| panic!("listener {}: {e}", r.name));
        let chains = listener
            .chains
            .iter()
            .map(|c| match &c.network {
                Network::Http(m) => m.stats.clone(),
                Network::Tcp(t) => t.stats.clone(),
            })
            .collect();
        out.insert(listener.name.clone(), chains);
    }
    out
}

fn model(files: &[(&str, &str)]) -> Model {
    let set = config_from(files);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    Model::build_with_registry(&set, None, &MeshSettings::default())
}

const SHAPES: [Option<&str>; 2] = [None, Some("127.0.0.1")];

#[test]
fn without_telemetry_every_chain_records_the_standard_metrics() {
    let model = model(&[("services.yaml", SERVICES)]);
    for capture in SHAPES {
        let by_listener = converted(&model, &spec("shop", capture.map(str::to_string)));
        for (name, chains) in &by_listener {
            assert!(!chains.is_empty(), "{name}");
            for stats in chains {
                let stats = stats
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name} ({capture:?}): a chain without istio.stats"));
                assert!(Arc::ptr_eq(stats, &Stats::standard()), "{name}: {stats:?}");
            }
        }
    }
}

#[test]
fn the_levels_merge_per_side() {
    let model = model(&[("services.yaml", SERVICES), ("telemetry.yaml", LAYERED)]);
    let paths: Vec<&str> = model
        .warnings
        .iter()
        .filter(|w| w.object.kind == "Telemetry")
        .map(|w| w.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "spec.metrics[0].overrides[1].tagOverrides.broken.value",
            "spec.metrics[0].overrides[2].match.customMetric",
        ],
        "{:#?}",
        model.warnings
    );
    for capture in SHAPES {
        let by_listener = converted(&model, &spec("shop", capture.map(str::to_string)));
        let shape = format!("{capture:?}");
        for stats in by_listener["virtualInbound"].iter() {
            let stats = stats.as_ref().expect("inbound records");
            for metric in Metric::ALL {
                let s = stats.metric(metric);
                assert_eq!(s.remove, ["request_protocol"], "{shape} {metric:?}");
                assert!(s.dimensions.is_empty(), "{shape} {metric:?}");
                assert_eq!(s.drop, metric == Metric::TcpSent, "{shape} {metric:?}");
            }
        }
        for stats in by_listener["virtualOutbound"].iter() {
            let stats = stats.as_ref().expect("outbound records");
            for metric in Metric::ALL {
                let s = stats.metric(metric);
                assert_eq!(s.remove, ["request_protocol"], "{shape} {metric:?}");
                assert!(!s.drop, "{shape} {metric:?}");
                if metric == Metric::Requests {
                    let [(name, index)] = s.dimensions.as_slice() else {
                        panic!("{shape}: one dimension expected: {s:?}");
                    };
                    assert_eq!(name, "request_method");
                    assert_eq!(stats.expression(*index), Some("request.method"));
                } else {
                    assert!(s.dimensions.is_empty(), "{shape} {metric:?}");
                }
            }
        }
    }
}

#[test]
fn a_side_switched_off_has_no_filter_and_a_later_level_switches_it_back_on() {
    const OFF: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS, mode: SERVER}
      disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      disabled: false
"#;
    let model = model(&[("services.yaml", SERVICES), ("telemetry.yaml", OFF)]);
    for capture in SHAPES {
        let other = converted(&model, &spec("cart", capture.map(str::to_string)));
        assert!(
            other["virtualInbound"].iter().all(Option::is_none),
            "mesh-wide SERVER off: {:?}",
            other["virtualInbound"]
        );
        assert!(other["virtualOutbound"].iter().all(Option::is_some));
        let shop = converted(&model, &spec("shop", capture.map(str::to_string)));
        assert!(
            shop["virtualInbound"].iter().all(Option::is_some),
            "the workload's override turns its server side back on"
        );
    }
}

#[test]
fn a_provider_other_than_prometheus_is_reported_and_records_nothing() {
    const ELSEWHERE: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  metrics:
  - providers: [{name: stackdriver}]
"#;
    let model = model(&[("services.yaml", SERVICES), ("telemetry.yaml", ELSEWHERE)]);
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.path == "spec.metrics[0].providers[0]" && w.message.contains("prometheus")),
        "{:#?}",
        model.warnings
    );
    for capture in SHAPES {
        let by_listener = converted(&model, &spec("shop", capture.map(str::to_string)));
        for (name, chains) in &by_listener {
            assert!(chains.iter().all(Option::is_none), "{name}: {chains:?}");
        }
    }
}
