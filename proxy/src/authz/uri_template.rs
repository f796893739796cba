//! Envoy's URI templates (`envoy.path.match.uri_template.uri_template_matcher`), compiled once to a regex.
//!
//! ```text
//!  "/" segment ("/" segment)* [suffix]     segment: literal │ * │ ** │ {name} │ {name=*} │ {name=**}
//!                                                  │ {name=lit/*/...}
//!  *  ─► one segment: [pchar]+      ** ─► zero or more segments: [pchar/]*   (nothing after **)
//!  e.g. /videos/*/*/*.m4s  /videos/{file}  /**.mpd  /api/{version=v1/*}/items
//!  matched against the path without its query
//! ```

use regex::Regex;

/// RFC 3986 pchar without `*` and `=` (Envoy's literal characters), as a regex class body.
const PCHAR: &str = r"a-zA-Z0-9\-._~%!$&'()+,;:@";
/// Envoy's limits on variables.
const MAX_VARIABLES: usize = 5;
const MAX_VARIABLE_NAME: usize = 16;

/// A compiled path template.
#[derive(Debug)]
pub struct UriTemplate {
    pub template: String,
    regex: Regex,
}

impl UriTemplate {
    /// Parses `template` with Envoy's syntax; the error says what is wrong.
    pub fn parse(template: &str) -> Result<Self, String> {
        let pattern = to_regex(template)?;
        let regex = regex::RegexBuilder::new(&format!("^{pattern}$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("cannot compile: {e}"))?;
        Ok(Self {
            template: template.to_string(),
            regex,
        })
    }

    /// Whether `path` (without query) matches the template.
    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }
}

#[derive(Default)]
struct Parser {
    out: String,
    variables: Vec<String>,
    /// A `**` was seen: no other operator may follow.
    text_glob: bool,
}

fn to_regex(template: &str) -> Result<String, String> {
    let Some(mut rest) = template.strip_prefix('/') else {
        return Err("must start with /".into());
    };
    if !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only printable ASCII characters without spaces are allowed".into());
    }
    let mut p = Parser {
        out: "/".into(),
        ..Default::default()
    };
    let mut first = true;
    while !rest.is_empty() {
        if !first {
            p.out.push('/');
        }
        first = false;
        rest = p.segment(rest)?;
        if rest.is_empty() {
            break;
        }
        if rest == "/" {
            // A trailing slash: an empty last segment.
            p.out.push('/');
            break;
        }
        if let Some(next) = rest.strip_prefix('/') {
            rest = next;
            if rest.is_empty() {
                break;
            }
            continue;
        }
        // Text right after an operator or variable: the suffix, which must end the template.
        literal(rest).map_err(|e| format!("suffix {rest:?}: {e}"))?;
        p.out.push_str(&regex::escape(rest));
        break;
    }
    Ok(p.out)
}

impl Parser {
    /// Consumes one segment (up to the next `/` or suffix) and returns the rest.
    fn segment<'t>(&mut self, s: &'t str) -> Result<&'t str, String> {
        if s.starts_with('*') {
            return self.operator(s);
        }
        if let Some(inner) = s.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err("unmatched {".into());
            };
            self.variable(&inner[..end])?;
            return Ok(&inner[end + 1..]);
        }
        let end = s.find('/').unwrap_or(s.len());
        let lit = &s[..end];
        literal(lit)?;
        self.out.push_str(&regex::escape(lit));
        Ok(&s[end..])
    }

    fn operator<'t>(&mut self, s: &'t str) -> Result<&'t str, String> {
        if self.text_glob {
            return Err("no operator may follow **".into());
        }
        if let Some(rest) = s.strip_prefix("**") {
            self.text_glob = true;
            self.out.push_str(&format!("[{PCHAR}/]*"));
            Ok(rest)
        } else {
            self.out.push_str(&format!("[{PCHAR}]+"));
            Ok(&s[1..])
        }
    }

    /// `name` or `name=pattern` (the text between the braces).
    fn variable(&mut self, body: &str) -> Result<(), String> {
        let (name, pattern) = match body.split_once('=') {
            Some((n, p)) => (n, Some(p)),
            None => (body, None),
        };
        let valid_name = name.len() <= MAX_VARIABLE_NAME
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!("invalid variable name {name:?}"));
        }
        if self.variables.iter().any(|v| v == name) {
            return Err(format!("repeated variable {name:?}"));
        }
        if self.variables.len() >= MAX_VARIABLES {
            return Err(format!("more than {MAX_VARIABLES} variables"));
        }
        self.variables.push(name.to_string());
        let Some(mut pattern) = pattern else {
            return self.operator("*").map(|_| ());
        };
        if pattern.is_empty() {
            return Err(format!("variable {name:?} has an empty match"));
        }
        let mut first = true;
        while !pattern.is_empty() {
            if !first {
                self.out.push('/');
            }
            first = false;
            let end = pattern.find('/').unwrap_or(pattern.len());
            let part = &pattern[..end];
            if part.starts_with('*') {
                if self.operator(part)?.is_empty() {
                    // `*` or `**` alone
                } else {
                    return Err(format!("variable {name:?}: invalid match {part:?}"));
                }
            } else {
                literal(part).map_err(|e| format!("variable {name:?}: {e}"))?;
                self.out.push_str(&regex::escape(part));
            }
            pattern = &pattern[end..];
            if let Some(next) = pattern.strip_prefix('/') {
                if next.is_empty() {
                    return Err(format!("variable {name:?}: trailing /"));
                }
                pattern = next;
            }
        }
        Ok(())
    }
}

/// A non-empty run of Envoy's literal characters.
fn literal(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid literal {s:?}"))
    }
}
