//! Retries (a route's `retry_policy`): which failed attempts are tried again, and how long to wait.
//!
//! ```text
//!  attempt ─► response │ failure
//!    response: status (5xx, gateway-error, retriable-4xx, retriable-status-codes), grpc-status
//!              (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable),
//!              retriable-headers, envoy-ratelimited
//!    failure:  connect-failure, refused-stream, reset (also 5xx/gateway-error), per-try timeout
//!  ─► retriable? ─► a non-idempotent request under Istio's default policy: only if never sent
//!               ─► attempts left ─► cluster budget and max_retries (upstream/breakers.rs)
//!               ─► back-off: uniform in [0, min(base × 2^(n-1), max)) (full jitter, as Envoy)
//!               ─► another endpoint than the ones tried (previous_hosts), body replayed
//! ```

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use rand::RngExt;

use crate::config::retry::{RetryOn, RetryPolicy};
use crate::error::ProxyError;
use crate::upstream::{Failure, UpstreamError};

/// Why an attempt failed before a response, in the terms retry conditions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptFailure {
    /// No connection (the request was never sent).
    ConnectFailure,
    /// The h2 peer refused the stream (REFUSED_STREAM: it did not process it).
    RefusedStream,
    /// The exchange broke off; `sent`: the request may have reached the upstream.
    Reset { sent: bool },
    /// The attempt's own timeout (`per_try_timeout`).
    PerTryTimeout,
    /// Not something a retry can help (the client's fault, no endpoint, …).
    Final,
}

impl AttemptFailure {
    pub(super) fn of(error: &ProxyError, per_try: bool) -> Self {
        match error {
            // The client's fault, or this proxy's own limits (Envoy does not retry overflow).
            ProxyError::Upstream {
                failure: Failure::DownstreamProtocol | Failure::Overflow,
                ..
            } => Self::Final,
            ProxyError::Upstream {
                failure: Failure::ConnectFailure,
                ..
            } => Self::ConnectFailure,
            ProxyError::Upstream { source, .. } => match source {
                UpstreamError::Http2 { source, .. }
                    if source.reason() == Some(h2::Reason::REFUSED_STREAM) =>
                {
                    Self::RefusedStream
                }
                // hyper gave the request back unsent: the connection closed first.
                UpstreamError::Http1 { source, .. } if source.is_canceled() => {
                    Self::Reset { sent: false }
                }
                _ => Self::Reset { sent: true },
            },
            ProxyError::Timeout { .. } if per_try => Self::PerTryTimeout,
            _ => Self::Final,
        }
    }

    /// Whether the upstream may have received the request.
    fn sent(self) -> bool {
        match self {
            Self::ConnectFailure | Self::RefusedStream | Self::Reset { sent: false } => false,
            Self::Reset { sent: true } | Self::PerTryTimeout | Self::Final => true,
        }
    }
}

/// Whether `policy` retries this failure (before conditions of budget and attempts).
pub(super) fn retries_failure(
    policy: &RetryPolicy,
    failure: AttemptFailure,
    method: &Method,
) -> bool {
    let on = policy.on;
    let wanted = match failure {
        AttemptFailure::Final => false,
        // Envoy counts any reset (connect failures included) as a 5xx and a gateway error.
        AttemptFailure::ConnectFailure => on.any(
            RetryOn::CONNECT_FAILURE
                | RetryOn::SERVER_ERROR
                | RetryOn::GATEWAY_ERROR
                | RetryOn::RESET
                | RetryOn::RESET_BEFORE_REQUEST,
        ),
        AttemptFailure::RefusedStream => on.any(
            RetryOn::REFUSED_STREAM
                | RetryOn::SERVER_ERROR
                | RetryOn::GATEWAY_ERROR
                | RetryOn::RESET
                | RetryOn::RESET_BEFORE_REQUEST,
        ),
        AttemptFailure::Reset { sent } => {
            on.any(RetryOn::SERVER_ERROR | RetryOn::GATEWAY_ERROR | RetryOn::RESET)
                || (!sent && on.contains(RetryOn::RESET_BEFORE_REQUEST))
        }
        AttemptFailure::PerTryTimeout => {
            on.any(RetryOn::SERVER_ERROR | RetryOn::GATEWAY_ERROR | RetryOn::RESET)
        }
    };
    wanted && (!failure.sent() || may_resend(policy, method))
}

/// Whether `policy` retries this response.
pub(super) fn retries_response(
    policy: &RetryPolicy,
    status: StatusCode,
    headers: &HeaderMap,
    method: &Method,
) -> bool {
    let on = policy.on;
    let wanted = policy.retries_status(status.as_u16())
        || (on.any(RetryOn::GRPC_ANY) && grpc_retriable(on, headers))
        || (on.contains(RetryOn::RATE_LIMITED) && headers.contains_key("x-envoy-ratelimited"))
        || (on.contains(RetryOn::RETRIABLE_HEADERS)
            && policy
                .retriable_headers
                .iter()
                .any(|m| super::router::response_header_matches(m, headers)));
    // A response means the upstream had the request.
    wanted && may_resend(policy, method)
}

fn grpc_retriable(on: RetryOn, headers: &HeaderMap) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return false;
    };
    match code {
        1 => on.contains(RetryOn::GRPC_CANCELLED),
        4 => on.contains(RetryOn::GRPC_DEADLINE_EXCEEDED),
        8 => on.contains(RetryOn::GRPC_RESOURCE_EXHAUSTED),
        13 => on.contains(RetryOn::GRPC_INTERNAL),
        14 => on.contains(RetryOn::GRPC_UNAVAILABLE),
        _ => false,
    }
}

/// Whether a request that reached the upstream may be sent again: always, unless the route has
/// Istio's default policy and the method is not idempotent (RFC 9110 §9.2.2).
fn may_resend(policy: &RetryPolicy, method: &Method) -> bool {
    !policy.non_idempotent_before_send_only || is_idempotent(method)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The wait before retry number `retry` (1 for the first retry): uniformly random in
/// `[0, min(base × 2^(retry-1), max))`.
pub(super) fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(16);
    let ceiling = policy
        .backoff_base
        .saturating_mul(factor)
        .min(policy.backoff_max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &str, default_policy: bool) -> RetryPolicy {
        let retry = envoy_types::pb::envoy::config::route::v3::RetryPolicy {
            retry_on: on.into(),
            num_retries: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 2 }),
            retriable_status_codes: vec![503],
            ..Default::default()
        };
        let metadata = default_policy.then(|| envoy_types::pb::google::protobuf::Struct {
            fields: [(
                "non_idempotent".to_string(),
                envoy_types::pb::google::protobuf::Value {
                    kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
                        "before_send".into(),
                    )),
                },
            )]
            .into_iter()
            .collect(),
        });
        crate::config::retry::retry_policy(retry, metadata.as_ref()).expect("valid policy")
    }

    const ISTIO_DEFAULT: &str =
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

    #[test]
    fn failures_per_condition() {
        let get = Method::GET;
        let p = policy("connect-failure", false);
        assert!(retries_failure(&p, AttemptFailure::ConnectFailure, &get));
        assert!(!retries_failure(
            &p,
            AttemptFailure::Reset { sent: true },
            &get
        ));
        assert!(!retries_failure(&p, AttemptFailure::PerTryTimeout, &get));
        let p = policy("5xx", false);
        for f in [
            AttemptFailure::ConnectFailure,
            AttemptFailure::RefusedStream,
            AttemptFailure::Reset { sent: true },
            AttemptFailure::PerTryTimeout,
        ] {
            assert!(retries_failure(&p, f, &get), "{f:?}");
        }
        assert!(!retries_failure(&p, AttemptFailure::Final, &get));
        let p = policy("reset-before-request", false);
        assert!(retries_failure(
            &p,
            AttemptFailure::Reset { sent: false },
            &get
        ));
        assert!(!retries_failure(
            &p,
            AttemptFailure::Reset { sent: true },
            &get
        ));
    }

    #[test]
    fn responses_per_condition() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let p = policy("gateway-error", false);
        assert!(retries_response(&p, StatusCode::BAD_GATEWAY, &none, &get));
        assert!(!retries_response(
            &p,
            StatusCode::INTERNAL_SERVER_ERROR,
            &none,
            &get
        ));
        let p = policy("retriable-status-codes", false);
        assert!(retries_response(
            &p,
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            &get
        ));
        assert!(!retries_response(&p, StatusCode::BAD_GATEWAY, &none, &get));
        let p = policy("unavailable", false);
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(retries_response(&p, StatusCode::OK, &grpc, &get));
        grpc.insert("grpc-status", "4".parse().unwrap());
        assert!(!retries_response(&p, StatusCode::OK, &grpc, &get));
        let p = policy("envoy-ratelimited", false);
        let mut limited = HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(retries_response(
            &p,
            StatusCode::TOO_MANY_REQUESTS,
            &limited,
            &get
        ));
    }

    #[test]
    fn istios_default_never_resends_a_post_the_upstream_had() {
        let p = policy(ISTIO_DEFAULT, true);
        let post = Method::POST;
        let none = HeaderMap::new();
        assert!(retries_failure(&p, AttemptFailure::ConnectFailure, &post));
        assert!(retries_failure(&p, AttemptFailure::RefusedStream, &post));
        assert!(!retries_response(
            &p,
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            &post
        ));
        assert!(retries_response(
            &p,
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            &Method::GET
        ));
        assert!(retries_response(
            &p,
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            &Method::PUT
        ));
        // The same conditions asked for by the user: the POST is resent.
        let p = policy(ISTIO_DEFAULT, false);
        assert!(retries_response(
            &p,
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            &post
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy("5xx", false);
        for _ in 0..200 {
            assert!(backoff(&p, 1) < Duration::from_millis(25));
            assert!(backoff(&p, 3) < Duration::from_millis(100));
            assert!(backoff(&p, 30) < Duration::from_millis(250));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(&p, 2)).collect();
        assert!(spread.len() > 10, "jittered");
    }
}
