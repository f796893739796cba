//! Locality load balancing end to end through the proxy's converters: a proxy that says where
//! it runs (`weft-proxy --locality`) gets EDS priorities (failover) and locality weights
//! (distribute) relative to that place, and CDS turns locality weighting on where Istio does.

use std::collections::HashMap;

use weft_proxy::config::{Assignment, ClusterConfig};

use super::check::Generated;
use super::fixtures::config_from;

const LOCALITY: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.0.1.1, locality: r1/z1/s1}
  - {address: 10.0.1.2, locality: r1/z2/s1}
  - {address: 10.0.2.1, locality: r2/z1/s1}
  - {address: 10.0.3.1, locality: r3/z1/s1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.example.internal
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}
    loadBalancer:
      localityLbSetting:
        failover: [{from: r1, to: r3}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cart, namespace: default}
spec:
  hosts: [cart.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.1.1.1, locality: r1/z1/s1}
  - {address: 10.1.1.2, locality: r1/z1/s1}
  - {address: 10.1.2.1, locality: r2/z1/s1}
  - {address: 10.1.3.1, locality: r3/z1/s1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: default}
spec:
  host: cart.example.internal
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute: [{from: "r1/z1/*", to: {"r1/z1/*": 70, "r2/*": 30}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: plain, namespace: default}
spec:
  hosts: [plain.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.2.1.1, locality: r1/z1/s1}
  - {address: 10.2.2.1, locality: r2/z1/s1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: default}
spec:
  host: plain.example.internal
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
"#;

/// The proxy's clusters and assignments, converted, for a proxy with `flags`.
fn converted(flags: &[&str]) -> (HashMap<String, ClusterConfig>, HashMap<String, Assignment>) {
    let generated = Generated::for_client(
        "locality.yaml",
        config_from(&[("locality.yaml", LOCALITY)]),
        flags,
        true,
    );
    (generated.proxy_clusters(), generated.proxy_assignments())
}

/// (locality, priority, weight, endpoint addresses) of each group.
fn groups(assignment: &Assignment) -> Vec<(String, u32, Option<u32>, Vec<String>)> {
    assignment
        .groups
        .iter()
        .map(|g| {
            (
                g.locality.to_string(),
                g.priority,
                g.weight,
                assignment.endpoints[g.endpoints.clone()]
                    .iter()
                    .map(|(addr, _)| addr.ip().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn row(
    locality: &str,
    priority: u32,
    weight: u32,
    addresses: &[&str],
) -> (String, u32, Option<u32>, Vec<String>) {
    (
        locality.to_string(),
        priority,
        Some(weight),
        addresses.iter().map(|a| a.to_string()).collect(),
    )
}

#[test]
fn failover_reaches_the_proxy_as_priority_levels() {
    let (clusters, assignments) = converted(&["--locality", "r1/z1/s1"]);
    let shop = "outbound|80||shop.example.internal";
    // Same zone, same region, the failover region r3, then the rest.
    assert_eq!(
        groups(&assignments[shop]),
        vec![
            row("r1/z1/s1", 0, 1, &["10.0.1.1"]),
            row("r1/z2/s1", 1, 1, &["10.0.1.2"]),
            row("r3/z1/s1", 2, 1, &["10.0.3.1"]),
            row("r2/z1/s1", 3, 1, &["10.0.2.1"]),
        ]
    );
    assert!(
        clusters[shop].locality_weighted,
        "an explicit failover rule"
    );
    assert!(clusters[shop].outlier.is_some());
    // The mesh's default: by closeness alone, no locality weighting.
    let plain = "outbound|80||plain.example.internal";
    assert_eq!(
        groups(&assignments[plain]),
        vec![
            row("r1/z1/s1", 0, 1, &["10.2.1.1"]),
            row("r2/z1/s1", 1, 1, &["10.2.2.1"]),
        ]
    );
    assert!(!clusters[plain].locality_weighted);
}

#[test]
fn distribute_reaches_the_proxy_as_locality_weights() {
    let (clusters, assignments) = converted(&["--locality", "r1/z1/s1"]);
    let cart = "outbound|80||cart.example.internal";
    assert!(clusters[cart].locality_weighted);
    // r3 is named by no `to`: it takes nothing.
    assert_eq!(
        groups(&assignments[cart]),
        vec![
            row("r1/z1/s1", 0, 70, &["10.1.1.1", "10.1.1.2"]),
            row("r2/z1/s1", 0, 30, &["10.1.2.1"]),
        ]
    );
}

#[test]
fn a_proxy_nowhere_gets_one_level() {
    let (_, assignments) = converted(&[]);
    for (name, assignment) in &assignments {
        assert!(
            !assignment.has_priorities(),
            "{name}: {:?}",
            groups(assignment)
        );
    }
}
