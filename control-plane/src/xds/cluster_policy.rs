//! The traffic policy a cluster gets from its DestinationRule, merged as Istio merges it, and
//! its Envoy fields: load balancer, connection pool (circuit breakers, connection options,
//! keepalive, upstream protocol), retry budget, outlier detection.
//!
//! ```text
//!  rule.trafficPolicy ─► its portLevelSettings[port] ─► subset.trafficPolicy ─► its portLevelSettings[port]
//!    each level replaces what it sets, whole: loadBalancer, connectionPool, outlierDetection (and
//!    retryBudget, which port levels do not have)
//!  connectionPool ─► circuit_breakers { max_connections, max_pending_requests, max_requests,
//!                                       max_retries (Istio's u32::MAX when unset), retry_budget }
//!                 ─► HttpProtocolOptions.common_http_protocol_options { idle_timeout,
//!                    max_requests_per_connection, max_connection_duration }, h2 max_concurrent_streams,
//!                    h2 connection_keepalive { interval, timeout } (http2KeepAlive),
//!                    h2UpgradePolicy UPGRADE ─► HTTP/2 upstream
//!                 ─► upstream_connection_options.tcp_keepalive, connect_timeout
//! ```

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, OutlierDetection as OutlierDetectionProto, UpstreamConnectionOptions,
    circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http2ProtocolOptions, HttpProtocolOptions, KeepaliveSettings, TcpKeepalive,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{HashPolicy, hash_policy};
use envoy_types::pb::google::protobuf::{Any, UInt32Value, UInt64Value};
use weft_api::networking::{
    ConnectionPoolSettings, ConsistentHashLb, H2UpgradePolicy, LoadBalancerSettings,
    LocalityLoadBalancerSetting, OutlierDetection, RetryBudget, SimpleLb, Subset, TrafficPolicy,
};

use super::clusters::{DEFAULT_CONNECT_TIMEOUT, protocol_options_with};
use super::duration;
use crate::model::DestinationRuleEntry;

/// The share of requests retries may add when a DestinationRule sets no `retryBudget`.
pub const DEFAULT_RETRY_BUDGET_PERCENT: f64 = 20.0;
/// The retries every budget window allows when a DestinationRule sets none.
pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

/// The settings a cluster gets from its DestinationRule (and subset).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPolicy {
    pub lb_policy: cluster::LbPolicy,
    /// `loadBalancer.consistentHash` of the most specific level that sets a load balancer.
    pub consistent_hash: Option<ConsistentHashLb>,
    /// `loadBalancer.warmup` (or `warmupDurationSecs`): (window, minimum percent, aggression).
    pub warmup: Option<(Duration, Option<f64>, Option<f64>)>,
    /// `loadBalancer.simple: PASSTHROUGH`: connections go to the address the caller asked for.
    pub passthrough: bool,
    /// `connectionPool` of the most specific level that sets it.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// `retryBudget` (Weft's default: 20 % of the requests, at least 3 per window).
    pub retry_budget: RetryBudget,
    /// `outlierDetection` of the most specific level that sets it.
    pub outlier: Option<OutlierDetection>,
    /// `loadBalancer.localityLbSetting` of the most specific level that sets a load balancer.
    pub locality_lb: Option<LocalityLoadBalancerSetting>,
}

impl Default for ClusterPolicy {
    fn default() -> Self {
        Self {
            lb_policy: cluster::LbPolicy::LeastRequest,
            consistent_hash: None,
            warmup: None,
            passthrough: false,
            connection_pool: None,
            retry_budget: RetryBudget::default(),
            outlier: None,
            locality_lb: None,
        }
    }
}

/// The effective policy for one port of a service: the rule's traffic policy, its port-level
/// settings, then the subset's traffic policy and its port-level settings; each level replaces
/// the settings it has (Istio's `MergeTrafficPolicy`).
pub fn cluster_policy(
    rule: Option<&DestinationRuleEntry>,
    subset: Option<&Subset>,
    port: u32,
) -> ClusterPolicy {
    let mut policy = ClusterPolicy::default();
    let levels = [
        rule.and_then(|rule| rule.spec.traffic_policy.as_ref()),
        subset.and_then(|subset| subset.traffic_policy.as_ref()),
    ];
    for traffic_policy in levels.into_iter().flatten() {
        apply(&mut policy, traffic_policy, port);
    }
    policy
}

fn apply(policy: &mut ClusterPolicy, traffic_policy: &TrafficPolicy, port: u32) {
    apply_level(
        policy,
        traffic_policy.load_balancer.as_ref(),
        traffic_policy.connection_pool.as_ref(),
        traffic_policy.outlier_detection.as_ref(),
    );
    if let Some(budget) = &traffic_policy.retry_budget {
        policy.retry_budget = budget.clone();
    }
    for level in &traffic_policy.port_level_settings {
        if level
            .port
            .as_ref()
            .is_some_and(|selector| selector.number == port)
        {
            apply_level(
                policy,
                level.load_balancer.as_ref(),
                level.connection_pool.as_ref(),
                level.outlier_detection.as_ref(),
            );
        }
    }
}

fn apply_level(
    policy: &mut ClusterPolicy,
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
) {
    if let Some(lb) = lb {
        policy.consistent_hash = lb.consistent_hash.clone();
        policy.locality_lb = lb.locality_lb_setting.clone();
        policy.warmup = match (&lb.warmup, lb.warmup_duration_secs) {
            (Some(w), _) => w.duration.map(|d| (d.0, w.minimum_percent, w.aggression)),
            (None, Some(d)) => Some((d.0, None, None)),
            (None, None) => None,
        };
        policy.lb_policy = match (&lb.consistent_hash, lb.simple) {
            (Some(hash), _) if hash.maglev.is_some() => cluster::LbPolicy::Maglev,
            (Some(_), _) => cluster::LbPolicy::RingHash,
            (None, Some(simple)) => lb_policy(simple),
            (None, None) => ClusterPolicy::default().lb_policy,
        };
        policy.passthrough =
            lb.consistent_hash.is_none() && lb.simple == Some(SimpleLb::Passthrough);
    }
    if let Some(pool) = pool {
        policy.connection_pool = Some(pool.clone());
    }
    if let Some(outlier) = outlier {
        policy.outlier = Some(outlier.clone());
    }
}

/// Istio's mapping of `loadBalancer.simple`: LEAST_CONN is LEAST_REQUEST; unspecified
/// and PASSTHROUGH (not supported, warned about) keep the default LEAST_REQUEST.
pub fn lb_policy(simple: SimpleLb) -> cluster::LbPolicy {
    match simple {
        SimpleLb::RoundRobin => cluster::LbPolicy::RoundRobin,
        SimpleLb::Random => cluster::LbPolicy::Random,
        SimpleLb::LeastConn
        | SimpleLb::LeastRequest
        | SimpleLb::Unspecified
        | SimpleLb::Passthrough => cluster::LbPolicy::LeastRequest,
    }
}

/// A positive `i32` limit of the API as Envoy's `u32`; Istio's 0 means unset.
fn limit(value: Option<i32>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0)
}

impl ClusterPolicy {
    /// The cluster's `lb_config` for a consistent-hash policy, as Istio writes it: Maglev's
    /// `table_size`, or the ring's `minimum_ring_size` (`ringHash` or the deprecated
    /// `minimumRingSize`; Envoy's 1024 when 0 or unset).
    pub fn lb_config(&self) -> Option<cluster::LbConfig> {
        let Some(hash) = self.consistent_hash.as_ref() else {
            return self.slow_start();
        };
        if let Some(maglev) = &hash.maglev {
            return Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: (maglev.table_size > 0).then_some(UInt64Value {
                    value: maglev.table_size,
                }),
            }));
        }
        let minimum = hash
            .ring_hash
            .as_ref()
            .and_then(|r| r.minimum_ring_size)
            .or(hash.minimum_ring_size)
            .filter(|m| *m > 0);
        Some(cluster::LbConfig::RingHashLbConfig(
            cluster::RingHashLbConfig {
                minimum_ring_size: minimum.map(|value| UInt64Value { value }),
                ..Default::default()
            },
        ))
    }

    /// `warmup` as the round-robin or least-request `slow_start_config` (Istio applies it to
    /// those two only).
    fn slow_start(&self) -> Option<cluster::LbConfig> {
        let (window, minimum, aggression) = self.warmup?;
        let config = cluster::SlowStartConfig {
            slow_start_window: Some(duration(window)),
            aggression: aggression.map(|a| {
                envoy_types::pb::envoy::config::core::v3::RuntimeDouble {
                    default_value: a,
                    runtime_key: String::new(),
                }
            }),
            min_weight_percent: minimum
                .map(|m| envoy_types::pb::envoy::r#type::v3::Percent { value: m }),
        };
        match self.lb_policy {
            cluster::LbPolicy::RoundRobin => Some(cluster::LbConfig::RoundRobinLbConfig(
                cluster::RoundRobinLbConfig {
                    slow_start_config: Some(config),
                },
            )),
            cluster::LbPolicy::LeastRequest => Some(cluster::LbConfig::LeastRequestLbConfig(
                cluster::LeastRequestLbConfig {
                    slow_start_config: Some(config),
                    ..Default::default()
                },
            )),
            _ => None,
        }
    }

    /// The route `hash_policy` that feeds this cluster's consistent hash (Istio's
    /// `consistentHashToHashPolicy`); empty without one.
    pub fn hash_policy(&self) -> Vec<HashPolicy> {
        let Some(hash) = &self.consistent_hash else {
            return Vec::new();
        };
        let specifier = if let Some(header) = &hash.http_header_name {
            hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: header.clone(),
                regex_rewrite: None,
            })
        } else if let Some(cookie) = &hash.http_cookie {
            hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                name: cookie.name.clone(),
                ttl: cookie.ttl.map(|t| duration(t.0)),
                path: cookie.path.clone().unwrap_or_default(),
                // One a header cannot carry is reported (weft_api::unsupported) and left out:
                // Envoy would refuse the route.
                attributes: cookie
                    .attributes
                    .iter()
                    .filter(|a| weft_api::unsupported::sendable_cookie_attribute(a))
                    .map(|a| hash_policy::CookieAttribute {
                        name: a.name.clone(),
                        value: a.value.clone().unwrap_or_default(),
                    })
                    .collect(),
            })
        } else if hash.use_source_ip == Some(true) {
            hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
                source_ip: true,
            })
        } else if let Some(name) = &hash.http_query_parameter_name {
            hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
                name: name.clone(),
            })
        } else {
            return Vec::new();
        };
        vec![HashPolicy {
            policy_specifier: Some(specifier),
            terminal: false,
        }]
    }

    /// `connectionPool.tcp.idleTimeout`: the TCP proxy's `idle_timeout` towards this cluster
    /// (unset: Envoy's 1 h).
    pub fn tcp_idle_timeout(&self) -> Option<Duration> {
        self.connection_pool
            .as_ref()
            .and_then(|pool| pool.tcp.as_ref())
            .and_then(|tcp| tcp.idle_timeout)
            .map(|d| d.0)
    }

    /// `connectionPool.tcp.connectTimeout`, else Istio's 10 s.
    pub fn connect_timeout(&self) -> Duration {
        self.connection_pool
            .as_ref()
            .and_then(|pool| pool.tcp.as_ref())
            .and_then(|tcp| tcp.connect_timeout)
            .map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.0)
    }

    /// The cluster's `circuit_breakers`, as Istio's `applyConnectionPool` writes them: every
    /// limit `u32::MAX` unless the connection pool sets it, and the retry budget.
    pub fn circuit_breakers(&self) -> CircuitBreakers {
        let pool = self.connection_pool.as_ref();
        let http = pool.and_then(|p| p.http.as_ref());
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let max = |v: Option<u32>| {
            Some(UInt32Value {
                value: v.unwrap_or(u32::MAX),
            })
        };
        let budget = &self.retry_budget;
        CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: max(tcp.and_then(|t| limit(t.max_connections))),
                max_pending_requests: max(http.and_then(|h| limit(h.http1_max_pending_requests))),
                max_requests: max(http.and_then(|h| limit(h.http2_max_requests))),
                max_retries: max(http.and_then(|h| limit(h.max_retries))),
                retry_budget: Some(circuit_breakers::thresholds::RetryBudget {
                    budget_percent: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                        value: budget.percent.unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT),
                    }),
                    min_retry_concurrency: Some(UInt32Value {
                        value: budget
                            .min_retry_concurrency
                            .unwrap_or(DEFAULT_MIN_RETRY_CONCURRENCY),
                    }),
                    budget_interval: budget.budget_interval.map(|d| duration(d.0)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The upstream HTTP protocol options of a port (`http2`: HTTP2/GRPC): h2c, or the
    /// downstream's protocol (HTTP/2 with `h2UpgradePolicy: UPGRADE`), with the connection
    /// pool's per-connection settings.
    pub fn protocol_options(&self, http2: bool) -> HashMap<String, Any> {
        let pool = self.connection_pool.as_ref();
        let http = pool.and_then(|p| p.http.as_ref());
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let upgrade = http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade);
        let common = HttpProtocolOptions {
            idle_timeout: http.and_then(|h| h.idle_timeout).map(|d| duration(d.0)),
            max_requests_per_connection: http
                .and_then(|h| limit(h.max_requests_per_connection))
                .map(|value| UInt32Value { value }),
            max_connection_duration: tcp
                .and_then(|t| t.max_connection_duration)
                .map(|d| duration(d.0)),
            ..Default::default()
        };
        let common = (common != HttpProtocolOptions::default()).then_some(common);
        // `http2KeepAlive` without both durations is reported (weft_api::unsupported) and
        // not sent: Envoy requires the timeout, and sends no PING without an interval.
        let keepalive = http
            .and_then(|h| h.http2_keep_alive.as_ref())
            .and_then(|k| Some((k.interval?, k.timeout?)))
            .map(|(interval, timeout)| KeepaliveSettings {
                interval: Some(duration(interval.0)),
                timeout: Some(duration(timeout.0)),
                ..Default::default()
            });
        let h2 = Http2ProtocolOptions {
            max_concurrent_streams: http
                .and_then(|h| limit(h.max_concurrent_streams))
                .map(|value| UInt32Value { value }),
            connection_keepalive: keepalive,
            ..Default::default()
        };
        protocol_options_with(http2 || upgrade, common, h2)
    }

    /// `connectionPool.tcp.tcpKeepalive` as the cluster's `upstream_connection_options`.
    pub fn upstream_connection_options(&self) -> Option<UpstreamConnectionOptions> {
        let keepalive = self
            .connection_pool
            .as_ref()
            .and_then(|p| p.tcp.as_ref())
            .and_then(|t| t.tcp_keepalive.as_ref())?;
        let seconds = |d: Option<weft_api::Duration>| {
            d.map(|d| UInt32Value {
                value: u32::try_from(d.0.as_secs()).unwrap_or(u32::MAX),
            })
        };
        Some(UpstreamConnectionOptions {
            tcp_keepalive: Some(TcpKeepalive {
                keepalive_probes: keepalive.probes.map(|value| UInt32Value { value }),
                keepalive_time: seconds(keepalive.time),
                keepalive_interval: seconds(keepalive.interval),
            }),
            ..Default::default()
        })
    }

    /// The cluster's `outlier_detection` and `common_lb_config` (the panic threshold), as
    /// Istio's `applyOutlierDetection` writes them: success-rate detection off, a threshold
    /// enforced when set (`consecutiveErrors`, deprecated: gateway errors only), the panic
    /// threshold `minHealthPercent` (0, i.e. no panic mode, by default).
    pub fn outlier_detection(
        &self,
    ) -> (
        Option<OutlierDetectionProto>,
        Option<cluster::CommonLbConfig>,
    ) {
        let Some(outlier) = &self.outlier else {
            return (None, None);
        };
        let value = |v: u32| Some(UInt32Value { value: v });
        let enforcing = |v: u32| value(if v > 0 { 100 } else { 0 });
        let mut out = OutlierDetectionProto {
            enforcing_success_rate: value(0),
            ..Default::default()
        };
        if let Some(errors) = limit(outlier.consecutive_errors) {
            out.enforcing_consecutive_gateway_failure = value(100);
            out.enforcing_consecutive_5xx = value(0);
            out.consecutive_gateway_failure = value(errors);
        }
        if let Some(n) = outlier.consecutive5xx_errors {
            out.consecutive_5xx = value(n);
            out.enforcing_consecutive_5xx = enforcing(n);
        }
        if let Some(n) = outlier.consecutive_gateway_errors {
            out.consecutive_gateway_failure = value(n);
            out.enforcing_consecutive_gateway_failure = enforcing(n);
        }
        out.interval = outlier.interval.map(|d| duration(d.0));
        out.base_ejection_time = outlier.base_ejection_time.map(|d| duration(d.0));
        out.max_ejection_percent = limit(outlier.max_ejection_percent).and_then(value);
        if outlier.split_external_local_origin_errors {
            out.split_external_local_origin_errors = true;
            if let Some(n) = outlier.consecutive_local_origin_failures.filter(|n| *n > 0) {
                out.consecutive_local_origin_failure = value(n);
                out.enforcing_consecutive_local_origin_failure = value(100);
            }
            out.enforcing_local_origin_success_rate = value(0);
        }
        let min_health = outlier.min_health_percent.unwrap_or(0).max(0);
        let common = cluster::CommonLbConfig {
            healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: f64::from(min_health),
            }),
            ..Default::default()
        };
        (Some(out), Some(common))
    }
}
