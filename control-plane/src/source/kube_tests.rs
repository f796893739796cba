//! Unit tests of the Kubernetes source: parsing, stripping, and the sync tracking.

use super::*;

fn dynamic(json: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json).expect("dynamic object")
}

const VS: IstioKind = ISTIO_KINDS[0];

fn vs(version: &str, weight: u32) -> DynamicObject {
    dynamic(serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "reviews", "namespace": "default", "resourceVersion": version, "uid": "u1",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: "{}"},
        },
        "spec": {"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": weight},
        ]}]},
    }))
}

#[test]
fn parses_like_local_mode_and_keeps_the_last_good_version() {
    let mut objects = IstioObjects::default();
    let good = vs("1", 90);
    let set = objects.update([(&VS, &good)]);
    let key = ObjectKey::new("VirtualService", Some("default"), "reviews");
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let sourced = &set.objects[&key];
    assert!(!sourced.stale);
    assert_eq!(
        sourced.file,
        PathBuf::from("/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews")
    );

    let bad = vs("2", 0);
    let set = objects.update([(&VS, &bad)]);
    assert!(set.objects[&key].stale);
    let errors =
        &set.errors["/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"];
    assert_eq!(
        errors[0],
        "VirtualService default/reviews: spec.http[0].route: total destination weight = 0"
    );

    // Deleted: gone, errors too.
    let set = objects.update(std::iter::empty());
    assert!(set.objects.is_empty() && set.errors.is_empty());
    // Re-created invalid: no good version to keep.
    let set = objects.update([(&VS, &bad)]);
    assert!(set.objects.is_empty());
    assert_eq!(set.errors.len(), 1);
}

#[test]
fn fills_api_version_kind_and_namespace() {
    let object = dynamic(serde_json::json!({
        "metadata": {"name": "r"},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    }));
    let parsed = parse_object(
        &object,
        "networking.istio.io/v1",
        "DestinationRule",
        Some("prod"),
    )
    .expect("valid");
    assert_eq!(parsed.kind(), weft_api::Kind::DestinationRule);
    assert_eq!(parsed.namespace(), Some("prod"));
}

#[test]
fn strips_managed_fields_and_last_applied() {
    let mut object = vs("1", 90);
    strip(&mut object);
    assert!(object.metadata.managed_fields.is_none());
    assert!(object.metadata.annotations.is_none());
    let mut namespace: PartialObjectMeta<Namespace> = serde_json::from_value(serde_json::json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "n", "labels": {"team": "a"}, "annotations": {"x": "y"}},
    }))
    .expect("namespace metadata");
    strip_to_labels(&mut namespace);
    assert!(namespace.metadata.annotations.is_none());
    assert_eq!(
        namespace.labels().get("team").map(String::as_str),
        Some("a")
    );
}

#[test]
fn pods_keep_labels_and_service_account_only() {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"},
                     "annotations": {"x": "y"}},
        "spec": {"serviceAccountName": "reviews",
                 "containers": [{"name": "app", "image": "reviews:1", "env": [{"name": "A", "value": "b"}]}],
                 "volumes": [{"name": "v", "emptyDir": {}}]},
        "status": {"podIP": "198.18.0.11", "phase": "Running"},
    }))
    .expect("pod");
    strip_pod(&mut pod);
    assert!(pod.metadata.annotations.is_none());
    assert!(pod.status.is_none());
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("reviews"));
    assert!(spec.containers.is_empty() && spec.volumes.is_none());
    assert_eq!(pod.labels().get("app").map(String::as_str), Some("a"));
}

/// Empty stores, as `KubeSource::start` builds them (without a client).
fn empty_stores() -> Stores {
    Stores {
        services: kube::runtime::reflector::store().0,
        endpoint_slices: kube::runtime::reflector::store().0,
        pods: kube::runtime::reflector::store().0,
        namespaces: kube::runtime::reflector::store().0,
        nodes: kube::runtime::reflector::store().0,
        istio: ISTIO_KINDS
            .iter()
            .map(|kind| {
                let writer = Writer::<DynamicObject>::new(kind.api_resource());
                (*kind, writer.as_reader())
            })
            .collect(),
    }
}

#[tokio::test]
async fn snapshots_name_the_resources_not_listed_yet() {
    let (signals, received) = futures::channel::mpsc::unbounded::<Signal>();
    let mut streams = SelectAll::new();
    streams.push(received.boxed());
    let resources: BTreeSet<&'static str> = ["services", "pods", "virtualservices", "telemetries"]
        .into_iter()
        .collect();
    let (tx, mut snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let timing = Timing {
        sync_timeout: Duration::from_millis(100),
        debounce: Duration::from_millis(5),
    };
    let task = tokio::spawn(run(streams, empty_stores(), resources, timing, tx));
    let send = |signal| signals.unbounded_send(signal).expect("run is alive");
    send(Signal::Changed {
        resource: "services",
        synced: true,
    });
    // An event before the initial list is done does not count.
    send(Signal::Changed {
        resource: "pods",
        synced: false,
    });
    // A CRD that is not installed: nothing to wait for.
    send(Signal::Failed {
        resource: "telemetries",
        error: "ApiError: 404 page not found: NotFound".to_string(),
    });
    // Any other failure: still waited for.
    send(Signal::Failed {
        resource: "virtualservices",
        error: "ApiError: virtualservices is forbidden (403)".to_string(),
    });

    // The first snapshot comes after the sync timeout and names what is missing.
    tokio::time::timeout(Duration::from_secs(10), snapshots.changed())
        .await
        .expect("first snapshot within 10s")
        .expect("run is alive");
    let first = snapshots.borrow_and_update().clone();
    assert_eq!(first.unsynced, ["pods", "virtualservices"]);
    assert!(!first.is_synced() && first.registry.is_some());

    // Their initial lists complete: a snapshot that is synced, even though no object
    // changed.
    send(Signal::Changed {
        resource: "pods",
        synced: true,
    });
    send(Signal::Changed {
        resource: "virtualservices",
        synced: true,
    });
    let synced = tokio::time::timeout(
        Duration::from_secs(10),
        snapshots.wait_for(|snapshot| snapshot.is_synced()),
    )
    .await
    .expect("synced snapshot within 10s")
    .map(|snapshot| snapshot.clone())
    .expect("run is alive");
    assert!(synced.unsynced.is_empty());
    task.abort();
}

#[test]
fn initial_lists_never_grow_back() {
    let mut lists = InitialLists::new(["services", "pods"].into_iter().collect());
    assert!(!lists.note(&Signal::Changed {
        resource: "services",
        synced: false,
    }));
    assert!(lists.note(&Signal::Changed {
        resource: "services",
        synced: true,
    }));
    assert_eq!(lists.pending(), ["pods"]);
    assert!(lists.note(&Signal::Failed {
        resource: "pods",
        error: "404 not found".to_string(),
    }));
    assert!(lists.done());
    // A relist after a watch error does not make the source unsynced again.
    assert!(!lists.note(&Signal::Changed {
        resource: "pods",
        synced: true,
    }));
    assert!(lists.done());
}
