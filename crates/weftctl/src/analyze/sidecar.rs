//! Sidecar checks: a Sidecar whose `egress` hosts hide a service that a VirtualService its
//! workloads do see routes to (WEFT0004; Istio has no analyzer for it). The proxy then has
//! the route but no cluster for its destination: HTTP requests get 503, TCP connections
//! are closed.

use std::collections::BTreeSet;

use super::mesh::{Mesh, exported_to, is_mesh_bound, sidecar_sees};
use super::virtual_service::destinations;
use super::{Finding, SIDECAR_HIDES_ROUTE_DESTINATION};

pub fn analyze(mesh: &Mesh<'_>) -> Vec<Finding> {
    let root = &mesh.snapshot.settings.root_namespace;
    let mut namespaces: BTreeSet<&str> = mesh
        .snapshot
        .namespaces
        .keys()
        .map(String::as_str)
        .collect();
    namespaces.extend(mesh.services.values().map(|s| s.namespace.as_str()));
    namespaces.extend(mesh.workloads().iter().map(|w| w.namespace.as_str()));
    namespaces.extend(mesh.objects().map(|o| o.namespace.as_str()));
    let mut findings = Vec::new();
    for (object, sidecar) in mesh.sidecars() {
        if sidecar.spec.egress.is_empty() {
            continue;
        }
        let selector = sidecar.spec.workload_selector.as_ref().map(|s| &s.labels);
        // The namespaces whose workloads it applies to.
        let applies: Vec<&str> = if selector.is_some() || object.namespace != *root {
            vec![object.namespace.as_str()]
        } else {
            namespaces
                .iter()
                .copied()
                .filter(|ns| {
                    mesh.sidecar_for(ns, &Default::default())
                        .is_some_and(|(o, _)| std::ptr::eq(o, object))
                })
                .collect()
        };
        let mut seen = BTreeSet::new();
        for namespace in applies {
            for (vs_object, vs) in mesh.virtual_services() {
                if !is_mesh_bound(&vs.spec)
                    || !exported_to(&vs.spec.export_to, &vs_object.namespace, namespace)
                {
                    continue;
                }
                let visible: Vec<String> = vs
                    .spec
                    .hosts
                    .iter()
                    .map(|h| mesh.resolve(h, &vs_object.namespace))
                    .filter(|h| {
                        mesh.service(h)
                            .is_some_and(|s| sidecar_sees(&sidecar.spec, s, namespace))
                    })
                    .collect();
                let Some(routed) = visible.first() else {
                    continue;
                };
                for dest in destinations(&vs.spec) {
                    let hostname = mesh.resolve(&dest.destination.host, &vs_object.namespace);
                    let Some(service) = mesh.service(&hostname) else {
                        continue;
                    };
                    if sidecar_sees(&sidecar.spec, service, namespace)
                        || !seen.insert((hostname.clone(), vs_object.resource()))
                    {
                        continue;
                    }
                    findings.push(
                        Finding::new(
                            SIDECAR_HIDES_ROUTE_DESTINATION,
                            object.resource(),
                            format!(
                                "The Sidecar's egress hosts hide {hostname:?}, which VirtualService \
                                 {}/{} routes {routed} to for workloads in namespace {namespace}: \
                                 their requests get 503 (no cluster). Add \"{}/{hostname}\" (or its \
                                 namespace) to egress.hosts.",
                                vs_object.namespace,
                                vs_object.object.name(),
                                service.namespace,
                            ),
                        )
                        .at(object.origin.as_ref()),
                    );
                }
            }
        }
    }
    findings
}
