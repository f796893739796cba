//! The test node's agent: the kubelet's loop for the pods of one Node on a real API server.
//!
//! ```text
//!  every 200 ms: list pods ─► unscheduled: bind to this Node (pods/binding)
//!                          ─► ours, new: network namespace (net.rs), volumes (volume.rs)
//!                          ─► init containers one at a time, each to completion; native
//!                             sidecars started in turn, the next waiting for their startup
//!                             probe ─► containers (container.rs) ─► probes ─► status
//!                          ─► ours, a container exited: restarted as restartPolicy says,
//!                             after the kubelet's back-off
//!                          ─► ours, all containers done for good: Succeeded/Failed, sidecars
//!                             stopped in reverse order
//!                          ─► ours, deleted: SIGTERM to the containers, then to the sidecars
//!                             in reverse order, SIGKILL at terminationGracePeriodSeconds,
//!                             namespace removed, the Pod object deleted
//! ```
//!
//! The agent also runs the node's Service networking ([`super::services`]: ClusterIPs and
//! the cluster DNS), as a node runs kube-proxy beside the kubelet.
//!
//! Dropping the agent stops its loop, kills its processes and removes their namespaces.
//! Lifecycle: `postStart` exec hooks (container.rs). Not done: `preStop` hooks, HTTP hooks,
//! resource limits, image pull policies (the image table is
//! all there is), ConfigMap `binaryData`, fsGroup.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, PodSpec, Secret, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::container::{Container, Context, Hook};
use super::net::{Network, PodNet};
use super::services::ServiceProxy;
use super::spec::{ImageTable, Objects, PodFields, ServiceLink, service_links};
use super::volume::Volumes;

/// The name of the test node.
pub const NODE_NAME: &str = "weft-test-node";

/// How the node runs pods.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub images: ImageTable,
    /// The `weft-test-node` binary, whose `launch` command starts each container.
    pub launcher: PathBuf,
    /// The first delay of the restart back-off (the kubelet's 10 s).
    pub backoff: Duration,
    /// Where the API server listens, which the `kubernetes` Service leads to from the pods
    /// (none: that Service is not routed).
    pub apiserver: Option<SocketAddrV4>,
}

impl NodeConfig {
    pub fn new(images: ImageTable, launcher: impl Into<PathBuf>) -> Self {
        Self {
            images,
            launcher: launcher.into(),
            backoff: Duration::from_secs(10),
            apiserver: None,
        }
    }
}

/// The network namespace of each pod the agent runs, by (namespace, name).
type Namespaces = Arc<parking_lot::Mutex<BTreeMap<(String, String), String>>>;
/// Names every pod resolves through its `hosts` file (a test's stand-in for DNS).
type Hosts = Arc<parking_lot::Mutex<BTreeMap<String, std::net::Ipv4Addr>>>;

/// A running agent; stops (and cleans up) when dropped.
pub struct NodeAgent {
    task: tokio::task::JoinHandle<()>,
    namespaces: Namespaces,
    hosts: Hosts,
    network: Arc<Network>,
    /// Stopped after the pods' loop (dropped after `task` is aborted).
    _services: ServiceProxy,
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // Aborting drops the loop's state: its pods' processes are killed and their namespaces
        // removed by their own `Drop`s.
        self.task.abort();
    }
}

impl NodeAgent {
    /// Registers the Node and starts the loop, and the Service networking, on the current
    /// Tokio runtime.
    pub async fn start(client: kube::Client, network: Arc<Network>, config: NodeConfig) -> Self {
        let services = ServiceProxy::start(client.clone(), network.clone(), config.apiserver)
            .await
            .expect("the test node's Service networking (needs root, iptables, iproute2)");
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
        let hosts = Hosts::default();
        let agent = Agent {
            client,
            network: network.clone(),
            config,
            hosts: hosts.clone(),
            pods: BTreeMap::new(),
        };
        let task = tokio::spawn(agent.run(namespaces.clone()));
        Self {
            task,
            namespaces,
            hosts,
            network,
            _services: services,
        }
    }

    /// The network namespace the pod `namespace/name` runs in, while it runs here: for a
    /// test to act from inside the pod (`ip netns exec <it> …`).
    pub fn netns(&self, namespace: &str, name: &str) -> Option<String> {
        self.namespaces
            .lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Makes every pod (running and to come) resolve `name` to `ip` through its `hosts`
    /// file, within a turn of the loop.
    pub fn add_host(&self, name: &str, ip: std::net::Ipv4Addr) {
        self.hosts.lock().insert(name.to_string(), ip);
    }

    /// What a container of the pod `namespace/name` wrote to stdout and stderr, every run
    /// of it (kept after the pod is gone, until the agent's network is torn down).
    pub fn logs(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(
            logs_dir(&self.network, namespace, pod).join(format!("{container}.log")),
        )
        .unwrap_or_default()
    }
}

fn logs_dir(network: &Network, namespace: &str, pod: &str) -> PathBuf {
    network
        .dir()
        .join("logs")
        .join(format!("{namespace}_{pod}"))
}

/// The loop's state; one owner, no locks.
struct Agent {
    client: kube::Client,
    network: Arc<Network>,
    config: NodeConfig,
    hosts: Hosts,
    pods: BTreeMap<(String, String), Running>,
}

/// A pod this node runs.
struct Running {
    uid: String,
    fields: PodFields,
    objects: Objects,
    net: PodNet,
    /// Its volumes, once written (until then, every container waits in ContainerCreating).
    volumes: Option<Volumes>,
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

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn namespace(pod: &Pod) -> String {
    pod.metadata.namespace.clone().unwrap_or_default()
}

fn grace(spec: &PodSpec) -> Duration {
    Duration::from_secs(
        u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30)).unwrap_or(30),
    )
}

impl Agent {
    async fn run(mut self, namespaces: Namespaces) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        loop {
            match pods.list(&ListParams::default()).await {
                Ok(list) => {
                    // The names every pod resolves, read once a turn.
                    let hosts = self.hosts.lock().clone();
                    for pod in &list.items {
                        self.sync(pod, &hosts).await;
                    }
                    // Pods gone from the API server entirely: stop what is left of them.
                    let listed: BTreeSet<(String, String)> =
                        list.items.iter().map(|p| (namespace(p), name(p))).collect();
                    self.pods.retain(|key, _| listed.contains(key));
                    *namespaces.lock() = self
                        .pods
                        .iter()
                        .map(|(key, r)| (key.clone(), r.net.netns.clone()))
                        .collect();
                }
                Err(e) => eprintln!("node agent: listing pods: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sync(&mut self, pod: &Pod, hosts: &BTreeMap<String, std::net::Ipv4Addr>) {
        let (ns, pod_name) = (namespace(pod), name(pod));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let spec = pod.spec.clone().unwrap_or_default();
        let key = (ns.clone(), pod_name.clone());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // A pod recreated under the same name is another pod.
        if self.pods.get(&key).is_some_and(|r| r.uid != uid) {
            self.pods.remove(&key);
        }

        match spec.node_name.as_deref() {
            None if pod.metadata.deletion_timestamp.is_none() => {
                self.bind(&api, &ns, &pod_name).await;
                return;
            }
            Some(NODE_NAME) => {}
            _ => return,
        }

        if pod.metadata.deletion_timestamp.is_some() {
            let done = self.pods.get_mut(&key).is_none_or(|r| r.stop(grace(&spec)));
            if done {
                // Dropping kills what is left (SIGKILL) and removes the namespace.
                self.pods.remove(&key);
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

        if !self.pods.contains_key(&key) {
            match self.admit(pod, &spec).await {
                Some(running) => {
                    self.pods.insert(key.clone(), running);
                }
                None => return,
            }
        }
        let Some(r) = self.pods.get_mut(&key) else {
            return;
        };
        if let Err(e) = r.net.set_hosts(hosts) {
            eprintln!("node agent: hosts of {ns}/{pod_name}: {e}");
        }
        if r.volumes.is_none() {
            r.objects = objects(&self.client, &ns, spec.enable_service_links != Some(false)).await;
            match Volumes::create(
                &self.client,
                &r.net.dir.join("volumes"),
                &spec,
                &r.fields,
                &r.objects,
            )
            .await
            {
                Ok(volumes) => {
                    r.volumes = Some(volumes);
                    for c in r.init.iter_mut().chain(&mut r.containers) {
                        c.waiting = None;
                    }
                }
                Err(e) => {
                    for c in r.init.iter_mut().chain(&mut r.containers) {
                        c.waiting = Some(e.clone());
                    }
                }
            }
        }
        if let Some(volumes) = &mut r.volumes {
            volumes.refresh(&self.client, &r.fields).await;
            let logs = logs_dir(&self.network, &ns, &pod_name);
            let _ = std::fs::create_dir_all(&logs);
            r.step(&spec, &self.config, &logs).await;
        }
        let status = r.status(&self.network);
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

    async fn bind(&self, api: &Api<Pod>, ns: &str, pod_name: &str) {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod_name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
        });
        if let Err(e) = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                pod_name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            eprintln!("node agent: binding {ns}/{pod_name}: {e}");
        }
    }

    /// A new pod of this node: its network namespace and containers (not started yet).
    async fn admit(&self, pod: &Pod, spec: &PodSpec) -> Option<Running> {
        let (ns, pod_name) = (namespace(pod), name(pod));
        let net = match self.network.add_pod_in(&ns, &pod_name) {
            Ok(net) => net,
            Err(e) => {
                eprintln!("node agent: network for {ns}/{pod_name}: {e}");
                return None;
            }
        };
        let fields = PodFields {
            name: pod_name,
            namespace: ns,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            node_name: NODE_NAME.to_string(),
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            pod_ip: net.ip.to_string(),
            host_ip: self.network.gateway().to_string(),
        };
        Some(Running {
            uid: fields.uid.clone(),
            fields,
            objects: Objects::default(),
            net,
            volumes: None,
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(Container::new)
                .collect(),
            containers: spec.containers.iter().map(Container::new).collect(),
            terminating: None,
            finished: None,
            written: None,
        })
    }
}

impl Running {
    /// One turn of the kubelet's sync for a running pod.
    async fn step(&mut self, spec: &PodSpec, config: &NodeConfig, logs: &std::path::Path) {
        let Some(volumes) = &self.volumes else {
            return;
        };
        let cx = Context {
            fields: &self.fields,
            objects: &self.objects,
            net: &self.net,
            images: &config.images,
            volumes,
            pod_security: spec.security_context.as_ref(),
            launcher: &config.launcher,
            logs,
            backoff: config.backoff,
        };
        let grace = grace(spec);
        let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let finished = self.finished.is_some();
        // Init containers in order, each to completion; a failed one runs again unless the
        // pod's restartPolicy is Never. A native sidecar is started in its turn, the next
        // one waits for its startup probe, and it keeps running (restarted if it exits).
        let mut initialized = true;
        for (c, c_spec) in self
            .init
            .iter_mut()
            .zip(spec.init_containers.iter().flatten())
        {
            c.enforce_grace(grace);
            if c.sidecar {
                if c.poll_exit().is_some() && !finished {
                    c.restarts += 1;
                    c.back_off(config.backoff);
                }
                if !c.running() && !finished && c.may_start() {
                    c.start(c_spec, &cx);
                }
                c.probe(&self.net, c_spec).await;
                if !c.completed {
                    if c.started() {
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
            if let Some(code) = c.poll_exit() {
                if code == 0 {
                    c.completed = true;
                    initialized = true;
                    continue;
                }
                if restart_policy == "Never" {
                    c.exit_code = Some(code);
                    break;
                }
                c.restarts += 1;
                c.back_off(config.backoff);
            }
            if !c.running() && c.exit_code.is_none() && c.may_start() {
                c.start(c_spec, &cx);
            }
            break;
        }
        if initialized && !finished {
            // Main containers: started once initialized, in order: one whose postStart hook
            // runs holds back the start of the next ones (as the kubelet's sequential
            // starts do). One that exits starts again under restartPolicy Always, or
            // OnFailure when it failed; else it is done.
            let mut held = false;
            for (c, c_spec) in self.containers.iter_mut().zip(&spec.containers) {
                c.enforce_grace(grace);
                if c.exit_code.is_some() {
                    continue;
                }
                if let Some(code) = c.poll_exit() {
                    let again = match restart_policy {
                        "Always" => true,
                        "OnFailure" => code != 0,
                        _ => false,
                    };
                    if !again {
                        c.exit_code = Some(code);
                        continue;
                    }
                    c.restarts += 1;
                    c.back_off(config.backoff);
                }
                if !c.running() && c.may_start() && !held {
                    c.start(c_spec, &cx);
                }
                match c.post_start() {
                    Hook::Done => {}
                    Hook::Running => held = true,
                    Hook::Failed(why) => {
                        eprintln!("test node: {why}: container stopped (FailedPostStartHook)");
                        held = true;
                    }
                }
                c.probe(&self.net, c_spec).await;
            }
            // Every container done for good (a Job's pod): the pod has succeeded or failed.
            if !self.containers.is_empty() && self.containers.iter().all(|c| c.exit_code.is_some())
            {
                self.finished = Some(self.containers.iter().all(|c| c.exit_code == Some(0)));
            }
        }
        if self.finished.is_some() {
            // Its sidecars are stopped in reverse order, as on deletion.
            stop_sidecars(&mut self.init);
        }
    }

    /// Deletion: containers get SIGTERM, then sidecars in reverse order once they are gone;
    /// true when everything exited or `grace` is over (what is left is then SIGKILLed).
    fn stop(&mut self, grace: Duration) -> bool {
        let since = *self.terminating.get_or_insert_with(Instant::now);
        for c in &mut self.containers {
            c.terminate();
            c.poll_exit();
        }
        // A plain init container still running is stopped with the containers.
        for c in self.init.iter_mut().filter(|c| !c.sidecar) {
            c.terminate();
            c.poll_exit();
        }
        let containers_gone = self
            .containers
            .iter()
            .chain(self.init.iter().filter(|c| !c.sidecar))
            .all(|c| !c.running());
        if containers_gone {
            stop_sidecars(&mut self.init);
        }
        let all_exited = self
            .init
            .iter()
            .chain(&self.containers)
            .all(|c| !c.running());
        all_exited || since.elapsed() >= grace
    }

    /// The pod's status as the kubelet writes it.
    fn status(&self, network: &Network) -> serde_json::Value {
        let initialized = self.init.iter().all(|c| c.completed);
        let all_running = initialized && self.containers.iter().all(Container::running);
        let ready = if all_running && self.containers.iter().all(Container::ready) {
            "True"
        } else {
            "False"
        };
        let name = &self.fields.name;
        let statuses = |list: &[Container]| -> Vec<serde_json::Value> {
            list.iter().map(|c| c.status(name)).collect()
        };
        let init_failed = self.init.iter().any(|c| c.exit_code.is_some());
        json!({"status": {
            "phase": match self.finished {
                Some(true) => "Succeeded",
                Some(false) => "Failed",
                None if init_failed => "Failed",
                None if all_running => "Running",
                None => "Pending",
            },
            "podIP": self.net.ip.to_string(),
            "podIPs": [{"ip": self.net.ip.to_string()}],
            "hostIP": network.gateway().to_string(),
            "hostIPs": [{"ip": network.gateway().to_string()}],
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
            "initContainerStatuses": statuses(&self.init),
            "containerStatuses": statuses(&self.containers),
        }})
    }
}

/// Stops native sidecars in reverse order: SIGTERM to the last one still running, once every
/// sidecar after it has exited.
fn stop_sidecars(init: &mut [Container]) {
    for c in init.iter_mut().filter(|c| c.sidecar) {
        c.poll_exit();
    }
    if let Some(last) = init.iter_mut().rev().find(|c| c.sidecar && c.running()) {
        last.terminate();
    }
}

/// The namespace's ConfigMaps, Secrets and (with `links`) Services, and the `kubernetes`
/// Service, for the containers' environment and volumes.
async fn objects(client: &kube::Client, namespace: &str, links: bool) -> Objects {
    let mut objects = Objects::default();
    let link = |svc: Service| {
        let spec = svc.spec.unwrap_or_default();
        ServiceLink {
            name: svc.metadata.name.unwrap_or_default(),
            cluster_ip: spec.cluster_ip.unwrap_or_default(),
            ports: spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.name, p.port, p.protocol.unwrap_or_else(|| "TCP".into())))
                .collect(),
        }
    };
    let mut services = Vec::new();
    if links
        && let Ok(list) = Api::<Service>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
    {
        services.extend(list.items.into_iter().map(link));
    }
    // The API server's Service, in every namespace (as the kubelet adds it).
    if (namespace != "default" || !links)
        && let Ok(svc) = Api::<Service>::namespaced(client.clone(), "default")
            .get("kubernetes")
            .await
    {
        services.push(link(svc));
    }
    objects.service_env = service_links(&services);
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
