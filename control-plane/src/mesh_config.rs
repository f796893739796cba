//! The mesh config file (`--mesh-config`: Istio's MeshConfig, the chart's `weft` ConfigMap):
//! read at start, then read again every [`POLL`], so that an edit of the ConfigMap (`kubectl
//! edit cm weft`, as Istio's users edit `istio`) reaches the proxies without a restart, as
//! istiod's mesh watcher does. A new content that does not parse or validate is refused with
//! the file and the reason, and the last good one stays in use.
//!
//! ```text
//!  file ─► read (start; then every POLL, by content: Kubernetes swaps a mounted ConfigMap's
//!          files through a symlink) ─► MeshConfig::from_yaml ─► MeshTelemetry ─► watch ─► own_model
//! ```
//!
//! What is read of it: the telemetry (tracing, metrics providers). Its other fields come in
//! through the controller's flags (the chart renders them), and are logged once as unread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};
use weft_api::mesh::MeshConfig;

use crate::model::metrics::MeshMetrics;
use crate::model::trace::MeshTracing;

/// How often the file is read again.
pub const POLL: Duration = Duration::from_secs(2);

/// What the model takes from the mesh config.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshTelemetry {
    pub tracing: MeshTracing,
    pub metrics: MeshMetrics,
    /// When this content was first read (none: at start), for the convergence metric.
    pub seen_at: crate::source::SeenAt,
}

impl MeshTelemetry {
    fn from_mesh(mesh: &MeshConfig) -> Self {
        Self {
            tracing: MeshTracing::from_mesh(mesh),
            metrics: MeshMetrics::from_mesh(mesh),
            seen_at: crate::source::SeenAt(None),
        }
    }

    /// Istio's defaults (no file).
    pub fn defaults() -> Self {
        Self::from_mesh(&MeshConfig::default())
    }
}

/// Parses a mesh config file's content, logging what is used of it and what is not.
fn parse(path: &Path, text: &str) -> Result<MeshTelemetry, String> {
    let mesh = MeshConfig::from_yaml(text).map_err(|e| e.to_string())?;
    let unread = mesh.unread_fields();
    if !unread.is_empty() {
        info!(
            file = %path.display(),
            fields = ?unread,
            "mesh config: these fields are not read from the file (the controller's flags set what Weft uses of them)"
        );
    }
    let telemetry = MeshTelemetry::from_mesh(&mesh);
    info!(
        enabled = telemetry.tracing.enabled,
        sampling = telemetry.tracing.sampling,
        default_providers = ?telemetry.tracing.default_providers,
        providers = ?mesh.extension_providers.iter().map(|p| format!("{} ({})", p.name, p.kind())).collect::<Vec<_>>(),
        "mesh tracing"
    );
    info!(
        default_providers = ?telemetry.metrics.default_providers,
        prometheus = ?telemetry.metrics.prometheus,
        "mesh metrics"
    );
    Ok(telemetry)
}

/// Reads the file at start: its telemetry, and its text (what the watcher compares with).
pub fn load(path: &Path) -> Result<(MeshTelemetry, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Ok((parse(path, &text)?, text))
}

/// The watcher of the file: its latest good telemetry, and how many contents it refused.
#[derive(Debug)]
pub struct Watcher {
    pub telemetry: watch::Receiver<Arc<MeshTelemetry>>,
    pub refused: Arc<AtomicU64>,
    pub task: JoinHandle<()>,
}

/// Reads `path` every `poll` from now on, starting from `initial` (read from `text`).
pub fn watch(path: PathBuf, initial: MeshTelemetry, text: String, poll: Duration) -> Watcher {
    let (tx, telemetry) = watch::channel(Arc::new(initial));
    let refused = Arc::new(AtomicU64::new(0));
    let counter = refused.clone();
    let task = tokio::spawn(async move {
        let mut last = text;
        let mut last_read_error: Option<String> = None;
        loop {
            tokio::time::sleep(poll).await;
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(text) => text,
                Err(e) => {
                    // Once per error: a file that is gone stays gone for a while.
                    let e = e.to_string();
                    if last_read_error.as_deref() != Some(e.as_str()) {
                        error!(file = %path.display(), error = %e, "mesh config: cannot read the file; the last good content stays in use");
                    }
                    last_read_error = Some(e);
                    continue;
                }
            };
            last_read_error = None;
            if text == last {
                continue;
            }
            last = text;
            match parse(&path, &last) {
                Ok(mut new) => {
                    new.seen_at = crate::source::SeenAt(Some(std::time::Instant::now()));
                    let changed = tx.send_if_modified(|current| {
                        let same = **current == new;
                        if !same {
                            *current = Arc::new(new);
                        }
                        !same
                    });
                    if changed {
                        info!(file = %path.display(), "mesh config changed: the model is rebuilt with it");
                    }
                }
                Err(reason) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    error!(file = %path.display(), %reason, "mesh config: the new content is refused; the last good one stays in use");
                }
            }
        }
    });
    Watcher {
        telemetry,
        refused,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn an_edit_is_taken_up_a_bad_one_refused_and_the_last_good_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh");
        std::fs::write(&path, "defaultProviders: {metrics: [prometheus]}\n").unwrap();
        let (initial, text) = load(&path).unwrap();
        let mut w = watch(path.clone(), initial, text, Duration::from_millis(10));
        assert_eq!(
            w.telemetry.borrow_and_update().metrics.default_providers,
            ["prometheus"]
        );

        std::fs::write(&path, "defaultProviders: {metrics: []}\n").unwrap();
        tokio::time::timeout(Duration::from_secs(10), w.telemetry.changed())
            .await
            .expect("the edit within 10s")
            .unwrap();
        let edited = w.telemetry.borrow_and_update().clone();
        assert!(edited.metrics.default_providers.is_empty());
        assert!(edited.seen_at.0.is_some(), "when the edit was seen");

        // Refused (a sampling that is not a percentage): counted, nothing published.
        std::fs::write(&path, "defaultConfig: {tracing: {sampling: 150}}\n").unwrap();
        wait("the bad content refused", || {
            (w.refused.load(Ordering::Relaxed) == 1).then_some(())
        })
        .await;
        assert!(
            !w.telemetry.has_changed().unwrap(),
            "the last good one stays"
        );

        std::fs::write(
            &path,
            "enableTracing: false\ndefaultProviders: {metrics: []}\n",
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), w.telemetry.changed())
            .await
            .expect("the next good edit within 10s")
            .unwrap();
        assert!(!w.telemetry.borrow().tracing.enabled);
        w.task.abort();
    }
}
