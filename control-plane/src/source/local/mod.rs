//! Local source: every `*.yaml`/`*.yml` file of one directory, watched and reloaded on change.
//!
//! The last good version of every object is kept: a file that cannot be read or is not
//! UTF-8 keeps all its objects, a document that is not valid YAML or not a valid object
//! keeps the object it held (marked `stale`, the error naming file, document, line and
//! column or field path). Only files whose (length, mtime, inode) or content hash changed
//! are read and parsed again ([`loader`]), and a changed file is used only once it has
//! stopped changing. Deleting a file deletes its objects.

mod assemble;
pub mod loader;
mod watch;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::ConfigSet;
use assemble::{Assembly, parse_bytes};
pub use loader::{Loader, LocalStats, LocalStatsSnapshot, MTIME_GRANULARITY, Scan};
pub use watch::LocalSource;

/// How often the directory is listed and its files' metadata checked even without a
/// file-system event, in case one was missed (editors replace files via rename, network
/// file systems drop events). Unchanged files are not read.
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
        let is_config = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(is_config_file_name);
        if is_config && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a file name is a config file: `*.yaml` or `*.yml`, not hidden. Editors' and
/// tools' temporary files (`.x.yaml.swp`, `x.yaml~`, `#x.yaml#`, `.#x.yaml`, `x.yaml.tmp`,
/// `~x.yaml`) never are, so a half-written copy is never loaded.
pub fn is_config_file_name(name: &str) -> bool {
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    let temporary = name.starts_with(['.', '#', '~']);
    yaml && !temporary
}

/// Reads the whole directory once into a new [`ConfigSet`] (no debounce).
///
/// `previous` is the last published set: an object whose file or document is now broken
/// keeps its previous good version (marked `stale`). Per-file problems are recorded in
/// [`ConfigSet::errors`]; only a directory that cannot be listed is an error.
pub fn load_directory(dir: &Path, previous: &ConfigSet) -> Result<ConfigSet, LocalSourceError> {
    let mut loader = Loader::new(dir.to_path_buf(), Duration::ZERO, Default::default());
    // A file that changes while it is read is read again (a few times at most).
    let mut set = ConfigSet::default();
    for _ in 0..4 {
        let scan = loader.scan(previous, tokio::time::Instant::now(), SystemTime::now())?;
        if let Some(scanned) = scan.set {
            set = scanned;
        }
        if scan.retry_after.is_none() {
            break;
        }
    }
    Ok(set)
}

/// Adds the objects of one file's text to `set` (see [`load_bytes`]).
pub fn load_text(set: &mut ConfigSet, file: &Path, text: &str, previous: &ConfigSet) {
    load_bytes(set, file, text.as_bytes(), previous);
}

/// Adds the objects of one file's bytes to `set`: the loader's bytes → objects step, pure
/// (no I/O), for any bytes.
///
/// Bytes that are not UTF-8 keep every object `previous` has from `file` (stale) and record
/// the line and column of the first bad byte; a document that is not valid YAML or not a
/// valid object keeps the object it held in `previous` (by kind/name, else by `file` and
/// document index); the other documents apply. A key already in `set` from a valid document
/// wins over this file's (a duplicate is reported). Errors go to `set.errors[file]`.
pub fn load_bytes(set: &mut ConfigSet, file: &Path, bytes: &[u8], previous: &ConfigSet) {
    let mut assembly = Assembly::new(std::mem::take(set), previous);
    assembly.add(file, parse_bytes(bytes));
    *set = assembly.finish();
}

#[cfg(test)]
mod tests;
