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
            jobs.push((path, case, case.document(&file.kind, &api_version)));
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
