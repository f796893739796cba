//! Schema parity with Istio: walks Istio's published CRDs
//! (`shared/corpus/istio/api/kubernetes/customresourcedefinitions.gen.yaml`) and Weft's
//! generated ones side by side. It fails on a kind Istio serves that Weft neither serves nor
//! lists as not served, on a field Istio has that Weft lacks (or the reverse), on a field
//! typed differently, on a version Weft does not serve or stores differently, on names that
//! differ (enums and ranges included), and on any CEL rule (`x-kubernetes-validations`) that is not Istio's, word for
//! word, at the same place.
//!
//! Moving to a newer Istio: replace the corpus's copy of istio/api, run this test, and add
//! what it lists (docs/API.md, "A new Istio release").

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use weft_api::Kind;
use weft_api::crd::crd;

/// Istio kinds Weft does not serve, and why.
const NOT_SERVED: &[(&str, &str)] = &[
    (
        "EnvoyFilter",
        "raw Envoy patches; Weft's proxy is not Envoy",
    ),
    ("WasmPlugin", "Wasm extensions; Weft's proxy runs no Wasm"),
    (
        "TrafficExtension",
        "Wasm and Lua extensions; Weft's proxy runs neither",
    ),
    (
        "ProxyConfig",
        "per-workload proxy settings; Weft reads them from the proxy.istio.io/config annotation and the mesh config",
    ),
];

/// The schema keywords that bound sizes and shapes, compared exactly.
const BOUNDS: [&str; 7] = [
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "pattern",
];

fn istio_crds() -> BTreeMap<String, Value> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/istio/api/kubernetes/customresourcedefinitions.gen.yaml"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("Istio's CRDs must exist at {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("a CRD"))
        .filter(|v| !v.is_null())
        .map(|v| {
            let kind = v["spec"]["names"]["kind"]
                .as_str()
                .expect("a kind")
                .to_string();
            (kind, v)
        })
        .collect()
}

fn served_kinds() -> Vec<(Kind, Value)> {
    istio_crds()
        .into_iter()
        .filter(|(k, _)| !NOT_SERVED.iter().any(|(n, _)| n == k))
        .map(|(name, v)| {
            let kind = Kind::parse(&name).unwrap_or_else(|| {
                panic!("Istio serves {name}, which Weft neither serves nor lists in NOT_SERVED")
            });
            (kind, v)
        })
        .collect()
}

fn weft_crd(kind: Kind) -> Value {
    serde_json::to_value(crd(kind)).expect("a CRD serializes")
}

fn spec_schema(crd: &Value, version: &str) -> Value {
    crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == version)
        .map(|v| v["schema"]["openAPIV3Schema"]["properties"]["spec"].clone())
        .unwrap_or(Value::Null)
}

/// The JSON type of a schema node, as the API server checks it.
fn node_type(node: &Value) -> String {
    if node["x-kubernetes-int-or-string"] == true {
        return "int-or-string".into();
    }
    match node["type"].as_str() {
        Some(t) => t.into(),
        None if node["x-kubernetes-preserve-unknown-fields"] == true => "any".into(),
        None => "untyped".into(),
    }
}

fn cel(node: &Value) -> BTreeSet<(String, String)> {
    node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or_default().to_string(),
                r["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Compares Istio's schema node with Weft's at `at`, appending every difference to `out`.
fn compare(istio: &Value, weft: &Value, at: &str, out: &mut Vec<String>) {
    let (ti, tw) = (node_type(istio), node_type(weft));
    if ti != tw {
        out.push(format!("{at}: Istio types it {ti}, Weft {tw}"));
        return;
    }
    for keyword in BOUNDS {
        if istio.get(keyword) != weft.get(keyword) {
            out.push(format!(
                "{at}: {keyword} is {} in Istio, {} in Weft",
                istio.get(keyword).unwrap_or(&Value::Null),
                weft.get(keyword).unwrap_or(&Value::Null)
            ));
        }
    }
    let enums = |v: &Value| -> Option<BTreeSet<String>> {
        v.get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().map(ToString::to_string).collect())
    };
    if enums(istio) != enums(weft) {
        out.push(format!(
            "{at}: enum is {:?} in Istio, {:?} in Weft",
            enums(istio),
            enums(weft)
        ));
    }
    for keyword in ["minimum", "maximum"] {
        let n = |v: &Value| v.get(keyword).and_then(Value::as_f64);
        if n(istio) != n(weft) {
            out.push(format!(
                "{at}: {keyword} is {:?} in Istio, {:?} in Weft",
                n(istio),
                n(weft)
            ));
        }
    }
    let (ci, cw) = (cel(istio), cel(weft));
    for (rule, message) in ci.difference(&cw) {
        out.push(format!(
            "{at}: Istio's CEL rule is missing: {rule} ({message:?})"
        ));
    }
    for (rule, message) in cw.difference(&ci) {
        out.push(format!(
            "{at}: Weft has a CEL rule Istio does not: {rule} ({message:?})"
        ));
    }
    let empty = serde_json::Map::new();
    let pi = istio["properties"].as_object().unwrap_or(&empty);
    let pw = weft["properties"].as_object().unwrap_or(&empty);
    for (name, child) in pi {
        match pw.get(name) {
            Some(w) => compare(child, w, &format!("{at}.{name}"), out),
            None => out.push(format!("{at}.{name}: missing in Weft")),
        }
    }
    for name in pw.keys().filter(|n| !pi.contains_key(*n)) {
        out.push(format!("{at}.{name}: Weft has it, Istio does not"));
    }
    if istio.get("items").is_some() {
        compare(&istio["items"], &weft["items"], &format!("{at}[]"), out);
    }
    let ai = istio.get("additionalProperties").filter(|a| a.is_object());
    let aw = weft.get("additionalProperties").filter(|a| a.is_object());
    match (ai, aw) {
        (Some(i), Some(w)) => compare(i, w, &format!("{at}{{}}"), out),
        (Some(_), None) => out.push(format!("{at}: Istio has a map here, Weft does not")),
        (None, Some(_)) => out.push(format!("{at}: Weft has a map here, Istio does not")),
        (None, None) => {}
    }
}

#[test]
fn every_field_and_cel_rule_of_istio_is_in_weft() {
    let mut out = Vec::new();
    for (kind, istio) in served_kinds() {
        let weft = weft_crd(kind);
        for version in istio["spec"]["versions"].as_array().expect("versions") {
            let name = version["name"].as_str().expect("a version name");
            let w = spec_schema(&weft, name);
            if w.is_null() {
                out.push(format!("{kind} {name}: not served by Weft"));
                continue;
            }
            compare(
                &spec_schema(&istio, name),
                &w,
                &format!("{kind} {name} spec"),
                &mut out,
            );
        }
    }
    assert!(
        out.is_empty(),
        "Weft's CRDs differ from Istio's ({}):\n{}",
        out.len(),
        out.join("\n")
    );
}

#[test]
fn names_versions_and_storage_match_istio() {
    for (kind, istio) in served_kinds() {
        let weft = weft_crd(kind);
        for key in ["group", "scope"] {
            assert_eq!(weft["spec"][key], istio["spec"][key], "{kind} {key}");
        }
        for key in ["plural", "singular", "kind", "listKind", "shortNames"] {
            assert_eq!(
                weft["spec"]["names"][key], istio["spec"]["names"][key],
                "{kind} names.{key}"
            );
        }
        let versions = |crd: &Value| -> Vec<(String, bool, bool)> {
            crd["spec"]["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap_or_default().to_string(),
                        v["served"] == true,
                        v["storage"] == true,
                    )
                })
                .collect()
        };
        assert_eq!(
            versions(&weft),
            versions(&istio),
            "{kind} versions (name, served, storage)"
        );
        for (w, i) in weft["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(istio["spec"]["versions"].as_array().into_iter().flatten())
        {
            let top = |v: &Value| v["schema"]["openAPIV3Schema"]["required"].clone();
            assert_eq!(
                top(w),
                top(i),
                "{kind} {}: required top-level fields",
                i["name"]
            );
        }
    }
}

/// The test itself sees a difference when there is one.
#[test]
fn a_missing_field_and_rule_are_found() {
    let istio = serde_json::json!({"type": "object", "properties": {
        "a": {"type": "string", "x-kubernetes-validations": [{"rule": "r", "message": "m"}]},
        "b": {"type": "array", "items": {"type": "integer"}},
    }});
    let weft = serde_json::json!({"type": "object", "properties": {
        "a": {"type": "string"},
        "b": {"type": "array", "items": {"type": "string"}},
        "c": {"type": "string"},
    }});
    let mut out = Vec::new();
    compare(&istio, &weft, "spec", &mut out);
    assert_eq!(out.len(), 3, "{out:#?}");
    assert!(out[0].contains("spec.a: Istio's CEL rule is missing: r"));
    assert!(out[1].contains("spec.b[]: Istio types it integer, Weft string"));
    assert!(out[2].contains("spec.c: Weft has it, Istio does not"));
}
