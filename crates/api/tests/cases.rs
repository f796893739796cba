//! API parity, local mode: every case of `tests/cases/` gets Istio's verdict from `weft-api`
//! (the parser and validation the local loader and the webhook run), the accepted cases
//! together set every field of Istio's published schema, and every CEL rule of Istio's
//! CRDs has a refused case. `tests/tests/api_cases.rs` checks the same cases against a real
//! API server.

#[path = "support/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use weft_api::{Kind, parse_documents};

fn istio_crds() -> Vec<Value> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/istio/api/kubernetes/customresourcedefinitions.gen.yaml"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("Istio's CRDs must exist at {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("a CRD"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Istio's `spec` schema of `kind` (the storage version's; all versions share it).
fn istio_spec_schema(kind: Kind) -> Value {
    istio_crds()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == kind.as_str())
        .map(|c| {
            c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
        })
        .unwrap_or_else(|| panic!("Istio's CRDs have no {kind}"))
}

/// Local mode's verdict on one document.
fn local_verdict(document: &str) -> Result<(), String> {
    let parsed = parse_documents(document);
    match parsed.as_slice() {
        [one] => one.result.as_ref().map(|_| ()).map_err(ToString::to_string),
        other => Err(format!("expected one document, got {}", other.len())),
    }
}

fn kind_of(name: &str) -> Kind {
    Kind::parse(name).unwrap_or_else(|| panic!("a case file names an unknown kind {name:?}"))
}

fn default_api_version(kind: Kind) -> String {
    format!("{}/{}", kind.group(), kind.versions()[0])
}

#[test]
fn local_mode_gives_istios_verdict() {
    let mut wrong = Vec::new();
    let mut count = 0;
    for (path, file) in cases::load_all() {
        let kind = kind_of(&file.kind);
        for case in &file.cases {
            count += 1;
            let doc = case.document(&file.kind, &default_api_version(kind));
            if let Some(problem) = case.judge(local_verdict(&doc)) {
                wrong.push(format!(
                    "{} case {:?}: {problem}\n---\n{doc}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    case.name
                ));
            }
        }
    }
    assert!(
        count > 0,
        "no cases found in {}",
        cases::cases_dir().display()
    );
    assert!(
        wrong.is_empty(),
        "{} of {count} cases get a verdict other than Istio's:\n\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

#[test]
fn case_files_are_well_formed() {
    let mut seen_kinds = BTreeSet::new();
    for (path, file) in cases::load_all() {
        let kind = kind_of(&file.kind);
        assert!(seen_kinds.insert(kind), "{kind} has two case files");
        let mut names = BTreeSet::new();
        for case in &file.cases {
            let n = &case.name;
            assert!(
                n.len() <= 63
                    && !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !n.starts_with('-')
                    && !n.ends_with('-'),
                "{}: case name {n:?} is not a DNS-1123 label",
                path.display()
            );
            assert!(
                names.insert(n.clone()),
                "{}: case {n:?} twice",
                path.display()
            );
            if case.refused.is_some() {
                assert!(
                    case.rule.is_some(),
                    "{}: refused case {n:?} names no Istio rule",
                    path.display()
                );
            } else {
                assert!(
                    case.message.is_none() && case.rule.is_none(),
                    "{}: accepted case {n:?} has a rule or message",
                    path.display()
                );
            }
        }
    }
}

/// Every kind Weft serves from Istio's groups has a case file.
#[test]
fn every_istio_kind_has_cases() {
    let have: BTreeSet<String> = cases::load_all().into_iter().map(|(_, f)| f.kind).collect();
    let missing: Vec<_> = Kind::ALL
        .into_iter()
        .filter(|k| k.group().ends_with(".istio.io") && !have.contains(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "no case file for {missing:?}");
}

/// The field paths of a schema: `spec.http[].route[].weight`, `spec.selector.matchLabels{}`.
/// Leaves are the nodes with nothing below them.
fn schema_leaves(node: &Value, at: String, out: &mut BTreeSet<String>) {
    let mut below = false;
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            below = true;
            schema_leaves(v, format!("{at}.{k}"), out);
        }
    }
    if let Some(items) = node.get("items") {
        below = true;
        schema_leaves(items, format!("{at}[]"), out);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        below = true;
        schema_leaves(values, format!("{at}{{}}"), out);
    }
    if !below {
        out.insert(at);
    }
}

/// The field paths a document sets, spelled as [`schema_leaves`] spells them (the schema
/// tells a map from an object).
fn set_paths(value: &Value, schema: &Value, at: String, out: &mut BTreeSet<String>) {
    out.insert(at.clone());
    match value {
        Value::Array(items) => {
            for item in items {
                set_paths(item, &schema["items"], format!("{at}[]"), out);
            }
        }
        Value::Object(fields) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in fields {
                    if let Some(s) = props.get(k) {
                        set_paths(v, s, format!("{at}.{k}"), out);
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties") {
                for v in fields.values() {
                    set_paths(v, values, format!("{at}{{}}"), out);
                }
            }
        }
        _ => {}
    }
}

/// The accepted cases of a kind, together, set every field of Istio's schema for it.
#[test]
fn accepted_cases_set_every_field_of_istios_schema() {
    let mut missing = BTreeMap::new();
    for (_, file) in cases::load_all() {
        let kind = kind_of(&file.kind);
        if !kind.group().ends_with(".istio.io") {
            continue;
        }
        let schema = istio_spec_schema(kind);
        let mut leaves = BTreeSet::new();
        schema_leaves(&schema, "spec".into(), &mut leaves);
        let mut set = BTreeSet::new();
        let mut refused_set = BTreeSet::new();
        for case in &file.cases {
            let spec: Value = serde_json::to_value(&case.spec).expect("spec as JSON");
            let into = if case.refused.is_none() {
                &mut set
            } else {
                &mut refused_set
            };
            set_paths(&spec, &schema, "spec".into(), into);
        }
        for path in &file.always_refused {
            assert!(
                refused_set.contains(path),
                "{kind}: {path} is listed as always refused, but no refused case sets it"
            );
            set.insert(path.clone());
        }
        let unset: Vec<_> = leaves.difference(&set).cloned().collect();
        if !unset.is_empty() {
            missing.insert(kind, unset);
        }
    }
    assert!(
        missing.is_empty(),
        "fields of Istio's schema no accepted case sets:\n{missing:#?}"
    );
}

/// The CEL rules (`x-kubernetes-validations`) of a schema: `(path, message)`.
fn cel_rules(node: &Value, at: String, out: &mut BTreeSet<(String, String)>) {
    for rule in node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message = rule["message"].as_str().unwrap_or_default().to_string();
        out.insert((at.clone(), message));
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            cel_rules(v, format!("{at}.{k}"), out);
        }
    }
    if let Some(items) = node.get("items") {
        cel_rules(items, format!("{at}[]"), out);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        cel_rules(values, format!("{at}{{}}"), out);
    }
}

/// Each of Istio's CEL rules (by its message, per kind) has a refused case that quotes it.
#[test]
fn every_cel_rule_of_istio_has_a_refused_case() {
    let mut uncovered = Vec::new();
    for (_, file) in cases::load_all() {
        let kind = kind_of(&file.kind);
        if !kind.group().ends_with(".istio.io") {
            continue;
        }
        let mut rules = BTreeSet::new();
        cel_rules(&istio_spec_schema(kind), "spec".into(), &mut rules);
        let messages: BTreeSet<String> = rules.into_iter().map(|(_, m)| m).collect();
        for message in messages {
            let covered = file.cases.iter().any(|c| {
                c.refused.is_some() && c.message.as_deref().is_some_and(|m| m.contains(&message))
            });
            if !covered {
                uncovered.push(format!("{kind}: {message:?}"));
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "Istio CEL rules without a refused case quoting their message:\n{}",
        uncovered.join("\n")
    );
}
