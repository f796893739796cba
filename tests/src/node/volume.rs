//! A pod's volumes on the test node: what each volume of the spec holds (`emptyDir`,
//! `configMap`, `secret`, `downwardAPI`, `projected` with service-account tokens), written to
//! a directory per volume, and the mounts that put them at each container's paths.
//!
//! ```text
//!  spec.volumes ─► layout(): files with their modes, pure (unit-tested)
//!               ─► Volumes::create(): written under <pod dir>/volumes/<name>, tokens asked
//!                  of the API server (TokenRequest, bound to the pod), refreshed at 80% of
//!                  their lifetime as the kubelet does
//!  container.volumeMounts ─► mounts(): (volume dir or subPath, mountPath, readOnly) for the
//!                            launcher ([`super::launch`])
//! ```
//!
//! Failures are reported as the kubelet's: the container waits in `ContainerCreating` with a
//! `MountVolume.SetUp failed …` message, and the agent tries again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PodSpec, ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::launch::Mount;
use super::spec::{Objects, PodFields, StartError, field_value};

/// The mode of a file whose volume and item name none (the API's default, 0644).
const DEFAULT_MODE: u32 = 0o644;
/// A token's lifetime when the projection names none (the API's default).
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// What a file of a volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A service-account token for the pod, asked of the API server when written.
    Token {
        audience: Option<String>,
        expiration_seconds: i64,
    },
}

/// One file of a volume, at a path relative to the volume's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub content: Content,
    pub mode: u32,
}

/// What a volume is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// An empty directory every container may write to.
    EmptyDir,
    Files(Vec<File>),
}

fn mount_error(volume: &str, why: impl std::fmt::Display) -> StartError {
    StartError {
        reason: "ContainerCreating",
        message: format!("MountVolume.SetUp failed for volume {volume:?}: {why}"),
    }
}

/// The files of `volume`, or why it cannot be set up.
pub fn layout(volume: &Volume, pod: &PodFields, objects: &Objects) -> Result<Layout, StartError> {
    let name = &volume.name;
    let fail = |why: String| mount_error(name, why);
    let mut files = Vec::new();
    if volume.empty_dir.is_some() {
        return Ok(Layout::EmptyDir);
    } else if let Some(source) = &volume.config_map {
        let mode = mode(source.default_mode);
        let data = config_map(objects, &source.name, source.optional).map_err(fail)?;
        keys(
            &data,
            source.items.as_deref(),
            mode,
            source.optional,
            &mut files,
        )
        .map_err(fail)?;
    } else if let Some(source) = &volume.secret {
        let mode = mode(source.default_mode);
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let data = secret(objects, &secret_name, source.optional).map_err(fail)?;
        keys(
            &data,
            source.items.as_deref(),
            mode,
            source.optional,
            &mut files,
        )
        .map_err(fail)?;
    } else if let Some(source) = &volume.downward_api {
        let mode = mode(source.default_mode);
        downward(
            pod,
            source.items.as_deref().unwrap_or_default(),
            mode,
            &mut files,
        )
        .map_err(fail)?;
    } else if let Some(source) = &volume.projected {
        let mode = mode(source.default_mode);
        for projection in source.sources.iter().flatten() {
            if let Some(token) = &projection.service_account_token {
                files.push(File {
                    path: token.path.clone().into(),
                    content: Content::Token {
                        audience: token.audience.clone().filter(|a| !a.is_empty()),
                        expiration_seconds: token
                            .expiration_seconds
                            .unwrap_or(DEFAULT_TOKEN_SECONDS),
                    },
                    mode,
                });
            } else if let Some(cm) = &projection.config_map {
                let data = config_map(objects, &cm.name, cm.optional).map_err(fail)?;
                keys(&data, cm.items.as_deref(), mode, cm.optional, &mut files).map_err(fail)?;
            } else if let Some(s) = &projection.secret {
                let data = secret(objects, &s.name, s.optional).map_err(fail)?;
                keys(&data, s.items.as_deref(), mode, s.optional, &mut files).map_err(fail)?;
            } else if let Some(d) = &projection.downward_api {
                downward(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    &mut files,
                )
                .map_err(fail)?;
            } else {
                return Err(fail(
                    "the test node supports the projected sources serviceAccountToken, \
                     configMap, secret and downwardAPI"
                        .into(),
                ));
            }
        }
    } else {
        return Err(fail(
            "the test node supports the volume types emptyDir, configMap, secret, \
             downwardAPI and projected"
                .into(),
        ));
    }
    for file in &files {
        if file.path.as_os_str().is_empty()
            || !file
                .path
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(fail(format!(
                "path {:?} must be relative and must not contain '..'",
                file.path
            )));
        }
    }
    Ok(Layout::Files(files))
}

fn mode(default_mode: Option<i32>) -> u32 {
    default_mode
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(DEFAULT_MODE)
}

/// A ConfigMap's `data` and `binaryData`; empty when it is optional and missing.
fn config_map(
    objects: &Objects,
    name: &str,
    optional: Option<bool>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match objects.config_maps.get(name) {
        Some(data) => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()),
        None if optional == Some(true) => Ok(BTreeMap::new()),
        None => Err(format!("configmap {name:?} not found")),
    }
}

fn secret(
    objects: &Objects,
    name: &str,
    optional: Option<bool>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match objects.secrets.get(name) {
        Some(data) => Ok(data.clone()),
        None if optional == Some(true) => Ok(BTreeMap::new()),
        None => Err(format!("secret {name:?} not found")),
    }
}

/// Every key as a file named after it, or the listed `items` at their paths.
fn keys(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: Option<bool>,
    files: &mut Vec<File>,
) -> Result<(), String> {
    let Some(items) = items else {
        files.extend(data.iter().map(|(key, value)| File {
            path: key.into(),
            content: Content::Bytes(value.clone()),
            mode: default_mode,
        }));
        return Ok(());
    };
    for item in items {
        match data.get(&item.key) {
            Some(value) => files.push(File {
                path: item.path.clone().into(),
                content: Content::Bytes(value.clone()),
                mode: item
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode),
            }),
            None if optional == Some(true) => {}
            None => return Err(format!("key {:?} not found", item.key)),
        }
    }
    Ok(())
}

/// Downward-API files: one field each; `metadata.labels` and `metadata.annotations` whole,
/// one `key="value"` line per entry, as the kubelet formats them.
fn downward(
    pod: &PodFields,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    files: &mut Vec<File>,
) -> Result<(), String> {
    for item in items {
        let Some(field) = &item.field_ref else {
            return Err(format!(
                "{}: the test node supports fieldRef items only",
                item.path
            ));
        };
        let text = match field.field_path.as_str() {
            "metadata.labels" => format_map(&pod.labels),
            "metadata.annotations" => format_map(&pod.annotations),
            path => field_value(path, pod).map_err(|e| e.message)?,
        };
        files.push(File {
            path: item.path.clone().into(),
            content: Content::Bytes(text.into_bytes()),
            mode: item
                .mode
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(default_mode),
        });
    }
    Ok(())
}

/// `key="value"` lines sorted by key, values quoted as Go's `%q` does (the kubelet's
/// `fieldpath.FormatMap`), without a newline after the last.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in map {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "{key}=\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// A token file written, and when to ask for a fresh one.
#[derive(Debug)]
struct IssuedToken {
    path: PathBuf,
    audience: Option<String>,
    expiration_seconds: i64,
    mode: u32,
    refresh_at: Instant,
}

/// A pod's volumes, written under one directory.
#[derive(Debug)]
pub struct Volumes {
    dir: PathBuf,
    tokens: Vec<IssuedToken>,
}

impl Volumes {
    /// Writes every volume of `spec` under `dir/<name>`, asking the API server for the
    /// tokens the projections name.
    pub async fn create(
        client: &kube::Client,
        dir: &Path,
        spec: &PodSpec,
        pod: &PodFields,
        objects: &Objects,
    ) -> Result<Self, StartError> {
        let mut volumes = Self {
            dir: dir.to_path_buf(),
            tokens: Vec::new(),
        };
        for volume in spec.volumes.iter().flatten() {
            let layout = layout(volume, pod, objects)?;
            let root = dir.join(&volume.name);
            let fail = |e: std::io::Error| mount_error(&volume.name, e);
            // Written afresh: a retry after a failure starts from nothing.
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).map_err(fail)?;
            let files = match layout {
                Layout::EmptyDir => {
                    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777))
                        .map_err(fail)?;
                    continue;
                }
                Layout::Files(files) => files,
            };
            for file in files {
                let path = root.join(&file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(fail)?;
                }
                match file.content {
                    Content::Bytes(bytes) => write(&path, &bytes, file.mode).map_err(fail)?,
                    Content::Token {
                        audience,
                        expiration_seconds,
                    } => {
                        let mut issued = IssuedToken {
                            path,
                            audience,
                            expiration_seconds,
                            mode: file.mode,
                            refresh_at: Instant::now(),
                        };
                        issue(client, pod, &mut issued)
                            .await
                            .map_err(|e| mount_error(&volume.name, e))?;
                        volumes.tokens.push(issued);
                    }
                }
            }
        }
        Ok(volumes)
    }

    /// Replaces the tokens that have lived 80% of their lifetime.
    pub async fn refresh(&mut self, client: &kube::Client, pod: &PodFields) {
        for token in &mut self.tokens {
            if Instant::now() >= token.refresh_at
                && let Err(e) = issue(client, pod, token).await
            {
                eprintln!("node agent: refreshing {}: {e}", token.path.display());
            }
        }
    }

    /// The mounts of `container`: each `volumeMount` as a directory (or a `subPath` in it)
    /// bound at `mountPath`.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, StartError> {
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let mut source = self.dir.join(&m.name);
            if !source.is_dir() {
                return Err(mount_error(&m.name, "no such volume in the pod's spec"));
            }
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if !Path::new(sub)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
                {
                    return Err(mount_error(
                        &m.name,
                        format!("subPath {sub:?} must be relative and must not contain '..'"),
                    ));
                }
                source.push(sub);
                if !source.exists() {
                    // The kubelet creates a missing subPath as a directory.
                    std::fs::create_dir_all(&source).map_err(|e| mount_error(&m.name, e))?;
                }
            }
            mounts.push(Mount {
                source,
                target: m.mount_path.clone().into(),
                read_only: m.read_only == Some(true),
            });
        }
        Ok(mounts)
    }
}

/// Writes `bytes` in place (a directory bound into a container sees the same file).
fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Asks the API server for a token of the pod's service account, bound to the pod (as the
/// kubelet does), and writes it.
async fn issue(
    client: &kube::Client,
    pod: &PodFields,
    token: &mut IssuedToken,
) -> Result<(), String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &pod.namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": token.audience.iter().collect::<Vec<_>>(),
            "expirationSeconds": token.expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid},
        },
    });
    let response: serde_json::Value = accounts
        .create_subresource(
            "token",
            &pod.service_account,
            &PostParams::default(),
            &request,
        )
        .await
        .map_err(|e| {
            format!(
                "requesting a token for service account {}/{}: {e}",
                pod.namespace, pod.service_account
            )
        })?;
    let issued = response
        .pointer("/status/token")
        .and_then(serde_json::Value::as_str)
        .ok_or("the TokenRequest's answer holds no status.token")?;
    write(&token.path, issued.as_bytes(), token.mode).map_err(|e| e.to_string())?;
    let lifetime = u64::try_from(token.expiration_seconds).unwrap_or(3600);
    token.refresh_at = Instant::now() + Duration::from_secs(lifetime * 8 / 10);
    Ok(())
}

#[cfg(test)]
#[path = "volume_tests.rs"]
mod tests;
