//! Request mirroring (Envoy `RouteAction.request_mirror_policies`, VirtualService `mirror` /
//! `mirrors`) and regex path rewriting (`RouteAction.regex_rewrite`, `uriRegexRewrite`) → the
//! route's `Mirror`s and `RegexRewrite`.
//!
//! ```text
//!  request_mirror_policies[i] { cluster, runtime_fraction.default_value, trace_sampled,
//!                               disable_shadow_host_suffix_append } ─► Mirror { cluster slot, per million }
//!  regex_rewrite { pattern.regex (RE2), substitution (\1 groups) } ─► RegexRewrite { Regex, ${1} template }
//! ```

use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use regex::Regex;

use super::fault::{PER_MILLION, per_million};
use super::route::ClusterRef;
use super::{Reason, invalid, reject_leftover, reject_set};

/// One mirror of a route: a share of its requests copied, fire and forget, to another cluster.
#[derive(Debug)]
pub struct Mirror {
    pub cluster: ClusterRef,
    /// Share of requests mirrored, per million.
    pub per_million: u32,
    /// Envoy's `host` → `host-shadow` authority, unless `disable_shadow_host_suffix_append`.
    pub shadow_suffix: bool,
}

/// `regex_rewrite`: every match of `pattern` in the path (not the query) is replaced.
#[derive(Debug)]
pub struct RegexRewrite {
    pub pattern: Regex,
    /// The substitution in the `regex` crate's syntax (`\1` → `${1}`, `$` escaped).
    pub substitution: String,
}

impl RegexRewrite {
    /// The rewritten path (Envoy's `RE2::GlobalReplace`: all non-overlapping matches).
    pub fn apply(&self, path: &str) -> String {
        self.pattern
            .replace_all(path, self.substitution.as_str())
            .into_owned()
    }
}

/// Converts `request_mirror_policies[index]`.
pub(super) fn mirror(
    index: usize,
    mut m: rt::route_action::RequestMirrorPolicy,
) -> Result<Mirror, Reason> {
    let field = format!("route.request_mirror_policies[{index}]");
    let within = |r: Reason| r.within(&field);
    if m.cluster.is_empty() {
        return Err(invalid(
            format!("{field}.cluster"),
            "is required (cluster_header is not supported)",
        ));
    }
    let per_million = match m.runtime_fraction.take() {
        // Envoy: no runtime_fraction mirrors every request.
        None => PER_MILLION,
        // Without a runtime, the key always falls back to its default value.
        Some(fraction) => {
            per_million("runtime_fraction.default_value", fraction.default_value).map_err(within)?
        }
    };
    let cluster = ClusterRef::new(std::mem::take(&mut m.cluster));
    let shadow_suffix = !std::mem::take(&mut m.disable_shadow_host_suffix_append);
    // Tracing only.
    m.trace_sampled = None;
    (|| {
        reject_set!(
            m,
            cluster_header,
            request_headers_mutations,
            host_rewrite_literal
        );
        reject_leftover(&m, "request mirror policy")
    })()
    .map_err(within)?;
    Ok(Mirror {
        cluster,
        per_million,
        shadow_suffix,
    })
}

/// Converts `regex_rewrite`.
pub(super) fn regex_rewrite(
    mut r: matcher::RegexMatchAndSubstitute,
) -> Result<RegexRewrite, Reason> {
    let pattern = r
        .pattern
        .take()
        .ok_or(Reason::Missing("route.regex_rewrite.pattern"))?;
    let compiled = regex::RegexBuilder::new(&pattern.regex)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Reason::Regex {
            field: "route.regex_rewrite.pattern".to_string(),
            pattern: pattern.regex.clone(),
            error: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })?;
    let substitution = substitution(&r.substitution, compiled.captures_len())?;
    Ok(RegexRewrite {
        pattern: compiled,
        substitution,
    })
}

/// RE2's substitution (`\0`…`\9` groups, `\\` a backslash) in the `regex` crate's syntax
/// (`${N}`, `$$` a dollar sign). A group the pattern does not have, or a lone backslash, is
/// invalid (RE2 rejects the rewrite too).
fn substitution(raw: &str, groups: usize) -> Result<String, Reason> {
    let field = "route.regex_rewrite.substitution";
    let mut out = String::with_capacity(raw.len() + 8);
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d @ '0'..='9') => {
                    let group = usize::from(d as u8 - b'0');
                    if group >= groups {
                        return Err(invalid(
                            field,
                            format!("\\{group} names a group the pattern does not have"),
                        ));
                    }
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                _ => {
                    return Err(invalid(
                        field,
                        "a backslash must be followed by a digit or a backslash",
                    ));
                }
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
    use envoy_types::pb::envoy::r#type::v3::{
        FractionalPercent, fractional_percent::DenominatorType,
    };

    fn rewrite(pattern: &str, substitution: &str) -> Result<RegexRewrite, Reason> {
        regex_rewrite(matcher::RegexMatchAndSubstitute {
            pattern: Some(matcher::RegexMatcher {
                regex: pattern.to_string(),
                ..Default::default()
            }),
            substitution: substitution.to_string(),
        })
    }

    #[test]
    fn regex_rewrite_uses_re2_groups_and_replaces_every_match() {
        let r = rewrite("^/service/([^/]+)(/.*)$", "\\2/instance/\\1").unwrap();
        assert_eq!(r.apply("/service/foo/v1/api"), "/v1/api/instance/foo");
        let r = rewrite("o", "0").unwrap();
        assert_eq!(r.apply("/foo/boo"), "/f00/b00");
        // A literal dollar stays literal.
        let r = rewrite("^/a$", "/$1\\\\").unwrap();
        assert_eq!(r.apply("/a"), "/$1\\");
        assert!(matches!(
            rewrite("^/(a)$", "\\2"),
            Err(Reason::Invalid { .. })
        ));
        assert!(matches!(
            rewrite("^/(a)$", "\\x"),
            Err(Reason::Invalid { .. })
        ));
        assert!(matches!(rewrite("(", "x"), Err(Reason::Regex { .. })));
    }

    #[test]
    fn mirrors_keep_their_share_and_reject_what_the_proxy_cannot_do() {
        let policy =
            |numerator, denominator: DenominatorType| rt::route_action::RequestMirrorPolicy {
                cluster: "outbound|80||shadow".into(),
                runtime_fraction: Some(RuntimeFractionalPercent {
                    default_value: Some(FractionalPercent {
                        numerator,
                        denominator: denominator as i32,
                    }),
                    runtime_key: String::new(),
                }),
                ..Default::default()
            };
        let m = mirror(0, policy(25, DenominatorType::Hundred)).unwrap();
        assert_eq!(
            (m.cluster.name.as_str(), m.per_million, m.shadow_suffix),
            ("outbound|80||shadow", 250_000, true)
        );
        let mut all = policy(0, DenominatorType::Million);
        all.runtime_fraction = None;
        all.disable_shadow_host_suffix_append = true;
        let m = mirror(1, all).unwrap();
        assert_eq!((m.per_million, m.shadow_suffix), (PER_MILLION, false));
        let mut bad = policy(1, DenominatorType::Hundred);
        bad.host_rewrite_literal = "x".into();
        let err = mirror(2, bad).unwrap_err().to_string();
        assert!(
            err.contains("route.request_mirror_policies[2].host_rewrite_literal"),
            "{err}"
        );
        let mut nameless = policy(1, DenominatorType::Hundred);
        nameless.cluster.clear();
        assert!(mirror(0, nameless).is_err());
    }
}
