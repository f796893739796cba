//! DestinationRule load balancing: simple algorithms, consistent hashing, locality weighting and
//! slow start.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_min_duration, check_ms_duration};
use crate::de::null_default;
use crate::duration::{AnyDuration, Duration};
use crate::validation::{FieldError, Path, Validate};

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
    /// Zone-aware load balancing (Envoy's zone-aware routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
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
        if self.locality_lb_setting.is_some() && self.zone_aware_lb_setting.is_some() {
            path.push(
                errors,
                "only one of localityLbSetting and zoneAwareLbSetting can be set",
            );
        }
        self.zone_aware_lb_setting
            .validate(&path.field("zoneAwareLbSetting"), errors);
        // Deprecated; only the CRD's CEL rule applies to it now.
        check_min_duration(
            &path.field("warmupDurationSecs"),
            errors,
            &self.warmup_duration_secs,
        );
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
        if self.duration.is_none() {
            path.field("duration").push(errors, "duration is required");
        }
        check_ms_duration(&path.field("duration"), errors, &self.duration);
        if let Some(m) = self.minimum_percent
            && !(0.0..=100.0).contains(&m)
        {
            path.field("minimumPercent").push(
                errors,
                format!("minimumPercent value should be between 0 and 100, got {m}"),
            );
        }
        if let Some(a) = self.aggression
            && (a.is_nan() || a < 1.0)
        {
            path.field("aggression").push(
                errors,
                format!("aggression should be greater than or equal to 1, got {a}"),
            );
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
        // `ttl` has no rule: `0s` makes a session cookie.
        if let Some(c) = &self.http_cookie {
            let cp = path.field("httpCookie");
            if c.name.is_empty() {
                cp.field("name")
                    .push(errors, "name required for HttpCookie");
            }
            for (i, a) in c.attributes.iter().enumerate() {
                if a.name.is_empty() {
                    cp.field("attributes")
                        .index(i)
                        .field("name")
                        .push(errors, "cookie attribute name is required");
                }
            }
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
                p.push(
                    errors,
                    format!(
                        "tableSize must be less than 5000011 for maglev, got {}",
                        m.table_size
                    ),
                );
            } else if !is_prime(m.table_size) {
                p.push(
                    errors,
                    format!(
                        "tableSize must be a prime number for maglev, got {}",
                        m.table_size
                    ),
                );
            }
        }
    }
}

/// Envoy's primality test, which Istio copies: 1 counts as prime.
fn is_prime(x: u64) -> bool {
    if x == 0 {
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
    /// Lifetime of a generated cookie (`0s`: a session cookie; no 1 ms floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<AnyDuration>")]
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

/// The topology labels `failoverPriority` may not repeat where locality failover already
/// orders by region, zone and subzone.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

/// Istio's `validateLocalities`: at most one `*`, at the end; no empty region/zone/subzone; no
/// locality that overlaps an earlier one. The first problem, as Istio reports only that.
fn check_localities<'a>(localities: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    // region -> zone -> subzones; `*` stands for "all of them", as in Istio.
    let mut regions: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for locality in localities {
        let overlap = || {
            format!(
                "locality {} overlap with previous specified ones",
                crate::de::quoted(locality)
            )
        };
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(format!(
                "locality {} wildcard '*' number can not exceed 1 and must be in the end",
                crate::de::quoted(locality)
            ));
        }
        if regions.contains_key("*") {
            return Err(overlap());
        }
        let parts: Vec<&str> = locality.splitn(3, '/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "locality {} must not contain empty region/zone/subzone info",
                crate::de::quoted(locality)
            ));
        }
        match parts.as_slice() {
            [region] => {
                if regions.contains_key(region) {
                    return Err(overlap());
                }
                regions.insert(region, BTreeMap::from([("*", BTreeSet::from(["*"]))]));
            }
            [region, zone] => {
                let zones = regions.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return Err(overlap());
                }
                zones.insert(zone, BTreeSet::from(["*"]));
            }
            [region, zone, subzone] => {
                let zones = regions.entry(region).or_default();
                if zones.contains_key("*") {
                    return Err(overlap());
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || subzones.contains(subzone) {
                    return Err(overlap());
                }
                subzones.insert(subzone);
            }
            _ => {}
        }
    }
    Ok(())
}

impl Validate for LocalityLoadBalancerSetting {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if !self.distribute.is_empty() && !self.failover.is_empty() {
            path.push(
                errors,
                "can not simultaneously specify 'distribute' and 'failover'",
            );
            return;
        }
        if !self.failover.is_empty()
            && let Some((i, label)) = self
                .failover_priority
                .iter()
                .enumerate()
                .find(|(_, l)| TOPOLOGY_LABELS.contains(&l.as_str()))
        {
            path.field("failoverPriority").index(i).push(
                errors,
                format!(
                    "can not simultaneously set 'failover' and topology label {} in 'failoverPriority'",
                    crate::de::quoted(label)
                ),
            );
            return;
        }
        let dp = path.field("distribute");
        for (i, d) in self.distribute.iter().enumerate() {
            let p = dp.index(i);
            if let Some((k, w)) = d.to.iter().find(|(_, w)| **w == 0 || **w > 100) {
                p.field("to").key(k).push(
                    errors,
                    format!("locality weight must be in range [1, 100], got {w}"),
                );
                return;
            }
            let total: u64 = d.to.values().map(|v| u64::from(*v)).sum();
            if total != 100 {
                p.field("to")
                    .push(errors, format!("total locality weight {total} != 100"));
                return;
            }
            if let Err(e) = check_localities(d.to.keys().map(String::as_str)) {
                p.field("to").push(errors, e);
            }
        }
        if let Err(e) = check_localities(self.distribute.iter().map(|d| d.from.as_str())) {
            dp.push(errors, e);
        }
        let fp = path.field("failover");
        for (i, f) in self.failover.iter().enumerate() {
            check_failover(&fp.index(i), errors, f);
        }
    }
}

/// One `failover` entry (locality and zone-aware settings alike): two different regions.
fn check_failover(p: &Path, errors: &mut Vec<FieldError>, f: &LocalityFailover) {
    if f.from == f.to {
        p.push(
            errors,
            format!("locality lb failover settings must specify different regions (from and to are both {})", crate::de::quoted(&f.from)),
        );
    }
    if f.from.contains('/') || f.to.contains('/') {
        p.push(errors, "locality lb failover only specify region");
    }
    if f.from.contains('*') || f.to.contains('*') {
        p.push(
            errors,
            "locality lb failover region should not contain '*' wildcard",
        );
    }
}

/// Zone-aware load balancing settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareLoadBalancerSetting {
    /// Enable or disable zone-aware load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Failover region pairs ordering the cross-region tiers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failover: Vec<LocalityFailover>,
    /// Ordered label keys (or `key=value`) for priority tiers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failover_priority: Vec<String>,
    /// Hosts needed in the local region before zone-aware routing applies (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cluster_size: Option<u64>,
}

impl Validate for ZoneAwareLoadBalancerSetting {
    /// The proto's rules (Istio's Go validation does not check this message): region, zone and
    /// subzone are handled automatically, so `failoverPriority` must not name their labels;
    /// `minClusterSize` is at least 1 (the CRD's minimum).
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        for (i, label) in self.failover_priority.iter().enumerate() {
            let key = label.split_once('=').map_or(label.as_str(), |(k, _)| k);
            if TOPOLOGY_LABELS.contains(&key) {
                path.field("failoverPriority").index(i).push(
                    errors,
                    format!(
                        "failoverPriority must not include the topology label {}",
                        crate::de::quoted(key)
                    ),
                );
            }
        }
        if self.min_cluster_size == Some(0) {
            path.field("minClusterSize")
                .push(errors, "minClusterSize must be at least 1");
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

    #[test]
    fn localities_as_istio_orders_them() {
        use super::check_localities;
        assert!(check_localities(["us/a/*", "us/b", "eu"]).is_ok());
        // A region covers its zones; a zone its subzones.
        assert!(check_localities(["us", "us/a"]).is_err());
        assert!(check_localities(["us/a", "us/a/1"]).is_err());
        assert!(check_localities(["us/*", "us/a"]).is_err());
        // Istio's map only looks backwards from a wildcard zone: `us/a` then `us/*` passes.
        assert!(check_localities(["us/a", "us/*"]).is_ok());
        assert!(check_localities(["*", "us"]).is_err());
        assert!(check_localities(["us/*/a"]).is_err());
        assert!(check_localities(["us//a"]).is_err());
    }

    #[test]
    fn maglev_primes_as_envoy() {
        assert!(super::is_prime(1));
        assert!(super::is_prime(2));
        assert!(!super::is_prime(0));
        assert!(!super::is_prime(65536));
        assert!(super::is_prime(65537));
    }
}
