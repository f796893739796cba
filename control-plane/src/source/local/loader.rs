//! The incremental directory loader: a per-file cache keyed by (length, mtime, inode) and a
//! content hash, so that a scan re-reads and re-parses only the files that changed, and
//! accepts a changed file only once it has stopped changing.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::assemble::{Assembly, FileContent, parse_bytes};
use super::{LocalSourceError, yaml_files};
use crate::source::ConfigSet;

/// A change that happens within this long of the previous one may leave the modification
/// time unchanged (coarse file-system timestamps: 2 s on FAT, a kernel tick elsewhere). A
/// file read that soon after its mtime is hashed again on the next scan even when its
/// length, mtime and inode are unchanged.
pub const MTIME_GRANULARITY: Duration = Duration::from_secs(2);

/// Counters of the local source, shown at `/debug/configz` under `localSource`.
#[derive(Debug, Default)]
pub struct LocalStats {
    scans: AtomicU64,
    files_parsed: AtomicU64,
    files_read: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    unverified: AtomicU64,
    pending: AtomicU64,
}

/// A copy of [`LocalStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalStatsSnapshot {
    /// Scans of the directory since the start (each lists it and stats its config files).
    pub scans: u64,
    /// Files parsed since the start (a file whose content did not change is not parsed again).
    pub files_parsed: u64,
    /// Files read since the start (parsed, or only hashed to check their content).
    pub files_read: u64,
    /// Config files in the directory at the last scan.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Files read within [`MTIME_GRANULARITY`] of their mtime: hashed again on the next scan.
    pub unverified: u64,
    /// Changed files not read yet because they were still changing.
    pub pending: u64,
}

impl LocalStats {
    pub fn snapshot(&self) -> LocalStatsSnapshot {
        LocalStatsSnapshot {
            scans: self.scans.load(Ordering::Relaxed),
            files_parsed: self.files_parsed.load(Ordering::Relaxed),
            files_read: self.files_read.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            unverified: self.unverified.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
        }
    }
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }

    /// How long ago the file was last modified (zero when in the future or unknown).
    fn age(&self, wall: SystemTime) -> Duration {
        self.modified
            .and_then(|modified| wall.duration_since(modified).ok())
            .unwrap_or_default()
    }
}

/// One file as last read.
#[derive(Debug)]
struct Cached {
    fingerprint: Fingerprint,
    hash: u64,
    /// Read within [`MTIME_GRANULARITY`] of its mtime: a later change may have kept the
    /// fingerprint, so the next scan hashes the content again.
    unverified: bool,
    /// The read failed: try again on every scan (a `chmod` does not change the mtime).
    failed: bool,
    content: FileContent,
}

/// A changed file waiting to be stable.
#[derive(Debug, Clone, Copy)]
struct Pending {
    fingerprint: Fingerprint,
    since: Instant,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The new set, when a file was added, changed or removed (it may still equal the
    /// previous one, e.g. when only a comment changed).
    pub set: Option<ConfigSet>,
    /// Some changed file was still changing: scan again after this long.
    pub retry_after: Option<Duration>,
    /// When the earliest change in `set` was first seen (a changed file that waited to be
    /// stable: its first sighting; otherwise this scan).
    pub seen_at: Option<Instant>,
}

/// The directory's files as last read. See the module documentation.
#[derive(Debug)]
pub struct Loader {
    dir: PathBuf,
    debounce: Duration,
    files: BTreeMap<PathBuf, Cached>,
    pending: BTreeMap<PathBuf, Pending>,
    stats: Arc<LocalStats>,
}

enum Read {
    /// The file's bytes; its fingerprint did not change while it was read.
    Bytes(Vec<u8>),
    /// Gone since it was listed.
    Gone,
    /// Changed while it was read: try again later.
    Changed(Fingerprint),
    Failed(std::io::Error),
}

impl Loader {
    /// A loader of `dir` with an empty cache. A changed file is read once it has not
    /// changed for `debounce` (zero: at once).
    pub fn new(dir: PathBuf, debounce: Duration, stats: Arc<LocalStats>) -> Self {
        Self {
            dir,
            debounce,
            files: BTreeMap::new(),
            pending: BTreeMap::new(),
            stats,
        }
    }

    /// The counters this loader updates.
    pub fn stats(&self) -> &Arc<LocalStats> {
        &self.stats
    }

    /// Lists the directory and stats every config file; reads only new or changed files
    /// (and hashes those whose fingerprint cannot be trusted yet), parses a file only when
    /// its content changed, and builds a new set only when a file was added, changed or
    /// removed. `now` is the monotonic time of the scan, `wall` the wall-clock time (file
    /// mtimes are compared with it).
    pub fn scan(
        &mut self,
        previous: &ConfigSet,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Scan, LocalSourceError> {
        let listed = yaml_files(&self.dir)?;
        let mut changed = false;
        let mut retry_after: Option<Duration> = None;

        let before = self.files.len();
        self.files
            .retain(|path, _| listed.binary_search(path).is_ok());
        self.pending
            .retain(|path, _| listed.binary_search(path).is_ok());
        changed |= self.files.len() != before;
        let mut seen_at = changed.then_some(now);

        for path in &listed {
            let waiting_since = self.pending.get(path).map(|p| p.since);
            match self.scan_file(path, now, wall) {
                FileScan::Unchanged => {}
                FileScan::Changed => {
                    changed = true;
                    let seen = waiting_since.unwrap_or(now);
                    seen_at = Some(seen_at.map_or(seen, |s: Instant| s.min(seen)));
                }
                FileScan::Wait(after) => {
                    retry_after = Some(retry_after.map_or(after, |r| r.min(after)));
                }
            }
        }

        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        self.stats
            .files
            .store(self.files.len() as u64, Ordering::Relaxed);
        self.stats.bytes.store(
            self.files.values().map(|f| f.fingerprint.len).sum(),
            Ordering::Relaxed,
        );
        self.stats.unverified.store(
            self.files.values().filter(|f| f.unverified).count() as u64,
            Ordering::Relaxed,
        );
        self.stats
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);

        let set = changed.then(|| {
            let mut assembly = Assembly::new(ConfigSet::default(), previous);
            for (path, cached) in &self.files {
                assembly.add(path, cached.content.clone());
            }
            assembly.finish()
        });
        Ok(Scan {
            seen_at: seen_at.filter(|_| set.is_some()),
            set,
            retry_after,
        })
    }

    fn scan_file(&mut self, path: &Path, now: Instant, wall: SystemTime) -> FileScan {
        let fingerprint = match std::fs::metadata(path) {
            Ok(meta) => Fingerprint::of(&meta),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // Removed since it was listed.
                self.pending.remove(path);
                return match self.files.remove(path) {
                    Some(_) => FileScan::Changed,
                    None => FileScan::Unchanged,
                };
            }
            Err(err) => return self.failed(path, err),
        };
        let cached = self.files.get(path);
        if let Some(cached) = cached
            && cached.fingerprint == fingerprint
            && !cached.failed
        {
            if !cached.unverified {
                return FileScan::Unchanged;
            }
            // Same fingerprint, but read too soon after its mtime to trust it: hash again.
            return self.accept(path, fingerprint, now, wall);
        }
        // New or changed: accept it once it has stopped changing.
        let stable = self.debounce.is_zero()
            || fingerprint.age(wall) >= self.debounce
            || self.pending.get(path).is_some_and(|pending| {
                pending.fingerprint == fingerprint
                    && now.duration_since(pending.since) >= self.debounce
            });
        if !stable {
            return self.wait(path, fingerprint, now);
        }
        self.accept(path, fingerprint, now, wall)
    }

    /// Records `path` as changing; the scan is to be retried once it may be stable.
    fn wait(&mut self, path: &Path, fingerprint: Fingerprint, now: Instant) -> FileScan {
        let pending = self
            .pending
            .entry(path.to_path_buf())
            .and_modify(|pending| {
                if pending.fingerprint != fingerprint {
                    *pending = Pending {
                        fingerprint,
                        since: now,
                    };
                }
            })
            .or_insert(Pending {
                fingerprint,
                since: now,
            });
        let waited = now.duration_since(pending.since);
        FileScan::Wait(
            self.debounce
                .saturating_sub(waited)
                .max(Duration::from_millis(1)),
        )
    }

    /// Reads the file; parses it if its content changed.
    fn accept(
        &mut self,
        path: &Path,
        fingerprint: Fingerprint,
        now: Instant,
        wall: SystemTime,
    ) -> FileScan {
        let bytes = match read_stable(path, fingerprint) {
            Read::Bytes(bytes) => bytes,
            Read::Gone => {
                self.pending.remove(path);
                return match self.files.remove(path) {
                    Some(_) => FileScan::Changed,
                    None => FileScan::Unchanged,
                };
            }
            Read::Changed(latest) => return self.wait(path, latest, now),
            Read::Failed(err) => return self.failed(path, err),
        };
        self.pending.remove(path);
        self.stats.files_read.fetch_add(1, Ordering::Relaxed);
        let hash = content_hash(&bytes);
        let unverified = fingerprint.age(wall) < MTIME_GRANULARITY;
        if let Some(cached) = self.files.get_mut(path)
            && !cached.failed
            && cached.hash == hash
        {
            // Same content (touched, renamed over, or verified): nothing to parse.
            cached.fingerprint = fingerprint;
            cached.unverified = unverified;
            return FileScan::Unchanged;
        }
        let content = parse_bytes(&bytes);
        drop(bytes);
        self.stats.files_parsed.fetch_add(1, Ordering::Relaxed);
        self.files.insert(
            path.to_path_buf(),
            Cached {
                fingerprint,
                hash,
                unverified,
                failed: false,
                content,
            },
        );
        FileScan::Changed
    }

    /// The file exists but cannot be read: it keeps its previous objects; tried again on
    /// every scan.
    fn failed(&mut self, path: &Path, err: std::io::Error) -> FileScan {
        self.pending.remove(path);
        let content = FileContent::Unusable(format!("cannot read: {err}"));
        if let Some(cached) = self.files.get(path)
            && cached.failed
            && cached.content == content
        {
            return FileScan::Unchanged;
        }
        self.files.insert(
            path.to_path_buf(),
            Cached {
                fingerprint: Fingerprint {
                    len: 0,
                    modified: None,
                    inode: 0,
                },
                hash: 0,
                unverified: false,
                failed: true,
                content,
            },
        );
        FileScan::Changed
    }
}

enum FileScan {
    Unchanged,
    Changed,
    /// Still changing: look again after this long.
    Wait(Duration),
}

/// Reads `path`, then checks that it still has `fingerprint` (a file replaced or written
/// to while it was read is not used).
fn read_stable(path: &Path, fingerprint: Fingerprint) -> Read {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Read::Gone,
        Err(err) => return Read::Failed(err),
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let after = Fingerprint::of(&meta);
            if after != fingerprint || bytes.len() as u64 != fingerprint.len {
                Read::Changed(after)
            } else {
                Read::Bytes(bytes)
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Read::Gone,
        Err(err) => Read::Failed(err),
    }
}

/// A fast, non-cryptographic hash of a file's content (only compared within this process).
fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}
