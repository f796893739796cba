//! A VirtualService HTTP route's resilience settings in Envoy's terms, as Istio translates them:
//! `retries` → `RouteAction.retry_policy` (Istio's default policy when unset), `fault` →
//! `typed_per_filter_config["envoy.filters.http.fault"]`, the fault filter every outbound
//! connection manager carries, and `mirror`/`mirrors` → `RouteAction.request_mirror_policies`.
//!
//! ```text
//!  retries unset       ─► Istio's default: 2 retries on connect-failure, refused-stream, unavailable,
//!                         cancelled, 503; other hosts; metadata weft.retry {non_idempotent: before_send}
//!  retries.attempts 0  ─► no retry_policy
//!  retries             ─► num_retries, retry_on (status codes → retriable_status_codes), per_try_timeout,
//!                         retryRemoteLocalities → previous_priorities, retryIgnorePreviousHosts
//!                         (default true) → previous_hosts, backoff → retry_back_off.base_interval
//!  fault               ─► HTTPFault { delay { fixed_delay, percentage }, abort { http_status │
//!                         grpc_status, percentage } } (percentages per million; unset = 100 %, as Istio)
//!  mirror + mirrorPercentage (│ mirrorPercent) ─► request_mirror_policies[0] { cluster, runtime_fraction }
//!  mirrors[i] + percentage ─► request_mirror_policies[…] (unset: 100 %; 0: left out, as Istio)
//! ```

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{Metadata, RuntimeFractionalPercent};
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, retry_policy, route_action};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Struct, UInt32Value, Value, value::Kind};
use weft_api::networking::{
    Abort, Delay, Destination, HttpFaultInjection, HttpRetry, HttpRoute, Percent, grpc_status_code,
};
use weft_xds::contract::{
    FAULT, PREVIOUS_HOSTS, PREVIOUS_PRIORITIES, RETRY_METADATA, RETRY_METADATA_BEFORE_SEND,
    RETRY_METADATA_NON_IDEMPOTENT,
};

use super::{duration, pack};

/// Istio's default retry conditions.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Istio's default number of retries.
pub const DEFAULT_RETRIES: u32 = 2;

/// The retry policy of a route with `retries` (`None`: Istio's default), and the route metadata
/// that goes with it. `(None, None)`: retries are off (`attempts: 0`).
pub fn retry_policy(retries: Option<&HttpRetry>) -> (Option<RetryPolicy>, Option<Metadata>) {
    let Some(retries) = retries else {
        return (Some(default_policy()), Some(before_send_metadata()));
    };
    let Ok(attempts) = u32::try_from(retries.attempts) else {
        return (None, None);
    };
    if attempts == 0 {
        return (None, None);
    }
    let mut policy = default_policy();
    policy.num_retries = Some(UInt32Value { value: attempts });
    if let Some(on) = retries.retry_on.as_deref().filter(|on| !on.is_empty()) {
        let (conditions, codes) = parse_retry_on(on);
        policy.retry_on = conditions;
        policy.retriable_status_codes = codes;
    }
    policy.per_try_timeout = retries.per_try_timeout.map(|t| duration(t.0));
    if retries.retry_remote_localities == Some(true) {
        policy.retry_priority = Some(retry_policy::RetryPriority {
            name: PREVIOUS_PRIORITIES.to_string(),
            config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(pack(
                &PreviousPrioritiesConfig {
                    update_frequency: 2,
                },
            ))),
        });
    }
    if retries.retry_ignore_previous_hosts == Some(false) {
        policy.retry_host_predicate.clear();
    }
    if let Some(backoff) = retries.backoff {
        policy.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(duration(backoff.0)),
            max_interval: None,
        });
    }
    (Some(policy), None)
}

/// Istio's `retry.DefaultPolicy()`.
fn default_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(UInt32Value {
            value: DEFAULT_RETRIES,
        }),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: PREVIOUS_HOSTS.to_string(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                pack(&PreviousHostsPredicate {}),
            )),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

/// Route metadata marking Istio's default policy: a request whose method is not idempotent is
/// retried only when it never reached the upstream.
fn before_send_metadata() -> Metadata {
    Metadata {
        filter_metadata: HashMap::from([(
            RETRY_METADATA.to_string(),
            Struct {
                fields: [(
                    RETRY_METADATA_NON_IDEMPOTENT.to_string(),
                    Value {
                        kind: Some(Kind::StringValue(RETRY_METADATA_BEFORE_SEND.to_string())),
                    },
                )]
                .into_iter()
                .collect(),
            },
        )]),
        ..Default::default()
    }
}

/// `retryOn`: status codes go to `retriable_status_codes` (with `retriable-status-codes` added
/// to the conditions), names stay conditions, as Istio's `parseRetryOn`.
fn parse_retry_on(on: &str) -> (String, Vec<u32>) {
    let mut conditions: Vec<&str> = Vec::new();
    let mut codes = Vec::new();
    for item in on.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) if !conditions.contains(&item) => conditions.push(item),
            Err(_) => {}
        }
    }
    if !codes.is_empty() && !conditions.contains(&"retriable-status-codes") {
        conditions.push("retriable-status-codes");
    }
    (conditions.join(","), codes)
}

/// The fault filter of an outbound connection manager: an empty `HTTPFault`, so that routes'
/// faults apply (Istio's sidecar outbound filter chain).
pub fn fault_filter() -> HttpFilter {
    HttpFilter {
        name: FAULT.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &fault::HttpFault::default(),
        ))),
        ..Default::default()
    }
}

/// A route's faults as the per-route config of the fault filter.
pub fn fault_config(fault: &HttpFaultInjection) -> Any {
    pack(&fault::HttpFault {
        delay: fault.delay.as_ref().and_then(delay),
        abort: fault.abort.as_ref().and_then(abort),
        ..Default::default()
    })
}

fn delay(d: &Delay) -> Option<common_fault::FaultDelay> {
    Some(common_fault::FaultDelay {
        percentage: Some(percentage(d.percentage.as_ref(), d.percent)),
        fault_delay_secifier: Some(common_fault::fault_delay::FaultDelaySecifier::FixedDelay(
            duration(d.fixed_delay?.0),
        )),
    })
}

fn abort(a: &Abort) -> Option<fault::FaultAbort> {
    let error_type = if let Some(status) = a.http_status {
        fault::fault_abort::ErrorType::HttpStatus(u32::try_from(status).ok()?)
    } else {
        fault::fault_abort::ErrorType::GrpcStatus(grpc_status_code(a.grpc_status.as_deref()?)?)
    };
    Some(fault::FaultAbort {
        percentage: Some(percentage(a.percentage.as_ref(), None)),
        error_type: Some(error_type),
        ..Default::default()
    })
}

/// A route's mirrors as Istio's `translateRoute` sends them: `mirror` with `mirrorPercentage`
/// (else the integer `mirrorPercent`, else 100 %), then each of `mirrors` with its own
/// `percentage` (else 100 %). A share of 0 is left out. `cluster` names a destination's cluster.
pub fn mirror_policies(
    http: &HttpRoute,
    cluster: impl Fn(&Destination) -> String,
) -> Vec<route_action::RequestMirrorPolicy> {
    let policy = |destination: &Destination, fraction: FractionalPercent| {
        route_action::RequestMirrorPolicy {
            cluster: cluster(destination),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(fraction),
                runtime_key: String::new(),
            }),
            trace_sampled: Some(BoolValue { value: false }),
            ..Default::default()
        }
    };
    let mut out = Vec::new();
    if let Some(mirror) = &http.mirror {
        let fraction = match (&http.mirror_percentage, http.mirror_percent_value()) {
            (Some(p), _) => percentage(Some(p), None),
            (None, Some(p)) => FractionalPercent {
                numerator: p,
                denominator: DenominatorType::Hundred as i32,
            },
            (None, None) => percentage(None, None),
        };
        if fraction.numerator > 0 {
            out.push(policy(mirror, fraction));
        }
    }
    for mirror in &http.mirrors {
        let fraction = percentage(mirror.percentage.as_ref(), None);
        if fraction.numerator > 0 {
            out.push(policy(&mirror.destination, fraction));
        }
    }
    out
}

/// A fault's share as Istio sends it: `percentage` in millionths, the deprecated integer
/// `percent` in hundredths, neither: every request.
fn percentage(percentage: Option<&Percent>, percent: Option<i32>) -> FractionalPercent {
    match (percentage, percent) {
        (Some(p), _) => FractionalPercent {
            // Validation keeps the value in [0, 100].
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            numerator: (p.value * 10_000.0).round() as u32,
            denominator: DenominatorType::Million as i32,
        },
        (None, Some(p)) => FractionalPercent {
            numerator: u32::try_from(p).unwrap_or(0),
            denominator: DenominatorType::Hundred as i32,
        },
        (None, None) => FractionalPercent {
            numerator: 1_000_000,
            denominator: DenominatorType::Million as i32,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(yaml: &str) -> HttpRetry {
        serde_yaml::from_str(yaml).expect("valid retries")
    }

    #[test]
    fn no_retries_is_istios_default_policy_with_the_post_guard() {
        let (policy, metadata) = retry_policy(None);
        let policy = policy.expect("a policy");
        assert_eq!(policy.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(policy.num_retries.unwrap().value, 2);
        assert_eq!(policy.retriable_status_codes, [503]);
        assert_eq!(policy.retry_host_predicate[0].name, PREVIOUS_HOSTS);
        assert_eq!(policy.host_selection_retry_max_attempts, 5);
        assert!(
            metadata
                .unwrap()
                .filter_metadata
                .contains_key(RETRY_METADATA)
        );
    }

    #[test]
    fn user_retries_translate_as_istio() {
        let (policy, metadata) = retry_policy(Some(&retry(
            "{attempts: 3, perTryTimeout: 2s, retryOn: 'gateway-error,connect-failure,409,503', retryRemoteLocalities: true, backoff: 100ms}",
        )));
        let policy = policy.unwrap();
        assert!(metadata.is_none(), "the user asked for these retries");
        assert_eq!(policy.num_retries.unwrap().value, 3);
        assert_eq!(
            policy.retry_on,
            "gateway-error,connect-failure,retriable-status-codes"
        );
        assert_eq!(policy.retriable_status_codes, [409, 503]);
        assert_eq!(policy.per_try_timeout.unwrap().seconds, 2);
        assert_eq!(policy.retry_priority.unwrap().name, PREVIOUS_PRIORITIES);
        assert_eq!(
            policy.retry_back_off.unwrap().base_interval.unwrap().nanos,
            100_000_000
        );
        // Only the default conditions when retryOn is unset.
        let (policy, _) = retry_policy(Some(&retry("{attempts: 1}")));
        assert_eq!(policy.unwrap().retry_on, DEFAULT_RETRY_ON);
        let (policy, _) = retry_policy(Some(&retry(
            "{attempts: 1, retryIgnorePreviousHosts: false}",
        )));
        assert!(policy.unwrap().retry_host_predicate.is_empty());
        assert_eq!(retry_policy(Some(&retry("{attempts: 0}"))), (None, None));
    }

    #[test]
    fn mirrors_translate_as_istio() {
        let http: HttpRoute = serde_yaml::from_str(
            "{mirror: {host: a}, mirrorPercent: 30, mirrors: [{destination: {host: b}, percentage: {value: 0}}, {destination: {host: c}}]}",
        )
        .unwrap();
        let policies = mirror_policies(&http, |d| d.host.clone());
        let got: Vec<(&str, u32, i32)> = policies
            .iter()
            .map(|p| {
                let f = p.runtime_fraction.as_ref().unwrap().default_value.unwrap();
                (p.cluster.as_str(), f.numerator, f.denominator)
            })
            .collect();
        // 0 % is left out; unset is 100 %.
        assert_eq!(got, [("a", 30, 0), ("c", 1_000_000, 2)]);
        let zero: HttpRoute =
            serde_yaml::from_str("{mirror: {host: a}, mirrorPercentage: {value: 0}}").unwrap();
        assert!(mirror_policies(&zero, |d| d.host.clone()).is_empty());
    }

    #[test]
    fn faults_translate_as_istio() {
        let injection: HttpFaultInjection = serde_yaml::from_str(
            "{delay: {fixedDelay: 7s, percentage: {value: 10}}, abort: {grpcStatus: UNAVAILABLE}}",
        )
        .unwrap();
        let any = fault_config(&injection);
        let config: fault::HttpFault = prost::Message::decode(any.value.as_slice()).unwrap();
        let delay = config.delay.unwrap();
        assert_eq!(delay.percentage.unwrap().numerator, 100_000);
        let abort = config.abort.unwrap();
        assert_eq!(
            abort.error_type,
            Some(fault::fault_abort::ErrorType::GrpcStatus(14))
        );
        assert_eq!(
            abort.percentage.unwrap().numerator,
            1_000_000,
            "no percentage: every request, as Istio"
        );
        let legacy: HttpFaultInjection =
            serde_yaml::from_str("{abort: {httpStatus: 503, percentage: {value: 0.5}}, delay: {fixedDelay: 1s, percent: 30}}").unwrap();
        let config: fault::HttpFault =
            prost::Message::decode(fault_config(&legacy).value.as_slice()).unwrap();
        assert_eq!(config.abort.unwrap().percentage.unwrap().numerator, 5_000);
        let delay = config.delay.unwrap().percentage.unwrap();
        assert_eq!((delay.numerator, delay.denominator), (30, 0));
    }
}
