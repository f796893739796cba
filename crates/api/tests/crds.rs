//! The generated CRDs: up to date in `crds/`, structural, accepting Istio's own documents, and
//! named as Istio names them.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_api::Kind;
use weft_api::crd::{all_files, check_spec, crd, open_api_schema};

fn crds_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds"))
}

/// The repo's `crds/` and the Helm chart's copy must both match the Rust types, and hold
/// nothing else.
#[test]
fn files_are_up_to_date() {
    let chart = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../charts/weft/crds"
    ));
    let mut stale = Vec::new();
    for dir in [crds_dir(), chart] {
        let files = all_files();
        for (name, content) in &files {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if &on_disk == content => {}
                Ok(_) => stale.push(format!("{} differs", path.display())),
                Err(e) => stale.push(format!("{}: {e}", path.display())),
            }
        }
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let name = entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".yaml") && !files.iter().any(|(n, _)| *n == name) {
                stale.push(format!("{} is not generated", dir.join(name).display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "CRD files are out of date ({}); run `cargo run -p weftctl -- crds`",
        stale.join(", ")
    );
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(all_files(), all_files());
}

/// Walks a schema and lists every place that breaks Kubernetes' structural-schema rules.
fn structural_problems(v: &Value, at: &str, out: &mut Vec<String>) {
    let Some(o) = v.as_object() else {
        out.push(format!("{at}: not an object"));
        return;
    };
    for banned in [
        "$ref",
        "$defs",
        "definitions",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "const",
        "patternProperties",
        "default",
        "nullable",
        "uniqueItems",
    ] {
        if o.contains_key(banned) {
            out.push(format!("{at}: has {banned}"));
        }
    }
    let free = o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !o.contains_key("type") && !free {
        out.push(format!("{at}: no type"));
    }
    if o.get("additionalProperties").is_some_and(Value::is_boolean) {
        out.push(format!("{at}: boolean additionalProperties"));
    }
    if o.contains_key("additionalProperties") && o.contains_key("properties") {
        out.push(format!("{at}: both properties and additionalProperties"));
    }
    if let Some(Value::Object(props)) = o.get("properties") {
        for (k, p) in props {
            structural_problems(p, &format!("{at}.{k}"), out);
        }
    }
    if let Some(items) = o.get("items") {
        structural_problems(items, &format!("{at}[]"), out);
    }
    if let Some(ap) = o.get("additionalProperties").filter(|a| a.is_object()) {
        structural_problems(ap, &format!("{at}[*]"), out);
    }
}

#[test]
fn schemas_are_structural() {
    for kind in Kind::ALL {
        let mut problems = Vec::new();
        structural_problems(&open_api_schema(kind), kind.as_str(), &mut problems);
        assert!(problems.is_empty(), "{kind}:\n{}", problems.join("\n"));
        // The CRD's own serialization keeps the schema as generated.
        let crd = serde_json::to_value(crd(kind)).expect("serialize");
        let mut problems = Vec::new();
        for v in crd["spec"]["versions"].as_array().expect("versions") {
            structural_problems(
                &v["schema"]["openAPIV3Schema"],
                kind.as_str(),
                &mut problems,
            );
        }
        assert!(problems.is_empty(), "{kind}:\n{}", problems.join("\n"));
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read corpus dir")
        .map(|e| e.expect("entry").path())
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

#[test]
fn istio_corpus_validates_against_the_schemas() {
    use serde::Deserialize;
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/istio"
    ));
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut checked = std::collections::BTreeMap::<Kind, usize>::new();
    let mut failures = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let Ok(v) = Value::deserialize(doc) else {
                break;
            };
            let (Some(api), Some(kind)) = (v["apiVersion"].as_str(), v["kind"].as_str()) else {
                continue;
            };
            let group = api.split_once('/').map(|(g, _)| g).unwrap_or("");
            let Some(k) = Kind::ALL
                .iter()
                .find(|k| k.as_str() == kind && k.group() == group)
            else {
                continue;
            };
            for e in check_spec(*k, &v["spec"]) {
                failures.push(format!("{}#{i}: {e}", f.display()));
            }
            *checked.entry(*k).or_default() += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for k in [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::PeerAuthentication,
    ] {
        assert!(
            checked.get(&k).copied().unwrap_or(0) > 0,
            "no {k} checked: {checked:?}"
        );
    }
}

#[test]
fn names_and_versions_match_istio() {
    let expect: [(Kind, &[&str], &[&str], &str); 12] = [
        (
            Kind::VirtualService,
            &["vs"],
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (
            Kind::DestinationRule,
            &["dr"],
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (Kind::Gateway, &["gw"], &["v1", "v1alpha3", "v1beta1"], "v1"),
        (
            Kind::ServiceEntry,
            &["se"],
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (
            Kind::WorkloadEntry,
            &["we"],
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (
            Kind::WorkloadGroup,
            &["wg"],
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (Kind::Sidecar, &[], &["v1", "v1alpha3", "v1beta1"], "v1"),
        (Kind::PeerAuthentication, &["pa"], &["v1", "v1beta1"], "v1"),
        (Kind::AuthorizationPolicy, &["ap"], &["v1", "v1beta1"], "v1"),
        (
            Kind::RequestAuthentication,
            &["ra"],
            &["v1", "v1beta1"],
            "v1",
        ),
        (
            Kind::Telemetry,
            &["telemetry"],
            &["v1", "v1alpha1"],
            "v1alpha1",
        ),
        (Kind::LocalRateLimit, &["lrl"], &["v1alpha1"], "v1alpha1"),
    ];
    for (kind, shorts, versions, storage) in expect {
        let c = crd(kind);
        let names = &c.spec.names;
        assert_eq!(
            names.short_names.clone().unwrap_or_default(),
            shorts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{kind}"
        );
        assert_eq!(names.kind, kind.as_str());
        assert_eq!(
            names.list_kind.as_deref(),
            Some(format!("{kind}List").as_str())
        );
        let served: Vec<_> = c.spec.versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(served, versions, "{kind}");
        let stored: Vec<_> = c
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(stored, [storage], "{kind}");
        assert!(
            c.spec
                .versions
                .iter()
                .all(|v| v.served && v.subresources.as_ref().is_some_and(|s| s.status.is_some()))
        );
        assert_eq!(c.spec.scope, "Namespaced");
        let cats = names.categories.clone().unwrap_or_default();
        // Istio's categories; Weft's own kinds in `weft-io` (`ratelimit-weft-io`).
        let domain = kind.group().split_once('.').map_or("", |(_, d)| d);
        assert_eq!(cats[0], domain.replace('.', "-"));
        assert_eq!(
            cats[1],
            format!(
                "{}-{}",
                kind.group().split('.').next().unwrap_or(""),
                cats[0]
            )
        );
        assert_eq!(
            c.metadata.name.as_deref(),
            Some(format!("{}.{}", names.plural, kind.group()).as_str())
        );
    }
}
