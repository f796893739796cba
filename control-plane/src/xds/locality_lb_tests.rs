//! Locality load balancing, case by case as Istio's `loadbalancer` tests describe it.

use super::*;
use weft_api::networking::{LocalityDistribute, LocalityFailover};

fn endpoint(address: &str, locality: &str, labels: &[(&str, &str)]) -> Endpoint {
    let mut endpoint = Endpoint::at(address);
    endpoint.locality = Locality::parse(locality);
    endpoint.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    endpoint
}

/// (locality, priority, weight, addresses) of each non-empty group, in order.
fn summary(groups: &[Group<'_, ()>]) -> Vec<(String, u32, u32, Vec<String>)> {
    groups
        .iter()
        .filter(|g| !g.endpoints.is_empty())
        .map(|g| {
            (
                g.locality.to_string(),
                g.priority,
                g.weight(),
                g.endpoints.iter().map(|(e, _)| e.address.clone()).collect(),
            )
        })
        .collect()
}

fn run(
    endpoints: &[Endpoint],
    proxy: &str,
    setting: Option<LocalityLoadBalancerSetting>,
    outlier: bool,
) -> Vec<(String, u32, u32, Vec<String>)> {
    let groups = group(endpoints.iter().map(|e| (e, ())));
    let out = apply(
        groups,
        &Locality::parse(proxy),
        &BTreeMap::new(),
        setting.as_ref(),
        outlier,
    );
    summary(&out)
}

fn five_localities() -> Vec<Endpoint> {
    vec![
        endpoint("10.0.0.1", "r1/z1/s1", &[]),
        endpoint("10.0.0.2", "r1/z1/s2", &[]),
        endpoint("10.0.0.3", "r1/z2/s1", &[]),
        endpoint("10.0.0.4", "r2/z1/s1", &[]),
        endpoint("10.0.0.5", "r3/z1/s1", &[]),
    ]
}

fn priorities(out: &[(String, u32, u32, Vec<String>)]) -> Vec<(&str, u32)> {
    out.iter().map(|(l, p, _, _)| (l.as_str(), *p)).collect()
}

#[test]
fn endpoints_group_by_locality_with_their_weights_summed() {
    let mut heavy = endpoint("10.0.0.9", "r1/z1/s1", &[]);
    heavy.weight = Some(5);
    let endpoints = vec![
        endpoint("10.0.0.1", "r1/z1/s1", &[]),
        heavy,
        endpoint("10.0.0.2", "", &[]),
    ];
    let out = run(&endpoints, "r1/z1/s1", None, true);
    assert_eq!(
        out,
        vec![
            ("//".to_string(), 0, 1, vec!["10.0.0.2".to_string()]),
            (
                "r1/z1/s1".to_string(),
                0,
                6,
                vec!["10.0.0.1".to_string(), "10.0.0.9".to_string()]
            ),
        ]
    );
}

#[test]
fn default_failover_orders_by_closeness_with_outlier_detection_only() {
    let endpoints = five_localities();
    let default = effective(None);
    let out = run(&endpoints, "r1/z1/s1", default.clone(), true);
    assert_eq!(
        priorities(&out),
        vec![
            ("r1/z1/s1", 0),
            ("r1/z1/s2", 1),
            ("r1/z2/s1", 2),
            ("r2/z1/s1", 3),
            ("r3/z1/s1", 3)
        ]
    );
    // Without outlier detection nothing would ever fail over: one level.
    let flat = run(&endpoints, "r1/z1/s1", default, false);
    assert!(flat.iter().all(|(_, p, _, _)| *p == 0), "{flat:?}");
    // Turned off: one level too.
    let off = LocalityLoadBalancerSetting {
        enabled: Some(false),
        ..Default::default()
    };
    let off = run(&endpoints, "r1/z1/s1", effective(Some(&off)), true);
    assert!(off.iter().all(|(_, p, _, _)| *p == 0), "{off:?}");
}

#[test]
fn priorities_have_no_gaps() {
    // Nothing in the proxy's zone: the closest present locality is P0.
    let endpoints = vec![
        endpoint("10.0.0.3", "r1/z2/s1", &[]),
        endpoint("10.0.0.4", "r2/z1/s1", &[]),
    ];
    let out = run(&endpoints, "r1/z1/s1", effective(None), true);
    assert_eq!(priorities(&out), vec![("r1/z2/s1", 0), ("r2/z1/s1", 1)]);
}

#[test]
fn region_failover_puts_the_named_region_before_the_others() {
    let setting = LocalityLoadBalancerSetting {
        failover: vec![LocalityFailover {
            from: "r1".into(),
            to: "r3".into(),
        }],
        ..Default::default()
    };
    let out = run(&five_localities(), "r1/z1/s1", Some(setting), true);
    assert_eq!(
        priorities(&out),
        vec![
            ("r1/z1/s1", 0),
            ("r1/z1/s2", 1),
            ("r1/z2/s1", 2),
            ("r2/z1/s1", 4),
            ("r3/z1/s1", 3)
        ]
    );
}

#[test]
fn distribute_sets_weights_and_empties_the_rest() {
    let setting = LocalityLoadBalancerSetting {
        distribute: vec![
            LocalityDistribute {
                from: "r2/*".into(),
                to: BTreeMap::from([("r2/*".to_string(), 100)]),
            },
            LocalityDistribute {
                from: "r1/z1/*".into(),
                to: BTreeMap::from([("r1/z1/*".to_string(), 80), ("r2/z1".to_string(), 20)]),
            },
        ],
        ..Default::default()
    };
    let out = run(&five_localities(), "r1/z1/s1", Some(setting), false);
    let weights: Vec<(&str, u32)> = out.iter().map(|(l, _, w, _)| (l.as_str(), *w)).collect();
    // r1/z1/* matches two localities of weight 1: 80 split by their weights.
    assert_eq!(
        weights,
        vec![("r1/z1/s1", 40), ("r1/z1/s2", 40), ("r2/z1/s1", 20)]
    );
    assert!(out.iter().all(|(_, p, _, _)| *p == 0));
}

#[test]
fn failover_priority_splits_by_matching_labels_in_order() {
    let endpoints = [
        endpoint("10.0.0.1", "r1/z1/s1", &[("version", "v1")]),
        endpoint("10.0.0.2", "r1/z1/s1", &[("version", "v2")]),
        endpoint("10.0.0.3", "r1/z2/s1", &[("version", "v1")]),
        endpoint("10.0.0.4", "r2/z1/s1", &[("version", "v1")]),
    ];
    let setting = LocalityLoadBalancerSetting {
        failover_priority: vec![
            crate::locality::REGION_LABEL.to_string(),
            crate::locality::ZONE_LABEL.to_string(),
            "version".to_string(),
        ],
        ..Default::default()
    };
    let labels = BTreeMap::from([("version".to_string(), "v1".to_string())]);
    let groups = group(endpoints.iter().map(|e| (e, ())));
    let out = apply(
        groups,
        &Locality::parse("r1/z1/s1"),
        &labels,
        Some(&setting),
        true,
    );
    let by_address: BTreeMap<String, u32> = out
        .iter()
        .flat_map(|g| {
            g.endpoints
                .iter()
                .map(|(e, _)| (e.address.clone(), g.priority))
        })
        .collect();
    // All three match: 0; the version differs: 1; the zone: 2; the region: 3.
    assert_eq!(
        by_address,
        BTreeMap::from([
            ("10.0.0.1".to_string(), 0),
            ("10.0.0.2".to_string(), 1),
            ("10.0.0.3".to_string(), 2),
            ("10.0.0.4".to_string(), 3),
        ])
    );
    // A pinned value: endpoints of v2 first, wherever the proxy is.
    let pinned = LocalityLoadBalancerSetting {
        failover_priority: vec!["version=v2".to_string()],
        ..Default::default()
    };
    let groups = group(endpoints.iter().map(|e| (e, ())));
    let out = apply(
        groups,
        &Locality::parse("r1/z1/s1"),
        &labels,
        Some(&pinned),
        true,
    );
    let first: Vec<&str> = out
        .iter()
        .filter(|g| g.priority == 0)
        .flat_map(|g| g.endpoints.iter().map(|(e, _)| e.address.as_str()))
        .collect();
    assert_eq!(first, vec!["10.0.0.2"]);
}

#[test]
fn the_weighted_config_follows_istio() {
    let failover = LocalityLoadBalancerSetting {
        failover: vec![LocalityFailover {
            from: "r1".into(),
            to: "r2".into(),
        }],
        ..Default::default()
    };
    assert!(locality_weighted(Some(&failover), true));
    assert!(!locality_weighted(Some(&failover), false));
    assert!(
        !locality_weighted(effective(None).as_ref(), true),
        "the mesh default"
    );
    let distribute = LocalityLoadBalancerSetting {
        distribute: vec![LocalityDistribute {
            from: "*".into(),
            to: BTreeMap::from([("r1".to_string(), 100)]),
        }],
        ..Default::default()
    };
    assert!(locality_weighted(Some(&distribute), false));
}

#[test]
fn the_proxy_is_where_it_says_else_where_its_pod_or_ip_is() {
    let mut model = crate::testing::bookinfo_model();
    let mut proxy = Proxy::sidecar("default");
    assert!(proxy_locality(&model, &proxy).is_empty());
    // Its IP is an endpoint's.
    let service = model.services.values_mut().next().unwrap();
    service.endpoints[0].locality = Locality::parse("r9/z9/s9");
    proxy.instance_ips = vec![service.endpoints[0].address.clone()];
    assert_eq!(proxy_locality(&model, &proxy), Locality::parse("r9/z9/s9"));
    // Its pod's locality wins over that.
    model.pod_localities.insert(
        ("default".to_string(), "app".to_string()),
        Locality::parse("r8/z8/s8"),
    );
    assert_eq!(proxy_locality(&model, &proxy), Locality::parse("r8/z8/s8"));
    // What it says wins over everything.
    proxy.locality = Locality::parse("r7/z7/s7");
    assert_eq!(proxy_locality(&model, &proxy), Locality::parse("r7/z7/s7"));
}
