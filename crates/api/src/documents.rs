//! Parsing of multi-document YAML into objects ([`parse_documents`]): the text is split into
//! its documents at `---` markers first, so that a syntax error in one document does not hide
//! the others; broken documents are named by file-relative line numbers and by the kind/name
//! guessed from their text.

use serde::Deserialize;

use crate::object::{ConfigObject, DocumentError, parse_value};
use crate::validation::FieldError;

/// One YAML document of a multi-document file, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    /// 0-based index of the document in the file, not counting empty documents.
    pub index: usize,
    /// 1-based line of the text where the document starts (its `---` marker, if any).
    pub line: usize,
    /// True when the document is not valid YAML. `result` is then `Invalid`, its message
    /// gives the line and column (counted from the start of the text), and its kind, name
    /// and namespace, if any, were guessed from the text (they may be wrong).
    pub syntax_error: bool,
    /// The object, or why there is none.
    pub result: Result<ConfigObject, DocumentError>,
}

/// Parses every document in a (multi-document) YAML text.
///
/// Empty documents (e.g. after a trailing `---`, or only comments) are skipped and not counted.
/// Accepts `networking.istio.io/v1`, `v1beta1` and `v1alpha3`, `security.istio.io/v1` and
/// `v1beta1`, `telemetry.istio.io/v1` and `v1alpha1`. An object is `Ok` only if it
/// deserializes (unknown fields are errors, with their path) and validates.
///
/// The text is split into documents at the `---` markers at line starts before parsing, so a
/// YAML syntax error ends only its own document: it is reported as an `Invalid` document
/// (with [`ParsedDocument::syntax_error`] set, the error's line and column counted from the
/// start of the text) and the following documents are parsed as usual.
pub fn parse_documents(text: &str) -> Vec<ParsedDocument> {
    let mut out = Vec::new();
    let mut index = 0;
    for slice in split(text) {
        for doc in serde_yaml::Deserializer::from_str(slice.text) {
            match serde_yaml::Value::deserialize(doc) {
                Err(e) => {
                    out.push(syntax_error(slice, index, &e));
                    index += 1;
                    // The parser cannot resume inside a broken document: go on with the next slice.
                    break;
                }
                Ok(serde_yaml::Value::Null) => continue,
                Ok(value) => {
                    out.push(ParsedDocument {
                        index,
                        line: slice.line,
                        syntax_error: false,
                        result: parse_value(value),
                    });
                    index += 1;
                }
            }
        }
    }
    out
}

/// The `Invalid` document of a YAML syntax error in `slice`.
fn syntax_error(slice: Slice<'_>, index: usize, error: &serde_yaml::Error) -> ParsedDocument {
    let (line, column) = error
        .location()
        .map_or((slice.line, 1), |l| (slice.line + l.line() - 1, l.column()));
    let mut message = error.to_string();
    // The location is said once, up front, counted from the start of the file.
    if let Some(l) = error.location() {
        let own = format!(" at line {} column {}", l.line(), l.column());
        if let Some(at) = message.find(&own) {
            message.replace_range(at..at + own.len(), "");
        }
    }
    let message = shift_lines(&message, slice.line);
    let identity = guess_identity(slice.text);
    ParsedDocument {
        index,
        line: slice.line,
        syntax_error: true,
        result: Err(DocumentError::Invalid {
            kind: identity.kind,
            name: identity.name,
            namespace: identity.namespace,
            errors: FieldError::new(
                "",
                format!("invalid YAML at line {line}, column {column}: {message}"),
            )
            .into(),
        }),
    }
}

/// One document's slice of a multi-document text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slice<'a> {
    /// 1-based line of the text where the slice starts (its `---` marker, if it has one).
    pub line: usize,
    /// The slice, from the start of its first line to the start of the next marker line.
    pub text: &'a str,
}

/// True when `line` (without its newline) is a YAML document start marker: `---` at the
/// start of the line, followed by nothing, a space or a tab (`--- {a: b}` is a document
/// start with content; `----` is a plain scalar). A marker at the start of a line ends
/// any scalar, so splitting there is always safe.
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Splits `text` at every document start marker. Each slice starts at a line start;
/// the marker line belongs to the slice it starts, and so do the directive lines (`%YAML`,
/// `%TAG`) right before it. Whitespace- or comment-only slices are kept: the parser
/// decides what is empty.
pub(crate) fn split(text: &str) -> Vec<Slice<'_>> {
    let mut slices = Vec::new();
    let mut start = 0; // byte offset of the current slice
    let mut start_line = 1;
    let mut line_no = 1;
    let mut line_start = 0;
    // The first of the directive lines just before the current line: (offset, line).
    let mut directives: Option<(usize, usize)> = None;
    loop {
        let end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        let line = &text[line_start..end];
        if is_marker(line) {
            let (at, at_line) = directives.take().unwrap_or((line_start, line_no));
            if at > start {
                slices.push(Slice {
                    line: start_line,
                    text: &text[start..at],
                });
                start = at;
                start_line = at_line;
            }
        } else if line.starts_with('%') {
            directives.get_or_insert((line_start, line_no));
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            directives = None;
        }
        if end >= text.len() {
            break;
        }
        line_start = end + 1;
        line_no += 1;
    }
    if start < text.len() {
        slices.push(Slice {
            line: start_line,
            text: &text[start..],
        });
    }
    slices
}

/// Rewrites every `line N column M` in a parser message to count lines from the start of
/// the file instead of the start of the slice (`first_line` is the slice's first line).
pub(crate) fn shift_lines(message: &str, first_line: usize) -> String {
    const LINE: &str = "line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(LINE) {
        let (before, after) = rest.split_at(at + LINE.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let number = after[..digits].parse::<usize>().ok();
        match number {
            Some(n) if after[digits..].starts_with(" column ") => {
                out.push_str(&n.saturating_add(first_line - 1).to_string());
            }
            _ => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// What a document that is not valid YAML says about itself: its top-level `kind:` and
/// its `metadata:` `name:`/`namespace:` (block or flow style), read line by line. `None`
/// for anything not found or not a plain single word.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

/// Guesses the identity of a broken document from its text.
pub(crate) fn guess_identity(text: &str) -> Identity {
    let mut identity = Identity::default();
    let mut in_metadata = false;
    let mut metadata_indent = None;
    for raw in text.lines() {
        let line = strip_comment(raw).trim_end();
        if line.trim_start().is_empty() || is_marker(line) {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent == 0 {
            in_metadata = false;
            if let Some(value) = line.strip_prefix("kind:") {
                identity.kind = identity.kind.or_else(|| word(value));
            } else if let Some(value) = line.strip_prefix("metadata:") {
                let value = value.trim();
                if let Some(inner) = value.strip_prefix('{') {
                    read_flow_metadata(inner.trim_end_matches('}'), &mut identity);
                } else if value.is_empty() {
                    in_metadata = true;
                    metadata_indent = None;
                }
            }
            continue;
        }
        if !in_metadata {
            continue;
        }
        // Only the first level of `metadata` (not `labels: {name: ...}` below it).
        let level = *metadata_indent.get_or_insert(indent);
        if indent != level {
            continue;
        }
        let field = line.trim_start();
        if let Some(value) = field.strip_prefix("name:") {
            identity.name = identity.name.or_else(|| word(value));
        } else if let Some(value) = field.strip_prefix("namespace:") {
            identity.namespace = identity.namespace.or_else(|| word(value));
        }
    }
    identity
}

/// `name: a, namespace: b` of a one-line flow mapping.
fn read_flow_metadata(inner: &str, identity: &mut Identity) {
    for pair in inner.split(',') {
        let Some((key, value)) = pair.split_once(':') else {
            continue;
        };
        match key.trim() {
            "name" => identity.name = identity.name.take().or_else(|| word(value)),
            "namespace" => identity.namespace = identity.namespace.take().or_else(|| word(value)),
            _ => {}
        }
    }
}

/// A line without its ` #` comment (good enough for the plain words looked for here).
fn strip_comment(line: &str) -> &str {
    match line.find(" #") {
        Some(at) => &line[..at],
        None if line.trim_start().starts_with('#') => "",
        None => line,
    }
}

/// A plain or quoted single word (`reviews`, `"reviews"`, `'reviews'`), else `None`.
fn word(value: &str) -> Option<String> {
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    let plain = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    plain.then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_errors(doc: &ParsedDocument) -> Vec<String> {
        match &doc.result {
            Err(DocumentError::Invalid { errors, .. }) => {
                errors.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn lines_and_texts(text: &str) -> Vec<(usize, &str)> {
        split(text).into_iter().map(|s| (s.line, s.text)).collect()
    }

    #[test]
    fn splits_at_markers_at_line_starts_only() {
        let text = "a: 1\n---\nb: 2\n  --- not a marker\n--- {c: 3}\n----\n---\t# t\nd: |\n  ---\n";
        assert_eq!(
            lines_and_texts(text),
            [
                (1, "a: 1\n"),
                (2, "---\nb: 2\n  --- not a marker\n"),
                (5, "--- {c: 3}\n----\n"),
                (7, "---\t# t\nd: |\n  ---\n"),
            ]
        );
        assert_eq!(lines_and_texts("---\n"), [(1, "---\n")]);
        assert_eq!(lines_and_texts("---"), [(1, "---")]);
        assert_eq!(
            lines_and_texts("a\r\n---\r\nb"),
            [(1, "a\r\n"), (2, "---\r\nb")]
        );
        // Directives go with the document they precede.
        assert_eq!(
            lines_and_texts("a: 1\n%YAML 1.2\n# c\n--- b\n"),
            [(1, "a: 1\n"), (2, "%YAML 1.2\n# c\n--- b\n")]
        );
        assert_eq!(
            lines_and_texts("%YAML 1.2\n---\nb\n"),
            [(1, "%YAML 1.2\n---\nb\n")]
        );
        assert!(split("").is_empty());
        // Every byte is in exactly one slice, in order.
        let joined: String = split(text).iter().map(|s| s.text).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn shifts_line_numbers_of_messages() {
        assert_eq!(
            shift_lines(
                "did not find expected key at line 4 column 1, while parsing a block mapping at line 2 column 1",
                10
            ),
            "did not find expected key at line 13 column 1, while parsing a block mapping at line 11 column 1"
        );
        assert_eq!(shift_lines("no line here", 10), "no line here");
        assert_eq!(shift_lines("line 3 of", 10), "line 3 of");
        assert_eq!(shift_lines("at line 1 column 2", 1), "at line 1 column 2");
    }

    #[test]
    fn guesses_kind_and_name_of_broken_documents() {
        let block = "---\nkind: VirtualService # the kind\nmetadata:\n  labels:\n    name: label\n  name: \"reviews\"\n  namespace: prod\nspec: {hosts: [a]\n";
        assert_eq!(
            guess_identity(block),
            Identity {
                kind: Some("VirtualService".into()),
                name: Some("reviews".into()),
                namespace: Some("prod".into()),
            }
        );
        let flow = "apiVersion: networking.istio.io/v1\nkind: 'WorkloadEntry'\nmetadata: {name: vm2, namespace: ns}\nspec: {address: [\n";
        assert_eq!(
            guess_identity(flow),
            Identity {
                kind: Some("WorkloadEntry".into()),
                name: Some("vm2".into()),
                namespace: Some("ns".into()),
            }
        );
        let nothing = guess_identity("kind: {broken\nmetadata: x\n  name: [a b]\n");
        assert_eq!(nothing, Identity::default());
    }

    #[test]
    fn syntax_error_after_good_document() {
        let text = "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1}
spec: {address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm2
spec: {address: 10.0.0.2}
";
        let docs = parse_documents(text);
        assert!(docs[0].result.is_ok(), "{:?}", docs[0].result);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 1);
        assert!(invalid_errors(&docs[1])[0].contains("invalid YAML"));
    }

    #[test]
    fn syntax_error_ends_only_its_document_and_names_the_file_line() {
        let text = "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1}
spec: {address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm2
spec:
  address: 10.0.0.2
 labels: {a: b}
---
# the third document
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm3}
spec: {address: 10.0.0.3}
";
        let docs = parse_documents(text);
        assert_eq!(docs.len(), 3, "{docs:#?}");
        assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(docs.iter().map(|d| d.line).collect::<Vec<_>>(), [1, 5, 13]);
        assert!(!docs[0].syntax_error && docs[0].result.is_ok());
        assert!(!docs[2].syntax_error);
        assert_eq!(docs[2].result.as_ref().map(ConfigObject::name), Ok("vm3"));
        assert!(docs[1].syntax_error);
        let error = &invalid_errors(&docs[1])[0];
        // The bad indentation is on line 12 of the text (line 8 of the document).
        assert!(
            error.starts_with("invalid YAML at line 12, column 2: "),
            "{error}"
        );
        assert!(!error.contains("line 8 "), "{error}");
        match &docs[1].result {
            Err(DocumentError::Invalid { kind, name, .. }) => {
                assert_eq!(kind.as_deref(), Some("WorkloadEntry"));
                assert_eq!(name.as_deref(), Some("vm2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn documents_after_an_end_marker_and_odd_markers() {
        // `...` ends a document without a `---`; `--- {…}` starts one with content.
        let text = "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1}
spec: {address: 10.0.0.1}
...
--- {apiVersion: networking.istio.io/v1, kind: WorkloadEntry, metadata: {name: vm2}, spec: {address: 10.0.0.2}}
---
---
";
        let docs = parse_documents(text);
        let names: Vec<_> = docs
            .iter()
            .map(|d| d.result.as_ref().map(|o| o.name().to_string()))
            .collect();
        assert_eq!(names, [Ok("vm1".to_string()), Ok("vm2".to_string())]);
        assert_eq!(docs[1].line, 6);
    }
}

#[cfg(test)]
mod yaml_tests {
    use super::*;

    fn scalar(text: &str) -> serde_yaml::Value {
        let doc = format!("a: {text}\n");
        let v: serde_yaml::Value = serde_yaml::from_str(&doc).expect("valid YAML");
        v["a"].clone()
    }

    /// Plain scalars resolve by YAML 1.2's core schema, as the Kubernetes API server reads
    /// them, not by YAML 1.1's: no `yes`/`on` booleans, no base-60 numbers, so IPv6
    /// addresses, times and words stay strings.
    #[test]
    fn plain_scalars_resolve_by_the_yaml_1_2_core_schema() {
        use serde_yaml::Value;
        for s in [
            "001:db8::1",
            "2001:db8::1",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "1:20",
            "12:30:00",
            "1_000",
        ] {
            assert_eq!(scalar(s), Value::String(s.into()), "{s}");
        }
        assert_eq!(scalar("true"), Value::Bool(true));
        assert_eq!(scalar("True"), Value::Bool(true));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar("null"), Value::Null);
        assert_eq!(scalar("80"), Value::Number(80.into()));
        assert_eq!(scalar("+80"), Value::Number(80.into()));
        assert_eq!(scalar("0x50"), Value::Number(80.into()));
        assert_eq!(scalar("0o17"), Value::Number(15.into()));
        assert_eq!(scalar("1.5"), Value::Number(1.5.into()));
    }

    #[test]
    fn a_syntax_error_says_its_place_once() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a\n";
        let docs = parse_documents(text);
        let message = docs[0].result.as_ref().expect_err("broken").to_string();
        assert!(
            message.contains("invalid YAML at line 6, column 1: "),
            "{message}"
        );
        assert_eq!(message.matches("line 6").count(), 1, "{message}");
    }
}
