//! Fuzz target: bytes → `parse_documents` for every Istio kind weft-api models.
//!
//! Seeds: `crates/fuzz/corpus/validation/`, every document of a modelled kind in the Istio
//! samples (`../shared/corpus/istio/`) and the YAML examples in the Istio API's protos. Each
//! input starts from a seed of one kind (kinds take turns), mutated as a YAML/JSON tree or as
//! raw text. Checked: no panic or hang; an invalid document carries at least one error, each
//! with a reason, and the errors stay proportionate to the input; an accepted object written
//! back as YAML and as JSON parses to the same object. Every kind must have been both accepted
//! and rejected during the run.
//!
//! Default budget 3 s; a long run: `WEFT_FUZZ_SECONDS=600 cargo test --release -p weft-api --test fuzz_validation`.

use std::collections::BTreeMap;

use weft_api::{ConfigObject, DocumentError, Kind, parse_documents};
use weft_fuzz::json::Documents;
use weft_fuzz::raw::below;
use weft_fuzz::{Fuzz, Tally, corpus};

#[test]
fn fuzz_validation() {
    let mut fuzz = Fuzz::new("validation").default_seconds(3.0);
    for (file, text) in corpus::istio_yaml_files(256 * 1024) {
        for (i, doc) in corpus::yaml_documents(&text).into_iter().enumerate() {
            if modelled_kind(&doc).is_some() {
                fuzz.seed(format!("istio/{file} document {i}"), yaml(&doc));
            }
        }
    }
    for (label, text) in corpus::istio_proto_examples() {
        if corpus::yaml_documents(&text)
            .iter()
            .any(|d| modelled_kind(d).is_some())
        {
            fuzz.seed(format!("istio/{label}"), text);
        }
    }

    // Every document of every seed, grouped by kind so that kinds take turns.
    let values: Vec<serde_json::Value> = fuzz
        .seeds()
        .iter()
        .flat_map(|s| corpus::yaml_documents(&String::from_utf8_lossy(&s.bytes)))
        .collect();
    let mut by_kind: BTreeMap<Kind, Vec<usize>> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(kind) = modelled_kind(v) {
            by_kind.entry(kind).or_default().push(i);
        }
    }
    let missing: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| !by_kind.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "no seed of {missing:?}");
    let kinds: Vec<Vec<usize>> = by_kind.into_values().collect();
    let documents = Documents::new(values);

    // `<kind> accepted` and `<kind> rejected` documents.
    let outcomes = Tally::new();
    let seen = outcomes.clone();
    let summary = fuzz.run(
        move |rng, seeds| {
            let of_kind = &kinds[below(rng, kinds.len())];
            let index = of_kind[below(rng, of_kind.len())];
            documents.mutate(rng, index, seeds)
        },
        move |input| check(input, &seen),
    );

    println!("fuzz_validation: accepted/rejected per kind: {outcomes:?}");
    for kind in Kind::ALL {
        let accepted = outcomes.count(&format!("{kind} accepted"));
        let rejected = outcomes.count(&format!("{kind} rejected"));
        assert!(
            accepted > 0 && rejected > 0,
            "{kind}: {accepted} accepted and {rejected} rejected in {} inputs: the mutations must reach both",
            summary.iterations
        );
    }
}

fn modelled_kind(doc: &serde_json::Value) -> Option<Kind> {
    let kind = Kind::parse(doc.get("kind")?.as_str()?)?;
    let api_version = doc.get("apiVersion")?.as_str()?;
    api_version
        .starts_with(&format!("{}/", kind.group()))
        .then_some(kind)
}

fn yaml(doc: &serde_json::Value) -> String {
    serde_yaml::to_string(doc).unwrap_or_else(|err| panic!("cannot write {doc}: {err}"))
}

fn check(input: &[u8], outcomes: &Tally) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    for doc in parse_documents(&text) {
        match doc.result {
            Ok(object) => {
                round_trip(&object).map_err(|e| format!("document {}: {e}", doc.index))?;
                outcomes.add(&format!("{} accepted", object.kind()), 1);
            }
            Err(DocumentError::Unsupported { .. }) => {}
            Err(DocumentError::Invalid { kind, errors, .. }) => {
                if errors.is_empty() {
                    return Err(format!("document {}: rejected without an error", doc.index));
                }
                if let Some(e) = errors.iter().find(|e| e.message.trim().is_empty()) {
                    return Err(format!(
                        "document {}: error at {:?} has no reason",
                        doc.index, e.path
                    ));
                }
                let size: usize = errors.iter().map(|e| e.path.len() + e.message.len()).sum();
                if size > 16 * input.len() + 16 * 1024 {
                    return Err(format!(
                        "document {}: {} errors of {size} bytes for a {}-byte input",
                        doc.index,
                        errors.len(),
                        input.len()
                    ));
                }
                if let Some(kind) = kind.as_deref().and_then(Kind::parse) {
                    outcomes.add(&format!("{kind} rejected"), 1);
                }
            }
        }
    }
    Ok(())
}

/// An accepted object, written as YAML and as JSON, parses back to itself.
fn round_trip(object: &ConfigObject) -> Result<(), String> {
    let yaml = serde_yaml::to_string(object).map_err(|e| format!("cannot write YAML: {e}"))?;
    let json = serde_json::to_string(object).map_err(|e| format!("cannot write JSON: {e}"))?;
    for (format, text) in [("YAML", yaml), ("JSON", json)] {
        let again = parse_documents(&text);
        match again.as_slice() {
            [doc] if doc.result.as_ref() == Ok(object) => {}
            [doc] => {
                return Err(format!(
                    "accepted {} {:?} but its {format} form parses to {:?}\n{format}: {text}",
                    object.kind(),
                    object.name(),
                    doc.result
                ));
            }
            docs => {
                return Err(format!(
                    "the {format} form of an accepted {} is {} documents: {text}",
                    object.kind(),
                    docs.len()
                ));
            }
        }
    }
    Ok(())
}
