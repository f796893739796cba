//! Every file of Istio's bookinfo networking samples, with ServiceEntries standing in
//! for the Kubernetes services, generates resources of every type without error.

use std::path::Path;

use weft_controller::model::{MeshSettings, Model};
use weft_controller::source::ConfigSet;
use weft_controller::source::local::{load_text, yaml_files};
use weft_controller::xds::{Proxy, generate};
use weft_xds::type_url;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/istio/samples/bookinfo/networking"
);

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [productpage, details, ratings]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.10, labels: {version: v1}}
  - {address: 127.0.0.11, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.21, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.0.0.22, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3, namespace: default}
spec: {address: 127.0.0.23, labels: {app: reviews, version: v3}}
"#;

#[test]
fn bookinfo_corpus_generates() {
    let dir = Path::new(CORPUS);
    assert!(dir.is_dir(), "the Istio corpus must exist at {CORPUS}");
    let files = yaml_files(dir).expect("lists the corpus");
    assert!(
        files.len() >= 10,
        "expected the bookinfo samples in {CORPUS}, found {files:?}"
    );

    let mut set = ConfigSet::default();
    load_text(
        &mut set,
        Path::new("services.yaml"),
        SERVICES,
        &ConfigSet::default(),
    );
    for file in &files {
        let text = std::fs::read_to_string(file).expect("reads a sample");
        load_text(&mut set, file, &text, &ConfigSet::default());
    }
    // The samples are alternatives of one another: the same names recur across files.
    let unexpected: Vec<&String> = set
        .errors
        .values()
        .flatten()
        .filter(|line| !line.contains("duplicate of"))
        .collect();
    assert!(unexpected.is_empty(), "unexpected errors: {unexpected:#?}");
    assert!(set.objects.keys().any(|key| key.kind == "VirtualService"));
    assert!(set.objects.keys().any(|key| key.kind == "DestinationRule"));

    let model = Model::build(&set, &MeshSettings::default());
    assert!(
        model
            .virtual_service("reviews.default.svc.cluster.local")
            .is_some()
    );
    assert!(
        model
            .destination_rule("reviews.default.svc.cluster.local")
            .is_some()
    );

    let mut proxy = Proxy::sidecar("default");
    proxy.app_port = Some(9080);
    for type_url in [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ] {
        let resources = generate(&model, &proxy, type_url);
        assert!(!resources.is_empty(), "no resources of {type_url}");
        for resource in &resources {
            assert!(!resource.name.is_empty());
            assert_eq!(resource.body.type_url, type_url);
        }
    }
    let clusters: Vec<String> = generate(&model, &proxy, type_url::CLUSTER)
        .into_iter()
        .map(|r| r.name)
        .collect();
    for subset in ["v1", "v2", "v3"] {
        let name = format!("outbound|9080|{subset}|reviews.default.svc.cluster.local");
        assert!(clusters.contains(&name), "missing {name}");
    }
}
