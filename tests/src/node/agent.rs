//! The test node's agent: the kubelet's loop for the pods of one Node on a real API server.
//!
//! ```text
//!  every 200 ms: list pods ─► unscheduled: bind to this Node (pods/binding)
//!                          ─► ours, new: network namespace (net.rs) ─► init containers one
//!                             at a time, each to completion ─► containers (spec.rs) started
//!                             in it ─► readiness probes ─► status: Running, podIP, Ready
//!                          ─► ours, a container exited: restarted (restartCount + 1)
//!                          ─► ours, deleted: SIGTERM, up to terminationGracePeriodSeconds,
//!                             SIGKILL, namespace removed, the Pod object deleted
//! ```
//!
//! So far: init containers (a failed one runs again, without the kubelet's back-off, unless
//! `restartPolicy: Never`); native sidecars (init containers with `restartPolicy: Always`:
//! the next container waits for their startup probe, they keep running and are stopped when
//! the pod's containers are done); containers with readiness probes (HTTP, TCP, exec:
//! [`super::probe`]; a container without one is ready once started, as with the kubelet) and
//! `restartPolicy` Always/OnFailure/Never, so a Job's pod Succeeds or Fails. No liveness
//! probes or volumes yet. A container that cannot start is reported as waiting with the
//! kubelet's reason. Dropping the agent stops its loop, kills its processes and removes their
//! namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::net::{Network, PodNet};
use super::probe::Prober;
use super::spec::{ImageTable, Objects, PodFields, StartError, launch};

/// The name of the test node.
pub const NODE_NAME: &str = "weft-test-node";

/// The network namespace of each pod the agent runs, by (namespace, name).
type Namespaces = Arc<parking_lot::Mutex<BTreeMap<(String, String), String>>>;

/// A running agent; stops (and cleans up) when dropped.
pub struct NodeAgent {
    task: tokio::task::JoinHandle<()>,
    namespaces: Namespaces,
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // Aborting drops the loop's state: its pods' processes are killed and their namespaces
        // removed by their own `Drop`s.
        self.task.abort();
    }
}

impl NodeAgent {
    /// Registers the Node and starts the loop on the current Tokio runtime.
    pub async fn start(client: kube::Client, network: Arc<Network>, images: ImageTable) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
        }))
        .expect("node object");
        if let Err(e) = nodes.create(&PostParams::default(), &node).await {
            assert!(
                matches!(&e, kube::Error::Api(s) if s.code == 409),
                "creating Node {NODE_NAME}: {e}"
            );
        }
        let ready = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "weft test node agent"}],
            "addresses": [{"type": "InternalIP", "address": network.gateway().to_string()}],
        }});
        nodes
            .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&ready))
            .await
            .expect("marking the test Node ready");
        let namespaces = Namespaces::default();
        let task = tokio::spawn(run(client, network, images, namespaces.clone()));
        Self { task, namespaces }
    }

    /// The network namespace the pod `namespace/name` runs in, while it runs here: for a
    /// test to act from inside the pod (`ip netns exec <it> …`).
    pub fn netns(&self, namespace: &str, name: &str) -> Option<String> {
        self.namespaces
            .lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// A pod this node runs.
struct Running {
    uid: String,
    fields: PodFields,
    objects: Objects,
    net: PodNet,
    /// Init containers, run one at a time, each to completion, before `containers`.
    init: Vec<Container>,
    containers: Vec<Container>,
    /// When deletion began (SIGTERM sent).
    terminating: Option<Instant>,
    /// Every container exited for good (restartPolicy Never/OnFailure): succeeded or not.
    finished: Option<bool>,
    /// The status last written, to write only changes.
    written: Option<serde_json::Value>,
}

struct Container {
    name: String,
    /// A native sidecar: an init container with `restartPolicy: Always`, kept running.
    sidecar: bool,
    /// An init container that exited 0, or a sidecar whose startup probe passed.
    completed: bool,
    /// A container's exit code once it exited for good (not to be restarted).
    exit_code: Option<i32>,
    /// A sidecar's startup probe.
    startup: Option<Prober>,
    /// The exit code of its last run, when it failed.
    last_failure: Option<i32>,
    /// Its readiness probe, when the spec declares one.
    readiness: Option<Prober>,
    process: Option<Child>,
    restarts: i32,
    waiting: Option<StartError>,
    started_at: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn run(
    client: kube::Client,
    network: Arc<Network>,
    images: ImageTable,
    namespaces: Namespaces,
) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut running: BTreeMap<(String, String), Running> = BTreeMap::new();
    loop {
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                for pod in &list.items {
                    sync(&client, &network, &images, pod, &mut running).await;
                }
                // Pods gone from the API server entirely: stop what is left of them.
                let listed: BTreeSet<(String, String)> =
                    list.items.iter().map(|p| (namespace(p), name(p))).collect();
                running.retain(|key, _| listed.contains(key));
                *namespaces.lock() = running
                    .iter()
                    .map(|(key, r)| (key.clone(), r.net.netns.clone()))
                    .collect();
            }
            Err(e) => eprintln!("node agent: listing pods: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn namespace(pod: &Pod) -> String {
    pod.metadata.namespace.clone().unwrap_or_default()
}

async fn sync(
    client: &kube::Client,
    network: &Network,
    images: &ImageTable,
    pod: &Pod,
    running: &mut BTreeMap<(String, String), Running>,
) {
    let (ns, pod_name) = (namespace(pod), name(pod));
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let spec = pod.spec.clone().unwrap_or_default();
    let key = (ns.clone(), pod_name.clone());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    // A pod recreated under the same name is another pod.
    if running.get(&key).is_some_and(|r| r.uid != uid) {
        running.remove(&key);
    }

    match spec.node_name.as_deref() {
        None if pod.metadata.deletion_timestamp.is_none() => {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod_name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
            });
            if let Err(e) = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &pod_name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                eprintln!("node agent: binding {ns}/{pod_name}: {e}");
            }
            return;
        }
        Some(NODE_NAME) => {}
        _ => return,
    }

    if pod.metadata.deletion_timestamp.is_some() {
        let grace = Duration::from_secs(
            u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30)).unwrap_or(30),
        );
        let done = match running.get_mut(&key) {
            None => true,
            Some(r) => {
                let since = *r.terminating.get_or_insert_with(|| {
                    for c in &r.containers {
                        if let Some(child) = &c.process {
                            signal("TERM", child.id());
                        }
                    }
                    Instant::now()
                });
                let all_exited = r.containers.iter_mut().all(|c| {
                    c.process
                        .as_mut()
                        .is_none_or(|p| p.try_wait().ok().flatten().is_some())
                });
                all_exited || since.elapsed() >= grace
            }
        };
        if done {
            // Dropping kills what is left (SIGKILL) and removes the namespace.
            running.remove(&key);
            let _ = api
                .delete(
                    &pod_name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
        return;
    }

    if !running.contains_key(&key) {
        let net = match network.add_pod(&pod_name) {
            Ok(net) => net,
            Err(e) => {
                eprintln!("node agent: network for {ns}/{pod_name}: {e}");
                return;
            }
        };
        let fields = PodFields {
            name: pod_name.clone(),
            namespace: ns.clone(),
            uid: uid.clone(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            node_name: NODE_NAME.to_string(),
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            pod_ip: net.ip.to_string(),
            host_ip: network.gateway().to_string(),
        };
        let objects = objects(client, &ns).await;
        let new = |c: &k8s_openapi::api::core::v1::Container| Container {
            name: c.name.clone(),
            sidecar: c.restart_policy.as_deref() == Some("Always"),
            completed: false,
            exit_code: None,
            startup: None,
            last_failure: None,
            readiness: None,
            process: None,
            restarts: 0,
            waiting: None,
            started_at: String::new(),
        };
        let init = spec.init_containers.iter().flatten().map(new).collect();
        let containers = spec.containers.iter().map(new).collect();
        running.insert(
            key.clone(),
            Running {
                uid,
                fields,
                objects,
                net,
                init,
                containers,
                terminating: None,
                finished: None,
                written: None,
            },
        );
    }
    let Some(r) = running.get_mut(&key) else {
        return;
    };
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    // Init containers in order, each to completion; a failed one runs again unless the
    // pod's restartPolicy is Never. A native sidecar is started in its turn, the next one
    // waits for its startup probe, and it keeps running (restarted if it exits).
    let mut initialized = true;
    for (c, spec_container) in r.init.iter_mut().zip(spec.init_containers.iter().flatten()) {
        if c.sidecar {
            let exited = c
                .process
                .as_mut()
                .is_some_and(|p| p.try_wait().ok().flatten().is_some());
            if exited {
                c.process = None;
                c.restarts += 1;
            }
            if c.process.is_none() && r.finished.is_none() {
                start(c, spec_container, &r.fields, &r.objects, &r.net, images);
                c.startup = spec_container
                    .startup_probe
                    .clone()
                    .map(|p| Prober::new(p, tokio::time::Instant::now()));
            }
            if !c.completed {
                let ports = spec_container.ports.as_deref().unwrap_or_default();
                if let Some(prober) = &mut c.startup {
                    prober.tick(r.net.ip, &r.net.netns, ports).await;
                }
                if c.process.is_some() && c.startup.as_ref().is_none_or(Prober::passing) {
                    c.completed = true;
                } else {
                    initialized = false;
                    break;
                }
            }
            continue;
        }
        if c.completed {
            continue;
        }
        initialized = false;
        if let Some(exit) = c.process.as_mut().and_then(|p| p.try_wait().ok().flatten()) {
            c.process = None;
            if exit.success() {
                c.completed = true;
                c.last_failure = None;
                initialized = true;
                continue;
            }
            c.last_failure = Some(exit.code().unwrap_or(-1));
            if restart_policy == "Never" {
                break;
            }
            c.restarts += 1;
        }
        if c.process.is_none() {
            start(c, spec_container, &r.fields, &r.objects, &r.net, images);
        }
        break;
    }
    if initialized && r.finished.is_none() {
        // Main containers: started once initialized. One that exits starts again under
        // restartPolicy Always, or OnFailure when it failed; else it is done.
        for (c, spec_container) in r.containers.iter_mut().zip(&spec.containers) {
            if c.exit_code.is_some() {
                continue;
            }
            let exit = c.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            if let Some(exit) = exit {
                c.process = None;
                let code = exit.code().unwrap_or(-1);
                let again = match restart_policy {
                    "Always" => true,
                    "OnFailure" => code != 0,
                    _ => false,
                };
                if again {
                    c.restarts += 1;
                    start(c, spec_container, &r.fields, &r.objects, &r.net, images);
                } else {
                    c.exit_code = Some(code);
                }
            } else if c.process.is_none() && c.started_at.is_empty() && c.waiting.is_none() {
                start(c, spec_container, &r.fields, &r.objects, &r.net, images);
            }
            if let Some(prober) = &mut c.readiness
                && c.process.is_some()
            {
                let ports = spec_container.ports.as_deref().unwrap_or_default();
                prober.tick(r.net.ip, &r.net.netns, ports).await;
            }
        }
        // Every container done for good (a Job's pod): the pod has succeeded or failed, and
        // its sidecars are stopped.
        if !r.containers.is_empty() && r.containers.iter().all(|c| c.exit_code.is_some()) {
            r.finished = Some(r.containers.iter().all(|c| c.exit_code == Some(0)));
            for c in &mut r.init {
                if let Some(mut child) = c.process.take() {
                    signal("TERM", child.id());
                    tokio::task::spawn_blocking(move || child.wait());
                }
            }
        }
    }
    let status = status(r, network);
    if r.written.as_ref() != Some(&status) {
        match api
            .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => r.written = Some(status),
            Err(e) => eprintln!("node agent: status of {ns}/{pod_name}: {e}"),
        }
    }
}

/// The pod's status as the kubelet writes it.
fn status(r: &Running, network: &Network) -> serde_json::Value {
    let initialized = r.init.iter().all(|c| c.completed);
    let all_running = initialized
        && r.containers
            .iter()
            .all(|c| c.process.is_some() && c.waiting.is_none());
    let container_ready = |c: &Container| {
        c.process.is_some()
            && c.waiting.is_none()
            && c.readiness.as_ref().is_none_or(Prober::passing)
    };
    let ready = if all_running && r.containers.iter().all(container_ready) {
        "True"
    } else {
        "False"
    };
    let state = |c: &Container| {
        if let Some(e) = &c.waiting {
            json!({"waiting": {"reason": e.reason, "message": e.message}})
        } else if let Some(code) = c.exit_code {
            let reason = if code == 0 { "Completed" } else { "Error" };
            json!({"terminated": {"exitCode": code, "reason": reason}})
        } else if c.process.is_some() {
            json!({"running": {"startedAt": c.started_at}})
        } else if c.completed && !c.sidecar {
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}})
        } else if let Some(code) = c.last_failure {
            json!({"waiting": {"reason": "CrashLoopBackOff",
                               "message": format!("last run exited with {code}")}})
        } else {
            json!({"waiting": {"reason": "PodInitializing"}})
        }
    };
    let statuses = |list: &[Container]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|c| {
                json!({"name": c.name, "ready": container_ready(c) || c.completed,
                       "started": c.process.is_some(), "restartCount": c.restarts,
                       "state": state(c), "image": "", "imageID": ""})
            })
            .collect()
    };
    json!({"status": {
        "phase": match r.finished {
            Some(true) => "Succeeded",
            Some(false) => "Failed",
            None if all_running => "Running",
            None => "Pending",
        },
        "podIP": r.net.ip.to_string(),
        "podIPs": [{"ip": r.net.ip.to_string()}],
        "hostIP": network.gateway().to_string(),
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            if initialized {
                json!({"type": "Initialized", "status": "True"})
            } else {
                json!({"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"})
            },
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ],
        "initContainerStatuses": statuses(&r.init),
        "containerStatuses": statuses(&r.containers),
    }})
}

/// Starts (or restarts) `c` from its spec; a container that cannot start is left waiting
/// with the kubelet's reason.
fn start(
    c: &mut Container,
    spec: &k8s_openapi::api::core::v1::Container,
    fields: &PodFields,
    objects: &Objects,
    net: &PodNet,
    images: &ImageTable,
) {
    match launch(spec, fields, objects, images).and_then(|l| spawn(net, &l)) {
        Ok(child) => {
            c.process = Some(child);
            c.waiting = None;
            c.started_at = now();
            c.readiness = spec
                .readiness_probe
                .clone()
                .map(|p| Prober::new(p, tokio::time::Instant::now()));
        }
        Err(e) => c.waiting = Some(e),
    }
}

fn spawn(net: &PodNet, launch: &super::spec::Launch) -> Result<Child, StartError> {
    net.command(&launch.program)
        .args(&launch.args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| StartError {
            reason: "RunContainerError",
            message: format!("starting {}: {e}", launch.program.display()),
        })
}

/// Sends a signal with `kill(1)` (the workspace forbids `unsafe`, so no direct `kill(2)`).
fn signal(name: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// RFC 3339 UTC, whole seconds, as status timestamps are written.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The namespace's ConfigMaps and Secrets, for the containers' environment.
async fn objects(client: &kube::Client, namespace: &str) -> Objects {
    let mut objects = Objects::default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = config_maps.list(&ListParams::default()).await {
        for cm in list.items {
            objects.config_maps.insert(
                cm.metadata.name.unwrap_or_default(),
                cm.data.unwrap_or_default(),
            );
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = secrets.list(&ListParams::default()).await {
        for secret in list.items {
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            objects
                .secrets
                .insert(secret.metadata.name.unwrap_or_default(), data);
        }
    }
    objects
}
