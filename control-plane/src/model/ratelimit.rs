//! LocalRateLimits (Weft's `ratelimit.weft.io`) in the model: one entry per object and which
//! workloads it selects. A LocalRateLimit applies to the workloads of its own namespace (all of
//! them without `selector`, else those carrying its labels), on their inbound side; the
//! generator ([`crate::xds::ratelimit`]) turns it into local rate limit filters.

use std::collections::BTreeMap;

use weft_api::ratelimit::LocalRateLimit;

use super::Model;
use crate::object::{ObjectKey, Warning};

/// One LocalRateLimit.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRateLimitEntry {
    pub key: ObjectKey,
    /// `selector.matchLabels`; `None`: every workload of the namespace.
    pub labels: Option<BTreeMap<String, String>>,
    pub spec: LocalRateLimit,
}

impl LocalRateLimitEntry {
    /// The entry of one object, and a warning for rules that follow a rule matching every
    /// request (first match wins: they can never apply).
    pub fn new(key: &ObjectKey, spec: &LocalRateLimit) -> (Self, Vec<Warning>) {
        let mut warnings = Vec::new();
        if let Some(first) = spec.rules.iter().position(|r| r.matches_all())
            && first + 1 < spec.rules.len()
        {
            warnings.push(Warning::new(
                key,
                format!("spec.rules[{}]", first + 1),
                format!(
                    "never applies: rule {:?} before it matches every request (first match wins)",
                    spec.rules[first].name
                ),
            ));
        }
        let entry = LocalRateLimitEntry {
            key: key.clone(),
            labels: spec.selector.as_ref().map(|s| s.match_labels.clone()),
            spec: spec.clone(),
        };
        (entry, warnings)
    }

    /// Whether it applies to a workload in `namespace` with `labels`.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.key.namespace == namespace
            && self.labels.as_ref().is_none_or(|wanted| {
                wanted
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
            })
    }

    /// Whether it applies to the workload's inbound `port` (no `ports`: every port).
    pub fn applies_to_port(&self, port: u32) -> bool {
        self.spec.ports.is_empty() || self.spec.ports.contains(&port)
    }
}

impl Model {
    /// The LocalRateLimits for a workload in `namespace` with `labels` on its inbound `port`,
    /// in namespace/name order.
    pub fn local_rate_limits_for<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
        port: u32,
    ) -> impl Iterator<Item = &'a LocalRateLimitEntry> + 'a {
        self.local_rate_limits
            .iter()
            .filter(move |l| l.selects(namespace, labels) && l.applies_to_port(port))
    }
}
