//! `WorkloadGroup` (networking.istio.io/v1): the template of the WorkloadEntries a VM registers itself with, and their readiness probe.
//!
//! Istio uses it for VM auto-registration, which Weft does not do: the kind is parsed and
//! validated as Istio does, and the controller reports it as not supported yet.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workload_entry::{WorkloadEntry, check_max_items};
use crate::de::null_default;
use crate::validation::{FieldError, Path, Validate, check_labels, validate_port};

/// A group of workload instances (VMs) sharing a template.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroup {
    /// Labels and annotations of every WorkloadEntry of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WorkloadGroupMetadata>,
    /// The WorkloadEntry each instance gets (its address is filled in on registration).
    pub template: WorkloadEntry,
    /// How the instances' readiness is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ReadinessProbe>,
}

/// Metadata given to the group's WorkloadEntries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroupMetadata {
    /// Labels.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// A readiness probe run by the VM's proxy: one of `httpGet`, `tcpSocket`, `exec`, `grpc`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessProbe {
    /// Seconds after start before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds after which a probe times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// Consecutive successes to be ready again after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// Consecutive failures to be unready after a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// An HTTP GET; ready on a 2xx/3xx answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpHealthCheckConfig>,
    /// A TCP connection; ready when it opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    /// A command; ready when it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHealthCheckConfig>,
    /// A gRPC health check call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheckConfig>,
}

/// `httpGet` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheckConfig {
    /// Path of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port (required).
    pub port: u32,
    /// Host to connect to (default: the workload's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Headers sent with the request.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub http_headers: Vec<HttpHeader>,
}

/// A header of an HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Header value.
    #[serde(default)]
    pub value: String,
}

/// `tcpSocket` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheckConfig {
    /// Host to connect to (default: the workload's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port (required).
    pub port: u32,
}

/// `exec` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecHealthCheckConfig {
    /// The command and its arguments (required).
    pub command: Vec<String>,
}

/// `grpc` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcHealthCheckConfig {
    /// Port of the gRPC server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Service name sent in the health check request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// The CRD's rule for probe ports (and Istio's `ValidatePort`).
fn check_probe_port(path: &Path, errors: &mut Vec<FieldError>, port: u32) {
    if validate_port(port).is_err() {
        path.push(errors, format!("port must be between 1-65535, got {port}"));
    }
}

/// A probe header name: Kubernetes' rule, `[-A-Za-z0-9]+` (Istio's `ValidateProbeHeaderName`).
fn valid_probe_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

impl Validate for ReadinessProbe {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        for (field, value) in [
            ("periodSeconds", self.period_seconds),
            ("initialDelaySeconds", self.initial_delay_seconds),
            ("timeoutSeconds", self.timeout_seconds),
            ("successThreshold", self.success_threshold),
            ("failureThreshold", self.failure_threshold),
        ] {
            if let Some(v) = value
                && v < 0
            {
                path.field(field)
                    .push(errors, format!("{field} must be non-negative, got {v}"));
            }
        }
        let methods = [
            self.http_get.is_some(),
            self.tcp_socket.is_some(),
            self.exec.is_some(),
            self.grpc.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        match methods {
            0 => path.push(
                errors,
                "a probe must set one health check method: httpGet, tcpSocket, exec or grpc",
            ),
            1 => {}
            _ => path.push(
                errors,
                "only one of httpGet, tcpSocket, exec or grpc may be set",
            ),
        }
        if let Some(h) = &self.http_get {
            let hp = path.field("httpGet");
            check_probe_port(&hp.field("port"), errors, h.port);
            if let Some(scheme) = h.scheme.as_deref()
                && !matches!(scheme, "" | "HTTP" | "HTTPS")
            {
                hp.field("scheme").push(
                    errors,
                    format!("scheme must be one of [HTTP, HTTPS], got \"{scheme}\""),
                );
            }
            for (i, header) in h.http_headers.iter().enumerate() {
                if !valid_probe_header_name(&header.name) {
                    hp.field("httpHeaders").index(i).field("name").push(
                        errors,
                        format!(
                            "header name \"{}\" is not a valid header name: it must match ^[-A-Za-z0-9]+$",
                            header.name
                        ),
                    );
                }
            }
        }
        if let Some(t) = &self.tcp_socket {
            check_probe_port(&path.field("tcpSocket").field("port"), errors, t.port);
        }
        if let Some(e) = &self.exec {
            let cp = path.field("exec").field("command");
            if e.command.is_empty() {
                cp.push(errors, "exec.command is required");
            }
            for (i, arg) in e.command.iter().enumerate() {
                if arg.is_empty() {
                    cp.index(i)
                        .push(errors, "a command argument may not be empty");
                }
            }
        }
        if let Some(g) = &self.grpc
            && let Some(port) = g.port
        {
            check_probe_port(&path.field("grpc").field("port"), errors, port);
        }
    }
}

impl Validate for WorkloadGroup {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(meta) = &self.metadata {
            let mp = path.field("metadata");
            check_labels(&mp.field("labels"), errors, &meta.labels);
            check_max_items(&mp.field("labels"), errors, meta.labels.len(), 256);
            check_max_items(
                &mp.field("annotations"),
                errors,
                meta.annotations.len(),
                256,
            );
        }
        // As in Istio, the template is not checked as a WorkloadEntry (its address is filled in
        // on registration); only the CRD's rules on its fields apply.
        self.template
            .validate_schema_rules(&path.field("template"), errors, false);
        self.probe.validate(&path.field("probe"), errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let wg: WorkloadGroup = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        wg.validate(&Path::root("spec"), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rules() {
        assert!(
            errors_of(
                "metadata: {labels: {app: a}}\ntemplate: {serviceAccount: sa, ports: {http: 80}}\nprobe: {httpGet: {port: 8080, scheme: HTTPS}}"
            )
            .is_empty()
        );
        assert!(errors_of("template: {}").is_empty());
        assert!(serde_yaml::from_str::<WorkloadGroup>("probe: {exec: {command: [a]}}").is_err());
        let e = errors_of("template: {address: 'unix://rel', ports: {http: 0}}");
        assert_eq!(e.len(), 3, "{e:?}");
        let e = errors_of("template: {}\nprobe: {periodSeconds: -1}");
        assert_eq!(
            e,
            [
                "spec.probe.periodSeconds: periodSeconds must be non-negative, got -1",
                "spec.probe: a probe must set one health check method: httpGet, tcpSocket, exec or grpc"
            ]
        );
        let e = errors_of(
            "template: {}\nprobe: {tcpSocket: {port: 0}, httpGet: {port: 1, scheme: ftp, httpHeaders: [{name: a_b}]}}",
        );
        assert_eq!(e.len(), 4, "{e:?}");
        let e = errors_of("metadata: {labels: {'a b': c}}\ntemplate: {}");
        assert_eq!(e.len(), 1, "{e:?}");
    }
}
