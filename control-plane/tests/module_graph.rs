//! The crate's top-level modules depend on one another without cycles: sources produce
//! objects, the model is built from them, xDS reads the model (see `lib.rs`). Reads the
//! sources: every `crate::<module>` path outside comments and test code is a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The non-test source files of each top-level module.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(SRC).expect("reads src") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir() {
            let files = std::fs::read_dir(&path)
                .expect("reads module dir")
                .map(|entry| entry.expect("dir entry").path())
                .filter(|file| is_code(file))
                .collect();
            modules.insert(name, files);
        } else if is_code(&path) && !["lib", "main"].contains(&name.as_str()) {
            modules.insert(name, vec![path]);
        }
    }
    modules
}

fn is_code(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".rs") && !name.ends_with("tests.rs") && name != "testing.rs"
}

/// The modules one file uses: code before its first `#[cfg(test)]`, comments left out.
fn uses(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).expect("reads source");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
    {
        for (index, _) in line.match_indices("crate::") {
            let rest = &line[index + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn top_level_modules_form_no_cycle() {
    let modules = modules();
    let graph: BTreeMap<&str, BTreeSet<String>> = modules
        .iter()
        .map(|(name, files)| {
            let mut deps: BTreeSet<String> = files.iter().flat_map(|file| uses(file)).collect();
            deps.remove(name);
            (name.as_str(), deps)
        })
        .collect();
    // The layering lib.rs describes.
    for (module, forbidden) in [
        (
            "object",
            &["service", "source", "model", "unsupported", "xds"][..],
        ),
        ("service", &["source", "model", "unsupported", "xds"]),
        ("source", &["model", "unsupported", "xds"]),
        ("unsupported", &["model", "source", "xds"]),
        ("model", &["xds", "debug"]),
    ] {
        for other in forbidden {
            assert!(
                !graph[module].contains(*other),
                "{module} must not use {other}: {graph:#?}"
            );
        }
    }
    // No cycle at all: repeatedly remove modules whose dependencies are all removed.
    let mut left: BTreeMap<&str, BTreeSet<String>> = graph.clone();
    while !left.is_empty() {
        let ready: Vec<&str> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|dep| !left.contains_key(dep.as_str())))
            .map(|(name, _)| *name)
            .collect();
        assert!(!ready.is_empty(), "cycle among {left:#?}");
        for name in ready {
            left.remove(name);
        }
    }
}
