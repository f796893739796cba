//! VirtualService `tcp` and `tls` routes through the proxy's converters: every match field,
//! weights and subsets, for captured sidecars that the client-side matches do and do not
//! select. The proxy's own `virtualOutbound` must carry each chain's prefix ranges, server
//! names and weighted clusters, and its store must resolve every cluster they name.

use weft_proxy::config::{ChainMatch, Listener, Network, TcpCluster, TransportProtocol};
use weft_xds::type_url;

use super::check::{
    ConfigCase, Generated, ProxySpec, Report, check_case, controller_proxy, convert, finish,
    free_ports,
};
use super::fixtures::config_from;

/// `tcp-echo` (TCP 9000 and 9001 at 240.240.20.1) and `tls-echo` (TLS 443 at 240.240.20.2),
/// both with v1 and v2 endpoints and subsets, and a VirtualService of each using every match
/// field of `tcp` and `tls` routes.
pub const L4_ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo.l4.test]
  addresses: [240.240.20.1]
  ports: [{number: 9000, name: tcp, protocol: TCP}, {number: 9001, name: tcp-other, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.30, labels: {version: v1}}, {address: 192.0.2.31, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls-echo, namespace: default}
spec:
  hosts: [tls-echo.l4.test]
  addresses: [240.240.20.2]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.40, labels: {version: v1}}, {address: 192.0.2.41, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: default}
spec:
  host: tcp-echo.l4.test
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tls-echo, namespace: default}
spec:
  host: tls-echo.l4.test
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo.l4.test]
  tcp:
  - match: [{port: 9001, sourceLabels: {app: canary}, sourceNamespace: default, gateways: [mesh]}]
    route: [{destination: {host: tcp-echo.l4.test, port: {number: 9001}, subset: v2}}]
  - match: [{destinationSubnets: [240.240.20.0/24], port: 9000}]
    route:
    - {destination: {host: tcp-echo.l4.test, port: {number: 9000}, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo.l4.test, port: {number: 9000}, subset: v2}, weight: 20}
  - route: [{destination: {host: tcp-echo.l4.test, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-echo, namespace: default}
spec:
  hosts: [tls-echo.l4.test, "*.tls-echo.l4.test"]
  tls:
  - match: [{sniHosts: [v1.tls-echo.l4.test], port: 443, destinationSubnets: [240.240.20.2/32], gateways: [mesh]}]
    route: [{destination: {host: tls-echo.l4.test, subset: v1}}]
  - match: [{sniHosts: ["*.tls-echo.l4.test"], sourceLabels: {app: canary}, sourceNamespace: default}]
    route:
    - {destination: {host: tls-echo.l4.test, subset: v1}, weight: 50}
    - {destination: {host: tls-echo.l4.test, subset: v2}, weight: 50}
  - match: [{sniHosts: [tls-echo.l4.test]}]
    route:
    - {destination: {host: tls-echo.l4.test, subset: v1}, weight: 90}
    - {destination: {host: tls-echo.l4.test, subset: v2}, weight: 10}
"#;

const ECHO: &str = "tcp-echo.l4.test";
const TLS: &str = "tls-echo.l4.test";

fn case() -> ConfigCase {
    let set = config_from(&[("l4-routes.yaml", L4_ROUTES)]);
    assert!(set.errors.is_empty(), "l4-routes.yaml: {:#?}", set.errors);
    ConfigCase::local("l4-routes.yaml", set)
}

/// The proxy's converted `virtualOutbound` of a captured sidecar in `namespace` with `labels`.
fn outbound(namespace: &str, labels: &[(&str, &str)]) -> Listener {
    let model = case().model();
    let spec = ProxySpec {
        label: format!("captured sidecar in {namespace}"),
        namespace: namespace.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        app_port: None,
        capture: Some("10.1.0.1".into()),
    };
    let (outbound, inbound) = free_ports();
    let generated = Generated::new(&model, &controller_proxy(&spec, outbound, inbound));
    let resource = generated
        .listeners
        .iter()
        .find(|l| l.name == "virtualOutbound")
        .expect("virtualOutbound generated");
    convert::<envoy_types::pb::envoy::config::listener::v3::Listener, Listener>(
        resource,
        type_url::LISTENER,
        |l| &l.name,
    )
    .unwrap_or_else(|err| panic!("the proxy refuses virtualOutbound: {err}"))
}

/// The clusters (name:weight) of the TCP chain of `listener` for port, address and SNI.
fn clusters_of(listener: &Listener, port: u16, ip: &str, sni: &[&str]) -> Vec<String> {
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    let matches = |m: &ChainMatch| {
        m.destination_port == Some(port)
            && m.prefix_ranges.iter().any(|r| r.addr == ip && r.len == 32)
            && m.server_names == sni
    };
    let chain = listener
        .chains
        .iter()
        .find(|c| matches(&c.matcher))
        .unwrap_or_else(|| {
            panic!(
                "no chain for {ip}:{port} {sni:?} in {:#?}",
                listener
                    .chains
                    .iter()
                    .map(|c| (&c.name, &c.matcher))
                    .collect::<Vec<_>>()
            )
        });
    if !sni.is_empty() {
        assert_eq!(
            chain.matcher.transport_protocol,
            Some(TransportProtocol::Tls),
            "an SNI chain matches TLS"
        );
    }
    let Network::Tcp(tcp) = &chain.network else {
        panic!("{}: a TCP chain expected", chain.name);
    };
    tcp.clusters
        .iter()
        .map(|TcpCluster { name, weight }| format!("{name}:{weight}"))
        .collect()
}

#[tokio::test]
async fn l4_routes_are_accepted_by_the_proxy() {
    // Every proxy kind through the converters and a ConfigStore: every cluster a TCP chain
    // names (weighted ones included) is generated and resolved.
    let mut report = Report::default();
    check_case(&case(), &mut report).await;
    finish(&[("l4-routes.yaml".to_string(), report)]);
}

#[test]
fn tcp_routes_reach_the_proxy_with_weights_and_subsets() {
    let canary = outbound("default", &[("app", "canary")]);
    // Port 9000: the destinationSubnets route (the subnet holds the address), 80/20.
    assert_eq!(
        clusters_of(&canary, 9000, "240.240.20.1", &[]),
        [
            format!("outbound|9000|v1|{ECHO}:80"),
            format!("outbound|9000|v2|{ECHO}:20")
        ]
    );
    // Port 9001: the first route's port, sourceLabels, sourceNamespace and gateways hold.
    assert_eq!(
        clusters_of(&canary, 9001, "240.240.20.1", &[]),
        [format!("outbound|9001|v2|{ECHO}:1")]
    );
    // Another client: the route without a match (destination port: the routed one).
    let other = outbound("other", &[("app", "canary")]);
    assert_eq!(
        clusters_of(&other, 9001, "240.240.20.1", &[]),
        [format!("outbound|9001|v1|{ECHO}:1")]
    );
    let unlabelled = outbound("default", &[]);
    assert_eq!(
        clusters_of(&unlabelled, 9001, "240.240.20.1", &[]),
        [format!("outbound|9001|v1|{ECHO}:1")]
    );
}

#[test]
fn tls_routes_reach_the_proxy_as_server_names() {
    let canary = outbound("default", &[("app", "canary")]);
    let at = "240.240.20.2";
    assert_eq!(
        clusters_of(&canary, 443, at, &["v1.tls-echo.l4.test"]),
        [format!("outbound|443|v1|{TLS}:1")]
    );
    assert_eq!(
        clusters_of(&canary, 443, at, &["*.tls-echo.l4.test"]),
        [
            format!("outbound|443|v1|{TLS}:50"),
            format!("outbound|443|v2|{TLS}:50")
        ]
    );
    assert_eq!(
        clusters_of(&canary, 443, at, &["tls-echo.l4.test"]),
        [
            format!("outbound|443|v1|{TLS}:90"),
            format!("outbound|443|v2|{TLS}:10")
        ]
    );
    // No SNI, another name, or not TLS: the service.
    assert_eq!(
        clusters_of(&canary, 443, at, &[]),
        [format!("outbound|443||{TLS}:1")]
    );
    // The wildcard route is the canary's only (sourceLabels, sourceNamespace).
    let other = outbound("other", &[("app", "canary")]);
    assert!(
        !other
            .chains
            .iter()
            .any(|c| c.matcher.server_names.iter().any(|n| n.starts_with('*'))),
        "{:#?}",
        other.chains.iter().map(|c| &c.matcher).collect::<Vec<_>>()
    );
    assert_eq!(
        clusters_of(&other, 443, at, &["v1.tls-echo.l4.test"]),
        [format!("outbound|443|v1|{TLS}:1")]
    );
}
