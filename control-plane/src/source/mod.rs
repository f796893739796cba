//! Config sources: where Istio objects and services come from. Local mode reads a YAML
//! directory ([`local`]); Kubernetes mode watches the API server ([`kube`]) and keeps the
//! service registry ([`registry`]). Both publish a [`Snapshot`]: the input the model is
//! built from. Sources know nothing of the model.

pub mod kube;
pub mod local;
pub mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use weft_api::ConfigObject;

use crate::object::ObjectKey;

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

/// When a source first saw the change behind what it publishes (a file edit, a watch event):
/// a push's convergence is measured from it. It says when, not what: two sets or snapshots
/// with the same content are equal whenever their changes were seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeenAt(pub Option<std::time::Instant>);

impl PartialEq for SeenAt {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Everything a source currently holds: objects by key, and the current errors per file
/// (per object's API path in Kubernetes mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSet {
    pub objects: BTreeMap<ObjectKey, SourcedObject>,
    /// Operator-readable error lines per file (file path as displayed).
    pub errors: BTreeMap<String, Vec<String>>,
    /// Local mode: when the loader first saw the change that made this set.
    pub seen_at: SeenAt,
}

impl ConfigSet {
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectKey, &ConfigObject)> {
        self.objects
            .iter()
            .map(|(key, sourced)| (key, &sourced.object))
    }
}

/// Everything the model is built from, source-agnostic: Istio objects, plus the
/// Kubernetes registry in Kubernetes mode (`None` in local mode), and whether the source
/// has loaded everything once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub config: Arc<ConfigSet>,
    pub registry: Option<Arc<registry::Registry>>,
    /// What the source has not loaded completely yet, e.g. the Kubernetes resources whose
    /// initial list is not done (`services`, `virtualservices`, …). Empty once the source
    /// has synced; it never grows back.
    pub unsynced: Vec<String>,
    /// When the source first saw the change that made this snapshot.
    pub seen_at: SeenAt,
}

impl Snapshot {
    /// A local-mode snapshot: Istio objects only, from a full scan of the directory.
    pub fn local(config: Arc<ConfigSet>) -> Self {
        Self {
            seen_at: config.seen_at,
            config,
            registry: None,
            unsynced: Vec::new(),
        }
    }

    /// Whether the source had loaded everything once when it took this snapshot.
    pub fn is_synced(&self) -> bool {
        self.unsynced.is_empty()
    }
}
