//! `DestinationRule` (networking.istio.io/v1): subsets and traffic policies (load balancing, pools, outlier detection, TLS).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{PolicyWorkloadSelector, PortSelector};
use crate::de::{is_false, null_default};
use crate::duration::Duration;
use crate::validation::{
    FieldError, Path, Validate, check, check_duration, check_export_to, check_labels,
    validate_fqdn, validate_percent_int, validate_port, validate_subset_name,
    validate_wildcard_domain,
};

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
            let only_here = self.export_to.len() == 1
                && (self.export_to[0] == "." || Some(self.export_to[0].as_str()) == namespace);
            if !only_here {
                ep.push(
                    errors,
                    "destination rule with workload selector cannot have exportTo beyond current namespace",
                );
            }
        }
        self.workload_selector
            .validate(&path.field("workloadSelector"), errors);
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
        for (i, p) in self.port_level_settings.iter().enumerate() {
            p.validate(&pp.index(i), errors);
        }
        self.tunnel.validate(&path.field("tunnel"), errors);
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
        match &self.port {
            None => path
                .field("port")
                .push(errors, "portTrafficPolicy must have valid port"),
            Some(p) => p.validate(&path.field("port"), errors),
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

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP-level settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP-level settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

impl Validate for ConnectionPoolSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.tcp.is_none() && self.http.is_none() {
            path.push(errors, "connection pool must have at least one field");
        }
        self.tcp.validate(&path.field("tcp"), errors);
        self.http.validate(&path.field("http"), errors);
    }
}

/// TCP connection pool settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Maximum connections to a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    /// TCP connect timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// TCP keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Maximum connection lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout for TCP connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

impl Validate for TcpSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.max_connections.is_some_and(|m| m < 0) {
            path.field("maxConnections")
                .push(errors, "max connections must be non-negative");
        }
        check_duration(&path.field("connectTimeout"), errors, &self.connect_timeout);
        check_duration(
            &path.field("maxConnectionDuration"),
            errors,
            &self.max_connection_duration,
        );
        check_duration(&path.field("idleTimeout"), errors, &self.idle_timeout);
        if let Some(k) = &self.tcp_keepalive {
            let kp = path.field("tcpKeepalive");
            check_duration(&kp.field("time"), errors, &k.time);
            check_duration(&kp.field("interval"), errors, &k.interval);
        }
    }
}

/// TCP keep-alive settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// Idle time before probes start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Interval between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// HTTP/2 upgrade policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// Use the mesh default.
    Default,
    /// Do not upgrade.
    DoNotUpgrade,
    /// Upgrade HTTP/1.1 to HTTP/2.
    Upgrade,
}

/// HTTP connection pool settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Maximum queued requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    /// Requests per connection before it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
    /// Maximum outstanding retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// Idle timeout of upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 upgrade policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Use the client's protocol upstream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_client_protocol: bool,
    /// Maximum concurrent HTTP/2 streams per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i32>,
}

impl Validate for HttpSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        for (field, v, what) in [
            (
                "http1MaxPendingRequests",
                self.http1_max_pending_requests,
                "http1 max pending requests",
            ),
            (
                "http2MaxRequests",
                self.http2_max_requests,
                "http2 max requests",
            ),
            (
                "maxRequestsPerConnection",
                self.max_requests_per_connection,
                "max requests per connection",
            ),
            ("maxRetries", self.max_retries, "max retries"),
            (
                "maxConcurrentStreams",
                self.max_concurrent_streams,
                "max concurrent streams",
            ),
        ] {
            if v.is_some_and(|v| v < 0) {
                path.field(field)
                    .push(errors, format!("{what} must be non-negative"));
            }
        }
        check_duration(&path.field("idleTimeout"), errors, &self.idle_timeout);
        if self.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) && self.use_client_protocol {
            path.field("useClientProtocol").push(
                errors,
                "use client protocol must not be true when h2UpgradePolicy is UPGRADE",
            );
        }
    }
}

/// Outlier detection (ejecting failing endpoints).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated: consecutive 502/503/504 before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    /// Separate local-origin failures from upstream ones.
    #[serde(default, skip_serializing_if = "is_false")]
    pub split_external_local_origin_errors: bool,
    /// Consecutive local-origin failures before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive gateway errors (502/503/504) before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx errors before ejection (YAML `consecutive5xxErrors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive5xx_errors: Option<u32>,
    /// Analysis sweep interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum share of endpoints ejected (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    /// Outlier detection turns off below this share of healthy endpoints (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
}

impl Validate for OutlierDetection {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check_duration(
            &path.field("baseEjectionTime"),
            errors,
            &self.base_ejection_time,
        );
        check_duration(&path.field("interval"), errors, &self.interval);
        if !self.split_external_local_origin_errors
            && self
                .consecutive_local_origin_failures
                .is_some_and(|v| v > 0)
        {
            path.field("consecutiveLocalOriginFailures").push(
                errors,
                "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
            );
        }
        if let Some(v) = self.consecutive_errors
            && v < 0
        {
            path.field("consecutiveErrors")
                .push(errors, "consecutiveErrors must be non-negative");
        }
        if let Some(v) = self.max_ejection_percent {
            check(
                &path.field("maxEjectionPercent"),
                errors,
                validate_percent_int(i64::from(v)),
            );
        }
        if let Some(v) = self.min_health_percent {
            check(
                &path.field("minHealthPercent"),
                errors,
                validate_percent_int(i64::from(v)),
            );
        }
    }
}

/// Upstream TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Plain text.
    #[default]
    Disable,
    /// TLS, verifying the server.
    Simple,
    /// Mutual TLS with user-provided certificates.
    Mutual,
    /// Mutual TLS with Istio's certificates.
    IstioMutual,
}

/// Upstream (client-side) TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// TLS mode.
    #[serde(default)]
    pub mode: TlsMode,
    /// Client certificate file (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client private key file (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Secret holding the certificates (instead of files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Accepted server SANs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
    /// SNI to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Skip server verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

impl Validate for ClientTlsSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        if self.insecure_skip_verify == Some(true) {
            match self.mode {
                TlsMode::Simple
                    if set(&self.ca_certificates)
                        || set(&self.credential_name)
                        || !self.subject_alt_names.is_empty() =>
                {
                    path.push(errors, "cannot specify caCertificates or credentialName or subjectAltNames when insecureSkipVerify is set true");
                }
                TlsMode::Mutual
                    if set(&self.ca_certificates) || !self.subject_alt_names.is_empty() =>
                {
                    path.push(errors, "cannot specify caCertificates or subjectAltNames when insecureSkipVerify is set true");
                }
                _ => {}
            }
        }
        let with_credential =
            matches!(self.mode, TlsMode::Simple | TlsMode::Mutual) && set(&self.credential_name);
        if with_credential {
            if set(&self.client_certificate)
                || set(&self.ca_certificates)
                || set(&self.private_key)
                || set(&self.ca_crl)
            {
                path.push(
                    errors,
                    "cannot specify client certificates or CA certificate or CA CRL if credentialName is set",
                );
            }
            return;
        }
        if self.mode == TlsMode::Mutual {
            if !set(&self.client_certificate) {
                path.field("clientCertificate")
                    .push(errors, "client certificate required for mutual tls");
            }
            if !set(&self.private_key) {
                path.field("privateKey")
                    .push(errors, "private key required for mutual tls");
            }
        }
    }
}

/// Tunnel settings (HTTP CONNECT/POST).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Tunnel proxy host (FQDN or IP).
    #[serde(default)]
    pub target_host: String,
    /// Tunnel proxy port.
    #[serde(default)]
    pub target_port: u32,
}

impl Validate for TunnelSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(p) = self.protocol.as_deref()
            && !p.is_empty()
            && p != "CONNECT"
            && p != "POST"
        {
            path.field("protocol")
                .push(errors, "tunnel protocol must be \"CONNECT\" or \"POST\"");
        }
        if validate_fqdn(&self.target_host).is_err() && !crate::validation::is_ip(&self.target_host)
        {
            path.field("targetHost").push(
                errors,
                "tunnel target host must be valid FQDN or IP address",
            );
        }
        check(
            &path.field("targetPort"),
            errors,
            validate_port(self.target_port),
        );
    }
}

/// PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProxyProtocolVersion {
    /// Version 1 (text).
    V1,
    /// Version 2 (binary).
    V2,
}

/// PROXY protocol settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// Version (default V1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ProxyProtocolVersion>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        let dr: DestinationRule = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        dr.validate(&Path::root("spec"), &mut errs);
        errs
    }

    fn assert_ok(yaml: &str) {
        let errs = errors_of(yaml);
        assert!(errs.is_empty(), "unexpected errors: {errs:?}");
    }

    fn assert_err(yaml: &str, path: &str, contains: &str) {
        let errs = errors_of(yaml);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(contains)),
            "expected {path}: ..{contains}.. in {errs:#?}"
        );
    }

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
            "at least 1ms",
        );
    }

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
    fn pools_outliers_tls() {
        assert_err(
            "host: a\ntrafficPolicy: {}",
            "spec.trafficPolicy",
            "at least one field",
        );
        assert_err(
            "host: a\ntrafficPolicy: {connectionPool: {http: {maxRetries: -1}}}",
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "non-negative",
        );
        assert_err(
            "host: a\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "0..100",
        );
        assert_err(
            "host: a\ntrafficPolicy: {outlierDetection: {minHealthPercent: -1}}",
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "0..100",
        );
        assert_err(
            "host: a\ntrafficPolicy: {outlierDetection: {interval: 0.1ms}}",
            "spec.trafficPolicy.outlierDetection.interval",
            "1ms",
        );
        assert_err(
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL}}",
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required",
        );
        assert_err(
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL}}",
            "spec.trafficPolicy.tls.privateKey",
            "private key required",
        );
        assert_ok("host: a\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: secret}}");
        assert_ok(
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}",
        );
        assert_err(
            "host: a\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: s, caCertificates: /ca}}",
            "spec.trafficPolicy.tls",
            "credentialName is set",
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
        assert_err(
            "host: a\ntrafficPolicy: {tunnel: {targetHost: 'x..y', targetPort: 0}}",
            "spec.trafficPolicy.tunnel.targetPort",
            "1..65535",
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
