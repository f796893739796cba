//! EDS: one `ClusterLoadAssignment` per EDS outbound cluster (services with
//! [`Resolution::Static`] that the proxy sees), from the service's endpoints filtered by the
//! subset's labels, one `LocalityLbEndpoints` per locality (weight: its endpoints' weights
//! summed), with the priorities and weights of locality load balancing for the proxy that
//! asks ([`super::locality_lb`]).
//! DNS clusters carry their endpoints inline ([`lb_endpoints`], used by CDS) and get no EDS
//! resource.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality as LocalityProto};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::cluster_policy::cluster_policy;
use super::listeners::socket;
use super::locality_lb::{self, Group};
use super::proxy::Proxy;
use super::{outbound_cluster_name, tls};
use crate::locality::Locality;
use crate::model::Model;
use crate::service::{Resolution, Service, ServicePort, labels_match};

/// Load assignments of every EDS outbound cluster of the mesh, without locality load
/// balancing (no proxy to be close to: every locality at priority 0).
pub fn load_assignments(model: &Model) -> Vec<ClusterLoadAssignment> {
    assignments_of(model, model.services.values(), None)
}

/// Load assignments of the EDS outbound clusters of the services `proxy` sees (its Sidecar's
/// egress hosts; every service without one), with the priorities and weights of locality
/// load balancing relative to the proxy's locality.
pub fn load_assignments_for(model: &Model, proxy: &Proxy) -> Vec<ClusterLoadAssignment> {
    let locality = locality_lb::proxy_locality(model, proxy);
    let services = model.services_for(&proxy.namespace, &proxy.labels);
    assignments_of(model, services, Some((proxy, &locality)))
}

fn assignments_of<'a>(
    model: &Model,
    services: impl Iterator<Item = &'a Service>,
    proxy: Option<(&Proxy, &Locality)>,
) -> Vec<ClusterLoadAssignment> {
    let mut assignments = Vec::new();
    for service in services {
        if service.resolution != Resolution::Static {
            continue;
        }
        let rule = model.destination_rule(&service.hostname);
        for port in &service.ports {
            let subsets = rule.into_iter().flat_map(|rule| &rule.spec.subsets);
            let all = std::iter::once(None).chain(subsets.map(Some));
            for subset in all {
                let policy = cluster_policy(rule, subset, port.number);
                let setting = locality_lb::effective(policy.locality_lb.as_ref());
                let (name, labels) = match subset {
                    Some(subset) => (subset.name.as_str(), &subset.labels),
                    None => ("", &BTreeMap::new()),
                };
                let mut groups = locality_lb::group(selected(service, port, labels));
                if let Some((proxy, locality)) = proxy {
                    groups = locality_lb::apply(
                        groups,
                        locality,
                        &proxy.labels,
                        setting.as_ref(),
                        policy.outlier.is_some(),
                    );
                }
                assignments.push(assignment(service, port, name, groups));
            }
        }
    }
    assignments
}

/// The `ClusterLoadAssignment` of `groups` (empty ones left out).
fn assignment(
    service: &Service,
    port: &ServicePort,
    subset: &str,
    groups: Vec<Group<'_, LbEndpoint>>,
) -> ClusterLoadAssignment {
    let endpoints = groups
        .into_iter()
        .filter(|group| !group.endpoints.is_empty())
        .map(|group| {
            let weight = group.weight();
            LocalityLbEndpoints {
                locality: (!group.locality.is_empty()).then(|| LocalityProto {
                    region: group.locality.region.clone(),
                    zone: group.locality.zone.clone(),
                    sub_zone: group.locality.subzone.clone(),
                }),
                load_balancing_weight: Some(UInt32Value { value: weight }),
                priority: group.priority,
                lb_endpoints: group
                    .endpoints
                    .into_iter()
                    .map(|(_, mut lb)| {
                        lb.health_status = HealthStatus::Healthy as i32;
                        lb
                    })
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: outbound_cluster_name(port.number, subset, &service.hostname),
        endpoints,
        ..Default::default()
    }
}

/// The endpoints of `service` that serve `port` and have the subset's labels, each with its
/// `LbEndpoint`.
fn selected<'a>(
    service: &'a Service,
    port: &'a ServicePort,
    subset_labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = (&'a crate::service::Endpoint, LbEndpoint)> + 'a {
    service
        .endpoints
        .iter()
        .filter(move |endpoint| {
            endpoint.serves(port) && labels_match(subset_labels, &endpoint.labels)
        })
        .map(move |endpoint| (endpoint, lb_endpoint(endpoint, port)))
}

/// One `LbEndpoint` per endpoint of the service that serves `port` and has the subset's
/// labels: `endpoint.address.socket_address { address, port_value }` (the address as the
/// endpoint has it: an IP, or a host name for DNS clusters) and `load_balancing_weight`
/// (the entry's weight, 1 when unset, as Istio), and `metadata` `{tlsMode: istio}` under
/// `envoy.transport_socket_match` when the workload has a sidecar ([`tls::endpoint_metadata`]).
pub fn lb_endpoints(
    service: &Service,
    port: &ServicePort,
    subset_labels: &BTreeMap<String, String>,
) -> Vec<LbEndpoint> {
    selected(service, port, subset_labels)
        .map(|(_, lb)| lb)
        .collect()
}

fn lb_endpoint(endpoint: &crate::service::Endpoint, port: &ServicePort) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket(&endpoint.address, endpoint.port_for(port))),
            ..Default::default()
        })),
        load_balancing_weight: Some(UInt32Value {
            value: endpoint.lb_weight(),
        }),
        metadata: tls::endpoint_metadata(&endpoint.labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::bookinfo_model;
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};

    fn endpoints(assignment: &ClusterLoadAssignment) -> Vec<(String, u32, u32)> {
        assignment
            .endpoints
            .iter()
            .flat_map(|locality| &locality.lb_endpoints)
            .map(|lb| {
                let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier
                else {
                    panic!("endpoint expected");
                };
                let Some(address::Address::SocketAddress(socket)) =
                    endpoint.address.as_ref().and_then(|a| a.address.as_ref())
                else {
                    panic!("socket expected");
                };
                let Some(socket_address::PortSpecifier::PortValue(port)) = socket.port_specifier
                else {
                    panic!("port expected");
                };
                let weight = lb.load_balancing_weight.as_ref().map_or(0, |w| w.value);
                (socket.address.clone(), port, weight)
            })
            .collect()
    }

    fn find<'a>(all: &'a [ClusterLoadAssignment], name: &str) -> &'a ClusterLoadAssignment {
        all.iter()
            .find(|a| a.cluster_name == name)
            .unwrap_or_else(|| panic!("no assignment {name}"))
    }

    #[test]
    fn whole_service_and_subsets() {
        let model = bookinfo_model();
        let all = load_assignments(&model);
        let reviews = "reviews.default.svc.cluster.local";
        let whole = find(&all, &format!("outbound|9080||{reviews}"));
        assert_eq!(endpoints(whole).len(), 3);
        let v2 = find(&all, &format!("outbound|9080|v2|{reviews}"));
        assert_eq!(endpoints(v2), [("127.0.0.12".to_string(), 9080, 1)]);
        // A subset that selects nothing has an empty assignment, not a missing one.
        let none = find(&all, &format!("outbound|9080|v9|{reviews}"));
        assert!(none.endpoints.is_empty());
    }

    #[test]
    fn port_overrides_and_weights() {
        let model = bookinfo_model();
        let all = load_assignments(&model);
        let ratings = find(&all, "outbound|9080||ratings.default.svc.cluster.local");
        // The endpoint maps port name "http" to 19080 and has weight 5; the other uses targetPort.
        assert_eq!(
            endpoints(ratings),
            [
                ("127.0.0.21".to_string(), 19080, 5),
                ("127.0.0.22".to_string(), 9999, 1)
            ]
        );
    }
}
