//! VirtualService HTTP policies: retries, fault injection, mirroring and CORS.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::duration::Duration;
use crate::networking::common::{Destination, Percent, StringMatch};
use crate::validation::{
    FieldError, Path, Validate, check, check_duration, validate_cors_header_name,
    validate_percent_int,
};

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries; 0 disables retries.
    #[serde(default)]
    pub attempts: i32,
    /// Timeout per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated retry conditions (Envoy `x-envoy-retry-on` values or status codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Retry in other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the exponential back-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

impl Validate for HttpRetry {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.attempts < 0 {
            path.field("attempts")
                .push(errors, "attempts cannot be negative");
        }
        if self.attempts == 0
            && (self.per_try_timeout.is_some()
                || self.retry_on.as_deref().is_some_and(|r| !r.is_empty())
                || self.retry_remote_localities.is_some())
        {
            path.field("attempts").push(
                errors,
                "http retry policy configured when attempts are set to 0 (disabled)",
            );
        }
        check_duration(&path.field("perTryTimeout"), errors, &self.per_try_timeout);
        check_duration(&path.field("backoff"), errors, &self.backoff);
        if let Some(r) = self.retry_on.as_deref().filter(|r| !r.is_empty()) {
            for policy in r.split(',') {
                let policy = policy.trim();
                let is_status = policy
                    .parse::<u16>()
                    .is_ok_and(|c| (100..=599).contains(&c));
                if !is_status && !RETRY_ON_POLICIES.contains(&policy) {
                    path.field("retryOn")
                        .push(errors, format!("{policy:?} is not a valid retryOn policy"));
                }
            }
        }
    }
}

/// Fault injection: delays and/or aborts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Abort requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

impl Validate for HttpFaultInjection {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.delay.is_none() && self.abort.is_none() {
            path.push(
                errors,
                "HTTP fault injection must have an abort and/or a delay",
            );
        }
        self.delay.validate(&path.field("delay"), errors);
        self.abort.validate(&path.field("abort"), errors);
    }
}

/// Fault delay.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// Fixed delay before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<Duration>,
    /// Exponential delay (not supported by Istio yet; rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
}

impl Validate for Delay {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.percentage.validate(&path.field("percentage"), errors);
        if let Some(p) = self.percent {
            check(
                &path.field("percent"),
                errors,
                validate_percent_int(i64::from(p)),
            );
        }
        if self.fixed_delay.is_some() && self.exponential_delay.is_some() {
            path.push(
                errors,
                "only one of fixedDelay or exponentialDelay may be set",
            );
        }
        check_duration(&path.field("fixedDelay"), errors, &self.fixed_delay);
        if self.exponential_delay.is_some() {
            path.field("exponentialDelay")
                .push(errors, "exponentialDelay not supported yet");
        }
    }
}

const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The numeric code of a gRPC status name (`UNAVAILABLE` → 14).
pub fn grpc_status_code(name: &str) -> Option<u32> {
    GRPC_STATUSES
        .iter()
        .position(|s| *s == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// Fault abort.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// HTTP status to return, 200..=599.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// gRPC status name to return (e.g. `UNAVAILABLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// HTTP/2 error (not supported by Istio yet; rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

impl Validate for Abort {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.percentage.validate(&path.field("percentage"), errors);
        let set = usize::from(self.http_status.is_some())
            + usize::from(self.grpc_status.is_some())
            + usize::from(self.http2_error.is_some());
        if set > 1 {
            path.push(
                errors,
                "only one of httpStatus, grpcStatus or http2Error may be set",
            );
        }
        if set == 0 {
            path.push(errors, "abort must set httpStatus or grpcStatus");
        }
        if let Some(s) = self.http_status
            && !(200..=599).contains(&s)
        {
            path.field("httpStatus")
                .push(errors, format!("HTTP status {s} is not in range 200-599"));
        }
        if let Some(g) = &self.grpc_status
            && !GRPC_STATUSES.contains(&g.as_str())
        {
            path.field("grpcStatus").push(
                errors,
                format!(
                    "gRPC status {g:?} is not supported, use a code name such as \"NOT_FOUND\""
                ),
            );
        }
        if self.http2_error.is_some() {
            path.field("http2Error")
                .push(errors, "HTTP/2 abort fault injection not supported yet");
        }
    }
}

/// Mirror to a destination, with an optional share.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Mirror destination.
    #[serde(default)]
    pub destination: Destination,
    /// Share of traffic mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

impl Validate for HttpMirrorPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.destination
            .validate(&path.field("destination"), errors);
        self.percentage.validate(&path.field("percentage"), errors);
    }
}

/// What to do with CORS preflights that do not match the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default (forward).
    UnspecifiedPreflights,
    /// Forward to the upstream.
    Forward,
    /// Answer without forwarding.
    Ignore,
}

/// Cross-origin resource sharing policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Allowed origins.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated exact-match origins.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_origin: Vec<String>,
    /// Allowed methods.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_headers: Vec<String>,
    /// Headers the browser may read.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose_headers: Vec<String>,
    /// Preflight cache duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Allow credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Handling of unmatched preflights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

impl Validate for CorsPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let op = path.field("allowOrigins");
        for (i, o) in self.allow_origins.iter().enumerate() {
            let p = op.index(i);
            let empty = match o {
                StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Regex(s) => {
                    s.is_empty()
                }
                StringMatch::Present => true,
            };
            if empty {
                p.push(
                    errors,
                    "allowOrigins entries must set a non-empty exact, prefix or regex",
                );
            } else {
                o.validate_optional(&p, errors);
            }
        }
        let mp = path.field("allowMethods");
        for (i, m) in self.allow_methods.iter().enumerate() {
            if !HTTP_METHODS.contains(&m.as_str()) {
                mp.index(i)
                    .push(errors, format!("{m:?} is not a supported HTTP method"));
            }
        }
        for (field, list) in [
            ("allowHeaders", &self.allow_headers),
            ("exposeHeaders", &self.expose_headers),
        ] {
            let fp = path.field(field);
            for (i, h) in list.iter().enumerate() {
                check(&fp.index(i), errors, validate_cors_header_name(h));
            }
        }
        if let Some(m) = &self.max_age {
            let p = path.field("maxAge");
            check(&p, errors, crate::validation::validate_duration(m));
            if m.0.subsec_nanos() > 0 {
                p.push(errors, "maxAge is accurate only to seconds precision");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok, errors_of, paths};

    #[test]
    fn retries_faults_mirrors() {
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], timeout: 10s, retries: {attempts: 3, perTryTimeout: 2s, retryOn: '5xx,connect-failure,503'}}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: -1}}]",
            "spec.http[0].retries.attempts",
            "negative",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: 1, perTryTimeout: 0s}}]",
            "spec.http[0].retries.perTryTimeout",
            "at least 1ms",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: 1, retryOn: 'bogus'}}]",
            "spec.http[0].retries.retryOn",
            "not a valid retryOn",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {}}]",
            "spec.http[0].fault",
            "abort and/or a delay",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 700, percentage: {value: 101}}}}]",
            "spec.http[0].fault.abort.httpStatus",
            "200-599",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 500, percentage: {value: 101}}}}]",
            "spec.http[0].fault.abort.percentage.value",
            "0..100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percentage: {value: -1}}}}]",
            "spec.http[0].fault.delay.percentage.value",
            "0..100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percent: 120}}}]",
            "spec.http[0].fault.delay.percent",
            "0..100",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percentage: {value: 10}}, abort: {grpcStatus: UNAVAILABLE}}}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {grpcStatus: NOPE}}}]",
            "spec.http[0].fault.abort.grpcStatus",
            "not supported",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror: {host: b}, mirrorPercentage: {value: 200}}]",
            "spec.http[0].mirrorPercentage.value",
            "0..100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirrors: [{destination: {host: b}, percentage: {value: 200}}]}]",
            "spec.http[0].mirrors[0].percentage.value",
            "0..100",
        );
    }

    #[test]
    fn cors() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], corsPolicy: {allowOrigins: [{}], allowMethods: [FETCH], allowHeaders: ['a b'], maxAge: 1.5s}}]",
            "spec.http[0].corsPolicy.allowOrigins[0]",
            "non-empty",
        );
        let errs = errors_of(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], corsPolicy: {allowOrigins: [{}], allowMethods: [FETCH], allowHeaders: ['a b'], maxAge: 1.5s}}]",
        );
        assert_eq!(
            paths(&errs),
            [
                "spec.http[0].corsPolicy.allowOrigins[0]",
                "spec.http[0].corsPolicy.allowMethods[0]",
                "spec.http[0].corsPolicy.allowHeaders[0]",
                "spec.http[0].corsPolicy.maxAge"
            ]
        );
    }
}
