//! Keeps the API server trusting the webhooks: every webhook of the Mutating- and
//! ValidatingWebhookConfigurations named on the command line (`--injector-webhook-config`,
//! `--validator-webhook-config`) gets the CA's trust bundle as its `clientConfig.caBundle`,
//! as istiod's webhook patcher does.
//!
//! ```text
//!  watch of one configuration (fieldSelector metadata.name, so RBAC can grant it by name)
//!    │  every version seen, a CA change, a retry after a failed patch
//!    ▼
//!  patch_for(): caBundle of each webhook vs the bundle ─► JSON patch guarded by the
//!  resourceVersion (a concurrent writer, e.g. `helm upgrade`, makes it fail and the next
//!  version seen is patched instead)
//! ```
//!
//! So the chart ships the configurations without a `caBundle`, a `helm upgrade` that writes
//! one back is undone within a watch event, and a root rotation reaches the API server without
//! anyone touching the configurations.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use json_patch::{AddOperation, Patch as JsonPatch, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weft_identity::CertificateAuthority;

/// Wait before patching again after a refused or failed patch.
const RETRY: Duration = Duration::from_secs(5);
const FIELD_MANAGER: &str = "weft-controller";

/// One webhook configuration whose webhooks must trust the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Mutating(String),
    Validating(String),
}

/// Starts one patcher per target (Kubernetes mode).
pub fn spawn(
    client: &Client,
    ca: &watch::Receiver<Arc<CertificateAuthority>>,
    targets: &[Target],
) -> Vec<JoinHandle<()>> {
    targets
        .iter()
        .map(|target| match target {
            Target::Mutating(name) => tokio::spawn(keep_patched::<MutatingWebhookConfiguration>(
                Api::all(client.clone()),
                name.clone(),
                ca.clone(),
            )),
            Target::Validating(name) => {
                tokio::spawn(keep_patched::<ValidatingWebhookConfiguration>(
                    Api::all(client.clone()),
                    name.clone(),
                    ca.clone(),
                ))
            }
        })
        .collect()
}

/// The `caBundle` of each webhook of a configuration, in order.
trait Webhooks {
    fn bundles(&self) -> Vec<Option<&[u8]>>;
}

impl Webhooks for MutatingWebhookConfiguration {
    fn bundles(&self) -> Vec<Option<&[u8]>> {
        bundles(self.webhooks.iter().flatten().map(|w| &w.client_config))
    }
}

impl Webhooks for ValidatingWebhookConfiguration {
    fn bundles(&self) -> Vec<Option<&[u8]>> {
        bundles(self.webhooks.iter().flatten().map(|w| &w.client_config))
    }
}

fn bundles<'a>(configs: impl Iterator<Item = &'a WebhookClientConfig>) -> Vec<Option<&'a [u8]>> {
    configs
        .map(|config| config.ca_bundle.as_ref().map(|b| &b.0[..]))
        .collect()
}

/// The patch that sets every webhook's `caBundle` to `bundle`, applied only to the version
/// it was computed from; `None` when every webhook already has it.
pub fn patch_for(
    resource_version: Option<&str>,
    bundles: &[Option<&[u8]>],
    bundle: &[u8],
) -> Option<JsonPatch> {
    let stale: Vec<usize> = bundles
        .iter()
        .enumerate()
        .filter(|(_, current)| **current != Some(bundle))
        .map(|(index, _)| index)
        .collect();
    if stale.is_empty() {
        return None;
    }
    let mut operations = Vec::with_capacity(stale.len() + 1);
    if let Some(version) = resource_version {
        operations.push(PatchOperation::Test(TestOperation {
            path: "/metadata/resourceVersion".parse().ok()?,
            value: version.into(),
        }));
    }
    // ByteString serializes as the API's base64.
    let value = serde_json::to_value(ByteString(bundle.to_vec())).ok()?;
    for index in stale {
        operations.push(PatchOperation::Add(AddOperation {
            path: format!("/webhooks/{index}/clientConfig/caBundle")
                .parse()
                .ok()?,
            value: value.clone(),
        }));
    }
    Some(JsonPatch(operations))
}

/// Watches one configuration and patches every version of it that does not carry the
/// current trust bundle.
async fn keep_patched<K>(
    api: Api<K>,
    name: String,
    mut ca: watch::Receiver<Arc<CertificateAuthority>>,
) where
    K: Resource<DynamicType = ()>
        + Webhooks
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut latest: Option<K> = None;
    // Whether `latest` may still need a patch (a CA change or a failed attempt since).
    let mut pending = false;
    let mut warned = false;
    loop {
        let retry = async {
            if pending && latest.is_some() {
                tokio::time::sleep(RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(object)) => {
                    latest = Some(object);
                    pending = true;
                }
                Some(Err(err)) => {
                    if !warned {
                        warn!(%kind, %name, error = %err, "cannot watch the webhook configuration (retrying): does the controller's ClusterRole grant get/list/watch/patch on it by name?");
                        warned = true;
                    } else {
                        debug!(%kind, %name, error = %err, "webhook configuration watch error (retrying)");
                    }
                    continue;
                }
                None => return,
            },
            changed = ca.changed() => {
                if changed.is_err() { return }
                info!(%kind, %name, "trust bundle changed: patching the webhooks' caBundle");
                pending = true;
            }
            () = retry => {}
        }
        let Some(object) = latest.as_ref().filter(|_| pending) else {
            continue;
        };
        let bundle = ca.borrow().trust_bundle().to_pem();
        let Some(patch) = patch_for(
            object.meta().resource_version.as_deref(),
            &object.bundles(),
            bundle.as_bytes(),
        ) else {
            debug!(%kind, %name, "the webhooks' caBundle is current");
            pending = false;
            continue;
        };
        let webhooks = patch
            .0
            .iter()
            .filter(|op| matches!(op, PatchOperation::Add(_)))
            .count();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        match api.patch(&name, &params, &Patch::Json::<()>(patch)).await {
            Ok(patched) => {
                info!(%kind, %name, webhooks, resource_version = ?patched.resource_version(), "caBundle patched with the CA's trust bundle");
                latest = Some(patched);
                pending = false;
            }
            // The object changed under the patch (its `test` failed) or is gone: the watch
            // brings the next version.
            Err(kube::Error::Api(status))
                if status.code == 422 || status.code == 409 || status.code == 404 =>
            {
                debug!(%kind, %name, reason = %status.message, "caBundle patch raced a writer; waiting for the next version");
                pending = false;
            }
            Err(err) => {
                warn!(%kind, %name, error = %err, "cannot patch the webhooks' caBundle (retrying in {RETRY:?})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_stale_webhooks_are_patched_and_only_the_version_seen() {
        let bundle = b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n";
        assert!(patch_for(Some("7"), &[Some(bundle), Some(bundle)], bundle).is_none());
        assert!(patch_for(Some("7"), &[], bundle).is_none());
        let patch = patch_for(Some("7"), &[Some(bundle), None, Some(b"old")], bundle)
            .expect("two are stale");
        let encoded = serde_json::to_value(ByteString(bundle.to_vec())).expect("base64");
        assert_eq!(
            serde_json::to_value(&patch).expect("json"),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": encoded},
                {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": encoded},
            ])
        );
    }

    #[test]
    fn a_patch_applies_to_the_object_it_was_computed_from() {
        let mut object = json!({
            "metadata": {"name": "weft-sidecar-injector", "resourceVersion": "7"},
            "webhooks": [
                {"name": "a", "clientConfig": {"service": {"name": "weft-controller", "namespace": "weft-system"}}},
                {"name": "b", "clientConfig": {"caBundle": "b2xk"}},
            ],
        });
        let config: MutatingWebhookConfiguration =
            serde_json::from_value(object.clone()).expect("parses");
        let bundle = b"root";
        let patch = patch_for(Some("7"), &config.bundles(), bundle).expect("stale");
        json_patch::patch(&mut object, &patch).expect("applies");
        let patched: MutatingWebhookConfiguration =
            serde_json::from_value(object.clone()).expect("parses");
        assert_eq!(patched.bundles(), [Some(&bundle[..]), Some(&bundle[..])]);
        assert!(patch_for(Some("7"), &patched.bundles(), bundle).is_none());
        // Another writer got there first: the guard refuses, nothing is half-applied.
        object["metadata"]["resourceVersion"] = json!("8");
        object["webhooks"][0]["clientConfig"]["caBundle"] = json!("b2xk");
        let before = object.clone();
        assert!(json_patch::patch(&mut object, &patch).is_err());
        assert_eq!(object, before);
    }
}
