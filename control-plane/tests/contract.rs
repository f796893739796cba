//! The controller ⇄ proxy contract: the controller never sends what the proxy cannot apply.
//!
//! For every config we have (`examples/local/`, every directory of the shared Istio corpus, the
//! Istio YAML fixtures of the controller's and the end-to-end tests, and YAML written here for
//! the newest translations, and the AuthorizationPolicies and RequestAuthentications of
//! `contract/security/`), the objects are loaded as local mode loads them (and, for the
//! corpus, also with the bookinfo Kubernetes manifests as the service registry), the model is
//! built, and for client and server sidecars in every namespace of the config every resource
//! type the controller serves is generated, decoded and converted with the proxy's own
//! `TryFrom` (`weft_proxy::config::{Listener, RouteConfig, ClusterConfig, Assignment}`), then
//! fed to a fresh `weft_proxy::ConfigStore` in ADS order (listeners bound on 127.0.0.1), then
//! the name table (NDS) of the sidecar's DNS proxy.
//! Failures name the config, the proxy, the resource and the proxy's error; a summary line per
//! group (`contract summary: …`, shown with `--nocapture`) says what was checked, and every
//! group must have checked something of every type.
//!
//! [`one_invalid_resource_does_not_freeze_the_others`] checks the other half of the contract:
//! when a resource is rejected anyway, the rest of its response still takes effect.
//! `contract/hcm.rs` checks the connection manager's timeouts field by field: the controller's
//! values (Istio's) and the ones Istio can send reach the proxy's listeners. `contract/mtls.rs`
//! checks mutual TLS: PeerAuthentications in the three modes, endpoints with sidecars, auto
//! mTLS and every DestinationRule TLS mode. `contract/resilience.rs` checks that retries,
//! faults and retry limits arrive whole in the proxy's domain config. `contract/l4_routes.rs`
//! checks VirtualService `tcp` and `tls` routes: every match field, weights, subsets and server
//! names in the proxy's listeners. `contract/locality.rs` checks locality load balancing: the
//! priorities and locality weights of EDS and CDS as the proxy's balancer takes them.
//! `contract/metrics.rs` checks what Istio's metrics need: listener directions and the
//! clusters' services. `contract/ratelimit.rs` checks that every field of a LocalRateLimit's local rate limit
//! filters arrives in the proxy's domain config. `contract/tracing.rs` checks the connection
//! managers' tracing (provider, sampling, tags) and the routes' span names.
//! `contract/tcp_telemetry.rs` checks Istio's TCP metadata exchange filters (inbound TCP chains
//! with mutual TLS, outbound clusters with mesh mTLS) and the TCP proxies' access logs.

#[path = "contract/check.rs"]
mod check;
#[path = "contract/fixtures.rs"]
mod fixtures;
#[path = "contract/harvest.rs"]
mod harvest;
#[path = "contract/hcm.rs"]
mod hcm;
#[path = "contract/l4_routes.rs"]
mod l4_routes;
#[path = "contract/locality.rs"]
mod locality;
#[path = "contract/metrics.rs"]
mod metrics;
#[path = "contract/mtls.rs"]
mod mtls;
#[path = "contract/ratelimit.rs"]
mod ratelimit;
#[path = "contract/resilience.rs"]
mod resilience;
#[path = "contract/routes_extra.rs"]
mod routes_extra;
#[path = "contract/stats.rs"]
mod stats;
#[path = "contract/tcp_telemetry.rs"]
mod tcp_telemetry;
#[path = "contract/tracing.rs"]
mod tracing;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rds;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use prost::Message;
use weft_controller::source::ConfigSet;
use weft_controller::source::local::{load_directory, yaml_files};
use weft_proxy::ConfigStore;
use weft_proxy::config::{Action, ClusterPick, PathMatch};
use weft_xds::{Resource, type_url, version_of};

use check::{
    APP_PORT, ConfigCase, Generated, ProxySpec, Report, check_case, controller_proxy, finish,
    free_ports,
};
use fixtures::{
    FORMATTER_SERVICES, NEWEST, config_from, corpus_root, e2e_reviews_service_yaml, e2e_split_vs,
    formatter_values, formatters_vs, kube_registry, workspace, yaml_dirs,
};

/// The name prefix of fixture constants that make proxies NACK on purpose.
const NACKED_FIXTURE_PREFIX: &str = "NACKED_";

/// Corpus directories whose YAML is not Istio config, and what it is instead. Each must load no
/// Istio object (so that config added there cannot go unchecked).
const NOT_ISTIO_CONFIG: &[(&str, &str)] = &[
    ("api/kubernetes", "the Istio CRDs"),
    (
        "samples/bookinfo/platform/kube",
        "Kubernetes manifests: checked as the service registry of the Kubernetes-mode config sets",
    ),
];

/// The bookinfo Kubernetes manifests, relative to the corpus root.
const BOOKINFO_MANIFEST: &str = "samples/bookinfo/platform/kube/bookinfo.yaml";

#[tokio::test]
async fn examples_local_is_accepted_by_the_proxy() {
    let dir = workspace().join("examples/local");
    let set = load_directory(&dir, &ConfigSet::default())
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    assert!(set.errors.is_empty(), "examples/local: {:#?}", set.errors);
    let mut report = Report::default();
    check_case(
        &ConfigCase::local("examples/local (directory, local mode)", set),
        &mut report,
    )
    .await;
    finish(&[("examples/local".to_string(), report)]);
}

#[tokio::test]
async fn istio_corpus_is_accepted_by_the_proxy() {
    let root = corpus_root();
    let registry = kube_registry(&root.join(BOOKINFO_MANIFEST));
    assert!(
        registry.services.len() >= 4 && registry.endpoint_slices.len() >= 4,
        "the bookinfo manifests give too few services: {registry:#?}"
    );
    let mut groups = Vec::new();
    for dir in yaml_dirs(&root) {
        let rel = dir
            .strip_prefix(&root)
            .expect("under the corpus root")
            .display()
            .to_string();
        let group = format!("corpus/istio/{rel}");
        let set = load_directory(&dir, &ConfigSet::default())
            .unwrap_or_else(|err| panic!("{group}: {err}"));
        if let Some((_, what)) = NOT_ISTIO_CONFIG.iter().find(|(path, _)| *path == rel) {
            let keys: Vec<String> = set.objects.keys().map(ToString::to_string).collect();
            assert!(
                keys.is_empty(),
                "{group} is listed as holding no Istio config ({what}) but has {keys:?}: check it here"
            );
            println!("contract summary: {group}: no Istio config ({what})");
            continue;
        }
        assert!(
            !set.objects.is_empty(),
            "{group} has YAML but no Istio object loads from it: list it in NOT_ISTIO_CONFIG with what it is, or fix the loader"
        );
        let mut report = Report::default();
        let mut cases = vec![
            ConfigCase::local(format!("{group} (directory, local mode)"), set.clone()),
            ConfigCase {
                label: format!("{group} (directory) + bookinfo Kubernetes registry"),
                config: set,
                registry: Some(registry.clone()),
            },
        ];
        // Files of one directory may be alternatives of one another (the same names recur, and
        // local mode keeps the first): each file on its own too.
        for file in yaml_files(&dir).unwrap_or_else(|err| panic!("{group}: {err}")) {
            let name = file.file_name().expect("file name").to_string_lossy();
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
            let config = config_from(&[(&file.display().to_string(), &text)]);
            cases.push(ConfigCase::local(
                format!("{group}/{name} (alone, local mode)"),
                config.clone(),
            ));
            cases.push(ConfigCase {
                label: format!("{group}/{name} + bookinfo Kubernetes registry"),
                config,
                registry: Some(registry.clone()),
            });
        }
        for case in &cases {
            check_case(case, &mut report).await;
        }
        groups.push((group, report));
    }
    let mut report = Report::default();
    check_case(
        &ConfigCase {
            label: format!("corpus/istio/{BOOKINFO_MANIFEST} (Kubernetes registry alone)"),
            config: ConfigSet::default(),
            registry: Some(registry),
        },
        &mut report,
    )
    .await;
    groups.push((
        format!("corpus/istio/{BOOKINFO_MANIFEST} (Kubernetes mode)"),
        report,
    ));
    assert!(
        groups.len() >= 3,
        "expected the bookinfo samples and Istio's test configs in the corpus, got {:?}",
        groups.iter().map(|(g, _)| g).collect::<Vec<_>>()
    );
    finish(&groups);
}

#[tokio::test]
async fn fixtures_of_the_other_tests_are_accepted_by_the_proxy() {
    let ws = workspace();
    let contract = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let sources = |dirs: &[&str]| -> Vec<(String, Vec<harvest::Literal>)> {
        dirs.iter()
            .flat_map(|dir| harvest::rust_files(&ws.join(dir)))
            .filter(|file| {
                !file.starts_with(&contract) && !file.ends_with("control-plane/tests/contract.rs")
            })
            .map(|file| {
                let shown = file
                    .strip_prefix(&ws)
                    .expect("in the workspace")
                    .display()
                    .to_string();
                let literals = harvest::string_literals(&file, &shown);
                (shown, literals)
            })
            .collect()
    };
    let controller = sources(&["control-plane/src", "control-plane/tests"]);
    let e2e = sources(&["tests/src", "tests/tests", "crates/weftctl/src"]);

    // The controller's bookinfo-like test services and rules (`src/testing.rs`): the base
    // most controller fixtures are combined with.
    let named = |name: &str| -> String {
        controller
            .iter()
            .filter(|(file, _)| file == "control-plane/src/testing.rs")
            .flat_map(|(_, literals)| literals)
            .find(|literal| literal.name.as_deref() == Some(name))
            .map(|literal| literal.text.clone())
            .unwrap_or_else(|| panic!("no const {name} in control-plane/src/testing.rs"))
    };
    let (services, rules) = (named("SERVICES"), named("RULES"));
    let e2e_services = e2e_reviews_service_yaml(&["v1", "v2", "v3"]);

    let mut groups = Vec::new();
    for (group, files) in [
        (
            "controller test fixtures (control-plane/src, control-plane/tests)",
            &controller,
        ),
        (
            "e2e test fixtures (tests/src, tests/tests, crates/weftctl/src)",
            &e2e,
        ),
    ] {
        let mut report = Report::default();
        let (mut loaded, mut templates, mut refused, mut nacked) = (0, 0, 0, 0);
        for (_, literals) in files.iter() {
            for literal in literals.iter().filter(|l| l.is_istio_yaml()) {
                if literal.template {
                    templates += 1;
                    continue;
                }
                // A fixture that makes proxies reject config on purpose (`const NACKED_…`),
                // through a gap between the controller's validation and the proxy that is
                // known and written down where the constant is: not a contract case.
                if literal
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(NACKED_FIXTURE_PREFIX))
                {
                    nacked += 1;
                    continue;
                }
                let origin = literal.origin.as_str();
                let alone = config_from(&[(origin, &literal.text)]);
                if alone.objects.is_empty() {
                    // Every document refused: a fixture of a validation test.
                    refused += 1;
                    continue;
                }
                loaded += 1;
                let cases = [
                    ConfigCase::local(format!("{origin} (alone)"), alone),
                    ConfigCase::local(
                        format!("{origin} + testing.rs SERVICES and RULES"),
                        config_from(&[
                            (origin, &literal.text),
                            ("testing.rs SERVICES", &services),
                            ("testing.rs RULES", &rules),
                        ]),
                    ),
                    ConfigCase::local(
                        format!("{origin} + the e2e reviews service"),
                        config_from(&[(origin, &literal.text), ("e2e reviews", &e2e_services)]),
                    ),
                ];
                for case in &cases {
                    check_case(case, &mut report).await;
                }
            }
        }
        println!(
            "contract summary: {group}: {loaded} fixtures loaded from {} files ({templates} format! templates not loaded, {refused} refused by validation, {nacked} NACKed on purpose)",
            files.len()
        );
        assert!(loaded > 0, "{group}: no Istio YAML fixture found");
        groups.push((group.to_string(), report));
    }

    // The e2e harness's own config (`reviews_service_yaml` + `split_vs`, replicated).
    let mut report = Report::default();
    let split = e2e_split_vs(&[("v1", 80), ("v2", 10), ("v3", 10)]);
    check_case(
        &ConfigCase::local(
            "weft_e2e::reviews_service_yaml + split_vs (replicated)",
            config_from(&[
                ("reviews-service.yaml", &e2e_services),
                ("reviews-vs.yaml", &split),
            ]),
        ),
        &mut report,
    )
    .await;
    groups.push(("e2e harness config".to_string(), report));
    finish(&groups);
}

#[tokio::test]
async fn newest_translations_are_accepted_by_the_proxy() {
    let set = config_from(&[("newest.yaml", NEWEST)]);
    assert!(set.errors.is_empty(), "newest.yaml: {:#?}", set.errors);
    let case = ConfigCase::local("newest.yaml", set);
    let model = case.model();
    for host in [
        "api.example.com",
        "httpbin.org",
        "logical.example.com",
        "grpc.example.net",
        "vms.shop.svc.cluster.local",
        "catalog.shop.svc.cluster.local",
    ] {
        assert!(model.services.contains_key(host), "no service {host}");
    }
    let mut report = Report::default();
    check_case(&case, &mut report).await;
    assert!(
        report.counts.dns_clusters > 0,
        "no DNS cluster checked: {}",
        report.counts
    );
    finish(&[("newest translations".to_string(), report)]);
}

/// AuthorizationPolicies (every field, every action) and RequestAuthentications
/// (`contract/security/`): the inbound listeners that carry their JWT and RBAC filters go
/// through the proxy's converters and store like everything else.
#[tokio::test]
async fn security_policies_are_accepted_by_the_proxy() {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/security");
    let set = load_directory(&dir, &ConfigSet::default())
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    assert!(
        set.errors.is_empty(),
        "contract/security: {:#?}",
        set.errors
    );
    let case = ConfigCase::local("contract/security (directory, local mode)", set);

    // The fixture does exercise the filters: the server sidecar's inbound listener has the
    // JWT filter, the three RBAC filters and the router, in the contract's order.
    let (outbound_port, inbound_port) = free_ports();
    let server = ProxySpec {
        label: "server".to_string(),
        namespace: "default".to_string(),
        labels: vec![("app".to_string(), "contract".to_string())],
        app_port: Some(APP_PORT),
        capture: None,
    };
    let generated = Generated::new(
        &case.model(),
        &controller_proxy(&server, outbound_port, inbound_port),
    );
    let inbound = generated
        .listeners
        .iter()
        .map(|resource| lds::Listener::decode(resource.body.value.as_slice()).expect("decodes"))
        .find(|listener| listener.name == "virtualInbound")
        .expect("an inbound listener");
    let Some(lds::filter::ConfigType::TypedConfig(any)) =
        &inbound.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config expected");
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("decodes");
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            weft_xds::contract::JWT_AUTHN,
            weft_xds::contract::RBAC,
            weft_xds::contract::RBAC,
            weft_xds::contract::RBAC,
            weft_xds::stats::STATS_FILTER,
            weft_xds::contract::ROUTER,
        ]
    );

    let mut report = Report::default();
    check_case(&case, &mut report).await;
    finish(&[("security policies".to_string(), report)]);
}

/// Every header formatter `weft-api` lets through must be one the proxy applies.
#[tokio::test]
async fn header_formatters_are_accepted_by_the_proxy() {
    let values = formatter_values();
    let services = ("services.yaml", FORMATTER_SERVICES);
    let all = formatters_vs("formatters", &values);
    let set = config_from(&[("formatters.yaml", &all), services]);
    assert!(set.errors.is_empty(), "formatters.yaml: {:#?}", set.errors);
    let case = ConfigCase::local(
        format!("every formatter value at once ({})", values.len()),
        set,
    );

    // The values reach the proxy: every one is in the generated outbound routes.
    let (outbound_port, inbound_port) = free_ports();
    let client = ProxySpec {
        label: "client".to_string(),
        namespace: "default".to_string(),
        labels: Vec::new(),
        app_port: None,
        capture: None,
    };
    let generated = Generated::new(
        &case.model(),
        &controller_proxy(&client, outbound_port, inbound_port),
    );
    let mut sent = BTreeSet::new();
    for resource in &generated.routes {
        let config =
            rds::RouteConfiguration::decode(resource.body.value.as_slice()).expect("decodes");
        for route in config.virtual_hosts.iter().flat_map(|vh| &vh.routes) {
            let mut options: Vec<_> = route
                .request_headers_to_add
                .iter()
                .chain(&route.response_headers_to_add)
                .collect();
            if let Some(rds::route::Action::Route(action)) = &route.action
                && let Some(rds::route_action::ClusterSpecifier::WeightedClusters(weighted)) =
                    &action.cluster_specifier
            {
                for cluster in &weighted.clusters {
                    options.extend(
                        cluster
                            .request_headers_to_add
                            .iter()
                            .chain(&cluster.response_headers_to_add),
                    );
                }
            }
            sent.extend(
                options
                    .iter()
                    .filter_map(|option| option.header.as_ref())
                    .map(|header| header.value.clone()),
            );
        }
    }
    let missing: Vec<&String> = values.iter().filter(|v| !sent.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "formatter values the controller did not send: {missing:?}"
    );

    let mut report = Report::default();
    check_case(&case, &mut report).await;
    // The proxy stops at the first header it cannot apply: one value at a time names them all.
    let mut rejected = Vec::new();
    for value in &values {
        let vs = formatters_vs("formatter", std::slice::from_ref(value));
        let case = ConfigCase::local(
            format!("formatter value {value:?} alone"),
            config_from(&[("formatter.yaml", &vs), services]),
        );
        let mut alone = Report::default();
        check_case(&case, &mut alone).await;
        report.counts.add(&alone.counts);
        if let Some(first) = alone.failures.first() {
            rejected.push(value.as_str());
            report.failures.push(first.clone());
        }
    }
    if !rejected.is_empty() {
        println!(
            "contract summary: formatter values the proxy rejects ({} of {}): {rejected:?}",
            rejected.len(),
            values.len()
        );
    }
    finish(&[(
        format!("header formatters ({} values)", values.len()),
        report,
    )]);
}

/// Services and rules for the isolation test, version 1 and version 2 (every endpoint moves,
/// the connect timeout changes, the route becomes a split).
fn isolation_yaml(version: u8) -> String {
    let (timeout, route) = if version == 1 {
        (
            "1s",
            "  - route: [{destination: {host: reviews, subset: v1}}]",
        )
    } else {
        (
            "2s",
            "  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 50}\n    - {destination: {host: reviews, subset: v2}, weight: 50}",
        )
    };
    let n = version * 10;
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.1.{v1}, labels: {{version: v1}}}}
  - {{address: 127.0.1.{v2}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.2.{v1}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  trafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: {timeout}}}}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
{route}
"#,
        v1 = n + 1,
        v2 = n + 2,
    )
}

/// Re-packs the resource named `name` after `change` (what a buggy controller would send).
fn corrupt<M: Message + Default + prost::Name>(
    resources: &mut [Resource],
    name: &str,
    change: impl FnOnce(&mut M),
) {
    let resource = resources
        .iter_mut()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no resource {name}"));
    let mut message = M::decode(resource.body.value.as_slice()).expect("decodes");
    change(&mut message);
    *resource = Resource::new(name, &message);
}

/// Applies one response; returns the NACK message (panics on an ACK).
fn nack(store: &mut ConfigStore, type_url: &str, resources: &[Resource]) -> String {
    let bodies = resources.iter().map(|r| r.body.clone()).collect();
    match store.apply_response(type_url, &version_of(resources), bodies) {
        Ok(()) => panic!("{type_url}: a corrupted response was ACKed"),
        Err(message) => message,
    }
}

/// Asserts the NACK names `bad` and none of the other resources of the response.
fn assert_names_only(message: &str, bad: &str, resources: &[Resource]) {
    assert!(
        message.contains(&format!("{bad:?}")),
        "the NACK does not name {bad:?}: {message}"
    );
    for other in resources.iter().map(|r| &r.name).filter(|n| *n != bad) {
        assert!(
            !message.contains(&format!("{other:?}")),
            "the NACK names {other:?}, which is valid: {message}"
        );
    }
}

/// One invalid resource (as a buggy controller would send) cannot freeze the others: the
/// store NACKs naming only that resource, keeps its previous version, and applies the rest of
/// the same response.
#[tokio::test]
async fn one_invalid_resource_does_not_freeze_the_others() {
    let reviews = "reviews.default.svc.cluster.local";
    let v1_cluster = format!("outbound|9080|v1|{reviews}");
    let v2_cluster = format!("outbound|9080|v2|{reviews}");
    let all_cluster = format!("outbound|9080||{reviews}");
    let ratings_cluster = "outbound|9080||ratings.default.svc.cluster.local".to_string();
    let inbound_routes = format!("inbound|{APP_PORT}");
    let spec = ProxySpec {
        label: "server".to_string(),
        namespace: "default".to_string(),
        labels: vec![("app".to_string(), "contract".to_string())],
        app_port: Some(APP_PORT),
        capture: None,
    };
    let first = ConfigCase::local(
        "isolation v1",
        config_from(&[("v1.yaml", &isolation_yaml(1))]),
    );
    let second = ConfigCase::local(
        "isolation v2",
        config_from(&[("v2.yaml", &isolation_yaml(2))]),
    );
    let (outbound_port, inbound_port) = free_ports();
    let old = Generated::new(
        &first.model(),
        &controller_proxy(&spec, outbound_port, inbound_port),
    );
    // Version 2 also moves the outbound listener to another port.
    let (new_outbound_port, _) = free_ports();
    let mut new = Generated::new(
        &second.model(),
        &controller_proxy(&spec, new_outbound_port, inbound_port),
    );

    let mut store = ConfigStore::new();
    for (type_url, resources) in [
        (type_url::CLUSTER, &old.clusters),
        (type_url::ENDPOINT, &old.endpoints),
        (type_url::LISTENER, &old.listeners),
        (type_url::ROUTE, &old.routes),
    ] {
        let bodies = resources.iter().map(|r| r.body.clone()).collect();
        store
            .apply_response(type_url, &version_of(resources), bodies)
            .unwrap_or_else(|err| panic!("version 1 {type_url}: {err}"));
    }
    assert!(
        store.current().ready(),
        "{:?}",
        store.current().not_ready_reason()
    );
    let old_versions = {
        let config = store.current();
        [&config.cds, &config.eds, &config.lds, &config.rds].map(|state| state.version.clone())
    };

    // CDS: one cluster with a load-balancing policy the proxy does not implement.
    corrupt::<cds::Cluster>(&mut new.clusters, &v2_cluster, |cluster| {
        cluster.lb_policy = cds::cluster::LbPolicy::ClusterProvided as i32;
    });
    let message = nack(&mut store, type_url::CLUSTER, &new.clusters);
    assert_names_only(&message, &v2_cluster, &new.clusters);
    let config = store.current();
    let timeout = |name: &str| config.clusters[name].config.connect_timeout;
    assert_eq!(timeout(&v1_cluster), Duration::from_secs(2), "v1 updated");
    assert_eq!(
        timeout(&all_cluster),
        Duration::from_secs(2),
        "reviews updated"
    );
    assert_eq!(
        timeout(&v2_cluster),
        Duration::from_secs(1),
        "v2 keeps version 1"
    );
    assert!(config.cds.last_rejection.is_some());

    // EDS: one assignment with a host name where EDS carries IP addresses.
    corrupt::<eds::ClusterLoadAssignment>(&mut new.endpoints, &ratings_cluster, |cla| {
        let endpoint = &mut cla.endpoints[0].lb_endpoints[0];
        let Some(eds::lb_endpoint::HostIdentifier::Endpoint(endpoint)) =
            &mut endpoint.host_identifier
        else {
            panic!("an endpoint");
        };
        let Some(address::Address::SocketAddress(socket)) = endpoint
            .address
            .as_mut()
            .and_then(|address| address.address.as_mut())
        else {
            panic!("a socket address");
        };
        socket.address = "ratings.example.com".to_string();
        assert!(matches!(
            socket.port_specifier,
            Some(socket_address::PortSpecifier::PortValue(9080))
        ));
    });
    let message = nack(&mut store, type_url::ENDPOINT, &new.endpoints);
    assert_names_only(&message, &ratings_cluster, &new.endpoints);
    let config = store.current();
    let endpoints = |name: &str| -> Vec<String> {
        config.clusters[name]
            .assignment
            .endpoints
            .iter()
            .map(|(address, _)| address.to_string())
            .collect()
    };
    assert_eq!(endpoints(&v1_cluster), ["127.0.1.21:9080"], "v1 moved");
    assert_eq!(endpoints(&v2_cluster), ["127.0.1.22:9080"], "v2 moved");
    assert_eq!(
        endpoints(&all_cluster),
        ["127.0.1.21:9080", "127.0.1.22:9080"],
        "reviews moved"
    );
    assert_eq!(
        endpoints(&ratings_cluster),
        ["127.0.2.11:9080"],
        "ratings keeps version 1"
    );
    assert!(config.eds.last_rejection.is_some());

    // LDS: the inbound listener with a second filter chain.
    corrupt::<lds::Listener>(&mut new.listeners, "virtualInbound", |listener| {
        let chain = listener.filter_chains[0].clone();
        listener.filter_chains.push(chain);
    });
    let message = nack(&mut store, type_url::LISTENER, &new.listeners);
    assert_names_only(&message, "virtualInbound", &new.listeners);
    let port = |name: &str| store.local_addr(name).map(|address| address.port());
    assert_eq!(
        port("virtualOutbound"),
        Some(new_outbound_port),
        "outbound moved"
    );
    assert_eq!(port("virtualInbound"), Some(inbound_port), "inbound kept");
    assert!(store.current().lds.last_rejection.is_some());

    // RDS: the inbound routes with a regex the proxy cannot compile.
    corrupt::<rds::RouteConfiguration>(&mut new.routes, &inbound_routes, |config| {
        let route = &mut config.virtual_hosts[0].routes[0];
        route.r#match = Some(rds::RouteMatch {
            path_specifier: Some(rds::route_match::PathSpecifier::SafeRegex(RegexMatcher {
                regex: "(".to_string(),
                ..Default::default()
            })),
            ..Default::default()
        });
    });
    let message = nack(&mut store, type_url::ROUTE, &new.routes);
    assert_names_only(&message, &inbound_routes, &new.routes);
    let config = store.current();
    let outbound = &config.routes["outbound"].current().config;
    let vhost = outbound
        .virtual_hosts
        .iter()
        .find(|vh| vh.name == format!("{reviews}:9080"))
        .expect("reviews virtual host");
    assert!(
        matches!(
            &vhost.routes[0].action,
            Action::Forward(forward) if matches!(forward.clusters, ClusterPick::Weighted { .. })
        ),
        "outbound routes updated to the split: {:?}",
        vhost.routes[0].action
    );
    let inbound = &config.routes[&inbound_routes].current().config;
    assert!(
        matches!(&inbound.virtual_hosts[0].routes[0].matcher.path, PathMatch::Prefix(p) if p == "/"),
        "inbound routes keep version 1"
    );
    assert!(config.rds.last_rejection.is_some());

    // Nothing was ACKed: every type still reports version 1, and the proxy stays ready.
    let versions =
        [&config.cds, &config.eds, &config.lds, &config.rds].map(|state| state.version.clone());
    assert_eq!(versions, old_versions);
    assert!(config.ready(), "{:?}", config.not_ready_reason());
}

/// weft-api refuses at admission exactly the header formatters the proxy cannot apply.
#[test]
fn formatter_lists_agree_between_api_and_proxy() {
    assert_eq!(
        weft_api::header_format::SUPPORTED,
        weft_proxy::config::formatter::SUPPORTED
    );
    assert_eq!(
        weft_api::header_format::START_TIME_SPECIFIERS,
        weft_proxy::config::formatter::START_TIME_SPECIFIERS
    );
}
