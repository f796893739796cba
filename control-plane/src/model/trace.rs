//! Tracing in the model: the mesh's defaults (MeshConfig `enableTracing`,
//! `defaultConfig.tracing`, `extensionProviders`, `defaultProviders.tracing`) and the Telemetry
//! resources' `tracing`, resolved per proxy and side into what its connection managers trace
//! with ([`resolve`]), as Istio does:
//!
//! ```text
//!  mesh defaults ─► root namespace Telemetry ─► namespace Telemetry ─► workload Telemetry
//!  (each level's entries for the side override providers, randomSamplingPercentage and
//!   disableSpanReporting when they set them, and add customTags)
//!     ─► the first provider: an `opentelemetry` or `zipkin` one whose service is in the registry
//! ```
//! Without any Telemetry `tracing`, `enableTracing: false` turns tracing off. A side whose
//! `disableSpanReporting` ends up true is not traced at all, as Istio writes it (no `tracing`
//! on its connection managers): its proxy reports nothing and leaves the trace headers to the
//! app, which forwards them, so the trace stays whole around it. A provider that cannot be used
//! (unknown name, a kind other than `opentelemetry` or `zipkin`, a service the mesh does not
//! know) is reported with its path, and its proxies do not trace; so is each provider field
//! Weft ignores ([`check`]).

use std::collections::BTreeMap;

use weft_api::mesh::{DEFAULT_TRACE_SAMPLING, ExtensionProvider, MeshConfig, TracingService};
use weft_api::telemetry::{CustomTag, Tracing, WorkloadMode};

use super::Model;
use super::telemetry::{Side, TelemetryEntry};
use crate::object::{ObjectKey, Warning};

/// The mesh's tracing settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshTracing {
    /// `enableTracing` (Istio's default: true).
    pub enabled: bool,
    /// `defaultConfig.tracing.sampling`, a percentage.
    pub sampling: f64,
    /// `defaultConfig.tracing.customTags`.
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// `defaultConfig.tracing.maxPathTagLength`.
    pub max_path_tag_length: Option<u32>,
    /// `extensionProviders`.
    pub providers: Vec<ExtensionProvider>,
    /// `defaultProviders.tracing`.
    pub default_providers: Vec<String>,
}

impl MeshTracing {
    pub fn from_mesh(mesh: &MeshConfig) -> Self {
        let proxy = mesh.proxy_tracing();
        Self {
            enabled: mesh.tracing_enabled(),
            sampling: proxy
                .and_then(|t| t.sampling)
                .unwrap_or(DEFAULT_TRACE_SAMPLING),
            custom_tags: proxy.map(|t| t.custom_tags.clone()).unwrap_or_default(),
            max_path_tag_length: proxy.and_then(|t| t.max_path_tag_length),
            providers: mesh.extension_providers.clone(),
            default_providers: mesh
                .default_providers
                .as_ref()
                .map(|d| d.tracing.clone())
                .unwrap_or_default(),
        }
    }

    fn provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// One Telemetry `tracing` entry as resolution uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingRule {
    pub client: bool,
    pub server: bool,
    /// Provider names (empty: the level above's).
    pub providers: Vec<String>,
    pub random_sampling: Option<f64>,
    pub disable_span_reporting: Option<bool>,
    pub disable_context_propagation: Option<bool>,
    pub custom_tags: BTreeMap<String, CustomTag>,
    pub enable_istio_tags: Option<bool>,
}

impl TracingRule {
    pub fn new(t: &Tracing) -> Self {
        let mode = t
            .match_
            .as_ref()
            .and_then(|m| m.mode)
            .unwrap_or(WorkloadMode::ClientAndServer);
        Self {
            client: mode != WorkloadMode::Server,
            server: mode != WorkloadMode::Client,
            providers: t.providers.iter().map(|p| p.name.clone()).collect(),
            random_sampling: t.random_sampling_percentage,
            disable_span_reporting: t.disable_span_reporting,
            disable_context_propagation: t.disable_context_propagation,
            custom_tags: t.custom_tags.clone(),
            enable_istio_tags: t.enable_istio_tags,
        }
    }
}

/// Zipkin's default span API path.
pub const ZIPKIN_PATH: &str = "/api/v2/spans";

/// What a proxy's connection managers of one side trace with.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The collector: its host and port.
    pub host: String,
    pub port: u32,
    /// How spans reach it.
    pub collector: Collector,
    /// Percentage of requests without a decision that are sampled.
    pub sampling: f64,
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// The provider's `maxTagLength`, else the mesh's `maxPathTagLength` (as Istio).
    pub max_path_tag_length: Option<u32>,
    /// Istio's own tags (`istio.canonical_service`, …; `enableIstioTags`, default true).
    pub istio_tags: bool,
    /// `disableContextPropagation`: spans are reported, no trace context is sent upstream.
    pub no_context_propagation: bool,
}

/// A provider's kind and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Collector {
    /// OTLP over gRPC.
    OpenTelemetry,
    /// Zipkin v2 JSON over HTTP.
    Zipkin {
        /// The span API path (`path`, default `/api/v2/spans`).
        path: String,
        /// `!enable64bitTraceId`.
        trace_id_128bit: bool,
        /// `traceContextOption: USE_B3_WITH_W3C_PROPAGATION`.
        w3c: bool,
    },
}

/// A provider's collector service and kind, when Weft's proxies can report to it.
fn collector(provider: &ExtensionProvider) -> Option<(&TracingService, Collector)> {
    if let Some(s) = &provider.opentelemetry {
        return Some((s, Collector::OpenTelemetry));
    }
    let s = provider.zipkin.as_ref()?;
    Some((
        s,
        Collector::Zipkin {
            path: s
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| ZIPKIN_PATH.to_string()),
            trace_id_128bit: !s.enable_64bit_trace_id.unwrap_or(false),
            w3c: s.trace_context_option.as_deref() == Some("USE_B3_WITH_W3C_PROPAGATION"),
        },
    ))
}

/// The tracing of a proxy's requests on `side` (`None`: trace headers pass untouched).
pub fn resolve(
    model: &Model,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    side: Side,
) -> Option<Resolved> {
    let mesh = &model.tracing;
    let mut providers: Option<&[String]> = None;
    let mut sampling = None;
    let mut disabled = None;
    let mut istio_tags = None;
    let mut no_propagation = None;
    let mut custom_tags = mesh.custom_tags.clone();
    let mut any = false;
    for entry in levels(model, namespace, labels) {
        for rule in entry.tracing.iter().filter(|r| match side {
            Side::Client => r.client,
            Side::Server => r.server,
        }) {
            any = true;
            if !rule.providers.is_empty() {
                providers = Some(&rule.providers);
            }
            sampling = rule.random_sampling.or(sampling);
            disabled = rule.disable_span_reporting.or(disabled);
            istio_tags = rule.enable_istio_tags.or(istio_tags);
            no_propagation = rule.disable_context_propagation.or(no_propagation);
            custom_tags.extend(rule.custom_tags.clone());
        }
    }
    if (!any && !mesh.enabled) || disabled == Some(true) {
        return None;
    }
    let name = providers.unwrap_or(&mesh.default_providers).first()?;
    let (service, collector) = collector(mesh.provider(name)?)?;
    let host = service.host();
    if !has_port(model, service) {
        return None;
    }
    Some(Resolved {
        host: host.to_string(),
        port: service.port,
        collector,
        sampling: sampling.unwrap_or(mesh.sampling),
        custom_tags,
        max_path_tag_length: service
            .max_tag_length
            .filter(|n| *n != 0)
            .or(mesh.max_path_tag_length),
        istio_tags: istio_tags.unwrap_or(true),
        no_context_propagation: no_propagation.unwrap_or(false),
    })
}

/// Whether the mesh has the provider's service and port (its outbound cluster exists).
fn has_port(model: &Model, service: &TracingService) -> bool {
    model
        .services
        .get(service.host())
        .is_some_and(|s| s.port(service.port).is_some())
}

/// The Telemetry levels that apply to a workload, least specific first: the root
/// namespace's, the namespace's, the workload's (a selector in its namespace).
pub(super) fn levels<'m>(
    model: &'m Model,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> impl Iterator<Item = &'m TelemetryEntry> {
    let root = model
        .telemetries
        .iter()
        .find(|t| t.labels.is_none() && t.key.namespace == model.root_namespace);
    let ns = model
        .telemetries
        .iter()
        .find(|t| t.labels.is_none() && t.key.namespace == namespace)
        .filter(|_| namespace != model.root_namespace);
    let workload = model
        .telemetries
        .iter()
        .find(|t| t.labels.is_some() && t.selects(namespace, labels));
    [root, ns, workload].into_iter().flatten()
}

/// The MeshConfig as an object warnings can name.
pub fn mesh_config_key(model: &Model) -> ObjectKey {
    ObjectKey::new("MeshConfig", Some(&model.root_namespace), "mesh")
}

/// Providers named where they cannot be used: each reported with its path.
pub fn check(model: &Model) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut extra = Vec::new();
    let mut usable = |key: &ObjectKey, path: String, name: &str| {
        let problem = match model.tracing.provider(name) {
            None => Some(format!(
                "no extensionProviders entry is named {name:?}; its proxies do not trace"
            )),
            Some(p) => match collector(p) {
                None => Some(format!(
                    "provider {name:?} is {:?}; Weft's proxies trace with opentelemetry and zipkin providers only, so its proxies do not trace",
                    p.kind()
                )),
                Some((s, _)) if !model.services.contains_key(s.host()) => Some(format!(
                    "provider {name:?}: no Service or ServiceEntry has the host {:?}; its proxies do not trace until one does",
                    s.host()
                )),
                Some((s, _)) if !has_port(model, s) => Some(format!(
                    "provider {name:?}: the service {:?} has no port {}; its proxies do not trace until it does",
                    s.host(),
                    s.port
                )),
                Some(_) => None,
            },
        };
        if let Some(message) = problem {
            warnings.push(Warning::new(key, path, message));
        }
    };
    let mesh = mesh_config_key(model);
    // The fields of a tracing provider Weft does not translate (OTLP over HTTP, timeouts,
    // headers, samplers, resource detectors, …).
    for (i, p) in model.tracing.providers.iter().enumerate() {
        let kinds = [("opentelemetry", &p.opentelemetry), ("zipkin", &p.zipkin)];
        for (kind, service) in kinds {
            for field in service.iter().flat_map(|s| s.other.keys()) {
                extra.push(Warning::new(
                    &mesh,
                    format!("extensionProviders[{i}].{kind}.{field}"),
                    "not supported by Weft's proxies yet; ignored",
                ));
            }
        }
    }
    if model.tracing.enabled {
        for (i, name) in model.tracing.default_providers.iter().enumerate() {
            usable(&mesh, format!("defaultProviders.tracing[{i}]"), name);
        }
    }
    for entry in &model.telemetries {
        for (i, rule) in entry.tracing.iter().enumerate() {
            for (j, name) in rule.providers.iter().enumerate() {
                usable(
                    &entry.key,
                    format!("spec.tracing[{i}].providers[{j}]"),
                    name,
                );
            }
            if rule.providers.len() > 1 {
                extra.push(Warning::new(
                    &entry.key,
                    format!("spec.tracing[{i}].providers"),
                    "a proxy reports to one tracing provider, the first; the others are ignored",
                ));
            }
        }
    }
    warnings.extend(extra);
    warnings
}
