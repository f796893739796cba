//! PeerAuthentications in the model, and the mutual-TLS mode of a workload's inbound port with
//! Istio's precedence (`ComposePeerAuthentication`):
//!
//! ```text
//!  port level   portLevelMtls[<port>] of the workload policy      (UNSET: inherit ↓)
//!  workload     selector.matchLabels ⊆ labels, workload's namespace (UNSET: inherit ↓)
//!  namespace    no selector, workload's namespace                  (UNSET: inherit ↓)
//!  mesh         no selector, root namespace                        (UNSET: inherit ↓)
//!  default      PERMISSIVE
//! ```
//!
//! Several policies at one level: the oldest (`metadata.creationTimestamp`) wins; without
//! timestamps (local mode) the first by name. A policy with a selector in the root namespace
//! applies to nothing, as in Istio (reported).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use weft_api::Resource;
use weft_api::security::{MtlsMode as IstioMtlsMode, PeerAuthentication};

use crate::model::Model;
use crate::object::{ObjectKey, Warning};

/// The mTLS mode a workload's inbound port accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MtlsMode {
    /// Only mutual TLS.
    Strict,
    /// Mutual TLS and plaintext (Istio's default).
    Permissive,
    /// Only plaintext.
    Disable,
}

impl MtlsMode {
    /// The mode as Istio spells it (`STRICT`, `PERMISSIVE`, `DISABLE`).
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Strict => "STRICT",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Disable => "DISABLE",
        }
    }

    /// A mode of the API; `None` for `UNSET` (inherit).
    fn of(mode: Option<IstioMtlsMode>) -> Option<Self> {
        match mode? {
            IstioMtlsMode::Unset => None,
            IstioMtlsMode::Strict => Some(MtlsMode::Strict),
            IstioMtlsMode::Permissive => Some(MtlsMode::Permissive),
            IstioMtlsMode::Disable => Some(MtlsMode::Disable),
        }
    }
}

/// One PeerAuthentication, as the precedence needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthenticationEntry {
    pub key: ObjectKey,
    /// `metadata.creationTimestamp` (Kubernetes); `None` in local mode, which sorts first
    /// (Istio's zero time).
    pub created: Option<Timestamp>,
    /// `selector.matchLabels`; empty when there is no selector (or an empty one): the policy
    /// is then namespace-wide (mesh-wide in the root namespace).
    pub selector: BTreeMap<String, String>,
    /// `mtls.mode`; `None` for UNSET or no `mtls`.
    pub mode: Option<MtlsMode>,
    /// `portLevelMtls`: port → mode (`None`: UNSET, inherits the workload level).
    pub port_level: BTreeMap<u32, Option<MtlsMode>>,
}

impl PeerAuthenticationEntry {
    /// The entry of one object, and the warnings about it (an unreadable creation time, a
    /// selector in the root namespace).
    pub fn new(
        key: &ObjectKey,
        resource: &Resource<PeerAuthentication>,
        root_namespace: &str,
    ) -> (Self, Vec<Warning>) {
        let mut warnings = Vec::new();
        let created = crate::object::creation_time(
            key,
            resource.metadata.creation_timestamp.as_deref(),
            "policy",
            &mut warnings,
        );
        let spec = &resource.spec;
        let selector = spec
            .selector
            .as_ref()
            .map(|selector| selector.match_labels.clone())
            .unwrap_or_default();
        if !selector.is_empty() && key.namespace == root_namespace {
            warnings.push(Warning::new(
                key,
                "spec.selector",
                format!(
                    "a PeerAuthentication with a workload selector in the root namespace {root_namespace:?} applies to no workload (as in Istio); put it in the workloads' namespace"
                ),
            ));
        }
        let entry = Self {
            key: key.clone(),
            created,
            selector,
            mode: MtlsMode::of(spec.mtls.as_ref().and_then(|mtls| mtls.mode)),
            port_level: spec
                .port_level_mtls
                .iter()
                .flatten()
                .map(|(port, mtls)| (*port, MtlsMode::of(mtls.mode)))
                .collect(),
        };
        (entry, warnings)
    }

    /// The order among policies of one level: oldest first, then by name.
    fn age(&self) -> (Option<Timestamp>, &str, &str) {
        (self.created, &self.key.namespace, &self.key.name)
    }

    fn is_namespace_wide(&self) -> bool {
        self.selector.is_empty()
    }
}

/// The mTLS mode of a workload port and the PeerAuthentication that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsDecision {
    pub mode: MtlsMode,
    /// The deciding policy; `None` when no policy sets a mode (PERMISSIVE by default).
    pub policy: Option<ObjectKey>,
}

impl MtlsDecision {
    /// `<namespace>/<name>` of the deciding policy, empty when none.
    pub fn policy_name(&self) -> String {
        self.policy
            .as_ref()
            .map(|key| format!("{}/{}", key.namespace, key.name))
            .unwrap_or_default()
    }
}

impl Default for MtlsDecision {
    fn default() -> Self {
        Self {
            mode: MtlsMode::Permissive,
            policy: None,
        }
    }
}

/// The mTLS mode of `port` (`None`: the workload as a whole) of a workload in `namespace`
/// with `labels`, from `policies` (every PeerAuthentication of the mesh).
pub fn mtls_mode(
    policies: &[PeerAuthenticationEntry],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: Option<u32>,
) -> MtlsDecision {
    decide(policies, root_namespace, namespace, Some(labels), port)
}

/// Istio's `BestEffortInferServiceMTLSMode` for auto mTLS: the mode of the namespace-wide
/// policy of `namespace`, else of the mesh-wide one (workload and port levels are ignored:
/// which workloads serve a service is not known here); PERMISSIVE when neither sets one.
pub fn namespace_mtls_mode(
    policies: &[PeerAuthenticationEntry],
    root_namespace: &str,
    namespace: &str,
) -> MtlsMode {
    decide(policies, root_namespace, namespace, None, None).mode
}

/// The precedence; `labels: None` leaves the workload (and port) level out.
fn decide(
    policies: &[PeerAuthenticationEntry],
    root_namespace: &str,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    port: Option<u32>,
) -> MtlsDecision {
    let oldest = |level: &dyn Fn(&PeerAuthenticationEntry) -> bool| {
        policies
            .iter()
            .filter(|policy| level(policy))
            .min_by(|a, b| a.age().cmp(&b.age()))
    };
    let mesh = oldest(&|p| p.key.namespace == root_namespace && p.is_namespace_wide());
    let in_namespace =
        |p: &PeerAuthenticationEntry| p.key.namespace == namespace && namespace != root_namespace;
    let namespace_wide = oldest(&|p| in_namespace(p) && p.is_namespace_wide());
    let workload = labels.and_then(|labels| {
        oldest(&|p| {
            in_namespace(p)
                && !p.is_namespace_wide()
                && p.selector
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
        })
    });

    let mut decision = MtlsDecision::default();
    for policy in [mesh, namespace_wide, workload].into_iter().flatten() {
        if let Some(mode) = policy.mode {
            decision = MtlsDecision {
                mode,
                policy: Some(policy.key.clone()),
            };
        }
    }
    if let (Some(policy), Some(port)) = (workload, port)
        && let Some(Some(mode)) = policy.port_level.get(&port)
    {
        decision = MtlsDecision {
            mode: *mode,
            policy: Some(policy.key.clone()),
        };
    }
    decision
}

/// Warnings for the policies that never decide anything because an older one holds their
/// namespace-wide (or mesh-wide) level.
pub fn shadowed(policies: &[PeerAuthenticationEntry]) -> Vec<Warning> {
    crate::object::warn_shadowed(
        policies.iter().filter(|p| p.is_namespace_wide()),
        |p| &p.key,
        |p| (p.created, p.key.name.clone()),
        "spec",
        |winner| {
            format!(
                "PeerAuthentication {}/{} is older and also applies to the whole namespace; this one is ignored (Istio: the oldest wins)",
                winner.namespace, winner.name
            )
        },
    )
}

impl Model {
    /// The mTLS mode of `port` (`None`: the workload as a whole) of a workload in `namespace`
    /// with `labels`, and the PeerAuthentication that decided it.
    pub fn mtls_mode_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: Option<u32>,
    ) -> MtlsDecision {
        mtls_mode(
            &self.peer_authentications,
            &self.root_namespace,
            namespace,
            labels,
            port,
        )
    }

    /// The mode auto mTLS assumes for the services of `namespace` ([`namespace_mtls_mode`]).
    pub fn namespace_mtls_mode(&self, namespace: &str) -> MtlsMode {
        namespace_mtls_mode(&self.peer_authentications, &self.root_namespace, namespace)
    }
}

#[cfg(test)]
#[path = "peer_authentication_tests.rs"]
mod tests;
