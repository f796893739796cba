//! Fuzz target: the local source's bytes → objects step,
//! `source::local::load_bytes(set, file, bytes, previous)`.
//!
//! Seeds: `crates/fuzz/corpus/local-loader/` (comments, anchors, a broken document between good
//! ones, duplicate keys, CRLF and a byte-order mark, bytes that are not UTF-8) and every YAML
//! file of the Istio samples. `previous` holds every seed's objects as if loaded from the same
//! file, so broken documents have previous versions to keep. Inputs: a whole seed file mutated
//! byte-wise, or one to three seed documents mutated as trees and written as one file. Checked:
//! no panic or hang; every object in the result was parsed from these bytes (same document index,
//! the first definition of its key) or is the previous version of a key no document defines now,
//! marked stale; every valid document's object is there; errors are filed under this file, name
//! it, exist whenever a document or the encoding is bad, and stay within the per-file caps.
//!
//! Default budget 2 s; a long run:
//! `WEFT_FUZZ_SECONDS=600 cargo test --release -p weft-controller --test fuzz_local_loader`.

use std::path::Path;

use weft_api::{DocumentError, parse_documents};
use weft_controller::object::ObjectKey;
use weft_controller::source::ConfigSet;
use weft_controller::source::local::load_bytes;
use weft_fuzz::json::Documents;
use weft_fuzz::raw::{self, below};
use weft_fuzz::{Fuzz, RngExt as _, Tally, corpus};

const FILE: &str = "/etc/weft/config/fuzz.yaml";
/// The loader's caps (`source/local/assemble.rs`): lines per file, bytes per line (plus the
/// note of how long a cut line was).
const MAX_ERRORS_PER_FILE: usize = 100;
const MAX_ERROR_LINE: usize = 1024 + 64;

#[test]
fn fuzz_local_loader() {
    let mut fuzz = Fuzz::new("local-loader").default_seconds(2.0);
    for (file, text) in corpus::istio_yaml_files(64 * 1024) {
        fuzz.seed(format!("istio/{file}"), text);
    }
    let mut previous = ConfigSet::default();
    for seed in fuzz.seeds() {
        let mut set = std::mem::take(&mut previous);
        load_bytes(
            &mut set,
            Path::new(FILE),
            &seed.bytes,
            &ConfigSet::default(),
        );
        previous = set;
    }
    previous.errors.clear();
    assert!(
        previous.objects.len() > 50,
        "the seeds hold only {} objects",
        previous.objects.len()
    );
    let documents = Documents::new(
        fuzz.seeds()
            .iter()
            .flat_map(|s| corpus::yaml_documents(&String::from_utf8_lossy(&s.bytes)))
            .collect(),
    );

    let outcomes = Tally::new();
    let seen = outcomes.clone();
    let summary = fuzz.run(
        move |rng, seeds| {
            if rng.random_bool(0.5) {
                let mut bytes = seeds[below(rng, seeds.len())].bytes.clone();
                raw::mutate(rng, &mut bytes, seeds);
                return bytes;
            }
            let mut file = Vec::new();
            for i in 0..rng.random_range(1..=3) {
                if i > 0 {
                    file.extend_from_slice(b"\n---\n");
                }
                let index = below(rng, documents.values.len());
                file.extend(documents.mutate(rng, index, &[]));
            }
            file
        },
        move |input| {
            let counts = check(input, &previous)?;
            for (what, n) in counts {
                seen.add(what, n);
            }
            Ok(())
        },
    );
    println!("fuzz_local_loader: {outcomes:?}");
    for what in [
        "fresh objects",
        "stale objects",
        "files with errors",
        "not UTF-8",
    ] {
        assert!(
            outcomes.count(what) > 0,
            "no {what} in {} inputs: {outcomes:?}",
            summary.iterations
        );
    }
}

fn check(input: &[u8], previous: &ConfigSet) -> Result<Vec<(&'static str, u64)>, String> {
    let file = Path::new(FILE);
    let mut set = ConfigSet::default();
    load_bytes(&mut set, file, input, previous);

    // Errors: under this file only, naming it, within the caps.
    if let Some(other) = set.errors.keys().find(|k| k.as_str() != FILE) {
        return Err(format!("errors filed under {other:?}, not {FILE}"));
    }
    let lines = set.errors.get(FILE).map(Vec::as_slice).unwrap_or_default();
    if lines.len() > MAX_ERRORS_PER_FILE {
        return Err(format!("{} error lines for one file", lines.len()));
    }
    for line in lines {
        if !line.starts_with(FILE) && !line.starts_with("... and ") {
            return Err(format!(
                "an error line that does not name the file: {line:?}"
            ));
        }
        if line.len() > MAX_ERROR_LINE {
            return Err(format!("a {}-byte error line", line.len()));
        }
    }

    // What the bytes hold, parsed independently.
    let documents = match std::str::from_utf8(input) {
        Ok(text) => Some(parse_documents(text)),
        Err(_) => None,
    };
    let bad_document = documents.as_ref().is_none_or(|docs| {
        docs.iter()
            .any(|d| matches!(d.result, Err(DocumentError::Invalid { .. })))
    });
    if bad_document && lines.is_empty() {
        return Err("a bad document or encoding without an error".to_string());
    }

    let (mut fresh, mut stale) = (0, 0);
    for (key, sourced) in &set.objects {
        if sourced.stale {
            stale += 1;
            let Some(old) = previous.objects.get(key) else {
                return Err(format!("stale {key} has no previous version"));
            };
            if (&old.object, &old.file, old.index)
                != (&sourced.object, &sourced.file, sourced.index)
            {
                return Err(format!("stale {key} is not its previous version"));
            }
            let defined_now = documents.iter().flatten().any(|d| {
                d.result
                    .as_ref()
                    .is_ok_and(|object| ObjectKey::of(object) == *key)
            });
            if defined_now {
                return Err(format!(
                    "{key} is kept stale although a document defines it"
                ));
            }
            continue;
        }
        fresh += 1;
        let parsed = documents
            .iter()
            .flatten()
            .find(|d| d.index == sourced.index)
            .and_then(|d| d.result.as_ref().ok());
        if sourced.file != file || parsed != Some(&sourced.object) {
            return Err(format!(
                "{key} ({} document {}) is not what that document parses to",
                sourced.file.display(),
                sourced.index
            ));
        }
    }
    // Every valid document's object is there, fresh (its own or an earlier duplicate's).
    for doc in documents.iter().flatten() {
        if let Ok(object) = &doc.result {
            let key = ObjectKey::of(object);
            match set.objects.get(&key) {
                Some(sourced) if !sourced.stale && sourced.index <= doc.index => {}
                _ => {
                    return Err(format!(
                        "document {} ({key}) is valid but its object is not in the set",
                        doc.index
                    ));
                }
            }
        }
    }
    Ok(vec![
        ("inputs", 1),
        ("fresh objects", fresh),
        ("stale objects", stale),
        ("files with errors", u64::from(!lines.is_empty())),
        ("not UTF-8", u64::from(documents.is_none())),
    ])
}
