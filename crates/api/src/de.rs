//! Serde helpers shared by the API types.

use serde::{Deserialize, Deserializer};

/// Deserializes an optional collection, treating an explicit YAML `null` (e.g. `subsets:` with
/// nothing after it) as the empty default, as Kubernetes and Istio do.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `skip_serializing_if` helper for `bool` fields that default to false.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Rewrites a serde error message for people: Rust type names become what the field takes
/// (`expected u32` → `expected a whole number from 0 to 4294967295`), serde's backquotes
/// become double quotes, and Rust's `\u{8}` escapes in quoted values become JSON's (`\b`),
/// so the value reads as the user wrote it in YAML.
pub(crate) fn plain_message(message: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        (
            "expected u64",
            "expected a whole number from 0 to 18446744073709551615",
        ),
        (
            "expected i32",
            "expected a whole number from -2147483648 to 2147483647",
        ),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("floating point `", "number `"),
        ("integer `", "number `"),
        ("unknown variant", "unknown value"),
    ];
    let mut out = message.to_string();
    for (rust, plain) in TYPES {
        if let Some(at) = out.find(rust) {
            let end = at + rust.len();
            // Only whole words: `expected u32` but not `expected u32x`.
            let word_ends = !rust.ends_with(|c: char| c.is_ascii_alphanumeric())
                || !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric());
            if word_ends {
                out.replace_range(at..end, plain);
            }
        }
    }
    unescape_rust(&out.replace('`', "\""))
}

/// Rewrites Rust's `\u{…}` escapes (from `{:?}` of a string) as JSON escapes.
pub(crate) fn unescape_rust(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        match u32::from_str_radix(&after[..close], 16)
            .ok()
            .and_then(char::from_u32)
        {
            Some(c) => {
                let json = serde_json::to_string(&c.to_string()).unwrap_or_default();
                out.push_str(json.trim_matches('"'));
            }
            None => out.push_str(&rest[at..at + 3 + close + 1]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `value` quoted as a user wrote it in YAML: double quotes, JSON's escapes (`"a\tb"`), never
/// Rust's (`"a\u{9}b"`). Use it, not `{:?}`, for values in messages.
pub fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_read_plainly() {
        assert_eq!(
            plain_message("invalid type: string \"abc\", expected u32"),
            "invalid type: string \"abc\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_message("invalid type: floating point `1.5`, expected i32"),
            "invalid type: number \"1.5\", expected a whole number from -2147483648 to 2147483647"
        );
        assert_eq!(
            plain_message("unknown variant `FOO`, expected one of `A`, `B`"),
            "unknown value \"FOO\", expected one of \"A\", \"B\""
        );
        assert_eq!(
            plain_message("unsupported protocol: \"hTPp\\u{8}lah\""),
            "unsupported protocol: \"hTPp\\blah\""
        );
        assert_eq!(plain_message("expected u32x"), "expected u32x");
    }

    #[test]
    fn quoted_values_use_json_escapes() {
        assert_eq!(quoted("hTPp\u{8}lah"), "\"hTPp\\blah\"");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }
}
