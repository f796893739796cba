//! The check itself: for one config set and one proxy, generate every resource type the
//! controller serves, run each resource through the proxy's own converters, then feed the
//! responses to a fresh `weft_proxy::ConfigStore` in ADS order.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rds;
use prost::Message;
use weft_controller::model::{MeshSettings, Model};
use weft_controller::source::ConfigSet;
use weft_controller::source::registry::Registry;
use weft_controller::xds::{Proxy, generate};
use weft_proxy::ConfigStore;
use weft_proxy::config::{
    Assignment, ClusterConfig, DiscoveryKind, Listener, RouteConfig, RouteSource,
};
use weft_xds::{Resource, type_url, version_of};

/// One set of objects as a source would hand it to the model builder.
pub struct ConfigCase {
    /// Where the objects come from, for messages (`corpus/istio/x (directory, local mode)`).
    pub label: String,
    pub config: ConfigSet,
    /// The Kubernetes registry (Kubernetes mode); `None` in local mode.
    pub registry: Option<Registry>,
}

impl ConfigCase {
    pub fn local(label: impl Into<String>, config: ConfigSet) -> Self {
        Self {
            label: label.into(),
            config,
            registry: None,
        }
    }

    pub fn model(&self) -> Model {
        Model::build_with_registry(
            &self.config,
            self.registry.as_ref(),
            &MeshSettings::default(),
        )
    }
}

/// A proxy to generate for, described as `weft-proxy` flags (the proxy's own `Args::node()`
/// builds the `Node` the controller parses).
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub label: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub app_port: Option<u16>,
    /// Captured traffic (`--interception-mode REDIRECT`) with this instance IP: the capture
    /// shape (listeners matched by original destination, passthrough clusters).
    pub capture: Option<String>,
}

/// The app port of the server sidecars.
pub const APP_PORT: u16 = 9080;

/// What was checked (and accepted) in one group of config sets.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub config_sets: usize,
    pub objects: usize,
    pub proxies: usize,
    pub listeners: usize,
    pub route_configs: usize,
    pub virtual_hosts: usize,
    pub routes: usize,
    pub eds_clusters: usize,
    pub dns_clusters: usize,
    pub static_clusters: usize,
    pub assignments: usize,
    pub endpoints: usize,
    pub store_responses: usize,
    /// NDS name tables the store accepted, and the host names in them.
    pub name_tables: usize,
    pub names: usize,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.config_sets += other.config_sets;
        self.objects += other.objects;
        self.proxies += other.proxies;
        self.listeners += other.listeners;
        self.route_configs += other.route_configs;
        self.virtual_hosts += other.virtual_hosts;
        self.routes += other.routes;
        self.eds_clusters += other.eds_clusters;
        self.dns_clusters += other.dns_clusters;
        self.static_clusters += other.static_clusters;
        self.assignments += other.assignments;
        self.endpoints += other.endpoints;
        self.store_responses += other.store_responses;
        self.name_tables += other.name_tables;
        self.names += other.names;
    }

    pub fn clusters(&self) -> usize {
        self.eds_clusters + self.dns_clusters + self.static_clusters
    }

    /// Panics naming every count that is zero: a group must check something of every type.
    pub fn assert_non_zero(&self, group: &str) {
        let all = [
            ("config sets", self.config_sets),
            ("objects", self.objects),
            ("proxies", self.proxies),
            ("listeners", self.listeners),
            ("route configurations", self.route_configs),
            ("virtual hosts", self.virtual_hosts),
            ("routes", self.routes),
            ("EDS clusters", self.eds_clusters),
            ("static clusters", self.static_clusters),
            ("load assignments", self.assignments),
            ("endpoints", self.endpoints),
            ("store responses", self.store_responses),
            ("name tables", self.name_tables),
        ];
        let zero: Vec<&str> = all
            .iter()
            .filter(|(_, count)| *count == 0)
            .map(|(what, _)| *what)
            .collect();
        assert!(
            zero.is_empty(),
            "{group}: nothing checked for {} ({self})",
            zero.join(", ")
        );
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} config sets ({} objects), {} proxies: {} listeners, {} route configurations \
             ({} virtual hosts, {} routes), {} clusters ({} EDS, {} DNS, {} static), \
             {} load assignments ({} endpoints), {} store responses, {} name tables \
             ({} hosts)",
            self.config_sets,
            self.objects,
            self.proxies,
            self.listeners,
            self.route_configs,
            self.virtual_hosts,
            self.routes,
            self.clusters(),
            self.eds_clusters,
            self.dns_clusters,
            self.static_clusters,
            self.assignments,
            self.endpoints,
            self.store_responses,
            self.name_tables,
            self.names,
        )
    }
}

/// Everything one group found wrong, plus its counts.
#[derive(Debug, Default)]
pub struct Report {
    pub counts: Counts,
    pub failures: Vec<String>,
}

impl Report {
    /// The summary line of a group.
    pub fn summary(&self, group: &str) -> String {
        let status = if self.failures.is_empty() {
            "every resource accepted".to_string()
        } else {
            format!("{} REJECTIONS", self.failures.len())
        };
        format!("contract summary: {group}: {}: {status}", self.counts)
    }
}

/// Prints every group's summary line, then fails with every rejection of every group and
/// with any group that checked nothing of some type.
pub fn finish(groups: &[(String, Report)]) {
    let mut total = Counts::default();
    for (group, report) in groups {
        println!("{}", report.summary(group));
        total.add(&report.counts);
    }
    println!(
        "contract summary: total of {} groups: {total}",
        groups.len()
    );
    let failures: Vec<&String> = groups
        .iter()
        .flat_map(|(_, report)| &report.failures)
        .collect();
    assert!(
        failures.is_empty(),
        "the proxy rejected what the controller generated ({} failures):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (group, report) in groups {
        report.counts.assert_non_zero(group);
    }
}

/// The proxies of a config set: in every namespace it has objects in (and `default`), a
/// client sidecar without app port or labels, and a server sidecar with an app port whose
/// labels are the `sourceLabels` of the config's VirtualServices plus the labels of one
/// DestinationRule subset, so that label-dependent translations apply.
pub fn proxies_for(case: &ConfigCase) -> Vec<ProxySpec> {
    use weft_api::ConfigObject;
    let mut namespaces: BTreeSet<String> = BTreeSet::from(["default".to_string()]);
    namespaces.extend(case.config.objects.keys().map(|key| key.namespace.clone()));
    if let Some(registry) = &case.registry {
        namespaces.extend(
            registry
                .services
                .iter()
                .filter_map(|service| service.metadata.namespace.clone()),
        );
    }
    let mut labels: Vec<(String, String)> = vec![("app".to_string(), "contract".to_string())];
    let mut add = |key: &str, value: &str| {
        if !labels.iter().any(|(existing, _)| existing == key) {
            labels.push((key.to_string(), value.to_string()));
        }
    };
    let mut subset_labels_taken = false;
    for (_, object) in case.config.objects() {
        match object {
            ConfigObject::VirtualService(vs) => {
                let spec = &vs.spec;
                let http = spec.http.iter().flat_map(|r| &r.r#match);
                let tcp = spec.tcp.iter().flat_map(|r| &r.r#match);
                let tls = spec.tls.iter().flat_map(|r| &r.r#match);
                for source_labels in http
                    .map(|m| &m.source_labels)
                    .chain(tcp.map(|m| &m.source_labels))
                    .chain(tls.map(|m| &m.source_labels))
                {
                    for (key, value) in source_labels {
                        add(key, value);
                    }
                }
            }
            ConfigObject::DestinationRule(dr) if !subset_labels_taken => {
                if let Some(subset) = dr.spec.subsets.iter().find(|s| !s.labels.is_empty()) {
                    for (key, value) in &subset.labels {
                        add(key, value);
                    }
                    subset_labels_taken = true;
                }
            }
            _ => {}
        }
    }
    // `weft-proxy --labels` is `k=v,k=v`: leave out what it cannot carry.
    labels.retain(|(key, value)| {
        !key.is_empty() && ![key, value].iter().any(|s| s.contains([',', '=']))
    });
    let instance_ip = captured_instance_ip(case);
    let mut proxies = Vec::new();
    for namespace in namespaces {
        proxies.push(ProxySpec {
            label: format!("client sidecar in {namespace} (no app port)"),
            namespace: namespace.clone(),
            labels: Vec::new(),
            app_port: None,
            capture: None,
        });
        proxies.push(ProxySpec {
            label: format!(
                "server sidecar in {namespace} (app port {APP_PORT}, labels {})",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            namespace: namespace.clone(),
            labels: labels.clone(),
            app_port: Some(APP_PORT),
            capture: None,
        });
        proxies.push(ProxySpec {
            label: format!("captured sidecar in {namespace} (instance IP {instance_ip})"),
            namespace,
            labels: labels.clone(),
            app_port: None,
            capture: Some(instance_ip.clone()),
        });
    }
    proxies
}

/// The instance IP of the captured sidecars: an endpoint of the config's services, so that
/// the inbound chains of its ports are generated too (127.0.0.1 when no endpoint has an IP).
fn captured_instance_ip(case: &ConfigCase) -> String {
    let model = case.model();
    model
        .services
        .values()
        .flat_map(|service| &service.endpoints)
        .map(|endpoint| endpoint.address.clone())
        .find(|address| address.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// Two free ports on 127.0.0.1 (bound, read and released: the store binds them next).
pub fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// The controller's view of a proxy, from the `Node` that `weft-proxy` itself would send with
/// these flags: instance IP 127.0.0.1 and the given listener ports.
pub fn controller_proxy(spec: &ProxySpec, outbound_port: u16, inbound_port: u16) -> Proxy {
    controller_proxy_with(spec, outbound_port, inbound_port, &[])
}

/// [`controller_proxy`] with more `weft-proxy` flags.
pub fn controller_proxy_with(
    spec: &ProxySpec,
    outbound_port: u16,
    inbound_port: u16,
    extra: &[&str],
) -> Proxy {
    use clap::Parser as _;
    let labels = spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut argv = vec![
        "weft-proxy".to_string(),
        "--namespace".to_string(),
        spec.namespace.clone(),
        "--workload-name".to_string(),
        "contract".to_string(),
        "--labels".to_string(),
        labels,
        "--instance-ip".to_string(),
        spec.capture
            .clone()
            .unwrap_or_else(|| "127.0.0.1".to_string()),
        "--outbound-port".to_string(),
        outbound_port.to_string(),
        "--inbound-port".to_string(),
        inbound_port.to_string(),
    ];
    if let Some(port) = spec.app_port {
        argv.extend(["--app-port".to_string(), port.to_string()]);
    }
    if spec.capture.is_some() {
        argv.extend(["--interception-mode".to_string(), "REDIRECT".to_string()]);
    }
    argv.extend(extra.iter().map(|arg| arg.to_string()));
    let args = weft_proxy::Args::try_parse_from(&argv)
        .unwrap_or_else(|err| panic!("weft-proxy {argv:?}: {err}"));
    let node = args.node();
    let proxy = Proxy::from_node(&node)
        .unwrap_or_else(|err| panic!("the controller refuses the proxy's node {node:?}: {err}"));
    assert_eq!(proxy.namespace, spec.namespace, "node namespace");
    assert_eq!(proxy.app_port, spec.app_port, "node app port");
    assert_eq!(
        proxy.capture,
        spec.capture.is_some(),
        "node interception mode"
    );
    assert_eq!(
        (proxy.outbound_port, proxy.inbound_port),
        (outbound_port, inbound_port),
        "node listener ports"
    );
    proxy
}

/// Decodes one generated resource as the proxy does and converts it with the proxy's `TryFrom`.
pub fn convert<E, D>(
    resource: &Resource,
    expected_type: &str,
    name_of: fn(&E) -> &str,
) -> Result<D, String>
where
    E: Message + Default,
    D: TryFrom<E>,
    D::Error: fmt::Display,
{
    if resource.body.type_url != expected_type {
        return Err(format!(
            "packed as {} in a {expected_type} response",
            resource.body.type_url
        ));
    }
    let message =
        E::decode(resource.body.value.as_slice()).map_err(|err| format!("cannot decode: {err}"))?;
    if name_of(&message) != resource.name {
        return Err(format!(
            "served under the name {:?} but named {:?} inside",
            resource.name,
            name_of(&message)
        ));
    }
    D::try_from(message).map_err(|err| err.to_string())
}

/// Every resource type the controller serves `proxy` for `model`.
pub struct Generated {
    pub listeners: Vec<Resource>,
    pub routes: Vec<Resource>,
    pub clusters: Vec<Resource>,
    pub endpoints: Vec<Resource>,
    /// NDS, and the namespace of the proxy it is for (its short names depend on it).
    pub names: Vec<Resource>,
    pub namespace: String,
}

impl Generated {
    pub fn new(model: &Model, proxy: &Proxy) -> Self {
        Self {
            names: generate(model, proxy, type_url::NAME_TABLE),
            namespace: proxy.namespace.clone(),
            listeners: generate(model, proxy, type_url::LISTENER),
            routes: generate(model, proxy, type_url::ROUTE),
            clusters: generate(model, proxy, type_url::CLUSTER),
            endpoints: generate(model, proxy, type_url::ENDPOINT),
        }
    }

    /// What a client sidecar (`app=client` in `default`, explicit, with more `weft-proxy`
    /// `flags`) is served for the objects of `file` (local mode), which must have loaded
    /// without errors and (`quiet`) build without any warning.
    pub fn for_client(file: &str, set: ConfigSet, flags: &[&str], quiet: bool) -> Self {
        assert!(set.errors.is_empty(), "{file}: {:#?}", set.errors);
        let model = ConfigCase::local(file, set).model();
        assert!(
            !quiet || model.warnings.is_empty(),
            "{file}: nothing is reported: {:#?}",
            model.warnings
        );
        let (outbound, inbound) = free_ports();
        let spec = ProxySpec {
            label: "client".into(),
            namespace: "default".into(),
            labels: vec![("app".into(), "client".into())],
            app_port: None,
            capture: None,
        };
        Self::new(
            &model,
            &controller_proxy_with(&spec, outbound, inbound, flags),
        )
    }

    /// The route tables, as the proxy converts them (it must accept every one).
    pub fn proxy_routes(&self) -> HashMap<String, RouteConfig> {
        accepted(
            &self.routes,
            type_url::ROUTE,
            |r: &rds::RouteConfiguration| &r.name,
        )
    }

    /// The clusters, as the proxy converts them (it must accept every one).
    pub fn proxy_clusters(&self) -> HashMap<String, ClusterConfig> {
        accepted(&self.clusters, type_url::CLUSTER, |c: &cds::Cluster| {
            &c.name
        })
    }

    /// The load assignments, as the proxy converts them (it must accept every one).
    pub fn proxy_assignments(&self) -> HashMap<String, Assignment> {
        accepted(
            &self.endpoints,
            type_url::ENDPOINT,
            |a: &eds::ClusterLoadAssignment| &a.cluster_name,
        )
    }
}

/// Every resource of one type through the proxy's converter, by name; panics naming the one
/// the proxy refuses.
fn accepted<E, D>(
    resources: &[Resource],
    expected_type: &str,
    name_of: fn(&E) -> &str,
) -> HashMap<String, D>
where
    E: Message + Default,
    D: TryFrom<E>,
    D::Error: fmt::Display,
{
    resources
        .iter()
        .map(|resource| {
            let converted = convert(resource, expected_type, name_of).unwrap_or_else(|err| {
                panic!(
                    "the proxy refuses {} {:?}: {err}",
                    expected_type, resource.name
                )
            });
            (resource.name.clone(), converted)
        })
        .collect()
}

/// Checks one config set for every proxy of [`proxies_for`], adding to `report`.
pub async fn check_case(case: &ConfigCase, report: &mut Report) {
    let model = case.model();
    report.counts.config_sets += 1;
    report.counts.objects += case.config.objects.len()
        + case
            .registry
            .as_ref()
            .map_or(0, |registry| registry.services.len());
    for spec in proxies_for(case) {
        let context = format!("{} | {}", case.label, spec.label);
        // The listener ports are free when picked; should another process take one before the
        // store binds it, pick again (the bind error is the proxy's, not a contract failure).
        for attempt in 1..=3 {
            let (outbound, inbound) = free_ports();
            let proxy = controller_proxy(&spec, outbound, inbound);
            let generated = Generated::new(&model, &proxy);
            let mut trial = Report::default();
            check_resources(&generated, &context, &mut trial);
            check_store(generated, &context, &mut trial);
            let lost_port = trial.failures.iter().any(|f| f.contains("cannot bind"));
            if !lost_port || attempt == 3 {
                report.counts.add(&trial.counts);
                report.failures.extend(trial.failures);
                break;
            }
        }
        report.counts.proxies += 1;
        // Let the dropped store's listener tasks and DNS resolvers wind down.
        tokio::task::yield_now().await;
    }
}

/// Runs every resource through the proxy's converters; checks that every route configuration
/// a listener asks for and every EDS name a cluster asks for is served.
pub fn check_resources(generated: &Generated, context: &str, report: &mut Report) {
    let counts = &mut report.counts;
    let failures = &mut report.failures;
    let mut wanted_routes = BTreeSet::new();
    for resource in &generated.listeners {
        match convert::<lds::Listener, Listener>(resource, type_url::LISTENER, |l| &l.name) {
            Ok(listener) => {
                counts.listeners += 1;
                for (_, manager) in listener.http_managers() {
                    if let RouteSource::Rds(name) = &manager.routes {
                        wanted_routes.insert(name.clone());
                    }
                }
            }
            Err(err) => failures.push(format!(
                "{context} | LDS listener {:?}: {err}",
                resource.name
            )),
        }
    }
    for resource in &generated.routes {
        match convert::<rds::RouteConfiguration, RouteConfig>(resource, type_url::ROUTE, |r| {
            &r.name
        }) {
            Ok(config) => {
                counts.route_configs += 1;
                counts.virtual_hosts += config.virtual_hosts.len();
                counts.routes += config
                    .virtual_hosts
                    .iter()
                    .map(|vh| vh.routes.len())
                    .sum::<usize>();
            }
            Err(err) => failures.push(format!(
                "{context} | RDS route configuration {:?}: {err}",
                resource.name
            )),
        }
    }
    let served_routes: BTreeSet<&str> = generated.routes.iter().map(|r| r.name.as_str()).collect();
    for name in &wanted_routes {
        if !served_routes.contains(name.as_str()) {
            failures.push(format!(
                "{context} | RDS: a listener asks for route configuration {name:?}, which is not generated"
            ));
        }
    }
    let mut wanted_endpoints = BTreeSet::new();
    for resource in &generated.clusters {
        match convert::<cds::Cluster, ClusterConfig>(resource, type_url::CLUSTER, |c| &c.name) {
            Ok(cluster) => match &cluster.discovery {
                DiscoveryKind::Eds(service) => {
                    counts.eds_clusters += 1;
                    wanted_endpoints.insert(service.clone());
                }
                DiscoveryKind::Dns(_) => counts.dns_clusters += 1,
                DiscoveryKind::Static(_) | DiscoveryKind::OriginalDst => {
                    counts.static_clusters += 1
                }
            },
            Err(err) => failures.push(format!(
                "{context} | CDS cluster {:?}: {err}",
                resource.name
            )),
        }
    }
    for resource in &generated.endpoints {
        match convert::<eds::ClusterLoadAssignment, Assignment>(resource, type_url::ENDPOINT, |a| {
            &a.cluster_name
        }) {
            Ok(assignment) => {
                counts.assignments += 1;
                counts.endpoints += assignment.endpoints.len();
            }
            Err(err) => failures.push(format!(
                "{context} | EDS cluster load assignment {:?}: {err}",
                resource.name
            )),
        }
    }
    let served_endpoints: BTreeSet<&str> = generated
        .endpoints
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    for name in &wanted_endpoints {
        if !served_endpoints.contains(name.as_str()) {
            failures.push(format!(
                "{context} | EDS: cluster {name:?} waits for a load assignment that is not generated"
            ));
        }
    }
}

/// Feeds the responses to a fresh `ConfigStore` as ADS pushes them (CDS, EDS for the names
/// the store asks for, LDS, RDS for the names the store asks for): every response must be
/// ACKed and the resulting config must have every listener bound with its routes, every
/// cluster, and every EDS cluster's endpoints.
pub fn check_store(generated: Generated, context: &str, report: &mut Report) {
    let mut store = ConfigStore::new().with_name_table(generated.namespace.clone());
    let failures = &mut report.failures;
    let mut apply = |store: &mut ConfigStore, type_url: &str, resources: Vec<Resource>| {
        let version = version_of(&resources);
        let bodies = resources.into_iter().map(|r| r.body).collect();
        report.counts.store_responses += 1;
        if let Err(err) = store.apply_response(type_url, &version, bodies) {
            failures.push(format!(
                "{context} | ConfigStore::apply_response({type_url}) NACK: {err}"
            ));
        }
    };
    let listener_names: Vec<String> = generated.listeners.iter().map(|r| r.name.clone()).collect();
    let mut cluster_names: Vec<String> =
        generated.clusters.iter().map(|r| r.name.clone()).collect();
    cluster_names.sort();

    apply(&mut store, type_url::CLUSTER, generated.clusters);
    let wanted: BTreeSet<String> = store.wanted_names(type_url::ENDPOINT).into_iter().collect();
    let endpoints = generated
        .endpoints
        .into_iter()
        .filter(|r| wanted.contains(&r.name))
        .collect();
    apply(&mut store, type_url::ENDPOINT, endpoints);
    apply(&mut store, type_url::LISTENER, generated.listeners);
    let wanted: BTreeSet<String> = store.wanted_names(type_url::ROUTE).into_iter().collect();
    let routes = generated
        .routes
        .into_iter()
        .filter(|r| wanted.contains(&r.name))
        .collect();
    apply(&mut store, type_url::ROUTE, routes);
    let hosts: usize = generated
        .names
        .iter()
        .filter_map(|r| weft_xds::nds::NameTable::decode(r.body.value.as_slice()).ok())
        .map(|table| table.table.len())
        .sum();
    apply(&mut store, type_url::NAME_TABLE, generated.names);

    let config = store.current();
    let mut problems = Vec::new();
    let table = store.name_table().expect("the store takes name tables");
    let names = table.borrow().len();
    if names < hosts {
        problems.push(format!(
            "the DNS proxy knows {names} names, for {hosts} hosts generated"
        ));
    }
    report.counts.name_tables += 1;
    report.counts.names += hosts;
    if config.cds.names != cluster_names {
        problems.push(format!(
            "clusters in force {:?}, generated {cluster_names:?}",
            config.cds.names
        ));
    }
    for name in &listener_names {
        if store.local_addr(name).is_none() {
            problems.push(format!("listener {name:?} is not bound"));
        }
    }
    if config.listeners.len() != listener_names.len() {
        problems.push(format!(
            "{} listeners in force, {} generated",
            config.listeners.len(),
            listener_names.len()
        ));
    }
    for listener in config.listeners.values() {
        for (chain, _) in listener.config.http_managers() {
            if listener.chains[chain].routes.is_none() {
                problems.push(format!(
                    "listener {:?} chain {:?} has no route configuration in force",
                    listener.config.name, listener.config.chains[chain].name
                ));
            }
        }
        for (i, chain) in listener.config.chains.iter().enumerate() {
            let weft_proxy::config::Network::Tcp(tcp) = &chain.network else {
                continue;
            };
            for (entry, resolved) in tcp.clusters.iter().zip(&listener.chains[i].clusters) {
                if resolved.is_none() {
                    problems.push(format!(
                        "listener {:?} chain {:?} proxies TCP to cluster {:?}, which is not generated",
                        listener.config.name, chain.name, entry.name
                    ));
                }
            }
        }
    }
    for cluster in config.clusters.values() {
        if matches!(cluster.config.discovery, DiscoveryKind::Eds(_)) && !cluster.warm {
            problems.push(format!(
                "EDS cluster {:?} did not get its endpoints",
                cluster.config.name
            ));
        }
    }
    for problem in problems {
        report.failures.push(format!(
            "{context} | ConfigStore after CDS, EDS, LDS, RDS, NDS: {problem}"
        ));
    }
}
