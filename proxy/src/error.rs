//! Data-path errors and their ONE mapping to an HTTP status, an Envoy response flag and a body.
//!
//! ```text
//!  router ─┐
//!  balancer├─► ProxyError ─► (status, flag, body) ─► local reply + x-weft-response-flags
//!  upstream┘
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::upstream::UpstreamError;

/// Header carrying the Envoy response flag of a locally generated reply.
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
    #[error("connect to {endpoint} failed: {source}")]
    ConnectFailure {
        endpoint: std::net::SocketAddr,
        #[source]
        source: UpstreamError,
    },
    #[error("upstream {endpoint} closed the connection before sending headers: {source}")]
    UpstreamTerminated {
        endpoint: std::net::SocketAddr,
        #[source]
        source: UpstreamError,
    },
    #[error("upstream {endpoint} reset the request: {source}")]
    UpstreamReset {
        endpoint: std::net::SocketAddr,
        #[source]
        source: UpstreamError,
    },
    #[error("upstream {endpoint} did not send response headers within {timeout:?}")]
    Timeout {
        endpoint: std::net::SocketAddr,
        timeout: std::time::Duration,
    },
    #[error("request could not be forwarded: {0}")]
    BadRequest(&'static str),
}

impl ProxyError {
    /// The single mapping from an error to what the client sees: status, Envoy flag, body.
    pub fn reply_parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::NoListener | Self::NoRouteConfig(_) | Self::NoRoute => (
                StatusCode::NOT_FOUND,
                "NR",
                "no route matched the request\n",
            ),
            Self::NoCluster { status, .. } => (*status, "NC", "no configured cluster\n"),
            Self::NoHealthyUpstream(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UH",
                "no healthy upstream\n",
            ),
            Self::ConnectFailure { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UF",
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure\n",
            ),
            Self::UpstreamTerminated { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UC",
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination\n",
            ),
            Self::UpstreamReset { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UR",
                "upstream connect error or disconnect/reset before headers. reset reason: remote reset\n",
            ),
            Self::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "UT",
                "upstream request timeout\n",
            ),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "DPE", "bad request\n"),
        }
    }

    /// Classifies an upstream failure that happened before the response head.
    pub fn from_upstream(endpoint: std::net::SocketAddr, source: UpstreamError) -> Self {
        match &source {
            UpstreamError::Connect(_) | UpstreamError::NoPool(..) => {
                Self::ConnectFailure { endpoint, source }
            }
            e if e.is_terminated() => Self::UpstreamTerminated { endpoint, source },
            _ => Self::UpstreamReset { endpoint, source },
        }
    }

    /// Builds the local reply for this error.
    pub fn into_response(&self) -> Response<Full<Bytes>> {
        let (status, flag, body) = self.reply_parts();
        let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        headers.insert(RESPONSE_FLAGS_HEADER, HeaderValue::from_static(flag));
        resp
    }
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
        }
    }

    #[test]
    fn no_healthy_upstream_body_names_problem() {
        let (_, _, body) = ProxyError::NoHealthyUpstream("c".into()).reply_parts();
        assert!(body.contains("no healthy upstream"));
    }
}
