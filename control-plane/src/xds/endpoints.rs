//! EDS: one `ClusterLoadAssignment` per EDS outbound cluster (services with
//! [`Resolution::Static`] that the proxy sees), from the service's endpoints filtered by the
//! subset's labels.
//! DNS clusters carry their endpoints inline ([`lb_endpoints`], used by CDS) and get no EDS
//! resource.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::listeners::socket;
use super::proxy::Proxy;
use super::{outbound_cluster_name, tls};
use crate::model::Model;
use crate::service::{Resolution, Service, ServicePort, labels_match};

/// Load assignments of every EDS outbound cluster of the mesh.
pub fn load_assignments(model: &Model) -> Vec<ClusterLoadAssignment> {
    assignments_of(model, model.services.values())
}

/// Load assignments of the EDS outbound clusters of the services `proxy` sees (its Sidecar's
/// egress hosts; every service without one).
pub fn load_assignments_for(model: &Model, proxy: &Proxy) -> Vec<ClusterLoadAssignment> {
    assignments_of(model, model.services_for(&proxy.namespace, &proxy.labels))
}

fn assignments_of<'a>(
    model: &Model,
    services: impl Iterator<Item = &'a Service>,
) -> Vec<ClusterLoadAssignment> {
    let mut assignments = Vec::new();
    for service in services {
        if service.resolution != Resolution::Static {
            continue;
        }
        let rule = model.destination_rule(&service.hostname);
        for port in &service.ports {
            assignments.push(load_assignment(service, port, "", &BTreeMap::new()));
            if let Some(rule) = rule {
                for subset in &rule.spec.subsets {
                    assignments.push(load_assignment(service, port, &subset.name, &subset.labels));
                }
            }
        }
    }
    assignments
}

/// The endpoints of one service port whose labels include `subset_labels`, as EDS sends
/// them (marked healthy).
pub fn load_assignment(
    service: &Service,
    port: &ServicePort,
    subset: &str,
    subset_labels: &BTreeMap<String, String>,
) -> ClusterLoadAssignment {
    let mut lb_endpoints = lb_endpoints(service, port, subset_labels);
    for lb_endpoint in &mut lb_endpoints {
        lb_endpoint.health_status = HealthStatus::Healthy as i32;
    }
    ClusterLoadAssignment {
        cluster_name: outbound_cluster_name(port.number, subset, &service.hostname),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }]
        },
        ..Default::default()
    }
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
    service
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.serves(port) && labels_match(subset_labels, &endpoint.labels))
        .map(|endpoint| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(&endpoint.address, endpoint.port_for(port))),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value {
                value: endpoint.lb_weight(),
            }),
            metadata: tls::endpoint_metadata(&endpoint.labels),
            ..Default::default()
        })
        .collect()
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
