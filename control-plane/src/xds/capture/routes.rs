//! RDS in the capture shape: one route configuration per outbound port with an HTTP chain,
//! named by the port, and `inbound|P||` per inbound HTTP or undeclared port.
//!
//! ```text
//! "P"          <fqdn>:P  domains: fqdn, fqdn:P, short forms (± :P), A, A:P ([A]:P for IPv6)
//!              … one per service on P, routes as in `outbound` (VirtualService or default)
//!              allow_any  ["*"]  / → PassthroughCluster, timeout 0s   (ALLOW_ANY)
//!              block_all  ["*"]  / → direct_response 502              (REGISTRY_ONLY)
//! inbound|P||  inbound|http|P ["*"] / → inbound|P||
//! ```

use std::collections::HashSet;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use weft_xds::contract::PASSTHROUGH_CLUSTER;

use super::inbound_ports;
use super::outbound::route_ports;
use crate::model::{Model, OutboundTrafficPolicy};
use crate::service::{PortKind, Service};
use crate::xds::routes::{default_route, domains_for, service_routes};
use crate::xds::{Proxy, inbound_port_name};

/// The catch-all virtual host (and route) under ALLOW_ANY.
pub const ALLOW_ANY: &str = "allow_any";
/// The catch-all virtual host (and route) under REGISTRY_ONLY.
pub const BLOCK_ALL: &str = "block_all";

/// The capture shape's route configurations: `"P"` per outbound port, then `inbound|P||`.
pub fn route_configurations(model: &Model, proxy: &Proxy) -> Vec<RouteConfiguration> {
    let services: Vec<&Service> = model
        .services_for(&proxy.namespace, &proxy.labels)
        .collect();
    let policy = model.outbound_traffic_policy_for(&proxy.namespace, &proxy.labels);
    let mut configs: Vec<RouteConfiguration> = route_ports(&services)
        .into_iter()
        .map(|port| outbound_port(model, proxy, &services, port, policy))
        .collect();
    configs.extend(
        inbound_ports(model, proxy)
            .into_iter()
            .filter(|(_, kind)| *kind != PortKind::Tcp)
            .map(|(port, _)| inbound_port(port)),
    );
    configs
}

/// The route configuration `"<port>"`: a virtual host per service with an HTTP or undeclared
/// `port`, in host name order (a domain stays with the first), then the catch-all of `policy`.
pub fn outbound_port(
    model: &Model,
    proxy: &Proxy,
    services: &[&Service],
    port: u32,
    policy: OutboundTrafficPolicy,
) -> RouteConfiguration {
    let mut used_domains = HashSet::new();
    let mut virtual_hosts = Vec::new();
    for service in services {
        let serves_http = service
            .port(port)
            .and_then(|p| p.kind())
            .is_some_and(|kind| kind != PortKind::Tcp);
        if !serves_http {
            continue;
        }
        let domains: Vec<String> = domains_for(service, port, true, proxy, &model.domain)
            .into_iter()
            .chain(address_domains(service, port))
            .filter(|domain| used_domains.insert(domain.clone()))
            .collect();
        if domains.is_empty() {
            continue;
        }
        virtual_hosts.push(VirtualHost {
            name: format!("{}:{port}", service.hostname),
            domains,
            routes: service_routes(model, service, port, proxy),
            ..Default::default()
        });
    }
    if used_domains.insert("*".to_string()) {
        virtual_hosts.push(catch_all(policy));
    }
    RouteConfiguration {
        name: port.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

/// The domains of a service's addresses: each IP, and `IP:port` (`[IP]:port` for IPv6). CIDR
/// blocks name no host and add none.
fn address_domains(service: &Service, port: u32) -> Vec<String> {
    let mut domains = Vec::new();
    for address in &service.addresses {
        match address.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => domains.push(format!("{address}:{port}")),
            Ok(IpAddr::V6(_)) => domains.push(format!("[{address}]:{port}")),
            Err(_) => continue,
        }
        domains.push(address.clone());
    }
    domains
}

/// The last virtual host: unknown hosts to their original destination, or refused.
fn catch_all(policy: OutboundTrafficPolicy) -> VirtualHost {
    let (name, route) = match policy {
        OutboundTrafficPolicy::AllowAny => (
            ALLOW_ANY,
            Route {
                name: ALLOW_ANY.to_string(),
                ..default_route(PASSTHROUGH_CLUSTER.to_string())
            },
        ),
        OutboundTrafficPolicy::RegistryOnly => (
            BLOCK_ALL,
            Route {
                name: BLOCK_ALL.to_string(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(route::Action::DirectResponse(DirectResponseAction {
                    status: 502,
                    ..Default::default()
                })),
                ..Default::default()
            },
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![route],
        ..Default::default()
    }
}

/// The route configuration `inbound|<port>||`: everything to the port's inbound cluster.
pub fn inbound_port(port: u32) -> RouteConfiguration {
    let name = inbound_port_name(port);
    RouteConfiguration {
        name: name.clone(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".to_string()],
            routes: vec![default_route(name)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
