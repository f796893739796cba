//! Priority levels and weighted localities, through the conversion of Envoy's cluster and
//! load assignment to the picks of a real `Cluster`.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

use crate::config::{Assignment, ClusterConfig};
use crate::upstream::{Cluster, PoolRegistry};
use weft_lb::outlier::Outcome;

/// One locality of the test assignment: priority, weight, zone, endpoint ports (127.0.0.1).
struct Group(u32, Option<u32>, &'static str, &'static [u16]);

fn assignment(groups: &[Group]) -> Assignment {
    let endpoints = groups
        .iter()
        .map(
            |Group(priority, weight, zone, ports)| eds::LocalityLbEndpoints {
                locality: Some(core::Locality {
                    region: "r".into(),
                    zone: (*zone).into(),
                    sub_zone: String::new(),
                }),
                priority: *priority,
                load_balancing_weight: weight.map(|value| UInt32Value { value }),
                lb_endpoints: ports
                    .iter()
                    .map(|port| eds::LbEndpoint {
                        host_identifier: Some(eds::lb_endpoint::HostIdentifier::Endpoint(
                            eds::Endpoint {
                                address: Some(core::Address {
                                    address: Some(core::address::Address::SocketAddress(
                                        core::SocketAddress {
                                            address: "127.0.0.1".into(),
                                            port_specifier: Some(
                                                core::socket_address::PortSpecifier::PortValue(
                                                    u32::from(*port),
                                                ),
                                            ),
                                            ..Default::default()
                                        },
                                    )),
                                }),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )
        .collect();
    Assignment::try_from(eds::ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints,
        ..Default::default()
    })
    .expect("a valid assignment")
}

/// An EDS cluster; `outlier`: one 5xx ejects, for `ejection` (every endpoint may go);
/// `weighted`: locality-weighted balancing.
fn config(
    policy: cds::cluster::LbPolicy,
    outlier: Option<Duration>,
    weighted: bool,
) -> ClusterConfig {
    use cds::cluster::common_lb_config::{LocalityConfigSpecifier, LocalityWeightedLbConfig};
    let ms = |d: Duration| PbDuration {
        seconds: 0,
        nanos: d.as_nanos() as i32,
    };
    let outlier_detection = outlier.map(|ejection| cds::OutlierDetection {
        consecutive_5xx: Some(UInt32Value { value: 1 }),
        interval: Some(ms(Duration::from_millis(10))),
        base_ejection_time: Some(ms(ejection)),
        max_ejection_percent: Some(UInt32Value { value: 100 }),
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        ..Default::default()
    });
    ClusterConfig::try_from(cds::Cluster {
        name: "c".into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cds::cluster::EdsClusterConfig {
            eds_config: Some(core::ConfigSource {
                config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                    core::AggregatedConfigSource {},
                )),
                ..Default::default()
            }),
            service_name: "c".into(),
        }),
        lb_policy: policy as i32,
        outlier_detection,
        common_lb_config: Some(cds::cluster::CommonLbConfig {
            // Istio's minHealthPercent default: no panic mode.
            healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: 0.0,
            }),
            locality_config_specifier: weighted.then_some(
                LocalityConfigSpecifier::LocalityWeightedLbConfig(LocalityWeightedLbConfig {}),
            ),
            ..Default::default()
        }),
        ..Default::default()
    })
    .expect("a valid cluster")
}

fn cluster(config: ClusterConfig, assignment: Assignment) -> Cluster {
    Cluster::new(config, assignment, true, &mut PoolRegistry::default(), None)
}

fn dst() -> std::net::SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

/// How many of `n` picks each port got.
fn shares(cluster: &Cluster, n: usize) -> HashMap<u16, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let endpoint = cluster.pick(dst()).expect("an endpoint");
        *out.entry(endpoint.addr.port()).or_default() += 1;
    }
    out
}

fn eject(cluster: &Cluster, port: u16) {
    let endpoint = cluster
        .endpoints()
        .into_iter()
        .find(|e| e.addr.port() == port)
        .expect("the endpoint");
    cluster.record(&endpoint, Outcome::Status(500));
    assert!(endpoint.is_ejected(), "{port} ejected");
}

fn sum(shares: &HashMap<u16, usize>, ports: &[u16]) -> usize {
    ports
        .iter()
        .map(|p| shares.get(p).copied().unwrap_or(0))
        .sum()
}

#[test]
fn the_conversion_keeps_levels_localities_and_weights() {
    let a = assignment(&[
        Group(1, Some(3), "b", &[20, 21]),
        Group(0, None, "a", &[10]),
    ]);
    let groups: Vec<_> = a
        .groups
        .iter()
        .map(|g| {
            (
                g.priority,
                g.weight,
                g.locality.zone.as_str(),
                g.endpoints.clone(),
            )
        })
        .collect();
    assert_eq!(groups, vec![(0, None, "a", 0..1), (1, Some(3), "b", 1..3)]);
    assert_eq!(a.endpoints[0].0.port(), 10, "P0's endpoints first");
    assert!(a.has_priorities());
    assert_eq!(a.overprovisioning_factor, 140);
}

#[test]
fn a_single_level_without_weights_needs_no_priority_state() {
    let c = cluster(
        config(cds::cluster::LbPolicy::RoundRobin, None, false),
        assignment(&[Group(0, Some(1), "a", &[10]), Group(0, Some(1), "b", &[20])]),
    );
    assert!(
        c.priorities.is_none(),
        "the default path stays the plain balancer"
    );
    assert_eq!(shares(&c, 100), HashMap::from([(10, 50), (20, 50)]));
}

#[test]
fn healthy_p0_takes_everything_and_ejections_spill_to_p1_then_come_back() {
    let c = cluster(
        config(
            cds::cluster::LbPolicy::RoundRobin,
            Some(Duration::from_secs(3600)),
            false,
        ),
        assignment(&[
            Group(0, None, "a", &[10, 11, 12]),
            Group(1, None, "b", &[20, 21]),
        ]),
    );
    let all = shares(&c, 300);
    assert_eq!(sum(&all, &[10, 11, 12]), 300, "{all:?}");
    // One of three out: 140 × 2/3 = 93 % health, P0 keeps 93 %.
    eject(&c, 10);
    let p = c.priorities.as_ref().unwrap();
    let generation = c.outlier.as_ref().unwrap().generation();
    assert_eq!(p.loads(generation), vec![93, 7]);
    let some = shares(&c, 10_000);
    assert_eq!(
        some.get(&10),
        None,
        "the ejected endpoint gets nothing: {some:?}"
    );
    let p1 = sum(&some, &[20, 21]);
    assert!((500..900).contains(&p1), "P1 takes about 7 %: {some:?}");
    // The whole zone out: everything to P1.
    eject(&c, 11);
    eject(&c, 12);
    let none = shares(&c, 1000);
    assert_eq!(sum(&none, &[20, 21]), 1000, "{none:?}");
}

#[tokio::test]
async fn returned_endpoints_take_their_level_back() {
    let c = cluster(
        config(
            cds::cluster::LbPolicy::LeastRequest,
            Some(Duration::from_millis(50)),
            false,
        ),
        assignment(&[Group(0, None, "a", &[10]), Group(1, None, "b", &[20])]),
    );
    eject(&c, 10);
    assert_eq!(shares(&c, 100).get(&20), Some(&100));
    // The sweep (every 10 ms) lets it back after 50 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.endpoints().iter().any(|e| e.is_ejected()) {
        assert!(std::time::Instant::now() < deadline, "never returned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shares(&c, 100).get(&10), Some(&100));
}

#[test]
fn weighted_localities_share_by_weight_and_unweighted_get_nothing() {
    let c = cluster(
        config(cds::cluster::LbPolicy::RoundRobin, None, true),
        assignment(&[
            Group(0, Some(80), "a", &[10]),
            Group(0, Some(20), "b", &[20, 21]),
            Group(0, None, "c", &[30]),
        ]),
    );
    let got = shares(&c, 10_000);
    let a = sum(&got, &[10]);
    assert!((7700..8300).contains(&a), "80 % to zone a: {got:?}");
    assert_eq!(sum(&got, &[30]), 0, "a locality without weight: {got:?}");
    // Without locality weighting the same endpoints share evenly.
    let flat = cluster(
        config(cds::cluster::LbPolicy::RoundRobin, None, false),
        assignment(&[
            Group(0, Some(80), "a", &[10]),
            Group(0, Some(20), "b", &[20, 21]),
        ]),
    );
    assert!(flat.priorities.is_none());
    assert_eq!(sum(&shares(&flat, 300), &[10]), 100);
}

#[test]
fn an_ejected_locality_loses_its_weight() {
    let c = cluster(
        config(
            cds::cluster::LbPolicy::Random,
            Some(Duration::from_secs(3600)),
            true,
        ),
        assignment(&[
            Group(0, Some(50), "a", &[10]),
            Group(0, Some(50), "b", &[20]),
        ]),
    );
    eject(&c, 10);
    assert_eq!(shares(&c, 500).get(&20), Some(&500));
}

#[test]
fn retries_with_remote_localities_leave_the_level_tried() {
    let c = cluster(
        config(cds::cluster::LbPolicy::RoundRobin, None, false),
        assignment(&[Group(0, None, "a", &[10, 11]), Group(1, None, "b", &[20])]),
    );
    let first: std::net::SocketAddr = "127.0.0.1:10".parse().unwrap();
    for _ in 0..50 {
        // `previous_hosts` alone: the other P0 endpoint.
        let next = c.pick_avoiding(dst(), &[first], 1, &[]).unwrap();
        assert_eq!(next.addr.port(), 11);
        // `previous_priorities` too: P1.
        let next = c.pick_avoiding(dst(), &[first], 1, &[first]).unwrap();
        assert_eq!(next.addr.port(), 20);
    }
    // Every level tried: any level again.
    let p1: std::net::SocketAddr = "127.0.0.1:20".parse().unwrap();
    let again = c.pick_avoiding(dst(), &[], 1, &[first, p1]).unwrap();
    assert!([10, 11].contains(&again.addr.port()));
}

#[test]
fn consistent_hashing_stays_in_the_healthy_level() {
    let c = cluster(
        config(
            cds::cluster::LbPolicy::RingHash,
            Some(Duration::from_secs(3600)),
            false,
        ),
        assignment(&[
            Group(0, None, "a", &[10, 11]),
            Group(1, None, "b", &[20, 21]),
        ]),
    );
    let keys = 0..200u64;
    let before: Vec<u16> = keys
        .clone()
        .map(|k| {
            c.pick_by_key(dst(), Some(k * 7919), &[])
                .unwrap()
                .addr
                .port()
        })
        .collect();
    assert!(before.iter().all(|p| [10, 11].contains(p)), "{before:?}");
    // Every key keeps its endpoint while nothing changes.
    let again: Vec<u16> = keys
        .clone()
        .map(|k| {
            c.pick_by_key(dst(), Some(k * 7919), &[])
                .unwrap()
                .addr
                .port()
        })
        .collect();
    assert_eq!(before, again);
    eject(&c, 10);
    eject(&c, 11);
    let after: Vec<u16> = keys
        .map(|k| {
            c.pick_by_key(dst(), Some(k * 7919), &[])
                .unwrap()
                .addr
                .port()
        })
        .collect();
    assert!(after.iter().all(|p| [20, 21].contains(p)), "{after:?}");
}
