//! The trust bundle for workloads that read it from Kubernetes: the `istio-ca-root-cert`
//! ConfigMap (key `root-cert.pem`) in every namespace, as istiod publishes it. Kept current on
//! every new namespace, every CA change, and every 5 minutes (a deleted ConfigMap returns).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weft_identity::CertificateAuthority;

/// Istio's ConfigMap name and key.
pub const CONFIGMAP: &str = "istio-ca-root-cert";
pub const KEY: &str = "root-cert.pem";
const RESYNC: Duration = Duration::from_secs(300);
const FIELD_MANAGER: &str = "weft-controller";

/// Starts the publisher (Kubernetes mode). `only` limits it to one namespace
/// (`--watch-namespace`).
pub fn spawn(
    client: Client,
    mut ca: watch::Receiver<Arc<CertificateAuthority>>,
    only: Option<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut events = watcher(namespaces, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        let mut known = BTreeSet::new();
        let mut published: BTreeMap<String, String> = BTreeMap::new();
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            let bundle = ca.borrow().trust_bundle().to_pem();
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(namespace)) => {
                        let name = namespace.name_any();
                        if only.as_ref().is_none_or(|only| *only == name) && namespace.metadata.deletion_timestamp.is_none() {
                            known.insert(name.clone());
                            if published.get(&name) != Some(&bundle) {
                                publish(&client, &name, &bundle, &mut published).await;
                            }
                        }
                    }
                    Some(Err(err)) => debug!(error = %err, "namespace watch error (retrying)"),
                    None => return,
                },
                changed = ca.changed() => {
                    if changed.is_err() { return }
                    let bundle = ca.borrow().trust_bundle().to_pem();
                    info!(namespaces = known.len(), "trust bundle changed: publishing {CONFIGMAP}");
                    for name in known.clone() {
                        publish(&client, &name, &bundle, &mut published).await;
                    }
                }
                _ = resync.tick() => {
                    published.clear();
                    for name in known.clone() {
                        publish(&client, &name, &bundle, &mut published).await;
                    }
                }
            }
        }
    })
}

async fn publish(
    client: &Client,
    namespace: &str,
    bundle: &str,
    published: &mut BTreeMap<String, String>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "istio.io/config".to_string(),
                "true".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), bundle.to_string())])),
        ..ConfigMap::default()
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(CONFIGMAP, &params, &Patch::Apply(&map)).await {
        Ok(_) => {
            published.insert(namespace.to_string(), bundle.to_string());
        }
        Err(err) => warn!(namespace, error = %err, "cannot publish {CONFIGMAP}"),
    }
}
