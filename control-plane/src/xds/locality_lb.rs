//! Locality load balancing (DestinationRule `localityLbSetting`, Istio's
//! `ApplyLocalityLoadBalancer`): per proxy, the localities of a cluster's endpoints get
//! priorities (failover) or weights (distribute) relative to where the proxy runs.
//!
//! ```text
//!  endpoints ─► one group per locality (EDS LocalityLbEndpoints, weight Σ endpoint weights)
//!  setting: the rule's localityLbSetting (enabled: false → none), else the mesh's (enabled)
//!  distribute (the first whose `from` matches the proxy) ─► locality weights; localities no
//!      `to` names are emptied
//!  else, only with outlierDetection (nothing fails over without it):
//!    failoverPriority ─► each group split by how many labels in a row match the proxy's
//!    failover / default ─► priority by region/zone/subzone (0..3); with a `failover` for the
//!      proxy's region, regions other than its `to` drop to 4; failoverPriority's priorities
//!      stay the major order (× 5)
//!  priorities renumbered 0..N without gaps
//!  CDS: locality_weighted_lb_config when distributing, or failing over by rule
//! ```
//!
//! The proxy's locality is what it says (`node.locality`, `weft-proxy --locality`), else its
//! pod's (Kubernetes: the `istio-locality` label or the node's topology labels), else the
//! locality of the endpoint at its IP.

use std::collections::BTreeMap;

use weft_api::networking::LocalityLoadBalancerSetting;

use super::proxy::Proxy;
use crate::locality::Locality;
use crate::model::Model;
use crate::service::Endpoint;

/// The endpoints of one locality at one priority, on their way to EDS.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a, T> {
    pub locality: Locality,
    pub priority: u32,
    /// The locality's weight (`None`: the sum of its endpoints' weights).
    pub weight: Option<u32>,
    /// Each endpoint with what EDS sends for it.
    pub endpoints: Vec<(&'a Endpoint, T)>,
}

impl<T> Group<'_, T> {
    /// The locality's weight: set by `distribute`, else its endpoints' weights summed, as
    /// Istio sends it.
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or_else(|| {
            self.endpoints
                .iter()
                .map(|(endpoint, _)| endpoint.lb_weight())
                .fold(0u32, u32::saturating_add)
        })
    }
}

/// The endpoints grouped by locality, in locality order (endpoints in their given order).
pub fn group<'a, T>(endpoints: impl IntoIterator<Item = (&'a Endpoint, T)>) -> Vec<Group<'a, T>> {
    let mut groups: BTreeMap<&'a Locality, Vec<(&'a Endpoint, T)>> = BTreeMap::new();
    for (endpoint, item) in endpoints {
        groups
            .entry(&endpoint.locality)
            .or_default()
            .push((endpoint, item));
    }
    groups
        .into_iter()
        .map(|(locality, endpoints)| Group {
            locality: locality.clone(),
            priority: 0,
            weight: None,
            endpoints,
        })
        .collect()
}

/// The setting in force: the rule's (none if it turns locality balancing off), else the
/// mesh's default (enabled, nothing set: failover by locality, given outlier detection).
pub fn effective(
    rule: Option<&LocalityLoadBalancerSetting>,
) -> Option<LocalityLoadBalancerSetting> {
    match rule {
        Some(setting) if setting.enabled == Some(false) => None,
        Some(setting) => Some(setting.clone()),
        None => Some(LocalityLoadBalancerSetting::default()),
    }
}

/// Whether the cluster weighs localities (`common_lb_config.locality_weighted_lb_config`), as
/// Istio: when distributing, or failing over by an explicit rule with outlier detection.
pub fn locality_weighted(setting: Option<&LocalityLoadBalancerSetting>, outlier: bool) -> bool {
    setting.is_some_and(|s| {
        !s.distribute.is_empty()
            || outlier && (!s.failover.is_empty() || !s.failover_priority.is_empty())
    })
}

/// Where `proxy` runs: what it says, else its pod's locality, else the locality of the
/// endpoint at its IP.
pub fn proxy_locality(model: &Model, proxy: &Proxy) -> Locality {
    if !proxy.locality.is_empty() {
        return proxy.locality.clone();
    }
    if let Some(locality) = model
        .pod_localities
        .get(&(proxy.namespace.clone(), proxy.workload_name.clone()))
    {
        return locality.clone();
    }
    model
        .services
        .values()
        .flat_map(|service| &service.endpoints)
        .find(|endpoint| {
            !endpoint.locality.is_empty() && proxy.instance_ips.contains(&endpoint.address)
        })
        .map(|endpoint| endpoint.locality.clone())
        .unwrap_or_default()
}

/// Applies `setting` to `groups` for a proxy at `locality` with `labels`; `outlier`: the
/// cluster detects outliers (failover needs it).
pub fn apply<'a, T>(
    groups: Vec<Group<'a, T>>,
    locality: &Locality,
    labels: &BTreeMap<String, String>,
    setting: Option<&LocalityLoadBalancerSetting>,
    outlier: bool,
) -> Vec<Group<'a, T>> {
    let Some(setting) = setting else {
        return groups;
    };
    if !setting.distribute.is_empty() {
        return distribute(groups, locality, setting);
    }
    if !outlier {
        return groups;
    }
    let mut groups = if setting.failover_priority.is_empty() {
        groups
    } else {
        let split = failover_priority(groups, locality, labels, &setting.failover_priority);
        if setting.failover.is_empty() {
            return renumber(split);
        }
        split
    };
    for group in &mut groups {
        let mut priority = group.locality.priority_from(locality);
        if priority == 3
            && let Some(rule) = setting.failover.iter().find(|f| f.from == locality.region)
            && group.locality.region != rule.to
        {
            priority = 4;
        }
        group.priority = group.priority * 5 + priority;
    }
    renumber(groups)
}

/// `distribute`: the first entry whose `from` matches the proxy gives each locality its share
/// (a `to` matching several localities splits its share by their weights); localities no
/// `to` names get no endpoints.
fn distribute<'a, T>(
    mut groups: Vec<Group<'a, T>>,
    locality: &Locality,
    setting: &LocalityLoadBalancerSetting,
) -> Vec<Group<'a, T>> {
    let Some(rule) = setting
        .distribute
        .iter()
        .find(|d| locality.matches(&d.from))
    else {
        return groups;
    };
    let mut unmatched: Vec<bool> = vec![true; groups.len()];
    // Most specific `to` first, so `us/zone1` claims its locality before `us/*` does (Istio
    // leaves the order to Go's map iteration).
    let specificity = |to: &str| to.split('/').filter(|p| *p != "*" && !p.is_empty()).count();
    let mut targets: Vec<(&String, &u32)> = rule.to.iter().collect();
    targets.sort_by_key(|(to, _)| std::cmp::Reverse(specificity(to)));
    for (to, share) in targets {
        let matched: Vec<usize> = (0..groups.len())
            .filter(|&i| unmatched[i] && groups[i].locality.matches(to))
            .collect();
        let total: u64 = matched.iter().map(|&i| u64::from(groups[i].weight())).sum();
        for &i in &matched {
            unmatched[i] = false;
            let original = u64::from(groups[i].weight());
            let weight = (original * u64::from(*share)).div_ceil(total.max(1));
            if weight > 0 {
                groups[i].weight = Some(u32::try_from(weight).unwrap_or(u32::MAX));
            }
        }
    }
    for (group, unmatched) in groups.iter_mut().zip(unmatched) {
        if unmatched {
            group.endpoints.clear();
        }
    }
    groups
}

/// `failoverPriority`: each endpoint's priority is the number of labels after the first one
/// (in order) whose value differs from the proxy's (`label=value` pins the value). Topology
/// labels take their value from the locality when the object does not carry them.
fn failover_priority<'a, T>(
    groups: Vec<Group<'a, T>>,
    proxy_locality: &Locality,
    proxy_labels: &BTreeMap<String, String>,
    priorities: &[String],
) -> Vec<Group<'a, T>> {
    let wanted: Vec<(&str, Option<&str>)> = priorities
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((label, value)) => (label, Some(value)),
            None => (entry.as_str(), None),
        })
        .collect();
    let value_of = |labels: &BTreeMap<String, String>, locality: &Locality, key: &str| -> String {
        labels
            .get(key)
            .map(String::as_str)
            .or_else(|| locality.label(key))
            .unwrap_or_default()
            .to_string()
    };
    let mut out = Vec::new();
    for group in groups {
        let mut split: BTreeMap<u32, Vec<(&'a Endpoint, T)>> = BTreeMap::new();
        for (endpoint, item) in group.endpoints {
            let lowest = wanted.len() as u32;
            let priority = wanted
                .iter()
                .position(|(key, pinned)| {
                    let proxy_value = match pinned {
                        Some(value) => (*value).to_string(),
                        None => value_of(proxy_labels, proxy_locality, key),
                    };
                    proxy_value != value_of(&endpoint.labels, &endpoint.locality, key)
                })
                .map_or(0, |first| lowest - first as u32);
            split.entry(priority).or_default().push((endpoint, item));
        }
        for (priority, endpoints) in split {
            out.push(Group {
                locality: group.locality.clone(),
                priority,
                weight: None,
                endpoints,
            });
        }
    }
    out
}

/// Priorities 0..N without gaps, in the same order.
fn renumber<T>(mut groups: Vec<Group<'_, T>>) -> Vec<Group<'_, T>> {
    let mut used: Vec<u32> = groups.iter().map(|g| g.priority).collect();
    used.sort_unstable();
    used.dedup();
    for group in &mut groups {
        group.priority = used.binary_search(&group.priority).unwrap_or_default() as u32;
    }
    groups
}

#[cfg(test)]
#[path = "locality_lb_tests.rs"]
mod tests;
