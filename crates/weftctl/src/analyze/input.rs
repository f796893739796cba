//! What `weftctl analyze` analyzes: a [`Snapshot`] of Istio objects (typed and validated by
//! `weft-api`; a document that fails becomes an IST0106 finding), Kubernetes Services,
//! workloads (Pods; in files, also the pod templates of Deployments, StatefulSets,
//! DaemonSets and ReplicaSets) and Namespaces, read from files (recursively), from the
//! cluster, or files laid over the cluster ([`Snapshot::overlay`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use weft_api::crd::plural;
use weft_api::{ConfigObject, DocumentError, Kind};

use super::{Origin, ResourceRef};
use crate::remote::KubeApi;

/// The sidecar container's name (Istio's).
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The annotation the injector writes on the pods it injected.
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// Mesh-wide settings the analysis needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The cluster's DNS domain (`cluster.local`).
    pub domain: String,
    /// The root namespace (mesh-wide policies).
    pub root_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
        }
    }
}

/// One valid Istio object.
#[derive(Debug, Clone, PartialEq)]
pub struct IstioObject {
    pub object: ConfigObject,
    /// `metadata.namespace`, else the namespace the files were given for.
    pub namespace: String,
    pub origin: Option<Origin>,
}

impl IstioObject {
    pub fn resource(&self) -> ResourceRef {
        ResourceRef::new(
            self.object.kind().as_str(),
            &self.namespace,
            self.object.name(),
        )
    }

    fn key(&self) -> (Kind, &str, &str) {
        (self.object.kind(), &self.namespace, self.object.name())
    }
}

/// A document that is not a valid object.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub resource: ResourceRef,
    pub origin: Option<Origin>,
    /// Every error with its field path, `; `-separated.
    pub error: String,
}

/// A Kubernetes Service.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeService {
    pub namespace: String,
    pub name: String,
    pub service: Service,
    pub origin: Option<Origin>,
}

/// A workload: a Pod, or (in files) the pod template of a Deployment and the like.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Workload {
    /// `Pod`, `Deployment`, …
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Whether it has the sidecar (an `istio-proxy` container or the injector's status
    /// annotation).
    pub injected: bool,
    /// The sidecar's image, when it has one.
    pub proxy_image: Option<String>,
    /// A Pod's `status.podIP` while it is Running (its metrics can be read).
    pub running_ip: Option<String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
    pub origin: Option<Origin>,
}

impl Workload {
    fn from_template(
        kind: &str,
        meta: &ObjectMeta,
        template: Option<&PodTemplateSpec>,
        default_ns: &str,
    ) -> Self {
        let empty = ObjectMeta::default();
        let template_meta = template.and_then(|t| t.metadata.as_ref()).unwrap_or(&empty);
        let mut workload = Self {
            kind: kind.to_string(),
            namespace: meta.namespace.clone().unwrap_or_else(|| default_ns.into()),
            name: meta.name.clone().unwrap_or_default(),
            labels: template_meta.labels.clone().unwrap_or_default(),
            annotations: template_meta.annotations.clone().unwrap_or_default(),
            ..Self::default()
        };
        workload.set_spec(template.and_then(|t| t.spec.as_ref()));
        workload
    }

    fn from_pod(pod: &Pod, default_ns: &str) -> Self {
        let meta = &pod.metadata;
        let mut workload = Self {
            kind: "Pod".into(),
            namespace: meta.namespace.clone().unwrap_or_else(|| default_ns.into()),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            ..Self::default()
        };
        workload.set_spec(pod.spec.as_ref());
        workload.running_ip = pod
            .status
            .as_ref()
            .filter(|s| s.phase.as_deref() == Some("Running"))
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty());
        workload
    }

    fn set_spec(&mut self, spec: Option<&k8s_openapi::api::core::v1::PodSpec>) {
        let proxy = spec.and_then(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == PROXY_CONTAINER)
        });
        self.injected = proxy.is_some() || self.annotations.contains_key(STATUS_ANNOTATION);
        self.proxy_image = proxy.and_then(|c| c.image.clone());
        self.service_account = spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".into());
    }
}

/// Everything the analyzers read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub settings: Settings,
    /// Whether the cluster was read (some checks need the live workloads).
    pub live: bool,
    pub objects: Vec<IstioObject>,
    pub invalid: Vec<Invalid>,
    pub services: Vec<KubeService>,
    pub workloads: Vec<Workload>,
    /// Namespace labels by name.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Snapshot {
    /// `files` laid over this snapshot: an object of the same kind, namespace and name
    /// replaces the cluster's, as `kubectl apply` would.
    pub fn overlay(mut self, files: Snapshot) -> Snapshot {
        // A file's document, valid or not, replaces the cluster's object of that name.
        let replaced: Vec<ResourceRef> = files
            .objects
            .iter()
            .map(IstioObject::resource)
            .chain(files.invalid.iter().map(|i| i.resource.clone()))
            .collect();
        self.invalid.retain(|i| !replaced.contains(&i.resource));
        self.objects.retain(|o| !replaced.contains(&o.resource()));
        for object in files.objects {
            self.objects.retain(|o| o.key() != object.key());
            self.objects.push(object);
        }
        for service in files.services {
            self.services
                .retain(|s| (&s.namespace, &s.name) != (&service.namespace, &service.name));
            self.services.push(service);
        }
        for workload in files.workloads {
            self.workloads.retain(|w| {
                (&w.kind, &w.namespace, &w.name)
                    != (&workload.kind, &workload.namespace, &workload.name)
            });
            self.workloads.push(workload);
        }
        self.invalid.extend(files.invalid);
        self.namespaces.extend(files.namespaces);
        self
    }
}

/// Why the input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list {what} at {cluster}: {reason}")]
    List {
        what: String,
        cluster: String,
        reason: String,
    },
    #[error("listing {what} at {cluster} did not finish within {}s (--timeout)", .after.as_secs_f64())]
    Timeout {
        what: String,
        cluster: String,
        after: Duration,
    },
}

/// The files of `paths`: files as given, directories recursively (`*.yaml`, `*.yml`,
/// `*.json`), sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    for path in paths {
        walk(path, true, &mut files)?;
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(path: &Path, given: bool, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let read = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read)? {
            walk(&entry.map_err(read)?.path(), false, out)?;
        }
    } else if given
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// A snapshot of the files under `paths`; objects that name no namespace are in
/// `default_ns`.
pub fn from_files(
    paths: &[PathBuf],
    default_ns: &str,
    settings: &Settings,
) -> Result<Snapshot, InputError> {
    let mut snapshot = Snapshot {
        settings: settings.clone(),
        ..Snapshot::default()
    };
    for file in collect_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| InputError::Read {
            path: file.clone(),
            source,
        })?;
        add_text(&mut snapshot, &text, Some(&file), default_ns);
    }
    Ok(snapshot)
}

/// Adds the documents of one (multi-document) YAML text; `file` names it in origins.
pub fn add_text(snapshot: &mut Snapshot, text: &str, file: Option<&Path>, default_ns: &str) {
    let documents = weft_api::parse_documents(text);
    let lines: Vec<&str> = text.lines().collect();
    for (i, document) in documents.iter().enumerate() {
        // The object's first line, after its `---` marker.
        let marker = lines
            .get(document.line.saturating_sub(1))
            .is_some_and(|line| line.starts_with("---"));
        let origin = file.map(|file| Origin {
            file: file.to_path_buf(),
            line: document.line + usize::from(marker),
        });
        match &document.result {
            Ok(object) => snapshot.objects.push(IstioObject {
                namespace: object.namespace().unwrap_or(default_ns).to_string(),
                object: object.clone(),
                origin,
            }),
            Err(DocumentError::Invalid {
                kind,
                name,
                namespace,
                errors,
            }) => snapshot.invalid.push(Invalid {
                resource: ResourceRef::new(
                    kind.as_deref().unwrap_or("document"),
                    namespace.as_deref().unwrap_or(default_ns),
                    &name
                        .clone()
                        .unwrap_or_else(|| format!("#{}", document.index)),
                ),
                origin,
                error: errors
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            Err(DocumentError::Unsupported { kind, .. }) => {
                let end = documents
                    .get(i + 1)
                    .map_or(lines.len(), |next| next.line.saturating_sub(1));
                let start = document.line.saturating_sub(1).min(end);
                let slice = lines[start..end].join("\n");
                add_kube_object(snapshot, kind, &slice, origin, default_ns);
            }
        }
    }
}

/// A Kubernetes object of a kind the analysis reads; other kinds are skipped.
fn add_kube_object(
    snapshot: &mut Snapshot,
    kind: &str,
    text: &str,
    origin: Option<Origin>,
    default_ns: &str,
) {
    /// The first document of `text` (a slice may end with an empty document).
    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
        use serde::Deserialize;
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
            if !value.is_null() {
                return serde_yaml::from_value(value).map_err(|e| e.to_string());
            }
        }
        Err("an empty document".into())
    }
    let result: Result<(), String> = (|| {
        match kind {
            "Service" => {
                let service: Service = parse(text)?;
                snapshot.services.push(KubeService {
                    namespace: service
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| default_ns.into()),
                    name: service.metadata.name.clone().unwrap_or_default(),
                    service,
                    origin: origin.clone(),
                });
            }
            "Pod" => {
                let pod: Pod = parse(text)?;
                let mut workload = Workload::from_pod(&pod, default_ns);
                workload.origin = origin.clone();
                snapshot.workloads.push(workload);
            }
            "Namespace" => {
                let namespace: Namespace = parse(text)?;
                snapshot.namespaces.insert(
                    namespace.metadata.name.unwrap_or_default(),
                    namespace.metadata.labels.unwrap_or_default(),
                );
            }
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
                let (meta, template) = match kind {
                    "Deployment" => {
                        let d: Deployment = parse(text)?;
                        (d.metadata, d.spec.map(|s| s.template))
                    }
                    "StatefulSet" => {
                        let d: StatefulSet = parse(text)?;
                        (d.metadata, d.spec.map(|s| s.template))
                    }
                    "DaemonSet" => {
                        let d: DaemonSet = parse(text)?;
                        (d.metadata, d.spec.map(|s| s.template))
                    }
                    _ => {
                        let d: ReplicaSet = parse(text)?;
                        (d.metadata, d.spec.and_then(|s| s.template))
                    }
                };
                let mut workload =
                    Workload::from_template(kind, &meta, template.as_ref(), default_ns);
                workload.origin = origin.clone();
                snapshot.workloads.push(workload);
            }
            _ => {}
        }
        Ok(())
    })();
    if let Err(error) = result {
        // Name it as well as the text allows.
        let meta = serde_yaml::from_str::<serde_yaml::Value>(text).ok();
        let field = |key: &str| {
            meta.as_ref()
                .and_then(|v| v.get("metadata"))
                .and_then(|m| m.get(key))
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_string)
        };
        snapshot.invalid.push(Invalid {
            resource: ResourceRef::new(
                kind,
                &field("namespace").unwrap_or_else(|| default_ns.into()),
                &field("name").unwrap_or_else(|| "?".into()),
            ),
            origin,
            error,
        });
    }
}

/// A snapshot of the cluster: every namespace (findings are filtered by namespace later;
/// a Gateway's workload is often in another namespace). A kind whose CRD is not
/// installed is skipped.
pub async fn from_cluster(
    api: &KubeApi,
    settings: &Settings,
    timeout: Duration,
) -> Result<Snapshot, InputError> {
    let client = api.client().clone();
    let mut snapshot = Snapshot {
        settings: settings.clone(),
        live: true,
        ..Snapshot::default()
    };
    let namespaces = list(
        api,
        "namespaces",
        timeout,
        Api::<Namespace>::all(client.clone()),
    )
    .await?;
    for namespace in namespaces.into_iter().flatten() {
        snapshot.namespaces.insert(
            namespace.metadata.name.unwrap_or_default(),
            namespace.metadata.labels.unwrap_or_default(),
        );
    }
    let services = list(
        api,
        "services",
        timeout,
        Api::<Service>::all(client.clone()),
    )
    .await?;
    for service in services.into_iter().flatten() {
        snapshot.services.push(KubeService {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
            service,
            origin: None,
        });
    }
    let pods = list(api, "pods", timeout, Api::<Pod>::all(client.clone())).await?;
    for pod in pods.into_iter().flatten() {
        snapshot.workloads.push(Workload::from_pod(&pod, "default"));
    }
    for kind in Kind::ALL {
        let version = kind.versions()[0];
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(kind.group(), version, kind.as_str()),
            plural(kind),
        );
        let what = format!("{}.{}", plural(kind), kind.group());
        let objects = list(
            api,
            &what,
            timeout,
            Api::<DynamicObject>::all_with(client.clone(), &resource),
        )
        .await?;
        for object in objects.into_iter().flatten() {
            add_dynamic(&mut snapshot, kind, version, object);
        }
    }
    Ok(snapshot)
}

/// Lists every object of one API; `None` when the API does not exist (404: the CRD is not
/// installed).
async fn list<K>(
    api: &KubeApi,
    what: &str,
    timeout: Duration,
    resource: Api<K>,
) -> Result<Option<Vec<K>>, InputError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let listed = tokio::time::timeout(timeout, resource.list(&ListParams::default()))
        .await
        .map_err(|_| InputError::Timeout {
            what: what.to_string(),
            cluster: api.cluster().to_string(),
            after: timeout,
        })?;
    match listed {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(InputError::List {
            what: what.to_string(),
            cluster: api.cluster().to_string(),
            reason: error.to_string(),
        }),
    }
}

/// One listed Istio object, parsed and validated as files are.
fn add_dynamic(snapshot: &mut Snapshot, kind: Kind, version: &str, mut object: DynamicObject) {
    object.metadata.managed_fields = None;
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let mut json = match serde_json::to_value(&object) {
        Ok(json) => json,
        Err(error) => {
            return snapshot.invalid.push(Invalid {
                resource: ResourceRef::new(kind.as_str(), &namespace, &name),
                origin: None,
                error: error.to_string(),
            });
        }
    };
    if let Some(map) = json.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            format!("{}/{version}", kind.group()).into(),
        );
        map.insert("kind".into(), kind.as_str().into());
    }
    let parsed = serde_yaml::to_value(&json)
        .map_err(|e| e.to_string())
        .and_then(|yaml| {
            weft_api::object::parse_value(yaml).map_err(|e| match e {
                DocumentError::Invalid { errors, .. } => errors
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            })
        });
    match parsed {
        Ok(object) => snapshot.objects.push(IstioObject {
            object,
            namespace,
            origin: None,
        }),
        Err(error) => snapshot.invalid.push(Invalid {
            resource: ResourceRef::new(kind.as_str(), &namespace, &name),
            origin: None,
            error,
        }),
    }
}
