//! Seed corpora: the committed ones (`crates/fuzz/corpus/<target>/`), and real inputs read at
//! run time from the shared Istio corpus (its sample manifests and the YAML examples in the
//! Istio API's proto comments).

use std::path::{Path, PathBuf};

/// One seed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// Where it comes from (a file path relative to its corpus, or a label).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `crates/fuzz/corpus/<target>/`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// `crates/fuzz/failures/<target>/`.
pub fn failure_dir(target: &str) -> PathBuf {
    crate::runner::failures_root().join(target)
}

/// Every file under `crates/fuzz/corpus/<target>/` (recursively, sorted, dot files and
/// `README.md` left out). A missing directory is no seed.
///
/// # Panics
/// When a file cannot be read.
pub fn committed(target: &str) -> Vec<Seed> {
    let dir = corpus_dir(target);
    files(&dir)
        .into_iter()
        .map(|path| Seed {
            name: format!(
                "corpus/{target}/{}",
                path.strip_prefix(&dir).unwrap_or(&path).display()
            ),
            bytes: read(&path),
        })
        .collect()
}

/// Every regular file under `dir`, recursively, sorted; dot files and `README.md` left out.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "README.md" {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The shared Istio corpus (`<checkout>/../shared/corpus/istio`).
///
/// # Panics
/// When it is missing: it is part of the workspace checkout, and CI has it.
pub fn istio_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/istio");
    assert!(
        root.is_dir(),
        "the Istio corpus must exist at {} (it is part of the workspace checkout)",
        root.display()
    );
    root
}

/// Every `*.yaml`/`*.yml` file of the Istio corpus no larger than `max_bytes` (the CRD bundle
/// is about 1 MB), as `(path relative to the corpus, text)`.
pub fn istio_yaml_files(max_bytes: usize) -> Vec<(String, String)> {
    let root = istio_root();
    files(&root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() as usize <= max_bytes))
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
            let text = String::from_utf8_lossy(&read(&p)).into_owned();
            (rel, text)
        })
        .collect()
}

/// The ```` ```yaml ```` examples in the comments of the Istio API's `.proto` files (every
/// Istio kind has some, including those the sample manifests lack), as `(label, text)`.
pub fn istio_proto_examples() -> Vec<(String, String)> {
    let root = istio_root();
    let mut out = Vec::new();
    for path in files(&root.join("api")) {
        if path.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = String::from_utf8_lossy(&read(&path)).into_owned();
        for (n, block) in yaml_blocks(&text).into_iter().enumerate() {
            out.push((format!("{rel} example {n}"), block));
        }
    }
    out
}

/// The ```` ```yaml ```` blocks of `//` comments.
fn yaml_blocks(proto: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in proto.lines() {
        let Some(comment) = line.trim_start().strip_prefix("//") else {
            current = None;
            continue;
        };
        let comment = comment.strip_prefix(' ').unwrap_or(comment);
        match &mut current {
            None if comment.trim() == "```yaml" => current = Some(String::new()),
            None => {}
            Some(block) if comment.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(comment);
                block.push('\n');
            }
        }
    }
    blocks
}

/// The documents of a (multi-document) YAML text as JSON values; documents that are empty or
/// do not convert (non-string keys, bad YAML) are left out.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map_while(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|v| !v.is_null())
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_blocks_are_taken_from_comments() {
        let proto = "// Intro\n// ```yaml\n// apiVersion: v1\n// kind: X\n//   nested: 1\n// ```\n\
                     message M {}\n// ```yaml\n// unterminated\nmessage N {}\n";
        assert_eq!(
            yaml_blocks(proto),
            ["apiVersion: v1\nkind: X\n  nested: 1\n"]
        );
    }

    #[test]
    fn every_istio_kind_has_an_example_in_the_protos() {
        let examples = istio_proto_examples();
        for kind in [
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
        ] {
            let needle = format!("kind: {kind}\n");
            assert!(
                examples.iter().any(|(_, text)| text.contains(&needle)),
                "no {kind} example in the Istio protos"
            );
        }
    }

    #[test]
    fn yaml_documents_skips_empty_and_bad_documents() {
        let docs = yaml_documents("a: 1\n---\n---\nb: [x]\n---\n: : :\n");
        assert_eq!(
            docs,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
    }
}
