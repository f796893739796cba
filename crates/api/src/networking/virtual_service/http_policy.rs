//! VirtualService HTTP policies: retries, fault injection, mirroring and CORS.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_route_duration, validate_http_status};
use crate::de::null_default;
use crate::duration::Duration;
use crate::networking::common::{Destination, Percent, StringMatch};
use crate::validation::{Check, FieldError, Path, Validate, check, validate_regex};

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

/// The status codes Go's `http.StatusText` knows: Istio accepts these in `retryOn`.
const KNOWN_HTTP_STATUSES: &[u16] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];

/// One `retryOn` entry as Istio reads it (no trimming): a policy name or a known status code.
fn is_retry_on_policy(policy: &str) -> bool {
    RETRY_ON_POLICIES.contains(&policy)
        || go_atoi(policy).is_some_and(|c| KNOWN_HTTP_STATUSES.iter().any(|k| i64::from(*k) == c))
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits, nothing else.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Istio's `validateHTTPRetry`, with the CRD's duration rule.
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
        check_route_duration(&path.field("perTryTimeout"), errors, &self.per_try_timeout);
        check_route_duration(&path.field("backoff"), errors, &self.backoff);
        if let Some(r) = self.retry_on.as_deref().filter(|r| !r.is_empty()) {
            for policy in r.split(',').filter(|p| !is_retry_on_policy(p)) {
                path.field("retryOn").push(
                    errors,
                    format!("\"{policy}\" is not a valid retryOn policy"),
                );
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

/// Istio's `validateHTTPFaultInjection`.
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
    /// Exponential delay (Istio refuses it: not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage (Istio does not check its range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
}

/// Istio's `validateHTTPFaultInjectionDelay`, plus the CRD's "one of `fixedDelay` or
/// `exponentialDelay`" and its duration rule.
impl Validate for Delay {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.percentage.validate(&path.field("percentage"), errors);
        if self.fixed_delay.is_some() && self.exponential_delay.is_some() {
            path.push(
                errors,
                "only one of fixedDelay or exponentialDelay may be set",
            );
        }
        check_route_duration(&path.field("fixedDelay"), errors, &self.fixed_delay);
        check_route_duration(
            &path.field("exponentialDelay"),
            errors,
            &self.exponential_delay,
        );
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

/// Istio's `validateHTTPFaultInjectionAbort`, plus the CRD's "at most one of `httpStatus`,
/// `grpcStatus`, `http2Error`". An abort without any is accepted (Istio only warns).
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
        if let Some(s) = self.http_status {
            check(&path.field("httpStatus"), errors, validate_http_status(s));
        }
        if let Some(g) = &self.grpc_status
            && !GRPC_STATUSES.contains(&g.as_str())
        {
            path.field("grpcStatus").push(
                errors,
                format!(
                    "gRPC status \"{g}\" is not supported, use a code name such as \"NOT_FOUND\""
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

/// Istio's `validateHTTPMirrors` for one mirror.
impl Validate for HttpMirrorPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.destination
            .validate(&path.field("destination"), errors);
        check_mirror_percentage(self.percentage.as_ref(), &path.field("percentage"), errors);
    }
}

/// A mirror share (`mirrorPercentage`, `mirrors[].percentage`): Istio only checks 0..=100
/// (not the 0.0001 floor of other percentages).
pub(super) fn check_mirror_percentage(
    percentage: Option<&Percent>,
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let Some(v) = percentage.map(|p| p.value) else {
        return;
    };
    if v > 100.0 {
        path.field("value").push(
            errors,
            format!("mirror percentage must have a max value of 100 (it has {v})"),
        );
    } else if v < 0.0 {
        path.field("value").push(
            errors,
            format!("mirror percentage must have a min value of 0 (it has {v})"),
        );
    }
}

/// What to do with CORS preflights that do not match the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default (forward).
    #[serde(rename = "UNSPECIFIED")]
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

/// Istio's `ValidateCORSHTTPHeaderName`: `*` or an HTTP token.
fn validate_cors_header(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name == "*" || name.bytes().all(token) {
        Ok(())
    } else {
        Err(format!("header name \"{name}\" is not a valid header name"))
    }
}

/// Istio's `validateCORSPolicy`, with the CRD's duration rule on `maxAge`.
impl Validate for CorsPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let op = path.field("allowOrigins");
        for (i, o) in self.allow_origins.iter().enumerate() {
            let p = op.index(i);
            let pattern = match o {
                StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Regex(s) => s,
                StringMatch::Present => "",
            };
            if pattern.is_empty() {
                p.push(
                    errors,
                    "'' is not a valid match type for CORS allow origins: set a non-empty exact, prefix or regex",
                );
            } else if let StringMatch::Regex(re) = o {
                check(&p.field("regex"), errors, validate_regex(re));
            }
        }
        let mp = path.field("allowMethods");
        for (i, m) in self.allow_methods.iter().enumerate() {
            if !HTTP_METHODS.contains(&m.as_str()) {
                mp.index(i)
                    .push(errors, format!("\"{m}\" is not a supported HTTP method"));
            }
        }
        for (field, list) in [
            ("allowHeaders", &self.allow_headers),
            ("exposeHeaders", &self.expose_headers),
        ] {
            let fp = path.field(field);
            for (i, h) in list.iter().enumerate() {
                check(&fp.index(i), errors, validate_cors_header(h));
            }
        }
        let p = path.field("maxAge");
        check_route_duration(&p, errors, &self.max_age);
        if let Some(m) = &self.max_age
            && m.0.subsec_nanos() > 0
        {
            p.push(errors, "maxAge is accurate only to seconds precision");
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
            "must be a valid duration greater than 1ms",
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
        // Istio does not check the deprecated integer percent.
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percent: 120}}}]",
        );
        // An abort without an error type: Istio only warns.
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {percentage: {value: 1}}}}]",
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
            "max value of 100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirrors: [{destination: {host: b}, percentage: {value: 200}}]}]",
            "spec.http[0].mirrors[0].percentage.value",
            "max value of 100",
        );
    }

    #[test]
    fn retry_on_is_read_as_istio_does() {
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: 1, retryOn: '418,503,reset'}}]",
        );
        for bad in ["599", "5xx, reset", "5xx,"] {
            assert_err(
                &format!(
                    "hosts: [a]\nhttp: [{{route: [{{destination: {{host: a}}}}], retries: {{attempts: 1, retryOn: '{bad}'}}}}]"
                ),
                "spec.http[0].retries.retryOn",
                "is not a valid retryOn policy",
            );
        }
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
