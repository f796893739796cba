//! From the bytes of one file to objects in a [`ConfigSet`]: UTF-8 check, documents, and
//! the previous good version of every object a broken file or document held.

use std::path::Path;

use tracing::debug;
use weft_api::{DocumentError, ParsedDocument, parse_documents};

use crate::object::ObjectKey;
use crate::source::{ConfigSet, SourcedObject};

/// Error lines longer than this are cut (a huge value quoted by a parser error must not
/// flood the log or `/debug/configz`).
pub(crate) const MAX_ERROR_LINE: usize = 1024;

/// At most this many error lines are kept per file; the rest are counted.
pub(crate) const MAX_ERRORS_PER_FILE: usize = 100;

/// What one file holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FileContent {
    /// The file's documents (each an object or why there is none).
    Documents(Vec<ParsedDocument>),
    /// Why the file could not be used at all (unreadable, not UTF-8): it keeps every object
    /// it held at its previous version.
    Unusable(String),
}

/// Parses the bytes of one file. The text is validated in place (no copy) and dropped by
/// the caller once parsed.
pub(crate) fn parse_bytes(bytes: &[u8]) -> FileContent {
    match std::str::from_utf8(bytes) {
        Ok(text) => FileContent::Documents(parse_documents(text)),
        Err(err) => FileContent::Unusable(utf8_problem(bytes, err.valid_up_to())),
    }
}

/// `not valid UTF-8 at line L, column C (byte offset P)`: the first bad byte, lines and
/// columns 1-based, the column in bytes.
fn utf8_problem(bytes: &[u8], bad: usize) -> String {
    // Everything before the first bad byte is valid UTF-8.
    let before = std::str::from_utf8(&bytes[..bad]).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = bad - line_start + 1;
    format!("not valid UTF-8 at line {line}, column {column} (byte offset {bad})")
}

/// A previous version to keep, unless a file defines the object now.
#[derive(Debug)]
struct Fallback {
    key: ObjectKey,
    old: SourcedObject,
    /// The file (as displayed) that should have held it, and the message prefix.
    file: String,
    context: String,
}

/// Builds one [`ConfigSet`] from files added in order: objects parsed now first (the first
/// definition of a key wins), then the previous versions kept for broken files and
/// documents, only where no file defines the object now.
#[derive(Debug)]
pub(crate) struct Assembly<'p> {
    set: ConfigSet,
    previous: &'p ConfigSet,
    fallbacks: Vec<Fallback>,
}

impl<'p> Assembly<'p> {
    pub(crate) fn new(set: ConfigSet, previous: &'p ConfigSet) -> Self {
        Self {
            set,
            previous,
            fallbacks: Vec::new(),
        }
    }

    /// Adds what `file` holds.
    pub(crate) fn add(&mut self, file: &Path, content: FileContent) {
        let shown = file.display().to_string();
        match content {
            FileContent::Unusable(problem) => {
                let kept: Vec<_> = self
                    .previous
                    .objects
                    .iter()
                    .filter(|(_, old)| old.file == file)
                    .map(|(key, old)| (key.clone(), old.clone()))
                    .collect();
                push_error(
                    &mut self.set,
                    &shown,
                    format!(
                        "{shown}: {problem}; keeping the previous version of its {} object(s)",
                        kept.len()
                    ),
                );
                for (key, old) in kept {
                    let context = format!("{shown}: document {} ({key})", old.index);
                    self.fallbacks.push(Fallback {
                        key,
                        old,
                        file: shown.clone(),
                        context,
                    });
                }
            }
            FileContent::Documents(documents) => {
                for document in documents {
                    self.add_document(file, &shown, document);
                }
            }
        }
    }

    fn add_document(&mut self, file: &Path, shown: &str, document: ParsedDocument) {
        let index = document.index;
        match document.result {
            Ok(object) => {
                let key = ObjectKey::of(&object);
                if let Some(first) = self.set.objects.get(&key)
                    && !first.stale
                {
                    let message = format!(
                        "{shown}: document {index} ({key}): duplicate of {} document {}; ignored (the first one wins)",
                        first.file.display(),
                        first.index
                    );
                    push_error(&mut self.set, shown, message);
                    return;
                }
                self.set.objects.insert(
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
                let context = format!("{shown}: document {index} ({what})");
                for field in &errors.0 {
                    // `FieldError` displays as `path: reason` (just the reason without a path).
                    push_error(&mut self.set, shown, format!("{context}: {field}"));
                }
                if errors.0.is_empty() {
                    push_error(&mut self.set, shown, format!("{context}: invalid"));
                }
                // Which previous object did this document hold? Its key when it is known
                // for sure; for text that is not YAML the key is a guess, so when the
                // guess finds nothing, the object this file's document `index` held.
                let by_key = key
                    .as_ref()
                    .and_then(|key| self.previous.objects.get_key_value(key));
                let by_position = || {
                    self.previous
                        .objects
                        .iter()
                        .find(|(_, old)| old.file == file && old.index == index)
                };
                let old = match (by_key, &key) {
                    (Some(found), _) => Some(found),
                    (None, Some(_)) if !document.syntax_error => None,
                    (None, _) => by_position(),
                };
                if let Some((key, old)) = old {
                    self.fallbacks.push(Fallback {
                        key: key.clone(),
                        old: old.clone(),
                        file: shown.to_string(),
                        context,
                    });
                }
            }
        }
    }

    /// The set: previous versions fill in what no file defines now (marked `stale`).
    pub(crate) fn finish(mut self) -> ConfigSet {
        for fallback in std::mem::take(&mut self.fallbacks) {
            if self.set.objects.contains_key(&fallback.key) {
                continue;
            }
            push_error(
                &mut self.set,
                &fallback.file,
                format!("{}: keeping the previous good version", fallback.context),
            );
            self.set.objects.insert(
                fallback.key,
                SourcedObject {
                    stale: true,
                    ..fallback.old
                },
            );
        }
        for lines in self.set.errors.values_mut() {
            if lines.len() > MAX_ERRORS_PER_FILE {
                let more = lines.len() - MAX_ERRORS_PER_FILE + 1;
                lines.truncate(MAX_ERRORS_PER_FILE - 1);
                lines.push(format!("... and {more} more error line(s) in this file"));
            }
        }
        self.set
    }
}

fn push_error(set: &mut ConfigSet, file: &str, mut message: String) {
    if message.len() > MAX_ERROR_LINE {
        let total = message.len();
        let mut cut = MAX_ERROR_LINE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!("... ({total} bytes in all)"));
    }
    set.errors
        .entry(file.to_string())
        .or_default()
        .push(message);
}
