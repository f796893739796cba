//! The name table (NDS) for a proxy's DNS proxy, as istiod builds it: every service the
//! proxy's Sidecar lets it see, with the addresses a client should connect to so that its
//! sidecar captures the connection and routes it.
//!
//! ```text
//!  visible services ─► Kubernetes Service:  host → cluster IPs, registry Kubernetes,
//!                                            shortname + namespace (the proxy derives
//!                                            `name`, `name.ns`, `name.ns.svc` from them)
//!                   ─► ServiceEntry host:    host (or *.wildcard) → its `addresses` that are
//!                                            single IPs, registry External
//!                   ─► no such address:      left out: the DNS proxy forwards the query
//! ```
//!
//! A host two services share (a ServiceEntry naming a Kubernetes host) keeps the first's
//! registry and names and gets the union of their addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use weft_xds::Resource;
use weft_xds::nds::{NAME_TABLE_RESOURCE, NameInfo, NameTable};

use super::Proxy;
use crate::model::Model;
use crate::service::Service;

/// `NameInfo.registry` of a Kubernetes Service (Istio's value).
pub const REGISTRY_KUBERNETES: &str = "Kubernetes";
/// `NameInfo.registry` of a ServiceEntry host (Istio's value).
pub const REGISTRY_EXTERNAL: &str = "External";

/// The proxy's name table, one resource.
pub fn resources(model: &Model, proxy: &Proxy) -> Vec<Resource> {
    vec![Resource::new(
        NAME_TABLE_RESOURCE,
        &name_table(model, proxy),
    )]
}

/// Every visible service with an address to answer, keyed by host name.
pub fn name_table(model: &Model, proxy: &Proxy) -> NameTable {
    let mut table: BTreeMap<String, NameInfo> = BTreeMap::new();
    for service in model.services_for(&proxy.namespace, &proxy.labels) {
        let ips = answer_addresses(service);
        if ips.is_empty() {
            continue;
        }
        match table.get_mut(&service.hostname) {
            Some(info) => {
                for ip in ips {
                    if !info.ips.contains(&ip) {
                        info.ips.push(ip);
                    }
                }
            }
            None => {
                table.insert(service.hostname.clone(), name_info(service, ips));
            }
        }
    }
    NameTable { table }
}

fn name_info(service: &Service, ips: Vec<String>) -> NameInfo {
    let kubernetes = service.source.kind == "Service";
    let (shortname, namespace) = if kubernetes {
        (
            service.source.name.clone(),
            service.source.namespace.clone(),
        )
    } else {
        (String::new(), String::new())
    };
    NameInfo {
        ips,
        registry: if kubernetes {
            REGISTRY_KUBERNETES
        } else {
            REGISTRY_EXTERNAL
        }
        .to_string(),
        shortname,
        namespace,
        alt_hosts: Vec::new(),
    }
}

/// The service's addresses a DNS answer can carry: single IPs, not CIDR blocks and not the
/// unspecified address (Istio skips both), in the service's order.
fn answer_addresses(service: &Service) -> Vec<String> {
    service
        .addresses
        .iter()
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect()
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
