//! Parses Istio's own sample and test configuration (the shared corpus) and checks that Weft accepts what Istio accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weft_api::{ConfigObject, DocumentError, Kind, ParsedDocument, parse_documents};

/// Kinds whose documents must be accepted. (Gateway and Sidecar are modelled too and checked
/// the same way.)
const MODELED: [&str; 10] = [
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "WorkloadEntry",
    "Gateway",
    "Sidecar",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Telemetry",
];

/// Documents of modelled kinds that Weft rejects on purpose because Istio rejects them too:
/// `(file relative to the corpus root, document index, expected error text)`.
///
/// Empty: every document in `tests/testdata/config/` that looks odd (short destination hosts
/// such as `c`, `sourceLabels` matches, DNS service entries without addresses, `unix://`
/// endpoints, partial TLS settings) is accepted by Istio's validation as well, and the
/// documents Istio would reject were left out of the corpus (see `SOURCE.md`).
const EXPECTED_INVALID: &[(&str, usize, &str)] = &[];

fn corpus_root() -> PathBuf {
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/istio"
    ));
    assert!(
        root.is_dir(),
        "the Istio corpus must exist at {} (it is part of the workspace checkout)",
        root.display()
    );
    root.to_path_buf()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn read(rel: &str) -> String {
    let p = corpus_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every document of every corpus file, keyed by path relative to the corpus root.
fn corpus() -> BTreeMap<String, Vec<ParsedDocument>> {
    let root = corpus_root();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(
        files.len() > 40,
        "expected the full corpus, found {} files",
        files.len()
    );
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("read corpus file");
            let rel = f
                .strip_prefix(&root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            (rel, parse_documents(&text))
        })
        .collect()
}

/// Checks every modelled document under `dir`; returns how many were accepted per kind.
fn check_dir(dir: &str) -> BTreeMap<Kind, usize> {
    let mut ok_by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut expected_seen = 0;
    for (file, docs) in corpus().into_iter().filter(|(f, _)| f.starts_with(dir)) {
        for doc in docs {
            let expected = EXPECTED_INVALID
                .iter()
                .find(|(f, i, _)| *f == file && *i == doc.index);
            match (&doc.result, expected) {
                (Ok(obj), None) => *ok_by_kind.entry(obj.kind()).or_default() += 1,
                (Ok(_), Some(_)) => failures.push(format!(
                    "{file}#{}: expected to be rejected but was accepted",
                    doc.index
                )),
                (Err(DocumentError::Unsupported { api_version, kind }), _) => assert!(
                    !((api_version.starts_with("networking.istio.io/")
                        || api_version.starts_with("security.istio.io/")
                        || api_version.starts_with("telemetry.istio.io/"))
                        && MODELED.contains(&kind.as_str())),
                    "{file}#{}: modelled kind {kind} reported unsupported",
                    doc.index
                ),
                (Err(e), Some((_, _, msg))) if e.to_string().contains(msg) => expected_seen += 1,
                (Err(e), _) => failures.push(format!("{file}#{}: {e}", doc.index)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus documents under {dir} rejected:\n{}",
        failures.join("\n")
    );
    let expected_here = EXPECTED_INVALID
        .iter()
        .filter(|(f, _, _)| f.starts_with(dir))
        .count();
    assert_eq!(
        expected_seen, expected_here,
        "expected failures not all seen"
    );
    ok_by_kind
}

#[test]
fn bookinfo_networking_parses_and_validates() {
    let ok = check_dir("samples/bookinfo/networking/");
    for k in [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Gateway,
    ] {
        assert!(
            ok.get(&k).copied().unwrap_or(0) > 0,
            "no {k} accepted: {ok:?}"
        );
    }
    assert!(ok[&Kind::VirtualService] >= 20, "{ok:?}");
}

#[test]
fn testdata_config_parses() {
    let ok = check_dir("tests/testdata/config/");
    for k in [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Gateway,
        Kind::Sidecar,
    ] {
        assert!(
            ok.get(&k).copied().unwrap_or(0) > 0,
            "no {k} accepted: {ok:?}"
        );
    }
}

#[test]
fn every_modelled_document_in_the_corpus_is_accepted() {
    let ok = check_dir("");
    let total: usize = ok.values().sum();
    assert!(total > 100, "only {total} objects accepted: {ok:?}");
}

#[test]
fn other_kinds_are_unsupported_not_invalid() {
    let docs = parse_documents(&read("samples/bookinfo/platform/kube/bookinfo.yaml"));
    assert!(docs.len() > 10);
    for d in &docs {
        assert!(
            matches!(&d.result, Err(e) if e.is_unsupported()),
            "#{}: {:?}",
            d.index,
            d.result
        );
    }
}

#[test]
fn security_documents_parse() {
    for file in [
        "tests/testdata/config/authn.yaml",
        "tests/testdata/config/peer-authn-strict.yaml",
    ] {
        let docs = parse_documents(&read(file));
        assert!(!docs.is_empty(), "{file}");
        for d in &docs {
            let obj = d
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{file}#{}: {e}", d.index));
            assert_eq!(obj.kind(), Kind::PeerAuthentication);
            assert_eq!(obj.api_version(), "security.istio.io/v1");
        }
    }
}

#[test]
fn weighted_route_details() {
    let docs = parse_documents(&read(
        "samples/bookinfo/networking/virtual-service-reviews-80-20.yaml",
    ));
    let Ok(ConfigObject::VirtualService(vs)) = &docs[0].result else {
        panic!("{:?}", docs[0].result)
    };
    assert_eq!(vs.api_version, "networking.istio.io/v1alpha3");
    let weights: Vec<_> = vs.spec.http[0].route.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [Some(80), Some(20)]);
    assert_eq!(
        vs.spec.http[0].route[1].destination.subset.as_deref(),
        Some("v2")
    );
}

#[test]
fn broken_corpus_documents_are_reported_with_paths() {
    let text = read("samples/bookinfo/networking/virtual-service-reviews-80-20.yaml")
        .replace("weight: 20", "weight: 0")
        .replace("weight: 80", "weight: 0");
    let docs = parse_documents(&text);
    let err = docs[0].result.as_ref().expect_err("all weights are 0");
    let msgs: Vec<_> = err.errors().iter().map(ToString::to_string).collect();
    assert_eq!(msgs, ["spec.http[0].route: total destination weight = 0"]);

    let text = read("samples/bookinfo/networking/virtual-service-reviews-80-20.yaml").replacen(
        "host: reviews",
        "hots: reviews",
        1,
    );
    let docs = parse_documents(&text);
    let err = docs[0].result.as_ref().expect_err("typo");
    assert_eq!(
        err.errors()[0].to_string(),
        "spec.http[0].route[0].destination.hots: unknown field \"hots\"; known fields: host, port, subset"
    );
    match err {
        DocumentError::Invalid { kind, name, .. } => {
            assert_eq!(kind.as_deref(), Some("VirtualService"));
            assert_eq!(name.as_deref(), Some("reviews"));
        }
        other => panic!("{other:?}"),
    }

    let text = read("samples/bookinfo/networking/destination-rule-all.yaml")
        .replacen("name: v2", "name: v1", 1);
    let docs = parse_documents(&text);
    let bad: Vec<_> = docs
        .iter()
        .filter_map(|d| d.result.as_ref().err())
        .flat_map(|e| e.errors().iter().map(ToString::to_string))
        .collect();
    assert_eq!(bad, ["spec.subsets[1].name: duplicate subset names: v1"]);
}

#[test]
fn round_trip() {
    let mut n = 0;
    for (file, docs) in corpus() {
        for doc in docs {
            let Ok(obj) = doc.result else { continue };
            let yaml = serde_yaml::to_string(&obj).expect("serialize");
            let again = parse_documents(&yaml);
            assert_eq!(again.len(), 1, "{file}#{}: {yaml}", doc.index);
            let back: &ConfigObject = again[0]
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{file}#{}: reparse failed: {e}\n{yaml}", doc.index));
            assert_eq!(back, &obj, "{file}#{}", doc.index);
            n += 1;
        }
    }
    assert!(n > 100, "only {n} objects round-tripped");
}

/// Truncated and mangled versions of every corpus file must never panic, and every document
/// must come back either as an object or as an error.
///
/// A file is cut every 13 bytes, but at most about 200 times: each cut re-parses the file, and
/// the corpus holds Istio's 900 KB CRD bundle, which every 13 bytes would take hours.
#[test]
fn mangled_input_never_panics() {
    let root = corpus_root();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut parsed = 0usize;
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read corpus file");
        let cuts: Vec<usize> = (0..text.len())
            .step_by((text.len() / 200).max(13))
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        for cut in cuts {
            parsed += parse_documents(&text[..cut]).len();
            // Swap some structural characters to produce odd but parseable YAML.
            let mangled: String = text
                .char_indices()
                .map(|(i, c)| match c {
                    ':' if i % 5 == cut % 5 => ' ',
                    '-' if i % 3 == cut % 3 => '*',
                    ' ' if i % 17 == cut % 17 => '\t',
                    c => c,
                })
                .collect();
            parsed += parse_documents(&mangled).len();
        }
    }
    assert!(parsed > 1000);
}
