//! `DestinationRule` (networking.istio.io/v1): subsets and traffic policies.
//!
//! The rule, its subsets and the traffic-policy containers live here; the policies are split by
//! concern: [`load_balancer`], [`connection_pool`], [`outlier`], [`tls`] (upstream TLS) and
//! [`tunnel`] (tunnelling and the PROXY protocol).

mod connection_pool;
mod load_balancer;
mod outlier;
mod retry_budget;
mod tls;
mod tunnel;

pub use connection_pool::*;
pub use load_balancer::*;
pub use outlier::*;
pub use retry_budget::*;
pub use tls::*;
pub use tunnel::*;

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{PolicyWorkloadSelector, PortSelector};
use crate::de::null_default;
use crate::duration::Duration;
use crate::validation::{
    FieldError, Path, Validate, check, check_export_to, check_labels, validate_subset_name,
    validate_wildcard_domain,
};

/// The message of the CEL rule Istio's CRDs put on most durations (`duration(self) >=
/// duration('1ms')`), so local mode and the API server refuse with the same words.
pub(crate) const CEL_MIN_DURATION: &str = "must be a valid duration greater than 1ms";

/// The CEL rule alone: at least 1ms (sub-millisecond digits are fine).
pub(crate) fn check_min_duration(path: &Path, errors: &mut Vec<FieldError>, d: &Option<Duration>) {
    if let Some(d) = d
        && d.0 < std::time::Duration::from_millis(1)
    {
        path.push(errors, format!("{CEL_MIN_DURATION}, got {d}"));
    }
}

/// Istio's Go rule past the minimum: a whole number of milliseconds.
pub(crate) fn check_whole_ms(path: &Path, errors: &mut Vec<FieldError>, d: &Duration) {
    if !d.0.subsec_nanos().is_multiple_of(1_000_000) {
        path.push(
            errors,
            format!("only durations to ms precision are supported, got {d}"),
        );
    }
}

/// The CEL rule and Istio's Go `ValidateDuration`: at least 1ms, in whole milliseconds.
pub(crate) fn check_ms_duration(path: &Path, errors: &mut Vec<FieldError>, d: &Option<Duration>) {
    check_min_duration(path, errors, d);
    if let Some(d) = d
        && d.0 >= std::time::Duration::from_millis(1)
    {
        check_whole_ms(path, errors, d);
    }
}

/// `configmap://` credential names must name a ConfigMap of the rule's own namespace (Istio's
/// `ValidateTLS`).
fn check_configmap_credential(
    path: &Path,
    errors: &mut Vec<FieldError>,
    namespace: &str,
    tls: &Option<ClientTlsSettings>,
) {
    let Some(name) = tls.as_ref().and_then(|t| t.credential_name.as_deref()) else {
        return;
    };
    let Some(rest) = name.strip_prefix("configmap://") else {
        return;
    };
    let p = path.field("tls").field("credentialName");
    let (ns, cm) = match rest.split_once('/') {
        Some((ns, cm)) => (ns, cm.split('/').next().unwrap_or("")),
        None => (namespace, rest),
    };
    if ns.is_empty() || cm.is_empty() {
        p.push(
            errors,
            format!(
                "invalid configmap:// credentialName {}: expected configmap://[namespace/]name",
                crate::de::quoted(name)
            ),
        );
    } else if ns != namespace {
        p.push(
            errors,
            format!("invalid configmap:// credentialName {}: namespace must match the configuration namespace {}", crate::de::quoted(name), crate::de::quoted(namespace)),
        );
    }
}

/// Policies applied to traffic for a host after routing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// Service host the rule applies to.
    #[serde(default)]
    pub host: String,
    /// Policy for all of the host's traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets (versions) of the host.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subsets: Vec<Subset>,
    /// Namespaces this rule is visible to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub export_to: Vec<String>,
    /// Restrict the rule to some workloads (`matchLabels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<PolicyWorkloadSelector>,
}

impl DestinationRule {
    /// The subset with this name.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// Validation that needs the object's namespace (for `exportTo`).
    pub fn validate_in_namespace(
        &self,
        namespace: Option<&str>,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        let hp = path.field("host");
        if self.host.is_empty() {
            hp.push(errors, "host is required");
        } else {
            check(&hp, errors, validate_wildcard_domain(&self.host));
        }
        self.traffic_policy
            .validate(&path.field("trafficPolicy"), errors);
        let sp = path.field("subsets");
        let mut names = BTreeSet::new();
        for (i, s) in self.subsets.iter().enumerate() {
            let p = sp.index(i);
            if !s.name.is_empty() && !names.insert(s.name.as_str()) {
                p.field("name")
                    .push(errors, format!("duplicate subset names: {}", s.name));
            }
            s.validate(&p, errors);
        }
        let ep = path.field("exportTo");
        check_export_to(&ep, errors, namespace, &self.export_to, false);
        if self.workload_selector.is_some() && !self.export_to.is_empty() {
            let here = |e: &String| e == "." || Some(e.as_str()) == namespace;
            let distinct: BTreeSet<&str> = self
                .export_to
                .iter()
                .map(|e| if here(e) { "." } else { e.as_str() })
                .collect();
            if !self.export_to.iter().any(here) {
                ep.push(
                    errors,
                    "destination rule with workload selector cannot have exportTo beyond current namespace",
                );
            } else if distinct.len() > 1 {
                ep.push(
                    errors,
                    "destination rule with workload selector cannot have multiple entries in exportTo",
                );
            }
        }
        if let Some(ws) = &self.workload_selector {
            ws.validate_as_istio(&path.field("workloadSelector"), errors);
        }
        if let Some(ns) = namespace {
            let tp = path.field("trafficPolicy");
            let mut policies = vec![(tp, self.traffic_policy.as_ref())];
            for (i, s) in self.subsets.iter().enumerate() {
                policies.push((
                    path.field("subsets").index(i).field("trafficPolicy"),
                    s.traffic_policy.as_ref(),
                ));
            }
            for (p, policy) in policies {
                let Some(policy) = policy else { continue };
                check_configmap_credential(&p, errors, ns, &policy.tls);
                for (i, level) in policy.port_level_settings.iter().enumerate() {
                    let lp = p.field("portLevelSettings").index(i);
                    check_configmap_credential(&lp, errors, ns, &level.tls);
                }
            }
        }
    }
}

impl Validate for DestinationRule {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_in_namespace(None, path, errors);
    }
}

/// A named version of a service, selected by labels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Subset name (a DNS-1123 label).
    #[serde(default)]
    pub name: String,
    /// Endpoint labels selecting the subset.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Policy overriding the rule's for this subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

impl Validate for Subset {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check(
            &path.field("name"),
            errors,
            validate_subset_name(&self.name),
        );
        check_labels(&path.field("labels"), errors, &self.labels);
        self.traffic_policy
            .validate(&path.field("trafficPolicy"), errors);
    }
}

/// Traffic policy: load balancing, connection pool, outlier detection, TLS, per-port overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load-balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection (passive health checking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel the traffic through a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Send a PROXY protocol header upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// A limit on retries in relation to the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

impl Validate for TrafficPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.load_balancer.is_none()
            && self.connection_pool.is_none()
            && self.outlier_detection.is_none()
            && self.tls.is_none()
            && self.port_level_settings.is_empty()
            && self.tunnel.is_none()
            && self.proxy_protocol.is_none()
            && self.retry_budget.is_none()
        {
            path.push(errors, "traffic policy must have at least one field");
            return;
        }
        if self.tunnel.is_some() && self.proxy_protocol.is_some() {
            path.push(errors, "tunnel and proxyProtocol must not be set together");
        }
        self.outlier_detection
            .validate(&path.field("outlierDetection"), errors);
        self.connection_pool
            .validate(&path.field("connectionPool"), errors);
        self.load_balancer
            .validate(&path.field("loadBalancer"), errors);
        self.tls.validate(&path.field("tls"), errors);
        let pp = path.field("portLevelSettings");
        if self.port_level_settings.len() > 4096 {
            pp.push(
                errors,
                format!(
                    "must have at most 4096 items, got {}",
                    self.port_level_settings.len()
                ),
            );
        }
        for (i, p) in self.port_level_settings.iter().enumerate() {
            p.validate(&pp.index(i), errors);
        }
        self.tunnel.validate(&path.field("tunnel"), errors);
        self.retry_budget
            .validate(&path.field("retryBudget"), errors);
    }
}

/// Per-port traffic policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The port this applies to (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    /// Load-balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

impl Validate for PortTrafficPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        // Istio checks only that the port is there, not its number.
        if self.port.is_none() {
            path.field("port")
                .push(errors, "portTrafficPolicy must have valid port");
        }
        if self.load_balancer.is_none()
            && self.connection_pool.is_none()
            && self.outlier_detection.is_none()
            && self.tls.is_none()
        {
            path.push(errors, "port traffic policy must have at least one field");
            return;
        }
        self.outlier_detection
            .validate(&path.field("outlierDetection"), errors);
        self.connection_pool
            .validate(&path.field("connectionPool"), errors);
        self.load_balancer
            .validate(&path.field("loadBalancer"), errors);
        self.tls.validate(&path.field("tls"), errors);
    }
}

/// Helpers shared by the tests of this module's files: validate a `spec` given as YAML.
#[cfg(test)]
mod test_support {
    use super::DestinationRule;
    use crate::validation::{FieldError, Path, Validate};

    pub(super) fn errors_of(yaml: &str) -> Vec<FieldError> {
        let dr: DestinationRule = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        dr.validate(&Path::root("spec"), &mut errs);
        errs
    }

    pub(super) fn assert_ok(yaml: &str) {
        let errs = errors_of(yaml);
        assert!(errs.is_empty(), "unexpected errors: {errs:?}");
    }

    pub(super) fn assert_err(yaml: &str, path: &str, contains: &str) {
        let errs = errors_of(yaml);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(contains)),
            "expected {path}: ..{contains}.. in {errs:#?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_err, assert_ok};
    use super::{DestinationRule, H2UpgradePolicy};

    #[test]
    fn keys_follow_proto_json_names() {
        let dr: DestinationRule = serde_yaml::from_str(
            "host: a\ntrafficPolicy:\n  outlierDetection: {consecutive5xxErrors: 5, consecutiveGatewayErrors: 2}\n  connectionPool:\n    http: {http1MaxPendingRequests: 1, http2MaxRequests: 2, h2UpgradePolicy: UPGRADE}\n",
        )
        .unwrap();
        let tp = dr.traffic_policy.unwrap();
        assert_eq!(tp.outlier_detection.unwrap().consecutive5xx_errors, Some(5));
        let h = tp.connection_pool.unwrap().http.unwrap();
        assert_eq!(h.http1_max_pending_requests, Some(1));
        assert_eq!(h.h2_upgrade_policy, Some(H2UpgradePolicy::Upgrade));
    }

    #[test]
    fn host_and_subsets() {
        assert_ok("host: reviews\nsubsets: [{name: v1, labels: {version: v1}}]");
        assert_err("subsets: []", "spec.host", "host is required");
        assert_err("host: 'a..b'", "spec.host", "invalid");
        assert_err(
            "host: a\nsubsets: [{name: v1}, {name: v1}]",
            "spec.subsets[1].name",
            "duplicate subset names",
        );
        assert_err(
            "host: a\nsubsets: [{name: ''}]",
            "spec.subsets[0].name",
            "cannot be empty",
        );
        assert_ok("host: a\nsubsets: [{name: V1}]");
        assert_err(
            "host: a\nsubsets: [{name: v.1}]",
            "spec.subsets[0].name",
            "invalid",
        );
        assert_err(
            "host: a\nsubsets: [{name: v1, labels: {'a b': x}}]",
            "spec.subsets[0].labels[a b]",
            "invalid label key",
        );
        assert_err(
            "host: a\nsubsets: [{name: v1, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 0s}}}}]",
            "spec.subsets[0].trafficPolicy.connectionPool.tcp.connectTimeout",
            "greater than 1ms",
        );
    }

    #[test]
    fn traffic_policies() {
        assert_err(
            "host: a\ntrafficPolicy: {}",
            "spec.trafficPolicy",
            "at least one field",
        );
        assert_err(
            "host: a\ntrafficPolicy: {portLevelSettings: [{tls: {mode: SIMPLE}}]}",
            "spec.trafficPolicy.portLevelSettings[0].port",
            "must have valid port",
        );
        assert_err(
            "host: a\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}}]}",
            "spec.trafficPolicy.portLevelSettings[0]",
            "at least one field",
        );
        assert_ok(
            "host: a\ntrafficPolicy: {portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]}",
        );
    }

    #[test]
    fn selector_and_export() {
        assert_err(
            "host: a\nexportTo: ['*', 'ns']",
            "spec.exportTo",
            "cannot have both public",
        );
        assert_err(
            "host: a\nworkloadSelector: {matchLabels: {app: '*'}}",
            "spec.workloadSelector.matchLabels[app]",
            "wildcard",
        );
        assert_err(
            "host: a\nworkloadSelector: {matchLabels: {app: x}}\nexportTo: ['*']",
            "spec.exportTo",
            "workload selector",
        );
    }
}
