//! Istio's metrics in the model: whether a proxy records Istio's standard metrics on each
//! side, and which it drops or relabels, from the Telemetry resources' `metrics` and the
//! mesh's `defaultProviders.metrics`, merged as Istio merges them.
//!
//! ```text
//!  defaultProviders.metrics (Istio's default: prometheus)
//!    ─► root namespace Telemetry ─► namespace Telemetry ─► workload Telemetry (later wins)
//!    ─► per side (CLIENT: outbound, SERVER: inbound): off (ALL_METRICS disabled, or no
//!       prometheus provider in scope) │ per metric: dropped, tags removed, tags upserted
//! ```
//!
//! Weft's proxies export to Prometheus only: a provider of another kind is reported with its
//! path and ignored. So are overrides Weft cannot act on: a `customMetric` that names none of
//! Istio's metrics, the gRPC message counters (not recorded yet), and tag values that are not
//! CEL over the attributes the proxy provides.

use std::collections::{BTreeMap, BTreeSet};

use weft_api::mesh::MeshConfig;
use weft_api::telemetry::{IstioMetric, Metrics, TagOperation, WorkloadMode};
use weft_xds::stats as wire;

use super::Model;
use super::telemetry::Side;
use crate::object::{ObjectKey, Warning};

/// Istio's built-in metrics provider, and the kind of `extensionProviders` entry that is one.
pub const PROMETHEUS: &str = "prometheus";

/// Istio's metrics by their enum name, with the stats filter's (Prometheus) name.
const METRICS: [(IstioMetric, &str); 10] = [
    (IstioMetric::RequestCount, wire::REQUESTS_TOTAL),
    (IstioMetric::RequestDuration, wire::REQUEST_DURATION),
    (IstioMetric::RequestSize, wire::REQUEST_BYTES),
    (IstioMetric::ResponseSize, wire::RESPONSE_BYTES),
    (IstioMetric::TcpOpenedConnections, wire::TCP_OPENED),
    (IstioMetric::TcpClosedConnections, wire::TCP_CLOSED),
    (IstioMetric::TcpSentBytes, wire::TCP_SENT),
    (IstioMetric::TcpReceivedBytes, wire::TCP_RECEIVED),
    (IstioMetric::GrpcRequestMessages, wire::REQUEST_MESSAGES),
    (IstioMetric::GrpcResponseMessages, wire::RESPONSE_MESSAGES),
];

/// The mesh's metrics providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshMetrics {
    /// `defaultProviders.metrics` (Istio's default: `prometheus`).
    pub default_providers: Vec<String>,
    /// The provider names that are Prometheus: the built-in one and every
    /// `extensionProviders` entry of kind `prometheus`.
    pub prometheus: BTreeSet<String>,
}

impl Default for MeshMetrics {
    fn default() -> Self {
        Self {
            default_providers: vec![PROMETHEUS.to_string()],
            prometheus: BTreeSet::from([PROMETHEUS.to_string()]),
        }
    }
}

impl MeshMetrics {
    pub fn from_mesh(mesh: &MeshConfig) -> Self {
        let mut prometheus = BTreeSet::from([PROMETHEUS.to_string()]);
        for p in &mesh.extension_providers {
            if p.kind() == PROMETHEUS {
                prometheus.insert(p.name.clone());
            } else {
                // An entry of another kind under the built-in's name replaces it.
                prometheus.remove(&p.name);
            }
        }
        Self {
            default_providers: mesh
                .default_providers
                .as_ref()
                .and_then(|d| d.metrics.clone())
                .unwrap_or_else(|| vec![PROMETHEUS.to_string()]),
            prometheus,
        }
    }
}

/// What a proxy's listeners of one side record: every metric, but for these overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SideMetrics {
    /// One per metric an override touched, by the stats filter's name.
    pub overrides: Vec<MetricOverride>,
    /// The Telemetry's `reportingInterval` (TCP metrics), the most specific one set.
    pub reporting_interval: Option<std::time::Duration>,
}

/// The overrides of one metric.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricOverride {
    /// The stats filter's name (`requests_total`, …).
    pub name: &'static str,
    /// Not recorded.
    pub drop: bool,
    /// Labels left out.
    pub remove: Vec<String>,
    /// Labels added or replaced: name → CEL expression of the value.
    pub dimensions: BTreeMap<String, String>,
}

/// The metrics of a proxy's listeners on `side`; `None`: none recorded.
pub fn resolve(
    model: &Model,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    side: Side,
) -> Option<SideMetrics> {
    let mesh = &model.metrics;
    let specs: Vec<&Metrics> = super::trace::levels(model, namespace, labels)
        .flat_map(|entry| entry.metrics.iter())
        .collect();
    let names = |m: &Metrics| {
        m.providers
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    // The providers in scope: the last level that names any, else the mesh's defaults.
    let in_scope: BTreeSet<String> = specs
        .iter()
        .map(|m| names(m))
        .rfind(|n| !n.is_empty())
        .unwrap_or_else(|| mesh.default_providers.clone())
        .into_iter()
        .filter(|name| mesh.prometheus.contains(name))
        .collect();
    if in_scope.is_empty() {
        return None;
    }
    let mut disabled_all = false;
    let mut reporting_interval = None;
    // Metric name → (disabled, tag → override), in the order Istio applies them.
    let mut merged: BTreeMap<&'static str, (Option<bool>, BTreeMap<String, Tag>)> = BTreeMap::new();
    let mut parent = mesh.default_providers.clone();
    for m in specs {
        let own = names(m);
        let providers = if own.is_empty() { parent.clone() } else { own };
        parent.clone_from(&providers);
        if !providers.iter().any(|p| in_scope.contains(p)) {
            continue;
        }
        if let Some(interval) = m.reporting_interval {
            reporting_interval = Some(interval.0);
        }
        for o in &m.overrides {
            let mode = o
                .match_
                .as_ref()
                .and_then(|s| s.mode)
                .unwrap_or(WorkloadMode::ClientAndServer);
            let applies = match side {
                Side::Client => mode != WorkloadMode::Server,
                Side::Server => mode != WorkloadMode::Client,
            };
            if !applies {
                continue;
            }
            let selector = o.match_.as_ref();
            let custom = selector.and_then(|s| s.custom_metric.as_deref());
            let metric = selector.and_then(|s| s.metric);
            let all = custom.is_none() && matches!(metric, None | Some(IstioMetric::AllMetrics));
            if all && o.disabled == Some(true) {
                disabled_all = true;
                continue;
            }
            // A later level that turns metrics back on for this side undoes the switch-off.
            disabled_all = false;
            let targets: Vec<&'static str> = match (custom, metric) {
                (Some(name), _) => custom_metric(name).into_iter().collect(),
                (None, Some(m)) if m != IstioMetric::AllMetrics => METRICS
                    .iter()
                    .filter(|(k, _)| *k == m)
                    .map(|(_, n)| *n)
                    .collect(),
                _ => METRICS.iter().map(|(_, n)| *n).collect(),
            };
            for name in targets {
                let entry = merged.entry(name).or_default();
                if o.disabled.is_some() {
                    entry.0 = o.disabled;
                }
                for (tag, t) in &o.tag_overrides {
                    let tag_value = match t.operation.unwrap_or(TagOperation::Upsert) {
                        TagOperation::Remove => Tag::Remove,
                        TagOperation::Upsert => match &t.value {
                            Some(value) => Tag::Upsert(value.clone()),
                            None => continue,
                        },
                    };
                    entry.1.insert(tag.clone(), tag_value);
                }
            }
        }
    }
    if disabled_all {
        return None;
    }
    let overrides = merged
        .into_iter()
        .map(|(name, (disabled, tags))| {
            let mut o = MetricOverride {
                name,
                drop: disabled == Some(true),
                ..Default::default()
            };
            for (tag, t) in tags {
                match t {
                    Tag::Remove => o.remove.push(tag),
                    Tag::Upsert(value) => {
                        o.dimensions.insert(tag, value);
                    }
                }
            }
            o
        })
        .collect();
    Some(SideMetrics {
        overrides,
        reporting_interval,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tag {
    Remove,
    Upsert(String),
}

/// A `customMetric` that names one of Istio's metrics by its Prometheus name (with or
/// without `istio_`).
fn custom_metric(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("istio_").unwrap_or(name);
    METRICS.iter().map(|(_, n)| *n).find(|n| *n == name)
}

/// Keeps of a Telemetry's `metrics` what proxies can act on; the rest is reported with its
/// path: unknown custom metrics, the gRPC message counters, tag values that are not CEL over
/// the attributes the proxy provides.
pub fn usable(key: &ObjectKey, metrics: &[Metrics], warnings: &mut Vec<Warning>) -> Vec<Metrics> {
    let mut kept = metrics.to_vec();
    for (i, m) in kept.iter_mut().enumerate() {
        let mut j = 0;
        m.overrides.retain_mut(|o| {
            let path = format!("spec.metrics[{i}].overrides[{j}]");
            j += 1;
            let selector = o.match_.as_ref();
            if let Some(name) = selector.and_then(|s| s.custom_metric.as_deref())
                && custom_metric(name).is_none()
            {
                warnings.push(Warning::new(
                    key,
                    format!("{path}.match.customMetric"),
                    format!(
                        "{name:?} is none of Istio's standard metrics (Weft's proxies define no custom metrics); override ignored"
                    ),
                ));
                return false;
            }
            if let Some(m @ (IstioMetric::GrpcRequestMessages | IstioMetric::GrpcResponseMessages)) =
                selector.and_then(|s| s.metric)
            {
                warnings.push(Warning::new(
                    key,
                    format!("{path}.match.metric"),
                    format!("Weft's proxies do not record {m:?} (istio_request_messages_total, istio_response_messages_total) yet; override ignored"),
                ));
                return false;
            }
            o.tag_overrides.retain(|tag, t| {
                let Some(value) = t.value.as_deref().filter(|_| {
                    t.operation.unwrap_or(TagOperation::Upsert) == TagOperation::Upsert
                }) else {
                    return true;
                };
                match weft_api::telemetry::check_filter_expression(value) {
                    Ok(()) => true,
                    Err(reason) => {
                        warnings.push(Warning::new(
                            key,
                            format!("{path}.tagOverrides.{tag}.value"),
                            format!("{reason}; this tag override is ignored"),
                        ));
                        false
                    }
                }
            });
            true
        });
    }
    kept
}

/// Metrics providers named where they cannot be used, each reported with its path.
pub fn check(model: &Model) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mesh = &model.metrics;
    let not_prometheus = |name: &str| {
        format!(
            "{name:?} is not a prometheus provider; Weft's proxies export Istio's metrics to Prometheus only, so this provider gets nothing"
        )
    };
    let mesh_key = super::trace::mesh_config_key(model);
    for (i, name) in mesh.default_providers.iter().enumerate() {
        if !mesh.prometheus.contains(name) {
            warnings.push(Warning::new(
                &mesh_key,
                format!("defaultProviders.metrics[{i}]"),
                not_prometheus(name),
            ));
        }
    }
    for entry in &model.telemetries {
        for (i, m) in entry.metrics.iter().enumerate() {
            for (j, p) in m.providers.iter().enumerate() {
                if !mesh.prometheus.contains(&p.name) {
                    warnings.push(Warning::new(
                        &entry.key,
                        format!("spec.metrics[{i}].providers[{j}]"),
                        not_prometheus(&p.name),
                    ));
                }
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_names_its_prometheus_providers_and_defaults() {
        let defaults = MeshMetrics::from_mesh(&MeshConfig::default());
        assert_eq!(defaults, MeshMetrics::default());
        assert_eq!(defaults.default_providers, ["prometheus"]);
        let mesh = MeshConfig::from_yaml(
            "extensionProviders:
- name: prom-2
  prometheus: {}
- name: prometheus
  stackdriver: {}
defaultProviders: {metrics: []}
",
        )
        .unwrap();
        let m = MeshMetrics::from_mesh(&mesh);
        assert!(
            m.default_providers.is_empty(),
            "set, even empty, replaces Istio's default"
        );
        assert_eq!(
            m.prometheus,
            BTreeSet::from(["prom-2".to_string()]),
            "a provider of another kind under the built-in's name replaces it"
        );
    }

    #[test]
    fn custom_metrics_name_istios_metrics_with_or_without_the_prefix() {
        assert_eq!(custom_metric("requests_total"), Some(wire::REQUESTS_TOTAL));
        assert_eq!(
            custom_metric("istio_tcp_sent_bytes_total"),
            Some(wire::TCP_SENT)
        );
        assert_eq!(custom_metric("my_counter"), None);
    }
}
