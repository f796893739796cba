//! Gateway checks: a selector that selects no pod in the cluster (IST0101, as istioctl's
//! `gateway.IngressGatewayPortAnalyzer`/`GatewayAnalyzer`). Only against the live cluster:
//! files seldom hold the gateway's own Deployment (Istio's samples do not), so a files-only
//! analysis would flag every Gateway.

use super::mesh::{Mesh, selects, show_labels};
use super::{Finding, REFERENCED_RESOURCE_NOT_FOUND};

pub fn analyze(mesh: &Mesh<'_>) -> Vec<Finding> {
    if !mesh.snapshot.live {
        return Vec::new();
    }
    mesh.gateways()
        .filter(|(_, gateway)| !gateway.spec.selector.is_empty())
        .filter(|(_, gateway)| {
            !mesh
                .workloads()
                .iter()
                .any(|w| w.kind == "Pod" && selects(&gateway.spec.selector, &w.labels))
        })
        .map(|(object, gateway)| {
            Finding::new(
                REFERENCED_RESOURCE_NOT_FOUND,
                object.resource(),
                format!(
                    "Referenced selector not found: {:?}",
                    show_labels(&gateway.spec.selector)
                ),
            )
            .at(object.origin.as_ref())
        })
        .collect()
}
