//! Forwarding to an upstream: cluster pick, endpoint pick, header rewrite, pooled send with the route timeout.
//!
//! ```text
//!  ForwardAction ─► weighted pick ─► Cluster ─► Balancer::pick ─► InFlight
//!     ─► request: absolute URI to endpoint, strip hop-by-hop, Host kept/rewritten, x-request-id, header ops
//!     ─► Client (h1 | h2c pool) under timeout ─► response: strip hop-by-hop, header ops, streamed body
//! ```

use std::fmt::Write as _;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction as A;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{self, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use rand::RngExt;

use super::body::{ProxyBody, UpstreamBody};
use super::{Levels, request_authority};
use crate::config::{
    ClusterPick, ForwardAction, HeaderOps, Listener, PathMatch, ProxyConfig, Redirect, RouteMatch,
};
use crate::error::ProxyError;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

pub(super) async fn forward(
    config: &ProxyConfig,
    listener: &Listener,
    levels: &Levels<'_>,
    action: &ForwardAction,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (cluster_name, weighted) = match &action.clusters {
        ClusterPick::Single(name) => (name.as_str(), None),
        pick @ ClusterPick::Weighted { total, .. } => {
            pick.pick(rand::rng().random_range(0..*total))
        }
    };
    let cluster = config
        .clusters
        .get(cluster_name)
        .ok_or_else(|| ProxyError::NoCluster {
            name: cluster_name.to_string(),
            status: action.cluster_not_found,
        })?;
    let endpoint = cluster
        .balancer
        .pick(&mut rand::rng())
        .ok_or_else(|| ProxyError::NoHealthyUpstream(cluster_name.to_string()))?;
    let downstream_version = req.version();
    let downstream_h2 = downstream_version == Version::HTTP_2;
    let client = cluster
        .client(downstream_h2)
        .ok_or(ProxyError::BadRequest("no client for cluster protocol"))?;
    let upstream_h2 = cluster.uses_http2(downstream_h2);

    let authority = request_authority(&req);
    let host = match &action.host_rewrite {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(authority)
            .map_err(|_| ProxyError::BadRequest("invalid authority"))?,
    };
    let (mut parts, body) = req.into_parts();
    let path_and_query = rewritten_path(
        &parts.uri,
        action.prefix_rewrite.as_deref(),
        &levels.route.matcher,
    )?;
    let mut uri_parts = uri::Parts::default();
    uri_parts.scheme = Some(Scheme::HTTP);
    uri_parts.authority = Some(endpoint.authority.clone());
    uri_parts.path_and_query = Some(path_and_query);
    parts.uri =
        Uri::from_parts(uri_parts).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    parts.version = if upstream_h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    strip_hop_by_hop(&mut parts.headers, true);
    parts.headers.insert(header::HOST, host);
    if listener.generate_request_id && !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(X_REQUEST_ID.clone(), request_id());
    }
    levels.apply_request(weighted.map(|w| &w.request_headers), &mut parts.headers);

    let guard = endpoint.start_request();
    let send = client.request(Request::from_parts(parts, body));
    let result = match action.timeout {
        Some(t) => tokio::time::timeout(t, send)
            .await
            .map_err(|_| ProxyError::Timeout {
                endpoint: endpoint.addr,
                timeout: t,
            })?,
        None => send.await,
    };
    let resp = result.map_err(|e| ProxyError::from_client(endpoint.addr, e))?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    parts.version = if downstream_h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    levels.apply_response(weighted.map(|w| &w.response_headers), &mut parts.headers);
    Ok(Response::from_parts(
        parts,
        Either::Left(UpstreamBody::new(body, guard)),
    ))
}

/// Applies `prefix_rewrite` (replacing the matched prefix or path) and keeps the query.
fn rewritten_path(
    uri: &Uri,
    rewrite: Option<&str>,
    m: &RouteMatch,
) -> Result<PathAndQuery, ProxyError> {
    let original = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let Some(rewrite) = rewrite else {
        return Ok(original);
    };
    let matched_len = match &m.path {
        PathMatch::Prefix(p) | PathMatch::Exact(p) | PathMatch::SeparatedPrefix(p) => p.len(),
        PathMatch::Regex(_) => return Ok(original),
    };
    let path = original.path();
    let mut out = String::with_capacity(original.as_str().len() + rewrite.len());
    out.push_str(rewrite);
    out.push_str(path.get(matched_len..).unwrap_or(""));
    if let Some(q) = original.query() {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out).map_err(|_| ProxyError::BadRequest("rewritten path is invalid"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named by `Connection`.
/// `te: trailers` survives on requests.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, request: bool) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .filter(|n| !(request && *n == header::TE))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let keep_te = request
        && headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    headers.remove(header::TE);
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Applies one level of header mutations: removals, then additions.
pub(crate) fn apply_header_ops(ops: &HeaderOps, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for add in &ops.add {
        if add.value.is_empty() && !add.keep_empty {
            continue;
        }
        match add.action {
            A::AppendIfExistsOrAdd => {
                headers.append(add.name.clone(), add.value.clone());
            }
            A::AddIfAbsent => {
                if !headers.contains_key(&add.name) {
                    headers.insert(add.name.clone(), add.value.clone());
                }
            }
            A::OverwriteIfExistsOrAdd => {
                headers.insert(add.name.clone(), add.value.clone());
            }
            A::OverwriteIfExists => {
                if headers.contains_key(&add.name) {
                    headers.insert(add.name.clone(), add.value.clone());
                }
            }
        }
    }
}

/// A random UUID v4 for `x-request-id`, formatted on the stack (this runs per request).
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = rand::rng().random();
    let v = (v & !(0xf000 << 64) | (0x4000 << 64)) & !(0xc000 << 48) | (0x8000 << 48);
    let mut id = [b'-'; 36];
    let mut nibble = 32;
    for (i, out) in id.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *out = HEX[((v >> (nibble * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Builds the redirect response (`Location`) for a redirect action.
pub(super) fn redirect<B>(
    r: &Redirect,
    m: &RouteMatch,
    req: &Request<B>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let original_scheme = req.uri().scheme_str().unwrap_or("http");
    let scheme = r.scheme.as_deref().unwrap_or(original_scheme);
    let authority = request_authority(req);
    let (orig_host, orig_port) = split_host_port(authority);
    let (host, mut port) = match &r.host {
        Some(h) => {
            let (h, p) = split_host_port(h);
            (h, p)
        }
        None => (orig_host, orig_port),
    };
    if let Some(p) = r.port {
        port = Some(p);
    } else if r.scheme.is_some() && r.host.is_none() {
        // Scheme change without explicit port: drop the old port (Envoy does likewise for https).
        port = None;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let mut location = String::with_capacity(64);
    let _ = write!(location, "{scheme}://{host}");
    if let Some(p) = port.filter(|&p| p != default_port) {
        let _ = write!(location, ":{p}");
    }
    let pq = match &r.path {
        Some(p) => {
            location.push_str(p);
            None
        }
        None => Some(rewritten_path(req.uri(), r.prefix_rewrite.as_deref(), m)?),
    };
    if let Some(pq) = pq {
        location.push_str(pq.path());
        if let Some(q) = pq.query().filter(|_| !r.strip_query) {
            location.push('?');
            location.push_str(q);
        }
    } else if !r.strip_query
        && !r.path.as_deref().unwrap_or("").contains('?')
        && let Some(q) = req.uri().query()
    {
        location.push('?');
        location.push_str(q);
    }
    let location = HeaderValue::try_from(location)
        .map_err(|_| ProxyError::BadRequest("invalid redirect location"))?;
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn te_without_trailers_is_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h, true);
        assert!(h.is_empty());
    }

    #[test]
    fn request_id_is_uuid_v4() {
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        for _ in 0..200 {
            let id = request_id();
            let s = id.to_str().unwrap();
            for (i, c) in s.chars().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    assert_eq!(c, '-', "{s}");
                } else {
                    assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{s}");
                }
            }
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(
                matches!(&s[19..20], "8" | "9" | "a" | "b"),
                "RFC 4122 variant: {s}"
            );
        }
    }

    #[test]
    fn header_ops_follow_append_actions() {
        use crate::config::HeaderAdd;
        let add = |name: &'static str, value: &'static str, action| HeaderAdd {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            action,
            keep_empty: false,
        };
        let ops = HeaderOps {
            add: vec![
                add("a", "2", A::AppendIfExistsOrAdd),
                add("b", "2", A::AddIfAbsent),
                add("c", "2", A::OverwriteIfExistsOrAdd),
                add("d", "2", A::OverwriteIfExists),
                add("e", "", A::OverwriteIfExistsOrAdd),
            ],
            remove: vec![HeaderName::from_static("r")],
        };
        let mut h = HeaderMap::new();
        for n in ["a", "b", "c", "r"] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        apply_header_ops(&ops, &mut h);
        assert_eq!(h.get_all("a").iter().count(), 2);
        assert_eq!(h["b"], "1");
        assert_eq!(h["c"], "2");
        assert!(!h.contains_key("d"));
        assert!(!h.contains_key("e"));
        assert!(!h.contains_key("r"));
    }
}
