//! A route's retry policy (Envoy `RetryPolicy`, VirtualService `retries`) → `RetryPolicy`.
//!
//! ```text
//!  retry_on "5xx,reset,…,503" ─► RetryOn bits + retriable status codes
//!  num_retries, per_try_timeout, retry_back_off, retriable_status_codes, retriable_headers,
//!  retry_host_predicate [previous_hosts], host_selection_retry_max_attempts,
//!  retry_priority previous_priorities, route metadata "weft.retry" (Istio's default policy:
//!  non-idempotent requests only before they were sent)
//! ```

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use weft_xds::contract::{
    PREVIOUS_HOSTS, PREVIOUS_HOSTS_TYPE_URL, PREVIOUS_PRIORITIES, PREVIOUS_PRIORITIES_TYPE_URL,
    RETRY_METADATA_BEFORE_SEND, RETRY_METADATA_NON_IDEMPOTENT,
};

use super::matcher::header_match;
use super::route::HeaderMatch;
use super::{Reason, duration, invalid, reject_leftover, reject_set};

/// Envoy's retry back-off base interval when the policy sets none.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// The conditions a response or failure is retried on (Envoy's `x-envoy-retry-on` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const SERVER_ERROR: Self = Self(1); // 5xx
    pub const GATEWAY_ERROR: Self = Self(1 << 1);
    pub const RESET: Self = Self(1 << 2);
    pub const RESET_BEFORE_REQUEST: Self = Self(1 << 3);
    pub const CONNECT_FAILURE: Self = Self(1 << 4);
    pub const RETRIABLE_4XX: Self = Self(1 << 5);
    pub const REFUSED_STREAM: Self = Self(1 << 6);
    pub const RETRIABLE_STATUS_CODES: Self = Self(1 << 7);
    pub const RETRIABLE_HEADERS: Self = Self(1 << 8);
    pub const RATE_LIMITED: Self = Self(1 << 9);
    pub const GRPC_CANCELLED: Self = Self(1 << 10);
    pub const GRPC_DEADLINE_EXCEEDED: Self = Self(1 << 11);
    pub const GRPC_INTERNAL: Self = Self(1 << 12);
    pub const GRPC_RESOURCE_EXHAUSTED: Self = Self(1 << 13);
    pub const GRPC_UNAVAILABLE: Self = Self(1 << 14);
    /// Every gRPC status condition.
    pub const GRPC_ANY: Self = Self(0b1_1111 << 10);

    /// Whether every condition of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any condition of `other` is set.
    pub fn any(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "5xx" => Self::SERVER_ERROR,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "connect-failure" => Self::CONNECT_FAILURE,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
            "retriable-headers" => Self::RETRIABLE_HEADERS,
            "envoy-ratelimited" => Self::RATE_LIMITED,
            "cancelled" => Self::GRPC_CANCELLED,
            "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
            "internal" => Self::GRPC_INTERNAL,
            "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => Self::GRPC_UNAVAILABLE,
            _ => return None,
        })
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for RetryOn {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// What a route does when an attempt fails.
#[derive(Debug)]
pub struct RetryPolicy {
    pub on: RetryOn,
    /// Retries after the first attempt (Envoy's default 1 when a policy is set).
    pub num_retries: u32,
    /// Each attempt's own timeout (within the route timeout); `None`: only the route's.
    pub per_try_timeout: Option<Duration>,
    /// `retriable-status-codes`: the statuses retried.
    pub status_codes: Vec<u16>,
    /// `retriable-headers`: a response with a matching header is retried.
    pub retriable_headers: Vec<HeaderMatch>,
    /// Exponential back-off with full jitter: attempt n waits a random time in
    /// `[0, min(base × 2^(n-1), max))`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `previous_hosts`: each retry goes to an endpoint not tried yet, when one is left.
    pub other_hosts: bool,
    /// How many picks a retry makes to find such an endpoint (Envoy's
    /// `host_selection_retry_max_attempts`, default 1).
    pub host_selection_attempts: u32,
    /// `previous_priorities` (`retryRemoteLocalities`): retries prefer other priorities.
    pub other_priorities: bool,
    /// Istio's default policy (route metadata `weft.retry`): a request whose method is not
    /// idempotent is retried only when it never reached the upstream.
    pub non_idempotent_before_send_only: bool,
}

impl RetryPolicy {
    /// Whether `status` is retried by this policy (response conditions other than headers).
    pub fn retries_status(&self, status: u16) -> bool {
        (self.on.contains(RetryOn::SERVER_ERROR) && (500..600).contains(&status))
            || (self.on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (self.on.contains(RetryOn::RETRIABLE_4XX) && status == 409)
            || (self.on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                && self.status_codes.contains(&status))
    }
}

/// Converts a route's `retry_policy`, with the route's `metadata` (already taken from it).
pub(crate) fn retry_policy(
    mut p: rt::RetryPolicy,
    metadata: Option<&Struct>,
) -> Result<RetryPolicy, Reason> {
    let mut on = RetryOn::default();
    for name in p
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        on |= RetryOn::parse(name)
            .ok_or_else(|| Reason::Unsupported(format!("retry_policy.retry_on {name:?}")))?;
    }
    let num_retries = p.num_retries.take().map_or(1, |n| n.value);
    let per_try_timeout = duration(
        "retry_policy.per_try_timeout",
        p.per_try_timeout.take().as_ref(),
    )?
    .filter(|t| !t.is_zero());
    let status_codes = std::mem::take(&mut p.retriable_status_codes)
        .into_iter()
        .map(|code| {
            u16::try_from(code)
                .ok()
                .filter(|c| (100..600).contains(c))
                .ok_or_else(|| {
                    invalid(
                        "retry_policy.retriable_status_codes",
                        format!("{code} is not an HTTP status"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let retriable_headers = std::mem::take(&mut p.retriable_headers)
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            header_match(h).map_err(|r| r.within(&format!("retry_policy.retriable_headers[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (backoff_base, backoff_max) = match p.retry_back_off.take() {
        None => (DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_BASE * 10),
        Some(b) => {
            let base = duration(
                "retry_policy.retry_back_off.base_interval",
                b.base_interval.as_ref(),
            )?
            .ok_or(Reason::Missing("retry_policy.retry_back_off.base_interval"))?;
            if base.is_zero() {
                return Err(invalid(
                    "retry_policy.retry_back_off.base_interval",
                    "must be greater than 0",
                ));
            }
            let max = duration(
                "retry_policy.retry_back_off.max_interval",
                b.max_interval.as_ref(),
            )?
            .unwrap_or(base * 10);
            if max < base {
                return Err(invalid(
                    "retry_policy.retry_back_off.max_interval",
                    "must not be less than base_interval",
                ));
            }
            (base, max)
        }
    };
    let mut other_hosts = false;
    for (i, predicate) in std::mem::take(&mut p.retry_host_predicate)
        .into_iter()
        .enumerate()
    {
        let typed = predicate_type(predicate.config_type.as_ref());
        if predicate.name == PREVIOUS_HOSTS || typed == Some(PREVIOUS_HOSTS_TYPE_URL) {
            other_hosts = true;
        } else {
            return Err(Reason::Unsupported(format!(
                "retry_policy.retry_host_predicate[{i}] {:?}",
                predicate.name
            )));
        }
    }
    let host_selection_attempts = u32::try_from(p.host_selection_retry_max_attempts.max(1))
        .unwrap_or(u32::MAX)
        .min(16);
    p.host_selection_retry_max_attempts = 0;
    let other_priorities = match p.retry_priority.take() {
        None => false,
        Some(priority) => {
            let typed = priority.config_type.as_ref().map(|c| match c {
                rt::retry_policy::retry_priority::ConfigType::TypedConfig(any) => {
                    any.type_url.as_str()
                }
            });
            if priority.name == PREVIOUS_PRIORITIES || typed == Some(PREVIOUS_PRIORITIES_TYPE_URL) {
                true
            } else {
                return Err(Reason::Unsupported(format!(
                    "retry_policy.retry_priority {:?}",
                    priority.name
                )));
            }
        }
    };
    p.retry_on.clear();
    (|| {
        reject_set!(
            p,
            per_try_idle_timeout,
            retry_options_predicates,
            rate_limited_retry_back_off,
            retriable_request_headers
        );
        reject_leftover(&p, "retry policy")
    })()
    .map_err(|r| r.within("retry_policy"))?;
    Ok(RetryPolicy {
        on,
        num_retries,
        per_try_timeout,
        status_codes,
        retriable_headers,
        backoff_base,
        backoff_max,
        other_hosts,
        host_selection_attempts,
        other_priorities,
        non_idempotent_before_send_only: before_send_only(metadata)?,
    })
}

fn predicate_type(
    config: Option<&rt::retry_policy::retry_host_predicate::ConfigType>,
) -> Option<&str> {
    match config {
        Some(rt::retry_policy::retry_host_predicate::ConfigType::TypedConfig(any)) => {
            Some(any.type_url.as_str())
        }
        None => None,
    }
}

/// The route metadata `weft.retry` struct: `{non_idempotent: "before_send"}` or nothing.
fn before_send_only(metadata: Option<&Struct>) -> Result<bool, Reason> {
    let Some(fields) = metadata else {
        return Ok(false);
    };
    let mut before_send = false;
    for (key, value) in &fields.fields {
        match (key.as_str(), &value.kind) {
            (RETRY_METADATA_NON_IDEMPOTENT, Some(Kind::StringValue(v)))
                if v == RETRY_METADATA_BEFORE_SEND =>
            {
                before_send = true;
            }
            (RETRY_METADATA_NON_IDEMPOTENT, Some(Kind::StringValue(v))) if v == "always" => {}
            (key, _) => {
                return Err(Reason::Unsupported(format!(
                    "metadata.filter_metadata[\"weft.retry\"].{key} with this value"
                )));
            }
        }
    }
    Ok(before_send)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::{Any, UInt32Value, Value};

    use super::*;

    fn istio_default() -> rt::RetryPolicy {
        rt::RetryPolicy {
            retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
                .into(),
            num_retries: Some(UInt32Value { value: 2 }),
            retriable_status_codes: vec![503],
            retry_host_predicate: vec![rt::retry_policy::RetryHostPredicate {
                name: PREVIOUS_HOSTS.into(),
                config_type: Some(
                    rt::retry_policy::retry_host_predicate::ConfigType::TypedConfig(Any {
                        type_url: PREVIOUS_HOSTS_TYPE_URL.into(),
                        value: vec![],
                    }),
                ),
            }],
            host_selection_retry_max_attempts: 5,
            ..Default::default()
        }
    }

    fn metadata(value: &str) -> Struct {
        Struct {
            fields: [(
                RETRY_METADATA_NON_IDEMPOTENT.to_string(),
                Value {
                    kind: Some(Kind::StringValue(value.into())),
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn istios_default_policy() {
        let p = retry_policy(istio_default(), Some(&metadata("before_send"))).unwrap();
        assert_eq!(p.num_retries, 2);
        assert!(p.on.contains(RetryOn::CONNECT_FAILURE | RetryOn::REFUSED_STREAM));
        assert!(p.on.contains(RetryOn::GRPC_UNAVAILABLE | RetryOn::GRPC_CANCELLED));
        assert!(p.retries_status(503));
        assert!(!p.retries_status(500), "5xx is not in Istio's default");
        assert!(p.other_hosts);
        assert_eq!(p.host_selection_attempts, 5);
        assert_eq!(p.backoff_base, Duration::from_millis(25));
        assert_eq!(p.backoff_max, Duration::from_millis(250));
        assert!(p.non_idempotent_before_send_only);
    }

    #[test]
    fn statuses_per_condition() {
        let p = retry_policy(
            rt::RetryPolicy {
                retry_on: "gateway-error,retriable-4xx".into(),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(p.num_retries, 1, "Envoy's default");
        assert!(p.retries_status(502) && p.retries_status(503) && p.retries_status(504));
        assert!(!p.retries_status(500));
        assert!(p.retries_status(409));
        assert!(!p.non_idempotent_before_send_only);
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        let bad_on = rt::RetryPolicy {
            retry_on: "5xx,bogus".into(),
            ..Default::default()
        };
        assert!(
            retry_policy(bad_on, None)
                .unwrap_err()
                .to_string()
                .contains("\"bogus\"")
        );
        let bad_code = rt::RetryPolicy {
            retriable_status_codes: vec![99],
            ..Default::default()
        };
        assert!(
            retry_policy(bad_code, None)
                .unwrap_err()
                .to_string()
                .contains("retriable_status_codes")
        );
        let predicate = rt::RetryPolicy {
            retry_host_predicate: vec![rt::retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.omit_canary_hosts".into(),
                config_type: None,
            }],
            ..Default::default()
        };
        assert!(
            retry_policy(predicate, None)
                .unwrap_err()
                .to_string()
                .contains("omit_canary_hosts")
        );
        let request_headers = rt::RetryPolicy {
            retriable_request_headers: vec![rt::HeaderMatcher::default()],
            ..Default::default()
        };
        assert!(
            retry_policy(request_headers, None)
                .unwrap_err()
                .to_string()
                .contains("retriable_request_headers")
        );
        assert!(retry_policy(rt::RetryPolicy::default(), Some(&metadata("sometimes"))).is_err());
    }

    #[test]
    fn back_off_bounds() {
        let policy = |base: u64, max: Option<u64>| rt::RetryPolicy {
            retry_back_off: Some(rt::retry_policy::RetryBackOff {
                base_interval: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 0,
                    nanos: i32::try_from(base * 1_000_000).unwrap(),
                }),
                max_interval: max.map(|m| envoy_types::pb::google::protobuf::Duration {
                    seconds: 0,
                    nanos: i32::try_from(m * 1_000_000).unwrap(),
                }),
            }),
            ..Default::default()
        };
        let p = retry_policy(policy(100, None), None).unwrap();
        assert_eq!(
            (p.backoff_base, p.backoff_max),
            (Duration::from_millis(100), Duration::from_secs(1))
        );
        assert!(retry_policy(policy(100, Some(50)), None).is_err());
        assert!(retry_policy(policy(0, None), None).is_err());
    }
}
