//! Data-path errors and their ONE mapping to an HTTP status, an Envoy response flag and a body.
//!
//! ```text
//!  filters ┐ (RbacDenied: 403 RBAC; JwtDenied: 401, www-authenticate, no flag;
//!          │  RateLimited: 429 RL local_rate_limited, x-envoy-ratelimited)
//!  router ─┤
//!  balancer├─► ProxyError ─► (status, flags, body) ─► local reply: ResponseFlags in its
//!  upstream┘      │                                    extensions + x-weft-response-flags
//!                 └─ Upstream { failure: UF │ UC │ UR │ UPE │ DPE }, Timeout (UT), StreamIdle (SI),
//!                    UpgradeOverHttp2 (503, no flag); RetriesExhausted adds URX, Flagged DI
//!  after the response head (upstream/body.rs): Failure / SI ─► flags ─► log, downstream reset
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::authn::JwtError;
use crate::upstream::{Failure, UpstreamError};

pub use crate::response_flags::ResponseFlags;

/// Header carrying the Envoy response flags of a locally generated reply (as in its
/// [`ResponseFlags`] extension).
pub const RESPONSE_FLAGS_HEADER: &str = "x-weft-response-flags";

/// Why the proxy answered a request itself instead of returning the upstream's response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no listener configuration for this connection")]
    NoListener,
    #[error("route configuration {0:?} has not been received")]
    NoRouteConfig(String),
    #[error("no virtual host or route matches the request")]
    NoRoute,
    #[error("cluster {name:?} is not configured")]
    NoCluster { name: String, status: StatusCode },
    #[error("cluster {0:?} has no healthy endpoint")]
    NoHealthyUpstream(String),
    /// The exchange with `endpoint` failed before the response head (see [`Failure`]).
    #[error("request to upstream {endpoint} failed ({}): {source}", failure.reason())]
    Upstream {
        endpoint: std::net::SocketAddr,
        failure: Failure,
        #[source]
        source: UpstreamError,
    },
    #[error("upstream {endpoint} did not send response headers within {timeout:?}")]
    Timeout {
        endpoint: std::net::SocketAddr,
        timeout: std::time::Duration,
    },
    /// The stream idle timeout: nothing moved in either direction for `timeout`.
    #[error("no activity on the request for {timeout:?} (stream idle timeout) while waiting for {}", if *request_complete { "the upstream's response" } else { "the downstream's request body" })]
    StreamIdle {
        timeout: std::time::Duration,
        /// Whether the downstream request had been received in full (Envoy: 504, else 408).
        request_complete: bool,
    },
    #[error("request could not be forwarded: {0}")]
    BadRequest(&'static str),
    /// An HTTP/1.1 upgrade (WebSocket) routed to a cluster whose upstream protocol is HTTP/2:
    /// an h2 connection cannot carry an h1 upgrade (that would take RFC 8441's extended CONNECT).
    #[error(
        "cluster {cluster:?} speaks HTTP/2 only: an HTTP/1.1 upgrade (WebSocket) cannot be carried to it"
    )]
    UpgradeOverHttp2 { cluster: String },
    /// An RBAC filter denied the request (`policy`: the DENY policy that matched; `None` when
    /// no ALLOW policy did).
    #[error("RBAC: access denied (policy {})", policy.as_deref().unwrap_or("none matched"))]
    RbacDenied { policy: Option<std::sync::Arc<str>> },
    /// Fault injection aborted the request (VirtualService `fault.abort`): `FI`.
    #[error("fault injection: aborted with {}", match grpc_status { Some(g) => format!("gRPC status {g}"), None => format!("HTTP {status}") })]
    FaultAbort {
        status: StatusCode,
        /// `Some`: a gRPC abort (HTTP 200, `grpc-status`, trailers only).
        grpc_status: Option<u32>,
        body: Option<Bytes>,
    },
    /// The last attempt failed with `last` and the retry policy would have retried it, but no
    /// retry was left (attempts, budget, `max_retries`): `last`'s reply with `URX` added.
    #[error("{last} (retries exhausted: {why})")]
    RetriesExhausted {
        last: Box<ProxyError>,
        why: &'static str,
    },
    /// `error`, with more flags than its own (`DI` when fault injection had delayed it).
    #[error("{error}")]
    Flagged {
        error: Box<ProxyError>,
        flags: ResponseFlags,
    },
    /// A local rate limit filter had no token for the request: `RL`, the filter's status
    /// (429) and response headers (`x-envoy-ratelimited: true`), Envoy's body.
    #[error("local rate limit: no token left (status {status})")]
    RateLimited {
        status: StatusCode,
        /// (name, value, append) added to the reply.
        headers: std::sync::Arc<[(http::HeaderName, HeaderValue, bool)]>,
    },
    /// The JWT filter refused the request's token (or its absence).
    #[error("JWT authentication failed: {error}")]
    JwtDenied {
        error: JwtError,
        /// The `www-authenticate` value (`crate::authn::challenge`).
        challenge: HeaderValue,
    },
}

impl Failure {
    /// The single mapping of an upstream exchange's failure to status, Envoy flag and body.
    fn reply_parts(self) -> (StatusCode, ResponseFlags, &'static str) {
        match self {
            Self::ConnectFailure => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure\n",
            ),
            Self::Overflow => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::UPSTREAM_OVERFLOW,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow\n",
            ),
            Self::Terminated => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination\n",
            ),
            Self::Reset => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::UPSTREAM_REMOTE_RESET,
                "upstream connect error or disconnect/reset before headers. reset reason: remote reset\n",
            ),
            Self::UpstreamProtocol => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::UPSTREAM_PROTOCOL_ERROR,
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error\n",
            ),
            Self::DownstreamProtocol => (
                StatusCode::BAD_REQUEST,
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
                "bad request\n",
            ),
        }
    }

    /// The Envoy response flag of this failure.
    pub fn flag(self) -> ResponseFlags {
        self.reply_parts().1
    }

    fn reason(self) -> &'static str {
        match self {
            Self::ConnectFailure => "connection failure",
            Self::Overflow => "overflow (circuit breakers)",
            Self::Terminated => "connection termination",
            Self::Reset => "remote reset",
            Self::UpstreamProtocol => "upstream protocol error",
            Self::DownstreamProtocol => "downstream protocol error in the request body",
        }
    }
}

impl ProxyError {
    /// The single mapping from an error to what the client sees: status, Envoy flags, body.
    pub fn reply_parts(&self) -> (StatusCode, ResponseFlags, &'static str) {
        match self {
            Self::NoListener | Self::NoRouteConfig(_) | Self::NoRoute => (
                StatusCode::NOT_FOUND,
                ResponseFlags::NO_ROUTE_FOUND,
                "no route matched the request\n",
            ),
            Self::NoCluster { status, .. } => (
                *status,
                ResponseFlags::NO_CLUSTER_FOUND,
                "no configured cluster\n",
            ),
            Self::NoHealthyUpstream(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::NO_HEALTHY_UPSTREAM,
                "no healthy upstream\n",
            ),
            Self::Upstream { failure, .. } => failure.reply_parts(),
            Self::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
                "upstream request timeout\n",
            ),
            // Envoy: 504 when the whole request was received (the upstream is the idle side),
            // 408 when the downstream is still to send its body.
            Self::StreamIdle {
                request_complete, ..
            } => (
                if *request_complete {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::REQUEST_TIMEOUT
                },
                ResponseFlags::STREAM_IDLE_TIMEOUT,
                "stream timeout\n",
            ),
            Self::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
                "bad request\n",
            ),
            // 503, not 426: the client asked for the right thing; this proxy's route cannot carry
            // it (no Envoy flag says that).
            Self::UpgradeOverHttp2 { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlags::NONE,
                "upgrade not possible: the upstream cluster speaks HTTP/2 only, which cannot carry an HTTP/1.1 upgrade\n",
            ),
            // Envoy's bodies; a JWT failure has no response flag.
            Self::RbacDenied { .. } => (
                StatusCode::FORBIDDEN,
                ResponseFlags::RBAC_DENIED,
                "RBAC: access denied",
            ),
            Self::JwtDenied { .. } => (
                StatusCode::UNAUTHORIZED,
                ResponseFlags::NONE,
                "Jwt verification fails",
            ),
            Self::FaultAbort { status, .. } => {
                (*status, ResponseFlags::FAULT_INJECTED, "fault filter abort")
            }
            Self::RateLimited { status, .. } => {
                (*status, ResponseFlags::RATE_LIMITED, "local_rate_limited")
            }
            Self::RetriesExhausted { last, .. } => {
                let (status, flag, body) = last.reply_parts();
                (
                    status,
                    flag | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED,
                    body,
                )
            }
            Self::Flagged { error, flags } => {
                let (status, own, body) = error.reply_parts();
                (status, own | *flags, body)
            }
        }
    }

    /// Classifies an upstream failure that happened before the response head.
    /// `downstream_failed`: the request body from downstream failed meanwhile, which is what
    /// tore the exchange down whatever the upstream error says.
    pub fn from_upstream(
        endpoint: std::net::SocketAddr,
        source: UpstreamError,
        downstream_failed: bool,
    ) -> Self {
        let failure = if downstream_failed {
            Failure::DownstreamProtocol
        } else {
            source.failure()
        };
        Self::Upstream {
            endpoint,
            failure,
            source,
        }
    }

    /// `self` with `flags` added to its own (`NONE`: unchanged).
    #[must_use]
    pub fn flagged(self, flags: ResponseFlags) -> Self {
        if flags.is_empty() {
            return self;
        }
        match self {
            Self::Flagged { error, flags: own } => Self::Flagged {
                error,
                flags: own | flags,
            },
            error => Self::Flagged {
                error: Box::new(error),
                flags,
            },
        }
    }

    /// The error under the retry and flag wrappers: what shapes the reply's body.
    fn root(&self) -> &ProxyError {
        match self {
            Self::RetriesExhausted { last, .. } => last.root(),
            Self::Flagged { error, .. } => error.root(),
            error => error,
        }
    }

    /// Builds the local reply for this error, its [`ResponseFlags`] in its extensions.
    pub fn into_response(&self) -> Response<Full<Bytes>> {
        let (status, flags, body) = self.reply_parts();
        let root = self.root();
        let body = match root {
            Self::FaultAbort {
                body: Some(body), ..
            } => body.clone(),
            Self::FaultAbort {
                grpc_status: Some(_),
                ..
            } => Bytes::new(),
            _ => Bytes::from_static(body.as_bytes()),
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        if let Self::FaultAbort {
            grpc_status: Some(code),
            ..
        } = root
        {
            // A trailers-only gRPC response (HTTP 200), as Envoy's fault filter sends it.
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(*code));
            headers.insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
        } else {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
        }
        if !flags.is_empty()
            && let Ok(value) = HeaderValue::from_str(&flags.to_string())
        {
            headers.insert(RESPONSE_FLAGS_HEADER, value);
        }
        if let Self::JwtDenied { challenge, .. } = root {
            headers.insert(http::header::WWW_AUTHENTICATE, challenge.clone());
        }
        if let Self::RateLimited { headers: added, .. } = root {
            for (name, value, append) in added.iter() {
                if *append {
                    headers.append(name.clone(), value.clone());
                } else {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        if !flags.is_empty() {
            resp.extensions_mut().insert(flags);
        }
        resp
    }
}

/// A response failed after its head went downstream: no local reply is possible any more, the
/// downstream stream is reset (h2 RST_STREAM, h1 connection closed). The error goes on carrying
/// its flag ([`FailedAfterHead`]), for the request's metrics; it is logged here.
pub fn reset_after_head(
    flags: ResponseFlags,
    error: Box<dyn std::error::Error + Send + Sync>,
) -> Box<dyn std::error::Error + Send + Sync> {
    tracing::debug!(
        response_flags = %flags,
        error = %error,
        "response failed after its head: resetting the downstream stream"
    );
    Box::new(FailedAfterHead {
        flags,
        source: error,
    })
}

/// A response body's failure after its head, with the flag that says why.
#[derive(Debug, thiserror::Error)]
#[error("response failed after its head ({flags})")]
pub struct FailedAfterHead {
    pub flags: ResponseFlags,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The flag of a response body's failure: its own, or `UR` (the upstream reset it).
pub fn body_failure_flags(error: &(dyn std::error::Error + 'static)) -> ResponseFlags {
    error
        .downcast_ref::<FailedAfterHead>()
        .map_or(ResponseFlags::UPSTREAM_REMOTE_RESET, |f| f.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_matches_envoy_flags() {
        let cases = [
            (ProxyError::NoRoute, 404, "NR"),
            (ProxyError::NoRouteConfig("outbound".into()), 404, "NR"),
            (
                ProxyError::NoCluster {
                    name: "c".into(),
                    status: StatusCode::SERVICE_UNAVAILABLE,
                },
                503,
                "NC",
            ),
            (ProxyError::NoHealthyUpstream("c".into()), 503, "UH"),
            (
                ProxyError::Timeout {
                    endpoint: "127.0.0.1:1".parse().unwrap(),
                    timeout: std::time::Duration::from_secs(1),
                },
                504,
                "UT",
            ),
        ];
        for (err, status, flag) in cases {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status, "{err}");
            assert_eq!(resp.headers()[RESPONSE_FLAGS_HEADER], flag, "{err}");
            // The same flags in the extensions, where the access log reads them.
            assert_eq!(
                resp.extensions()
                    .get::<ResponseFlags>()
                    .map(ToString::to_string),
                Some(flag.to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn upstream_failures_and_stream_idle_match_envoy() {
        let endpoint: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let cases = [
            (Failure::ConnectFailure, 503, "UF", "connection failure"),
            (Failure::Terminated, 503, "UC", "connection termination"),
            (Failure::Reset, 503, "UR", "remote reset"),
            (Failure::UpstreamProtocol, 503, "UPE", "protocol error"),
            (Failure::DownstreamProtocol, 400, "DPE", "bad request"),
        ];
        for (failure, status, flag, body) in cases {
            let err = ProxyError::Upstream {
                endpoint,
                failure,
                source: UpstreamError::NoPool(crate::upstream::Protocol::Http1, endpoint),
            };
            let (s, f, b) = err.reply_parts();
            assert_eq!(
                (s.as_u16(), f.to_string()),
                (status, flag.to_string()),
                "{err}"
            );
            assert!(b.contains(body), "{err}: {b}");
            assert_eq!(failure.flag().to_string(), flag);
        }
        // A failed downstream body is the client's fault whatever the upstream error says.
        let err = ProxyError::from_upstream(
            endpoint,
            UpstreamError::NoPool(crate::upstream::Protocol::Http1, endpoint),
            true,
        );
        assert_eq!(
            err.reply_parts().1,
            ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR
        );
        let err = ProxyError::from_upstream(
            endpoint,
            UpstreamError::NoPool(crate::upstream::Protocol::Http1, endpoint),
            false,
        );
        assert_eq!(
            err.reply_parts().1,
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE
        );

        let idle = |request_complete| ProxyError::StreamIdle {
            timeout: std::time::Duration::from_secs(300),
            request_complete,
        };
        let resp = idle(true).into_response();
        assert_eq!(resp.status().as_u16(), 504);
        assert_eq!(resp.headers()[RESPONSE_FLAGS_HEADER], "SI");
        let resp = idle(false).into_response();
        assert_eq!(resp.status().as_u16(), 408);
        assert_eq!(resp.headers()[RESPONSE_FLAGS_HEADER], "SI");
        assert_eq!(idle(true).reply_parts().2, "stream timeout\n");
    }

    #[test]
    fn rbac_and_jwt_denials_match_envoy() {
        let resp = ProxyError::RbacDenied { policy: None }.into_response();
        assert_eq!(resp.status().as_u16(), 403);
        assert_eq!(resp.headers()[RESPONSE_FLAGS_HEADER], "RBAC");
        assert_eq!(
            ProxyError::RbacDenied { policy: None }.reply_parts().2,
            "RBAC: access denied"
        );
        let err = ProxyError::JwtDenied {
            error: JwtError::Expired,
            challenge: HeaderValue::from_static("Bearer realm=\"http://a/\""),
        };
        assert_eq!(err.reply_parts().2, "Jwt verification fails");
        let resp = err.into_response();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(resp.headers().get(RESPONSE_FLAGS_HEADER).is_none());
        assert_eq!(
            resp.headers()[http::header::WWW_AUTHENTICATE],
            "Bearer realm=\"http://a/\""
        );
    }

    #[test]
    fn an_upgrade_to_an_h2_only_cluster_is_503_without_flag() {
        let err = ProxyError::UpgradeOverHttp2 {
            cluster: "outbound|9080||grpc".into(),
        };
        let resp = err.into_response();
        assert_eq!(resp.status().as_u16(), 503);
        assert!(resp.headers().get(RESPONSE_FLAGS_HEADER).is_none());
        assert!(err.reply_parts().2.contains("HTTP/2 only"));
        assert!(err.to_string().contains("outbound|9080||grpc"));
    }

    #[test]
    fn no_healthy_upstream_body_names_problem() {
        let (_, _, body) = ProxyError::NoHealthyUpstream("c".into()).reply_parts();
        assert!(body.contains("no healthy upstream"));
    }

    #[test]
    fn wrappers_add_flags_and_keep_the_root_reply() {
        let abort = ProxyError::FaultAbort {
            status: StatusCode::from_u16(418).unwrap(),
            grpc_status: None,
            body: Some(Bytes::from_static(b"teapot")),
        };
        let delayed = abort.flagged(ResponseFlags::DELAY_INJECTED);
        let resp = delayed.into_response();
        assert_eq!(resp.status().as_u16(), 418);
        assert_eq!(resp.headers()[RESPONSE_FLAGS_HEADER], "DI,FI");
        assert_eq!(
            resp.extensions().get::<ResponseFlags>(),
            Some(&(ResponseFlags::DELAY_INJECTED | ResponseFlags::FAULT_INJECTED))
        );
        // Retries exhausted on a delayed request: all three, the last attempt's status.
        let endpoint: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let exhausted = ProxyError::RetriesExhausted {
            last: Box::new(ProxyError::Upstream {
                endpoint,
                failure: Failure::ConnectFailure,
                source: UpstreamError::NoPool(crate::upstream::Protocol::Http1, endpoint),
            }),
            why: "attempts",
        }
        .flagged(ResponseFlags::DELAY_INJECTED);
        let (status, flags, _) = exhausted.reply_parts();
        assert_eq!(
            (status.as_u16(), flags.to_string().as_str()),
            (503, "UF,DI,URX")
        );
        // Flagging nothing changes nothing.
        let plain = ProxyError::NoRoute.flagged(ResponseFlags::NONE);
        assert!(matches!(plain, ProxyError::NoRoute));
    }
}
