//! Config sources: where Istio objects and services come from. Local mode reads a YAML
//! directory ([`local`]); Kubernetes mode watches the API server ([`kube`]). Both publish a
//! [`Snapshot`], from which one [`crate::model::Model`] is built.

pub mod kube;
pub mod local;
pub mod registry;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use weft_api::ConfigObject;

/// Identity of one Istio object: kind, namespace ("default" when unset) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: impl Into<String>, namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_string(),
            name: name.into(),
        }
    }

    /// The key of a parsed object.
    pub fn of(object: &ConfigObject) -> Self {
        let meta = object.metadata();
        Self::new(
            object.kind().to_string(),
            meta.namespace.as_deref(),
            meta.name.clone(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The namespace of objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One object and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedObject {
    pub object: ConfigObject,
    /// File the object was read from; for Kubernetes objects, their API path
    /// (`/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews`).
    pub file: PathBuf,
    /// Index of the YAML document inside the file (0-based); 0 for Kubernetes objects.
    pub index: usize,
    /// True when the object's current document is invalid and this is the previous
    /// good version, kept so traffic keeps flowing.
    pub stale: bool,
}

impl SourcedObject {
    /// Where the object comes from, for logs: `file document N`, or the API path.
    pub fn origin(&self) -> String {
        let file = self.file.display().to_string();
        if file.starts_with("/apis/") {
            file
        } else {
            format!("{file} document {}", self.index)
        }
    }
}

/// Everything a source currently holds: objects by key, and the current errors per file
/// (per object's API path in Kubernetes mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSet {
    pub objects: BTreeMap<ObjectKey, SourcedObject>,
    /// Operator-readable error lines per file (file path as displayed).
    pub errors: BTreeMap<String, Vec<String>>,
}

impl ConfigSet {
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectKey, &ConfigObject)> {
        self.objects
            .iter()
            .map(|(key, sourced)| (key, &sourced.object))
    }
}

/// Everything the model is built from, source-agnostic: Istio objects, plus the
/// Kubernetes registry in Kubernetes mode (`None` in local mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub config: Arc<ConfigSet>,
    pub registry: Option<Arc<registry::Registry>>,
}

impl Snapshot {
    /// A local-mode snapshot: Istio objects only.
    pub fn local(config: Arc<ConfigSet>) -> Self {
        Self {
            config,
            registry: None,
        }
    }
}
