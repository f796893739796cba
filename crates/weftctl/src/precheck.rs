//! `weftctl x precheck` (istioctl x precheck): whether Weft can be installed or upgraded on
//! the cluster of the kubeconfig. [`gather`] asks the API server ([`Facts`]); [`check`] is
//! pure and turns the facts into findings in `analyze`'s format (`docs/ANALYZE.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use weft_api::Kind;

use crate::analyze::input::PROXY_CONTAINER;
use crate::analyze::{
    EXISTING_CONTROL_PLANE, Finding, INSUFFICIENT_PERMISSIONS, Level, PODS_PROXY_IMAGE_MISMATCH,
    ResourceRef, UNSUPPORTED_CRD_VERSION, UNSUPPORTED_KUBERNETES_VERSION, output,
};
use crate::remote::{KubeApi, KubeArgs};
use weft_api::crd::plural;

/// The oldest Kubernetes the chart installs on (`charts/weft/Chart.yaml` `kubeVersion`).
pub const MIN_KUBERNETES: (u32, u32) = (1, 30);

/// The control planes' Deployments, by name.
const CONTROL_PLANES: [&str; 2] = ["istiod", "weft-controller"];

/// What the install creates: (API group, resource, namespaced).
const INSTALL_RESOURCES: &[(&str, &str, bool)] = &[
    ("apiextensions.k8s.io", "customresourcedefinitions", false),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        false,
    ),
    ("rbac.authorization.k8s.io", "clusterroles", false),
    ("rbac.authorization.k8s.io", "clusterrolebindings", false),
    ("", "namespaces", false),
    ("apps", "deployments", true),
    ("", "services", true),
    ("", "serviceaccounts", true),
    ("", "configmaps", true),
    ("", "secrets", true),
    ("rbac.authorization.k8s.io", "roles", true),
    ("rbac.authorization.k8s.io", "rolebindings", true),
];

/// `weftctl x precheck`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The namespace Weft is to be installed in.
    #[arg(short = 'i', long = "istio-namespace", default_value = "weft-system")]
    pub namespace: String,
    /// How to print the findings.
    #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Log)]
    pub output: output::Format,
    /// How long each request to the API server may take.
    #[arg(long, default_value = "10s", value_parser = crate::remote::parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// What the checks look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The API server's `major.minor` (`gitVersion` for messages).
    pub version: Option<(u32, u32, String)>,
    /// Resources the user may not create: (`resource.group`, namespace, the reason).
    pub denied: Vec<(String, Option<String>, String)>,
    /// Installed Istio CRDs: name → served versions.
    pub crds: BTreeMap<String, Vec<String>>,
    /// Control plane Deployments: (namespace, name, images).
    pub control_planes: Vec<(String, String, Vec<String>)>,
    /// Injected pods: (namespace, name, sidecar image).
    pub sidecars: Vec<(String, String, String)>,
}

/// The findings about `facts`; `own_version` is the version of the proxy image this weftctl
/// installs.
pub fn check(facts: &Facts, own_version: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some((major, minor, text)) = &facts.version
        && (*major, *minor) < MIN_KUBERNETES
    {
        findings.push(Finding::new(
            UNSUPPORTED_KUBERNETES_VERSION,
            ResourceRef::cluster("Cluster", "kubernetes"),
            format!(
                "The Kubernetes Version {text:?} is lower than the minimum version: {}.{}",
                MIN_KUBERNETES.0, MIN_KUBERNETES.1
            ),
        ));
    }
    for (resource, namespace, reason) in &facts.denied {
        let on = match namespace {
            Some(ns) => ResourceRef::new("Namespace", ns, ns),
            None => ResourceRef::cluster("Cluster", "kubernetes"),
        };
        findings.push(Finding::new(
            INSUFFICIENT_PERMISSIONS,
            on,
            format!("Missing required permission to create resource {resource} ({reason})"),
        ));
    }
    for kind in Kind::ALL {
        let name = format!("{}.{}", plural(kind), kind.group());
        let wanted = kind.versions()[0];
        if let Some(served) = facts.crds.get(&name)
            && !served.iter().any(|v| v == wanted)
        {
            findings.push(Finding::new(
                UNSUPPORTED_CRD_VERSION,
                ResourceRef::cluster("CustomResourceDefinition", &name),
                format!(
                    "The installed CRD serves {} but Weft reads {wanted}: upgrade the CRDs \
                     (charts/weft/crds) first",
                    served.join(", ")
                ),
            ));
        }
    }
    for (namespace, name, images) in &facts.control_planes {
        findings.push(Finding::new(
            EXISTING_CONTROL_PLANE,
            ResourceRef::new("Deployment", namespace, name),
            format!(
                "A control plane is already installed (images: {}); an upgrade replaces it, \
                 an install next to it needs its own revision and namespace",
                images.join(", ")
            ),
        ));
    }
    let mut other: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (namespace, pod, image) in &facts.sidecars {
        let tag = image.rsplit_once(':').map_or("", |(_, tag)| tag);
        if tag != own_version {
            other.entry(namespace).or_default().push(pod);
        }
    }
    for (namespace, pods) in other {
        findings.push(Finding::new(
            PODS_PROXY_IMAGE_MISMATCH,
            ResourceRef::cluster("Namespace", namespace),
            format!(
                "The Istio proxy images of the pods running in the namespace do not match the \
                 image defined in the injection configuration (pod names: {}). This often \
                 happens after upgrading the Istio control-plane and can be fixed by \
                 redeploying the pods.",
                pods.join(", ")
            ),
        ));
    }
    crate::analyze::sort(&mut findings);
    findings
}

/// Why precheck could not ask the cluster.
#[derive(Debug, thiserror::Error)]
pub enum PrecheckError {
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("cannot {what} at {cluster}: {reason}")]
    Kube {
        what: &'static str,
        cluster: String,
        reason: String,
    },
    #[error("cannot print the findings: {0}")]
    Print(String),
}

/// Asks the API server for the [`Facts`].
pub async fn gather(
    api: &KubeApi,
    namespace: &str,
    timeout: Duration,
) -> Result<Facts, PrecheckError> {
    let client = api.client().clone();
    let failed = |what: &'static str| {
        move |reason: String| PrecheckError::Kube {
            what,
            cluster: api.cluster().to_string(),
            reason,
        }
    };
    let within = |what: &'static str| {
        move |_| PrecheckError::Kube {
            what,
            cluster: api.cluster().to_string(),
            reason: format!("no answer within {}s (--timeout)", timeout.as_secs_f64()),
        }
    };
    let mut facts = Facts::default();
    let info = tokio::time::timeout(timeout, client.apiserver_version())
        .await
        .map_err(within("read the version"))?
        .map_err(|e| failed("read the version")(e.to_string()))?;
    let number = |text: &str| text.trim_end_matches('+').parse::<u32>().ok();
    if let (Some(major), Some(minor)) = (number(&info.major), number(&info.minor)) {
        facts.version = Some((major, minor, info.git_version.clone()));
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for (group, resource, namespaced) in INSTALL_RESOURCES {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    verb: Some("create".into()),
                    namespace: namespaced.then(|| namespace.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = tokio::time::timeout(timeout, reviews.create(&PostParams::default(), &review))
            .await
            .map_err(within("review access"))?
            .map_err(|e| failed("review access")(e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        if !status.allowed {
            let name = if group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{group}")
            };
            let reason = status
                .reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "not allowed".into());
            facts
                .denied
                .push((name, namespaced.then(|| namespace.to_string()), reason));
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let list = tokio::time::timeout(timeout, crds.list(&ListParams::default()))
        .await
        .map_err(within("list CRDs"))?
        .map_err(|e| failed("list CRDs")(e.to_string()))?;
    for crd in list.items {
        let name = crd.metadata.name.unwrap_or_default();
        if name.ends_with(".istio.io") || name.ends_with(".weft.io") {
            let served = crd
                .spec
                .versions
                .iter()
                .filter(|v| v.served)
                .map(|v| v.name.clone())
                .collect();
            facts.crds.insert(name, served);
        }
    }
    let deployments: Api<Deployment> = Api::all(client.clone());
    let list = tokio::time::timeout(timeout, deployments.list(&ListParams::default()))
        .await
        .map_err(within("list Deployments"))?
        .map_err(|e| failed("list Deployments")(e.to_string()))?;
    for deployment in list.items {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        if CONTROL_PLANES.contains(&name.as_str()) {
            let images = deployment
                .spec
                .and_then(|s| s.template.spec)
                .map(|s| s.containers.into_iter().filter_map(|c| c.image).collect())
                .unwrap_or_default();
            facts.control_planes.push((
                deployment.metadata.namespace.unwrap_or_default(),
                name,
                images,
            ));
        }
    }
    let pods: Api<Pod> = Api::all(client);
    let list = tokio::time::timeout(timeout, pods.list(&ListParams::default()))
        .await
        .map_err(within("list Pods"))?
        .map_err(|e| failed("list Pods")(e.to_string()))?;
    for pod in list.items {
        let image = pod.spec.as_ref().and_then(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == PROXY_CONTAINER)
                .and_then(|c| c.image.clone())
        });
        if let Some(image) = image {
            facts.sidecars.push((
                pod.metadata.namespace.unwrap_or_default(),
                pod.metadata.name.unwrap_or_default(),
                image,
            ));
        }
    }
    Ok(facts)
}

/// Runs `weftctl x precheck`: whether an Error was found.
pub async fn run(args: Args) -> Result<bool, PrecheckError> {
    let api = KubeApi::connect(&args.kube, "a cluster").await?;
    let facts = gather(&api, &args.namespace, args.timeout).await?;
    let findings = check(&facts, env!("CARGO_PKG_VERSION"));
    let shown: Vec<&Finding> = findings.iter().collect();
    print!(
        "{}",
        output::render(&shown, args.output).map_err(PrecheckError::Print)?
    );
    if args.output == output::Format::Log && findings.is_empty() {
        eprintln!(
            "\u{2714} No issues found when checking the cluster. Weft is safe to install or upgrade!"
        );
    }
    Ok(findings.iter().any(|f| f.level() >= Level::Error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_cluster_has_no_findings() {
        let facts = Facts {
            version: Some((1, 34, "v1.34.10".into())),
            crds: [(
                "virtualservices.networking.istio.io".to_string(),
                vec!["v1".to_string(), "v1beta1".to_string()],
            )]
            .into(),
            sidecars: vec![(
                "shop".into(),
                "reviews-1".into(),
                "ghcr.io/weft-mesh/weft-proxy:0.1.0".into(),
            )],
            ..Facts::default()
        };
        assert_eq!(check(&facts, "0.1.0"), []);
    }

    #[test]
    fn each_problem_is_a_finding_with_its_code() {
        let facts = Facts {
            version: Some((1, 28, "v1.28.3".into())),
            denied: vec![(
                "customresourcedefinitions.apiextensions.k8s.io".into(),
                None,
                "forbidden".into(),
            )],
            crds: [(
                "virtualservices.networking.istio.io".to_string(),
                vec!["v1alpha3".to_string()],
            )]
            .into(),
            control_planes: vec![(
                "istio-system".into(),
                "istiod".into(),
                vec!["istio/pilot:1.20.0".into()],
            )],
            sidecars: vec![
                ("shop".into(), "a".into(), "istio/proxyv2:1.20.0".into()),
                (
                    "shop".into(),
                    "b".into(),
                    "ghcr.io/weft-mesh/weft-proxy:0.1.0".into(),
                ),
            ],
        };
        let findings = check(&facts, "0.1.0");
        let lines: Vec<String> = findings.iter().map(output::line).collect();
        assert_eq!(
            lines,
            [
                "Error [IST0141] (Cluster kubernetes) Missing required permission to create \
                 resource customresourcedefinitions.apiextensions.k8s.io (forbidden)",
                "Error [IST0142] (Cluster kubernetes) The Kubernetes Version \"v1.28.3\" is lower \
                 than the minimum version: 1.30",
                "Error [WEFT0005] (CustomResourceDefinition virtualservices.networking.istio.io) \
                 The installed CRD serves v1alpha3 but Weft reads v1: upgrade the CRDs \
                 (charts/weft/crds) first",
                "Warning [IST0158] (Namespace shop) The Istio proxy images of the pods running in \
                 the namespace do not match the image defined in the injection configuration \
                 (pod names: a). This often happens after upgrading the Istio control-plane and \
                 can be fixed by redeploying the pods.",
                "Info [WEFT0006] (Deployment istio-system/istiod) A control plane is already \
                 installed (images: istio/pilot:1.20.0); an upgrade replaces it, an install next \
                 to it needs its own revision and namespace",
            ]
        );
    }
}
