//! DestinationRule connection pools: TCP and HTTP limits, keep-alive, HTTP/2 upgrade.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_min_duration, check_ms_duration, check_whole_ms};
use crate::de::is_false;
use crate::duration::{AnyDuration, Duration};
use crate::validation::{FieldError, Path, Validate};

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
    /// Idle timeout for TCP connections (`0s` disables it: no 1 ms floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<AnyDuration>")]
    pub idle_timeout: Option<Duration>,
}

impl Validate for TcpSettings {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.max_connections.is_some_and(|m| m < 0) {
            path.field("maxConnections")
                .push(errors, "max connections must be non-negative");
        }
        check_ms_duration(&path.field("connectTimeout"), errors, &self.connect_timeout);
        check_ms_duration(
            &path.field("maxConnectionDuration"),
            errors,
            &self.max_connection_duration,
        );
        // No CEL rule here, and Istio skips values under 1ms: `0s` disables the timeout.
        if let Some(d) = &self.idle_timeout
            && d.0 >= std::time::Duration::from_millis(1)
        {
            check_whole_ms(&path.field("idleTimeout"), errors, d);
        }
        if let Some(k) = &self.tcp_keepalive {
            let kp = path.field("tcpKeepalive");
            check_ms_duration(&kp.field("time"), errors, &k.time);
            check_ms_duration(&kp.field("interval"), errors, &k.interval);
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
    /// HTTP/2 PING frames on upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

/// HTTP/2 PING settings (`connectionPool.http.http2KeepAlive`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionKeepalive {
    /// Send a PING at this interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long to wait for the PING's answer before closing the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
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
        check_ms_duration(&path.field("idleTimeout"), errors, &self.idle_timeout);
        if let Some(k) = &self.http2_keep_alive {
            // Only the CEL rule: Istio's Go validation does not look at these.
            let kp = path.field("http2KeepAlive");
            check_min_duration(&kp.field("interval"), errors, &k.interval);
            check_min_duration(&kp.field("timeout"), errors, &k.timeout);
        }
        if self.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) && self.use_client_protocol {
            path.field("useClientProtocol").push(
                errors,
                "use client protocol must not be true when h2UpgradePolicy is UPGRADE",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_err;

    #[test]
    fn pools() {
        assert_err(
            "host: a\ntrafficPolicy: {connectionPool: {http: {maxRetries: -1}}}",
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "non-negative",
        );
    }
}
