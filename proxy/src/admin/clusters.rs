//! Admin `/clusters`: every cluster's endpoints with their weight, locality, outlier verdict
//! and pool state, in Envoy's text format (`cluster::host:port::stat::value`) or, with
//! `?format=json`, in Envoy's `envoy.admin.v3.Clusters` JSON (`cluster_statuses[]`).
//!
//! Read at request time from the snapshot: nothing is counted for it on the data path.
//! `rq_active` is the endpoint's in-flight requests; `cx_active` its pools' open connections.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::config::ProxyConfig;
use crate::config::assignment::Locality;
use crate::upstream::{Cluster, Endpoint};

/// One endpoint as `/clusters` shows it.
struct HostView<'a> {
    addr: SocketAddr,
    weight: u32,
    cx_active: u64,
    rq_active: u64,
    failed_outlier_check: bool,
    locality: Option<&'a Locality>,
    priority: u32,
}

fn hosts(cluster: &Cluster) -> Vec<HostView<'_>> {
    let mut places: HashMap<SocketAddr, (&Locality, u32)> = HashMap::new();
    for group in &cluster.assignment.groups {
        for (addr, _) in cluster
            .assignment
            .endpoints
            .get(group.endpoints.clone())
            .unwrap_or_default()
        {
            places
                .entry(*addr)
                .or_insert((&group.locality, group.priority));
        }
    }
    cluster
        .endpoints()
        .iter()
        .map(|e: &std::sync::Arc<Endpoint>| {
            let place = places.get(&e.addr);
            HostView {
                addr: e.addr,
                weight: e.weight,
                cx_active: e.pools().map(|p| p.open_connections() as u64).sum(),
                rq_active: e.in_flight() as u64,
                failed_outlier_check: e.is_ejected(),
                locality: place.map(|(l, _)| *l),
                priority: place.map_or(0, |(_, p)| *p),
            }
        })
        .collect()
}

fn sorted(config: &ProxyConfig) -> Vec<&Cluster> {
    let mut clusters: Vec<&Cluster> = config.clusters.values().map(|c| &**c).collect();
    clusters.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    clusters
}

/// Envoy's text format.
pub fn text(config: &ProxyConfig) -> String {
    let mut out = String::new();
    for cluster in sorted(config) {
        let name = &cluster.config.name;
        let limits = cluster.breakers.config();
        let _ = writeln!(out, "{name}::observability_name::{name}");
        for (key, value) in [
            ("max_connections", limits.max_connections),
            ("max_pending_requests", limits.max_pending_requests),
            ("max_requests", limits.max_requests),
            ("max_retries", limits.max_retries),
        ] {
            let _ = writeln!(out, "{name}::default_priority::{key}::{value}");
        }
        let _ = writeln!(out, "{name}::added_via_api::true");
        if cluster.outlier.is_some() {
            for key in [
                "success_rate_average",
                "success_rate_ejection_threshold",
                "local_origin_success_rate_average",
                "local_origin_success_rate_ejection_threshold",
            ] {
                let _ = writeln!(out, "{name}::outlier::{key}::-1");
            }
        }
        for host in hosts(cluster) {
            let prefix = format!("{name}::{}", host.addr);
            let flags = if host.failed_outlier_check {
                "/failed_outlier_check"
            } else {
                "healthy"
            };
            let (region, zone, sub_zone) = host.locality.map_or(("", "", ""), |l| {
                (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str())
            });
            let _ = writeln!(out, "{prefix}::cx_active::{}", host.cx_active);
            let _ = writeln!(out, "{prefix}::rq_active::{}", host.rq_active);
            let _ = writeln!(out, "{prefix}::hostname::");
            let _ = writeln!(out, "{prefix}::health_flags::{flags}");
            let _ = writeln!(out, "{prefix}::weight::{}", host.weight);
            let _ = writeln!(out, "{prefix}::region::{region}");
            let _ = writeln!(out, "{prefix}::zone::{zone}");
            let _ = writeln!(out, "{prefix}::sub_zone::{sub_zone}");
            let _ = writeln!(out, "{prefix}::canary::false");
            let _ = writeln!(out, "{prefix}::priority::{}", host.priority);
            let _ = writeln!(out, "{prefix}::success_rate::-1");
            let _ = writeln!(out, "{prefix}::local_origin_success_rate::-1");
        }
    }
    out
}

/// Envoy's `Clusters` message in proto3 JSON (64-bit integers as strings, defaults left out).
pub fn json(config: &ProxyConfig) -> Value {
    let statuses: Vec<Value> = sorted(config)
        .into_iter()
        .map(|cluster| {
            let limits = cluster.breakers.config();
            let hosts: Vec<Value> = hosts(cluster)
                .into_iter()
                .map(|host| {
                    let mut health = json!({"eds_health_status": "HEALTHY"});
                    if host.failed_outlier_check {
                        health["failed_outlier_check"] = json!(true);
                    }
                    let mut status = json!({
                        "address": {"socket_address": {
                            "address": host.addr.ip().to_string(),
                            "port_value": host.addr.port(),
                        }},
                        "stats": [
                            {"type": "GAUGE", "name": "cx_active", "value": host.cx_active.to_string()},
                            {"type": "GAUGE", "name": "rq_active", "value": host.rq_active.to_string()},
                        ],
                        "health_status": health,
                        "weight": host.weight,
                        "priority": host.priority,
                    });
                    if let Some(l) = host.locality {
                        status["locality"] =
                            json!({"region": l.region, "zone": l.zone, "sub_zone": l.sub_zone});
                    }
                    status
                })
                .collect();
            json!({
                "name": cluster.config.name,
                "observability_name": cluster.config.name,
                "added_via_api": true,
                "circuit_breakers": {"thresholds": [{
                    "max_connections": limits.max_connections,
                    "max_pending_requests": limits.max_pending_requests,
                    "max_requests": limits.max_requests,
                    "max_retries": limits.max_retries,
                }]},
                "host_statuses": hosts,
            })
        })
        .collect();
    json!({"cluster_statuses": statuses})
}
