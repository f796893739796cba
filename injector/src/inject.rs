//! The mutation: a pod (template) in, the injected pod (template) out, or why it is left
//! alone. Names, ports, paths and annotations are Istio's. The proxy is a native sidecar, or
//! on API servers without them (`InjectConfig::native_sidecars` false) the first container,
//! held by a `postStart` hook, as Istio's fallback.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::config::InjectConfig;
use crate::probes::{self, ProbeRewrite};
use crate::proxy_config::{self, PodProxyConfig};

/// The injected containers' names (Istio's: tools look for them).
pub const INIT_CONTAINER: &str = "istio-init";
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The annotation that records an injection (and makes it happen once).
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
const INJECT: &str = "sidecar.istio.io/inject";

/// What injection did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Injected; `warnings` name what the pod asked for that Weft does not act on (the
    /// webhook returns them to the API server, which shows them to the user).
    Injected { warnings: Vec<String> },
    /// Left alone, and why.
    Skipped(&'static str),
}

/// A pod the injector cannot inject, with the annotation or field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InjectError {
    pub field: String,
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> InjectError {
    InjectError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Injects a Pod in `namespace` (its own `metadata.namespace` wins when set).
pub fn inject_pod(
    pod: &mut Pod,
    namespace: &str,
    cfg: &InjectConfig,
) -> Result<Outcome, InjectError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    inject_parts(&mut pod.metadata, spec, &namespace, cfg)
}

/// Injects a workload's pod template (Deployment, Job, …) for offline injection.
pub fn inject_template(
    template: &mut PodTemplateSpec,
    namespace: &str,
    cfg: &InjectConfig,
) -> Result<Outcome, InjectError> {
    let meta = template.metadata.get_or_insert_with(Default::default);
    let spec = template.spec.get_or_insert_with(Default::default);
    inject_parts(meta, spec, namespace, cfg)
}

/// The JSONPatch from `before` to `after` (what an AdmissionReview response carries).
pub fn patch(before: &Pod, after: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    Ok(json_patch::diff(
        &serde_json::to_value(before)?,
        &serde_json::to_value(after)?,
    ))
}

fn opted_out(meta: &ObjectMeta) -> bool {
    let off = |map: &Option<BTreeMap<String, String>>| {
        map.as_ref().and_then(|m| m.get(INJECT)).is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "n" | "no" | "off"
            )
        })
    };
    off(&meta.labels) || off(&meta.annotations)
}

fn inject_parts(
    meta: &mut ObjectMeta,
    spec: &mut PodSpec,
    namespace: &str,
    cfg: &InjectConfig,
) -> Result<Outcome, InjectError> {
    if namespace == "kube-system" || namespace == cfg.mesh_namespace {
        return Ok(Outcome::Skipped("the namespace is never injected"));
    }
    if opted_out(meta) {
        return Ok(Outcome::Skipped("sidecar.istio.io/inject is false"));
    }
    let has_proxy = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == PROXY_CONTAINER);
    let annotated = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STATUS_ANNOTATION));
    if has_proxy || annotated {
        return Ok(Outcome::Skipped("already injected"));
    }
    if spec.host_network == Some(true) {
        return Ok(Outcome::Skipped(
            "the pod uses the host's network, which must not be captured",
        ));
    }
    let annotations = meta.annotations.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let proxy_config = proxy_config::parse(&annotations)?;
    let metadata = proxy_metadata(cfg, &proxy_config)?;
    let dns_capture = metadata.get(DNS_CAPTURE).is_some_and(|v| v == "true");
    let init = init_container(cfg, &annotations, dns_capture)?;
    let placement = Placement::of(cfg, &proxy_config);
    let mut proxy = proxy_container(cfg, placement, &labels, &annotations)?;
    if let Some(workload) = workload_name(meta) {
        proxy.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: WORKLOAD_NAME_ENV.to_string(),
            value: Some(workload),
            ..Default::default()
        });
    }
    proxy_settings(&mut proxy, cfg, &proxy_config, &metadata);
    let probes = if probes::enabled(&annotations, cfg) {
        probes::plan(spec)?
    } else {
        ProbeRewrite::default()
    };
    // Indexes the app containers: before the proxy joins them.
    probes.apply(spec, &mut proxy);
    let default_container = spec.containers.first().map(|c| c.name.clone());
    let mut init_containers = vec![init];
    let status_containers = match placement {
        Placement::NativeSidecar => {
            init_containers.push(proxy);
            Value::Null
        }
        Placement::FirstContainer => {
            spec.containers.insert(0, proxy);
            json!([PROXY_CONTAINER])
        }
        Placement::LastContainer => {
            spec.containers.push(proxy);
            json!([PROXY_CONTAINER])
        }
    };
    let status_init: Vec<String> = init_containers.iter().map(|c| c.name.clone()).collect();
    init_containers.extend(spec.init_containers.take().unwrap_or_default());
    spec.init_containers = Some(init_containers);
    let volumes: Vec<Volume> = from(json!([
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        ]}},
        {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
    ]));
    let volume_names: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    spec.volumes.get_or_insert_with(Vec::new).extend(volumes);

    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("security.istio.io/tlsMode".into(), "istio".into());
    let canonical_name = [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .find_map(|k| labels.get(*k).cloned())
    .or_else(|| {
        meta.generate_name
            .clone()
            .map(|g| g.trim_end_matches('-').to_string())
    })
    .or_else(|| meta.name.clone())
    .unwrap_or_default();
    let canonical_revision = [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .find_map(|k| labels.get(*k).cloned())
    .unwrap_or_else(|| "latest".into());
    labels.insert("service.istio.io/canonical-name".into(), canonical_name);
    labels.insert(
        "service.istio.io/canonical-revision".into(),
        canonical_revision,
    );
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        STATUS_ANNOTATION.into(),
        json!({
            "initContainers": status_init,
            "containers": status_containers,
            "volumes": volume_names,
            "imagePullSecrets": null,
            "revision": "default",
        })
        .to_string(),
    );
    if let Some(name) = default_container {
        annotations
            .entry("kubectl.kubernetes.io/default-container".into())
            .or_insert(name);
    }
    Ok(Outcome::Injected {
        warnings: proxy_config.warnings,
    })
}

/// Where the proxy goes in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// An init container with `restartPolicy: Always` (Kubernetes 1.29+): the app starts
    /// after its startup probe, and it stops after the app (Jobs complete).
    NativeSidecar,
    /// Older API servers: the first app container, whose `postStart` hook (`weft-proxy
    /// wait`) holds the next ones until it is ready (Istio's `holdApplicationUntilProxyStarts`).
    FirstContainer,
    /// Older API servers, and the pod's `proxy.istio.io/config` says
    /// `holdApplicationUntilProxyStarts: false`: the last container, nothing held.
    LastContainer,
}

impl Placement {
    fn of(cfg: &InjectConfig, proxy_config: &PodProxyConfig) -> Self {
        if cfg.native_sidecars {
            // A native sidecar always holds the app (its startup probe).
            Self::NativeSidecar
        } else if proxy_config.hold_application_until_proxy_starts == Some(false) {
            Self::LastContainer
        } else {
            Self::FirstContainer
        }
    }
}

/// The proxy metadata key that turns DNS capture on (Istio's).
const DNS_CAPTURE: &str = "ISTIO_META_DNS_CAPTURE";

/// The proxy's metadata: the mesh's (DNS capture from `cfg.dns_capture`, then
/// `cfg.proxy_metadata`), then the pod's `proxyMetadata`. `ISTIO_META_DNS_CAPTURE` decides
/// the DNS capture too, so it must be a boolean (written back as `true` or `false`, what the
/// proxy reads).
fn proxy_metadata(
    cfg: &InjectConfig,
    pod: &PodProxyConfig,
) -> Result<BTreeMap<String, String>, InjectError> {
    let mut metadata = BTreeMap::from([(DNS_CAPTURE.to_string(), cfg.dns_capture.to_string())]);
    metadata.extend(cfg.proxy_metadata.clone());
    metadata.extend(pod.proxy_metadata.clone());
    if let Some(value) = metadata.get_mut(DNS_CAPTURE) {
        // Go's strconv.ParseBool, as Istio reads it.
        let on = match value.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            other => {
                return Err(bad(
                    &format!(
                        "metadata.annotations['{}'].proxyMetadata.{DNS_CAPTURE}",
                        proxy_config::ANNOTATION
                    ),
                    format!("{other:?} is not true or false"),
                ));
            }
        };
        *value = on.to_string();
    }
    Ok(metadata)
}

/// What the pod's `proxy.istio.io/config` and the mesh set in the proxy's environment:
/// worker threads, the drain on shutdown, and the metadata (replacing a variable of the same
/// name, as Istio's `proxyMetadata` may).
fn proxy_settings(
    proxy: &mut Container,
    cfg: &InjectConfig,
    pod: &PodProxyConfig,
    metadata: &BTreeMap<String, String>,
) {
    let mut settings: Vec<(String, String)> = vec![(
        "WEFT_CONCURRENCY".into(),
        pod.concurrency.unwrap_or(cfg.concurrency).to_string(),
    )];
    if let Some(drain) = pod.termination_drain_duration {
        // Whole seconds (the proxy's `--drain-time-s`), never shorter than asked.
        let seconds = drain.as_secs() + u64::from(drain.subsec_nanos() > 0);
        settings.push(("WEFT_DRAIN_TIME_S".into(), seconds.to_string()));
    }
    settings.extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    let env = proxy.env.get_or_insert_with(Vec::new);
    for (name, value) in settings {
        let var = from(json!({"name": name, "value": value}));
        match env.iter_mut().find(|e| e.name == name) {
            Some(existing) => *existing = var,
            None => env.push(var),
        }
    }
}

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    // The values are this file's literals: a failure is a bug here, caught by the tests.
    serde_json::from_value(value).expect("injector literal matches the Kubernetes schema")
}

/// A comma-separated list of CIDRs (or `*`), checked.
fn cidrs(field: &str, value: &str) -> Result<String, InjectError> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.into());
    }
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, len) = item.split_once('/').unwrap_or((item, ""));
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| bad(field, format!("{item:?} is not an address or CIDR")))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if !len.is_empty() && len.parse::<u8>().ok().is_none_or(|l| l > max) {
            return Err(bad(
                field,
                format!("{item:?}: prefix length must be 0-{max}"),
            ));
        }
    }
    Ok(value.into())
}

/// A comma-separated list of ports (or `*`), checked.
fn ports(field: &str, value: &str) -> Result<String, InjectError> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.into());
    }
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.parse::<u16>().ok().is_none_or(|p| p == 0) {
            return Err(bad(field, format!("{item:?} is not a port (1-65535)")));
        }
    }
    Ok(value.into())
}

/// `weft-proxy init` with the capture the pod's annotations ask for.
fn init_container(
    cfg: &InjectConfig,
    annotations: &BTreeMap<String, String>,
    dns_capture: bool,
) -> Result<Container, InjectError> {
    const PREFIX: &str = "traffic.sidecar.istio.io/";
    let get = |key: &str| {
        annotations
            .get(&format!("{PREFIX}{key}"))
            .map(String::as_str)
    };
    let field = |key: &str| format!("metadata.annotations['{PREFIX}{key}']");
    let uid = cfg.proxy_uid.to_string();
    let mut args: Vec<String> = [
        "init", "-p", "15001", "-z", "15006", "-u", &uid, "-m", "REDIRECT",
    ]
    .map(String::from)
    .into();
    let mut flag = |letter: &str, value: String| {
        args.push(letter.into());
        args.push(value);
    };
    let include_outbound = get("includeOutboundIPRanges").unwrap_or("*");
    flag(
        "-i",
        cidrs(&field("includeOutboundIPRanges"), include_outbound)?,
    );
    let exclude_outbound = get("excludeOutboundIPRanges").unwrap_or("");
    flag(
        "-x",
        cidrs(&field("excludeOutboundIPRanges"), exclude_outbound)?,
    );
    let include_inbound = get("includeInboundPorts").unwrap_or("*");
    flag("-b", ports(&field("includeInboundPorts"), include_inbound)?);
    // The proxy's own ports: kubelet's probes reach 15021 and (rewritten app probes) 15020
    // without being captured.
    let mut exclude_inbound = "15090,15021,15020".to_string();
    if let Some(more) = get("excludeInboundPorts") {
        let more = ports(&field("excludeInboundPorts"), more)?;
        if !more.is_empty() {
            exclude_inbound = format!("{exclude_inbound},{more}");
        }
    }
    flag("-d", exclude_inbound);
    if let Some(value) = get("excludeOutboundPorts") {
        flag("-o", ports(&field("excludeOutboundPorts"), value)?);
    }
    if let Some(value) = get("includeOutboundPorts") {
        flag("-q", ports(&field("includeOutboundPorts"), value)?);
    }
    if let Some(value) = get("excludeInterfaces") {
        flag("-c", value.to_string());
    }
    if dns_capture {
        args.push("--redirect-dns".into());
    }
    let image = annotations
        .get("sidecar.istio.io/proxyImage")
        .unwrap_or(&cfg.proxy_image);
    Ok(from(json!({
        "name": INIT_CONTAINER,
        "image": image,
        "args": args,
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"},
                      "limits": {"cpu": "2000m", "memory": "1024Mi"}},
        "securityContext": {
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false,
            "allowPrivilegeEscalation": false, "privileged": false,
            "readOnlyRootFilesystem": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    })))
}

/// The workload name the proxy's metrics report (Istio's `ISTIO_META_WORKLOAD_NAME`).
const WORKLOAD_NAME_ENV: &str = "ISTIO_META_WORKLOAD_NAME";

/// The workload a pod belongs to, as Istio names it: its controller's name, a ReplicaSet's
/// without the `pod-template-hash` suffix (so the Deployment's); a pod without a controller is
/// its own workload (its name, else its `generateName` prefix). `None` for a pod template
/// (offline injection), which has neither: the proxy then reports its pod's name.
pub fn workload_name(meta: &ObjectMeta) -> Option<String> {
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true));
    if let Some(owner) = controller {
        let hash = meta
            .labels
            .as_ref()
            .and_then(|labels| labels.get("pod-template-hash"));
        let name = match (owner.kind.as_str(), hash) {
            ("ReplicaSet", Some(hash)) => owner
                .name
                .strip_suffix(hash.as_str())
                .and_then(|rest| rest.strip_suffix('-'))
                .unwrap_or(&owner.name),
            _ => &owner.name,
        };
        return Some(name.to_string());
    }
    meta.name
        .clone()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            meta.generate_name
                .as_deref()
                .map(|prefix| prefix.trim_end_matches('-').to_string())
                .filter(|name| !name.is_empty())
        })
}

/// The proxy, placed as `placement` says (the same container otherwise).
fn proxy_container(
    cfg: &InjectConfig,
    placement: Placement,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<Container, InjectError> {
    let quantity = |key: &str, default: &str| -> Result<String, InjectError> {
        let value = annotations.get(key).map_or(default, String::as_str).trim();
        if crate::config::is_quantity(value) {
            Ok(value.to_string())
        } else {
            Err(bad(
                &format!("metadata.annotations['{key}']"),
                format!("{value:?} is not a resource quantity"),
            ))
        }
    };
    let requests = json!({
        "cpu": quantity("sidecar.istio.io/proxyCPU", &cfg.cpu_request)?,
        "memory": quantity("sidecar.istio.io/proxyMemory", &cfg.memory_request)?,
    });
    let limits = json!({
        "cpu": quantity("sidecar.istio.io/proxyCPULimit", &cfg.cpu_limit)?,
        "memory": quantity("sidecar.istio.io/proxyMemoryLimit", &cfg.memory_limit)?,
    });
    let workload_labels = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let image = annotations
        .get("sidecar.istio.io/proxyImage")
        .unwrap_or(&cfg.proxy_image);
    let health = json!({"httpGet": {"path": "/healthz/ready", "port": 15021}});
    let mut container = json!({
        "name": PROXY_CONTAINER,
        "image": image,
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
        "env": [
            {"name": "WEFT_XDS_ADDRESS", "value": cfg.controller_address},
            {"name": "CA_ADDR", "value": cfg.controller_address},
            {"name": "WEFT_XDS_SERVER_NAME", "value": cfg.controller_server_name},
            {"name": "TRUST_DOMAIN", "value": cfg.trust_domain},
            {"name": "WEFT_NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "WEFT_WORKLOAD_NAME", "valueFrom": field("metadata.name")},
            {"name": "WEFT_INSTANCE_IP", "valueFrom": field("status.podIP")},
            {"name": "SERVICE_ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
            {"name": "WEFT_LABELS", "value": workload_labels},
            {"name": "POD_NAME", "valueFrom": field("metadata.name")},
            {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "INSTANCE_IP", "valueFrom": field("status.podIP")},
            // istio-init captured the pod's traffic: listeners match by original destination.
            // (WEFT_CONCURRENCY, the drain and the proxy metadata, ISTIO_META_DNS_CAPTURE
            // included, come from `proxy_settings`.)
            {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
        ],
        "resources": {"requests": requests, "limits": limits},
        "startupProbe": {"periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600,
                         "httpGet": health["httpGet"]},
        "readinessProbe": {"periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 4,
                           "httpGet": health["httpGet"]},
        "securityContext": {
            "runAsUser": cfg.proxy_uid, "runAsGroup": cfg.proxy_uid, "runAsNonRoot": true,
            "allowPrivilegeEscalation": false, "privileged": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
        ],
    });
    match placement {
        Placement::NativeSidecar => container["restartPolicy"] = json!("Always"),
        // The kubelet starts the next container only once this hook returns (Istio's
        // `pilot-agent wait`); the startup probe is kept, as Istio keeps it.
        Placement::FirstContainer => {
            container["lifecycle"] =
                json!({"postStart": {"exec": {"command": ["weft-proxy", "wait"]}}});
        }
        Placement::LastContainer => {}
    }
    Ok(from(container))
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
