//! Checks a spec against its kind's generated schema, as the API server does before any
//! webhook runs: types, unknown fields, enums, ranges, lengths, counts, patterns, required
//! fields, and the CEL rules (`cel_eval.rs`). Local mode runs it first so a file gets the
//! verdict `kubectl apply` gives, and every schema error at once, each with its field path.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::de::quoted;
use crate::object::Kind;
use crate::validation::{FieldError, Path};

/// The spec schema of every kind, generated once.
fn spec_schema(kind: Kind) -> &'static Value {
    static SCHEMAS: OnceLock<BTreeMap<Kind, Value>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| (k, super::open_api_schema(k)["properties"]["spec"].clone()))
            .collect()
    });
    &schemas[&kind]
}

/// Every schema error of `spec` (a `kind`'s spec, as JSON), with paths from `spec`.
pub fn check_spec(kind: Kind, spec: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check(spec_schema(kind), spec, &Path::root("spec"), &mut errors);
    errors
}

/// A JSON value as a message shows it: strings quoted, the rest as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => quoted(s),
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "a list".into(),
        other => other.to_string(),
    }
}

fn type_name(t: &str) -> &str {
    match t {
        "object" => "an object",
        "array" => "a list",
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        other => other,
    }
}

/// Checks `v` against `schema` at `at`.
pub(crate) fn check(schema: &Value, v: &Value, at: &Path, errors: &mut Vec<FieldError>) {
    let Some(s) = schema.as_object() else {
        return;
    };
    let free = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if v.is_null() {
        // The API server drops nulls of fields that are not nullable; so does serde here.
        return;
    }
    if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            at.push(
                errors,
                format!("must be a whole number or a string, not {}", shown(v)),
            );
        }
        return;
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        at.push(
            errors,
            format!("must be {}, not {}", type_name(ty), shown(v)),
        );
        return;
    }
    check_rules(s, v, at, errors);
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(v)
    {
        let names: Vec<String> = allowed.iter().map(shown).collect();
        at.push(
            errors,
            format!(
                "unknown value {}; use one of {}",
                shown(v),
                names.join(", ")
            ),
        );
    }
    let int = |k: &str| s.get(k).and_then(Value::as_u64);
    if let Some(x) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            at.push(errors, format!("must be at least {min}, not {v}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            at.push(errors, format!("must be at most {max}, not {v}"));
        }
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count() as u64;
        if let Some(max) = int("maxLength")
            && n > max
        {
            at.push(
                errors,
                format!("must be at most {max} characters long, not {n}"),
            );
        }
        if let Some(min) = int("minLength")
            && n < min
        {
            at.push(errors, must_not_be_empty_or(min, n, "characters long"));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str)
            && regex::Regex::new(p).is_ok_and(|re| !re.is_match(text))
        {
            at.push(errors, format!("{} does not match {}", shown(v), quoted(p)));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if let Some(max) = int("maxItems")
            && n > max
        {
            at.push(errors, format!("must have at most {max} items, not {n}"));
        }
        if let Some(min) = int("minItems")
            && n < min
        {
            at.push(errors, must_not_be_empty_or(min, n, "items"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &at.index(i), errors);
            }
        }
    }
    if let Some(map) = v.as_object() {
        let n = map.len() as u64;
        if let Some(max) = int("maxProperties")
            && n > max
        {
            at.push(errors, format!("must have at most {max} entries, not {n}"));
        }
        if let Some(min) = int("minProperties")
            && n < min
        {
            at.push(errors, must_not_be_empty_or(min, n, "entries"));
        }
        if let Some(Value::Array(required)) = s.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if map.get(r).is_none_or(Value::is_null) {
                    at.field(r).push(errors, "required");
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        let values = s.get("additionalProperties").filter(|a| a.is_object());
        for (k, val) in map {
            if let Some(ps) = props.and_then(|ps| ps.get(k)) {
                check(ps, val, &at.field(k), errors);
            } else if let Some(vs) = values {
                check(vs, val, &at.key(k), errors);
            } else if !free {
                let known: Vec<&str> = props
                    .map(|ps| ps.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                at.field(k).push(
                    errors,
                    if known.is_empty() {
                        format!("unknown field {}", quoted(k))
                    } else {
                        format!(
                            "unknown field {}; known fields: {}",
                            quoted(k),
                            known.join(", ")
                        )
                    },
                );
            }
        }
    }
}

/// Evaluates the CEL rules (`x-kubernetes-validations`) of `s` on `v`, as the API server
/// does: a rule that is false, or that fails to evaluate, refuses the value with the rule's
/// message.
fn check_rules(
    s: &serde_json::Map<String, Value>,
    v: &Value,
    at: &Path,
    errors: &mut Vec<FieldError>,
) {
    let rules = s.get("x-kubernetes-validations").and_then(Value::as_array);
    for rule in rules.into_iter().flatten() {
        let (Some(expression), Some(message)) = (rule["rule"].as_str(), rule["message"].as_str())
        else {
            continue;
        };
        match super::cel_eval::why_not(expression, v) {
            None => {}
            Some(detail) if detail.is_empty() => at.push(errors, message),
            Some(detail) => at.push(errors, format!("{message} ({detail})")),
        }
    }
}

fn must_not_be_empty_or(min: u64, n: u64, what: &str) -> String {
    if min == 1 {
        "must not be empty".to_string()
    } else {
        format!("must have at least {min} {what}, not {n}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(kind: Kind, spec: Value) -> Vec<String> {
        check_spec(kind, &spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_schema_error_is_named() {
        assert_eq!(
            errors(
                Kind::VirtualService,
                json!({"hosts": "a", "http": [{"timeout": 5, "rewrite": {"urii": "/"}}]})
            ),
            [
                "spec.hosts: must be a list, not \"a\"",
                "spec.http[0].rewrite.urii: unknown field \"urii\"; known fields: authority, uri, uriRegexRewrite",
                "spec.http[0].timeout: must be a string, not 5",
            ]
        );
        assert_eq!(
            errors(
                Kind::PeerAuthentication,
                json!({"mtls": {"mode": "ON"}, "selector": {"matchLabels": {"app": "a".repeat(64)}}})
            ),
            [
                "spec.mtls.mode: unknown value \"ON\"; use one of \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\"",
                "spec.selector.matchLabels[app]: must be at most 63 characters long, not 64",
            ]
        );
    }

    #[test]
    fn a_good_spec_has_no_errors() {
        assert!(
            errors(
                Kind::VirtualService,
                json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]})
            )
            .is_empty()
        );
    }
}
