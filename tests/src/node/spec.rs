//! From a container's spec to what the test node runs: the program its image stands for
//! ([`super::images`]), the environment (`env`, `envFrom`, downward-API fields, ConfigMap and Secret keys) and the
//! argument list with `$(VAR)` expanded, with the kubelet's rules and its error reasons.
//!
//! ```text
//!  Container ─► env: envFrom sources, then env entries in order, each expanded against the
//!               ones before it ─► argv: image's program + (command or image default) + args,
//!               expanded against the env ─► (program, argv, env) | reason + message
//! ```
//!
//! Pure: the ConfigMaps and Secrets come from a [`Objects`] the caller fills from the API
//! server, so the rules are unit-tested here without a cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVarSource};

pub use super::images::{Image, ImageTable};

/// Why a container cannot start, as the kubelet reports it in `containerStatuses[].state
/// .waiting`: `reason` (`CreateContainerConfigError`, `ErrImagePull`) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct StartError {
    pub reason: &'static str,
    pub message: String,
}

impl StartError {
    fn config(message: String) -> Self {
        Self {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

/// What the downward API can read of a pod.
#[derive(Debug, Clone, Default)]
pub struct PodFields {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
}

/// The ConfigMaps and Secrets of the pod's namespace, as read from the API server.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// The Services' variables every container starts with ([`service_links`]).
    pub service_env: Vec<(String, String)>,
}

/// A Service as its environment variables describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLink {
    pub name: String,
    pub cluster_ip: String,
    /// (port name, port, protocol), in the spec's order.
    pub ports: Vec<(Option<String>, i32, String)>,
}

/// The kubelet's Service variables (`enableServiceLinks`): per Service with a cluster IP,
/// `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (the first port), `<NAME>_SERVICE_PORT_<PORT
/// NAME>`, and the Docker-link style `<NAME>_PORT` and `<NAME>_PORT_<port>_<PROTO>[_PROTO|
/// _PORT|_ADDR]`; names upper-cased with `-` as `_`.
pub fn service_links(services: &[ServiceLink]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for service in services {
        if service.cluster_ip.is_empty() || service.cluster_ip == "None" {
            continue;
        }
        let Some((_, first, first_proto)) = service.ports.first() else {
            continue;
        };
        let name = service.name.to_uppercase().replace('-', "_");
        let ip = &service.cluster_ip;
        env.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        env.push((format!("{name}_SERVICE_PORT"), first.to_string()));
        for (port_name, port, _) in &service.ports {
            if let Some(port_name) = port_name.as_deref().filter(|n| !n.is_empty()) {
                let port_name = port_name.to_uppercase().replace('-', "_");
                env.push((format!("{name}_SERVICE_PORT_{port_name}"), port.to_string()));
            }
        }
        let url = |proto: &str, port: i32| format!("{}://{ip}:{port}", proto.to_lowercase());
        env.push((format!("{name}_PORT"), url(first_proto, *first)));
        for (_, port, proto) in &service.ports {
            let prefix = format!("{name}_PORT_{port}_{}", proto.to_uppercase());
            env.push((prefix.clone(), url(proto, *port)));
            env.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
            env.push((format!("{prefix}_PORT"), port.to_string()));
            env.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    env
}

/// A container ready to run: the program, its arguments and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Resolves `container` of a pod into what to run, or the kubelet's reason why not.
pub fn launch(
    container: &Container,
    pod: &PodFields,
    objects: &Objects,
    images: &ImageTable,
) -> Result<Launch, StartError> {
    let image_ref = container.image.as_deref().unwrap_or_default();
    let image = images.resolve(image_ref)?;
    let env = environment(container, pod, objects)?;
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let expand_all =
        |list: &[String]| -> Vec<String> { list.iter().map(|arg| expand(arg, &lookup)).collect() };
    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    let mut argv = Vec::new();
    if command.is_empty() {
        argv.extend(image.entrypoint.iter().cloned());
        if args.is_empty() {
            argv.extend(image.default_args.iter().cloned());
        }
    } else {
        argv.extend(expand_all(command));
    }
    argv.extend(expand_all(args));
    Ok(Launch {
        program: image.program.clone(),
        args: argv,
        env,
    })
}

/// The container's environment, as the kubelet builds it: the Services' variables, then
/// `envFrom` sources in order (keys
/// with their prefix; a later source wins), then `env` entries in order, each `value`
/// expanded against the variables defined before it.
pub fn environment(
    container: &Container,
    pod: &PodFields,
    objects: &Objects,
) -> Result<Vec<(String, String)>, StartError> {
    let namespace = &pod.namespace;
    // The Services' variables first: the container's own may use and replace them.
    let mut env: Vec<(String, String)> = objects.service_env.clone();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            let optional = reference.optional == Some(true);
            for (key, value) in
                object("ConfigMap", &objects.config_maps, &reference.name, optional)?
                    .into_iter()
                    .flatten()
            {
                set(&mut env, format!("{prefix}{key}"), value.clone());
            }
        }
        if let Some(reference) = &source.secret_ref {
            let optional = reference.optional == Some(true);
            for (key, value) in object("Secret", &objects.secrets, &reference.name, optional)?
                .into_iter()
                .flatten()
            {
                let value = String::from_utf8_lossy(value).into_owned();
                set(&mut env, format!("{prefix}{key}"), value);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(source)) => match value_from(source, pod, objects, namespace)? {
                Some(value) => value,
                // An optional key that is missing: the variable is not set.
                None => continue,
            },
            (Some(value), None) => {
                let defined = env.clone();
                expand(value, &|name: &str| {
                    defined
                        .iter()
                        .rev()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.as_str())
                })
            }
            (None, None) => String::new(),
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// Defines `key` (a later definition replaces an earlier one, at the end of the list).
fn set(env: &mut Vec<(String, String)>, key: String, value: String) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value));
}

fn value_from(
    source: &EnvVarSource,
    pod: &PodFields,
    objects: &Objects,
    namespace: &str,
) -> Result<Option<String>, StartError> {
    if let Some(field) = &source.field_ref {
        return field_value(&field.field_path, pod).map(Some);
    }
    if let Some(key) = &source.config_map_key_ref {
        let optional = key.optional == Some(true);
        return key_ref(
            "ConfigMap",
            &objects.config_maps,
            &key.name,
            &key.key,
            optional,
            namespace,
            |v| v.clone(),
        );
    }
    if let Some(key) = &source.secret_key_ref {
        let optional = key.optional == Some(true);
        return key_ref(
            "Secret",
            &objects.secrets,
            &key.name,
            &key.key,
            optional,
            namespace,
            |v| String::from_utf8_lossy(v).into_owned(),
        );
    }
    Err(StartError::config(
        "valueFrom: only fieldRef, configMapKeyRef and secretKeyRef are supported by the test node"
            .to_string(),
    ))
}

/// A key of a ConfigMap or Secret (`kind`): its value; `None` when it is optional and missing;
/// else the kubelet's error.
fn key_ref<V>(
    kind: &str,
    objects: &BTreeMap<String, BTreeMap<String, V>>,
    name: &str,
    key: &str,
    optional: bool,
    namespace: &str,
    text: impl Fn(&V) -> String,
) -> Result<Option<String>, StartError> {
    let Some(data) = object(kind, objects, name, optional)? else {
        return Ok(None);
    };
    match data.get(key) {
        Some(value) => Ok(Some(text(value))),
        None if optional => Ok(None),
        None => Err(StartError::config(format!(
            "couldn't find key {key} in {kind} {namespace}/{name}"
        ))),
    }
}

/// A ConfigMap or Secret (`kind`) by name; `None` when it is optional and missing; else the
/// kubelet's error.
fn object<'a, V>(
    kind: &str,
    objects: &'a BTreeMap<String, BTreeMap<String, V>>,
    name: &str,
    optional: bool,
) -> Result<Option<&'a BTreeMap<String, V>>, StartError> {
    match objects.get(name) {
        Some(data) => Ok(Some(data)),
        None if optional => Ok(None),
        None => Err(StartError::config(format!(
            "{} {name:?} not found",
            kind.to_lowercase()
        ))),
    }
}

/// A downward-API `fieldRef` path's value.
pub fn field_value(path: &str, pod: &PodFields) -> Result<String, StartError> {
    let from_map = |map: &BTreeMap<String, String>, rest: &str| {
        rest.strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .map(|key| map.get(key).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => Some(pod.name.clone()),
        "metadata.namespace" => Some(pod.namespace.clone()),
        "metadata.uid" => Some(pod.uid.clone()),
        "spec.nodeName" => Some(pod.node_name.clone()),
        "spec.serviceAccountName" => Some(pod.service_account.clone()),
        "status.podIP" | "status.podIPs" => Some(pod.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => Some(pod.host_ip.clone()),
        _ => path
            .strip_prefix("metadata.labels")
            .and_then(|rest| from_map(&pod.labels, rest))
            .or_else(|| {
                path.strip_prefix("metadata.annotations")
                    .and_then(|rest| from_map(&pod.annotations, rest))
            }),
    };
    value.ok_or_else(|| {
        StartError::config(format!(
            "fieldRef {path:?} is not supported (metadata.name, metadata.namespace, metadata.uid, \
             metadata.labels['…'], metadata.annotations['…'], spec.nodeName, \
             spec.serviceAccountName, status.podIP, status.hostIP)"
        ))
    })
}

/// The kubelet's `$(VAR)` expansion: a defined `$(VAR)` becomes its value, an undefined one
/// stays as written, `$$` is a literal `$`, and any other `$` is kept.
pub fn expand<'a>(input: &str, lookup: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(close) = body.find(')')
        {
            let name = &body[..close];
            match lookup(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
