//! The bookinfo roles' calls to each other: where an upstream is, which request headers travel
//! along (trace propagation, as Istio's bookinfo apps do it) and one HTTP/1.1 GET per call.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpStream;

/// The request headers productpage and reviews copy onto their upstream calls, exactly as
/// received: the tracing systems' context headers plus the ones routing rules match on.
pub const PROPAGATED: [&str; 20] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
];

/// Where a role finds one of its upstreams: a name the system resolver looks up at request
/// time (so /etc/hosts and cluster DNS both work) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl Upstream {
    /// `host:port`, with an IPv6 literal in brackets: what is dialled and sent as `Host`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The headers of `received` that travel on, every value of each, in [`PROPAGATED`] order.
pub fn propagated(received: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    PROPAGATED
        .into_iter()
        .flat_map(|name| {
            received
                .get_all(name)
                .iter()
                .map(|value| (HeaderName::from_static(name), value.clone()))
        })
        .collect()
}

/// The propagated headers as a JSON object (name to value, repeated values joined by ", "):
/// what a role reports it received, so a test or a human can follow a trace end to end.
pub fn trace_report(headers: &[(HeaderName, HeaderValue)]) -> Value {
    let mut report = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match report.get_mut(name.as_str()) {
            Some(Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(&value);
            }
            _ => {
                report.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    Value::Object(report)
}

/// An upstream's answer.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    /// `<service>-<version>` from the `x-weft-service` and `x-weft-version` headers.
    pub served_by: Option<String>,
    pub body: Bytes,
}

/// One GET of `path` on a new connection to `upstream`, with `Host: host:port` and `headers`,
/// all of it (resolve, connect, request, body) within `timeout`.
pub async fn get(
    upstream: &Upstream,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> anyhow::Result<Fetched> {
    let authority = upstream.authority();
    tokio::time::timeout(timeout, get_unbounded(&authority, path, headers))
        .await
        .map_err(|_| anyhow!("GET http://{authority}{path}: no answer within {timeout:?}"))?
        .with_context(|| format!("GET http://{authority}{path}"))
}

async fn get_unbounded(
    authority: &str,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> anyhow::Result<Fetched> {
    // Through an HTTP proxy when the environment names one (as most HTTP clients do): a
    // sidecar's outbound listener in explicit mode, where nothing captures the app's traffic.
    let proxy = http_proxy()?;
    let (dial, target) = match &proxy {
        Some(proxy) => (proxy.as_str(), format!("http://{authority}{path}")),
        None => (authority, path.to_owned()),
    };
    let stream = TcpStream::connect(dial)
        .await
        .with_context(|| format!("cannot connect to {dial}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake failed")?;
    // The connection task ends when `sender` is dropped (or the peer closes).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::get(target).header(http::header::HOST, authority);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .context("cannot build the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("request failed")?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let served_by = match (header("x-weft-service"), header("x-weft-version")) {
        (Some(service), Some(version)) => Some(format!("{service}-{version}")),
        _ => None,
    };
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the response body failed")?
        .to_bytes();
    Ok(Fetched {
        status,
        served_by,
        body,
    })
}

/// The `host:port` of `HTTP_PROXY` (or `http_proxy`), when set and not empty.
fn http_proxy() -> anyhow::Result<Option<String>> {
    let Some(value) = ["HTTP_PROXY", "http_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    else {
        return Ok(None);
    };
    parse_proxy(&value).map(Some)
}

fn parse_proxy(value: &str) -> anyhow::Result<String> {
    let rest = value.strip_prefix("http://").unwrap_or(value);
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        bail!("HTTP_PROXY={value:?}: expected http://HOST:PORT");
    }
    Ok(authority.to_owned())
}

/// [`get`], where only a 2xx answer with a JSON body counts (as Istio's apps, which treat
/// anything but 200 as the upstream being unavailable).
pub async fn get_json(
    upstream: &Upstream,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> anyhow::Result<(Fetched, Value)> {
    let reply = get(upstream, path, headers, timeout).await?;
    if !reply.status.is_success() {
        bail!(
            "GET http://{}{path}: status {}",
            upstream.authority(),
            reply.status
        );
    }
    let json = serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "GET http://{}{path}: the answer is not JSON",
            upstream.authority()
        )
    })?;
    Ok((reply, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_headers_travel_and_all_their_values() {
        let mut received = HeaderMap::new();
        received.insert("x-request-id", HeaderValue::from_static("req-1"));
        received.insert("X-B3-TraceId", HeaderValue::from_static("abc"));
        received.append("cookie", HeaderValue::from_static("a=1"));
        received.append("cookie", HeaderValue::from_static("b=2"));
        received.insert("host", HeaderValue::from_static("productpage:9080"));
        received.insert("content-length", HeaderValue::from_static("0"));
        received.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        received.insert("x-weft-version", HeaderValue::from_static("v9"));
        let travels = propagated(&received);
        let names: Vec<_> = travels.iter().map(|(n, v)| (n.as_str(), v)).collect();
        assert_eq!(
            names,
            vec![
                ("x-request-id", &HeaderValue::from_static("req-1")),
                ("x-b3-traceid", &HeaderValue::from_static("abc")),
                ("cookie", &HeaderValue::from_static("a=1")),
                ("cookie", &HeaderValue::from_static("b=2")),
            ]
        );
    }

    #[test]
    fn every_listed_header_travels() {
        let mut received = HeaderMap::new();
        for name in PROPAGATED {
            received.insert(name, HeaderValue::from_static("v"));
        }
        assert_eq!(propagated(&received).len(), PROPAGATED.len());
    }

    #[test]
    fn the_report_names_each_header_once() {
        let headers = [
            (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("r"),
            ),
            (
                HeaderName::from_static("cookie"),
                HeaderValue::from_static("a=1"),
            ),
            (
                HeaderName::from_static("cookie"),
                HeaderValue::from_static("b=2"),
            ),
        ];
        assert_eq!(
            trace_report(&headers),
            serde_json::json!({"x-request-id": "r", "cookie": "a=1, b=2"})
        );
    }

    #[test]
    fn http_proxy_values_are_read_as_host_and_port() {
        assert_eq!(
            parse_proxy("http://127.0.0.1:15001").expect("ok"),
            "127.0.0.1:15001"
        );
        assert_eq!(
            parse_proxy("http://sidecar:15001/").expect("ok"),
            "sidecar:15001"
        );
        assert_eq!(
            parse_proxy("127.0.0.1:15001").expect("ok"),
            "127.0.0.1:15001"
        );
        for bad in ["http://", "http://host", "http://host:1/path"] {
            let err = parse_proxy(bad).expect_err(bad).to_string();
            assert!(err.contains("expected http://HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let v6 = Upstream {
            host: "::1".into(),
            port: 9080,
        };
        assert_eq!(v6.authority(), "[::1]:9080");
        let name = Upstream {
            host: "details.default.svc".into(),
            port: 9080,
        };
        assert_eq!(name.authority(), "details.default.svc:9080");
    }
}
