//! Request routing: virtual host by authority, then the first route whose match accepts the request.
//!
//! ```text
//!  authority ─► exact ─► *.suffix (longest) ─► prefix.* (longest) ─► "*" ─► VirtualHost
//!  VirtualHost.routes ─► first of: path (exact|prefix|regex|separated) ∧ headers ∧ query ─► Route
//! ```

use std::borrow::Cow;

use http::{HeaderMap, Method};

use crate::config::{
    HeaderMatch, HeaderMatchKind, HeaderSource, PathMatch, QueryMatch, Route, RouteConfig,
    RouteMatch, StringMatch, StringMatchKind, VirtualHost,
};

/// The parts of a request that route matching reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub authority: &'a str,
    pub scheme: &'a str,
    /// Path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Path and query as received (`:path`).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

impl RouteConfig {
    /// Envoy's virtual host selection (case-insensitive).
    pub fn select_vhost(&self, authority: &str) -> Option<&VirtualHost> {
        let host = if self.ignore_port {
            strip_port(authority)
        } else {
            authority
        };
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let index = self
            .exact
            .get(&*host)
            .copied()
            .or_else(|| {
                self.suffix
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|&(_, i)| i)
            })
            .or_else(|| {
                self.prefix
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|&(_, i)| i)
            })
            .or(self.default)?;
        self.virtual_hosts.get(index)
    }
}

fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        // Keep IPv6 literals like `[::1]` intact.
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

impl VirtualHost {
    pub fn select_route(&self, req: &RequestView<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }
}

impl RouteMatch {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path_matches(req.path)
            && self.headers.iter().all(|h| h.matches(req))
            && self.query.iter().all(|q| q.matches(req.query))
    }

    fn path_matches(&self, path: &str) -> bool {
        let starts = |p: &str| {
            path.len() >= p.len()
                && if self.case_sensitive {
                    path.as_bytes()[..p.len()] == *p.as_bytes()
                } else {
                    path.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                }
        };
        match &self.path {
            PathMatch::Prefix(p) => starts(p),
            PathMatch::Exact(p) => path.len() == p.len() && starts(p),
            PathMatch::Regex(r) => r.is_match(path),
            PathMatch::SeparatedPrefix(p) => {
                starts(p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
        }
    }
}

impl HeaderMatch {
    /// Envoy semantics: a missing header matches only `present_match` (inverted or not), unless
    /// `treat_missing_header_as_empty`; multiple values are joined with `,`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let value: Option<Cow<'_, str>> = match &self.source {
            HeaderSource::Method => Some(Cow::Borrowed(req.method.as_str())),
            HeaderSource::Authority => Some(Cow::Borrowed(req.authority)).filter(|a| !a.is_empty()),
            HeaderSource::Scheme => Some(Cow::Borrowed(req.scheme)),
            HeaderSource::Path => Some(Cow::Borrowed(req.path_and_query)),
            HeaderSource::Header(name) => header_value(req.headers, name),
        };
        self.matches_value(value)
    }

    /// The match on a header's value (`None`: the header is absent).
    fn matches_value(&self, value: Option<Cow<'_, str>>) -> bool {
        let value = match value {
            Some(v) => v,
            None if self.treat_missing_as_empty => Cow::Borrowed(""),
            None => {
                let present_kind =
                    |want: bool| matches!(self.kind, HeaderMatchKind::Present(p) if p == want);
                return if self.invert {
                    present_kind(true)
                } else {
                    present_kind(false)
                };
            }
        };
        let matched = match &self.kind {
            HeaderMatchKind::Present(p) => *p,
            HeaderMatchKind::String(s) => s.matches(&value),
        };
        matched != self.invert
    }
}

/// A header matcher on a response's headers (retriable headers): pseudo-headers are absent.
pub(super) fn response_header_matches(m: &HeaderMatch, headers: &HeaderMap) -> bool {
    let value = match &m.source {
        HeaderSource::Header(name) => header_value(headers, name),
        _ => None,
    };
    m.matches_value(value)
}

/// Every value of `name`, joined with `,` (bytes that are not UTF-8 replaced).
pub(super) fn header_value<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let first = String::from_utf8_lossy(first.as_bytes());
    let Some(second) = values.next() else {
        return Some(first);
    };
    let mut joined = first.into_owned();
    for v in std::iter::once(second).chain(values) {
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(Cow::Owned(joined))
}

impl QueryMatch {
    /// The first parameter with this name (form-urlencoded: `%XX` and `+` decoded) decides.
    pub fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        let found = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| *k == self.name);
        match (found, &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((_, v)), Some(m)) => m.matches(&v),
        }
    }
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        let eq = |a: &[u8], b: &[u8]| {
            if self.ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.kind {
            StringMatchKind::Exact(p) => eq(v, p.as_bytes()),
            StringMatchKind::Prefix(p) => v.len() >= p.len() && eq(&v[..p.len()], p.as_bytes()),
            StringMatchKind::Suffix(p) => {
                v.len() >= p.len() && eq(&v[v.len() - p.len()..], p.as_bytes())
            }
            StringMatchKind::Contains(p) if self.ignore_case => {
                value.to_ascii_lowercase().contains(p.as_str())
            }
            StringMatchKind::Contains(p) => value.contains(p.as_str()),
            StringMatchKind::Regex(r) => r.is_match(value),
        }
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
