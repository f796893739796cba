//! `weftctl proxy-status`: whether every connected proxy has the config its controller sent
//! it, per xDS type: `SYNCED`, `NOT SENT`, or `STALE` with the reason (the proxy's NACK, or no
//! ACK yet) and since when; read from each controller's `/debug/syncz` and `/version`.
//! `weftctl proxy-status <proxy>` shows one proxy in detail.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::remote::{self, Controller, ControllerArgs, RemoteError};
use crate::table::{self, Output, Table};

/// How much of a NACK's message a status table shows (`proxy-status <proxy>` shows it all).
const TABLE_MESSAGE: usize = 60;

/// The types a status table always has a column for, in istioctl's order; NDS and SDS get
/// one when a proxy subscribed to them.
const COLUMNS: [&str; 4] = ["CDS", "LDS", "EDS", "RDS"];
const OPTIONAL_COLUMNS: [&str; 2] = ["NDS", "SDS"];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One proxy to show in detail: its node id, `<pod>.<namespace>`, or `<pod>` alone when
    /// no other proxy has that pod name.
    pub proxy: Option<String>,
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long to wait for each answer.
    #[arg(long, default_value = "10s", value_parser = remote::parse_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Some controllers answered (their proxies were printed), these did not.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Controllers(Vec<RemoteError>),
    #[error("no proxy {wanted:?} is connected to {controllers}; connected: {connected}")]
    NoSuchProxy {
        wanted: String,
        controllers: String,
        connected: String,
    },
    #[error("{wanted:?} names several proxies: {matches}; give one's node id")]
    Ambiguous { wanted: String, matches: String },
}

/// One proxy as `/debug/syncz` lists it (`weft_xds::ProxyStatus`).
#[derive(Debug, Clone, Deserialize)]
pub struct SynczProxy {
    pub id: String,
    #[serde(default)]
    pub connected_for_secs: u64,
    #[serde(default)]
    pub types: Vec<SynczType>,
}

/// One type of one proxy (`weft_xds::TypeStatus`). Controllers before `nack` and the ages
/// existed are read too.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SynczType {
    pub type_url: String,
    #[serde(default, rename = "type")]
    pub short_name: Option<String>,
    #[serde(default)]
    pub sent_version: String,
    #[serde(default)]
    pub sent_nonce: Option<String>,
    #[serde(default)]
    pub sent_ago_ms: Option<u64>,
    #[serde(default)]
    pub acked_version: Option<String>,
    /// `None` from a controller without the field: the versions decide alone.
    #[serde(default)]
    pub acked_nonce: Option<String>,
    #[serde(default)]
    pub acked_ago_ms: Option<u64>,
    /// `None`: a controller without the field; `Some(None)`: no outstanding NACK.
    #[serde(default, deserialize_with = "present")]
    pub nack: Option<Option<SynczNack>>,
    #[serde(default)]
    pub last_nack: Option<String>,
    #[serde(default)]
    pub resource_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynczNack {
    pub version: String,
    pub message: String,
    #[serde(default)]
    pub ago_ms: Option<u64>,
}

/// Tells a field that is there (even `null`) from one that is missing.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl SynczType {
    /// `CDS`, `LDS`, …: the controller's name for the type, else one from its URL.
    pub fn short(&self) -> String {
        if let Some(short) = self.short_name.as_deref().filter(|s| *s != "unknown") {
            return short.to_string();
        }
        let name = self.type_url.rsplit('/').next().unwrap_or_default();
        match name {
            "envoy.config.cluster.v3.Cluster" => "CDS",
            "envoy.config.listener.v3.Listener" => "LDS",
            "envoy.config.endpoint.v3.ClusterLoadAssignment" => "EDS",
            "envoy.config.route.v3.RouteConfiguration" => "RDS",
            "envoy.extensions.transport_sockets.tls.v3.Secret" => "SDS",
            "istio.networking.nds.v1.NameTable" => "NDS",
            other => other,
        }
        .to_string()
    }

    /// The outstanding NACK: the controller's, or for a controller without that field the
    /// last NACK (`"version <v>: <message>"`) while the proxy has not ACKed what was sent.
    fn outstanding_nack(&self) -> Option<SynczNack> {
        match &self.nack {
            Some(nack) => nack.clone(),
            None => {
                let (version, message) = self
                    .last_nack
                    .as_deref()?
                    .strip_prefix("version ")?
                    .split_once(": ")?;
                Some(SynczNack {
                    version: version.to_string(),
                    message: message.to_string(),
                    ago_ms: None,
                })
            }
        }
    }
}

/// Where one type of one proxy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// The proxy ACKed the version last sent.
    Synced,
    /// Nothing of the type was sent yet (or the proxy does not subscribe to it).
    NotSent,
    /// The proxy rejected the version last sent.
    Rejected(SynczNack),
    /// The version last sent is not ACKed yet (nor NACKed).
    Waiting { sent_ago_ms: Option<u64> },
}

/// The status decision: whether the proxy's last ACK accepted the last response sent, and
/// why not. The nonces tell which response an ACK answers, as in Istio's proxy-status: the
/// same version can be sent again (a fix restoring what a rejected push replaced), and an
/// ACK of it from before does not answer the new push. The versions tell whether it was
/// accepted: after a NACK, the proxy's requests carry the rejected response's nonce with
/// the older version it still runs. A controller that does not report the ACKed nonce is
/// judged by the versions alone.
pub fn decide(t: &SynczType) -> Sync {
    if t.sent_version.is_empty() {
        return Sync::NotSent;
    }
    let answered_last_sent = match (&t.acked_nonce, &t.sent_nonce) {
        (Some(acked), Some(sent)) => acked == sent,
        _ => true,
    };
    if answered_last_sent && t.acked_version.as_deref() == Some(t.sent_version.as_str()) {
        return Sync::Synced;
    }
    match t.outstanding_nack() {
        Some(nack) if nack.version == t.sent_version => Sync::Rejected(nack),
        _ => Sync::Waiting {
            sent_ago_ms: t.sent_ago_ms,
        },
    }
}

impl Sync {
    /// `SYNCED`, `NOT SENT` or `STALE`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Synced => "SYNCED",
            Self::NotSent => "NOT SENT",
            Self::Rejected(_) | Self::Waiting { .. } => "STALE",
        }
    }

    /// The status with its reason, the NACK's message cut to `max_message` characters:
    /// `STALE (12s ago; NACK: <message>)`, `STALE (sent 3s ago, no ACK)`.
    pub fn summary(&self, max_message: usize) -> String {
        match self {
            Self::Synced | Self::NotSent => self.status().to_string(),
            Self::Rejected(nack) => {
                let message = table::shorten(&nack.message, max_message);
                match nack.ago_ms {
                    Some(ago) => format!("STALE ({} ago; NACK: {message})", table::age(ago)),
                    None => format!("STALE (NACK: {message})"),
                }
            }
            Self::Waiting {
                sent_ago_ms: Some(ago),
            } => format!("STALE (sent {} ago, no ACK)", table::age(*ago)),
            Self::Waiting { sent_ago_ms: None } => "STALE (no ACK)".to_string(),
        }
    }
}

/// The `-o json|yaml` document, and what the tables are made from.
#[derive(Debug, Serialize)]
pub struct Report {
    pub controllers: Vec<ControllerReport>,
    pub proxies: Vec<ProxyReport>,
}

#[derive(Debug, Serialize)]
pub struct ControllerReport {
    /// `host:port`, or `<pod>.<namespace>`.
    pub name: String,
    /// The URL its `/debug/syncz` was read from.
    pub address: String,
    /// Its version (`/version`), when it says.
    pub version: Option<String>,
    /// Why it could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProxyReport {
    /// `<pod>.<namespace>` of an Istio node id, else the id.
    pub name: String,
    pub id: String,
    pub controller: String,
    pub controller_version: Option<String>,
    pub connected_for_secs: u64,
    pub types: Vec<TypeReport>,
}

#[derive(Debug, Serialize)]
pub struct TypeReport {
    #[serde(rename = "type")]
    pub short_name: String,
    pub type_url: String,
    /// `SYNCED`, `NOT SENT` or `STALE`.
    pub status: &'static str,
    /// The status as the table shows it, with the whole NACK message.
    pub summary: String,
    pub sent_version: String,
    pub sent_ago_ms: Option<u64>,
    pub acked_version: Option<String>,
    pub acked_ago_ms: Option<u64>,
    /// The outstanding NACK.
    pub nack: Option<SynczNack>,
    /// The stream's last NACK, also once ACKed past.
    pub last_nack: Option<String>,
    pub resource_count: usize,
    #[serde(skip)]
    pub sync: Sync,
}

/// A proxy's short name: `<pod>.<namespace>` of Istio's node id
/// (`sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`), else the id.
pub fn proxy_name(id: &str) -> String {
    match id.split('~').collect::<Vec<_>>().as_slice() {
        [_, _, name, _] if !name.is_empty() => (*name).to_string(),
        _ => id.to_string(),
    }
}

impl ProxyReport {
    pub fn new(proxy: SynczProxy, controller: &ControllerReport) -> Self {
        let types = proxy
            .types
            .iter()
            .map(|t| {
                let sync = decide(t);
                TypeReport {
                    short_name: t.short(),
                    type_url: t.type_url.clone(),
                    status: sync.status(),
                    summary: sync.summary(usize::MAX),
                    sent_version: t.sent_version.clone(),
                    sent_ago_ms: t.sent_ago_ms,
                    acked_version: t.acked_version.clone(),
                    acked_ago_ms: t.acked_ago_ms,
                    nack: t.outstanding_nack(),
                    last_nack: t.last_nack.clone(),
                    resource_count: t.resource_count,
                    sync,
                }
            })
            .collect();
        Self {
            name: proxy_name(&proxy.id),
            id: proxy.id,
            controller: controller.name.clone(),
            controller_version: controller.version.clone(),
            connected_for_secs: proxy.connected_for_secs,
            types,
        }
    }

    fn sync_of(&self, short: &str) -> Option<&TypeReport> {
        self.types.iter().find(|t| t.short_name == short)
    }
}

/// Which proxies of `proxies` `wanted` names: its node id, `<pod>.<namespace>`, or a pod name
/// that only one proxy has. Several streams of one proxy (a reconnect in progress) all match.
pub fn select<'a>(proxies: &'a [ProxyReport], wanted: &str) -> Vec<&'a ProxyReport> {
    let exact: Vec<&ProxyReport> = proxies
        .iter()
        .filter(|p| p.id == wanted || p.name == wanted)
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    let prefix = format!("{wanted}.");
    proxies
        .iter()
        .filter(|p| {
            p.name
                .strip_prefix(&prefix)
                .is_some_and(|namespace| !namespace.contains('.'))
        })
        .collect()
}

/// The status table: one row per proxy, a column per type.
pub fn render_table(report: &Report) -> String {
    let mut columns: Vec<&str> = COLUMNS.to_vec();
    for optional in OPTIONAL_COLUMNS {
        if report.proxies.iter().any(|p| p.sync_of(optional).is_some()) {
            columns.push(optional);
        }
    }
    let mut header = vec!["NAME"];
    header.extend(&columns);
    header.extend(["CONTROLLER", "VERSION"]);
    let mut table = Table::new(header);
    for proxy in &report.proxies {
        let mut row = vec![proxy.name.clone()];
        for column in &columns {
            row.push(match proxy.sync_of(column) {
                Some(t) => t.sync.summary(TABLE_MESSAGE),
                None => Sync::NotSent.status().to_string(),
            });
        }
        row.push(proxy.controller.clone());
        row.push(
            proxy
                .controller_version
                .clone()
                .unwrap_or_else(|| "-".into()),
        );
        table.row(row);
    }
    table.render()
}

/// One proxy in detail: every type with its versions and ages, and each NACK in full.
pub fn render_detail(proxy: &ProxyReport) -> String {
    let ago = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), |ms| table::age(ms) + " ago");
    let mut out = format!(
        "Proxy:       {}\nNode ID:     {}\nController:  {} (version {})\nConnected:   {} ago\n\n",
        proxy.name,
        proxy.id,
        proxy.controller,
        proxy.controller_version.as_deref().unwrap_or("unknown"),
        table::age(proxy.connected_for_secs * 1000),
    );
    let mut types = Table::new([
        "TYPE",
        "STATUS",
        "SENT VERSION",
        "SENT",
        "ACKED VERSION",
        "ACKED",
        "RESOURCES",
    ]);
    for t in &proxy.types {
        types.row([
            t.short_name.clone(),
            t.status.to_string(),
            non_empty(&t.sent_version),
            ago(t.sent_ago_ms),
            t.acked_version.as_deref().map_or("-".into(), non_empty),
            ago(t.acked_ago_ms),
            t.resource_count.to_string(),
        ]);
    }
    out.push_str(&types.render());
    for t in &proxy.types {
        match &t.sync {
            Sync::Rejected(nack) => {
                out.push_str(&format!(
                    "\n{}: version {} rejected{}:\n  {}\n",
                    t.short_name,
                    nack.version,
                    nack.ago_ms
                        .map_or(String::new(), |ms| format!(" {} ago", table::age(ms))),
                    nack.message
                ));
            }
            Sync::Waiting { sent_ago_ms } => out.push_str(&format!(
                "\n{}: version {} sent {}, not ACKed yet\n",
                t.short_name,
                t.sent_version,
                ago(*sent_ago_ms)
            )),
            Sync::Synced | Sync::NotSent => {
                if let Some(last) = &t.last_nack {
                    out.push_str(&format!(
                        "\n{}: an earlier NACK on this connection, since got past:\n  {last}\n",
                        t.short_name
                    ));
                }
            }
        }
    }
    out
}

fn non_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// Reads every controller's status; a controller that cannot be read is in the report with
/// its error.
async fn gather(controllers: Vec<Controller>, timeout: Duration) -> (Report, Vec<RemoteError>) {
    #[derive(Deserialize)]
    struct Version {
        version: String,
    }
    let mut report = Report {
        controllers: Vec::new(),
        proxies: Vec::new(),
    };
    let mut errors = Vec::new();
    for controller in controllers {
        let mut entry = ControllerReport {
            name: controller.name.clone(),
            address: controller.remote.url("/debug/syncz"),
            version: None,
            error: None,
        };
        match controller
            .remote
            .get_json::<Vec<SynczProxy>>("/debug/syncz", timeout)
            .await
        {
            Ok(proxies) => {
                // A controller from before /version is still worth showing.
                entry.version = controller
                    .remote
                    .get_json::<Version>("/version", timeout)
                    .await
                    .ok()
                    .map(|v| v.version);
                report
                    .proxies
                    .extend(proxies.into_iter().map(|p| ProxyReport::new(p, &entry)));
            }
            Err(error) => {
                entry.error = Some(error.to_string());
                errors.push(error);
            }
        }
        report.controllers.push(entry);
    }
    report
        .proxies
        .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    (report, errors)
}

/// One line about the proxy of pod `namespace/pod` (for `weftctl describe pod`): `SYNCED`
/// when every type is, else each type that is not with its reason; `unknown (…)` when no
/// controller answers or none has the proxy.
pub async fn sync_of(
    args: &ControllerArgs,
    pod: &str,
    namespace: &str,
    timeout: Duration,
) -> String {
    let controllers = match remote::controllers(args, timeout).await {
        Ok(controllers) => controllers,
        Err(error) => return format!("unknown ({error})"),
    };
    let (report, errors) = gather(controllers, timeout).await;
    let wanted = format!("{pod}.{namespace}");
    let Some(proxy) = select(&report.proxies, &wanted).into_iter().next() else {
        return match errors.first() {
            Some(error) => format!("unknown ({error})"),
            None => "unknown (not connected to any controller)".to_string(),
        };
    };
    let stale: Vec<String> = proxy
        .types
        .iter()
        .filter(|t| t.status != "SYNCED" && t.status != "NOT SENT")
        .map(|t| format!("{} {}", t.short_name, t.summary))
        .collect();
    if stale.is_empty() {
        "SYNCED".to_string()
    } else {
        stale.join("; ")
    }
}

/// `weftctl proxy-status`: prints the table (or the one proxy), then fails if any
/// controller could not be read.
pub async fn run(args: Args) -> Result<(), StatusError> {
    let controllers = remote::controllers(&args.controller, args.timeout).await?;
    let names = controllers
        .iter()
        .map(|c| c.remote.url(""))
        .collect::<Vec<_>>()
        .join(", ");
    let (mut report, mut errors) = gather(controllers, args.timeout).await;
    if report.controllers.iter().all(|c| c.error.is_some()) {
        return Err(if errors.len() == 1 {
            StatusError::Remote(errors.remove(0))
        } else {
            StatusError::Controllers(errors)
        });
    }
    if let Some(wanted) = &args.proxy {
        let chosen: std::collections::BTreeSet<String> = select(&report.proxies, wanted)
            .into_iter()
            .map(|p| p.id.clone())
            .collect();
        if chosen.is_empty() && errors.is_empty() {
            let mut connected: Vec<&str> = report.proxies.iter().map(|p| p.name.as_str()).collect();
            let more = connected.len().saturating_sub(10);
            connected.truncate(10);
            let mut connected = connected.join(", ");
            if connected.is_empty() {
                connected = "none".into();
            } else if more > 0 {
                connected.push_str(&format!(" and {more} more"));
            }
            return Err(StatusError::NoSuchProxy {
                wanted: wanted.clone(),
                controllers: names,
                connected,
            });
        }
        if chosen.len() > 1 {
            return Err(StatusError::Ambiguous {
                wanted: wanted.clone(),
                matches: chosen.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        report.proxies.retain(|p| chosen.contains(&p.id));
        match table::document(args.output, &report) {
            Some(document) => print!("{document}"),
            None => {
                let details: Vec<String> = report.proxies.iter().map(render_detail).collect();
                print!("{}", details.join("\n"));
            }
        }
    } else {
        match table::document(args.output, &report) {
            Some(document) => print!("{document}"),
            None => print!("{}", render_table(&report)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StatusError::Controllers(errors))
    }
}

#[cfg(test)]
#[path = "proxy_status_tests.rs"]
mod tests;
