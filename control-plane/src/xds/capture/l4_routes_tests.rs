//! VirtualService `tcp` and `tls` routes on `virtualOutbound`: weights and subsets, the
//! matches decided per proxy, destination subnets as prefix ranges, SNI chains.

use super::super::testing::{capturing_proxy, chains, listener, mesh};
use crate::model::Model;
use crate::xds::Proxy;
use crate::xds::listeners::{VIRTUAL_OUTBOUND, listeners};

/// `tcp-echo.example.test` at 240.240.9.1 (TCP 9000 and 9001, endpoints v1 and v2, subsets),
/// `cache.example.test` without addresses (TCP 7000), `tls.example.test` without addresses
/// (TLS 443) and `vault.example.test` at 240.240.9.2 (HTTPS 8443).
const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo.example.test]
  addresses: [240.240.9.1]
  ports: [{number: 9000, name: tcp, protocol: TCP}, {number: 9001, name: tcp-other, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.10, labels: {version: v1}}, {address: 192.0.2.11, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: default}
spec:
  host: tcp-echo.example.test
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: default}
spec:
  hosts: [cache.example.test]
  ports: [{number: 7000, name: tcp, protocol: TCP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls, namespace: default}
spec:
  hosts: [tls.example.test]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vault, namespace: default}
spec:
  hosts: [vault.example.test]
  addresses: [240.240.9.2]
  ports: [{number: 8443, name: https, protocol: HTTPS}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.20}]
"#;

const ECHO: &str = "tcp-echo.example.test";

fn outbound_chains(model: &Model, proxy: &Proxy, filter: &str) -> Vec<String> {
    let all = listeners(model, proxy);
    chains(listener(&all, VIRTUAL_OUTBOUND))
        .into_iter()
        .filter(|c| c.contains(filter))
        .collect()
}

fn with(yaml: &str) -> Model {
    let model = mesh(&format!("{SERVICES}\n---\n{yaml}"));
    let warnings: Vec<String> = model
        .warnings
        .iter()
        .filter(|w| w.object.name != "external-db" && !w.message.contains("captured"))
        .map(|w| format!("{} {}: {}", w.object, w.path, w.message))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    model
}

/// A proxy in `namespace` with `app: <app>`.
fn client(namespace: &str, app: &str) -> Proxy {
    let mut proxy = capturing_proxy();
    proxy.namespace = namespace.to_string();
    proxy.labels = [("app".to_string(), app.to_string())].into();
    proxy
}

#[test]
fn without_routes_each_port_goes_to_its_service() {
    let model = with("");
    assert_eq!(
        outbound_chains(&model, &capturing_proxy(), "240.240.9.1"),
        [
            format!("240.240.9.1_9000 {{port=9000 ip=240.240.9.1/32}} → tcp outbound|9000||{ECHO}"),
            format!("240.240.9.1_9001 {{port=9001 ip=240.240.9.1/32}} → tcp outbound|9001||{ECHO}"),
        ]
    );
}

#[test]
fn a_weighted_tcp_route_shifts_traffic_between_subsets() {
    // Istio's TCP traffic shifting task: 80 % to v1, 20 % to v2, on the port it names.
    let model = with(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [{ECHO}]
  tcp:
  - match: [{{port: 9000}}]
    route:
    - {{destination: {{host: {ECHO}, port: {{number: 9000}}, subset: v1}}, weight: 80}}
    - {{destination: {{host: {ECHO}, port: {{number: 9000}}, subset: v2}}, weight: 20}}
"#
    ));
    assert_eq!(
        outbound_chains(&model, &capturing_proxy(), "240.240.9.1"),
        [
            format!(
                "240.240.9.1_9000 {{port=9000 ip=240.240.9.1/32}} → tcp outbound|9000|v1|{ECHO}:80,outbound|9000|v2|{ECHO}:20"
            ),
            // The match names port 9000: 9001 keeps its service.
            format!("240.240.9.1_9001 {{port=9001 ip=240.240.9.1/32}} → tcp outbound|9001||{ECHO}"),
        ]
    );
}

#[test]
fn matches_on_the_client_are_decided_for_each_proxy() {
    let model = with(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [{ECHO}]
  tcp:
  - match: [{{sourceLabels: {{app: reviews}}, gateways: [mesh]}}]
    route: [{{destination: {{host: {ECHO}, subset: v2}}}}]
  - match: [{{sourceNamespace: other}}, {{gateways: [ingress]}}]
    route: [{{destination: {{host: {ECHO}, subset: v1}}}}]
  - route:
    - {{destination: {{host: {ECHO}, subset: v1}}, weight: 50}}
    - {{destination: {{host: {ECHO}, subset: v2}}, weight: 50}}
    - {{destination: {{host: {ECHO}, subset: v2}}, weight: 0}}
"#
    ));
    let echo = |proxy: &Proxy| outbound_chains(&model, proxy, "240.240.9.1_9000");
    // No port in the destinations and two ports: the routed port is the cluster's.
    assert_eq!(
        echo(&client("default", "reviews")),
        [format!(
            "240.240.9.1_9000 {{port=9000 ip=240.240.9.1/32}} → tcp outbound|9000|v2|{ECHO}"
        )]
    );
    assert_eq!(
        echo(&client("other", "ratings")),
        [format!(
            "240.240.9.1_9000 {{port=9000 ip=240.240.9.1/32}} → tcp outbound|9000|v1|{ECHO}"
        )]
    );
    // Neither: the route without a match (weight 0 left out).
    assert_eq!(
        echo(&client("default", "ratings")),
        [format!(
            "240.240.9.1_9000 {{port=9000 ip=240.240.9.1/32}} → tcp outbound|9000|v1|{ECHO}:50,outbound|9000|v2|{ECHO}:50"
        )]
    );
}

#[test]
fn destination_subnets_become_prefix_ranges() {
    let model = with(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: cache, namespace: default}}
spec:
  hosts: [cache.example.test]
  tcp:
  - match: [{{destinationSubnets: [10.10.0.0/16, 10.20.0.1]}}, {{destinationSubnets: [10.30.0.0/16], port: 1}}]
    route: [{{destination: {{host: {ECHO}, subset: v1, port: {{number: 9001}}}}}}]
  - match: [{{destinationSubnets: [10.10.0.0/16, 10.40.0.0/16]}}]
    route: [{{destination: {{host: {ECHO}, subset: v2, port: {{number: 9001}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [{ECHO}]
  tcp:
  - match: [{{destinationSubnets: [192.168.0.0/16]}}]
    route: [{{destination: {{host: {ECHO}, subset: v1}}}}]
  - match: [{{destinationSubnets: [240.240.0.0/16], port: 9001}}]
    route: [{{destination: {{host: {ECHO}, subset: v2}}}}]
"#
    ));
    let proxy = capturing_proxy();
    // Without addresses: the subsets are the match, in order, each taken once; then the
    // service for the rest (the port match of 10.30.0.0/16 does not hold).
    assert_eq!(
        outbound_chains(&model, &proxy, "_7000"),
        [
            format!(
                "0.0.0.0_7000 {{port=7000 ip=10.10.0.0/16 ip=10.20.0.1/32}} → tcp outbound|9001|v1|{ECHO}"
            ),
            format!("0.0.0.0_7000 {{port=7000 ip=10.40.0.0/16}} → tcp outbound|9001|v2|{ECHO}"),
            "0.0.0.0_7000 {port=7000} → tcp outbound|7000||cache.example.test".to_string(),
        ]
    );
    // With an address: a subnet that holds it takes its connections; one that does not
    // cannot be reached through this service.
    assert_eq!(
        outbound_chains(&model, &proxy, "240.240.9.1"),
        [
            format!("240.240.9.1_9000 {{port=9000 ip=240.240.9.1/32}} → tcp outbound|9000||{ECHO}"),
            format!(
                "240.240.9.1_9001 {{port=9001 ip=240.240.9.1/32}} → tcp outbound|9001|v2|{ECHO}"
            ),
        ]
    );
}

#[test]
fn tls_routes_match_server_names_then_the_port_takes_the_rest() {
    let model = with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls, namespace: default}
spec:
  hosts: [tls.example.test, "*.tls.example.test"]
  tls:
  - match: [{sniHosts: [a.tls.example.test, tls.example.test], port: 443}]
    route: [{destination: {host: tls.example.test}}]
  - match: [{sniHosts: ["*.tls.example.test"], sourceLabels: {app: reviews}}]
    route:
    - {destination: {host: vault.example.test, port: {number: 8443}}, weight: 30}
    - {destination: {host: tls.example.test}, weight: 70}
  - match: [{sniHosts: [a.tls.example.test, b.tls.example.test]}]
    route: [{destination: {host: vault.example.test}}]
  - match: [{sniHosts: [c.tls.example.test], port: 8443}]
    route: [{destination: {host: vault.example.test}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault, namespace: default}
spec:
  hosts: [vault.example.test]
  tls:
  - match: [{sniHosts: [vault.example.test], destinationSubnets: [240.240.9.0/24]}]
    route: [{destination: {host: tls.example.test, port: {number: 443}}}]
  - match: [{sniHosts: [vault.example.test], destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: tls.example.test, port: {number: 443}}}]
  tcp:
  - route: [{destination: {host: vault.example.test}}]
"#,
    );
    let tls = "tls.example.test";
    let vault = "vault.example.test";
    assert_eq!(
        outbound_chains(&model, &capturing_proxy(), "_443"),
        [
            format!(
                "0.0.0.0_443 {{port=443 sni=a.tls.example.test,tls.example.test transport=tls}} → tcp outbound|443||{tls}"
            ),
            format!(
                "0.0.0.0_443 {{port=443 sni=*.tls.example.test transport=tls}} → tcp outbound|8443||{vault}:30,outbound|443||{tls}:70"
            ),
            // a.tls… was the first route's: only b.tls… is left for the third.
            format!(
                "0.0.0.0_443 {{port=443 sni=b.tls.example.test transport=tls}} → tcp outbound|8443||{vault}"
            ),
            // Not TLS, or another name: the service.
            format!("0.0.0.0_443 {{port=443}} → tcp outbound|443||{tls}"),
        ]
    );
    // Another client: the wildcard route's sourceLabels do not hold.
    assert!(
        !outbound_chains(&model, &client("default", "ratings"), "_443")
            .iter()
            .any(|c| c.contains('*'))
    );
    // HTTPS with an address: the subnet that holds it; then its tcp route for the rest.
    assert_eq!(
        outbound_chains(&model, &capturing_proxy(), "_8443"),
        [
            format!(
                "240.240.9.2_8443 {{port=8443 ip=240.240.9.2/32 sni=vault.example.test transport=tls}} → tcp outbound|443||{tls}"
            ),
            format!(
                "240.240.9.2_8443 {{port=8443 ip=240.240.9.2/32}} → tcp outbound|8443||{vault}"
            ),
        ]
    );
}

#[test]
fn tls_routes_apply_to_tls_ports_only() {
    // A TLS route on a service whose ports are TCP: Istio ignores it there.
    let model = with(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [{ECHO}]
  tls:
  - match: [{{sniHosts: [{ECHO}]}}]
    route: [{{destination: {{host: {ECHO}, subset: v2}}}}]
"#
    ));
    assert!(
        outbound_chains(&model, &capturing_proxy(), "240.240.9.1")
            .iter()
            .all(|c| !c.contains("sni=")),
    );
}

#[test]
fn cidr_intersections() {
    use super::{Cidr, intersection, range_key};
    let c = |s: &str| Cidr::parse(s).unwrap();
    let key = |x: Option<Cidr>| x.map(|x| range_key(&x));
    assert_eq!(
        key(intersection(&c("10.0.0.0/8"), &c("10.1.2.3"))),
        Some("10.1.2.3/32".into())
    );
    assert_eq!(
        key(intersection(&c("10.1.0.0/16"), &c("10.0.0.0/8"))),
        Some("10.1.0.0/16".into())
    );
    assert_eq!(
        key(intersection(&c("10.1.0.0/16"), &c("10.2.0.0/16"))),
        None
    );
    assert_eq!(key(intersection(&c("0.0.0.0/0"), &c("fd00::1"))), None);
    assert_eq!(
        key(intersection(&c("fd00::/8"), &c("fd00::30"))),
        Some("fd00::30/128".into())
    );
    assert_eq!(range_key(&c("10.1.2.3/8")), "10.0.0.0/8");
}

#[test]
fn unknown_destinations_of_tcp_and_tls_routes_are_warned() {
    let model = mesh(&format!(
        r#"{SERVICES}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [{ECHO}]
  tcp:
  - route: [{{destination: {{host: {ECHO}, subset: v3}}}}]
  tls:
  - match: [{{sniHosts: [{ECHO}]}}]
    route: [{{destination: {{host: nowhere.example.test}}, weight: 50}}, {{destination: {{host: {ECHO}, port: {{number: 1}}}}, weight: 50}}]
"#
    ));
    let found: Vec<String> = model
        .warnings
        .iter()
        .filter(|w| w.object.name == "tcp-echo")
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(
        found,
        [
            format!("spec.tcp[0].route[0].destination.subset: no DestinationRule defines subset \"v3\" for host {ECHO}; connections are closed (no cluster)"),
            "spec.tls[0].route[0].destination.host: no ServiceEntry defines host nowhere.example.test; connections are closed (no cluster)".to_string(),
            format!("spec.tls[0].route[1].destination.port.number: service {ECHO} has no port 1; connections are closed (no cluster)"),
        ]
    );
}

#[test]
fn the_destinations_tcp_idle_timeout_reaches_the_tcp_proxy() {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    let model = mesh(&SERVICES.replace(
        "  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]",
        "  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 90s}}}\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]",
    ));
    let all = listeners(&model, &client("default", "client"));
    let outbound = listener(&all, VIRTUAL_OUTBOUND);
    let idle: Vec<Option<i64>> = outbound
        .filter_chains
        .iter()
        .filter(|c| c.name.starts_with("240.240.9.1_"))
        .map(|c| match &c.filters.last().expect("a filter").config_type {
            Some(ConfigType::TypedConfig(any)) => {
                let tcp: TcpProxy =
                    prost::Message::decode(any.value.as_slice()).expect("tcp proxy");
                tcp.idle_timeout.map(|d| d.seconds)
            }
            _ => None,
        })
        .collect();
    assert!(!idle.is_empty());
    assert!(idle.iter().all(|t| *t == Some(90)), "{idle:?}");
}
