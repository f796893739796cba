//! The test node's pod network: one Linux bridge per test, and per pod a network namespace
//! joined to it by a veth pair, with an address in 198.18.0.0/15. Nothing is routed off the
//! machine; pods reach each other over the bridge, the host reaches them through the
//! bridge's address.
//!
//! ```text
//!  host ── bridge wtb<N> 198.18.<N>.1/24
//!            ├── veth wt<N>h<K> ═══ eth0 198.18.<N>.<K>/24   netns wt<N>-<K>, default via .1
//!            └── …                                            /etc/netns/wt<N>-<K>/{hosts,resolv.conf}
//! ```
//!
//! `N` (1–254) is taken by creating `/run/weft-test-net/<N>` exclusively, which holds the
//! owner's pid and start time; the owner removes it last. A network whose owner is gone (a
//! test that crashed or was killed) is torn down by the next [`Network::create`]. Pods get
//! `K` from 2 to 253, never reused within a network. Each network keeps its files (a
//! directory per pod, the containers' logs) in `/run/weft-test-net/<N>.d/`.
//! `198.18.<N>.254` is the pods' DNS server: the cluster DNS ([`super::cluster_dns`]) when
//! the node runs [`super::services`] (with a mesh, the sidecar's DNS proxy answers first); a
//! plain network leaves it unserved. A pod of a cluster ([`Network::add_pod_in`]) gets the
//! kubelet's `ClusterFirst` `resolv.conf`. The veths are in hairpin mode, so a pod reaches itself through a Service
//! (kube-proxy's DNAT sends the packet back out of the port it came in on). Everything is
//! done with `ip` (iproute2); it needs root. Teardown also removes the Service rules of
//! [`super::services`] for the network.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the owner records of the networks are.
const RECORDS: &str = "/run/weft-test-net";
/// Where `ip netns exec` finds a namespace's `hosts` and `resolv.conf`.
const NETNS_ETC: &str = "/etc/netns";

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("all 254 test networks are in use (see {RECORDS})")]
    Exhausted,
    #[error("network {0}: all 252 pod addresses have been used")]
    PodsExhausted(u8),
}

/// A bridge and the pods on it; torn down (pods, bridge, files, record) when dropped.
#[derive(Debug)]
pub struct Network {
    index: u8,
    /// The next pod's host part. Addresses are not reused within a network, so an address
    /// the API server may still list for a deleted pod never points at a new one.
    next_host: AtomicU8,
}

/// One pod's network namespace; removed when dropped.
#[derive(Debug)]
pub struct PodNet {
    pub name: String,
    /// The namespace's name (`ip netns exec <netns> …`).
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The pod's files on the host (volumes, scratch space); removed with it.
    pub dir: PathBuf,
    /// Names the pod resolves through its `hosts` file (besides `localhost` and its own).
    hosts: Mutex<BTreeMap<String, Ipv4Addr>>,
}

impl Network {
    /// Creates a bridge with a free index, after tearing down the networks of owners that are
    /// gone.
    pub fn create() -> Result<Self, NetError> {
        std::fs::create_dir_all(RECORDS).map_err(io(RECORDS))?;
        sweep_orphans();
        let me = owner_stamp(std::process::id()).unwrap_or_default();
        for index in 1..=254u8 {
            let record = Path::new(RECORDS).join(index.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&record)
            {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&record)(e)),
            }
            std::fs::write(&record, &me).map_err(io(&record))?;
            let network = Self {
                index,
                next_host: AtomicU8::new(2),
            };
            // A leftover of a record removed by hand: start clean.
            teardown(index);
            let bridge = network.bridge();
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", network.gateway()),
                "dev",
                &bridge,
            ])?;
            ip(&["link", "set", &bridge, "up"])?;
            return Ok(network);
        }
        Err(NetError::Exhausted)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        bridge_name(self.index)
    }

    /// The bridge's address: the pods' default gateway, and how the host reaches them.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 1)
    }

    /// The network's files: per pod a directory (volumes, scratch space), and the containers'
    /// logs under `logs/`, kept until the network is torn down.
    pub fn dir(&self) -> PathBuf {
        files_dir(self.index)
    }

    /// The network's number `N` (its bridge is `wtb<N>`, its pods are in `198.18.<N>.0/24`).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The address the pods' `resolv.conf` names: served by the cluster DNS when the node
    /// runs [`super::services`], else by nothing.
    pub fn dns(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 254)
    }

    /// Creates a pod's namespace with its address, route, `hosts` and a `resolv.conf` that
    /// names only [`Self::dns`].
    pub fn add_pod(&self, name: &str) -> Result<PodNet, NetError> {
        self.create_pod(name, format!("nameserver {}\n", self.dns()))
    }

    /// [`Self::add_pod`] for a pod of Kubernetes namespace `namespace`, with the
    /// `resolv.conf` the kubelet writes for `dnsPolicy: ClusterFirst`.
    pub fn add_pod_in(&self, namespace: &str, name: &str) -> Result<PodNet, NetError> {
        self.create_pod(
            name,
            format!(
                "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n\
                 nameserver {}\noptions ndots:5\n",
                self.dns()
            ),
        )
    }

    fn create_pod(&self, name: &str, resolv_conf: String) -> Result<PodNet, NetError> {
        let host = self
            .next_host
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
                (k <= 253).then_some(k + 1)
            })
            .map_err(|_| NetError::PodsExhausted(self.index))?;
        let pod = PodNet {
            name: name.to_string(),
            netns: format!("wt{}-{host}", self.index),
            ip: Ipv4Addr::new(198, 18, self.index, host),
            dir: self.dir().join(format!("wt{}-{host}", self.index)),
            hosts: Mutex::new(BTreeMap::new()),
        };
        let (outer, inner) = (
            format!("wt{}h{host}", self.index),
            format!("wt{}p{host}", self.index),
        );
        let ns = pod.netns.as_str();
        // From here on a failure drops `pod`, which removes the namespace and its veth pair.
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", ns,
        ])?;
        ip(&["link", "set", &outer, "master", &self.bridge(), "up"])?;
        ip(&[
            "link",
            "set",
            &outer,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
        ip(&["-n", ns, "link", "set", &inner, "name", "eth0"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", pod.ip),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &self.gateway().to_string(),
        ])?;
        let etc = pod.etc();
        std::fs::create_dir_all(&etc).map_err(io(&etc))?;
        let resolv = etc.join("resolv.conf");
        std::fs::write(&resolv, resolv_conf).map_err(io(&resolv))?;
        pod.write_hosts()?;
        std::fs::create_dir_all(&pod.dir).map_err(io(&pod.dir))?;
        Ok(pod)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        teardown(self.index);
        let _ = std::fs::remove_file(Path::new(RECORDS).join(self.index.to_string()));
    }
}

impl PodNet {
    /// Adds `name → ip` to the pod's `hosts` file (rewritten in place: running programs see
    /// it at their next lookup).
    pub fn add_host(&self, name: &str, ip: Ipv4Addr) -> Result<(), NetError> {
        self.hosts.lock().insert(name.to_string(), ip);
        self.write_hosts()
    }

    /// Makes the `hosts` file name exactly `hosts` (besides `localhost` and the pod's own
    /// name); writes only when that changes it.
    pub fn set_hosts(&self, hosts: &BTreeMap<String, Ipv4Addr>) -> Result<(), NetError> {
        {
            let mut current = self.hosts.lock();
            if *current == *hosts {
                return Ok(());
            }
            current.clone_from(hosts);
        }
        self.write_hosts()
    }

    /// A command that runs `program` inside the pod's namespace, with its `hosts` and
    /// `resolv.conf` in place of the host's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }

    /// Replaces the pod's `resolv.conf` (what its programs read at their next lookup).
    pub fn set_resolv_conf(&self, text: &str) -> Result<(), NetError> {
        let path = self.etc().join("resolv.conf");
        std::fs::write(&path, text).map_err(io(&path))
    }

    fn etc(&self) -> PathBuf {
        Path::new(NETNS_ETC).join(&self.netns)
    }

    fn write_hosts(&self) -> Result<(), NetError> {
        let mut text = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
            self.ip, self.name
        );
        for (name, ip) in self.hosts.lock().iter() {
            let _ = writeln!(text, "{ip}\t{name}");
        }
        let path = self.etc().join("hosts");
        std::fs::write(&path, text).map_err(io(&path))
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        kill_all_in(&self.netns);
        // Deleting the namespace deletes the veth pair with it.
        let _ = run_ip(&["netns", "del", &self.netns]);
        let _ = std::fs::remove_dir_all(self.etc());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILLs every process in the network namespace `netns` (a container's children too,
/// as a runtime kills a container's whole cgroup).
fn kill_all_in(netns: &str) {
    let Ok(pids) = run_ip(&["netns", "pids", netns]) else {
        return;
    };
    let pids: Vec<&str> = pids.split_whitespace().collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Network `index`'s bridge.
pub(super) fn bridge_name(index: u8) -> String {
    format!("wtb{index}")
}

/// Network `index`'s pod subnet.
pub(super) fn subnet(index: u8) -> String {
    format!("198.18.{index}.0/24")
}

/// Where network `index` keeps its files.
fn files_dir(index: u8) -> PathBuf {
    Path::new(RECORDS).join(format!("{index}.d"))
}

/// Fetches `http://<host>:<port><path>` from inside the network namespace `netns` (with its
/// `hosts` file) using bash's `/dev/tcp`, so no client program is needed there: the whole
/// response, or why not.
pub fn http_get_in(netns: &str, host: &str, port: u16, path: &str) -> Result<String, String> {
    http_get_in_as(netns, None, host, port, path)
}

/// [`http_get_in`] as user (and group) `uid`, when given: a pod's app, or its proxy's 1337.
pub fn http_get_in_as(
    netns: &str,
    uid: Option<u32>,
    host: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    get_in(netns, uid, host, port, path, "")
}

/// [`http_get_in`] with more request headers: `headers` is `Name: value\r\n` lines.
pub fn http_get_in_with(
    netns: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &str,
) -> Result<String, String> {
    get_in(netns, None, host, port, path, headers)
}

/// Runs bash `script` inside `netns` as `uid` (else root): its output lines, trimmed, which
/// must be `count` (one per connection or request the script makes; panics with its error
/// output otherwise).
pub fn lines_in(netns: &str, uid: Option<u32>, script: &str, count: usize) -> Vec<String> {
    let out = command_in(netns, uid)
        .args(["bash", "-c", script])
        .output()
        .expect("bash in the pod");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(
        lines.len(),
        count,
        "one line per probe: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

/// A command run inside the network namespace `netns` (its `hosts` and `resolv.conf`), as
/// user (and group) `uid` when given, else as root: append the program and its arguments.
pub fn command_in(netns: &str, uid: Option<u32>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns]);
    if let Some(uid) = uid {
        command.args([
            "setpriv".to_string(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_string(),
        ]);
    }
    command
}

/// What `name` resolves to inside `netns` as `uid` (glibc: the `hosts` file, then the
/// `resolv.conf` server): `getent hosts`' first address, or empty.
pub fn resolve_in_as(netns: &str, uid: Option<u32>, name: &str) -> String {
    let out = command_in(netns, uid)
        .args(["timeout", "10", "getent", "hosts", name])
        .output()
        .expect("getent in the pod");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn get_in(
    netns: &str,
    uid: Option<u32>,
    host: &str,
    port: u16,
    path: &str,
    headers: &str,
) -> Result<String, String> {
    let headers = headers.replace('\r', "\\r").replace('\n', "\\n");
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n{headers}\\r\\n' >&3 && timeout 5 cat <&3"
    );
    let mut command = command_in(netns, uid);
    if uid.is_some() {
        // The connect too is bounded (an address nothing answers).
        command.args(["timeout", "5"]);
    }
    let out = command
        .args(["bash", "-c", &script])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Removes every trace of network `index`: its Service rules, its pods' namespaces and files,
/// and its bridge (with the bridge go its DNS address and its sysctls).
fn teardown(index: u8) {
    super::services::remove_rules(index);
    // The host ends of the pods' veth pairs first: deleting one end deletes the pair at once,
    // whereas a deleted namespace's links go only when the kernel gets round to freeing it
    // (or never, while a process still holds it), and the next network with this index would
    // find their names taken.
    let host_ends = format!("wt{index}h");
    if let Ok(links) = std::fs::read_dir("/sys/class/net") {
        for link in links.flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            if name.starts_with(&host_ends) {
                let _ = run_ip(&["link", "del", &name]);
            }
        }
    }
    let prefix = format!("wt{index}-");
    if let Ok(list) = run_ip(&["netns", "list"]) {
        for ns in list
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|ns| ns.starts_with(&prefix))
        {
            kill_all_in(ns);
            let _ = run_ip(&["netns", "del", ns]);
        }
    }
    let _ = std::fs::remove_dir_all(files_dir(index));
    if let Ok(entries) = std::fs::read_dir(NETNS_ETC) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let bridge = bridge_name(index);
    if Path::new("/sys/class/net").join(&bridge).exists() {
        let _ = run_ip(&["link", "del", &bridge]);
    }
}

/// Tears down the networks whose owner process is gone.
fn sweep_orphans() {
    let Ok(entries) = std::fs::read_dir(RECORDS) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(index) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u8>().ok())
        else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let alive = owner
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .and_then(owner_stamp)
            .is_some_and(|now| now == owner);
        // An empty record is one being written right now: leave it.
        if !owner.is_empty() && !alive {
            eprintln!(
                "test network {index}: its owner ({}) is gone; removing it",
                owner.trim()
            );
            teardown(index);
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `"<pid> <start time>"` of a live process (the start time tells a reused pid apart).
fn owner_stamp(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after its `)`.
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

pub(super) fn ip(args: &[&str]) -> Result<(), NetError> {
    run_ip(args).map(drop)
}

fn run_ip(args: &[&str]) -> Result<String, NetError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetError::Command {
            command: command.clone(),
            detail: format!("{e} (is iproute2 installed?)"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Command {
            command,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                if is_root() { "" } else { " (it needs root)" }
            ),
        })
    }
}

/// Whether this process runs as root (the uid from `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

pub(super) fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.as_ref().to_path_buf();
    move |source| NetError::Io { path, source }
}
