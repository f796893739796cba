//! Endpoints (EDS): an Envoy `ClusterLoadAssignment` → [`Assignment`], the endpoints that may
//! take traffic, grouped by priority level and locality.
//!
//! ```text
//!  ClusterLoadAssignment { endpoints: [LocalityLbEndpoints { locality, priority,
//!                                        load_balancing_weight, lb_endpoints }],
//!                          policy.overprovisioning_factor }
//!    ─► Assignment { endpoints: [(addr, weight)]   P0's groups first, then P1's, ...
//!                    groups: [LocalityGroup { priority, locality, weight, range of endpoints }],
//!                    socket_labels (transport-socket match metadata), overprovisioning_factor }
//!  unhealthy, draining and timed-out endpoints are left out: they never take traffic, and a
//!  level's health counts only the endpoints that may (as the controller sends only those)
//! ```
//!
//! The run-time side (which level, which locality, per request) is `upstream/priority.rs`.

use std::collections::BTreeMap;
use std::mem::take;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;

use super::{ConfigError, Reason, invalid, reject_leftover, reject_set, socket_address};
use weft_xds::contract::TRANSPORT_SOCKET_MATCH;

/// The highest priority level accepted (Istio's failover uses at most a handful).
pub const MAX_PRIORITY: u32 = 127;

/// Envoy's default `policy.overprovisioning_factor`: 140, i.e. × 1.4.
pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = weft_lb::priority::DEFAULT_OVERPROVISIONING_FACTOR;

/// Endpoints of one cluster that may receive traffic, with their weights, priority levels and
/// localities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub cluster_name: String,
    /// Every endpoint, level by level (P0's first), each level's localities in the order EDS
    /// gave them.
    pub endpoints: Vec<(SocketAddr, u32)>,
    /// The `envoy.transport_socket_match` metadata of endpoints that have any (string values).
    pub socket_labels: BTreeMap<SocketAddr, Arc<BTreeMap<String, String>>>,
    /// The localities, sorted by priority; their ranges cover `endpoints` in order.
    pub groups: Vec<LocalityGroup>,
    /// `policy.overprovisioning_factor`, in percent.
    pub overprovisioning_factor: u32,
}

impl Default for Assignment {
    fn default() -> Self {
        Self {
            cluster_name: String::new(),
            endpoints: Vec::new(),
            socket_labels: BTreeMap::new(),
            groups: Vec::new(),
            overprovisioning_factor: DEFAULT_OVERPROVISIONING_FACTOR,
        }
    }
}

/// The endpoints of one locality at one priority level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityGroup {
    pub locality: Locality,
    pub priority: u32,
    /// `load_balancing_weight`: used with locality-weighted balancing, where a locality
    /// without one takes no traffic (as Envoy).
    pub weight: Option<u32>,
    /// Its endpoints in [`Assignment::endpoints`].
    pub endpoints: Range<usize>,
}

/// Where endpoints run: region, zone, sub-zone (any may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

impl std::fmt::Display for Locality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.sub_zone)
    }
}

impl Assignment {
    /// Whether the endpoints span more than one priority level: only then does the balancer
    /// need per-level state.
    pub fn has_priorities(&self) -> bool {
        self.groups.iter().any(|group| group.priority > 0)
    }
}

impl TryFrom<eds::ClusterLoadAssignment> for Assignment {
    type Error = ConfigError;

    fn try_from(mut cla: eds::ClusterLoadAssignment) -> Result<Self, ConfigError> {
        let path = format!("cluster load assignment {:?}", cla.cluster_name);
        let err = |reason| ConfigError::new(&path, reason);
        if !cla.named_endpoints.is_empty() {
            return Err(err(Reason::Unsupported("named_endpoints".into())));
        }
        let overprovisioning_factor = policy(cla.policy.take()).map_err(err)?;
        let mut localities = take(&mut cla.endpoints)
            .into_iter()
            .enumerate()
            .map(|(i, locality)| {
                group(locality).map_err(|r| err(r.within(&format!("endpoints[{i}]"))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Stable: the localities of one level keep their EDS order.
        localities.sort_by_key(|(group, _)| group.priority);
        let mut assignment = Assignment {
            cluster_name: cla.cluster_name,
            overprovisioning_factor,
            ..Assignment::default()
        };
        for (mut group, endpoints) in localities {
            let start = assignment.endpoints.len();
            for (addr, weight, labels) in endpoints {
                if let Some(labels) = labels {
                    assignment.socket_labels.insert(addr, Arc::new(labels));
                }
                assignment.endpoints.push((addr, weight));
            }
            group.endpoints = start..assignment.endpoints.len();
            assignment.groups.push(group);
        }
        Ok(assignment)
    }
}

/// `policy`: the overprovisioning factor; drop overloads and the rest are not supported.
fn policy(policy: Option<eds::cluster_load_assignment::Policy>) -> Result<u32, Reason> {
    let Some(mut policy) = policy else {
        return Ok(DEFAULT_OVERPROVISIONING_FACTOR);
    };
    let factor = policy
        .overprovisioning_factor
        .take()
        .map_or(DEFAULT_OVERPROVISIONING_FACTOR, |f| f.value);
    if factor == 0 {
        return Err(invalid(
            "policy.overprovisioning_factor",
            "must be at least 1 (percent)",
        ));
    }
    (|| {
        reject_set!(
            policy,
            drop_overloads,
            endpoint_stale_after,
            weighted_priority_health
        );
        reject_leftover(&policy, "policy")
    })()
    .map_err(|r| r.within("policy"))?;
    Ok(factor)
}

/// An endpoint that may take traffic: address, weight, transport-socket match labels.
type GroupEndpoint = (SocketAddr, u32, Option<BTreeMap<String, String>>);

/// One `LocalityLbEndpoints`: its group (endpoint range still empty) and endpoints.
fn group(
    mut locality: eds::LocalityLbEndpoints,
) -> Result<(LocalityGroup, Vec<GroupEndpoint>), Reason> {
    if locality.priority > MAX_PRIORITY {
        return Err(invalid(
            "priority",
            format!(
                "{} is over the highest level supported, {MAX_PRIORITY}",
                locality.priority
            ),
        ));
    }
    let weight = locality.load_balancing_weight.take().map(|w| w.value);
    if weight == Some(0) {
        return Err(invalid("load_balancing_weight", "must be at least 1"));
    }
    let place = locality.locality.take().unwrap_or_default();
    let mut endpoints = Vec::with_capacity(locality.lb_endpoints.len());
    for (j, ep) in take(&mut locality.lb_endpoints).into_iter().enumerate() {
        let field = format!("lb_endpoints[{j}]");
        let labels = socket_match_labels(ep.metadata.as_ref())
            .map_err(|r| invalid(&field, r.to_string()))?;
        if let Some((addr, weight)) = endpoint(ep).map_err(|r| invalid(&field, r.to_string()))? {
            endpoints.push((addr, weight, labels));
        }
    }
    let priority = take(&mut locality.priority);
    // Observability only.
    locality.metadata = None;
    reject_leftover(&locality, "locality endpoints")?;
    Ok((
        LocalityGroup {
            locality: Locality {
                region: place.region,
                zone: place.zone,
                sub_zone: place.sub_zone,
            },
            priority,
            weight,
            endpoints: 0..0,
        },
        endpoints,
    ))
}

/// The `envoy.transport_socket_match` metadata of an endpoint (string values only).
fn socket_match_labels(
    metadata: Option<&core::Metadata>,
) -> Result<Option<BTreeMap<String, String>>, Reason> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let Some(fields) = metadata.and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH)) else {
        return Ok(None);
    };
    let mut labels = BTreeMap::new();
    for (key, value) in &fields.fields {
        match &value.kind {
            Some(Kind::StringValue(text)) => {
                labels.insert(key.clone(), text.clone());
            }
            _ => {
                return Err(invalid(
                    format!("metadata.filter_metadata[{TRANSPORT_SOCKET_MATCH:?}].{key}"),
                    "must be a string",
                ));
            }
        }
    }
    Ok(Some(labels))
}

/// `Ok(None)` for endpoints that must not receive traffic (unhealthy, draining, timeout).
fn endpoint(ep: eds::LbEndpoint) -> Result<Option<(SocketAddr, u32)>, Reason> {
    use core::HealthStatus as H;
    let weight = ep.load_balancing_weight.map_or(1, |w| w.value);
    if weight == 0 {
        return Err(invalid("load_balancing_weight", "must be at least 1"));
    }
    let e = match ep.host_identifier {
        Some(eds::lb_endpoint::HostIdentifier::Endpoint(e)) => e,
        Some(eds::lb_endpoint::HostIdentifier::EndpointName(n)) => {
            return Err(Reason::Unsupported(format!("endpoint_name {n:?}")));
        }
        None => return Err(Reason::Missing("endpoint")),
    };
    if !e.additional_addresses.is_empty() {
        return Err(Reason::Unsupported("endpoint.additional_addresses".into()));
    }
    let addr = socket_address("endpoint.address", e.address.as_ref())?;
    match H::try_from(ep.health_status) {
        Ok(H::Unknown | H::Healthy | H::Degraded) => Ok(Some((addr, weight))),
        Ok(H::Unhealthy | H::Draining | H::Timeout) => Ok(None),
        Err(_) => Err(invalid(
            "health_status",
            format!("unknown value {}", ep.health_status),
        )),
    }
}
