//! Istio `telemetry.istio.io/v1` `Telemetry`: tracing, metrics and access-logging settings of
//! workloads. Every field is modelled; the controller acts on `accessLogging` and `tracing`
//! and reports what it does not act on yet (`metrics` overrides, `targetRefs`) with its path.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::duration::Duration;
use crate::networking::PolicyWorkloadSelector;
use crate::security::{
    PolicyTargetReference, check_min_duration, no_null_items, validate_policy_target,
};
use crate::validation::{FieldError, Path, Validate, check};

/// `spec` of a `Telemetry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// The workloads the settings apply to; all workloads in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicyWorkloadSelector>,
    /// The resource the settings attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the settings attach to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Tracing settings.
    #[serde(
        default,
        deserialize_with = "no_null_items",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tracing: Vec<Tracing>,
    /// Metrics settings.
    #[serde(
        default,
        deserialize_with = "no_null_items",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub metrics: Vec<Metrics>,
    /// Access-logging settings.
    #[serde(
        default,
        deserialize_with = "no_null_items",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub access_logging: Vec<AccessLogging>,
}

/// Which side of the traffic a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadMode {
    /// Both directions.
    ClientAndServer,
    /// Outbound traffic.
    Client,
    /// Inbound traffic.
    Server,
}

/// Selects traffic by direction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModeSelector {
    /// Direction of the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

/// A telemetry provider declared in the mesh config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRef {
    /// Provider name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Tracing settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Traffic the settings apply to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<ModeSelector>,
    /// Providers spans are reported to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub providers: Vec<ProviderRef>,
    /// Sampling percentage, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub random_sampling_percentage: Option<f64>,
    /// Do not report spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_span_reporting: Option<bool>,
    /// Tags added to spans.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Let Envoy sample by request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Add Istio's standard tags to spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_istio_tags: Option<bool>,
    /// Do not propagate trace context (headers) to upstreams; spans are still reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_context_propagation: Option<bool>,
}

/// A span tag: a literal, an environment variable, a request header or an access-log
/// formatter (at most one).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    /// A fixed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<LiteralTag>,
    /// An environment variable of the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<NamedTag>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedTag>,
    /// An access-log substitution formatter (`%REQUESTED_SERVER_NAME%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatter: Option<LiteralTag>,
}

/// A tag value: fixed (`literal`) or a formatter string (`formatter`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiteralTag {
    /// The value.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub value: String,
}

/// A tag read from a named source (environment variable or header).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedTag {
    /// Variable or header name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Value used when it is missing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_value: String,
}

/// Metrics settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Providers the settings apply to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub providers: Vec<ProviderRef>,
    /// Overrides, applied in order.
    #[serde(
        default,
        deserialize_with = "no_null_items",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub overrides: Vec<MetricsOverrides>,
    /// Interval between metric reports (TCP metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<Duration>,
}

/// Istio's standard metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IstioMetric {
    /// Every standard metric.
    AllMetrics,
    /// `istio_requests_total`.
    RequestCount,
    /// `istio_request_duration_milliseconds`.
    RequestDuration,
    /// `istio_request_bytes`.
    RequestSize,
    /// `istio_response_bytes`.
    ResponseSize,
    /// `istio_tcp_connections_opened_total`.
    TcpOpenedConnections,
    /// `istio_tcp_connections_closed_total`.
    TcpClosedConnections,
    /// `istio_tcp_sent_bytes_total`.
    TcpSentBytes,
    /// `istio_tcp_received_bytes_total`.
    TcpReceivedBytes,
    /// `istio_request_messages_total`.
    GrpcRequestMessages,
    /// `istio_response_messages_total`.
    GrpcResponseMessages,
}

/// Selects metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// A standard metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<IstioMetric>,
    /// A custom metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub custom_metric: Option<String>,
    /// Direction of the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

/// One metrics override.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverrides {
    /// Metrics the override applies to (all when unset).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<MetricSelector>,
    /// Turn the metrics off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Tag (label) overrides, by tag name.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// Operation on a metric tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TagOperation {
    /// Insert or update the tag.
    Upsert,
    /// Remove the tag.
    Remove,
}

/// An override of one metric tag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// What to do (default UPSERT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<TagOperation>,
    /// CEL expression for the value (UPSERT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Access-logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    /// Traffic the settings apply to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<ModeSelector>,
    /// Providers logs go to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub providers: Vec<ProviderRef>,
    /// Turn access logs off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Which requests are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilter>,
}

/// Access-log filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogFilter {
    /// CEL expression selecting the logged requests (`response.code >= 400`).
    #[serde(default)]
    pub expression: String,
}

fn validate_providers(path: &Path, errors: &mut Vec<FieldError>, providers: &[ProviderRef]) {
    for (i, p) in providers.iter().enumerate() {
        if p.name.is_empty() {
            path.index(i)
                .field("name")
                .push(errors, "provider name must not be empty");
        }
    }
}

/// MeshConfig `defaultConfig.tracing.customTags`: each tag sets exactly one of `literal`,
/// `environment` or `header` (the mesh's tags have no `formatter`), with a non-empty value
/// or name.
pub fn validate_custom_tags(
    path: &Path,
    errors: &mut Vec<FieldError>,
    tags: &BTreeMap<String, CustomTag>,
) {
    for (name, tag) in tags {
        let set = usize::from(tag.literal.is_some())
            + usize::from(tag.environment.is_some())
            + usize::from(tag.header.is_some());
        if set != 1 || tag.formatter.is_some() {
            path.key(name).push(
                errors,
                "exactly one of literal, environment or header must be set",
            );
        }
    }
    check_tag_values(path, errors, tags);
}

/// Telemetry `tracing[].customTags` (Istio's `validateTelemetryTracing` and the CRD): a tag
/// name is not empty and a tag sets at most one of `literal`, `environment`, `header` or
/// `formatter`, with a non-empty value or name.
fn validate_telemetry_custom_tags(
    path: &Path,
    errors: &mut Vec<FieldError>,
    tags: &BTreeMap<String, CustomTag>,
) {
    for (name, tag) in tags {
        let p = path.key(name);
        if name.is_empty() {
            p.push(errors, "tag name must not be empty");
        }
        let set = usize::from(tag.literal.is_some())
            + usize::from(tag.environment.is_some())
            + usize::from(tag.header.is_some())
            + usize::from(tag.formatter.is_some());
        if set > 1 {
            p.push(
                errors,
                "only one of literal, environment, header or formatter may be set",
            );
        }
    }
    check_tag_values(path, errors, tags);
}

/// A literal's or formatter's value, an environment variable's or header's name: not empty.
fn check_tag_values(path: &Path, errors: &mut Vec<FieldError>, tags: &BTreeMap<String, CustomTag>) {
    for (name, tag) in tags {
        let p = path.key(name);
        for (field, value) in [("literal", &tag.literal), ("formatter", &tag.formatter)] {
            if value.as_ref().is_some_and(|v| v.value.is_empty()) {
                p.field(field)
                    .field("value")
                    .push(errors, format!("{field} tag value must not be empty"));
            }
        }
        if let Some(h) = &tag.header {
            let np = p.field("header").field("name");
            if h.name.is_empty() {
                np.push(errors, "header tag name must not be empty");
            } else if !crate::security::is_header_name(&h.name) {
                np.push(
                    errors,
                    format!(
                        "{} is not a valid HTTP header name",
                        crate::de::quoted(&h.name)
                    ),
                );
            }
        }
        if tag.environment.as_ref().is_some_and(|e| e.name.is_empty()) {
            p.field("environment")
                .field("name")
                .push(errors, "environment tag name must not be empty");
        }
    }
}

fn validate_metrics(path: &Path, errors: &mut Vec<FieldError>, m: &Metrics) {
    validate_providers(&path.field("providers"), errors, &m.providers);
    if let Some(interval) = &m.reporting_interval {
        check(
            &path.field("reportingInterval"),
            errors,
            check_min_duration(interval, false),
        );
    }
    for (j, o) in m.overrides.iter().enumerate() {
        let op = path.field("overrides").index(j);
        if let Some(sel) = &o.match_ {
            if sel.metric.is_some() && sel.custom_metric.is_some() {
                op.field("match")
                    .push(errors, "only one of metric or customMetric may be set");
            }
            if sel.custom_metric.as_deref() == Some("") {
                op.field("match")
                    .field("customMetric")
                    .push(errors, "customMetric must not be empty");
            }
        }
        for (tag, t) in &o.tag_overrides {
            let tp = op.field("tagOverrides").key(tag);
            match t.operation.unwrap_or(TagOperation::Upsert) {
                TagOperation::Upsert if t.value.as_deref().unwrap_or("").is_empty() => {
                    tp.push(errors, "value must be set when operation is UPSERT");
                }
                TagOperation::Remove if t.value.is_some() => {
                    tp.push(errors, "value must not be set when operation is REMOVE");
                }
                _ => {}
            }
        }
    }
}

impl Validate for Telemetry {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        validate_policy_target(
            path,
            errors,
            &self.selector,
            &self.target_ref,
            &self.target_refs,
        );
        for (i, t) in self.tracing.iter().enumerate() {
            let p = path.field("tracing").index(i);
            validate_providers(&p.field("providers"), errors, &t.providers);
            if let Some(v) = t.random_sampling_percentage
                && !(0.0..=100.0).contains(&v)
            {
                p.field("randomSamplingPercentage").push(
                    errors,
                    format!("randomSamplingPercentage must be in range [0.0, 100.0], got {v}"),
                );
            }
            validate_telemetry_custom_tags(&p.field("customTags"), errors, &t.custom_tags);
        }
        for (i, m) in self.metrics.iter().enumerate() {
            validate_metrics(&path.field("metrics").index(i), errors, m);
        }
        for (i, a) in self.access_logging.iter().enumerate() {
            let p = path.field("accessLogging").index(i);
            validate_providers(&p.field("providers"), errors, &a.providers);
            if let Some(f) = &a.filter {
                let ep = p.field("filter").field("expression");
                if f.expression.is_empty() {
                    ep.push(errors, "filter expression must not be empty");
                } else if let Err(reason) = check_filter_expression(&f.expression) {
                    ep.push(errors, reason);
                }
            }
        }
    }
}

/// The top-level attributes an access log filter may use (Envoy's attribute names, as the
/// proxy provides them; the controller ⇄ proxy contract test compares the two lists).
pub const ACCESS_LOG_ATTRIBUTES: &[&str] = &[
    "request",
    "response",
    "connection",
    "source",
    "destination",
    "upstream",
    "xds",
];

/// Whether `expression` is CEL that only uses [`ACCESS_LOG_ATTRIBUTES`]: a typo in an
/// attribute would otherwise make every request fail the filter, silently.
pub fn check_filter_expression(expression: &str) -> Result<(), String> {
    let program =
        cel::Program::compile(expression).map_err(|e| format!("not a CEL expression: {e}"))?;
    if let Some(unknown) = program
        .references()
        .variables()
        .into_iter()
        .find(|v| !ACCESS_LOG_ATTRIBUTES.contains(v))
    {
        return Err(format!(
            "unknown attribute {} (known: {})",
            crate::de::quoted(unknown),
            ACCESS_LOG_ATTRIBUTES.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_filters_must_be_cel_over_known_attributes() {
        assert!(check_filter_expression("response.code >= 400").is_ok());
        assert!(
            check_filter_expression("request.headers['x-debug'] == 'on' && response.code != 200")
                .is_ok()
        );
        assert!(
            check_filter_expression("respose.code >= 400")
                .unwrap_err()
                .contains("unknown attribute \"respose\"")
        );
        assert!(
            check_filter_expression("response.code >=")
                .unwrap_err()
                .contains("not a CEL expression")
        );
    }

    fn errors(yaml: &str) -> Vec<String> {
        let t: Telemetry = serde_yaml::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        t.validate(&Path::root("spec"), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn accepts_istio_examples() {
        let yaml = r#"
selector: {matchLabels: {service.istio.io/canonical-name: foo}}
tracing:
- providers: [{name: zipkin-alternate}]
  randomSamplingPercentage: 10.00
  customTags:
    my_new_foo_tag: {literal: {value: foo}}
    env_tag: {environment: {name: POD_NAME, defaultValue: unknown}}
metrics:
- providers: [{name: prometheus}]
  reportingInterval: 10s
  overrides:
  - match: {metric: REQUEST_COUNT, mode: SERVER}
    tagOverrides:
      response_code: {operation: REMOVE}
      request_host: {value: request.host}
  - disabled: true
accessLogging:
- providers: [{name: envoy}]
  match: {mode: CLIENT}
  filter: {expression: "response.code >= 400"}
- disabled: true
"#;
        assert_eq!(errors(yaml), Vec::<String>::new());
    }

    #[test]
    fn reports_paths() {
        let yaml = r#"
tracing: [{randomSamplingPercentage: 101, customTags: {t: {}}, providers: [{name: ""}]}]
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT, customMetric: x}
    tagOverrides: {a: {operation: REMOVE, value: x}, b: {}}
"#;
        assert_eq!(
            errors(yaml),
            [
                "spec.tracing[0].providers[0].name: provider name must not be empty",
                "spec.tracing[0].randomSamplingPercentage: randomSamplingPercentage must be in range [0.0, 100.0], got 101",
                "spec.metrics[0].overrides[0].match: only one of metric or customMetric may be set",
                "spec.metrics[0].overrides[0].tagOverrides[a]: value must not be set when operation is REMOVE",
                "spec.metrics[0].overrides[0].tagOverrides[b]: value must be set when operation is UPSERT",
            ]
        );
        assert!(serde_yaml::from_str::<Telemetry>("tracing: [{sampling: 1}]").is_err());
    }
}
