//! Where a JWT travels in a request (header with a value prefix, query parameter, cookie), and
//! taking it out again.
//!
//! ```text
//!  Header { name, prefix } ─► each value containing the prefix: the token from the first
//!                              base64url character after it (Envoy's extractor)
//!  Param(name)  ─► the first value of the query parameter (percent-decoded)
//!  Cookie(name) ─► the cookie's value
//!  strip: the header (all its values) │ the parameter │ (cookies are kept, as Envoy)
//! ```

use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

/// One place a provider reads tokens from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Location {
    Header { name: HeaderName, prefix: String },
    Param(String),
    Cookie(String),
}

/// A token found at a location.
#[derive(Debug)]
pub(super) struct Token {
    pub value: String,
    pub location: Arc<Location>,
}

impl Location {
    /// Envoy's locations when a provider names none: `Authorization: Bearer <token>` and the
    /// `access_token` query parameter.
    pub fn defaults() -> Vec<Arc<Location>> {
        vec![
            Arc::new(Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".into(),
            }),
            Arc::new(Location::Param("access_token".into())),
        ]
    }

    /// Appends the tokens found at this location to `out`.
    pub fn extract(self: &Arc<Self>, parts: &Parts, out: &mut Vec<Token>) {
        let mut push = |value: String| {
            out.push(Token {
                value,
                location: self.clone(),
            })
        };
        match &**self {
            Location::Header { name, prefix } => {
                for value in parts.headers.get_all(name) {
                    let Ok(value) = value.to_str() else { continue };
                    if prefix.is_empty() {
                        push(value.to_string());
                        continue;
                    }
                    let Some(at) = value.find(prefix.as_str()) else {
                        continue;
                    };
                    push(after_prefix(value, at + prefix.len()).to_string());
                }
            }
            Location::Param(name) => {
                let query = parts.uri.query().unwrap_or("");
                if let Some((_, v)) =
                    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name)
                {
                    push(v.into_owned());
                }
            }
            Location::Cookie(name) => {
                if let Some(v) = cookie(&parts.headers, name) {
                    push(v.to_string());
                }
            }
        }
    }

    /// Takes the token out of the request (the upstream must not see it).
    pub fn strip(&self, parts: &mut Parts) {
        match self {
            Location::Header { name, .. } => {
                parts.headers.remove(name);
            }
            Location::Param(name) => remove_param(&mut parts.uri, name),
            // Envoy keeps cookies.
            Location::Cookie(_) => {}
        }
    }
}

/// From the first base64url or `.` character at or after `from` to the end (Envoy: a value
/// without such a character is used as it is).
fn after_prefix(value: &str, from: usize) -> &str {
    let rest = value.get(from..).unwrap_or("");
    match rest.find(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Some(i) => &rest[i..],
        None => value,
    }
}

/// The value of cookie `name` (surrounding quotes removed), from any `Cookie` header.
pub(crate) fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| {
                let v = v.trim();
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            })
        })
}

/// Removes every `name=...` pair from the query; other pairs stay as they were sent.
fn remove_param(uri: &mut Uri, name: &str) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let decoded: String = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            decoded != name
        })
        .collect();
    let path = uri.path();
    let pq = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let Ok(pq) = PathAndQuery::try_from(pq) else {
        return;
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
}
