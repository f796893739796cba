//! The sidecar-injection webhook: `POST /inject` with an AdmissionReview of a Pod CREATE,
//! answered with the JSONPatch of [`weft_injector::inject_pod`] (allowed, unchanged, when
//! the pod is not to be injected; denied with `field: reason` when its annotations are
//! bad). The MutatingWebhookConfiguration's selectors choose the namespaces (opt-in by
//! `istio-injection=enabled` or `istio.io/rev`) and leave out pods labelled
//! `sidecar.istio.io/inject: "false"`; the mutation checks the opt-outs again.
//!
//! The pod's shape follows the API server: a native sidecar from Kubernetes 1.29 on, else
//! the proxy as the first container held by a `postStart` hook (`--native-sidecars auto`,
//! decided once at start by [`native_sidecars`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use tracing::{debug, info, warn};
use weft_injector::{InjectConfig, Outcome, inject_pod, patch};

use crate::args::{Args, NativeSidecars};

/// The path the API server posts pod reviews to.
pub const INJECT_PATH: &str = "/inject";

/// The first Kubernetes version with native sidecars on by default (`SidecarContainers`).
const NATIVE_SIDECARS_SINCE: (u32, u32) = (1, 29);
/// How long the API server has to tell its version at start.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What the injector puts into pods, from the controller's flags and the decision of
/// [`native_sidecars`]: the proxies reach this controller through its Service in its namespace.
pub fn config(args: &Args, native_sidecars: bool) -> InjectConfig {
    let service = format!("weft-controller.{}.svc", args.namespace);
    InjectConfig {
        proxy_image: args.proxy_image.clone(),
        controller_address: format!("https://{service}:15012"),
        controller_server_name: service,
        trust_domain: args.trust_domain.clone(),
        mesh_namespace: args.namespace.clone(),
        dns_capture: args.dns_capture,
        proxy_metadata: args.proxy_metadata.iter().cloned().collect(),
        concurrency: args.proxy_concurrency,
        cpu_request: args.proxy_cpu.clone(),
        memory_request: args.proxy_memory.clone(),
        cpu_limit: args.proxy_cpu_limit.clone(),
        memory_limit: args.proxy_memory_limit.clone(),
        rewrite_app_probes: args.rewrite_app_probes,
        native_sidecars,
        ..InjectConfig::default()
    }
}

/// Resolves `--native-sidecars`: `auto` asks the API server's `/version` once (Kubernetes
/// mode: `client`), native from 1.29 on; in local mode, and when the version cannot be read,
/// native (with a warning naming why). The decision is logged.
pub async fn native_sidecars(setting: NativeSidecars, client: Option<&kube::Client>) -> bool {
    let (native, why) = match (setting, client) {
        (NativeSidecars::True, _) => (true, "--native-sidecars=true".to_string()),
        (NativeSidecars::False, _) => (false, "--native-sidecars=false".to_string()),
        (NativeSidecars::Auto, None) => (true, "auto, local mode".to_string()),
        (NativeSidecars::Auto, Some(client)) => {
            match tokio::time::timeout(VERSION_TIMEOUT, client.apiserver_version()).await {
                Ok(Ok(info)) => match version_has_native_sidecars(&info.major, &info.minor) {
                    Some(native) => (
                        native,
                        format!("auto, Kubernetes {}.{}", info.major, info.minor),
                    ),
                    None => {
                        warn!(
                            major = %info.major,
                            minor = %info.minor,
                            git_version = %info.git_version,
                            "the API server's version is not a number: injecting native sidecars (--native-sidecars=false if the cluster is older than 1.29)"
                        );
                        (true, "auto, unparsable API server version".to_string())
                    }
                },
                Ok(Err(err)) => {
                    warn!(error = %err, "cannot read the API server's version: injecting native sidecars (--native-sidecars=false if the cluster is older than 1.29)");
                    (true, "auto, API server version unknown".to_string())
                }
                Err(_) => {
                    warn!(timeout = ?VERSION_TIMEOUT, "the API server did not tell its version in time: injecting native sidecars (--native-sidecars=false if the cluster is older than 1.29)");
                    (true, "auto, API server version unknown".to_string())
                }
            }
        }
    };
    if native {
        info!(reason = %why, "sidecar injection: the proxy as a native sidecar (init container, restartPolicy: Always)");
    } else {
        info!(reason = %why, "sidecar injection: the proxy as the first container, the app held by its postStart hook (weft-proxy wait)");
    }
    native
}

/// Whether an API server whose `/version` says `major`.`minor` has native sidecars (1.29 on);
/// `None` when they are not numbers. Managed clusters add a suffix (`"29+"` on EKS and GKE):
/// the leading digits count.
pub fn version_has_native_sidecars(major: &str, minor: &str) -> Option<bool> {
    let number = |text: &str| {
        let text = text.trim();
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        text[..end].parse::<u32>().ok()
    };
    Some((number(major)?, number(minor)?) >= NATIVE_SIDECARS_SINCE)
}

/// What the injection webhook did with one request (`sidecar_injection_*_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionOutcome {
    /// The pod gets the sidecar: the response carries the patch.
    Injected,
    /// Allowed unchanged: the pod opted out (or its namespace is the mesh's), or the review
    /// is not of a pod creation.
    Skipped,
    /// Refused (bad annotations, not a pod, no object), or the review is malformed.
    Failed,
}

/// The answer to one pod review.
#[derive(Debug)]
pub struct PodReview {
    /// The response, with the patch when injected.
    pub response: AdmissionResponse,
    /// When the pod is refused: the `field: reason` lines the webhook denies it with.
    pub refusal: Option<Vec<String>>,
    pub outcome: InjectionOutcome,
}

impl PodReview {
    fn allowed(response: AdmissionResponse, outcome: InjectionOutcome) -> Self {
        Self {
            response,
            refusal: None,
            outcome,
        }
    }

    fn refused(response: AdmissionResponse, lines: Vec<String>) -> Self {
        Self {
            response,
            refusal: Some(lines),
            outcome: InjectionOutcome::Failed,
        }
    }
}

/// Decides one pod review: inject, skip (allowed unchanged) or refuse.
pub fn review(review: &AdmissionReview<DynamicObject>, cfg: &InjectConfig) -> PodReview {
    let Some(request) = &review.request else {
        return PodReview {
            response: AdmissionResponse::invalid("the AdmissionReview has no request"),
            refusal: None,
            outcome: InjectionOutcome::Failed,
        };
    };
    let mut response = AdmissionResponse::from(request);
    response.types = review.types.clone();
    if response.types.api_version.is_empty() {
        response.types.api_version = kube::core::admission::META_API_VERSION_V1.to_string();
        response.types.kind = kube::core::admission::META_KIND.to_string();
    }
    if request.operation != Operation::Create || request.kind.kind != "Pod" {
        return PodReview::allowed(response, InjectionOutcome::Skipped);
    }
    let Some(object) = &request.object else {
        return PodReview::refused(response, vec!["request.object is missing".to_string()]);
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            return PodReview::refused(response, vec![format!("request.object: not a Pod: {e}")]);
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
            PodReview::allowed(response, InjectionOutcome::Skipped)
        }
        Ok(Outcome::Injected { warnings }) => {
            let applied = patch(&pod, &injected)
                .map_err(|e| e.to_string())
                .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()))
                .map(|mut patched| {
                    // The API server shows them to whoever created the pod (`Warning: …`).
                    if !warnings.is_empty() {
                        patched.warnings = Some(warnings.clone());
                    }
                    patched
                });
            debug!(%namespace, pod = %name, ?warnings, "injected");
            match applied {
                Ok(patched) => PodReview::allowed(patched, InjectionOutcome::Injected),
                Err(e) => PodReview::refused(response, vec![format!("building the patch: {e}")]),
            }
        }
        Err(e) => {
            info!(%namespace, pod = %name, "injection refused: {e}");
            PodReview::refused(response, vec![e.to_string()])
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

    fn allowed(review: PodReview) -> AdmissionResponse {
        assert_eq!(review.refusal, None);
        review.response
    }

    fn web(annotations: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "web-", "labels": {"app": "web"}, "annotations": annotations},
               "spec": {"containers": [{"name": "web", "image": "web:1"}]}})
    }

    #[test]
    fn a_pod_create_is_answered_with_the_injecting_patch() {
        let review = pod_review("shop", "CREATE", web(json!({})));
        let answer = super::review(&review, &InjectConfig::default());
        assert_eq!(answer.outcome, InjectionOutcome::Injected);
        let response = allowed(answer);
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
            let answer = super::review(&review, &InjectConfig::default());
            assert_eq!(answer.outcome, InjectionOutcome::Skipped);
            let response = allowed(answer);
            assert!(response.allowed);
            assert!(response.patch.is_none());
        }
    }

    #[test]
    fn native_sidecars_from_kubernetes_1_29() {
        for (major, minor, native) in [
            ("1", "29", Some(true)),
            ("1", "30", Some(true)),
            ("1", "29+", Some(true)),
            ("1", "28", Some(false)),
            ("1", "28+", Some(false)),
            ("1", "27-gke.100", Some(false)),
            (" 1 ", "9", Some(false)),
            ("2", "0", Some(true)),
            ("", "", None),
            ("1", "", None),
            ("one", "29", None),
            ("1", "+29", None),
        ] {
            assert_eq!(
                version_has_native_sidecars(major, minor),
                native,
                "{major:?}.{minor:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_flag_wins_and_local_mode_is_native() {
        assert!(native_sidecars(NativeSidecars::Auto, None).await);
        assert!(native_sidecars(NativeSidecars::True, None).await);
        assert!(!native_sidecars(NativeSidecars::False, None).await);
        let args = <Args as clap::Parser>::try_parse_from(["weft-controller"]).expect("args");
        assert!(!config(&args, false).native_sidecars);
        assert!(config(&args, true).native_sidecars);
    }

    #[test]
    fn without_native_sidecars_the_patch_puts_the_proxy_first() {
        let cfg = InjectConfig {
            native_sidecars: false,
            ..InjectConfig::default()
        };
        let review = pod_review("shop", "CREATE", web(json!({})));
        let response = allowed(super::review(&review, &cfg));
        let ops: json_patch::Patch =
            serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("patch");
        let mut pod = serde_json::to_value(review.request.expect("request").object).expect("pod");
        json_patch::patch(&mut pod, &ops).expect("applies");
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["istio-proxy", "web"]);
        assert_eq!(
            pod["spec"]["initContainers"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn bad_annotations_are_denied_with_their_field() {
        let review = pod_review(
            "shop",
            "CREATE",
            web(json!({"traffic.sidecar.istio.io/includeInboundPorts": "http"})),
        );
        let answer = super::review(&review, &InjectConfig::default());
        assert_eq!(answer.outcome, InjectionOutcome::Failed);
        let lines = answer.refusal.expect("refused");
        assert_eq!(
            lines.join("\n"),
            "metadata.annotations['traffic.sidecar.istio.io/includeInboundPorts']: \"http\" is not a port (1-65535)"
        );
    }
}
