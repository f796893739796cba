//! Redirect responses (`route.redirect`) and path rewriting (`prefix_rewrite`).

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use http_body_util::{Either, Full};

use super::ProxyBody;
use super::request_authority;
use crate::config::{PathMatch, Redirect, RouteMatch};
use crate::error::ProxyError;

/// Applies `prefix_rewrite` (replacing the matched prefix or path) and keeps the query.
pub(super) fn rewritten_path(
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
        // Envoy: with a regex match the whole path is the matched part, so it is replaced.
        PathMatch::Regex(_) => original.path().len(),
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

    fn matcher(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive: true,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_part() {
        let uri: Uri = "/api/v1/items?x=1".parse().unwrap();
        let m = matcher(PathMatch::Prefix("/api".into()));
        assert_eq!(
            rewritten_path(&uri, Some("/svc"), &m).unwrap(),
            "/svc/v1/items?x=1"
        );
        // A regex match covers the whole path (Envoy), the query stays.
        let m = matcher(PathMatch::Regex(regex::Regex::new("^/api/.*$").unwrap()));
        assert_eq!(rewritten_path(&uri, Some("/all"), &m).unwrap(), "/all?x=1");
        assert_eq!(rewritten_path(&uri, None, &m).unwrap(), "/api/v1/items?x=1");
    }
}
