//! The running local source: the first load, then a task that re-scans the directory on
//! file-system events (debounced) and every [`RESCAN_INTERVAL`], and publishes a new set
//! only when it changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::loader::{Loader, LocalStats};
use super::{LocalSourceError, RESCAN_INTERVAL, yaml_files};
use crate::source::ConfigSet;

/// The first load waits at most this many rounds for files that are still being written.
const INITIAL_ROUNDS: usize = 20;

/// A burst of file-system events is waited out for at most this many debounce periods, so
/// a file that is written to all the time cannot hold back every other change.
const MAX_DEBOUNCE_PERIODS: u32 = 10;

/// A running local source: the latest config set, the task that watches the directory,
/// and the loader's counters.
#[derive(Debug)]
pub struct LocalSource {
    pub config: watch::Receiver<Arc<ConfigSet>>,
    pub task: JoinHandle<()>,
    pub stats: Arc<LocalStats>,
}

impl LocalSource {
    /// Loads `dir` once (failing if it cannot be listed), then watches it: on a change
    /// (debounced by `debounce`, plus a re-scan every [`RESCAN_INTERVAL`]) the files that
    /// changed are reloaded, and a new set is published only if it changed. A changed file
    /// is used once it has not changed for `debounce`.
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
        let stats = Arc::new(LocalStats::default());
        let mut loader = Loader::new(dir.clone(), debounce, stats.clone());
        let initial = initial_load(&mut loader)?;
        log_new_errors(&ConfigSet::default(), &initial);
        info!(
            dir = %dir.display(),
            objects = initial.objects.len(),
            files_with_errors = initial.errors.len(),
            "loaded config directory"
        );
        let (tx, rx) = watch::channel(Arc::new(initial));
        let task = tokio::spawn(watch_loop(
            Arc::new(Mutex::new(loader)),
            debounce,
            tx,
            watcher,
            events,
        ));
        Ok(Self {
            config: rx,
            task,
            stats,
        })
    }
}

/// The first set: files still being written are waited for (a few debounce periods at
/// most; the watch loop picks up what is still changing after that).
fn initial_load(loader: &mut Loader) -> Result<ConfigSet, LocalSourceError> {
    let empty = ConfigSet::default();
    let mut set = ConfigSet::default();
    for _ in 0..INITIAL_ROUNDS {
        let scan = loader.scan(&empty, Instant::now(), SystemTime::now())?;
        if let Some(scanned) = scan.set {
            set = scanned;
        }
        match scan.retry_after {
            Some(after) => std::thread::sleep(after),
            None => break,
        }
    }
    Ok(set)
}

async fn watch_loop(
    loader: Arc<Mutex<Loader>>,
    debounce: Duration,
    tx: watch::Sender<Arc<ConfigSet>>,
    watcher: Option<notify::RecommendedWatcher>,
    mut events: mpsc::UnboundedReceiver<()>,
) {
    let mut watching = watcher.is_some();
    let mut last_error = None;
    let mut retry_at: Option<Instant> = None;
    let mut rescan = tokio::time::interval(RESCAN_INTERVAL);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv(), if watching => {
                if event.is_none() {
                    // Watcher gone: carry on with re-scans only.
                    watching = false;
                    continue;
                }
                // Debounce: wait until no event arrived for `debounce` (bounded).
                let limit = Instant::now() + debounce * MAX_DEBOUNCE_PERIODS;
                while Instant::now() < limit
                    && let Ok(Some(())) = tokio::time::timeout(debounce, events.recv()).await
                {}
            }
            _ = rescan.tick() => {}
            () = retry => {}
            () = tx.closed() => {
                // Nobody listens any more; the watcher lived until here.
                drop(watcher);
                return;
            }
        }
        retry_at = reload(&loader, &tx, &mut last_error)
            .await
            .map(|after| Instant::now() + after);
    }
}

/// Scans the directory and publishes the new set if it changed; returns when to scan
/// again for files that were still changing. `last_error` keeps the last directory-level
/// error so that it is logged once, not on every re-scan.
async fn reload(
    loader: &Arc<Mutex<Loader>>,
    tx: &watch::Sender<Arc<ConfigSet>>,
    last_error: &mut Option<String>,
) -> Option<Duration> {
    let previous = tx.borrow().clone();
    let (now, wall) = (Instant::now(), SystemTime::now());
    let scanned = {
        let loader = loader.clone();
        let previous = previous.clone();
        tokio::task::spawn_blocking(move || loader.lock().scan(&previous, now, wall)).await
    };
    match scanned {
        Ok(Ok(scan)) => {
            if last_error.take().is_some() {
                info!("config directory readable again");
            }
            if let Some(mut set) = scan.set
                && set != *previous
            {
                set.seen_at = crate::source::SeenAt(scan.seen_at.map(Instant::into_std));
                log_new_errors(&previous, &set);
                info!(
                    objects = set.objects.len(),
                    files_with_errors = set.errors.len(),
                    "config directory changed"
                );
                tx.send_replace(Arc::new(set));
            }
            scan.retry_after
        }
        Ok(Err(err)) => {
            let message = err.to_string();
            if last_error.as_deref() != Some(message.as_str()) {
                warn!(error = %message, "cannot reload config directory; keeping the current config");
                *last_error = Some(message);
            }
            None
        }
        Err(err) => {
            error!(error = %err, "config reload task failed; keeping the current config");
            None
        }
    }
}

/// Logs the error lines of files whose errors changed since `previous`.
pub(super) fn log_new_errors(previous: &ConfigSet, current: &ConfigSet) {
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

fn start_watcher(
    dir: &Path,
    events: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Reads (ours included) change nothing.
            Ok(event) if event.kind.is_access() => {}
            _ => {
                let _ = events.send(());
            }
        })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
