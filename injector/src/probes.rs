//! App probes rewritten through the sidecar (Istio's `rewriteAppHTTPProbers`): under STRICT
//! mutual TLS the sidecar would refuse kubelet's plaintext probes, so they go to the proxy's
//! status port, which performs the original probe from inside the pod.
//!
//! ```text
//!  spec.containers[i].{liveness,readiness,startup}Probe
//!     httpGet │ tcpSocket │ grpc ─► httpGet http://<pod>:15020/app-health/<container>/<livez│readyz│startupz>
//!                                  (timing fields kept) ─┐
//!     exec, or already on 15020 /app-health/ ─► untouched │
//!  the originals, named ports resolved ─► istio-proxy env ISTIO_KUBE_APP_PROBERS (JSON, by path)
//! ```

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, EnvVar, GRPCAction, HTTPGetAction, PodSpec, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::InjectConfig;
use crate::inject::{InjectError, PROXY_CONTAINER};

/// The proxy's status port (Istio's pilot-agent port): kubelet's rewritten probes go there.
pub const STATUS_PORT: i32 = 15020;
/// The proxy's environment variable with the original probes (Istio's name).
pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";
/// The pod annotation that turns the rewrite off (`"false"`) or on, whatever the config says.
pub const REWRITE_ANNOTATION: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
const PATH_PREFIX: &str = "/app-health/";

/// Istio's original probe as the proxy receives it: exactly one action, and the timeout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Prober {
    #[serde(rename = "httpGet", skip_serializing_if = "Option::is_none")]
    http_get: Option<HTTPGetAction>,
    #[serde(rename = "tcpSocket", skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TCPSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc: Option<GRPCAction>,
    #[serde(rename = "timeoutSeconds", skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<i32>,
}

/// The probes of a pod to rewrite, computed before anything changes (so that a refused pod
/// is never half-injected), then applied.
#[derive(Debug, Default)]
pub struct ProbeRewrite {
    /// (container index, which probe, the rewritten probe).
    probes: Vec<(usize, Kind, Probe)>,
    /// The originals by their new path; a `BTreeMap` so that the JSON is stable.
    probers: BTreeMap<String, Prober>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Liveness, Kind::Readiness, Kind::Startup];

    fn field(self) -> &'static str {
        match self {
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
            Kind::Startup => "startupProbe",
        }
    }

    /// The last segment of the status port's path (Istio's).
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Liveness => "livez",
            Kind::Readiness => "readyz",
            Kind::Startup => "startupz",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }

    fn of_mut(self, c: &mut Container) -> &mut Option<Probe> {
        match self {
            Kind::Liveness => &mut c.liveness_probe,
            Kind::Readiness => &mut c.readiness_probe,
            Kind::Startup => &mut c.startup_probe,
        }
    }
}

/// Whether the pod's probes are rewritten: the annotation when it is a boolean (Go's
/// `strconv.ParseBool`, as Istio reads it), else the config.
pub fn enabled(annotations: &BTreeMap<String, String>, cfg: &InjectConfig) -> bool {
    match annotations.get(REWRITE_ANNOTATION).map(String::as_str) {
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
        _ => cfg.rewrite_app_probes,
    }
}

/// The rewrite of `spec`'s app containers' probes (not the proxy's, not init containers').
pub fn plan(spec: &PodSpec) -> Result<ProbeRewrite, InjectError> {
    let mut out = ProbeRewrite::default();
    for (i, container) in spec.containers.iter().enumerate() {
        if container.name == PROXY_CONTAINER {
            continue;
        }
        for kind in Kind::ALL {
            let Some(probe) = kind.of(container) else {
                continue;
            };
            if already_rewritten(probe) {
                continue;
            }
            let field = format!("spec.containers[{i}].{}", kind.field());
            let Some(prober) = original(probe, container, &field)? else {
                continue;
            };
            let path = format!("{PATH_PREFIX}{}/{}", container.name, kind.endpoint());
            out.probes.push((i, kind, rewritten(probe, &path)));
            out.probers.insert(path, prober);
        }
    }
    Ok(out)
}

impl ProbeRewrite {
    /// Rewrites the app containers' probes and gives `proxy` the originals.
    pub fn apply(self, spec: &mut PodSpec, proxy: &mut Container) {
        if self.probers.is_empty() {
            return;
        }
        // Serializing k8s-openapi types and strings cannot fail.
        let value = serde_json::to_string(&self.probers).unwrap_or_default();
        proxy.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: APP_PROBERS_ENV.into(),
            value: Some(value),
            value_from: None,
        });
        for (i, kind, probe) in self.probes {
            if let Some(container) = spec.containers.get_mut(i) {
                *kind.of_mut(container) = Some(probe);
            }
        }
    }
}

/// A probe the injector already rewrote (re-injection must not wrap it again).
fn already_rewritten(probe: &Probe) -> bool {
    probe.http_get.as_ref().is_some_and(|h| {
        h.port == IntOrString::Int(STATUS_PORT)
            && h.path
                .as_deref()
                .is_some_and(|p| p.starts_with(PATH_PREFIX))
    })
}

/// The original probe as the proxy performs it (ports as numbers); `None` for `exec` (kubelet
/// runs it in the container: no network, nothing to rewrite) and probes without an action.
fn original(
    probe: &Probe,
    container: &Container,
    field: &str,
) -> Result<Option<Prober>, InjectError> {
    let mut prober = Prober {
        http_get: None,
        tcp_socket: None,
        grpc: None,
        timeout_seconds: probe.timeout_seconds,
    };
    if let Some(action) = &probe.http_get {
        let port = port(&action.port, container, &format!("{field}.httpGet.port"))?;
        prober.http_get = Some(HTTPGetAction {
            port: IntOrString::Int(port),
            ..action.clone()
        });
    } else if let Some(action) = &probe.tcp_socket {
        let port = port(&action.port, container, &format!("{field}.tcpSocket.port"))?;
        prober.tcp_socket = Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..action.clone()
        });
    } else if let Some(action) = &probe.grpc {
        checked_port(action.port, &format!("{field}.grpc.port"))?;
        prober.grpc = Some(action.clone());
    } else {
        return Ok(None);
    }
    Ok(Some(prober))
}

/// A probe's port as a number: a name is looked up in the container's `ports`.
fn port(port: &IntOrString, container: &Container, field: &str) -> Result<i32, InjectError> {
    match port {
        IntOrString::Int(n) => checked_port(*n, field),
        IntOrString::String(name) => {
            let declared: HashMap<&str, i32> = container
                .ports
                .iter()
                .flatten()
                .filter_map(|p| Some((p.name.as_deref()?, p.container_port)))
                .collect();
            match declared.get(name.as_str()) {
                Some(n) => checked_port(*n, field),
                None => Err(InjectError {
                    field: field.into(),
                    reason: format!(
                        "port {name:?} is not a port name of container {:?}",
                        container.name
                    ),
                }),
            }
        }
    }
}

fn checked_port(n: i32, field: &str) -> Result<i32, InjectError> {
    if (1..=65535).contains(&n) {
        Ok(n)
    } else {
        Err(InjectError {
            field: field.into(),
            reason: format!("{n} is not a port (1-65535)"),
        })
    }
}

/// The probe kubelet runs instead: the same timing, an HTTP GET of the status port.
fn rewritten(probe: &Probe, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(STATUS_PORT),
            scheme: Some("HTTP".into()),
            host: None,
            http_headers: None,
        }),
        tcp_socket: None,
        grpc: None,
        ..probe.clone()
    }
}

#[cfg(test)]
#[path = "probes_tests.rs"]
mod tests;
