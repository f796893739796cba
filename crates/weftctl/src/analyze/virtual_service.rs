//! VirtualService checks: route and mirror destinations whose host, port or subset does not
//! exist (IST0101, as istioctl's `virtualservice.DestinationHostAnalyzer` and
//! `DestinationRuleAnalyzer`), gateways that do not exist (IST0101, `GatewayAnalyzer`),
//! sidecar VirtualServices defining the same host (IST0109,
//! `ConflictingMeshGatewayHostsAnalyzer`), and sidecar VirtualService hosts that match no
//! service (WEFT0003: the controller ignores them).

use std::collections::BTreeMap;

use weft_api::networking::{Destination, VirtualService};

use super::mesh::{Mesh, is_mesh_bound};
use super::{
    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS, Finding, REFERENCED_RESOURCE_NOT_FOUND,
    VIRTUAL_SERVICE_HOST_NOT_FOUND,
};

/// One destination of a VirtualService.
#[derive(Debug, Clone, Copy)]
pub struct RouteDestination<'a> {
    /// `false` for a mirror.
    pub route: bool,
    pub destination: &'a Destination,
}

/// Every route and mirror destination of a VirtualService, in order.
pub fn destinations(vs: &VirtualService) -> Vec<RouteDestination<'_>> {
    let mut out = Vec::new();
    for http in &vs.http {
        for route in &http.route {
            out.push(RouteDestination {
                route: true,
                destination: &route.destination,
            });
        }
        let mirrors = http
            .mirror
            .iter()
            .chain(http.mirrors.iter().map(|m| &m.destination));
        for destination in mirrors {
            out.push(RouteDestination {
                route: false,
                destination,
            });
        }
    }
    for route in vs
        .tcp
        .iter()
        .flat_map(|r| &r.route)
        .chain(vs.tls.iter().flat_map(|r| &r.route))
    {
        out.push(RouteDestination {
            route: true,
            destination: &route.destination,
        });
    }
    out
}

pub fn analyze(mesh: &Mesh<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (object, vs) in mesh.virtual_services() {
        let resource = object.resource();
        let found = |text: String| {
            Finding::new(REFERENCED_RESOURCE_NOT_FOUND, resource.clone(), text)
                .at(object.origin.as_ref())
        };
        for dest in destinations(&vs.spec) {
            let d = dest.destination;
            let hostname = mesh.resolve(&d.host, &object.namespace);
            let Some(service) = mesh.service(&hostname) else {
                let what = if dest.route { "host" } else { "mirror host" };
                findings.push(found(format!("Referenced {what} not found: {:?}", d.host)));
                continue;
            };
            if let Some(port) = &d.port
                && !service.ports.is_empty()
                && !service.ports.contains(&port.number)
            {
                findings.push(found(format!(
                    "Referenced host:port not found: \"{}:{}\"",
                    d.host, port.number
                )));
            }
            if let Some(subset) = d.subset.as_deref().filter(|s| !s.is_empty()) {
                let defined = mesh
                    .destination_rule(&hostname)
                    .is_some_and(|(_, dr)| dr.spec.subsets.iter().any(|s| s.name == subset));
                if !defined {
                    let what = if dest.route { "host" } else { "mirror" };
                    findings.push(found(format!(
                        "Referenced {what}+subset in destinationrule not found: \"{}+{subset}\"",
                        d.host
                    )));
                }
            }
        }
        for gateway in vs
            .spec
            .gateways
            .iter()
            .filter(|g| *g != super::mesh::MESH_GATEWAY)
        {
            let (namespace, name) = gateway
                .split_once('/')
                .unwrap_or((object.namespace.as_str(), gateway.as_str()));
            let exists = mesh
                .gateways()
                .any(|(o, g)| o.namespace == namespace && g.metadata.name == name);
            if !exists {
                findings.push(found(format!("Referenced gateway not found: {gateway:?}")));
            }
        }
        if is_mesh_bound(&vs.spec) {
            for host in &vs.spec.hosts {
                let hostname = mesh.resolve(host, &object.namespace);
                if !mesh.any_service_matches(&hostname) {
                    findings.push(
                        Finding::new(
                            VIRTUAL_SERVICE_HOST_NOT_FOUND,
                            resource.clone(),
                            format!(
                                "VirtualService host not found in the service registry: {host:?}; \
                                 the sidecars apply its routes to no service"
                            ),
                        )
                        .at(object.origin.as_ref()),
                    );
                }
            }
        }
    }
    findings.extend(conflicting_hosts(mesh));
    findings
}

/// IST0109: sidecar VirtualServices that define the same host for the same namespaces.
fn conflicting_hosts(mesh: &Mesh<'_>) -> Vec<Finding> {
    // (scope, fully qualified host) → the VirtualServices that define it.
    let mut by_host: BTreeMap<(String, String), Vec<&super::input::IstioObject>> = BTreeMap::new();
    for (object, vs) in mesh.virtual_services() {
        if !is_mesh_bound(&vs.spec) {
            continue;
        }
        let everywhere = vs.spec.export_to.is_empty() || vs.spec.export_to.iter().any(|e| e == "*");
        let scopes: Vec<String> = if everywhere {
            vec!["*".to_string()]
        } else {
            let mut scopes: Vec<String> = vs
                .spec
                .export_to
                .iter()
                .map(|e| {
                    if e == "." {
                        object.namespace.clone()
                    } else {
                        e.clone()
                    }
                })
                .collect();
            scopes.sort();
            scopes.dedup();
            scopes
        };
        for scope in scopes {
            for host in &vs.spec.hosts {
                let hostname = mesh.resolve(host, &object.namespace);
                let list = by_host.entry((scope.clone(), hostname)).or_default();
                if !list.iter().any(|o| std::ptr::eq(*o, object)) {
                    list.push(object);
                }
            }
        }
    }
    // A VirtualService exported everywhere also conflicts with one exported to a namespace.
    let everywhere: Vec<((String, String), Vec<&super::input::IstioObject>)> = by_host
        .iter()
        .filter(|((scope, _), _)| scope == "*")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((_, hostname), global) in everywhere {
        for ((scope, host), list) in by_host.iter_mut() {
            if scope != "*" && *host == hostname {
                for object in &global {
                    if !list.iter().any(|o| std::ptr::eq(*o, *object)) {
                        list.push(object);
                    }
                }
            }
        }
    }
    let mut findings = Vec::new();
    for ((_, hostname), list) in by_host {
        if list.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = list
            .iter()
            .map(|o| format!("{}/{}", o.namespace, o.object.name()))
            .collect();
        names.sort();
        let names = names.join(",");
        for object in list {
            findings.push(
                Finding::new(
                    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
                    object.resource(),
                    format!(
                        "The VirtualServices {names} associated with mesh gateway define the same \
                         host {hostname} which can lead to undefined behavior. This can be fixed \
                         by merging the conflicting VirtualServices into a single resource."
                    ),
                )
                .at(object.origin.as_ref()),
            );
        }
    }
    findings
}
