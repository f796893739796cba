//! DestinationRule load balancing: simple algorithms, consistent hashing, locality weighting and
//! slow start.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::duration::Duration;
use crate::validation::{FieldError, Path, Validate, check, check_duration};

/// Simple load-balancing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Let Istio choose (least request).
    Unspecified,
    /// Deprecated alias of least request.
    LeastConn,
    /// Random.
    Random,
    /// Forward to the original destination address.
    Passthrough,
    /// Round robin.
    RoundRobin,
    /// Least request (power of two choices).
    LeastRequest,
}

/// Load-balancer settings: a simple algorithm or consistent hashing, plus locality settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// Simple algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// Consistent hashing (session affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality-weighted load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Slow-start window for new endpoints (deprecated in favour of `warmup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow-start configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

impl Validate for LoadBalancerSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.simple.is_some() && self.consistent_hash.is_some() {
            path.push(errors, "only one of simple or consistentHash may be set");
        }
        self.consistent_hash
            .validate(&path.field("consistentHash"), errors);
        self.locality_lb_setting
            .validate(&path.field("localityLbSetting"), errors);
        check_duration(
            &path.field("warmupDurationSecs"),
            errors,
            &self.warmup_duration_secs,
        );
        if self.warmup_duration_secs.is_some() && self.warmup.is_some() {
            path.push(
                errors,
                "only one of warmupDurationSecs or warmup may be set",
            );
        }
        self.warmup.validate(&path.field("warmup"), errors);
    }
}

/// Slow-start settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// Warm-up window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Initial traffic percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    /// Ramp aggression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

impl Validate for WarmupConfiguration {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        match &self.duration {
            None => path.field("duration").push(errors, "duration is required"),
            Some(d) => check(
                &path.field("duration"),
                errors,
                crate::validation::validate_duration(d),
            ),
        }
        if let Some(m) = self.minimum_percent
            && !(0.0..=100.0).contains(&m)
        {
            path.field("minimumPercent")
                .push(errors, format!("minimumPercent {m} is not in range 0..100"));
        }
        if self.aggression.is_some_and(|a| a.is_nan() || a < 1.0) {
            path.field("aggression")
                .push(errors, "aggression must be at least 1.0");
        }
    }
}

/// Consistent-hash load balancing: exactly one hash key, optional ring settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// Hash on this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// Hash on this cookie (generated if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// Hash on this query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// Ring-hash algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Maglev algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated ring size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

impl Validate for ConsistentHashLb {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let keys = usize::from(self.http_header_name.is_some())
            + usize::from(self.http_cookie.is_some())
            + usize::from(self.use_source_ip.is_some())
            + usize::from(self.http_query_parameter_name.is_some());
        if keys > 1 {
            path.push(
                errors,
                "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set",
            );
        }
        if let Some(c) = &self.http_cookie
            && c.name.is_empty()
        {
            path.field("httpCookie")
                .field("name")
                .push(errors, "name required for HttpCookie");
        }
        if let Some(c) = &self.http_cookie {
            check_duration(&path.field("httpCookie").field("ttl"), errors, &c.ttl);
        }
        if self.ring_hash.is_some() && self.maglev.is_some() {
            path.push(errors, "only one of ringHash or maglev may be set");
        }
        if self.minimum_ring_size.is_some_and(|s| s != 0)
            && (self.ring_hash.is_some() || self.maglev.is_some())
        {
            path.field("minimumRingSize").push(
                errors,
                "only one of minimumRingSize or maglev/ringHash can be specified",
            );
        }
        if let Some(m) = &self.maglev {
            let p = path.field("maglev").field("tableSize");
            if m.table_size == 0 {
                p.push(errors, "tableSize must be set for maglev");
            } else if m.table_size >= 5_000_011 {
                p.push(errors, "tableSize must be less than 5000011 for maglev");
            } else if !is_prime(m.table_size) {
                p.push(errors, "tableSize must be a prime number for maglev");
            }
        }
    }
}

fn is_prime(x: u64) -> bool {
    if x < 2 {
        return false;
    }
    if x < 4 {
        return true;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let mut f = 3;
    while f * f <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

/// Cookie used as the hash key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name.
    #[serde(default)]
    pub name: String,
    /// Cookie path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lifetime of a generated cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra cookie attributes.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub attributes: Vec<CookieAttribute>,
}

/// An extra cookie attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieAttribute {
    /// Attribute name.
    #[serde(default)]
    pub name: String,
    /// Attribute value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Ring-hash settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum ring size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// Maglev settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size (a prime).
    #[serde(default)]
    pub table_size: u64,
}

/// Locality-weighted load balancing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLoadBalancerSetting {
    /// Explicit traffic distribution per origin locality.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub distribute: Vec<LocalityDistribute>,
    /// Failover region pairs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failover: Vec<LocalityFailover>,
    /// Ordered label keys for failover priority.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failover_priority: Vec<String>,
    /// Enable or disable locality load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Validate for LocalityLoadBalancerSetting {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if !self.distribute.is_empty() && !self.failover.is_empty() {
            path.push(
                errors,
                "can not simultaneously specify 'distribute' and 'failover'",
            );
        }
        if !self.distribute.is_empty() && !self.failover_priority.is_empty() {
            path.push(
                errors,
                "can not simultaneously specify 'distribute' and 'failoverPriority'",
            );
        }
        let dp = path.field("distribute");
        let mut froms = BTreeSet::new();
        for (i, d) in self.distribute.iter().enumerate() {
            let p = dp.index(i);
            if d.from.is_empty() {
                p.field("from")
                    .push(errors, "locality from must not be empty");
            } else if !froms.insert(d.from.as_str()) {
                p.field("from").push(
                    errors,
                    format!("locality distribute setting for {} is duplicated", d.from),
                );
            }
            let total: u64 = d.to.values().map(|v| u64::from(*v)).sum();
            if total != 100 {
                p.field("to")
                    .push(errors, format!("total locality weight {total} != 100"));
            }
        }
        let fp = path.field("failover");
        for (i, f) in self.failover.iter().enumerate() {
            let p = fp.index(i);
            if f.from.is_empty() || f.to.is_empty() {
                p.push(errors, "locality failover from and to must both be set");
            } else if f.from == f.to {
                p.push(
                    errors,
                    "locality lb failover settings must specify different regions",
                );
            }
            if f.from.contains('/') || f.to.contains('/') {
                p.push(errors, "locality failover only specify region");
            }
        }
        let pp = path.field("failoverPriority");
        let mut seen = BTreeSet::new();
        for (i, k) in self.failover_priority.iter().enumerate() {
            if k.is_empty() {
                pp.index(i)
                    .push(errors, "failoverPriority entries must not be empty");
            } else if !seen.insert(k.as_str()) {
                pp.index(i)
                    .push(errors, format!("duplicate failoverPriority entry {k}"));
            }
        }
    }
}

/// Distribution from one locality to others.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Origin locality (`region/zone/subzone`, `*` wildcards allowed).
    #[serde(default)]
    pub from: String,
    /// Destination localities and their weights (summing to 100).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub to: BTreeMap<String, u32>,
}

/// Failover from one region to another.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// Origin region.
    #[serde(default)]
    pub from: String,
    /// Failover region.
    #[serde(default)]
    pub to: String,
}

#[cfg(test)]
mod tests {
    use super::super::DestinationRule;
    use super::super::test_support::{assert_err, assert_ok};

    #[test]
    fn load_balancer() {
        assert_err(
            "host: a\ntrafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}",
            "spec.trafficPolicy.loadBalancer",
            "only one of simple or consistentHash",
        );
        assert_err(
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 1s}}}}",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "name required",
        );
        assert_err(
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 100}}}}",
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "prime",
        );
        assert_ok(
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}}",
        );
        assert_err(
            "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: 'us/*', to: {'us/a/*': 50}}]}}}",
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "!= 100",
        );
        assert!(
            serde_yaml::from_str::<DestinationRule>(
                "host: a\ntrafficPolicy: {loadBalancer: {simple: FASTEST}}"
            )
            .is_err()
        );
    }
}
