//! RDS, CDS and EDS of the capture shape: per-port route configurations with the services'
//! addresses and the catch-all, the added clusters, Sidecar egress scoping, and every resource
//! through [`crate::xds::generate`] decoded with prost.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::socket_address;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::route_action;
use envoy_types::pb::google::protobuf::Duration;
use prost::Message;
use weft_xds::contract::{
    BLACKHOLE_CLUSTER, CLUSTER, ENDPOINT, HTTP_PROTOCOL_OPTIONS, INBOUND_PASSTHROUGH_CLUSTER,
    LISTENER, ROUTE,
};

use super::super::testing::{capturing_proxy, mesh, mesh_with};
use super::*;
use crate::model::MeshSettings;
use crate::xds::clusters::clusters;
use crate::xds::endpoints::load_assignments_for;
use crate::xds::generate;

fn config<'a>(configs: &'a [RouteConfiguration], name: &str) -> &'a RouteConfiguration {
    configs
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no route configuration {name}"))
}

/// `name: domains` of each virtual host.
fn hosts(config: &RouteConfiguration) -> Vec<String> {
    config
        .virtual_hosts
        .iter()
        .map(|host| format!("{}: {}", host.name, host.domains.join(" ")))
        .collect()
}

fn cluster_of(route: &Route) -> String {
    let Some(route::Action::Route(action)) = &route.action else {
        panic!("route action expected");
    };
    let Some(route_action::ClusterSpecifier::Cluster(cluster)) = &action.cluster_specifier else {
        panic!("one cluster expected");
    };
    cluster.clone()
}

#[test]
fn one_configuration_per_port_with_addresses_then_allow_any() {
    let model = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: z, namespace: default}
spec:
  hosts: [z.example.com]
  addresses: [10.96.0.10]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.7}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, port: {number: 9080}}}], timeout: 3s}]
"#,
    );
    let configs = route_configurations(&model, &capturing_proxy());
    assert_eq!(
        configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["8000", "8080", "9080", "inbound|9080||", "inbound|18000||"]
    );
    assert_eq!(
        hosts(config(&configs, "8000")),
        [
            "api.example.com:8000: api.example.com:8000 api.example.com",
            "legacy.default.svc.cluster.local:8000: legacy.default.svc.cluster.local:8000 legacy:8000 legacy.default:8000 legacy.default.svc:8000 legacy.default.svc.cluster.local legacy legacy.default legacy.default.svc 10.96.0.30:8000 10.96.0.30 [fd00::30]:8000 fd00::30",
            "allow_any: *",
        ]
    );
    assert_eq!(
        hosts(config(&configs, "8080")),
        [
            "v6.example.com:8080: v6.example.com:8080 v6.example.com [2001:db8::10]:8080 2001:db8::10",
            "allow_any: *",
        ]
    );
    // z shares reviews' address: the address domains stay with the first service.
    assert_eq!(
        hosts(config(&configs, "9080")),
        [
            "details.other.svc.cluster.local:9080: details.other.svc.cluster.local:9080 details.other:9080 details.other.svc:9080 details.other.svc.cluster.local details.other details.other.svc",
            "reviews.default.svc.cluster.local:9080: reviews.default.svc.cluster.local:9080 reviews:9080 reviews.default:9080 reviews.default.svc:9080 reviews.default.svc.cluster.local reviews reviews.default reviews.default.svc 10.96.0.10:9080 10.96.0.10",
            "z.example.com:9080: z.example.com:9080 z.example.com",
            "allow_any: *",
        ]
    );
    let port_9080 = config(&configs, "9080");
    // Routes as in `outbound`: the VirtualService's for reviews, the default one for the rest.
    let reviews = &port_9080.virtual_hosts[1].routes[0];
    assert_eq!(
        cluster_of(reviews),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    let Some(route::Action::Route(action)) = &reviews.action else {
        panic!("route expected");
    };
    assert_eq!(
        action.timeout,
        Some(Duration {
            seconds: 3,
            nanos: 0
        })
    );
    assert_eq!(
        cluster_of(&port_9080.virtual_hosts[2].routes[0]),
        "outbound|9080||z.example.com"
    );
    // The catch-all: unknown hosts to their original destination, without a timeout.
    let allow_any = port_9080.virtual_hosts.last().expect("catch-all");
    assert_eq!(allow_any.routes.len(), 1);
    assert_eq!(allow_any.routes[0].name, "allow_any");
    assert_eq!(cluster_of(&allow_any.routes[0]), PASSTHROUGH_CLUSTER);
    let Some(route::Action::Route(action)) = &allow_any.routes[0].action else {
        panic!("route expected");
    };
    assert_eq!(
        action.timeout,
        Some(Duration {
            seconds: 0,
            nanos: 0
        })
    );
    assert_eq!(
        allow_any.routes[0].r#match,
        Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        })
    );
    // No domain twice in one configuration.
    for config in &configs {
        let mut domains: Vec<&String> = config
            .virtual_hosts
            .iter()
            .flat_map(|h| &h.domains)
            .collect();
        let count = domains.len();
        domains.sort();
        domains.dedup();
        assert_eq!(domains.len(), count, "{}", config.name);
    }
    // The inbound configurations: everything to the port's inbound cluster.
    let inbound = config(&configs, "inbound|18000||");
    assert_eq!(hosts(inbound), ["inbound|http|18000: *"]);
    assert_eq!(
        cluster_of(&inbound.virtual_hosts[0].routes[0]),
        "inbound|18000||"
    );
}

#[test]
fn registry_only_answers_unknown_hosts_with_502() {
    let settings = MeshSettings {
        outbound_traffic_policy: OutboundTrafficPolicy::RegistryOnly,
        ..MeshSettings::default()
    };
    let configs = route_configurations(&mesh_with("", &settings), &capturing_proxy());
    for config in configs.iter().filter(|c| !c.name.starts_with("inbound")) {
        let last = config.virtual_hosts.last().expect("catch-all");
        assert_eq!(last.name, BLOCK_ALL);
        assert_eq!(last.domains, ["*"]);
        assert_eq!(last.routes[0].name, BLOCK_ALL);
        let Some(route::Action::DirectResponse(response)) = &last.routes[0].action else {
            panic!("direct response expected");
        };
        assert_eq!(response.status, 502);
    }
}

fn find<'a>(all: &'a [Cluster], name: &str) -> &'a Cluster {
    all.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn discovery(cluster: &Cluster) -> i32 {
    match cluster.cluster_discovery_type {
        Some(cluster::ClusterDiscoveryType::Type(kind)) => kind,
        _ => panic!("type expected"),
    }
}

#[test]
fn clusters_for_unknown_destinations_and_inbound_ports() {
    let mut proxy = capturing_proxy();
    proxy.app_port = Some(9080);
    let all = clusters(&mesh(""), &proxy);
    let timeout = Some(Duration {
        seconds: 10,
        nanos: 0,
    });
    let original_dst = cluster::DiscoveryType::OriginalDst as i32;
    let provided = cluster::LbPolicy::ClusterProvided as i32;

    let passthrough = find(&all, PASSTHROUGH_CLUSTER);
    assert_eq!(discovery(passthrough), original_dst);
    assert_eq!(passthrough.lb_policy, provided);
    assert_eq!(passthrough.connect_timeout, timeout);
    assert!(passthrough.load_assignment.is_none() && passthrough.upstream_bind_config.is_none());
    assert!(
        passthrough
            .typed_extension_protocol_options
            .contains_key(HTTP_PROTOCOL_OPTIONS)
    );

    let blackhole = find(&all, BLACKHOLE_CLUSTER);
    assert_eq!(discovery(blackhole), cluster::DiscoveryType::Static as i32);
    assert_eq!(blackhole.connect_timeout, timeout);
    assert_eq!(
        blackhole.load_assignment,
        Some(ClusterLoadAssignment {
            cluster_name: BLACKHOLE_CLUSTER.to_string(),
            ..Default::default()
        })
    );

    let source = |cluster: &Cluster| {
        let bind = cluster.upstream_bind_config.as_ref().expect("bind config");
        let address = bind.source_address.as_ref().expect("source address");
        assert_eq!(
            address.port_specifier,
            Some(socket_address::PortSpecifier::PortValue(0))
        );
        address.address.clone()
    };
    let inbound_passthrough = find(&all, INBOUND_PASSTHROUGH_CLUSTER);
    assert_eq!(discovery(inbound_passthrough), original_dst);
    assert_eq!(inbound_passthrough.lb_policy, provided);
    assert_eq!(source(inbound_passthrough), "127.0.0.6");

    // One per inbound port; HTTP and undeclared ports with the downstream protocol.
    let inbound: Vec<(&str, bool)> = all
        .iter()
        .filter(|c| c.name.starts_with("inbound|"))
        .map(|c| {
            assert_eq!(discovery(c), original_dst);
            assert_eq!(c.lb_policy, provided);
            assert_eq!(c.connect_timeout, timeout);
            assert!(c.load_assignment.is_none());
            assert_eq!(source(c), "127.0.0.6");
            (
                c.name.as_str(),
                c.typed_extension_protocol_options
                    .contains_key(HTTP_PROTOCOL_OPTIONS),
            )
        })
        .collect();
    // The explicit shape's static inbound|9080|| cluster is not sent.
    assert_eq!(
        inbound,
        [
            ("inbound|3306||", false),
            ("inbound|5432||", false),
            ("inbound|9080||", true),
            ("inbound|18000||", true),
        ]
    );
    // Outbound clusters are unchanged.
    assert_eq!(
        discovery(find(&all, "outbound|5432||db.example.com")),
        cluster::DiscoveryType::Eds as i32
    );
}

const EGRESS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: ["./*", "istio-system/*"]}]
"#;

#[test]
fn egress_hosts_scope_routes_clusters_and_endpoints() {
    let model = mesh(EGRESS);
    let proxy = capturing_proxy();
    let details = "details.other.svc.cluster.local";
    let configs = route_configurations(&model, &proxy);
    assert!(
        !hosts(config(&configs, "9080"))
            .iter()
            .any(|h| h.contains(details))
    );
    let names: Vec<String> = clusters(&model, &proxy)
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(names.contains(&"outbound|8000||api.example.com".to_string()));
    assert!(!names.iter().any(|n| n.contains(details)), "{names:?}");
    let assignments: Vec<String> = load_assignments_for(&model, &proxy)
        .into_iter()
        .map(|a| a.cluster_name)
        .collect();
    assert!(assignments.contains(&"outbound|5432||db.example.com".to_string()));
    assert!(!assignments.iter().any(|n| n.contains(details)));
    // The explicit shape is scoped the same way; a workload the Sidecar does not select sees all.
    let mut explicit = proxy.clone();
    explicit.capture = false;
    let outbound = crate::xds::routes::outbound(&model, &explicit);
    assert!(!format!("{outbound:?}").contains(details));
    let mut other = explicit.clone();
    other.labels.clear();
    assert!(format!("{:?}", crate::xds::routes::outbound(&model, &other)).contains(details));
}

#[test]
fn every_type_through_generate_decodes() {
    let model = mesh("");
    let proxy = capturing_proxy();
    let listeners: Vec<Listener> = generate(&model, &proxy, LISTENER)
        .iter()
        .map(|r| {
            assert_eq!(r.body.type_url, LISTENER);
            Listener::decode(r.body.value.as_slice()).expect("listener decodes")
        })
        .collect();
    assert_eq!(
        listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["virtualOutbound", "virtualInbound"]
    );
    assert_eq!(listeners, crate::xds::listeners::listeners(&model, &proxy));
    let routes: Vec<String> = generate(&model, &proxy, ROUTE)
        .iter()
        .map(|r| {
            let config = RouteConfiguration::decode(r.body.value.as_slice()).expect("decodes");
            assert_eq!(config.name, r.name);
            r.name.clone()
        })
        .collect();
    assert!(!routes.contains(&"outbound".to_string()));
    assert!(routes.contains(&"9080".to_string()));
    let clusters: Vec<String> = generate(&model, &proxy, CLUSTER)
        .iter()
        .map(|r| {
            let cluster = Cluster::decode(r.body.value.as_slice()).expect("decodes");
            assert_eq!(cluster.name, r.name);
            r.name.clone()
        })
        .collect();
    for name in [
        PASSTHROUGH_CLUSTER,
        BLACKHOLE_CLUSTER,
        INBOUND_PASSTHROUGH_CLUSTER,
    ] {
        assert!(clusters.contains(&name.to_string()), "{name}");
    }
    assert!(!generate(&model, &proxy, ENDPOINT).is_empty());

    // The explicit shape of the same pod: today's resources.
    let mut explicit = proxy.clone();
    explicit.capture = false;
    let names = |type_url: &str| -> Vec<String> {
        generate(&model, &explicit, type_url)
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    assert_eq!(names(LISTENER), ["virtualOutbound"]);
    assert_eq!(names(ROUTE), ["outbound"]);
    assert!(!names(CLUSTER).contains(&PASSTHROUGH_CLUSTER.to_string()));
}
