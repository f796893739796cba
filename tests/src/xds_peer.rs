//! The go-control-plane test ADS server (`tests/xds-peer/`), an xDS implementation that is
//! not ours: built once per test process by its `build.sh` (cached under
//! `~/.cache/weft/xds-peer/`), started on a test's loopback block (ADS on `.1:15010`, its
//! HTTP control endpoint on `.1:15014`, as the controller's ports), and driven from the test:
//! push snapshots (Envoy resources as protojson), switch it to resending NACKed content,
//! arm a mismatched type URL, and read which ACKs and NACKs it saw.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use weft_xds::contract;

use crate::{HttpClient, Net, Process, wait_ok};

/// The xds-peer binary: built (or found up to date) by `tests/xds-peer/build.sh` once per
/// test process. Panics, never skips, when it cannot be built.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("xds-peer/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            eprintln!("{}", stderr.trim_end());
        }
        assert!(
            output.status.success(),
            "{} failed ({}):\n{stdout}\n{stderr}",
            script.display(),
            output.status
        );
        let path = stdout
            .lines()
            .last()
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{} printed no path:\n{stderr}", script.display()));
        assert!(path.exists(), "{} was not built", path.display());
        path
    })
}

/// One set of resources per type, written as `listeners.json`, `routes.json`,
/// `clusters.json` and `endpoints.json` (protojson arrays, each resource with its `@type`).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub listeners: Vec<Value>,
    pub routes: Vec<Value>,
    pub clusters: Vec<Value>,
    pub endpoints: Vec<Value>,
}

impl Snapshot {
    /// Writes the four files into `dir` (created if needed).
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("snapshot dir");
        for (name, set) in [
            ("listeners.json", &self.listeners),
            ("routes.json", &self.routes),
            ("clusters.json", &self.clusters),
            ("endpoints.json", &self.endpoints),
        ] {
            let text = serde_json::to_string_pretty(set).expect("JSON values serialize");
            std::fs::write(dir.join(name), text).expect("writing a snapshot file");
        }
    }
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({"socketAddress": {"address": addr.ip().to_string(), "portValue": addr.port()}})
}

/// A listener at `addr` with one HTTP connection manager that takes route configuration
/// `route_config` over ADS, and the router filter.
pub fn listener(name: &str, addr: SocketAddr, route_config: &str) -> Value {
    json!({
        "@type": contract::LISTENER,
        "name": name,
        "address": socket_address(addr),
        "filterChains": [{"filters": [{
            "name": contract::HTTP_CONNECTION_MANAGER,
            "typedConfig": {
                "@type": contract::HTTP_CONNECTION_MANAGER_TYPE_URL,
                "statPrefix": name,
                "rds": {"configSource": {"ads": {}}, "routeConfigName": route_config},
                "httpFilters": [{
                    "name": contract::ROUTER,
                    "typedConfig": {"@type": contract::ROUTER_TYPE_URL},
                }],
            },
        }]}],
    })
}

/// A route configuration with one virtual host for every domain and `routes` in order.
pub fn route_config(name: &str, routes: Vec<Value>) -> Value {
    json!({
        "@type": contract::ROUTE,
        "name": name,
        "virtualHosts": [{"name": format!("{name}-all"), "domains": ["*"], "routes": routes}],
    })
}

/// A route sending paths starting with `prefix` to `cluster`.
pub fn prefix_route(prefix: &str, cluster: &str) -> Value {
    json!({"match": {"prefix": prefix}, "route": {"cluster": cluster}})
}

/// A route sending paths matching `regex` to `cluster`.
pub fn regex_route(regex: &str, cluster: &str) -> Value {
    json!({"match": {"safeRegex": {"regex": regex}}, "route": {"cluster": cluster}})
}

/// An EDS cluster over ADS whose load assignment is named like the cluster.
pub fn eds_cluster(name: &str) -> Value {
    json!({
        "@type": contract::CLUSTER,
        "name": name,
        "type": "EDS",
        "connectTimeout": "2s",
        "edsClusterConfig": {"edsConfig": {"ads": {}}, "serviceName": name},
    })
}

/// A load assignment of `addrs` for cluster `name`.
pub fn endpoints(name: &str, addrs: &[SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"endpoint": {"address": socket_address(*a)}}))
        .collect();
    json!({
        "@type": contract::ENDPOINT,
        "clusterName": name,
        "endpoints": [{"lbEndpoints": lb_endpoints}],
    })
}

/// One NACK the peer recorded.
#[derive(Debug, Clone)]
pub struct Nack {
    /// When it arrived, in milliseconds since the peer started.
    pub at_ms: f64,
    /// The NACK's `version_info`: the last version the client accepted.
    pub version: String,
    pub nonce: String,
    pub error: String,
}

impl Nack {
    fn from_json(value: &Value) -> Self {
        Self {
            at_ms: value["at_ms"].as_f64().unwrap_or_default(),
            version: string(&value["version"]),
            nonce: string(&value["nonce"]),
            error: string(&value["error"]),
        }
    }
}

/// What the peer saw of one type, over every stream.
#[derive(Debug, Clone, Default)]
pub struct TypeStats {
    pub requests: u64,
    pub acks: u64,
    /// `version_info` of the last ACK.
    pub acked_version: String,
    pub last_nack: Option<Nack>,
    /// The most recent NACKs (at most 1000), oldest first.
    pub nacks: Vec<Nack>,
    pub nack_count: u64,
    /// The names of the latest request.
    pub resource_names: Vec<String>,
    pub responses: u64,
    pub sent_version: String,
    /// The names of the resources in the latest response.
    pub sent_resources: Vec<String>,
}

/// The peer's `/stats`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Milliseconds since the peer started, when it answered.
    pub now_ms: f64,
    pub streams_open: u64,
    pub raw: Value,
}

impl Stats {
    /// The stats of `type_url` (all zero when the peer never heard of it).
    pub fn get(&self, type_url: &str) -> TypeStats {
        let t = &self.raw["types"][type_url];
        if t.is_null() {
            return TypeStats::default();
        }
        TypeStats {
            requests: t["requests"].as_u64().unwrap_or_default(),
            acks: t["acks"].as_u64().unwrap_or_default(),
            acked_version: string(&t["acked_version"]),
            last_nack: (!t["last_nack"].is_null()).then(|| Nack::from_json(&t["last_nack"])),
            nacks: t["nacks"]
                .as_array()
                .map(|a| a.iter().map(Nack::from_json).collect())
                .unwrap_or_default(),
            nack_count: t["nack_count"].as_u64().unwrap_or_default(),
            resource_names: strings(&t["resource_names"]),
            responses: t["responses"].as_u64().unwrap_or_default(),
            sent_version: string(&t["sent_version"]),
            sent_resources: strings(&t["sent_resources"]),
        }
    }
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(string).collect())
        .unwrap_or_default()
}

/// A running xds-peer.
pub struct XdsPeer {
    pub process: Process,
    pub ads: SocketAddr,
    pub control: SocketAddr,
    /// Where snapshots are written, one directory per version.
    snapshots: PathBuf,
    http: HttpClient,
}

impl XdsPeer {
    /// Starts the peer on `net`'s control-plane address serving `initial` as `version`, and
    /// waits until it answers. Snapshots go under `work_dir`, the log into `log_dir`.
    pub async fn start(
        net: Net,
        initial: &Snapshot,
        version: &str,
        work_dir: &Path,
        log_dir: &Path,
    ) -> Self {
        let ads = SocketAddr::new(net.ip(1), 15010);
        let control = SocketAddr::new(net.ip(1), 15014);
        let snapshots = work_dir.join("xds-peer-snapshots");
        let dir = snapshots.join(version);
        initial.write(&dir);
        let mut process = Process::spawn(
            "xds-peer",
            Command::new(binary())
                .args(["-ads", &ads.to_string()])
                .args(["-control", &control.to_string()])
                .arg("-dir")
                .arg(&dir)
                .args(["-version", version]),
            log_dir,
        );
        wait_ok(&format!("http://{control}/healthz"), &mut process).await;
        Self {
            process,
            ads,
            control,
            snapshots,
            http: HttpClient::new(),
        }
    }

    /// The ADS address for `weft-proxy --xds-address`.
    pub fn ads_url(&self) -> String {
        format!("http://{}", self.ads)
    }

    async fn post(&self, path_and_query: &str) {
        let reply = self
            .http
            .request(
                self.control,
                "POST",
                &self.control.to_string(),
                path_and_query,
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("xds-peer POST {path_and_query}: {e}"));
        assert!(
            reply.status.is_success(),
            "xds-peer POST {path_and_query}: {} {}",
            reply.status,
            reply.body
        );
    }

    /// Replaces the snapshot of every node with `snapshot` at `version`.
    pub async fn push(&self, snapshot: &Snapshot, version: &str) {
        let dir = self.snapshots.join(version);
        snapshot.write(&dir);
        self.post(&format!(
            "/snapshot?dir={}&version={}",
            query_escape(&dir.to_string_lossy()),
            query_escape(version)
        ))
        .await;
    }

    /// With `on`, the peer answers a NACK by sending the rejected content again at once
    /// (go-control-plane's own snapshot cache behaviour); without, it waits for a new snapshot.
    pub async fn resend_nacked(&self, on: bool) {
        self.post(&format!("/mode?resend_nacked={on}")).await;
    }

    /// The next response of `type_url` carries `as_type` as the Any type URL of its first
    /// resource.
    pub async fn mismatch_next(&self, type_url: &str, as_type: &str) {
        self.post(&format!(
            "/fault/mismatch?type={}&as={}",
            query_escape(type_url),
            query_escape(as_type)
        ))
        .await;
    }

    /// What the peer saw so far.
    pub async fn stats(&self) -> Stats {
        let reply = self
            .http
            .get_url(&format!("http://{}/stats", self.control))
            .await
            .unwrap_or_else(|e| panic!("xds-peer /stats: {e}"));
        assert!(
            reply.status.is_success(),
            "xds-peer /stats: {}",
            reply.status
        );
        let raw: Value = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("xds-peer /stats is not JSON ({e}): {}", reply.body));
        Stats {
            now_ms: raw["now_ms"].as_f64().unwrap_or_default(),
            streams_open: raw["streams_open"].as_u64().unwrap_or_default(),
            raw,
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escape_keeps_paths_readable() {
        assert_eq!(query_escape("/tmp/.tmpAb9/v 1"), "/tmp/.tmpAb9/v%201");
        assert_eq!(
            query_escape("type.googleapis.com/a.B&c"),
            "type.googleapis.com/a.B%26c"
        );
    }
}
