//! Local source: every `*.yaml`/`*.yml` file of one directory, watched and reloaded on change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use weft_api::{DocumentError, parse_documents};

use super::{ConfigSet, SourcedObject};
use crate::object::ObjectKey;

/// How often the directory is re-read even without a file-system event, in case one
/// was missed (editors replace files via rename, network file systems drop events).
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Errors of the local source.
#[derive(Debug, thiserror::Error)]
pub enum LocalSourceError {
    #[error("config directory {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("config path {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot read config directory {}: {source}", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Lists the YAML files of `dir` (not recursive), sorted by name.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, LocalSourceError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(LocalSourceError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(LocalSourceError::Missing {
                path: dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(LocalSourceError::ReadDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let read_dir = |source| LocalSourceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        let is_yaml = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        let hidden = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with('.'));
        if is_yaml && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the whole directory into a new [`ConfigSet`].
///
/// `previous` is the last published set: an object whose document is now invalid keeps
/// its previous good version (marked `stale`). Per-file problems are recorded in
/// [`ConfigSet::errors`]; only a directory that cannot be listed is an error.
pub fn load_directory(dir: &Path, previous: &ConfigSet) -> Result<ConfigSet, LocalSourceError> {
    let mut set = ConfigSet::default();
    for file in yaml_files(dir)? {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) => {
                // The file may have been removed between listing and reading.
                if err.kind() != std::io::ErrorKind::NotFound {
                    push_error(&mut set, &shown, format!("{shown}: cannot read: {err}"));
                }
                continue;
            }
        };
        load_text(&mut set, &file, &text, previous);
    }
    Ok(set)
}

/// Adds the documents of one file to `set`.
pub fn load_text(set: &mut ConfigSet, file: &Path, text: &str, previous: &ConfigSet) {
    let shown = file.display().to_string();
    for document in parse_documents(text) {
        let index = document.index;
        match document.result {
            Ok(object) => {
                let key = ObjectKey::of(&object);
                if let Some(first) = set.objects.get(&key) {
                    let message = format!(
                        "{shown}: document {index} ({key}): duplicate of {} document {}; ignored (the first one wins)",
                        first.file.display(),
                        first.index
                    );
                    push_error(set, &shown, message);
                    continue;
                }
                set.objects.insert(
                    key,
                    SourcedObject {
                        object,
                        file: file.to_path_buf(),
                        index,
                        stale: false,
                    },
                );
            }
            Err(DocumentError::Unsupported { api_version, kind }) => {
                debug!(file = %shown, index, %api_version, %kind, "skipping unsupported kind");
            }
            Err(DocumentError::Invalid {
                kind,
                name,
                namespace,
                errors,
            }) => {
                let key = match (&kind, &name) {
                    (Some(kind), Some(name)) => Some(ObjectKey::new(
                        kind.clone(),
                        namespace.as_deref(),
                        name.clone(),
                    )),
                    _ => None,
                };
                let what = match &key {
                    Some(key) => key.to_string(),
                    None => kind.unwrap_or_else(|| "unknown kind".to_string()),
                };
                for field in &errors.0 {
                    // `FieldError` displays as `path: reason` (just the reason without a path).
                    let message = format!("{shown}: document {index} ({what}): {field}");
                    push_error(set, &shown, message);
                }
                if errors.0.is_empty() {
                    push_error(
                        set,
                        &shown,
                        format!("{shown}: document {index} ({what}): invalid"),
                    );
                }
                if let Some(key) = key
                    && let Some(old) = previous.objects.get(&key)
                    && !set.objects.contains_key(&key)
                {
                    let kept = SourcedObject {
                        stale: true,
                        ..old.clone()
                    };
                    push_error(
                        set,
                        &shown,
                        format!(
                            "{shown}: document {index} ({what}): keeping the previous good version"
                        ),
                    );
                    set.objects.insert(key, kept);
                }
            }
        }
    }
}

fn push_error(set: &mut ConfigSet, file: &str, message: String) {
    set.errors
        .entry(file.to_string())
        .or_default()
        .push(message);
}

/// Logs the error lines of files whose errors changed since `previous`.
fn log_new_errors(previous: &ConfigSet, current: &ConfigSet) {
    for (file, lines) in &current.errors {
        if previous.errors.get(file) == Some(lines) {
            continue;
        }
        for line in lines {
            error!("{line}");
        }
    }
    for file in previous.errors.keys() {
        if !current.errors.contains_key(file) {
            info!(file = %file, "config errors resolved");
        }
    }
}

/// A running local source: the latest config set, and the task that watches the directory.
#[derive(Debug)]
pub struct LocalSource {
    pub config: watch::Receiver<Arc<ConfigSet>>,
    pub task: JoinHandle<()>,
}

impl LocalSource {
    /// Loads `dir` once (failing if it cannot be listed), then watches it: on a change
    /// (debounced by `debounce`, plus a re-scan every [`RESCAN_INTERVAL`]) the whole
    /// directory is reloaded and a new set is published only if it changed.
    pub fn start(dir: PathBuf, debounce: Duration) -> Result<Self, LocalSourceError> {
        // Check the directory, then watch before the first load so no change is missed.
        yaml_files(&dir)?;
        let (events_tx, events) = mpsc::unbounded_channel::<()>();
        let watcher = match start_watcher(&dir, events_tx) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                warn!(dir = %dir.display(), error = %err, "cannot watch config directory; re-scanning every {RESCAN_INTERVAL:?} only");
                None
            }
        };
        let initial = load_directory(&dir, &ConfigSet::default())?;
        log_new_errors(&ConfigSet::default(), &initial);
        info!(
            dir = %dir.display(),
            objects = initial.objects.len(),
            files_with_errors = initial.errors.len(),
            "loaded config directory"
        );
        let (tx, rx) = watch::channel(Arc::new(initial));
        let task = tokio::spawn(watch_loop(dir, debounce, tx, watcher, events));
        Ok(Self { config: rx, task })
    }
}

async fn watch_loop(
    dir: PathBuf,
    debounce: Duration,
    tx: watch::Sender<Arc<ConfigSet>>,
    watcher: Option<notify::RecommendedWatcher>,
    mut events: mpsc::UnboundedReceiver<()>,
) {
    let mut watching = watcher.is_some();
    let mut last_error = None;
    let mut rescan = tokio::time::interval(RESCAN_INTERVAL);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    loop {
        tokio::select! {
            event = events.recv(), if watching => {
                if event.is_none() {
                    // Watcher gone: carry on with re-scans only.
                    watching = false;
                    continue;
                }
                // Debounce: wait until no event arrived for `debounce`.
                while let Ok(Some(())) = tokio::time::timeout(debounce, events.recv()).await {}
            }
            _ = rescan.tick() => {}
            () = tx.closed() => {
                // Nobody listens any more; the watcher lived until here.
                drop(watcher);
                return;
            }
        }
        reload(&dir, &tx, &mut last_error).await;
    }
}

/// Reloads the directory and publishes the new set if it changed. `last_error` keeps
/// the last directory-level error so that it is logged once, not on every re-scan.
async fn reload(dir: &Path, tx: &watch::Sender<Arc<ConfigSet>>, last_error: &mut Option<String>) {
    let previous = tx.borrow().clone();
    let dir_owned = dir.to_path_buf();
    let prev = previous.clone();
    let loaded = tokio::task::spawn_blocking(move || load_directory(&dir_owned, &prev)).await;
    match loaded {
        Ok(Ok(set)) => {
            if last_error.take().is_some() {
                info!(dir = %dir.display(), "config directory readable again");
            }
            if set != *previous {
                log_new_errors(&previous, &set);
                info!(
                    objects = set.objects.len(),
                    files_with_errors = set.errors.len(),
                    "config directory changed"
                );
                tx.send_replace(Arc::new(set));
            }
        }
        Ok(Err(err)) => {
            let message = err.to_string();
            if last_error.as_deref() != Some(message.as_str()) {
                warn!(error = %message, "cannot reload config directory; keeping the current config");
                *last_error = Some(message);
            }
        }
        Err(err) => error!(error = %err, "config reload task failed"),
    }
}

fn start_watcher(
    dir: &Path,
    events: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_access() => {}
            _ => {
                let _ = events.send(());
            }
        })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
