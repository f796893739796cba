//! The sidecar-injection webhook: `POST /inject` with an AdmissionReview of a Pod CREATE,
//! answered with the JSONPatch of [`weft_injector::inject_pod`] (allowed, unchanged, when
//! the pod is not to be injected; denied with `field: reason` when its annotations are
//! bad). The MutatingWebhookConfiguration's selectors choose the namespaces (opt-in by
//! `istio-injection=enabled` or `istio.io/rev`) and leave out pods labelled
//! `sidecar.istio.io/inject: "false"`; the mutation checks the opt-outs again.

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use tracing::{debug, info};
use weft_injector::{InjectConfig, Outcome, inject_pod, patch};

use crate::args::Args;

/// The path the API server posts pod reviews to.
pub const INJECT_PATH: &str = "/inject";

/// What the injector puts into pods, from the controller's flags: the proxies reach this
/// controller through its Service in its namespace.
pub fn config(args: &Args) -> InjectConfig {
    let service = format!("weft-controller.{}.svc", args.namespace);
    InjectConfig {
        proxy_image: args.proxy_image.clone(),
        controller_address: format!("https://{service}:15012"),
        controller_server_name: service,
        trust_domain: args.trust_domain.clone(),
        mesh_namespace: args.namespace.clone(),
        dns_capture: args.dns_capture,
        rewrite_app_probes: args.rewrite_app_probes,
        ..InjectConfig::default()
    }
}

/// The answer to one pod review: the response (with the patch when injected), and when the
/// pod is refused, the `field: reason` lines the webhook denies it with.
pub fn review(
    review: &AdmissionReview<DynamicObject>,
    cfg: &InjectConfig,
) -> (AdmissionResponse, Option<Vec<String>>) {
    let Some(request) = &review.request else {
        return (
            AdmissionResponse::invalid("the AdmissionReview has no request"),
            None,
        );
    };
    let mut response = AdmissionResponse::from(request);
    response.types = review.types.clone();
    if response.types.api_version.is_empty() {
        response.types.api_version = kube::core::admission::META_API_VERSION_V1.to_string();
        response.types.kind = kube::core::admission::META_KIND.to_string();
    }
    if request.operation != Operation::Create || request.kind.kind != "Pod" {
        return (response, None);
    }
    let Some(object) = &request.object else {
        return (
            response,
            Some(vec!["request.object is missing".to_string()]),
        );
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            return (
                response,
                Some(vec![format!("request.object: not a Pod: {e}")]),
            );
        }
    };
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let name = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone())
        .unwrap_or_default();
    let mut injected = pod.clone();
    match inject_pod(&mut injected, namespace, cfg) {
        Ok(Outcome::Skipped(why)) => {
            debug!(%namespace, pod = %name, "not injected: {why}");
            (response, None)
        }
        Ok(Outcome::Injected) => {
            let applied = patch(&pod, &injected)
                .map_err(|e| e.to_string())
                .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()));
            debug!(%namespace, pod = %name, "injected");
            match applied {
                Ok(patched) => (patched, None),
                Err(e) => (response, Some(vec![format!("building the patch: {e}")])),
            }
        }
        Err(e) => {
            info!(%namespace, pod = %name, "injection refused: {e}");
            (response, Some(vec![e.to_string()]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_review(
        namespace: &str,
        operation: &str,
        pod: serde_json::Value,
    ) -> AdmissionReview<DynamicObject> {
        serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "operation": operation, "namespace": namespace, "name": "",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "userInfo": {}, "object": pod,
            },
        }))
        .expect("review")
    }

    fn allowed((response, refusal): (AdmissionResponse, Option<Vec<String>>)) -> AdmissionResponse {
        assert_eq!(refusal, None);
        response
    }

    fn web(annotations: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "web-", "labels": {"app": "web"}, "annotations": annotations},
               "spec": {"containers": [{"name": "web", "image": "web:1"}]}})
    }

    #[test]
    fn a_pod_create_is_answered_with_the_injecting_patch() {
        let review = pod_review("shop", "CREATE", web(json!({})));
        let response = allowed(super::review(&review, &InjectConfig::default()));
        assert!(response.allowed);
        let ops: json_patch::Patch =
            serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("patch");
        let mut pod = serde_json::to_value(review.request.expect("request").object).expect("pod");
        json_patch::patch(&mut pod, &ops).expect("applies");
        assert_eq!(pod["spec"]["initContainers"][1]["name"], "istio-proxy");
        assert_eq!(
            pod["metadata"]["labels"]["security.istio.io/tlsMode"],
            "istio"
        );
    }

    #[test]
    fn skipped_pods_and_other_operations_are_allowed_unchanged() {
        for review in [
            pod_review(
                "shop",
                "CREATE",
                web(json!({"sidecar.istio.io/inject": "false"})),
            ),
            pod_review("weft-system", "CREATE", web(json!({}))),
            pod_review("shop", "UPDATE", web(json!({}))),
        ] {
            let response = allowed(super::review(&review, &InjectConfig::default()));
            assert!(response.allowed);
            assert!(response.patch.is_none());
        }
    }

    #[test]
    fn bad_annotations_are_denied_with_their_field() {
        let review = pod_review(
            "shop",
            "CREATE",
            web(json!({"traffic.sidecar.istio.io/includeInboundPorts": "http"})),
        );
        let (_, lines) = super::review(&review, &InjectConfig::default());
        let lines = lines.expect("refused");
        assert_eq!(
            lines.join("\n"),
            "metadata.annotations['traffic.sidecar.istio.io/includeInboundPorts']: \"http\" is not a port (1-65535)"
        );
    }
}
