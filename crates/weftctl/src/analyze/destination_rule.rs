//! DestinationRule checks: a subset that a route sends traffic to but whose labels select
//! none of the service's workloads (IST0127, the code Istio gives selectors that match no
//! workload; Istio has no subset analyzer). Subsets no route uses are not reported, and a
//! service whose workloads are not known (no selector, or no workload at all) is skipped:
//! that is not a subset problem.

use std::collections::BTreeMap;

use super::mesh::{Mesh, selects, show_labels};
use super::virtual_service::destinations;
use super::{Finding, NO_MATCHING_WORKLOADS_FOUND};

pub fn analyze(mesh: &Mesh<'_>) -> Vec<Finding> {
    // (DestinationRule, subset) → (labels, host, the VirtualServices routing to it).
    let mut unmatched: BTreeMap<(usize, String), (String, String, Vec<String>)> = BTreeMap::new();
    let rules: Vec<_> = mesh.destination_rules().collect();
    for (object, vs) in mesh.virtual_services() {
        for dest in destinations(&vs.spec) {
            let d = dest.destination;
            let Some(subset_name) = d.subset.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let hostname = mesh.resolve(&d.host, &object.namespace);
            let (Some(service), Some((rule_object, rule))) =
                (mesh.service(&hostname), mesh.destination_rule(&hostname))
            else {
                continue;
            };
            let Some(subset) = rule.spec.subsets.iter().find(|s| s.name == subset_name) else {
                continue;
            };
            let Some(workloads) = mesh.workload_labels(service).filter(|w| !w.is_empty()) else {
                continue;
            };
            if workloads
                .iter()
                .any(|labels| selects(&subset.labels, labels))
            {
                continue;
            }
            let Some(index) = rules
                .iter()
                .position(|(o, _)| std::ptr::eq(*o, rule_object))
            else {
                continue;
            };
            let entry = unmatched
                .entry((index, subset_name.to_string()))
                .or_insert_with(|| (show_labels(&subset.labels), hostname.clone(), Vec::new()));
            entry
                .2
                .push(format!("{}/{}", object.namespace, object.object.name()));
        }
    }
    unmatched
        .into_iter()
        .map(|((index, subset), (labels, host, mut routes))| {
            routes.sort();
            routes.dedup();
            let object = rules[index].0;
            Finding::new(
                NO_MATCHING_WORKLOADS_FOUND,
                object.resource(),
                format!(
                    "No matching workloads for this resource with the following labels: {labels} \
                     (subset {subset:?} of {host}, which VirtualService {} routes to)",
                    routes.join(", ")
                ),
            )
            .at(object.origin.as_ref())
        })
        .collect()
}
