//! The size, shape and range bounds of Istio's published schemas (`maxLength`, `minLength`,
//! `maxItems`, `minItems`, `maxProperties`, `minProperties`, `pattern`, and the `minimum` and
//! `maximum` other than a uint32's, which the schema generator gives every uint32), at the
//! same places:
//! the API server refuses what Istio's refuses, and the bounds keep the CEL rules' estimated
//! cost within the API server's budget (a CRD whose rules iterate unbounded maps or strings
//! is refused at install). The parity test (`crates/api/tests/istio_schema.rs`) compares
//! them with Istio's.

use serde_json::{Value, json};

use crate::object::Kind;

/// One bound: the node (spelled as [`super::CelRule::at`]), the keyword, its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Where, below `spec`.
    pub at: &'static str,
    /// The OpenAPI keyword.
    pub keyword: &'static str,
    /// Its value.
    pub value: BoundValue,
}

/// A bound's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoundValue {
    /// A count or a length.
    Count(u64),
    /// A regular expression.
    Pattern(&'static str),
}

impl BoundValue {
    /// As JSON.
    pub fn to_json(self) -> Value {
        match self {
            BoundValue::Count(n) => json!(n),
            BoundValue::Pattern(p) => json!(p),
        }
    }
}

const fn count(at: &'static str, keyword: &'static str, n: u64) -> Bound {
    Bound {
        at,
        keyword,
        value: BoundValue::Count(n),
    }
}

const fn pattern(at: &'static str, re: &'static str) -> Bound {
    Bound {
        at,
        keyword: "pattern",
        value: BoundValue::Pattern(re),
    }
}

const GROUP_PATTERN: &str = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const KIND_PATTERN: &str = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$";
const HEADER_NAME_PATTERN: &str = "^[-_A-Za-z0-9]+$";

/// A `selector.matchLabels` (4096 labels of at most 63 characters).
const MATCH_LABELS: [Bound; 2] = [
    count("selector.matchLabels", "maxProperties", 4096),
    count("selector.matchLabels{}", "maxLength", 63),
];

/// `targetRef` and `targetRefs` (Gateway API policy attachment).
macro_rules! target_ref {
    ($at:literal) => {
        [
            count(concat!($at, ".group"), "maxLength", 253),
            pattern(concat!($at, ".group"), GROUP_PATTERN),
            count(concat!($at, ".kind"), "maxLength", 63),
            count(concat!($at, ".kind"), "minLength", 1),
            pattern(concat!($at, ".kind"), KIND_PATTERN),
            count(concat!($at, ".name"), "maxLength", 253),
            count(concat!($at, ".name"), "minLength", 1),
        ]
    };
}

/// The workload selection of a policy: `selector`, `targetRef`, `targetRefs`.
fn policy_target() -> Vec<Bound> {
    let mut bounds = MATCH_LABELS.to_vec();
    bounds.extend(target_ref!("targetRef"));
    bounds.push(count("targetRefs", "maxItems", 16));
    bounds.extend(target_ref!("targetRefs[]"));
    bounds
}

/// A WorkloadEntry's fields (also a ServiceEntry's endpoints and a WorkloadGroup's template).
macro_rules! workload_entry {
    ($at:literal) => {
        [
            count(concat!($at, "address"), "maxLength", 256),
            count(concat!($at, "labels"), "maxProperties", 256),
            count(concat!($at, "locality"), "maxLength", 2048),
            count(concat!($at, "network"), "maxLength", 2048),
            count(concat!($at, "ports"), "maxProperties", 128),
            count(concat!($at, "serviceAccount"), "maxLength", 253),
        ]
    };
}

/// Server TLS settings' certificate lists (Gateway servers, Sidecar ingress listeners).
macro_rules! server_tls {
    ($at:literal) => {
        [
            count(concat!($at, ".credentialNames"), "maxItems", 2),
            count(concat!($at, ".credentialNames"), "minItems", 1),
            count(concat!($at, ".tlsCertificates"), "maxItems", 2),
            count(concat!($at, ".tlsCertificates"), "minItems", 1),
        ]
    };
}

/// A traffic policy's ranges, under `at` (`trafficPolicy.`, and where port-level settings
/// and subsets repeat it).
macro_rules! traffic_policy_ranges {
    ($at:literal) => {
        [
            count(concat!($at, "loadBalancer.warmup.aggression"), "minimum", 0),
            count(
                concat!($at, "loadBalancer.warmup.minimumPercent"),
                "minimum",
                0,
            ),
            count(
                concat!($at, "loadBalancer.warmup.minimumPercent"),
                "maximum",
                100,
            ),
            count(
                concat!($at, "loadBalancer.zoneAwareLbSetting.minClusterSize"),
                "minimum",
                1,
            ),
            count(
                concat!($at, "outlierDetection.outlierDetectionHttpErrorCodes[]"),
                "minimum",
                100,
            ),
            count(
                concat!($at, "outlierDetection.outlierDetectionHttpErrorCodes[]"),
                "maximum",
                599,
            ),
        ]
    };
}

/// Istio's bounds for `kind`'s spec.
pub fn istio_bounds(kind: Kind) -> Vec<Bound> {
    match kind {
        Kind::VirtualService | Kind::LocalRateLimit => vec![],
        Kind::DestinationRule => {
            let mut bounds = vec![
                count(
                    "subsets[].trafficPolicy.portLevelSettings",
                    "maxItems",
                    4096,
                ),
                count("trafficPolicy.portLevelSettings", "maxItems", 4096),
                count("workloadSelector.matchLabels", "maxProperties", 4096),
                count("workloadSelector.matchLabels{}", "maxLength", 63),
                count("trafficPolicy.retryBudget.percent", "minimum", 0),
                count("trafficPolicy.retryBudget.percent", "maximum", 100),
                count("subsets[].trafficPolicy.retryBudget.percent", "minimum", 0),
                count(
                    "subsets[].trafficPolicy.retryBudget.percent",
                    "maximum",
                    100,
                ),
            ];
            bounds.extend(traffic_policy_ranges!("trafficPolicy."));
            bounds.extend(traffic_policy_ranges!("trafficPolicy.portLevelSettings[]."));
            bounds.extend(traffic_policy_ranges!("subsets[].trafficPolicy."));
            bounds.extend(traffic_policy_ranges!(
                "subsets[].trafficPolicy.portLevelSettings[]."
            ));
            bounds
        }
        Kind::Gateway => server_tls!("servers[].tls").to_vec(),
        Kind::Sidecar => {
            let mut bounds = server_tls!("ingress[].tls").to_vec();
            bounds.extend([
                count("workloadSelector.labels", "maxProperties", 256),
                count("workloadSelector.labels{}", "maxLength", 63),
            ]);
            bounds
        }
        Kind::ServiceEntry => {
            let mut bounds = vec![
                count("addresses", "maxItems", 256),
                count("addresses[]", "maxLength", 64),
                count("endpoints", "maxItems", 4096),
            ];
            bounds.extend(workload_entry!("endpoints[]."));
            bounds.extend([
                count("hosts", "maxItems", 256),
                count("hosts", "minItems", 1),
                count("ports", "maxItems", 256),
                count("ports[].name", "maxLength", 256),
                count("ports[].protocol", "maxLength", 256),
                count("workloadSelector.labels", "maxProperties", 256),
                count("workloadSelector.labels{}", "maxLength", 63),
            ]);
            bounds
        }
        Kind::WorkloadEntry => workload_entry!("").to_vec(),
        Kind::WorkloadGroup => {
            let mut bounds = vec![
                count("metadata.annotations", "maxProperties", 256),
                count("metadata.labels", "maxProperties", 256),
                count("probe.exec.command[]", "minLength", 1),
                count("probe.failureThreshold", "minimum", 0),
                count("probe.initialDelaySeconds", "minimum", 0),
                count("probe.periodSeconds", "minimum", 0),
                count("probe.successThreshold", "minimum", 0),
                count("probe.timeoutSeconds", "minimum", 0),
                pattern("probe.httpGet.httpHeaders[].name", HEADER_NAME_PATTERN),
            ];
            bounds.extend(workload_entry!("template."));
            bounds
        }
        Kind::PeerAuthentication => {
            let mut bounds = vec![count("portLevelMtls", "minProperties", 1)];
            bounds.extend(MATCH_LABELS);
            bounds
        }
        Kind::AuthorizationPolicy => {
            let mut bounds = vec![
                count("rules", "maxItems", 512),
                count("rules[].from", "maxItems", 512),
                count("rules[].from[].source.notServiceAccounts", "maxItems", 16),
                count(
                    "rules[].from[].source.notServiceAccounts[]",
                    "maxLength",
                    320,
                ),
                count("rules[].from[].source.serviceAccounts", "maxItems", 16),
                count("rules[].from[].source.serviceAccounts[]", "maxLength", 320),
            ];
            bounds.extend(policy_target());
            bounds
        }
        Kind::RequestAuthentication => {
            let mut bounds = vec![
                count("jwtRules", "maxItems", 4096),
                count("jwtRules[].audiences[]", "minLength", 1),
                count("jwtRules[].fromCookies[]", "minLength", 1),
                count("jwtRules[].fromHeaders[].name", "minLength", 1),
                count("jwtRules[].fromParams[]", "minLength", 1),
                count("jwtRules[].issuer", "minLength", 1),
                count("jwtRules[].jwks_uri", "maxLength", 2048),
                count("jwtRules[].jwks_uri", "minLength", 1),
                count("jwtRules[].jwksUri", "maxLength", 2048),
                count("jwtRules[].jwksUri", "minLength", 1),
                count("jwtRules[].outputClaimToHeaders[].claim", "minLength", 1),
                count("jwtRules[].outputClaimToHeaders[].header", "minLength", 1),
                pattern(
                    "jwtRules[].outputClaimToHeaders[].header",
                    HEADER_NAME_PATTERN,
                ),
                count("jwtRules[].spaceDelimitedClaims", "maxItems", 64),
                count("jwtRules[].spaceDelimitedClaims[]", "minLength", 1),
            ];
            bounds.extend(policy_target());
            bounds
        }
        Kind::Telemetry => {
            let mut bounds = vec![
                count("accessLogging[].providers[].name", "minLength", 1),
                count("metrics[].overrides[].match.customMetric", "minLength", 1),
                count("metrics[].providers[].name", "minLength", 1),
                count("tracing[].customTags{}.environment.name", "minLength", 1),
                count("tracing[].customTags{}.formatter.value", "minLength", 1),
                count("tracing[].customTags{}.header.name", "minLength", 1),
                count("tracing[].customTags{}.literal.value", "minLength", 1),
                count("tracing[].providers[].name", "minLength", 1),
            ];
            bounds.extend(policy_target());
            bounds
        }
    }
}

/// The keywords [`istio_bounds`] sets, which the generator leaves to this table alone.
pub const KEYWORDS: [&str; 7] = [
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "pattern",
];
