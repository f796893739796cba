//! Telemetry resources (`telemetry.istio.io`) in the model: their access logging and tracing
//! (resolved in [`super::trace`]) and metrics ([`super::metrics`]), and which of them applies to a proxy. As Istio: a Telemetry with a `selector` (or `targetRefs`) in the
//! workload's namespace is the most specific, then one without a selector in the namespace,
//! then one without a selector in the root namespace (mesh-wide); the most specific that says
//! anything about access logging decides it. Without any, the mesh's `accessLogFile` does.
//!
//! Translated: `accessLogging[]` with the built-in `envoy` provider (the mesh's access log
//! file, `/dev/stdout` when the mesh sets none), `match.mode`, `disabled` and
//! `filter.expression`. `tracing` entries are kept for [`super::trace`], `metrics` entries for
//! [`super::metrics`]. Other access log providers are reported as not supported yet, with
//! their field paths; so are `targetRefs` and the tracing fields proxies do not act on
//! ([`weft_api::unsupported`], reported with every object's).

use std::collections::BTreeMap;

use weft_api::telemetry::{Telemetry, WorkloadMode};

use super::Model;
use crate::object::{ObjectKey, Warning};

/// Istio's built-in access log provider: Envoy's file access log with the mesh's settings.
pub const ENVOY_PROVIDER: &str = "envoy";

/// One Telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEntry {
    pub key: ObjectKey,
    /// `selector.matchLabels`; `None`: every workload of the namespace.
    pub labels: Option<BTreeMap<String, String>>,
    /// The access logging entries it translates (none: it says nothing about access logs).
    pub access_logging: Vec<AccessLogRule>,
    /// Its `tracing` entries (none: it says nothing about tracing).
    pub tracing: Vec<super::trace::TracingRule>,
    /// Its `metrics` entries, without the overrides proxies cannot act on
    /// ([`super::metrics::usable`]).
    pub metrics: Vec<weft_api::telemetry::Metrics>,
}

/// One `accessLogging` entry as the generator uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogRule {
    /// Outbound (`CLIENT`) requests.
    pub client: bool,
    /// Inbound (`SERVER`) requests.
    pub server: bool,
    /// `disabled: true`: no access log for these requests.
    pub disabled: bool,
    /// `filter.expression` (CEL).
    pub filter: Option<String>,
}

/// Which side of the proxy a log is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl TelemetryEntry {
    pub fn new(key: &ObjectKey, spec: &Telemetry) -> (Self, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut warn = |path: String, message: &str| {
            warnings.push(Warning::new(key, path, message.to_string()));
        };
        let mut access_logging = Vec::new();
        for (i, rule) in spec.access_logging.iter().enumerate() {
            let path = format!("spec.accessLogging[{i}]");
            let unknown: Vec<&str> = rule
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .filter(|name| *name != ENVOY_PROVIDER)
                .collect();
            if !unknown.is_empty() {
                warn(
                    format!("{path}.providers"),
                    &format!(
                        "only the built-in {ENVOY_PROVIDER:?} provider is supported; {unknown:?} ignored"
                    ),
                );
                if unknown.len() == rule.providers.len() {
                    continue;
                }
            }
            let mode = rule
                .match_
                .as_ref()
                .and_then(|m| m.mode)
                .unwrap_or(WorkloadMode::ClientAndServer);
            access_logging.push(AccessLogRule {
                client: mode != WorkloadMode::Server,
                server: mode != WorkloadMode::Client,
                disabled: rule.disabled == Some(true),
                filter: rule
                    .filter
                    .as_ref()
                    .map(|f| f.expression.clone())
                    .filter(|e| !e.is_empty()),
            });
        }
        let metrics = super::metrics::usable(key, &spec.metrics, &mut warnings);
        let entry = Self {
            key: key.clone(),
            metrics,
            labels: spec.selector.as_ref().map(|s| s.match_labels.clone()),
            access_logging,
            tracing: spec
                .tracing
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut rule = super::trace::TracingRule::new(t);
                    // A formatter the proxy would refuse would cost the whole listener.
                    rule.custom_tags.retain(|name, tag| {
                        let Some(formatter) = &tag.formatter else {
                            return true;
                        };
                        match weft_xds::contract::check_format_commands(&formatter.value) {
                            Ok(()) => true,
                            Err(e) => {
                                warnings.push(Warning::new(
                                    key,
                                    format!("spec.tracing[{i}].customTags[{name}].formatter.value"),
                                    format!("{e}; the tag is not added"),
                                ));
                                false
                            }
                        }
                    });
                    rule
                })
                .collect(),
        };
        (entry, warnings)
    }

    pub(super) fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.key.namespace == namespace
            && self.labels.as_ref().is_none_or(|wanted| {
                wanted
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
            })
    }
}

/// The access log a proxy's requests of one side get: `None`, or the filter expression to
/// log with (`Some(None)`: every request).
pub fn access_log(
    model: &Model,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    side: Side,
) -> Option<Option<String>> {
    let rules_of = |entry: &TelemetryEntry| {
        entry
            .access_logging
            .iter()
            .filter(|r| match side {
                Side::Client => r.client,
                Side::Server => r.server,
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    // Most specific first: a selector in the namespace, the namespace, the root namespace.
    let levels = [
        model
            .telemetries
            .iter()
            .find(|t| t.labels.is_some() && t.selects(namespace, labels)),
        model
            .telemetries
            .iter()
            .find(|t| t.labels.is_none() && t.key.namespace == namespace),
        model
            .telemetries
            .iter()
            .find(|t| t.labels.is_none() && t.key.namespace == model.root_namespace),
    ];
    for entry in levels.into_iter().flatten() {
        let rules = rules_of(entry);
        if rules.is_empty() {
            continue;
        }
        if rules.iter().all(|r| r.disabled) {
            return None;
        }
        // Several enabled entries: a request is logged when any lets it through.
        let filters: Vec<Option<String>> = rules
            .iter()
            .filter(|r| !r.disabled)
            .map(|r| r.filter.clone())
            .collect();
        return Some(if filters.iter().any(Option::is_none) {
            None
        } else {
            let all: Vec<String> = filters
                .into_iter()
                .flatten()
                .map(|f| format!("({f})"))
                .collect();
            Some(all.join(" || "))
        });
    }
    (!model.access_log.file.is_empty()).then_some(None)
}
