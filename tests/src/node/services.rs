//! The test node's Service networking, as kube-proxy (iptables mode) gives it: a Service's
//! ClusterIP reaches its ready endpoints, from the pods and from the host; and the cluster
//! DNS ([`super::cluster_dns`]) names the Services. One task owns both.
//!
//! ```text
//!  every 200 ms: list Services + EndpointSlices ─► forwards(): per ClusterIP port, its ready
//!     │            endpoints (targetPort: the slice's port of the same name); the `kubernetes`
//!     │            Service: the API server on 127.0.0.1 (its reconciler is off: no slices)
//!     ├─► changed: chain WEFT-SVC-<N> replaced in one `iptables-restore --noflush`
//!     └─► changed: the cluster DNS's name table
//!
//!  nat PREROUTING  -i wtb<N> -d 198.19.0.0/16 ─┬─► WEFT-SVC-<N>: DNAT to an endpoint, spread
//!  nat OUTPUT      -d 198.19.0.0/16 ───────────┘   at random (the host: a webhook's Service)
//!  nat POSTROUTING -o wtb<N> ─► WEFT-SVC-<N>-MASQ: DNATed from the bridge back onto it is
//!                               masqueraded, or the reply would bypass the host (hairpin)
//!  filter FORWARD  -i wtb<N> ─► WEFT-SVC-<N>-FWD: back onto the bridge accepted, anything
//!                               else rejected: nothing is routed off the machine
//!  filter OUTPUT   -d 198.19.0.0/16 ─► the same: the host's packet to a ClusterIP that no
//!                               DNAT took (no ready endpoint yet) is rejected, not routed out
//! ```
//!
//! Sysctls, on the bridge only: `forwarding` (a DNATed packet is routed back onto the
//! bridge) and `route_localnet` (DNAT from the bridge to the API server on loopback). The
//! iptables backend is the one the proxy's capture picks on this host (nft, or legacy when
//! only legacy holds rules). The network's teardown removes the chains and jumps
//! ([`remove_rules`], for both backends), also for the orphan of a crashed run.
//!
//! Not done: NodePorts, externalIPs, session affinity, topology, IPv6; a Service without
//! ready endpoints gets no rule (the connection is then rejected, from a pod or the host).
//! Every network's OUTPUT jump sees all the host's traffic: should two parallel tests'
//! clusters give Services the same ClusterIP,
//! the host reaches the first network's.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use weft_proxy::capture::config::BackendChoice;
use weft_proxy::capture::iptables::{IptablesError, detect};

use super::cluster_dns::ClusterDns;
use super::net::{NetError, Network, bridge_name, io, ip, subnet};
use crate::k8s::SERVICE_CIDR;

/// How often the Services and EndpointSlices are read (the agent's pace).
const PERIOD: Duration = Duration::from_millis(200);
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why Service networking could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Backend(#[from] IptablesError),
    #[error(transparent)]
    Dns(#[from] weft_dns::DnsError),
}

/// A running Service proxy and cluster DNS for one network; stops when dropped (its rules go
/// with the network's teardown).
#[derive(Debug)]
pub struct ServiceProxy {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        // The task holds the network and the DNS server: both go when it is dropped.
        self.task.abort();
    }
}

impl ServiceProxy {
    /// Sets up the network's chains, sysctls and DNS address, and starts the loop on the
    /// current Tokio runtime. `apiserver` is where the `kubernetes` Service leads (none: the
    /// Service gets no rule).
    pub async fn start(
        client: kube::Client,
        network: Arc<Network>,
        apiserver: Option<SocketAddrV4>,
    ) -> Result<Self, ServiceError> {
        install(&network)?;
        let dns = ClusterDns::start(network.dns()).await?;
        let proxy = Proxy {
            client,
            network,
            apiserver,
            restore: restore_program()?,
            dns,
            applied: None,
        };
        Ok(Self {
            task: tokio::spawn(proxy.run()),
        })
    }
}

/// Readies `network` for Services: the bridge's sysctls, the chains and jumps (the Services'
/// chain empty) and the DNS address on the bridge. Undone by the network's teardown.
pub fn install(network: &Network) -> Result<(), ServiceError> {
    // Installed twice on one network: no second set of jumps.
    remove_rules(network.index());
    let bridge = network.bridge();
    for knob in ["forwarding", "route_localnet"] {
        let path = format!("/proc/sys/net/ipv4/conf/{bridge}/{knob}");
        std::fs::write(&path, "1").map_err(io(&path))?;
    }
    run_restore(&restore_program()?, &setup_input(network.index()))?;
    ip(&[
        "addr",
        "replace",
        &format!("{}/32", network.dns()),
        "dev",
        &bridge,
    ])?;
    Ok(())
}

/// The loop's state; one owner, no locks.
struct Proxy {
    client: kube::Client,
    /// Held, so the network's teardown (which removes the chains) comes after the last
    /// restore.
    network: Arc<Network>,
    apiserver: Option<SocketAddrV4>,
    /// The backend's `iptables-restore`.
    restore: String,
    dns: ClusterDns,
    /// The chain last loaded.
    applied: Option<String>,
}

impl Proxy {
    async fn run(mut self) {
        let services: Api<Service> = Api::all(self.client.clone());
        let slices: Api<EndpointSlice> = Api::all(self.client.clone());
        let all = ListParams::default();
        loop {
            match (services.list(&all).await, slices.list(&all).await) {
                (Ok(services), Ok(slices)) => self.sync(&services.items, &slices.items),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("node services: listing Services and EndpointSlices: {e}");
                }
            }
            tokio::time::sleep(PERIOD).await;
        }
    }

    fn sync(&mut self, services: &[Service], slices: &[EndpointSlice]) {
        let forwards = forwards(services, slices, self.apiserver);
        let input = chain_input(self.network.index(), &forwards);
        if self.applied.as_ref() != Some(&input) {
            // Blocking on purpose: the task cannot be cancelled halfway, so once it is gone
            // no restore can run after the network's teardown removed the chains.
            match run_restore(&self.restore, &input) {
                Ok(()) => self.applied = Some(input),
                Err(e) => eprintln!("node services: {e}"),
            }
        }
        self.dns.update(services);
    }
}

/// A transport the rules forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn parse(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    fn iptables(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One port of a Service's ClusterIP and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `namespace/name:port-name`: the rules' comment.
    pub service: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// The ready endpoints, sorted; none: no rule.
    pub endpoints: Vec<SocketAddrV4>,
    /// Only from the pods (the `kubernetes` Service: the host has the API server itself).
    pub pods_only: bool,
}

/// Every TCP and UDP port of every Service with an IPv4 ClusterIP, with its ready endpoints:
/// the addresses of the Service's IPv4 EndpointSlices whose `ready` condition is not false,
/// on the slice port of the Service port's name. `default/kubernetes` leads to `apiserver`.
pub fn forwards(
    services: &[Service],
    slices: &[EndpointSlice],
    apiserver: Option<SocketAddrV4>,
) -> Vec<Forward> {
    let mut forwards = Vec::new();
    for service in services {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let Some(spec) = &service.spec else { continue };
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let api = namespace == "default" && name == "kubernetes";
        for port in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(number)) = (
                Protocol::parse(port.protocol.as_deref()),
                u16::try_from(port.port),
            ) else {
                continue;
            };
            let port_name = port.name.as_deref().unwrap_or_default();
            let endpoints = if api {
                apiserver
                    .filter(|_| protocol == Protocol::Tcp)
                    .into_iter()
                    .collect()
            } else {
                ready_endpoints(slices, namespace, name, port_name, protocol)
            };
            forwards.push(Forward {
                service: format!("{namespace}/{name}:{port_name}"),
                cluster_ip,
                port: number,
                protocol,
                endpoints,
                pods_only: api,
            });
        }
    }
    forwards
}

fn ready_endpoints(
    slices: &[EndpointSlice],
    namespace: &str,
    service: &str,
    port_name: &str,
    protocol: Protocol,
) -> Vec<SocketAddrV4> {
    let mut endpoints = BTreeSet::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        if slice.metadata.namespace.as_deref() != Some(namespace)
            || labels
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                != Some(service)
            || slice.address_type != "IPv4"
        {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // Unset means ready (the API's rule for consumers).
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            endpoints.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                    .map(|ip| SocketAddrV4::new(ip, number)),
            );
        }
    }
    endpoints.into_iter().collect()
}

/// The network's chains: the Services' (`WEFT-SVC-<N>`), the hairpin masquerade's and the
/// forward filter's.
fn chains(index: u8) -> [String; 3] {
    let services = format!("WEFT-SVC-{index}");
    [
        format!("{services}-MASQ"),
        format!("{services}-FWD"),
        services,
    ]
}

/// The `iptables-restore` input that creates the network's chains and jumps, with the
/// masquerade and forward rules; the Services' chain starts empty.
pub fn setup_input(index: u8) -> String {
    let [masq, fwd, services] = chains(index);
    let (bridge, subnet) = (bridge_name(index), subnet(index));
    format!(
        "*nat\n\
         :{services} - [0:0]\n\
         :{masq} - [0:0]\n\
         -A {masq} -s {subnet} -d {subnet} -m conntrack --ctstate DNAT -j MASQUERADE\n\
         -A PREROUTING -i {bridge} -d {SERVICE_CIDR} -j {services}\n\
         -A OUTPUT -d {SERVICE_CIDR} -j {services}\n\
         -A POSTROUTING -o {bridge} -j {masq}\n\
         COMMIT\n\
         *filter\n\
         :{fwd} - [0:0]\n\
         -A {fwd} -o {bridge} -j ACCEPT\n\
         -A {fwd} -j REJECT --reject-with icmp-port-unreachable\n\
         -I FORWARD -i {bridge} -j {fwd}\n\
         -A OUTPUT -d {SERVICE_CIDR} -j {fwd}\n\
         COMMIT\n"
    )
}

/// The `iptables-restore --noflush` input that replaces the Services' chain with a DNAT per
/// endpoint of each forward: the `i`-th of `n` taken with probability `1/(n-i)`, the last
/// always, so each endpoint gets an even share (kube-proxy's spreading).
pub fn chain_input(index: u8, forwards: &[Forward]) -> String {
    let [_, _, chain] = chains(index);
    let bridge = bridge_name(index);
    let mut text = format!("*nat\n:{chain} - [0:0]\n");
    for forward in forwards {
        let from = if forward.pods_only {
            format!(" -i {bridge}")
        } else {
            String::new()
        };
        let proto = forward.protocol.iptables();
        let n = forward.endpoints.len();
        for (i, endpoint) in forward.endpoints.iter().enumerate() {
            let spread = if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                format!(" -m statistic --mode random --probability {probability:.10}")
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                "-A {chain}{from} -d {}/32 -p {proto} -m {proto} --dport {} \
                 -m comment --comment {}{spread} -j DNAT --to-destination {endpoint}",
                forward.cluster_ip, forward.port, forward.service
            );
        }
    }
    text.push_str("COMMIT\n");
    text
}

/// The input that removes network `index`'s jumps and chains from what `iptables-save`
/// printed (every table); `None` when there is nothing of it.
pub fn removal_input(index: u8, saved: &str) -> Option<String> {
    let ours = chains(index);
    let is_ours = |name: &str| ours.iter().any(|c| c == name);
    let mut input = String::new();
    let mut table = "";
    let (mut deletes, mut declared) = (Vec::new(), Vec::new());
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim();
            deletes.clear();
            declared.clear();
        } else if let Some(declaration) = line.strip_prefix(':') {
            if let Some(chain) = declaration.split_whitespace().next().filter(|c| is_ours(c)) {
                declared.push(chain.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let in_ours = words.first().is_some_and(|c| is_ours(c));
            let jumps_to_ours = words
                .windows(2)
                .any(|w| matches!(w[0], "-j" | "-g") && is_ours(w[1]));
            if !in_ours && jumps_to_ours {
                deletes.push(format!("-D {rule}"));
            }
        } else if line.trim() == "COMMIT" && !(deletes.is_empty() && declared.is_empty()) {
            let _ = writeln!(input, "*{table}");
            for delete in deletes.drain(..) {
                let _ = writeln!(input, "{delete}");
            }
            for chain in &declared {
                let _ = writeln!(input, "-F {chain}");
            }
            for chain in declared.drain(..) {
                let _ = writeln!(input, "-X {chain}");
            }
            input.push_str("COMMIT\n");
        }
    }
    (!input.is_empty()).then_some(input)
}

/// Removes network `index`'s jumps and chains from both backends (which one a crashed run
/// used is not known); what cannot be run or read is skipped.
pub fn remove_rules(index: u8) {
    for (save, restore) in [
        ("iptables-nft-save", "iptables-nft-restore"),
        ("iptables-legacy-save", "iptables-legacy-restore"),
        ("iptables-save", "iptables-restore"),
    ] {
        let Ok(out) = Command::new(save)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        else {
            continue;
        };
        if let Some(input) = removal_input(index, &String::from_utf8_lossy(&out.stdout))
            && let Err(e) = run_restore(restore, &input)
        {
            eprintln!("test network {index}: removing its Service rules: {e}");
        }
    }
}

/// What the rules of network `index` look like in both backends: `iptables-save`'s lines that
/// name one of its chains.
pub fn saved_rules(index: u8) -> String {
    let ours = chains(index);
    let mut lines = String::new();
    for save in ["iptables-nft-save", "iptables-legacy-save"] {
        let Ok(out) = Command::new(save).stderr(Stdio::null()).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line
                .split_whitespace()
                .any(|w| ours.iter().any(|c| w.trim_start_matches(':') == c))
            {
                let _ = writeln!(lines, "{line}");
            }
        }
    }
    lines
}

/// The `iptables-restore` of the backend in use: `iptables-<kind>-restore`, or the plain
/// `iptables-restore` when that is the backend's. Detected once per process.
fn restore_program() -> Result<String, IptablesError> {
    static PROGRAM: OnceLock<String> = OnceLock::new();
    if let Some(program) = PROGRAM.get() {
        return Ok(program.clone());
    }
    let kind = detect(BackendChoice::Auto)?.kind;
    let named = format!("iptables-{kind}-restore");
    let runs = Command::new(&named)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let program = if runs {
        named
    } else {
        "iptables-restore".to_string()
    };
    Ok(PROGRAM.get_or_init(|| program).clone())
}

/// `program --noflush` with `input`: the tables it names change in one transaction, the
/// chains it declares are emptied first, nothing else is touched.
fn run_restore(program: &str, input: &str) -> Result<(), NetError> {
    let failed = |detail: String| NetError::Command {
        command: format!("{program} --noflush <<EOF\n{input}EOF"),
        detail,
    };
    let mut child = Command::new(program)
        // The xtables lock of the legacy backend: wait for another writer.
        .args(["--noflush", "--wait=5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
