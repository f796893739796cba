//! Sidecar resources in the model: which one applies to a workload (Istio's precedence), the
//! services its `egress[].hosts` let the workload see, and its outbound traffic policy.
//!
//! ```text
//!  workload   workloadSelector.labels ⊆ labels, workload's namespace   (oldest, then by name)
//!  namespace  no selector, workload's namespace
//!  mesh       no selector, root namespace
//!  none       every service visible; the mesh's outboundTrafficPolicy (--outbound-traffic-policy)
//! ```
//!
//! `egress[].hosts` are `<namespace>/<dnsName>`: namespace `*` (any), `.` (the workload's
//! namespace, also for the root namespace's Sidecar, as Istio), `~` (none) or a name; the
//! dnsName exact or a wildcard (`*`, `*.example.com`) covering the service's host. A Sidecar
//! without `egress` lets the workload see every service. The other fields are reported by
//! [`crate::unsupported`].

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use weft_api::Resource;
use weft_api::host::host_matches;
use weft_api::networking::{OutboundTrafficPolicyMode, Sidecar};

use super::{Model, OutboundTrafficPolicy};
use crate::object::{ObjectKey, Warning};
use crate::service::Service;

/// One Sidecar, as the generator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarEntry {
    pub key: ObjectKey,
    /// `metadata.creationTimestamp`; `None` (local mode) sorts first, as Istio's zero time.
    pub created: Option<Timestamp>,
    /// `workloadSelector.labels`; empty: the Sidecar is for its whole namespace.
    pub selector: BTreeMap<String, String>,
    /// The hosts of every `egress` listener; `None` without `egress` (every service visible).
    pub egress_hosts: Option<Vec<EgressHost>>,
    /// `outboundTrafficPolicy.mode`; `None` without `outboundTrafficPolicy`. A policy without
    /// `mode` is REGISTRY_ONLY, the enum's zero value, as in Istio.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// One `egress[].hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressHost {
    pub namespace: EgressNamespace,
    /// The dnsName: a host or a wildcard (`*`, `*.example.com`).
    pub host: String,
}

/// The namespace part of an egress host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressNamespace {
    /// `*`: services of every namespace.
    Any,
    /// `.`: services of the workload's namespace.
    Local,
    /// `~`: no service (only the host's routes, which Weft does not scope).
    Nothing,
    /// Services of that namespace.
    Named(String),
}

impl EgressHost {
    /// Parses `<namespace>/<dnsName>`; `None` without a `/` (validation rejects those).
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, host) = text.split_once('/')?;
        let namespace = match namespace {
            "*" => EgressNamespace::Any,
            "." => EgressNamespace::Local,
            "~" => EgressNamespace::Nothing,
            other => EgressNamespace::Named(other.to_string()),
        };
        Some(Self {
            namespace,
            host: host.to_string(),
        })
    }

    /// Whether a workload in `namespace` sees `service` through this host.
    pub fn covers(&self, service: &Service, namespace: &str) -> bool {
        let in_namespace = match &self.namespace {
            EgressNamespace::Any => true,
            EgressNamespace::Local => service.namespace == namespace,
            EgressNamespace::Nothing => false,
            EgressNamespace::Named(name) => service.namespace == *name,
        };
        in_namespace && host_matches(&self.host, &service.hostname)
    }
}

impl SidecarEntry {
    /// The entry of one object, and warnings about it (an unreadable creation time, an egress
    /// host that does not parse).
    pub fn new(key: &ObjectKey, resource: &Resource<Sidecar>) -> (Self, Vec<Warning>) {
        let mut warnings = Vec::new();
        let created = crate::object::creation_time(
            key,
            resource.metadata.creation_timestamp.as_deref(),
            "Sidecar",
            &mut warnings,
        );
        let spec = &resource.spec;
        let egress_hosts = (!spec.egress.is_empty()).then(|| {
            let mut hosts = Vec::new();
            for (listener, egress) in spec.egress.iter().enumerate() {
                for (index, text) in egress.hosts.iter().enumerate() {
                    match EgressHost::parse(text) {
                        Some(host) => hosts.push(host),
                        None => warnings.push(Warning::new(
                            key,
                            format!("spec.egress[{listener}].hosts[{index}]"),
                            format!(
                                "{text:?} is not <namespace>/<host>; it makes no service visible"
                            ),
                        )),
                    }
                }
            }
            hosts
        });
        let entry = Self {
            key: key.clone(),
            created,
            selector: spec
                .workload_selector
                .as_ref()
                .map(|selector| selector.labels.clone())
                .unwrap_or_default(),
            egress_hosts,
            outbound_traffic_policy: spec.outbound_traffic_policy.as_ref().map(|policy| {
                policy
                    .mode
                    .unwrap_or(OutboundTrafficPolicyMode::RegistryOnly)
                    .into()
            }),
        };
        (entry, warnings)
    }

    fn is_namespace_wide(&self) -> bool {
        self.selector.is_empty()
    }

    /// The order among Sidecars of one level: oldest first, then by name.
    fn age(&self) -> (Option<Timestamp>, &str, &str) {
        (self.created, &self.key.namespace, &self.key.name)
    }

    /// Whether a workload in `namespace` this Sidecar applies to sees `service`.
    pub fn sees(&self, service: &Service, namespace: &str) -> bool {
        self.egress_hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|host| host.covers(service, namespace)))
    }
}

/// The Sidecar that applies to a workload in `namespace` with `labels`, with Istio's precedence.
pub fn sidecar_for<'a>(
    sidecars: &'a [SidecarEntry],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'a SidecarEntry> {
    let oldest = |level: &dyn Fn(&SidecarEntry) -> bool| {
        sidecars
            .iter()
            .filter(|sidecar| level(sidecar))
            .min_by(|a, b| a.age().cmp(&b.age()))
    };
    oldest(&|s| {
        s.key.namespace == namespace
            && !s.is_namespace_wide()
            && s.selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    })
    .or_else(|| oldest(&|s| s.key.namespace == namespace && s.is_namespace_wide()))
    .or_else(|| oldest(&|s| s.key.namespace == root_namespace && s.is_namespace_wide()))
}

/// Warnings for the namespace-wide Sidecars that never apply because an older one holds
/// their namespace.
pub fn shadowed(sidecars: &[SidecarEntry]) -> Vec<Warning> {
    crate::object::warn_shadowed(
        sidecars.iter().filter(|s| s.is_namespace_wide()),
        |s| &s.key,
        |s| (s.created, s.key.name.clone()),
        "",
        |winner| {
            format!(
                "Sidecar {}/{} already applies to the namespace's workloads (the oldest, then by name, wins); this one is ignored",
                winner.namespace, winner.name
            )
        },
    )
}

impl Model {
    /// The Sidecar that applies to a workload in `namespace` with `labels`, if any.
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<&SidecarEntry> {
        sidecar_for(&self.sidecars, &self.root_namespace, namespace, labels)
    }

    /// The services a workload in `namespace` with `labels` sees (its Sidecar's egress hosts),
    /// by host name.
    pub fn services_for<'a>(
        &'a self,
        namespace: &'a str,
        labels: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        let sidecar = self.sidecar_for(namespace, labels);
        self.services
            .values()
            .filter(move |service| sidecar.is_none_or(|sidecar| sidecar.sees(service, namespace)))
    }

    /// The outbound traffic policy of a workload: its Sidecar's, else the mesh's.
    pub fn outbound_traffic_policy_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> OutboundTrafficPolicy {
        self.sidecar_for(namespace, labels)
            .and_then(|sidecar| sidecar.outbound_traffic_policy)
            .unwrap_or(self.outbound_traffic_policy)
    }
}

#[cfg(test)]
#[path = "sidecar_tests.rs"]
mod tests;
