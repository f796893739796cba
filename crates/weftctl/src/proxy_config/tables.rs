//! The rows of `weftctl proxy-config`'s tables, made from the proxy's admin `/config_dump`
//! (listeners, routes, clusters, endpoints) and `/certs` (secret), joined with the
//! controller's `/debug/configz` for the VirtualService and DestinationRule of each host.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::table::{self, Table};

/// The tables' view of a proxy's config, read from Envoy's JSON by `envoy.rs`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfigDump {
    pub active_listeners: Vec<DumpListener>,
    pub route_tables: Vec<DumpRouteTable>,
    pub active_clusters: Vec<DumpCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpListener {
    pub name: String,
    pub address: String,
    pub chains: Vec<DumpChain>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpChain {
    #[serde(rename = "match")]
    pub matcher: DumpMatch,
    pub tls: bool,
    /// `{"routes": "<name>"}` (or `"inline:<name>"`), or `{"tcp_proxy": "<cluster>"}`.
    pub network: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpMatch {
    pub destination_port: Option<u32>,
    pub prefix_ranges: Vec<String>,
    pub server_names: Vec<String>,
    pub transport_protocol: Option<String>,
    pub application_protocols: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpRouteTable {
    pub name: String,
    pub virtual_hosts: Vec<DumpVirtualHost>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpVirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<DumpRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpRoute {
    pub name: String,
    /// `prefix /`, `path /x`, `regex …`, `path_separated_prefix /p`.
    #[serde(rename = "match")]
    pub matcher: String,
    pub headers: usize,
    pub query_parameters: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DumpCluster {
    pub name: String,
    /// `EDS(<service name>)`, `STATIC`, `STRICT_DNS`, `LOGICAL_DNS`, `ORIGINAL_DST`.
    #[serde(rename = "type")]
    pub kind: String,
    pub warm: bool,
    pub outlier_detection: bool,
    pub lb_policy: String,
    pub endpoints: Vec<DumpEndpoint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DumpEndpoint {
    pub address: String,
    pub weight: u32,
    pub ejected: bool,
}

/// The VirtualService and DestinationRule the controller uses for each host
/// (`/debug/configz`'s `services`), as `<name>.<namespace>`.
#[derive(Debug, Default)]
pub struct Policies {
    by_host: HashMap<String, (Option<String>, Option<String>)>,
}

impl Policies {
    /// From a `/debug/configz` document.
    pub fn from_configz(configz: &serde_json::Value) -> Self {
        let mut by_host = HashMap::new();
        for service in configz["services"].as_array().into_iter().flatten() {
            let Some(host) = service["hostname"].as_str() else {
                continue;
            };
            let policy = |field: &str| service[field].as_str().map(short_key);
            by_host.insert(
                host.to_string(),
                (policy("virtualService"), policy("destinationRule")),
            );
        }
        Self { by_host }
    }

    fn virtual_service(&self, host: &str) -> Option<String> {
        self.by_host.get(host).and_then(|(vs, _)| vs.clone())
    }

    fn destination_rule(&self, host: &str) -> Option<String> {
        self.by_host.get(host).and_then(|(_, dr)| dr.clone())
    }
}

/// `VirtualService default/reviews` → `reviews.default` (istioctl's way).
fn short_key(key: &str) -> String {
    match key.rsplit_once(' ').and_then(|(_, k)| k.split_once('/')) {
        Some((namespace, name)) => format!("{name}.{namespace}"),
        None => key.to_string(),
    }
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// For JSON: a policy column the controller was asked for (`Some`, maybe `null`), or left
/// out when it was not.
fn known(
    policies: Option<&Policies>,
    lookup: impl Fn(&Policies) -> Option<String>,
) -> Option<Option<String>> {
    policies.map(lookup)
}

/// One filter chain of one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerRow {
    pub listener: String,
    pub address: String,
    pub port: String,
    /// The chain's match (istioctl's form: `Addr: *:9080; Trans: tls; SNI: …; App: …`, or `ALL`).
    #[serde(rename = "match")]
    pub matcher: String,
    /// Whether the chain terminates TLS (mutual TLS from sidecars).
    pub tls: bool,
    /// `Route: <route config>` or `Cluster: <cluster>` (TCP).
    pub destination: String,
}

pub fn listener_rows(dump: &ConfigDump) -> Vec<ListenerRow> {
    let mut rows = Vec::new();
    for listener in &dump.active_listeners {
        let (address, port) = match listener.address.rsplit_once(':') {
            Some((ip, port)) => (ip.trim_matches(['[', ']']).to_string(), port.to_string()),
            None => (listener.address.clone(), String::new()),
        };
        for chain in &listener.chains {
            rows.push(ListenerRow {
                listener: listener.name.clone(),
                address: address.clone(),
                port: port.clone(),
                matcher: chain_match(&chain.matcher),
                tls: chain.tls,
                destination: chain_destination(&chain.network),
            });
        }
    }
    rows
}

fn chain_match(m: &DumpMatch) -> String {
    let mut parts = Vec::new();
    if m.destination_port.is_some() || !m.prefix_ranges.is_empty() {
        let addresses = if m.prefix_ranges.is_empty() {
            "*".to_string()
        } else {
            m.prefix_ranges.join(",")
        };
        let port = m
            .destination_port
            .map_or("*".to_string(), |p| p.to_string());
        parts.push(format!("Addr: {addresses}:{port}"));
    }
    if let Some(transport) = &m.transport_protocol {
        let envoy = match transport.as_str() {
            "Tls" => "tls",
            "RawBuffer" => "raw_buffer",
            other => other,
        };
        parts.push(format!("Trans: {envoy}"));
    }
    if !m.server_names.is_empty() {
        parts.push(format!("SNI: {}", m.server_names.join(",")));
    }
    if !m.application_protocols.is_empty() {
        parts.push(format!("App: {}", m.application_protocols.join(",")));
    }
    if parts.is_empty() {
        "ALL".to_string()
    } else {
        parts.join("; ")
    }
}

fn chain_destination(network: &serde_json::Value) -> String {
    if let Some(routes) = network["routes"].as_str() {
        return match routes.strip_prefix("inline:") {
            Some(name) => format!("Route: {name} (inline)"),
            None => format!("Route: {routes}"),
        };
    }
    if let Some(cluster) = network["tcp_proxy"].as_str() {
        return format!("Cluster: {cluster}");
    }
    network.to_string()
}

pub fn listeners_table(rows: &[ListenerRow]) -> String {
    let mut table = Table::new(["LISTENER", "ADDRESS", "PORT", "MATCH", "TLS", "DESTINATION"]);
    for r in rows {
        let tls = if r.tls { "yes" } else { "no" };
        table.row([
            r.listener.as_str(),
            &r.address,
            &r.port,
            &r.matcher,
            tls,
            &r.destination,
        ]);
    }
    table.render()
}

/// One route of one virtual host of one route configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteRow {
    pub name: String,
    pub virtual_host: String,
    pub domains: Vec<String>,
    /// `/*` (prefix `/`), `/api*` (prefix), `/exact`, `regex <re>`, `/p (path prefix)`, and
    /// how many header and query parameter matches come with it.
    #[serde(rename = "match")]
    pub matcher: String,
    /// The VirtualService of the host (`<name>.<namespace>`); left out when the controller
    /// was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<Option<String>>,
}

pub fn route_rows(dump: &ConfigDump, policies: Option<&Policies>) -> Vec<RouteRow> {
    let mut rows = Vec::new();
    for table in &dump.route_tables {
        for vhost in &table.virtual_hosts {
            // Outbound virtual hosts are named `<host>:<port>`; the inbound ones have `|`.
            let host = (!vhost.name.contains('|')).then(|| {
                vhost
                    .name
                    .rsplit_once(':')
                    .map_or(vhost.name.as_str(), |(h, _)| h)
            });
            for route in &vhost.routes {
                rows.push(RouteRow {
                    name: table.name.clone(),
                    virtual_host: vhost.name.clone(),
                    domains: vhost.domains.clone(),
                    matcher: route_match(route),
                    virtual_service: known(policies, |p| {
                        host.and_then(|host| p.virtual_service(host))
                    }),
                });
            }
        }
    }
    rows
}

fn route_match(route: &DumpRoute) -> String {
    let (kind, value) = route
        .matcher
        .split_once(' ')
        .unwrap_or(("", &route.matcher));
    let mut text = match kind {
        "prefix" => format!("{value}*"),
        "path" => value.to_string(),
        "path_separated_prefix" => format!("{value} (path prefix)"),
        "regex" => format!("regex {value}"),
        _ => route.matcher.clone(),
    };
    let mut more = Vec::new();
    if route.headers > 0 {
        more.push(format!("{} header{}", route.headers, plural(route.headers)));
    }
    if route.query_parameters > 0 {
        more.push(format!(
            "{} query parameter{}",
            route.query_parameters,
            plural(route.query_parameters)
        ));
    }
    if !more.is_empty() {
        text.push_str(&format!(" + {}", more.join(", ")));
    }
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn routes_table(rows: &[RouteRow]) -> String {
    let with_policies = rows.iter().any(|r| r.virtual_service.is_some());
    let mut header = vec!["NAME", "VHOST NAME", "DOMAINS", "MATCH"];
    if with_policies {
        header.push("VIRTUAL SERVICE");
    }
    let mut table = Table::new(header);
    for r in rows {
        let domains = match r.domains.as_slice() {
            [] => "-".to_string(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} +{} more", rest.len()),
        };
        table.row([
            dash(&r.name),
            r.virtual_host.clone(),
            domains,
            r.matcher.clone(),
            r.virtual_service
                .clone()
                .flatten()
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

/// One cluster, its Istio name (`<direction>|<port>|<subset>|<host>`) taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterRow {
    pub name: String,
    pub fqdn: String,
    pub port: String,
    pub subset: String,
    pub direction: String,
    /// `EDS`, `STATIC`, `STRICT_DNS`, `LOGICAL_DNS`, `ORIGINAL_DST`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The DestinationRule of the host (`<name>.<namespace>`); left out when the controller
    /// was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<Option<String>>,
    /// Whether it has its endpoints (routes switch to a cluster once it is warm).
    pub warm: bool,
    pub lb_policy: String,
    pub endpoints: usize,
}

pub fn cluster_rows(dump: &ConfigDump, policies: Option<&Policies>) -> Vec<ClusterRow> {
    dump.active_clusters
        .iter()
        .map(|c| {
            let (direction, port, subset, fqdn) =
                match c.name.split('|').collect::<Vec<_>>().as_slice() {
                    [direction, port, subset, fqdn] => (*direction, *port, *subset, *fqdn),
                    _ => ("", "", "", c.name.as_str()),
                };
            let outbound = direction == "outbound";
            ClusterRow {
                name: c.name.clone(),
                fqdn: fqdn.to_string(),
                port: port.to_string(),
                subset: subset.to_string(),
                direction: direction.to_string(),
                kind: c.kind.split('(').next().unwrap_or_default().to_string(),
                destination_rule: known(policies, |p| {
                    outbound.then(|| p.destination_rule(fqdn)).flatten()
                }),
                warm: c.warm,
                lb_policy: c.lb_policy.clone(),
                endpoints: c.endpoints.len(),
            }
        })
        .collect()
}

pub fn clusters_table(rows: &[ClusterRow]) -> String {
    let with_policies = rows.iter().any(|r| r.destination_rule.is_some());
    let mut header = vec!["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"];
    if with_policies {
        header.push("DESTINATION RULE");
    }
    let mut table = Table::new(header);
    for r in rows {
        table.row([
            dash(&r.fqdn),
            dash(&r.port),
            dash(&r.subset),
            dash(&r.direction),
            dash(&r.kind),
            r.destination_rule
                .clone()
                .flatten()
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

/// One endpoint of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    pub endpoint: String,
    /// `HEALTHY`: the proxy keeps only endpoints that may take traffic (EDS's unhealthy and
    /// draining ones are left out).
    pub status: String,
    /// `OK`, or `FAILED` while outlier detection has ejected the endpoint.
    pub outlier_check: String,
    pub cluster: String,
    pub weight: u32,
}

pub fn endpoint_rows(dump: &ConfigDump) -> Vec<EndpointRow> {
    let mut rows: Vec<EndpointRow> = dump
        .active_clusters
        .iter()
        .flat_map(|c| {
            c.endpoints.iter().map(|e| EndpointRow {
                endpoint: e.address.clone(),
                status: "HEALTHY".to_string(),
                outlier_check: if e.ejected { "FAILED" } else { "OK" }.to_string(),
                cluster: c.name.clone(),
                weight: e.weight,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.endpoint, &a.cluster).cmp(&(&b.endpoint, &b.cluster)));
    rows
}

pub fn endpoints_table(rows: &[EndpointRow]) -> String {
    let mut table = Table::new(["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]);
    for r in rows {
        table.row([&r.endpoint, &r.status, &r.outlier_check, &r.cluster]);
    }
    table.render()
}

/// What `/certs` says (`weft-proxy`'s `identity::IdentityState::describe`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Certs {
    /// The SPIFFE identity; `null` without one.
    pub identity: Option<String>,
    pub certificate: Option<CertInfo>,
    pub roots: Vec<CertInfo>,
    pub last_error: Option<String>,
    /// Why there is no identity at all.
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CertInfo {
    pub serial: String,
    pub not_before: u64,
    pub not_after: u64,
}

/// The secrets of a proxy, as `-o json|yaml` prints them.
#[derive(Debug, Serialize)]
pub struct SecretReport {
    pub identity: Option<String>,
    pub secrets: Vec<SecretRow>,
    /// Why there are none, or why the certificate is not (re)issued.
    pub problem: Option<String>,
}

/// The workload certificate (`default`) or one trust root (`ROOTCA`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `ACTIVE`, `EXPIRED`, `NOT YET VALID`, or `WAITING` (no certificate yet).
    pub status: String,
    pub valid: bool,
    pub serial: String,
    pub not_after: String,
    pub not_before: String,
}

/// The secret rows at `now` (seconds since the Unix epoch).
pub fn secret_report(certs: Certs, now: u64) -> SecretReport {
    let row = |name: &str, kind: &str, info: &CertInfo| {
        let status = if now < info.not_before {
            "NOT YET VALID"
        } else if now >= info.not_after {
            "EXPIRED"
        } else {
            "ACTIVE"
        };
        SecretRow {
            name: name.to_string(),
            kind: kind.to_string(),
            status: status.to_string(),
            valid: status == "ACTIVE",
            serial: info.serial.clone(),
            not_after: table::utc(info.not_after),
            not_before: table::utc(info.not_before),
        }
    };
    let mut secrets = Vec::new();
    match &certs.certificate {
        Some(info) => secrets.push(row("default", "Cert Chain", info)),
        None if certs.identity.is_some() => secrets.push(SecretRow {
            name: "default".into(),
            kind: "Cert Chain".into(),
            status: "WAITING".into(),
            valid: false,
            serial: "-".into(),
            not_after: "-".into(),
            not_before: "-".into(),
        }),
        None => {}
    }
    secrets.extend(certs.roots.iter().map(|info| row("ROOTCA", "CA", info)));
    SecretReport {
        identity: certs.identity,
        secrets,
        problem: certs.last_error.or(certs.reason),
    }
}

pub fn secret_table(report: &SecretReport) -> String {
    let mut out = String::new();
    if !report.secrets.is_empty() {
        let mut table = Table::new([
            "RESOURCE NAME",
            "TYPE",
            "STATUS",
            "VALID CERT",
            "SERIAL NUMBER",
            "NOT AFTER",
            "NOT BEFORE",
        ]);
        for r in &report.secrets {
            table.row([
                r.name.clone(),
                r.kind.clone(),
                r.status.clone(),
                r.valid.to_string(),
                r.serial.clone(),
                r.not_after.clone(),
                r.not_before.clone(),
            ]);
        }
        out.push_str(&table.render());
    }
    if let Some(identity) = &report.identity {
        out.push_str(&format!("\nIdentity: {identity}\n"));
    }
    match (&report.problem, report.secrets.is_empty()) {
        (Some(problem), true) => out.push_str(&format!("No secrets: {problem}\n")),
        (Some(problem), false) => out.push_str(&format!("Last error: {problem}\n")),
        (None, true) => out.push_str("No secrets.\n"),
        (None, false) => {}
    }
    out
}
