//! Command line and environment: every flag of `weft-proxy`, and the Envoy `Node` they describe.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

use crate::config::assignment::Locality;

/// Weft's sidecar proxy: speaks Envoy xDS (ADS) and routes HTTP/1.1 and h2c traffic.
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-proxy", version, about)]
pub struct Args {
    /// ADS server address (the control plane).
    #[arg(
        long,
        env = "WEFT_XDS_ADDRESS",
        default_value = "http://127.0.0.1:15010"
    )]
    pub xds_address: String,

    /// Node id; default is Istio's `sidecar~<ip>~<workload>.<ns>~<ns>.svc.cluster.local`.
    #[arg(long, env = "WEFT_NODE_ID")]
    pub node_id: Option<String>,

    /// Namespace of the workload.
    #[arg(long, env = "WEFT_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Workload (pod) name.
    #[arg(long, env = "WEFT_WORKLOAD_NAME", default_value = "weft-proxy")]
    pub workload_name: String,

    /// Workload labels as `k=v,k=v`.
    #[arg(long, env = "WEFT_LABELS", default_value = "")]
    pub labels: Labels,

    /// Where the workload runs, `region/zone/subzone` (sent as the node's locality; locality
    /// load balancing prefers endpoints close to it). Unset: the controller takes its pod's.
    #[arg(long, env = "WEFT_LOCALITY", value_parser = parse_locality)]
    pub locality: Option<Locality>,

    /// The workload's IP; listeners and the admin/health servers bind it.
    #[arg(long, env = "WEFT_INSTANCE_IP", default_value = "127.0.0.1")]
    pub instance_ip: IpAddr,

    /// Outbound listener port (reported to the control plane as WEFT_OUTBOUND_PORT).
    #[arg(long, env = "WEFT_OUTBOUND_PORT", default_value_t = 15001)]
    pub outbound_port: u16,

    /// Inbound listener port (reported as WEFT_INBOUND_PORT).
    #[arg(long, env = "WEFT_INBOUND_PORT", default_value_t = 15006)]
    pub inbound_port: u16,

    /// The application's port; without it there is no inbound listener.
    #[arg(long, env = "WEFT_APP_PORT")]
    pub app_port: Option<u16>,

    /// How the pod's traffic reaches the proxy (node metadata `INTERCEPTION_MODE`): `REDIRECT`
    /// when `weft-proxy init` captured it with iptables (the listeners then match connections
    /// by their original destination); `NONE` when clients address the proxy explicitly.
    #[arg(
        long,
        env = "ISTIO_META_INTERCEPTION_MODE",
        default_value = "NONE",
        value_parser = ["NONE", "REDIRECT"]
    )]
    pub interception_mode: String,

    /// Run the DNS proxy (Istio's `ISTIO_META_DNS_CAPTURE`; `weft-proxy init --redirect-dns`
    /// sends the pod's DNS to it): mesh host names are answered from the control plane's
    /// name table (NDS), the rest forwarded to the servers of `--resolv-conf`.
    #[arg(long, env = "ISTIO_META_DNS_CAPTURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dns_capture: bool,

    /// The DNS proxy's port (UDP and TCP, on 127.0.0.1: where the capture redirects).
    #[arg(long, env = "WEFT_DNS_PORT", default_value_t = 15053)]
    pub dns_port: u16,

    /// Where the pod's resolvers and search domains are listed (the DNS proxy's upstreams).
    #[arg(long, env = "WEFT_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: std::path::PathBuf,

    /// Admin HTTP port (`/ready`, `/config_dump`).
    #[arg(long, env = "WEFT_ADMIN_PORT", default_value_t = 15000)]
    pub admin_port: u16,

    /// Health port (`/healthz/ready`).
    #[arg(long, env = "WEFT_HEALTH_PORT", default_value_t = 15021)]
    pub health_port: u16,

    /// Status port (Istio's agent port): the app's probes the injector rewrote
    /// (`/app-health/<container>/livez|readyz|startupz`), and `/healthz/ready`.
    #[arg(long, env = "WEFT_STATUS_PORT", default_value_t = 15020)]
    pub status_port: u16,

    /// The app's original probes, JSON by status-port path, as the injector writes them
    /// (Istio's format), e.g. `{"/app-health/app/readyz":{"httpGet":{"path":"/ready","port":8080},"timeoutSeconds":1}}`.
    /// Read once at start: a value that is not valid stops the proxy.
    #[arg(long, env = "ISTIO_KUBE_APP_PROBERS")]
    pub app_probers: Option<String>,

    /// The workload's ServiceAccount: its certificate's identity is
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` (reported to the
    /// control plane as SERVICE_ACCOUNT).
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,

    /// The mesh's trust domain.
    #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// The CA (Istio's CA API over TLS, istiod's 15012), e.g. `https://127.0.0.1:15012`.
    /// With it the proxy gets a workload certificate at start (it is not ready before),
    /// renews it at half-life, and can speak mutual TLS; without it it has no identity.
    #[arg(long, env = "CA_ADDR")]
    pub ca_address: Option<String>,

    /// The name the control plane's TLS certificate must carry (CA and ADS over TLS),
    /// whatever address it is reached at.
    #[arg(
        long,
        env = "WEFT_XDS_SERVER_NAME",
        default_value = "istiod.istio-system.svc"
    )]
    pub xds_server_name: String,

    /// The mesh's trust bundle (one or more PEM roots; the `istio-ca-root-cert` ConfigMap,
    /// or `root-cert.pem` of the controller's `--ca-dir`). It verifies the control plane
    /// and every peer; it is read again when it changes (root rotation without restart).
    #[arg(
        long,
        env = "WEFT_CA_ROOT_CERT",
        default_value = "/var/run/secrets/istio/root-cert.pem"
    )]
    pub ca_root_cert: std::path::PathBuf,

    /// The token that proves the workload's identity to the CA (a projected ServiceAccount
    /// token with audience `istio-ca`, or a bootstrap token in local mode). Read at every
    /// request, so a refreshed token is used.
    #[arg(
        long,
        env = "WEFT_CA_TOKEN_FILE",
        default_value = "/var/run/secrets/tokens/istio-token"
    )]
    pub ca_token_file: std::path::PathBuf,

    /// The certificate lifetime to ask for; `0s`: the CA's default (24h in Weft and Istio).
    #[arg(long, env = "SECRET_TTL", default_value = "0s", value_parser = parse_duration)]
    pub workload_cert_ttl: Duration,

    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    pub log: String,

    /// Worker threads of the data path (Istio's sidecar default: 2); 0 is one per CPU the
    /// process may use (Istio's `concurrency: 0`).
    #[arg(long, env = "WEFT_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub concurrency: u16,

    /// Seconds in-flight requests get to finish once the proxy drains (SIGTERM,
    /// `POST /quitquitquit`) or a listener is removed (Envoy's `--drain-time-s`).
    #[arg(long = "drain-time-s", env = "WEFT_DRAIN_TIME_S", default_value_t = 5)]
    pub drain_time_s: u64,

    /// Connections each traffic listener (outbound, inbound) serves at once; one more is
    /// accepted and closed at once, with a warning at most every 10 s.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_LISTENER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_listener: u32,

    /// Connections the admin (15000), health (15021) and status (15020) servers each serve at once.
    #[arg(long, env = "WEFT_ADMIN_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,

    /// Downstream connections of all listeners together (Envoy's
    /// `global_downstream_max_connections`); default: three quarters of the open-file limit.
    #[arg(long, env = "WEFT_MAX_DOWNSTREAM_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_downstream_connections: Option<u32>,

    /// Time a client has to send a request's headers (from the connection's start, or from
    /// the end of its previous request) before the connection is closed, when the
    /// listener's HttpConnectionManager sets no `request_headers_timeout`; also bounds the
    /// admin and health servers. `0s` disables it. Units: ms, s, m, h.
    #[arg(long, env = "WEFT_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Prometheus port: `/stats/prometheus` (Istio's metrics and the proxy's own), bound on
    /// the instance IP as the admin port; 0 turns it off (the admin port still serves it).
    #[arg(long, env = "WEFT_STATS_PORT", default_value_t = 15090)]
    pub stats_port: u16,

    /// Istio's standard metrics (`istio_requests_total`, …) and the peer metadata exchange
    /// that fills their peer labels. `false` records nothing (for measuring their cost).
    #[arg(long, env = "WEFT_ISTIO_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub istio_metrics: bool,

    /// The workload (Deployment, StatefulSet, Job, …) the pod belongs to: the metrics'
    /// `*_workload` label (Istio's `ISTIO_META_WORKLOAD_NAME`, which the injector sets).
    /// Default: `--workload-name` (the pod's name).
    #[arg(long, env = "ISTIO_META_WORKLOAD_NAME")]
    pub workload: Option<String>,

    /// The cluster the workload runs in: the metrics' `*_cluster` label (Istio's
    /// `ISTIO_META_CLUSTER_ID`).
    #[arg(long, env = "ISTIO_META_CLUSTER_ID", default_value = "Kubernetes")]
    pub cluster_id: String,

    /// Series of each kind of Istio metric (HTTP, TCP) before new ones are recorded under an
    /// `unknown` peer: peer metadata comes from the network, and the cap bounds its memory.
    #[arg(long, env = "WEFT_MAX_METRIC_SERIES", default_value_t = crate::metrics::DEFAULT_MAX_SERIES)]
    pub max_metric_series: usize,

    /// How often sampled requests' spans are sent to their collector (Envoy's OpenTelemetry
    /// tracer sends every 5 s); the collector comes from xDS (the listeners' `tracing`).
    #[arg(long, env = "WEFT_TRACE_FLUSH_INTERVAL", default_value = "5s", value_parser = parse_flush_interval)]
    pub trace_flush_interval: Duration,

    /// Without a command the proxy runs; `init` programs the pod's traffic capture instead,
    /// `wait` waits for a running proxy to be ready.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `weft-proxy` does besides proxying.
#[derive(Debug, Clone, clap::Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start; a Box would buy nothing"
)]
pub enum Command {
    /// Program the pod's traffic capture (iptables), as the injected init container does;
    /// flags as Istio's `istio-iptables`.
    Init(crate::capture::InitArgs),
    /// Wait until the proxy's `/healthz/ready` answers 200: the injected proxy's `postStart`
    /// hook where Kubernetes has no native sidecars (Istio's `pilot-agent wait`).
    Wait(WaitArgs),
}

/// `weft-proxy wait`: where the proxy's health server is (the proxy's own flags and
/// environment), and for how long to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Give up (exit 1) when the proxy is not ready after this long (Istio's default, 60s).
    /// Units: ms, s, m, h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The proxy's IP, which its health server binds; default: `INSTANCE_IP`, else 127.0.0.1.
    #[arg(long, env = "WEFT_INSTANCE_IP")]
    pub instance_ip: Option<IpAddr>,

    /// The proxy's health port (`/healthz/ready`).
    #[arg(long, env = "WEFT_HEALTH_PORT", default_value_t = 15021)]
    pub health_port: u16,
}

/// Parses `--locality`: `region[/zone[/subzone]]`, each part a non-empty label without
/// spaces.
pub fn parse_locality(text: &str) -> Result<Locality, String> {
    let parts: Vec<&str> = text.split('/').collect();
    if parts.len() > 3 {
        return Err(format!("{text:?}: at most region/zone/subzone"));
    }
    if let Some(bad) = parts
        .iter()
        .find(|part| part.is_empty() || part.chars().any(char::is_whitespace))
    {
        return Err(format!(
            "{text:?}: {bad:?} is not a region, zone or subzone name (empty or has spaces)"
        ));
    }
    let part = |i: usize| parts.get(i).map(|p| p.to_string()).unwrap_or_default();
    Ok(Locality {
        region: part(0),
        zone: part(1),
        sub_zone: part(2),
    })
}

/// Parses `500ms`, `30s`, `5m`, `1h` or `0`. Written here rather than taken from
/// `weft_api::duration` (the controller's Go-duration parser): weft-api brings k8s-openapi
/// and serde_yaml, which the proxy does not otherwise need; one number and one unit is
/// all its flags take.
/// A flush interval: a duration of at least 1 ms.
fn parse_flush_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{text:?} is shorter than 1ms"));
    }
    Ok(d)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Workload labels, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(pub Vec<(String, String)>);

impl FromStr for Labels {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(format!("label {item:?} is not of the form key=value"));
            };
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("label {item:?} has an empty key"));
            }
            if out
                .iter()
                .any(|(existing, _): &(String, String)| existing == k)
            {
                return Err(format!("label key {k:?} is given twice"));
            }
            out.push((k.to_string(), v.trim().to_string()));
        }
        Ok(Labels(out))
    }
}

fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

impl Args {
    /// The worker threads to run: `--concurrency`, or one per CPU for 0.
    pub fn workers(&self) -> usize {
        match self.concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => usize::from(n),
        }
    }

    /// The drain period (`--drain-time-s`).
    pub fn drain_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_time_s)
    }

    /// The connection limits and timeouts of every listener, from the flags.
    pub fn downstream_limits(&self) -> crate::limits::DownstreamLimits {
        let as_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let open_files = weft_net::raise_open_file_limit();
        crate::limits::DownstreamLimits {
            max_connections_per_listener: as_usize(self.max_connections_per_listener),
            admin_max_connections: as_usize(self.admin_max_connections),
            header_read_timeout: Some(self.header_read_timeout).filter(|t| !t.is_zero()),
            budget: match self.max_downstream_connections {
                Some(total) => weft_net::ConnectionBudget::new(as_usize(total)),
                None => weft_net::ConnectionBudget::from_open_file_limit(open_files),
            },
        }
    }

    /// The identity settings when `--ca-address` is set; `Err` names a bad flag.
    pub fn identity_config(&self) -> Option<Result<crate::identity::IdentityConfig, String>> {
        let ca_address = self.ca_address.clone()?;
        Some(
            weft_identity::SpiffeId::new(
                &self.trust_domain,
                &self.namespace,
                &self.service_account,
            )
            .map_err(|err| format!("--trust-domain/--namespace/--service-account: {err}"))
            .map(|id| crate::identity::IdentityConfig {
                id,
                ca_address,
                server_name: self.xds_server_name.clone(),
                root_cert: self.ca_root_cert.clone(),
                token_file: self.ca_token_file.clone(),
                lifetime: Some(self.workload_cert_ttl).filter(|d| !d.is_zero()),
            }),
        )
    }

    /// Who this proxy is, for its metrics' labels and the peer metadata it sends.
    pub fn metrics_settings(&self) -> crate::metrics::Settings {
        let labels: std::collections::BTreeMap<String, String> =
            self.labels.0.iter().cloned().collect();
        crate::metrics::Settings {
            enabled: self.istio_metrics,
            local: crate::metrics::WorkloadLabels::from_pod(
                self.workload.as_deref().unwrap_or(&self.workload_name),
                &self.namespace,
                &labels,
                &self.cluster_id,
                &self.service_account,
            ),
            pod: self.workload_name.clone(),
            node_id: self.node_id(),
            trust_domain: self.trust_domain.clone(),
            max_series: self.max_metric_series,
        }
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            format!(
                "sidecar~{}~{}.{ns}~{ns}.svc.cluster.local",
                self.instance_ip,
                self.workload_name,
                ns = self.namespace
            )
        })
    }

    /// The Envoy `Node` sent on every ADS stream, with Weft's metadata keys.
    pub fn node(&self) -> Node {
        let labels = Struct {
            fields: self
                .labels
                .0
                .iter()
                .map(|(k, v)| (k.clone(), string(v.as_str())))
                .collect(),
        };
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("NAMESPACE".to_string(), string(self.namespace.as_str()));
        fields.insert(
            "WORKLOAD_NAME".to_string(),
            string(self.workload_name.as_str()),
        );
        fields.insert(
            "LABELS".to_string(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
        fields.insert(
            "INSTANCE_IPS".to_string(),
            string(self.instance_ip.to_string()),
        );
        fields.insert(
            "WEFT_OUTBOUND_PORT".to_string(),
            string(self.outbound_port.to_string()),
        );
        fields.insert(
            "WEFT_INBOUND_PORT".to_string(),
            string(self.inbound_port.to_string()),
        );
        if let Some(p) = self.app_port {
            fields.insert("WEFT_APP_PORT".to_string(), string(p.to_string()));
        }
        fields.insert(
            weft_xds::contract::INTERCEPTION_MODE.to_string(),
            string(self.interception_mode.as_str()),
        );
        fields.insert(
            "SERVICE_ACCOUNT".to_string(),
            string(self.service_account.as_str()),
        );
        if self.dns_capture {
            // Istio's agent says so too; the control plane sends NDS to whoever asks for it.
            fields.insert("DNS_CAPTURE".to_string(), string("true"));
        }
        Node {
            id: self.node_id(),
            cluster: format!("{}.{}", self.workload_name, self.namespace),
            metadata: Some(Struct {
                fields: fields.into_iter().collect(),
            }),
            user_agent_name: "weft-proxy".to_string(),
            locality: self.locality.as_ref().map(|l| {
                envoy_types::pb::envoy::config::core::v3::Locality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    sub_zone: l.sub_zone.clone(),
                }
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_parses_and_reaches_the_node() {
        let l = parse_locality("us-east/us-east-1a/rack1").unwrap();
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()),
            ("us-east", "us-east-1a", "rack1")
        );
        assert_eq!(parse_locality("eu").unwrap().zone, "");
        for bad in ["", "a//b", "a/b/c/d", "a b"] {
            assert!(parse_locality(bad).is_err(), "{bad:?}");
        }
        use clap::Parser as _;
        let args = Args::try_parse_from(["weft-proxy", "--locality", "r/z"]).unwrap();
        let node = args.node().locality.unwrap();
        assert_eq!(
            (
                node.region.as_str(),
                node.zone.as_str(),
                node.sub_zone.as_str()
            ),
            ("r", "z", "")
        );
        assert!(
            Args::try_parse_from(["weft-proxy"])
                .unwrap()
                .node()
                .locality
                .is_none()
        );
    }

    #[test]
    fn labels_parse_and_reject() {
        assert_eq!("".parse::<Labels>().unwrap(), Labels::default());
        let l: Labels = "app=reviews, version=v1".parse().unwrap();
        assert_eq!(
            l.0,
            vec![
                ("app".into(), "reviews".into()),
                ("version".into(), "v1".into())
            ]
        );
        assert!("app".parse::<Labels>().unwrap_err().contains("key=value"));
        assert!("=x".parse::<Labels>().unwrap_err().contains("empty key"));
        assert!("a=1,a=2".parse::<Labels>().unwrap_err().contains("twice"));
    }

    #[test]
    fn concurrency_zero_is_one_worker_per_cpu() {
        let parse = |n: &str| Args::try_parse_from(["weft-proxy", "--concurrency", n]);
        assert_eq!(parse("3").expect("3").workers(), 3);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(parse("0").expect("0").workers(), cpus);
        assert!(parse("257").is_err());
    }

    #[test]
    fn node_carries_istio_id_and_metadata() {
        let args = Args::try_parse_from([
            "weft-proxy",
            "--workload-name",
            "reviews-v1",
            "--namespace",
            "bookinfo",
            "--instance-ip",
            "10.1.2.3",
            "--labels",
            "app=reviews",
            "--app-port",
            "9080",
        ])
        .unwrap();
        let node = args.node();
        assert_eq!(
            node.id,
            "sidecar~10.1.2.3~reviews-v1.bookinfo~bookinfo.svc.cluster.local"
        );
        let md = node.metadata.unwrap().fields;
        let s = |k: &str| match &md[k].kind {
            Some(Kind::StringValue(s)) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(s("NAMESPACE"), "bookinfo");
        assert_eq!(s("INSTANCE_IPS"), "10.1.2.3");
        assert_eq!(s("WEFT_OUTBOUND_PORT"), "15001");
        assert_eq!(s("WEFT_INBOUND_PORT"), "15006");
        assert_eq!(s("WEFT_APP_PORT"), "9080");
        assert!(
            matches!(&md["LABELS"].kind, Some(Kind::StructValue(l)) if l.fields.contains_key("app"))
        );
    }

    #[test]
    fn no_app_port_means_no_metadata_key() {
        let args = Args::try_parse_from(["weft-proxy"]).unwrap();
        assert!(
            !args
                .node()
                .metadata
                .unwrap()
                .fields
                .contains_key("WEFT_APP_PORT")
        );
    }
}
