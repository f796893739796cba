//! Matchers and header mutations of RDS routes: Envoy header/query/string matchers, regexes, header ops.
//!
//! ```text
//!  HeaderMatcher ─► HeaderMatch { source (:method|:authority|:scheme|:path|header), kind, invert }
//!  StringMatcher ─► StringMatch { exact|prefix|suffix|contains|regex (full match), ignore_case }
//!  HeaderValueOption ─► HeaderAdd { name, value, append action }   (%FORMATTERS% rejected)
//! ```

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use http::{HeaderName, HeaderValue};
use regex::Regex;

use super::formatter::HeaderTemplate;
use super::route::{
    HeaderAdd, HeaderMatch, HeaderMatchKind, HeaderOps, HeaderSource, QueryMatch, StringMatch,
    StringMatchKind,
};
use super::{Reason, invalid};

#[allow(deprecated)] // exact_match & co. are deprecated in Envoy but still honoured.
pub(crate) fn header_match(h: rt::HeaderMatcher) -> Result<HeaderMatch, Reason> {
    use rt::header_matcher::HeaderMatchSpecifier as S;
    let source = match h.name.to_ascii_lowercase().as_str() {
        ":method" => HeaderSource::Method,
        ":authority" | "host" => HeaderSource::Authority,
        ":scheme" => HeaderSource::Scheme,
        ":path" => HeaderSource::Path,
        "" => return Err(Reason::Missing("name")),
        n if n.starts_with(':') => {
            return Err(Reason::UnsupportedValue {
                field: "name",
                value: h.name,
            });
        }
        n => HeaderSource::Header(
            HeaderName::try_from(n).map_err(|e| invalid("name", e.to_string()))?,
        ),
    };
    let exact = |s: String| {
        HeaderMatchKind::String(StringMatch {
            kind: StringMatchKind::Exact(s),
            ignore_case: false,
        })
    };
    let kind = match h.header_match_specifier {
        Some(S::ExactMatch(s)) => exact(s),
        Some(S::PrefixMatch(s)) => HeaderMatchKind::String(StringMatch {
            kind: StringMatchKind::Prefix(s),
            ignore_case: false,
        }),
        Some(S::SuffixMatch(s)) => HeaderMatchKind::String(StringMatch {
            kind: StringMatchKind::Suffix(s),
            ignore_case: false,
        }),
        Some(S::ContainsMatch(s)) => HeaderMatchKind::String(StringMatch {
            kind: StringMatchKind::Contains(s),
            ignore_case: false,
        }),
        Some(S::SafeRegexMatch(r)) => HeaderMatchKind::String(StringMatch {
            kind: StringMatchKind::Regex(regex("safe_regex_match", &r)?),
            ignore_case: false,
        }),
        Some(S::StringMatch(s)) => HeaderMatchKind::String(string_match("string_match", s)?),
        Some(S::PresentMatch(p)) => HeaderMatchKind::Present(p),
        Some(S::RangeMatch(_)) => return Err(Reason::Unsupported("range_match".into())),
        // Envoy: no specifier means "header is present".
        None => HeaderMatchKind::Present(true),
    };
    Ok(HeaderMatch {
        source,
        kind,
        invert: h.invert_match,
        treat_missing_as_empty: h.treat_missing_header_as_empty,
    })
}

pub(crate) fn query_match(q: rt::QueryParameterMatcher) -> Result<QueryMatch, Reason> {
    use rt::query_parameter_matcher::QueryParameterMatchSpecifier as S;
    if q.name.is_empty() {
        return Err(Reason::Missing("name"));
    }
    let value = match q.query_parameter_match_specifier {
        Some(S::StringMatch(s)) => Some(string_match("string_match", s)?),
        Some(S::PresentMatch(true)) | None => None,
        Some(S::PresentMatch(false)) => {
            return Err(invalid(
                "present_match",
                "false is not meaningful; use invert on a header",
            ));
        }
    };
    Ok(QueryMatch {
        name: q.name,
        value,
    })
}

pub(crate) fn string_match(
    field: &'static str,
    s: matcher::StringMatcher,
) -> Result<StringMatch, Reason> {
    use matcher::string_matcher::MatchPattern as M;
    let fold = |v: String| {
        if s.ignore_case {
            v.to_ascii_lowercase()
        } else {
            v
        }
    };
    let kind = match s.match_pattern {
        Some(M::Exact(v)) => StringMatchKind::Exact(fold(v)),
        Some(M::Prefix(v)) => StringMatchKind::Prefix(fold(v)),
        Some(M::Suffix(v)) => StringMatchKind::Suffix(fold(v)),
        Some(M::Contains(v)) => StringMatchKind::Contains(fold(v)),
        Some(M::SafeRegex(r)) => StringMatchKind::Regex(regex(&format!("{field}.safe_regex"), &r)?),
        Some(M::Custom(_)) => return Err(Reason::Unsupported(format!("{field}.custom"))),
        None => return Err(Reason::Missing("string_match pattern")),
    };
    Ok(StringMatch {
        kind,
        ignore_case: s.ignore_case,
    })
}

/// Compiles an RE2-style pattern as a full match (Envoy's semantics).
pub(crate) fn regex(field: &str, r: &matcher::RegexMatcher) -> Result<Regex, Reason> {
    regex::RegexBuilder::new(&format!("^(?:{})$", r.regex))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Reason::Regex {
            field: field.to_string(),
            pattern: r.regex.clone(),
            error: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
}

pub(crate) fn header_ops(
    add: Vec<core::HeaderValueOption>,
    remove: Vec<String>,
) -> Result<HeaderOps, Reason> {
    use core::header_value_option::HeaderAppendAction as A;
    let mut ops = HeaderOps::default();
    for (i, o) in add.into_iter().enumerate() {
        let field = format!("headers_to_add[{i}]");
        let h = o
            .header
            .ok_or_else(|| invalid(&field, "header is required"))?;
        let name = writable_header(&field, &h.key)?;
        let raw = if h.raw_value.is_empty() {
            h.value.into_bytes()
        } else {
            h.raw_value
        };
        let value = header_template(&field, raw)?;
        #[allow(deprecated)]
        let action = match o.append {
            Some(b) if b.value => A::AppendIfExistsOrAdd,
            Some(_) => A::OverwriteIfExistsOrAdd,
            None => A::try_from(o.append_action)
                .map_err(|_| invalid(format!("{field}.append_action"), "unknown value"))?,
        };
        ops.add.push(HeaderAdd {
            name,
            value,
            action,
            keep_empty: o.keep_empty_value,
        });
    }
    for (i, r) in remove.iter().enumerate() {
        ops.remove
            .push(writable_header(&format!("headers_to_remove[{i}]"), r)?);
    }
    Ok(ops)
}

fn writable_header(field: &str, key: &str) -> Result<HeaderName, Reason> {
    if key.starts_with(':') || key.eq_ignore_ascii_case("host") {
        return Err(invalid(field, format!("header {key:?} cannot be modified")));
    }
    HeaderName::try_from(key).map_err(|e| invalid(field, format!("{key:?}: {e}")))
}

/// Parses a header value with Envoy's `%COMMAND%` formatters; a value that is not UTF-8
/// can only be a literal.
fn header_template(field: &str, raw: Vec<u8>) -> Result<HeaderTemplate, Reason> {
    match String::from_utf8(raw) {
        Ok(text) => HeaderTemplate::parse(&text).map_err(|e| invalid(field, e.to_string())),
        Err(e) => {
            let raw = e.into_bytes();
            if raw.contains(&b'%') {
                return Err(invalid(field, "a value with % formatters must be UTF-8"));
            }
            let value = HeaderValue::from_maybe_shared(Bytes::from(raw))
                .map_err(|e| invalid(field, e.to_string()))?;
            Ok(HeaderTemplate::literal(value))
        }
    }
}
