//! The API parity cases (`crates/api/tests/cases/<kind>.yaml`): documents Istio accepts and
//! documents it refuses, each judged the same way by local mode (`weft-api`) and by a real
//! API server (CRD schema, CEL rules, then Weft's validating webhook).
//!
//! Shared by `crates/api/tests/cases.rs` (local mode) and `tests/tests/api_cases.rs`
//! (`kubectl apply --dry-run=server`) through `#[path]`, so both read the files one way.
//!
//! A file:
//! ```yaml
//! kind: VirtualService
//! alwaysRefused: [spec.http[].fault.abort.http2Error]   # optional: fields Istio never accepts
//! cases:
//! - name: weighted-routes          # a DNS-1123 label, unique in the file: metadata.name
//!   spec: {...}                    # no `refused`: must be accepted
//! - name: timeout-under-1ms
//!   rule: "virtualservice.go validateHTTPRoute: timeout"  # the Istio rule it pins
//!   refused: spec.http[0].timeout  # the field path both refusals must name
//!   message: greater than 1ms      # optional: words both refusals must contain
//!   spec: {...}
//!   apiVersion: networking.istio.io/v1beta1  # optional; default <group>/<first version>
//!   metadata: {namespace: istio-system}      # optional, laid over name + namespace default
//! ```

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One file of cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaseFile {
    /// The kind every case of the file is.
    pub kind: String,
    /// Fields of Istio's schema that Istio refuses whatever their value (`spec.http[].fault.
    /// abort.http2Error`: "not supported yet"): no accepted case can set them, so a refused
    /// case must.
    #[serde(default)]
    pub always_refused: Vec<String>,
    /// The cases, in order.
    pub cases: Vec<Case>,
}

/// One document and the verdict Istio gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// `metadata.name`; also how failures name the case.
    pub name: String,
    /// For a refused case, the Istio rule it pins (a Go function of Istio's validation, or
    /// a CEL rule's message).
    #[serde(default)]
    pub rule: Option<String>,
    /// Refused, naming this field path.
    #[serde(default)]
    pub refused: Option<String>,
    /// Words the refusal must contain (both local mode's and the API server's).
    #[serde(default)]
    pub message: Option<String>,
    /// Overrides `<group>/<first version>`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Laid over `{name, namespace: default}`.
    #[serde(default)]
    pub metadata: Option<serde_yaml::Mapping>,
    /// The spec, as a user writes it.
    pub spec: serde_yaml::Value,
}

/// The directory of the case files.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/api/tests/cases")
        .canonicalize()
        .or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/cases")
                .canonicalize()
        })
        .expect("crates/api/tests/cases exists")
}

/// Every case file, sorted by file name, with its path.
pub fn load_all() -> Vec<(PathBuf, CaseFile)> {
    let dir = cases_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            let file: CaseFile = serde_yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not a case file: {e}", p.display()));
            (p, file)
        })
        .collect()
}

impl Case {
    /// The whole object as YAML text: what the local loader reads.
    pub fn document(&self, kind: &str, default_api_version: &str) -> String {
        serde_yaml::to_string(&self.object(kind, default_api_version)).expect("a case serializes")
    }

    /// The whole object as JSON: what `kubectl apply` reads. JSON, because kubectl reads
    /// YAML by YAML 1.1 (`yes` is a boolean there) while `serde_yaml` writes YAML 1.2, so a
    /// re-written YAML string `yes` would reach the API server as `true`.
    pub fn document_json(&self, kind: &str, default_api_version: &str) -> String {
        serde_json::to_string_pretty(&self.object(kind, default_api_version))
            .expect("a case is JSON")
    }

    fn object(&self, kind: &str, default_api_version: &str) -> serde_yaml::Mapping {
        let mut metadata = serde_yaml::Mapping::new();
        metadata.insert("name".into(), self.name.clone().into());
        metadata.insert("namespace".into(), "default".into());
        for (k, v) in self.metadata.iter().flatten() {
            metadata.insert(k.clone(), v.clone());
        }
        let mut object = serde_yaml::Mapping::new();
        object.insert(
            "apiVersion".into(),
            self.api_version
                .clone()
                .unwrap_or_else(|| default_api_version.to_string())
                .into(),
        );
        object.insert("kind".into(), kind.into());
        object.insert("metadata".into(), metadata.into());
        object.insert("spec".into(), self.spec.clone());
        object
    }

    /// The namespace the document lands in.
    pub fn namespace(&self) -> String {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("namespace"))
            .and_then(|n| n.as_str())
            .unwrap_or("default")
            .to_string()
    }

    /// Checks one verdict: `Ok(())` accepted, `Err(message)` refused. Returns what is wrong.
    pub fn judge(&self, verdict: Result<(), String>) -> Option<String> {
        match (&self.refused, verdict) {
            (None, Ok(())) => None,
            (None, Err(message)) => Some(format!("refused, but Istio accepts it:\n{message}")),
            (Some(path), Ok(())) => Some(format!(
                "accepted, but Istio refuses it ({}) at {path}",
                self.rule.as_deref().unwrap_or("no rule named")
            )),
            (Some(path), Err(message)) => {
                let mut wrong = Vec::new();
                if !message.contains(path.as_str()) {
                    wrong.push(format!("the refusal does not name {path:?}"));
                }
                if let Some(words) = &self.message
                    && !message.contains(words.as_str())
                {
                    wrong.push(format!("the refusal does not say {words:?}"));
                }
                (!wrong.is_empty()).then(|| format!("{}:\n{message}", wrong.join("; ")))
            }
        }
    }
}
