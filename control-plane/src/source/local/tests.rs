//! Unit tests of the local source's loader: last good versions kept for broken files and
//! documents, deletions, incremental re-reads, and the stability rule for changing files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::source::SourcedObject;

const DEBOUNCE: Duration = Duration::from_millis(100);

/// Three WorkloadEntries; `address` is the version marker.
fn three(address: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: one}}
spec: {{address: {address}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: two
spec:
  address: {address}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: three}}
spec: {{address: {address}}}
"
    )
}

fn object<'a>(set: &'a ConfigSet, name: &str) -> &'a SourcedObject {
    set.objects
        .iter()
        .find(|(key, _)| key.name == name)
        .map(|(_, object)| object)
        .unwrap_or_else(|| panic!("no object {name} in {:?}", set.objects.keys()))
}

/// The `spec.address` of the WorkloadEntry `name`.
fn address(set: &ConfigSet, name: &str) -> String {
    match &object(set, name).object {
        weft_api::ConfigObject::WorkloadEntry(entry) => entry.spec.address.clone(),
        other => panic!("not a WorkloadEntry: {other:?}"),
    }
}

fn errors(set: &ConfigSet) -> Vec<String> {
    set.errors.values().flatten().cloned().collect()
}

/// Writes `bytes` to `path` with an mtime `age` in the past.
fn write_aged(path: &Path, bytes: &[u8], age: Duration) {
    std::fs::write(path, bytes).expect("write fixture");
    set_mtime(path, SystemTime::now() - age);
}

fn set_mtime(path: &Path, mtime: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(mtime))
        .expect("set mtime");
}

const OLD: Duration = Duration::from_secs(3600);

struct Fixture {
    dir: tempfile::TempDir,
    loader: Loader,
    set: ConfigSet,
}

impl Fixture {
    fn new() -> Self {
        Self::with_debounce(DEBOUNCE)
    }

    fn with_debounce(debounce: Duration) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let loader = Loader::new(dir.path().to_path_buf(), debounce, Arc::default());
        Self {
            dir,
            loader,
            set: ConfigSet::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Scans at `now`; keeps (and returns) the new set like the watch loop publishes it.
    fn scan_at(&mut self, now: Instant) -> Scan {
        let scan = self
            .loader
            .scan(&self.set, now, SystemTime::now())
            .expect("scan");
        if let Some(set) = &scan.set {
            self.set = set.clone();
        }
        scan
    }

    fn scan(&mut self) -> Scan {
        self.scan_at(Instant::now())
    }

    /// Scans, and once more a debounce later if a file was still changing.
    fn scan_settled(&mut self) {
        let now = Instant::now();
        if let Some(after) = self.scan_at(now).retry_after {
            let scan = self.scan_at(now + after);
            assert_eq!(scan.retry_after, None, "settled");
        }
    }

    fn stats(&self) -> LocalStatsSnapshot {
        self.loader.stats().snapshot()
    }
}

#[test]
fn invalid_utf8_in_a_comment_keeps_every_object_of_the_file() {
    let mut fx = Fixture::new();
    let file = fx.path("entries.yaml");
    write_aged(&file, three("10.0.0.1").as_bytes(), OLD);
    fx.scan();
    assert_eq!(fx.set.objects.len(), 3);

    // A new version with one bad byte in a comment on line 3.
    let mut bytes = three("10.0.0.2").into_bytes();
    let line3 = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1);
    let at = line3.map(|(i, _)| i + 1).expect("a third line");
    bytes.splice(at..at, b"# caf\xff\n".iter().copied());
    write_aged(&file, &bytes, OLD);
    fx.scan();

    assert_eq!(fx.set.objects.len(), 3, "{:?}", fx.set.objects.keys());
    for name in ["one", "two", "three"] {
        assert!(object(&fx.set, name).stale, "{name} is marked stale");
        assert_eq!(
            address(&fx.set, name),
            "10.0.0.1",
            "{name} keeps its version"
        );
    }
    let errors = errors(&fx.set);
    let line = errors
        .iter()
        .find(|line| line.contains("UTF-8"))
        .unwrap_or_else(|| panic!("no UTF-8 error in {errors:?}"));
    assert!(line.contains("entries.yaml"), "{line}");
    assert!(
        line.contains("line 3, column 6 (byte offset"),
        "names line and column of the bad byte: {line}"
    );

    // Still broken after another scan (the stale objects are kept, not dropped).
    write_aged(&fx.path("other.yaml"), b"# nothing\n", OLD);
    assert!(fx.scan().set.is_some());
    assert_eq!(fx.set.objects.len(), 3);
    assert!(object(&fx.set, "one").stale);

    // Fixed: the new version applies.
    write_aged(&file, three("10.0.0.3").as_bytes(), OLD);
    fx.scan();
    assert_eq!(address(&fx.set, "two"), "10.0.0.3");
    assert!(!object(&fx.set, "two").stale);
    assert!(fx.set.errors.is_empty(), "{:?}", fx.set.errors);
}

#[test]
fn syntax_error_in_document_2_of_3_keeps_its_object_and_applies_the_others() {
    let mut fx = Fixture::new();
    let file = fx.path("entries.yaml");
    write_aged(&file, three("10.0.0.1").as_bytes(), OLD);
    fx.scan();

    // Document 2 (index 1) gets a bad indentation on line 12 of the file.
    let broken =
        three("10.0.0.2").replace("  address: 10.0.0.2\n", "  address: 10.0.0.2\n bad: [\n");
    write_aged(&file, broken.as_bytes(), OLD);
    fx.scan();

    assert_eq!(address(&fx.set, "one"), "10.0.0.2");
    assert_eq!(address(&fx.set, "three"), "10.0.0.2");
    assert!(!object(&fx.set, "one").stale && !object(&fx.set, "three").stale);
    assert_eq!(address(&fx.set, "two"), "10.0.0.1", "previous version kept");
    assert!(object(&fx.set, "two").stale);
    let errors = errors(&fx.set);
    let line = errors
        .iter()
        .find(|line| line.contains("invalid YAML"))
        .unwrap_or_else(|| panic!("no syntax error in {errors:?}"));
    assert!(line.contains("entries.yaml: document 1"), "{line}");
    assert!(line.contains("WorkloadEntry default/two"), "{line}");
    assert!(line.contains("at line 12, column 2"), "{line}");
    assert!(
        errors.iter().any(|line| line.contains("document 1")
            && line.contains("keeping the previous good version")),
        "{errors:?}"
    );
}

#[test]
fn broken_document_without_a_readable_name_keeps_what_that_document_held() {
    let previous = {
        let mut set = ConfigSet::default();
        load_text(
            &mut set,
            Path::new("a.yaml"),
            &three("10.0.0.1"),
            &ConfigSet::default(),
        );
        set
    };
    // Document 1's name cannot be read (its metadata line is the broken one).
    let broken = three("10.0.0.2").replace("  name: two\n", "  name: [two\n");
    let mut set = ConfigSet::default();
    load_text(&mut set, Path::new("a.yaml"), &broken, &previous);
    assert_eq!(address(&set, "two"), "10.0.0.1");
    assert!(object(&set, "two").stale);
    assert_eq!(address(&set, "three"), "10.0.0.2");

    // A valid definition elsewhere wins over a kept previous version.
    let mut set = ConfigSet::default();
    load_text(&mut set, Path::new("a.yaml"), &broken, &previous);
    let elsewhere = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: two}\nspec: {address: 10.0.0.9}\n";
    load_text(&mut set, Path::new("b.yaml"), elsewhere, &previous);
    assert_eq!(address(&set, "two"), "10.0.0.9");
    assert!(!object(&set, "two").stale);
}

#[test]
fn unreadable_file_keeps_its_objects() {
    let mut fx = Fixture::new();
    let file = fx.path("entries.yaml");
    write_aged(&file, three("10.0.0.1").as_bytes(), OLD);
    fx.scan();
    assert_eq!(fx.set.objects.len(), 3);

    // A regular file whose read fails (even for root): /proc/self/mem answers EIO.
    std::fs::remove_file(&file).expect("remove");
    std::os::unix::fs::symlink("/proc/self/mem", &file).expect("symlink");
    fx.scan_settled();
    assert_eq!(fx.set.objects.len(), 3, "{:?}", fx.set.errors);
    assert!(fx.set.objects.values().all(|object| object.stale));
    let errors = errors(&fx.set);
    assert!(
        errors
            .iter()
            .any(|line| line.contains("entries.yaml: cannot read:") && line.contains("3 object(s)")),
        "{errors:?}"
    );

    // Readable again: its content applies.
    std::fs::remove_file(&file).expect("remove");
    write_aged(&file, three("10.0.0.2").as_bytes(), OLD);
    fx.scan();
    assert_eq!(address(&fx.set, "one"), "10.0.0.2");
    assert!(fx.set.errors.is_empty(), "{:?}", fx.set.errors);
}

#[test]
fn deleting_a_file_removes_its_objects() {
    let mut fx = Fixture::new();
    write_aged(&fx.path("a.yaml"), three("10.0.0.1").as_bytes(), OLD);
    write_aged(
        &fx.path("b.yml"),
        b"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: four}\nspec: {address: 10.0.0.4}\n",
        OLD,
    );
    fx.scan();
    assert_eq!(fx.set.objects.len(), 4);
    std::fs::remove_file(fx.path("a.yaml")).expect("remove");
    assert!(fx.scan().set.is_some(), "a deletion is a change");
    assert_eq!(
        fx.set
            .objects
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["WorkloadEntry default/four"]
    );
    // Also when the file was broken (its kept objects go with it).
    write_aged(&fx.path("b.yml"), b"\xff", OLD);
    fx.scan();
    assert_eq!(fx.set.objects.len(), 1);
    std::fs::remove_file(fx.path("b.yml")).expect("remove");
    fx.scan();
    assert!(fx.set.objects.is_empty());
    assert!(fx.set.errors.is_empty());
}

#[test]
fn unchanged_files_are_not_read_or_parsed_again() {
    let mut fx = Fixture::new();
    write_aged(&fx.path("a.yaml"), three("10.0.0.1").as_bytes(), OLD);
    write_aged(&fx.path("b.yaml"), b"# empty\n", OLD);
    assert!(fx.scan().set.is_some());
    let first = fx.stats();
    assert_eq!(
        (first.files_parsed, first.files_read, first.files),
        (2, 2, 2)
    );
    assert_eq!(first.unverified, 0);

    for _ in 0..5 {
        let scan = fx.scan();
        assert!(scan.set.is_none(), "nothing changed: no new set");
    }
    let after = fx.stats();
    assert_eq!((after.files_parsed, after.files_read), (2, 2), "{after:?}");
    assert_eq!(after.scans, 6);

    // Touched (new mtime, same content): read and hashed, not parsed.
    set_mtime(&fx.path("b.yaml"), SystemTime::now() - OLD / 2);
    assert!(fx.scan().set.is_none());
    let touched = fx.stats();
    assert_eq!((touched.files_parsed, touched.files_read), (2, 3));

    // One file edited: only that one is parsed.
    write_aged(&fx.path("b.yaml"), b"# edited\n", OLD);
    assert!(fx.scan().set.is_some());
    let edited = fx.stats();
    assert_eq!((edited.files_parsed, edited.files_read), (3, 4));
    assert_eq!(
        edited.bytes,
        (three("10.0.0.1").len() + "# edited\n".len()) as u64
    );
}

#[test]
fn same_size_change_within_the_mtime_granularity_is_found_by_its_hash() {
    // A long debounce: only the `now` given to each scan moves time on.
    let debounce = Duration::from_secs(30);
    let mut fx = Fixture::with_debounce(debounce);
    let file = fx.path("a.yaml");
    // Written just now: the mtime cannot be trusted to change on the next write.
    std::fs::write(&file, three("10.0.0.1")).expect("write");
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let t0 = Instant::now();
    assert!(fx.scan_at(t0).set.is_none());
    let scan = fx.scan_at(t0 + debounce);
    assert!(scan.set.is_some());
    // The change dates from the scan that first saw it, not from the one that used it: a
    // push's convergence counts the debounce.
    assert_eq!(scan.seen_at, Some(t0));
    assert_eq!(address(&fx.set, "one"), "10.0.0.1");
    assert_eq!(fx.stats().unverified, 1);

    // Same length, same mtime, same inode: only the content tells.
    std::fs::write(&file, three("10.0.0.2")).expect("write");
    set_mtime(&file, mtime);
    let scan = fx.scan_at(t0 + debounce * 2);
    assert!(scan.set.is_some());
    assert_eq!(
        scan.seen_at,
        Some(t0 + debounce * 2),
        "seen and used at once"
    );
    assert_eq!(address(&fx.set, "one"), "10.0.0.2");
    // Nothing changed: no set, no time.
    assert_eq!(fx.scan_at(t0 + debounce * 3).seen_at, None);
}

#[test]
fn a_file_still_changing_is_not_used_until_it_is_stable() {
    // A long debounce: only the `now` given to each scan moves time on.
    const DEBOUNCE: Duration = Duration::from_secs(30);
    let mut fx = Fixture::with_debounce(DEBOUNCE);
    let file = fx.path("a.yaml");
    let full = three("10.0.0.1");
    let t0 = Instant::now();

    // Half written (it still parses: one object of three), mtime now.
    let half = &full[..full.find("---").expect("two documents")];
    std::fs::write(&file, half).expect("write");
    let scan = fx.scan_at(t0);
    assert!(
        scan.set.is_none(),
        "not published while it may still change"
    );
    assert_eq!(scan.retry_after, Some(DEBOUNCE));
    assert_eq!(fx.stats().pending, 1);

    // It grows during the debounce: still not published, the wait starts again.
    std::fs::write(&file, &full[..full.len() - 20]).expect("write");
    let scan = fx.scan_at(t0 + DEBOUNCE);
    assert!(scan.set.is_none());
    assert_eq!(scan.retry_after, Some(DEBOUNCE));

    // Complete, and unchanged for a whole debounce: published, whole.
    std::fs::write(&file, &full).expect("write");
    assert!(fx.scan_at(t0 + DEBOUNCE * 2).set.is_none());
    let scan = fx.scan_at(t0 + DEBOUNCE * 3);
    assert!(scan.set.is_some());
    assert_eq!(scan.retry_after, None);
    assert_eq!(fx.set.objects.len(), 3);
    assert_eq!(
        fx.stats().files_parsed,
        1,
        "the partial versions were never parsed"
    );
    assert_eq!(fx.stats().pending, 0);
}

#[test]
fn temporary_and_hidden_files_are_not_config() {
    for name in ["a.yaml", "a.yml", "with.dots.yaml"] {
        assert!(is_config_file_name(name), "{name}");
    }
    for name in [
        ".a.yaml",
        ".a.yaml.swp",
        "a.yaml~",
        "#a.yaml#",
        ".#a.yaml",
        "a.yaml.tmp",
        "~a.yaml",
        "a.json",
        "yaml",
    ] {
        assert!(!is_config_file_name(name), "{name}");
    }
}

#[test]
fn long_error_lines_are_cut() {
    let huge = "x".repeat(100_000);
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r}}\nspec: {{hosts: [a], http: [{{timeout: {huge}, route: [{{destination: {{host: a}}}}]}}]}}\n"
    );
    let mut set = ConfigSet::default();
    load_text(
        &mut set,
        Path::new("big.yaml"),
        &text,
        &ConfigSet::default(),
    );
    let errors = errors(&set);
    assert!(!errors.is_empty());
    for line in &errors {
        assert!(line.len() < 1200, "{} bytes", line.len());
    }
}

#[test]
fn load_bytes_never_panics_on_mangled_input() {
    let seed = three("10.0.0.1").into_bytes();
    let previous = {
        let mut set = ConfigSet::default();
        load_bytes(&mut set, Path::new("f.yaml"), &seed, &ConfigSet::default());
        set
    };
    // Every cut, and a bad byte at every 7th position.
    for cut in 0..seed.len() {
        let mut set = ConfigSet::default();
        load_bytes(&mut set, Path::new("f.yaml"), &seed[..cut], &previous);
        let mut bytes = seed.clone();
        bytes[cut] = [0xff, b'\t', b'{', b'\n', b'-', b':', 0][cut % 7];
        let mut set = ConfigSet::default();
        load_bytes(&mut set, Path::new("f.yaml"), &bytes, &previous);
        // Every object is parsed from these bytes or kept from the previous set.
        for (key, object) in &set.objects {
            assert!(
                !object.stale
                    || previous.objects.get(key).map(|o| &o.object) == Some(&object.object),
                "{key}"
            );
        }
    }
}
