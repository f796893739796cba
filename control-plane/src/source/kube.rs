//! Kubernetes source: kube-runtime reflectors for the service registry (Services,
//! EndpointSlices, Pods, Namespaces, Nodes) and the Istio kinds, debounced into one
//! [`Snapshot`].
//!
//! # RBAC
//!
//! The controller only reads. With `--watch-namespace NS` the namespaced rules may be a
//! Role in `NS` instead, but `namespaces` and `nodes` are cluster-scoped and always need a
//! ClusterRole (namespaces are watched with a `metadata.name=NS` field selector then).
//!
//! ```yaml
//! apiVersion: rbac.authorization.k8s.io/v1
//! kind: ClusterRole
//! metadata: {name: weft-controller}
//! rules:
//! - apiGroups: [""]
//!   resources: [services, pods, namespaces, nodes]
//!   verbs: [get, list, watch]
//! - apiGroups: [discovery.k8s.io]
//!   resources: [endpointslices]
//!   verbs: [get, list, watch]
//! - apiGroups: [networking.istio.io]
//!   resources: [virtualservices, destinationrules, serviceentries, workloadentries, workloadgroups, sidecars]
//!   verbs: [get, list, watch]
//! - apiGroups: [security.istio.io]
//!   resources: [authorizationpolicies, peerauthentications, requestauthentications]
//!   verbs: [get, list, watch]
//! - apiGroups: [telemetry.istio.io]
//!   resources: [telemetries]
//!   verbs: [get, list, watch]
//! - apiGroups: [ratelimit.weft.io]
//!   resources: [localratelimits]
//!   verbs: [get, list, watch]
//! ```
//!
//! Nothing else: the source writes nothing, updates no status, takes no lease, sends no
//! events. (Namespaces and Nodes are read as metadata only: `list`/`watch` with
//! `Accept: …;as=PartialObjectMetadata`, which needs the same verbs.)
//!
//! # Behaviour
//!
//! - Every watcher retries with kube-runtime's default backoff, so it survives API-server
//!   restarts and resumes from its last resourceVersion (relisting when that expired). A
//!   kind whose CRD is not installed logs a warning and keeps retrying; the controller
//!   serves without it (a kind answering 404 does not hold up startup or readiness).
//! - Startup waits up to [`SYNC_TIMEOUT`] for every watcher's initial list. Until all of
//!   them are done, each snapshot names the missing ones in [`Snapshot::unsynced`], which
//!   keeps the controller's `/ready` at 503.
//! - Objects are cached without `metadata.managedFields` and the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation; Namespaces keep their
//!   metadata only (labels are all the model needs), Nodes their labels (the topology
//!   labels give their pods' locality), Pods their metadata, `spec.serviceAccountName`
//!   (their mTLS identity) and `spec.nodeName` (their locality).
//! - Istio objects go through the same parse and validation as local mode
//!   ([`weft_api::object::parse_value`]). An invalid object is logged once per
//!   resourceVersion with every `field.path: reason`, shown at `/debug/configz`, and its
//!   last good version (if any) stays in the model, marked stale.
//! - Changes are debounced (`--debounce`, at most [`MAX_DEBOUNCE`]) into one snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use weft_api::{ConfigObject, DocumentError};

use super::registry::{self, Registry};
use super::{ConfigSet, Snapshot, SourcedObject};
use crate::object::ObjectKey;

/// Changes arriving closer together than `--debounce` are merged, but a snapshot is
/// published at least this often while changes keep coming (Istio's `PILOT_DEBOUNCE_MAX`).
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(10);

/// How long startup waits for every watcher's first list before serving what it has.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The annotation `kubectl apply` writes: large, and never read here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One Istio kind the source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IstioKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl IstioKind {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The API path of one object (`/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`).
    pub fn path(&self, namespace: &str, name: &str) -> String {
        format!(
            "/apis/{}/{}/namespaces/{namespace}/{}/{name}",
            self.group, self.version, self.plural
        )
    }
}

/// The Istio kinds watched (`v1` of each group), and Weft's LocalRateLimit (`v1alpha1`).
/// Gateways and WorkloadGroups are watched so they are validated, shown at `/debug/configz`
/// and reported as not supported yet, never ignored in silence.
pub const ISTIO_KINDS: &[IstioKind] = &[
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "VirtualService",
        plural: "virtualservices",
    },
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "DestinationRule",
        plural: "destinationrules",
    },
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "ServiceEntry",
        plural: "serviceentries",
    },
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "WorkloadEntry",
        plural: "workloadentries",
    },
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "WorkloadGroup",
        plural: "workloadgroups",
    },
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "Gateway",
        plural: "gateways",
    },
    IstioKind {
        group: "networking.istio.io",
        version: "v1",
        kind: "Sidecar",
        plural: "sidecars",
    },
    IstioKind {
        group: "security.istio.io",
        version: "v1",
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
    },
    IstioKind {
        group: "security.istio.io",
        version: "v1",
        kind: "PeerAuthentication",
        plural: "peerauthentications",
    },
    IstioKind {
        group: "security.istio.io",
        version: "v1",
        kind: "RequestAuthentication",
        plural: "requestauthentications",
    },
    IstioKind {
        group: "telemetry.istio.io",
        version: "v1",
        kind: "Telemetry",
        plural: "telemetries",
    },
    IstioKind {
        group: "ratelimit.weft.io",
        version: "v1alpha1",
        kind: "LocalRateLimit",
        plural: "localratelimits",
    },
];

/// Parses a Kubernetes object with weft-api (the same parse and validation as local
/// mode). `api_version`/`kind` fill in what the object does not carry itself (list items
/// may omit them); `namespace` fills an absent `metadata.namespace`.
pub fn parse_object(
    object: &DynamicObject,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<ConfigObject, DocumentError> {
    let mut json = match serde_json::to_value(object) {
        Ok(json) => json,
        Err(err) => {
            return Err(DocumentError::Invalid {
                kind: Some(kind.to_string()),
                name: object.metadata.name.clone(),
                namespace: object.metadata.namespace.clone(),
                errors: weft_api::FieldError::new("", format!("cannot serialize: {err}")).into(),
            });
        }
    };
    if let Some(map) = json.as_object_mut() {
        if !map.get("apiVersion").is_some_and(|v| v.is_string()) {
            map.insert("apiVersion".into(), api_version.into());
        }
        if !map.get("kind").is_some_and(|v| v.is_string()) {
            map.insert("kind".into(), kind.into());
        }
        if let Some(namespace) = namespace
            && let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut())
            && !meta.get("namespace").is_some_and(|v| v.is_string())
        {
            meta.insert("namespace".into(), namespace.into());
        }
    }
    let yaml = match serde_yaml::to_value(&json) {
        Ok(yaml) => yaml,
        Err(err) => {
            return Err(DocumentError::Invalid {
                kind: Some(kind.to_string()),
                name: object.metadata.name.clone(),
                namespace: object.metadata.namespace.clone(),
                errors: weft_api::FieldError::new("", format!("cannot convert: {err}")).into(),
            });
        }
    };
    weft_api::object::parse_value(yaml)
}

/// The error lines of a document error: `field.path: reason` each.
pub fn error_lines(error: &DocumentError) -> Vec<String> {
    match error {
        DocumentError::Unsupported { api_version, kind } => {
            vec![format!("kind {kind} of {api_version} is not supported")]
        }
        DocumentError::Invalid { errors, .. } if errors.0.is_empty() => vec!["invalid".into()],
        DocumentError::Invalid { errors, .. } => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// The Istio objects seen so far: parse results by key and resourceVersion (each version is
/// parsed and logged once), and the last good version of each object.
#[derive(Debug, Default)]
pub struct IstioObjects {
    entries: HashMap<ObjectKey, Entry>,
}

#[derive(Debug)]
struct Entry {
    version: Option<String>,
    uid: Option<String>,
    path: String,
    parsed: Result<ConfigObject, Vec<String>>,
    last_good: Option<ConfigObject>,
}

impl IstioObjects {
    /// Takes the objects now in the stores and returns the config set: valid objects,
    /// errors of invalid ones (by API path), and the last good version of invalid ones.
    pub fn update<'a>(
        &mut self,
        objects: impl IntoIterator<Item = (&'a IstioKind, &'a DynamicObject)>,
    ) -> ConfigSet {
        let mut seen = BTreeSet::new();
        for (kind, object) in objects {
            let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
            let name = object.metadata.name.as_deref().unwrap_or_default();
            let key = ObjectKey::new(kind.kind, Some(namespace), name);
            let version = object.metadata.resource_version.clone();
            let uid = object.metadata.uid.clone();
            seen.insert(key.clone());
            if let Some(entry) = self.entries.get(&key)
                && entry.version == version
                && version.is_some()
            {
                continue;
            }
            let parsed = parse_object(object, &kind.api_version(), kind.kind, Some(namespace))
                .map_err(|err| error_lines(&err));
            let previous = self.entries.remove(&key);
            // A deleted and re-created object does not inherit the old one's good version.
            let mut last_good = previous
                .as_ref()
                .filter(|entry| entry.uid == uid)
                .and_then(|entry| entry.last_good.clone());
            match &parsed {
                Ok(object) => {
                    if previous.as_ref().is_some_and(|entry| entry.parsed.is_err()) {
                        info!(object = %key, "Istio object is valid again");
                    }
                    last_good = Some(object.clone());
                }
                Err(lines) => {
                    for line in lines {
                        error!(object = %key, "invalid Istio object: {line}");
                    }
                    if last_good.is_some() {
                        warn!(object = %key, "keeping the previous good version of the invalid object");
                    }
                }
            }
            self.entries.insert(
                key.clone(),
                Entry {
                    version,
                    uid,
                    path: kind.path(namespace, name),
                    parsed,
                    last_good,
                },
            );
        }
        self.entries.retain(|key, _| seen.contains(key));

        let mut set = ConfigSet::default();
        for (key, entry) in &self.entries {
            let sourced = |object: &ConfigObject, stale| SourcedObject {
                object: object.clone(),
                file: PathBuf::from(&entry.path),
                index: 0,
                stale,
            };
            match &entry.parsed {
                Ok(object) => {
                    set.objects.insert(key.clone(), sourced(object, false));
                }
                Err(lines) => {
                    let mut shown: Vec<String> =
                        lines.iter().map(|line| format!("{key}: {line}")).collect();
                    if let Some(good) = &entry.last_good {
                        shown.push(format!("{key}: keeping the previous good version"));
                        set.objects.insert(key.clone(), sourced(good, true));
                    }
                    set.errors.insert(entry.path.clone(), shown);
                }
            }
        }
        set
    }
}

/// What the watchers report to the snapshot task.
#[derive(Debug)]
enum Signal {
    /// The store of this resource changed (or finished its first list, `synced`).
    Changed {
        resource: &'static str,
        synced: bool,
    },
    /// The watch failed; it retries with backoff.
    Failed {
        resource: &'static str,
        error: String,
    },
}

/// Removes what is never read from a cached object.
fn strip<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Keeps only what labels-only objects need: name, namespace, labels, resourceVersion, uid.
fn strip_to_labels<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

/// Keeps of a Pod what the registry reads: the metadata [`strip_to_labels`] keeps,
/// `spec.serviceAccountName` (its mTLS identity) and `spec.nodeName` (its locality).
/// Containers, volumes and status are dropped as they arrive, so a cache of pods stays small.
fn strip_pod(pod: &mut Pod) {
    strip_to_labels(pod);
    let spec = pod.spec.as_mut();
    let (service_account_name, node_name) = spec
        .map(|spec| (spec.service_account_name.take(), spec.node_name.take()))
        .unwrap_or_default();
    pod.spec = Some(PodSpec {
        service_account_name,
        node_name,
        ..PodSpec::default()
    });
    pod.status = None;
}

/// A reflected watch of one resource, as signals.
fn reflect<K>(
    resource: &'static str,
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    modify: fn(&mut K),
) -> BoxStream<'static, Signal>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    watcher(api, config)
        .default_backoff()
        .modify(modify)
        .reflect(writer)
        .filter_map(move |event| {
            future::ready(match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(Signal::Changed {
                    resource,
                    synced: false,
                }),
                Ok(watcher::Event::InitDone) => Some(Signal::Changed {
                    resource,
                    synced: true,
                }),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
                Err(err) => Some(Signal::Failed {
                    resource,
                    error: err.to_string(),
                }),
            })
        })
        .boxed()
}

/// The reflector stores the snapshot is built from.
#[derive(Clone)]
struct Stores {
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    nodes: Store<PartialObjectMeta<Node>>,
    istio: Vec<(IstioKind, Store<DynamicObject>)>,
}

impl Stores {
    fn registry(&self) -> Registry {
        let mut registry = Registry {
            services: self.services.state(),
            endpoint_slices: self.endpoint_slices.state(),
            pods: self
                .pods
                .state()
                .iter()
                .map(|pod| {
                    (
                        (pod.namespace().unwrap_or_default(), pod.name_any()),
                        registry::Pod {
                            labels: pod.labels().clone(),
                            service_account: pod
                                .spec
                                .as_ref()
                                .and_then(|spec| spec.service_account_name.clone()),
                            node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
                        },
                    )
                })
                .collect(),
            namespaces: self
                .namespaces
                .state()
                .iter()
                .map(|ns| (ns.name_any(), ns.labels().clone()))
                .collect(),
            nodes: self
                .nodes
                .state()
                .iter()
                .map(|node| (node.name_any(), node.labels().clone()))
                .collect(),
        };
        registry.sort();
        registry
    }

    fn snapshot(&self, istio: &mut IstioObjects, lists: &InitialLists) -> Snapshot {
        let objects: Vec<(IstioKind, Arc<DynamicObject>)> = self
            .istio
            .iter()
            .flat_map(|(kind, store)| store.state().into_iter().map(|object| (*kind, object)))
            .collect();
        let config = istio.update(objects.iter().map(|(kind, object)| (kind, &**object)));
        Snapshot {
            config: Arc::new(config),
            registry: Some(Arc::new(self.registry())),
            unsynced: lists.pending(),
            seen_at: Default::default(),
        }
    }
}

/// The resources whose initial list is not done yet. A resource leaves the set when its
/// watcher reports `InitDone`, or when it answers "not found" (a CRD that is not
/// installed: there is nothing to wait for). Never grows back: relists after a watch
/// error do not make the source unsynced again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InitialLists {
    pending: BTreeSet<&'static str>,
}

impl InitialLists {
    fn new(resources: BTreeSet<&'static str>) -> Self {
        Self { pending: resources }
    }

    /// Takes one signal into account; true when the set changed.
    fn note(&mut self, signal: &Signal) -> bool {
        match signal {
            Signal::Changed {
                resource,
                synced: true,
            } => self.pending.remove(resource),
            Signal::Failed { resource, error } if is_not_found(error) => {
                self.pending.remove(resource)
            }
            _ => false,
        }
    }

    fn done(&self) -> bool {
        self.pending.is_empty()
    }

    fn pending(&self) -> Vec<String> {
        self.pending.iter().map(ToString::to_string).collect()
    }
}

/// A running Kubernetes source: the latest snapshot and the task that watches.
#[derive(Debug)]
pub struct KubeSource {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub task: JoinHandle<()>,
}

impl KubeSource {
    /// Starts every watcher (in the current Tokio runtime) and returns at once. The first
    /// snapshot is published when every watcher has listed once, or after [`SYNC_TIMEOUT`]
    /// with what is there (the watchers keep retrying). Until then the receiver holds an
    /// empty snapshot; until every resource is listed, snapshots name the missing ones in
    /// [`Snapshot::unsynced`].
    pub fn start(client: Client, namespace: Option<String>, debounce: Duration) -> Self {
        let mut streams: SelectAll<BoxStream<'static, Signal>> = SelectAll::new();
        let config = watcher::Config::default();

        let (services, writer) = kube::runtime::reflector::store();
        streams.push(reflect(
            "services",
            namespaced_api::<Service>(&client, namespace.as_deref()),
            config.clone(),
            writer,
            strip,
        ));
        let (endpoint_slices, writer) = kube::runtime::reflector::store();
        streams.push(reflect(
            "endpointslices",
            namespaced_api::<EndpointSlice>(&client, namespace.as_deref()),
            config.clone(),
            writer,
            strip,
        ));
        let (pods, writer) = kube::runtime::reflector::store();
        streams.push(reflect(
            "pods",
            namespaced_api::<Pod>(&client, namespace.as_deref()),
            config.clone(),
            writer,
            strip_pod,
        ));
        let (namespaces, writer) = kube::runtime::reflector::store();
        let namespace_config = match &namespace {
            Some(name) => config.clone().fields(&format!("metadata.name={name}")),
            None => config.clone(),
        };
        streams.push(reflect(
            "namespaces",
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            namespace_config,
            writer,
            strip_to_labels,
        ));
        let (nodes, writer) = kube::runtime::reflector::store();
        streams.push(reflect(
            "nodes",
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            config.clone(),
            writer,
            strip_to_labels,
        ));
        let mut istio = Vec::new();
        for kind in ISTIO_KINDS {
            let resource = kind.api_resource();
            let writer = Writer::<DynamicObject>::new(resource.clone());
            istio.push((*kind, writer.as_reader()));
            let api = match &namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            streams.push(reflect(kind.plural, api, config.clone(), writer, strip));
        }
        let stores = Stores {
            services,
            endpoint_slices,
            pods,
            namespaces,
            nodes,
            istio,
        };
        let resources: BTreeSet<&'static str> =
            ["services", "endpointslices", "pods", "namespaces", "nodes"]
                .into_iter()
                .chain(ISTIO_KINDS.iter().map(|kind| kind.plural))
                .collect();

        let (tx, rx) = watch::channel(Arc::new(Snapshot {
            config: Arc::default(),
            registry: Some(Arc::default()),
            unsynced: resources.iter().map(ToString::to_string).collect(),
            seen_at: Default::default(),
        }));
        let timing = Timing {
            sync_timeout: SYNC_TIMEOUT,
            debounce,
        };
        let task = tokio::spawn(run(streams, stores, resources, timing, tx));
        Self { snapshot: rx, task }
    }
}

fn namespaced_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Logs watch failures once per distinct error, and recoveries.
#[derive(Default)]
struct Health {
    failing: BTreeMap<&'static str, String>,
}

impl Health {
    fn note(&mut self, signal: &Signal) {
        match signal {
            Signal::Changed { resource, .. } => {
                if self.failing.remove(resource).is_some() {
                    info!(resource, "watch recovered");
                }
            }
            Signal::Failed { resource, error } => {
                if self.failing.get(resource) == Some(error) {
                    debug!(resource, error = %error, "watch still failing; retrying with backoff");
                } else {
                    let hint = if is_not_found(error) {
                        " (is the CRD installed?)"
                    } else if error.contains("403") || error.contains("forbidden") {
                        " (check the controller's RBAC)"
                    } else {
                        ""
                    };
                    warn!(resource, error = %error, "watch failed{hint}; retrying with backoff");
                    self.failing.insert(resource, error.clone());
                }
            }
        }
    }
}

/// How long the snapshot task waits: for the first lists, and for quiet after a change.
#[derive(Debug, Clone, Copy)]
struct Timing {
    sync_timeout: Duration,
    debounce: Duration,
}

async fn run(
    mut streams: SelectAll<BoxStream<'static, Signal>>,
    stores: Stores,
    resources: BTreeSet<&'static str>,
    timing: Timing,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    let mut health = Health::default();
    let mut istio = IstioObjects::default();
    // A CRD that is not installed does not hold up the sync: serve without it, keep retrying.
    let mut lists = InitialLists::new(resources);

    // First list of every watcher, or the timeout.
    let deadline = tokio::time::Instant::now() + timing.sync_timeout;
    while !lists.done() {
        match tokio::time::timeout_at(deadline, streams.next()).await {
            Ok(Some(signal)) => {
                health.note(&signal);
                lists.note(&signal);
            }
            Ok(None) => break,
            Err(_) => {
                warn!(
                    resources = ?lists.pending,
                    "not listed after {:?}; serving without them, retrying, and not ready until they are listed",
                    timing.sync_timeout
                );
                break;
            }
        }
    }
    let snapshot = stores.snapshot(&mut istio, &lists);
    if lists.done() {
        log_snapshot(&snapshot, "Kubernetes resources synced");
    } else {
        log_snapshot(&snapshot, "serving a partial Kubernetes snapshot");
    }
    tx.send_replace(Arc::new(snapshot));

    loop {
        let signal = tokio::select! {
            signal = streams.next() => signal,
            () = tx.closed() => return,
        };
        let Some(signal) = signal else {
            error!("every Kubernetes watch ended; no more updates");
            return;
        };
        // The batch's first event: its push converges from here.
        let seen_at = std::time::Instant::now();
        health.note(&signal);
        let was_synced = lists.done();
        let mut changed = lists.note(&signal) || matches!(signal, Signal::Changed { .. });
        // Debounce: wait for a quiet period, at most MAX_DEBOUNCE.
        let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
        loop {
            let quiet = (tokio::time::Instant::now() + timing.debounce).min(deadline);
            match tokio::time::timeout_at(quiet, streams.next()).await {
                Ok(Some(signal)) => {
                    health.note(&signal);
                    changed |= lists.note(&signal) || matches!(signal, Signal::Changed { .. });
                }
                Ok(None) | Err(_) => break,
            }
        }
        if !changed {
            continue;
        }
        let mut snapshot = stores.snapshot(&mut istio, &lists);
        snapshot.seen_at = super::SeenAt(Some(seen_at));
        if **tx.borrow() != snapshot {
            if lists.done() && !was_synced {
                log_snapshot(&snapshot, "Kubernetes resources synced");
            } else {
                log_snapshot(&snapshot, "Kubernetes resources changed");
            }
            tx.send_replace(Arc::new(snapshot));
        }
    }
}

/// Whether a watch error says the resource does not exist (its CRD is not installed).
fn is_not_found(error: &str) -> bool {
    error.contains("404") || error.contains("NotFound") || error.contains("not found")
}

fn log_snapshot(snapshot: &Snapshot, message: &str) {
    let registry = snapshot.registry.as_deref().cloned().unwrap_or_default();
    info!(
        services = registry.services.len(),
        endpoint_slices = registry.endpoint_slices.len(),
        pods = registry.pods.len(),
        namespaces = registry.namespaces.len(),
        nodes = registry.nodes.len(),
        istio_objects = snapshot.config.objects.len(),
        invalid_istio_objects = snapshot.config.errors.len(),
        "{message}"
    );
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
