//! The Istio YAML fixtures of the other tests, read from their source files: every Rust string
//! literal (raw or not) that holds an Istio `networking.istio.io` document. Reading them from
//! the sources keeps this test in step with the fixtures as they change. Literals that are
//! `format!` templates (placeholders filled at run time) are counted but not loaded.

use std::path::{Path, PathBuf};

/// One string literal of a source file.
#[derive(Debug, Clone)]
pub struct Literal {
    /// `path:line` of the literal.
    pub origin: String,
    /// `NAME` when the literal is the value of `const NAME: &str`.
    pub name: Option<String>,
    /// The literal is the template of a `format!`.
    pub template: bool,
    pub text: String,
}

impl Literal {
    /// Whether the literal holds an Istio networking document.
    pub fn is_istio_yaml(&self) -> bool {
        self.text.contains("apiVersion:")
            && self.text.contains("kind:")
            && self.text.contains("networking.istio.io")
    }
}

/// The `.rs` files under `dir`, recursively, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    assert!(dir.is_dir(), "fixture sources missing: {}", dir.display());
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every string literal of a Rust source file (comments and char literals skipped).
pub fn string_literals(file: &Path, shown: &str) -> Vec<Literal> {
    let source = std::fs::read_to_string(file)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
    let bytes = source.as_bytes();
    let const_name =
        regex::Regex::new(r"const\s+([A-Z0-9_]+)\s*:\s*&\s*(?:'static\s+)?str\s*=\s*$")
            .expect("const regex");
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at = |k: usize| bytes.get(k).copied();
        match bytes[i] {
            b'/' if at(i + 1) == Some(b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if at(i + 1) == Some(b'*') => {
                i = source[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| i + 2 + end + 2);
            }
            b'\'' => {
                // A char literal ('"', '\'', 'é') or a lifetime ('a).
                if at(i + 1) == Some(b'\\') {
                    let close = source[i + 2..]
                        .find('\'')
                        .map_or(bytes.len(), |c| i + 2 + c);
                    i = close + 1;
                } else {
                    let width = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                    if at(i + 1 + width) == Some(b'\'') {
                        i += width + 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if (i == 0
                || !ident(bytes[i - 1])
                || (bytes[i - 1] == b'b' && (i == 1 || !ident(bytes[i - 2]))))
                && matches!(at(i + 1), Some(b'#' | b'"')) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                let open = i + 1 + hashes;
                if at(open) != Some(b'"') {
                    i += 1;
                    continue;
                }
                let close_marker = format!("\"{}", "#".repeat(hashes));
                let Some(len) = source[open + 1..].find(&close_marker) else {
                    break;
                };
                let text = source[open + 1..open + 1 + len].to_string();
                out.push(literal(&source, i, shown, text, &const_name));
                i = open + 1 + len + close_marker.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let raw = &source[i + 1..j.min(bytes.len())];
                out.push(literal(&source, i, shown, unescape(raw), &const_name));
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn literal(
    source: &str,
    start: usize,
    shown: &str,
    text: String,
    const_name: &regex::Regex,
) -> Literal {
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    // `const NAME: &str =` and `format!(` are just before the literal.
    let mut window = start.saturating_sub(160);
    while !source.is_char_boundary(window) {
        window -= 1;
    }
    Literal {
        origin: format!("{shown}:{line}"),
        name: const_name
            .captures(&source[window..start])
            .map(|captures| captures[1].to_string()),
        template: before.trim_end().ends_with("format!("),
        text,
    }
}

/// The value of a (non-raw) Rust string literal's contents.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\n') => {
                // Line continuation: the newline and the next line's leading whitespace go.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('u') => {
                let code: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '{')
                    .take_while(|c| *c != '}')
                    .collect();
                if let Some(c) = u32::from_str_radix(&code, 16).ok().and_then(char::from_u32) {
                    out.push(c);
                }
            }
            Some('x') => {
                let code: String = chars.by_ref().take(2).collect();
                if let Ok(b) = u8::from_str_radix(&code, 16) {
                    out.push(char::from(b));
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[test]
fn literals_are_read_as_rust_reads_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sample.rs");
    std::fs::write(
        &file,
        concat!(
            "// \"in a comment\"\n",
            "const A: &str = \"a\\\n    b\\n\\\"c\\\"\";\n",
            "const B: &str = r#\"raw \"quoted\" {x}\"#;\n",
            "fn f<'a>(c: char) -> bool { c == '\"' || c == '\\'' }\n",
            "let s = format!(r\"{x}: y\", x = 1);\n",
            "let t = br\"bytes\";\n",
        ),
    )
    .expect("write sample");
    let found = string_literals(&file, "sample.rs");
    let texts: Vec<(&str, Option<&str>, bool)> = found
        .iter()
        .map(|l| (l.text.as_str(), l.name.as_deref(), l.template))
        .collect();
    assert_eq!(
        texts,
        [
            ("ab\n\"c\"", Some("A"), false),
            ("raw \"quoted\" {x}", Some("B"), false),
            ("{x}: y", None, true),
            ("bytes", None, false),
        ]
    );
    assert_eq!(found[1].origin, "sample.rs:4");
}
