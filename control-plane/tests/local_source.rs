//! The local directory source: multi-document files, invalid documents, deletions, edits,
//! broken files keeping their last good objects, and unchanged files not read again.

use std::path::Path;
use std::time::{Duration, SystemTime};

use weft_controller::source::ConfigSet;
use weft_controller::source::local::{LocalSource, LocalSourceError, load_directory};

const TWO_SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - directResponse: {status: 200}
"#;

const BAD_VIRTUAL_SERVICE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - directResponse: {status: 999}
"#;

fn keys(set: &ConfigSet) -> Vec<String> {
    set.objects.keys().map(ToString::to_string).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write fixture");
}

#[test]
fn multi_document_files_and_unsupported_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), TWO_SERVICES);
    write(&dir.path().join("notes.txt"), "not yaml: [");
    let set = load_directory(dir.path(), &ConfigSet::default()).expect("loads");
    assert_eq!(
        keys(&set),
        [
            "ServiceEntry default/reviews",
            "VirtualService default/reviews"
        ]
    );
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let vs = set
        .objects
        .values()
        .find(|o| o.index == 2)
        .expect("document 2");
    assert!(vs.file.ends_with("a.yaml"));
}

#[test]
fn invalid_document_is_reported_and_previous_version_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("reviews.yaml");
    write(&file, TWO_SERVICES);
    let good = load_directory(dir.path(), &ConfigSet::default()).expect("loads");

    write(&file, BAD_VIRTUAL_SERVICE);
    let next = load_directory(dir.path(), &good).expect("loads");
    let errors = next.errors.values().flatten().cloned().collect::<Vec<_>>();
    let line = errors
        .iter()
        .find(|line| line.contains("status"))
        .unwrap_or_else(|| panic!("no field error in {errors:?}"));
    assert!(line.contains("reviews.yaml"), "{line}");
    assert!(line.contains("document 1"), "{line}");
    assert!(line.contains("VirtualService default/reviews"), "{line}");
    assert!(
        line.contains("spec.http[0].directResponse.status"),
        "{line}"
    );

    let kept = next
        .objects
        .iter()
        .find(|(key, _)| key.kind == "VirtualService")
        .map(|(_, sourced)| sourced)
        .expect("previous VirtualService kept");
    assert!(kept.stale);
    assert_eq!(kept.object, good.objects[&kept_key(&good)].object);

    // Without a previous version there is nothing to keep.
    let fresh = load_directory(dir.path(), &ConfigSet::default()).expect("loads");
    assert_eq!(keys(&fresh), ["ServiceEntry default/reviews"]);
}

fn kept_key(set: &ConfigSet) -> weft_controller::object::ObjectKey {
    set.objects
        .keys()
        .find(|key| key.kind == "VirtualService")
        .cloned()
        .expect("virtual service")
}

#[test]
fn duplicates_name_both_places_and_first_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), TWO_SERVICES);
    write(
        &dir.path().join("b.yml"),
        BAD_VIRTUAL_SERVICE.replace("999", "204").as_str(),
    );
    let set = load_directory(dir.path(), &ConfigSet::default()).expect("loads");
    let errors: Vec<&String> = set.errors.values().flatten().collect();
    assert!(
        errors.iter().any(|line| line.contains("b.yml")
            && line.contains("duplicate of")
            && line.contains("a.yaml")),
        "{errors:?}"
    );
    let vs = set
        .objects
        .values()
        .find(|o| o.index == 2)
        .expect("first kept");
    assert!(vs.file.ends_with("a.yaml"));
}

#[test]
fn deleting_a_file_removes_its_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), TWO_SERVICES);
    let before = load_directory(dir.path(), &ConfigSet::default()).expect("loads");
    assert_eq!(before.objects.len(), 2);
    std::fs::remove_file(dir.path().join("a.yaml")).expect("remove");
    let after = load_directory(dir.path(), &before).expect("loads");
    assert!(after.objects.is_empty());
}

#[test]
fn missing_directory_is_an_error_naming_it() {
    let err = load_directory(Path::new("/definitely/not/here"), &ConfigSet::default())
        .expect_err("missing");
    assert!(matches!(err, LocalSourceError::Missing { .. }));
    assert!(err.to_string().contains("/definitely/not/here"));
}

#[tokio::test]
async fn edits_are_picked_up_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.yaml");
    write(&file, TWO_SERVICES);
    let source =
        LocalSource::start(dir.path().to_path_buf(), Duration::from_millis(50)).expect("starts");
    let mut config = source.config.clone();
    assert_eq!(config.borrow_and_update().objects.len(), 2);

    // Editors often replace the file via rename.
    let temp = dir.path().join(".a.yaml.swp");
    write(&temp, &TWO_SERVICES.replace("status: 200", "status: 201"));
    std::fs::rename(&temp, &file).expect("rename");
    tokio::time::timeout(Duration::from_secs(1), config.changed())
        .await
        .expect("change seen within 1s")
        .expect("source alive");
    let text = format!("{:?}", config.borrow_and_update().objects);
    assert!(text.contains("201"), "{text}");

    std::fs::remove_file(&file).expect("remove");
    tokio::time::timeout(Duration::from_secs(1), config.changed())
        .await
        .expect("deletion seen within 1s")
        .expect("source alive");
    assert!(config.borrow().objects.is_empty());
    source.task.abort();
}

/// Waits (polling, up to `limit`) until `check` holds for the published set.
async fn published(
    config: &mut tokio::sync::watch::Receiver<std::sync::Arc<ConfigSet>>,
    limit: Duration,
    what: &str,
    check: impl Fn(&ConfigSet) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check(&config.borrow_and_update()) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {limit:?} waiting for {what}"
        );
        let _ = tokio::time::timeout(left, config.changed()).await;
    }
}

fn status_of(set: &ConfigSet) -> Option<String> {
    let vs = set
        .objects
        .iter()
        .find(|(key, _)| key.kind == "VirtualService")?;
    let text = format!("{:?}", vs.1.object);
    ["200", "201", "202"]
        .into_iter()
        .find(|code| text.contains(&format!("status: {code}")))
        .map(str::to_string)
}

#[tokio::test]
async fn broken_edits_keep_the_last_good_objects_until_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.yaml");
    write(&file, TWO_SERVICES);
    let source =
        LocalSource::start(dir.path().to_path_buf(), Duration::from_millis(50)).expect("starts");
    let mut config = source.config.clone();
    assert_eq!(
        status_of(&config.borrow_and_update()).as_deref(),
        Some("200")
    );

    // A bad byte in a comment: nothing changes but the error.
    let mut bytes = TWO_SERVICES
        .replace("status: 200", "status: 201")
        .into_bytes();
    bytes.extend_from_slice(b"# \xc3\x28\n");
    std::fs::write(&file, &bytes).expect("write");
    published(
        &mut config,
        Duration::from_secs(5),
        "the UTF-8 error",
        |set| {
            set.errors
                .values()
                .flatten()
                .any(|line| line.contains("UTF-8"))
        },
    )
    .await;
    {
        let set = config.borrow();
        assert_eq!(set.objects.len(), 2);
        assert!(set.objects.values().all(|object| object.stale));
        assert_eq!(status_of(&set).as_deref(), Some("200"));
    }

    // A syntax error in the first document only: the VirtualService's new version applies,
    // the ServiceEntry keeps its previous one.
    let text = TWO_SERVICES
        .replace("status: 200", "status: 202")
        .replace("resolution: STATIC", "resolution: STATIC\n bad: [");
    write(&file, &text);
    published(
        &mut config,
        Duration::from_secs(5),
        "the syntax error",
        |set| status_of(set).as_deref() == Some("202"),
    )
    .await;
    {
        let set = config.borrow();
        let entry = set
            .objects
            .iter()
            .find(|(key, _)| key.kind == "ServiceEntry")
            .map(|(_, object)| object)
            .expect("ServiceEntry kept");
        assert!(entry.stale);
        let errors: Vec<&String> = set.errors.values().flatten().collect();
        assert!(
            errors.iter().any(|line| line.contains("a.yaml: document 0")
                && line.contains("invalid YAML at line 9, column")),
            "{errors:?}"
        );
    }

    // Fixed: everything fresh, no errors.
    write(&file, &TWO_SERVICES.replace("status: 200", "status: 201"));
    published(&mut config, Duration::from_secs(5), "the fix", |set| {
        set.errors.is_empty() && status_of(set).as_deref() == Some("201")
    })
    .await;
    assert!(config.borrow().objects.values().all(|object| !object.stale));
    source.task.abort();
}

#[tokio::test(start_paused = true)]
async fn unchanged_directory_is_not_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.yaml");
    write(&file, TWO_SERVICES);
    // Old enough that its mtime can be trusted: no re-hash either.
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3600)))
        .expect("set mtime");
    let source =
        LocalSource::start(dir.path().to_path_buf(), Duration::from_millis(50)).expect("starts");
    let first = source.stats.snapshot();
    assert_eq!(
        (first.files_parsed, first.files_read, first.files),
        (1, 1, 1)
    );

    // Many safety-net re-scans (virtual time): the file is stat'ed, never read again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while source.stats.snapshot().scans < first.scans + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "re-scans did not run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = source.stats.snapshot();
    assert_eq!((after.files_parsed, after.files_read), (1, 1), "{after:?}");
    assert_eq!(after.bytes, TWO_SERVICES.len() as u64);
    assert!(!source.config.has_changed().expect("source alive"));
    source.task.abort();
}
