//! The API parity cases (`crates/api/tests/cases/`) against a real API server: each case
//! goes through `kubectl apply --dry-run=server`, so through Weft's CRD schema and CEL rules
//! and then Weft's validating webhook, and must get Istio's verdict there as it does in
//! local mode (`crates/api/tests/cases.rs`).

#[path = "../../crates/api/tests/support/cases.rs"]
mod support;

use std::collections::BTreeSet;

use weft_api::Kind;

use crate::k8s::KubeCluster;

/// Checks every case; panics listing each one whose verdict is not Istio's. Needs the CRDs
/// applied and the validating webhook served. Returns how many cases were checked.
pub fn check_all(cluster: &KubeCluster) -> usize {
    let files = support::load_all();
    let mut namespaces = BTreeSet::new();
    let mut jobs = Vec::new();
    for (path, file) in &files {
        let kind = Kind::parse(&file.kind)
            .unwrap_or_else(|| panic!("{}: unknown kind {}", path.display(), file.kind));
        let api_version = format!("{}/{}", kind.group(), kind.versions()[0]);
        for case in &file.cases {
            namespaces.insert(case.namespace());
            jobs.push((path, case, case.document_json(&file.kind, &api_version)));
        }
    }
    for namespace in &namespaces {
        if !cluster
            .kubectl(&["get", "namespace", namespace])
            .status
            .success()
        {
            cluster.kubectl_ok(&["create", "namespace", namespace]);
        }
    }
    // Four kubectl processes at a time: each spends most of its time waiting.
    let chunk = jobs.len().div_ceil(4).max(1);
    let wrong: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|(path, case, doc)| {
                            let out = cluster
                                .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], doc);
                            let verdict = if out.status.success() {
                                Ok(())
                            } else {
                                Err(String::from_utf8_lossy(&out.stderr).into_owned())
                            };
                            case.judge(verdict).map(|problem| {
                                format!(
                                    "{} case {:?}: {problem}\n---\n{doc}",
                                    path.file_name().unwrap_or_default().to_string_lossy(),
                                    case.name
                                )
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a case worker"))
            .collect()
    });
    assert!(!jobs.is_empty(), "no API cases found");
    assert!(
        wrong.is_empty(),
        "{} of {} cases get a verdict other than Istio's from the API server:\n\n{}",
        wrong.len(),
        jobs.len(),
        wrong.join("\n\n")
    );
    jobs.len()
}

/// Every Istio object of the shared corpus (`shared/corpus/istio`, Istio's own samples and
/// test configuration) is accepted unchanged by the API server, through Weft's CRDs and
/// webhook (`kubectl apply --dry-run=server`, one file at a time). Returns the number of
/// objects sent.
pub fn check_corpus(cluster: &KubeCluster) -> usize {
    use serde::Deserialize;

    let root = crate::istio_corpus();
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    let mut objects = 0;
    let mut refused = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let Ok(value) = serde_yaml::Value::deserialize(doc) else {
                break;
            };
            let (Some(api), Some(kind)) = (value["apiVersion"].as_str(), value["kind"].as_str())
            else {
                continue;
            };
            let group = api.split_once('/').map_or("", |(g, _)| g);
            if !Kind::parse(kind)
                .is_some_and(|k| k.group() == group && group.ends_with(".istio.io"))
            {
                continue;
            }
            if let Some(ns) = value["metadata"]["namespace"].as_str()
                && !cluster.kubectl(&["get", "namespace", ns]).status.success()
            {
                cluster.kubectl_ok(&["create", "namespace", ns]);
            }
            // As JSON: the data the file holds, not re-written YAML that kubectl would read
            // by YAML 1.1 rules (see `support::Case::document_json`).
            docs.push(serde_json::to_string(&value).expect("a document is JSON"));
        }
        if docs.is_empty() {
            continue;
        }
        objects += docs.len();
        let out = cluster.kubectl_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            &docs.join("---\n"),
        );
        if !out.status.success() {
            refused.push(format!(
                "{}:\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(objects > 0, "no Istio objects in {}", root.display());
    assert!(
        refused.is_empty(),
        "the API server refuses Istio's own config:\n{}",
        refused.join("\n")
    );
    objects
}

fn corpus_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            // istio/api's schemas and protos are not config.
            if path.file_name().is_some_and(|n| n != "api") {
                corpus_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}
