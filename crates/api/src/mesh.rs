//! Istio's `MeshConfig` (the `mesh` key of the `istio` ConfigMap; Weft's chart writes it to the
//! `weft` ConfigMap): the parts Weft acts on, typed and validated, and every other field kept
//! as written so a file made for Istio parses unchanged.
//!
//! Typed: tracing (`enableTracing`, `defaultConfig.tracing`, `extensionProviders[]` with their
//! `opentelemetry` and `zipkin` kinds, `defaultProviders.tracing`). The controller reports the
//! other fields it does not read from this file, by path ([`MeshConfig::unread_fields`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::telemetry::CustomTag;
use crate::validation::{FieldError, Path, Validate, ValidationErrors, check, validate_port};

/// Istio's default `defaultConfig.tracing.sampling`: 1 % of requests start a sampled trace.
pub const DEFAULT_TRACE_SAMPLING: f64 = 1.0;

/// `MeshConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// Whether proxies trace at all (Istio's default: true). A Telemetry resource's `tracing`
    /// still applies when this is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_tracing: Option<bool>,
    /// Defaults of every proxy (Istio's `ProxyConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_config: Option<ProxyDefaults>,
    /// The telemetry providers Telemetry resources and `defaultProviders` name.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extension_providers: Vec<ExtensionProvider>,
    /// The providers used when no Telemetry resource names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_providers: Option<DefaultProviders>,
    /// Every other field, as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `defaultConfig`: the parts of Istio's `ProxyConfig` read here.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<ProxyTracing>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `defaultConfig.tracing`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyTracing {
    /// Percentage of requests that start a sampled trace, 0..=100 (Istio's default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<f64>,
    /// Tags added to every span.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Longest `http.url` tag value (Envoy's default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_path_tag_length: Option<u32>,
    /// The legacy tracer settings (`zipkin`, `datadog`, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One `extensionProviders[]` entry: a name and one provider kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
    /// OpenTelemetry tracing: spans exported with OTLP/gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opentelemetry: Option<TracingService>,
    /// Zipkin tracing (B3 headers, Zipkin's span API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<TracingService>,
    /// The other provider kinds (`envoyFileAccessLog`, `prometheus`, `envoyExtAuthzGrpc`, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ExtensionProvider {
    /// The provider's kind, as it is written (`opentelemetry`, `zipkin`, `prometheus`, …).
    pub fn kind(&self) -> &str {
        if self.opentelemetry.is_some() {
            "opentelemetry"
        } else if self.zipkin.is_some() {
            "zipkin"
        } else {
            self.other.keys().next().map_or("", String::as_str)
        }
    }
}

/// Where a tracing provider's collector is: a mesh service and port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingService {
    /// The collector's host, `host` or `namespace/host` (a Service or ServiceEntry host).
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    /// Longest tag value (Envoy's default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
    /// Zipkin only: the collector's span API path (default `/api/v2/spans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Zipkin only: new traces get 64-bit ids instead of 128-bit ones.
    #[serde(
        default,
        rename = "enable64bitTraceId",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_64bit_trace_id: Option<bool>,
    /// Zipkin only: `USE_B3` (default) or `USE_B3_WITH_W3C_PROPAGATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context_option: Option<String>,
    /// Everything else the kind has (`http`, `resourceDetectors`, `timeout`, `headers`, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Zipkin's `traceContextOption` values.
pub const ZIPKIN_TRACE_CONTEXT_OPTIONS: [&str; 2] = ["USE_B3", "USE_B3_WITH_W3C_PROPAGATION"];

impl TracingService {
    /// The fields only a `zipkin` provider has: refused elsewhere, checked there.
    fn validate_zipkin_fields(&self, path: &Path, zipkin: bool, errors: &mut Vec<FieldError>) {
        for (field, set) in [
            ("path", self.path.is_some()),
            ("enable64bitTraceId", self.enable_64bit_trace_id.is_some()),
            ("traceContextOption", self.trace_context_option.is_some()),
        ] {
            if set && !zipkin {
                path.field(field)
                    .push(errors, "is a field of zipkin providers only");
            }
        }
        if !zipkin {
            return;
        }
        if let Some(p) = &self.path
            && !p.is_empty()
            && !p.starts_with('/')
        {
            path.field("path")
                .push(errors, format!("{p:?} must start with /"));
        }
        if let Some(o) = &self.trace_context_option
            && !ZIPKIN_TRACE_CONTEXT_OPTIONS.contains(&o.as_str())
        {
            path.field("traceContextOption").push(
                errors,
                format!("{o:?} is not one of {ZIPKIN_TRACE_CONTEXT_OPTIONS:?}"),
            );
        }
    }

    /// The collector's host without a `namespace/` prefix.
    pub fn host(&self) -> &str {
        self.service
            .split_once('/')
            .map_or(self.service.as_str(), |(_, host)| host)
    }
}

/// `defaultProviders`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultProviders {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tracing: Vec<String>,
    /// The metrics providers (unset: Istio's default, `prometheus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Why a mesh config file is refused.
#[derive(Debug, thiserror::Error)]
pub enum MeshConfigError {
    #[error("not valid mesh config YAML: {0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(ValidationErrors),
}

impl MeshConfig {
    /// Parses and validates MeshConfig YAML (an empty document is the default config).
    pub fn from_yaml(text: &str) -> Result<Self, MeshConfigError> {
        let config: Option<MeshConfig> = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            let message = e.to_string();
            // serde_yaml appends the location itself; say it once.
            let message = message.split(" at line ").next().unwrap_or(&message);
            MeshConfigError::Yaml(format!("{message}{at}"))
        })?;
        let config = config.unwrap_or_default();
        let mut errors = Vec::new();
        config.validate(&Path::default(), &mut errors);
        ValidationErrors::into_result(errors).map_err(MeshConfigError::Invalid)?;
        Ok(config)
    }

    /// Whether proxies trace when no Telemetry says otherwise.
    pub fn tracing_enabled(&self) -> bool {
        self.enable_tracing.unwrap_or(true)
    }

    /// `defaultConfig.tracing`, if set.
    pub fn proxy_tracing(&self) -> Option<&ProxyTracing> {
        self.default_config.as_ref()?.tracing.as_ref()
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers.iter().find(|p| p.name == name)
    }

    /// Top-level fields present in the file that Weft does not read from it (the chart passes
    /// the ones it acts on to the controller as flags), for one warning at start.
    pub fn unread_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.other.keys().cloned().collect();
        if let Some(d) = &self.default_config {
            fields.extend(d.other.keys().map(|k| format!("defaultConfig.{k}")));
            if let Some(t) = &d.tracing {
                fields.extend(t.other.keys().map(|k| format!("defaultConfig.tracing.{k}")));
            }
        }
        if let Some(d) = &self.default_providers {
            fields.extend(d.other.keys().map(|k| format!("defaultProviders.{k}")));
        }
        fields
    }
}

impl Validate for MeshConfig {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(t) = self.proxy_tracing() {
            let p = path.field("defaultConfig").field("tracing");
            if let Some(s) = t.sampling
                && !(0.0..=100.0).contains(&s)
            {
                p.field("sampling")
                    .push(errors, format!("{s} is not a percentage in 0..=100"));
            }
            crate::telemetry::validate_custom_tags(&p.field("customTags"), errors, &t.custom_tags);
        }
        for (i, provider) in self.extension_providers.iter().enumerate() {
            let p = path.field("extensionProviders").index(i);
            if provider.name.is_empty() {
                p.field("name").push(errors, "is required");
            } else if self.extension_providers[..i]
                .iter()
                .any(|other| other.name == provider.name)
            {
                p.field("name").push(
                    errors,
                    format!("{:?} names another provider too", provider.name),
                );
            }
            let kinds = usize::from(provider.opentelemetry.is_some())
                + usize::from(provider.zipkin.is_some())
                + provider.other.len();
            if kinds != 1 {
                p.push(
                    errors,
                    format!("must have exactly one provider kind, has {kinds}"),
                );
            }
            for (kind, service) in [
                ("opentelemetry", &provider.opentelemetry),
                ("zipkin", &provider.zipkin),
            ] {
                let Some(service) = service else { continue };
                let sp = p.field(kind);
                if service.host().is_empty() {
                    sp.field("service").push(errors, "is required");
                }
                check(&sp.field("port"), errors, validate_port(service.port));
                service.validate_zipkin_fields(&sp, kind == "zipkin", errors);
            }
        }
        if let Some(d) = &self.default_providers {
            for (i, name) in d.tracing.iter().enumerate() {
                if self.provider(name).is_none() {
                    path.field("defaultProviders")
                        .field("tracing")
                        .index(i)
                        .push(errors, format!("{name:?} is not one of extensionProviders"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istios_tracing_setup_parses() {
        let mesh = MeshConfig::from_yaml(
            "enableTracing: true
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  tracing:
    sampling: 100
    customTags:
      team: {literal: {value: payments}}
extensionProviders:
- name: otel
  opentelemetry:
    service: observability/jaeger-collector.observability.svc.cluster.local
    port: 4317
- name: stdout
  envoyFileAccessLog: {path: /dev/stdout}
defaultProviders:
  tracing: [otel]
accessLogFile: /dev/stdout
",
        )
        .expect("valid");
        assert!(mesh.tracing_enabled());
        let otel = mesh.provider("otel").expect("otel");
        assert_eq!(otel.kind(), "opentelemetry");
        let service = otel.opentelemetry.as_ref().expect("opentelemetry");
        assert_eq!(
            service.host(),
            "jaeger-collector.observability.svc.cluster.local"
        );
        assert_eq!(service.port, 4317);
        assert_eq!(mesh.proxy_tracing().and_then(|t| t.sampling), Some(100.0));
        assert_eq!(
            mesh.provider("stdout").map(ExtensionProvider::kind),
            Some("envoyFileAccessLog")
        );
        assert_eq!(
            mesh.unread_fields(),
            vec![
                "accessLogFile".to_string(),
                "defaultConfig.discoveryAddress".to_string()
            ]
        );
    }

    #[test]
    fn istios_zipkin_provider_parses() {
        let mesh = MeshConfig::from_yaml(
            "extensionProviders:
- name: zipkin
  zipkin:
    service: zipkin.istio-system.svc.cluster.local
    port: 9411
    maxTagLength: 56
    path: /zipkin/api/v2/spans
    enable64bitTraceId: true
    traceContextOption: USE_B3_WITH_W3C_PROPAGATION
    timeout: 3s
",
        )
        .expect("valid");
        let zipkin = mesh.provider("zipkin").and_then(|p| p.zipkin.as_ref());
        let zipkin = zipkin.expect("zipkin");
        assert_eq!(zipkin.max_tag_length, Some(56));
        assert_eq!(zipkin.path.as_deref(), Some("/zipkin/api/v2/spans"));
        assert_eq!(zipkin.enable_64bit_trace_id, Some(true));
        assert_eq!(
            zipkin.trace_context_option.as_deref(),
            Some("USE_B3_WITH_W3C_PROPAGATION")
        );
        assert_eq!(zipkin.other.keys().collect::<Vec<_>>(), ["timeout"]);
    }

    #[test]
    fn an_empty_file_is_the_default_config() {
        let mesh = MeshConfig::from_yaml("").expect("empty");
        assert!(mesh.tracing_enabled());
        assert!(mesh.extension_providers.is_empty());
    }

    #[test]
    fn bad_tracing_settings_are_refused_with_their_paths() {
        let err = MeshConfig::from_yaml(
            "defaultConfig: {tracing: {sampling: 101, customTags: {t: {}}}}
extensionProviders:
- name: a
  opentelemetry: {service: '', port: 0}
- name: a
  zipkin: {service: zipkin, port: 9411}
  opentelemetry: {service: otel, port: 4317}
- name: z
  zipkin: {service: zipkin, port: 9411, path: api/v2/spans, traceContextOption: W3C}
- name: o
  opentelemetry: {service: otel, port: 4317, enable64bitTraceId: true}
defaultProviders: {tracing: [nope]}
",
        )
        .expect_err("invalid")
        .to_string();
        for expected in [
            "defaultConfig.tracing.sampling: 101 is not a percentage in 0..=100",
            "defaultConfig.tracing.customTags[t]: exactly one of literal, environment or header must be set",
            "extensionProviders[0].opentelemetry.service: is required",
            "extensionProviders[0].opentelemetry.port:",
            "extensionProviders[1].name: \"a\" names another provider too",
            "extensionProviders[1]: must have exactly one provider kind, has 2",
            "extensionProviders[2].zipkin.path: \"api/v2/spans\" must start with /",
            "extensionProviders[2].zipkin.traceContextOption: \"W3C\" is not one of",
            "extensionProviders[3].opentelemetry.enable64bitTraceId: is a field of zipkin providers only",
            "defaultProviders.tracing[0]: \"nope\" is not one of extensionProviders",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from:\n{err}");
        }
    }

    #[test]
    fn yaml_errors_say_where() {
        let err = MeshConfig::from_yaml("enableTracing: [")
            .expect_err("bad YAML")
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
