//! A cluster's `circuit_breakers` (DestinationRule `connectionPool`: `tcp.maxConnections`,
//! `http.http1MaxPendingRequests`, `http.http2MaxRequests`, `http.maxRetries`;
//! `trafficPolicy.retryBudget`) → `CircuitBreakers`.
//!
//! ```text
//!  thresholds[priority DEFAULT] { max_connections, max_pending_requests, max_requests, max_retries,
//!                                 retry_budget { budget_percent, min_retry_concurrency, budget_interval } }
//! ```
//!
//! Beyond `max_requests` requests in flight, or `max_pending_requests` requests waiting for an
//! HTTP/1.1 connection while `max_connections` are open, a request fails at once with `503 UO`.
//!
//! Weft's retry budget counts requests and retries over a window (`weft_lb::budget`): it bounds
//! the extra load retries add, where Envoy's bounds retries in flight. `min_retry_concurrency`
//! is the number of retries every window allows whatever the traffic; `budget_interval` the
//! window (10 s when unset). Both limits apply: a retry needs room in the budget and fewer than
//! `max_retries` retries in flight.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use weft_lb::budget::BudgetConfig;

use super::{Reason, duration, invalid, reject_leftover, reject_set};

/// The window of a retry budget without `budget_interval`.
pub const DEFAULT_BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// Envoy's `max_retries` when a cluster sets none.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Envoy's `max_connections`, `max_pending_requests` and `max_requests` when unset.
pub const DEFAULT_LIMIT: u32 = 1024;

/// What a cluster allows of connections, requests and retries.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakers {
    /// Upstream connections open at once (HTTP/1.1 pools and TCP proxying).
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight at once.
    pub max_requests: u32,
    /// Retries in flight at once.
    pub max_retries: u32,
    /// `None`: no budget, only `max_retries`.
    pub retry_budget: Option<BudgetConfig>,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_LIMIT,
            max_pending_requests: DEFAULT_LIMIT,
            max_requests: DEFAULT_LIMIT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_budget: None,
        }
    }
}

impl TryFrom<Option<cds::CircuitBreakers>> for CircuitBreakers {
    type Error = Reason;

    fn try_from(breakers: Option<cds::CircuitBreakers>) -> Result<Self, Reason> {
        let Some(mut breakers) = breakers else {
            return Ok(Self::default());
        };
        let mut out = Self::default();
        let mut seen_default = false;
        for (i, mut t) in std::mem::take(&mut breakers.thresholds)
            .into_iter()
            .enumerate()
        {
            let field = format!("circuit_breakers.thresholds[{i}]");
            if t.priority != RoutingPriority::Default as i32 {
                return Err(Reason::Unsupported(format!(
                    "{field}.priority other than DEFAULT"
                )));
            }
            if std::mem::replace(&mut seen_default, true) {
                // Envoy: the first thresholds of a priority win; later ones are ignored.
                continue;
            }
            if let Some(max) = t.max_retries.take() {
                out.max_retries = max.value;
            }
            if let Some(max) = t.max_connections.take() {
                out.max_connections = max.value;
            }
            if let Some(max) = t.max_pending_requests.take() {
                out.max_pending_requests = max.value;
            }
            if let Some(max) = t.max_requests.take() {
                out.max_requests = max.value;
            }
            if let Some(mut budget) = t.retry_budget.take() {
                let percent = budget.budget_percent.take().map_or(20.0, |p| p.value);
                if !(0.0..=100.0).contains(&percent) {
                    return Err(invalid(
                        format!("{field}.retry_budget.budget_percent"),
                        format!("{percent} is not in [0, 100]"),
                    ));
                }
                let min_retries = budget.min_retry_concurrency.take().map_or(3, |m| m.value);
                let window = duration(
                    "retry_budget.budget_interval",
                    budget.budget_interval.take().as_ref(),
                )
                .map_err(|r| r.within(&field))?
                .filter(|w| !w.is_zero())
                .unwrap_or(DEFAULT_BUDGET_WINDOW);
                reject_leftover(&budget, "retry budget").map_err(|r| r.within(&field))?;
                out.retry_budget = Some(BudgetConfig {
                    percent,
                    min_retries,
                    window,
                });
            }
            // Statistics only.
            t.track_remaining = false;
            (|| {
                reject_set!(t, max_connection_pools);
                reject_leftover(&t, "thresholds")
            })()
            .map_err(|r| r.within(&field))?;
        }
        reject_set!(breakers, per_host_thresholds);
        reject_leftover(&breakers, "circuit_breakers")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::UInt32Value;

    use super::*;

    fn thresholds(t: cds::circuit_breakers::Thresholds) -> Option<cds::CircuitBreakers> {
        Some(cds::CircuitBreakers {
            thresholds: vec![t],
            ..Default::default()
        })
    }

    #[test]
    fn defaults_are_envoys() {
        let cb = CircuitBreakers::try_from(None).unwrap();
        assert_eq!(cb.max_retries, 3);
        assert!(cb.retry_budget.is_none());
    }

    #[test]
    fn budget_and_max_retries() {
        let cb = CircuitBreakers::try_from(thresholds(cds::circuit_breakers::Thresholds {
            max_retries: Some(UInt32Value { value: 7 }),
            retry_budget: Some(cds::circuit_breakers::thresholds::RetryBudget {
                budget_percent: Some(envoy_types::pb::envoy::r#type::v3::Percent { value: 25.0 }),
                min_retry_concurrency: Some(UInt32Value { value: 5 }),
                ..Default::default()
            }),
            track_remaining: true,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(cb.max_retries, 7);
        assert_eq!(
            cb.retry_budget,
            Some(BudgetConfig {
                percent: 25.0,
                min_retries: 5,
                window: DEFAULT_BUDGET_WINDOW
            })
        );
    }

    #[test]
    fn rejects_limits_it_does_not_apply_and_bad_values() {
        let cb = CircuitBreakers::try_from(thresholds(cds::circuit_breakers::Thresholds {
            max_connections: Some(UInt32Value { value: 1 }),
            max_pending_requests: Some(UInt32Value { value: 2 }),
            max_requests: Some(UInt32Value { value: 3 }),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            (cb.max_connections, cb.max_pending_requests, cb.max_requests),
            (1, 2, 3)
        );
        let err = CircuitBreakers::try_from(thresholds(cds::circuit_breakers::Thresholds {
            max_connection_pools: Some(UInt32Value { value: 1 }),
            ..Default::default()
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("thresholds[0].max_connection_pools"), "{err}");
        let err = CircuitBreakers::try_from(thresholds(cds::circuit_breakers::Thresholds {
            retry_budget: Some(cds::circuit_breakers::thresholds::RetryBudget {
                budget_percent: Some(envoy_types::pb::envoy::r#type::v3::Percent { value: 120.0 }),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("budget_percent"), "{err}");
        let err = CircuitBreakers::try_from(thresholds(cds::circuit_breakers::Thresholds {
            priority: RoutingPriority::High as i32,
            ..Default::default()
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("priority"), "{err}");
    }
}
