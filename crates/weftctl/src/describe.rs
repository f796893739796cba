//! `weftctl describe pod` (istioctl x describe pod): the mesh config that applies to one pod,
//! read from the cluster: its Services and ports, its sidecar, the DestinationRule and
//! subsets that select it, the VirtualServices routing to its Services, its mTLS mode, the
//! AuthorizationPolicies selecting it, and whether its proxy is SYNCED. [`describe`] is pure
//! over the analysis snapshot.

use std::fmt::Write as _;
use std::time::Duration;

use crate::analyze::input::{self, Settings, Workload};
use crate::analyze::mesh::{Mesh, exported_to, is_mesh_bound, selects};
use crate::analyze::virtual_service::destinations;
use crate::remote::ControllerArgs;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// The mesh config that applies to a pod.
    Pod(PodArgs),
}

#[derive(clap::Args, Debug)]
pub struct PodArgs {
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub domain: String,
    /// The mesh's root namespace.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// How long each request may take.
    #[arg(long, default_value = "10s", value_parser = crate::remote::parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// Why describe failed.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error("pod {namespace}/{pod} not found at {cluster}")]
    NotFound {
        namespace: String,
        pod: String,
        cluster: String,
    },
}

/// The text about `pod`; `sync` is its proxy's status line, when known.
pub fn describe(mesh: &Mesh<'_>, pod: &Workload, sync: Option<&str>) -> String {
    let mut out = String::new();
    let ns = &pod.namespace;
    let _ = writeln!(out, "Pod: {}", pod.name);
    let _ = writeln!(out, "   Namespace: {ns}");
    match (&pod.injected, &pod.proxy_image) {
        (true, Some(image)) => {
            let _ = writeln!(out, "   Sidecar: injected, image {image}");
        }
        (true, None) => {
            let _ = writeln!(out, "   Sidecar: injected");
        }
        (false, _) => {
            let _ = writeln!(
                out,
                "   WARNING: the pod has no sidecar: none of the config below applies to it"
            );
        }
    }
    if let Some(sync) = sync {
        let _ = writeln!(out, "   Proxy status: {sync}");
    }
    let services: Vec<_> = mesh
        .snapshot
        .services
        .iter()
        .filter(|s| &s.namespace == ns)
        .filter(|s| {
            s.service
                .spec
                .as_ref()
                .and_then(|spec| spec.selector.as_ref())
                .is_some_and(|sel| !sel.is_empty() && selects(sel, &pod.labels))
        })
        .collect();
    if services.is_empty() {
        let _ = writeln!(out, "   No Service selects the pod");
    }
    for service in services {
        let hostname = mesh.resolve(&service.name, ns);
        let _ = writeln!(out, "--------------------");
        let _ = writeln!(out, "Service: {}", service.name);
        for port in service
            .service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
        {
            let target = port.target_port.as_ref().map_or_else(
                || port.port.to_string(),
                |t| match t {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                        n.to_string()
                    }
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                        s.clone()
                    }
                },
            );
            let _ = writeln!(
                out,
                "   Port: {} {} targets pod port {target}",
                port.name.as_deref().unwrap_or("-"),
                port.port
            );
        }
        match mesh.destination_rule(&hostname) {
            Some((object, rule)) => {
                let _ = writeln!(
                    out,
                    "DestinationRule: {}/{} for {:?}",
                    object.namespace,
                    object.object.name(),
                    rule.spec.host
                );
                let (matching, other): (Vec<_>, Vec<_>) = rule
                    .spec
                    .subsets
                    .iter()
                    .partition(|s| selects(&s.labels, &pod.labels));
                let names = |s: &[&weft_api::networking::Subset]| {
                    s.iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                if !matching.is_empty() {
                    let _ = writeln!(out, "   Matching subsets: {}", names(&matching));
                }
                if !other.is_empty() {
                    let _ = writeln!(out, "      (Non-matching subsets {})", names(&other));
                }
                if rule.spec.traffic_policy.is_none() {
                    let _ = writeln!(out, "   No Traffic Policy");
                } else {
                    let _ = writeln!(out, "   Traffic Policy: set");
                }
            }
            None => {
                let _ = writeln!(out, "No DestinationRule for {hostname}");
            }
        }
        for (object, vs) in mesh.virtual_services() {
            if !is_mesh_bound(&vs.spec)
                || !exported_to(&vs.spec.export_to, &object.namespace, ns)
                || !vs
                    .spec
                    .hosts
                    .iter()
                    .any(|h| mesh.resolve(h, &object.namespace) == hostname)
            {
                continue;
            }
            let _ = writeln!(
                out,
                "VirtualService: {}/{}",
                object.namespace,
                object.object.name()
            );
            for (index, http) in vs.spec.http.iter().enumerate() {
                let matches = if http.r#match.is_empty() {
                    "all requests".to_string()
                } else {
                    http.r#match
                        .iter()
                        .map(|m| serde_json::to_string(m).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(" or ")
                };
                let weights: Vec<String> = http
                    .route
                    .iter()
                    .map(|r| {
                        let weight =
                            r.weight
                                .unwrap_or(if http.route.len() == 1 { 100 } else { 0 });
                        let subset = r
                            .destination
                            .subset
                            .as_deref()
                            .map(|s| format!(" subset {s}"))
                            .unwrap_or_default();
                        format!("{weight}% to {}{subset}", r.destination.host)
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "   Route {index}: {matches} -> {}",
                    if weights.is_empty() {
                        "no route (redirect, direct response or delegate)".to_string()
                    } else {
                        weights.join(", ")
                    }
                );
            }
            let others = destinations(&vs.spec).len()
                - vs.spec.http.iter().map(|h| h.route.len()).sum::<usize>();
            if others > 0 {
                let _ = writeln!(out, "   {others} more TCP/TLS or mirror destination(s)");
            }
        }
    }
    let _ = writeln!(out, "--------------------");
    let (mode, policy) = mesh.mtls_mode(ns, &pod.labels);
    let mode = serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match policy {
        Some(p) => {
            let _ = writeln!(
                out,
                "Effective PeerAuthentication: {}/{}\n   Workload mTLS mode: {mode}",
                p.namespace,
                p.object.name()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Effective PeerAuthentication: none\n   Workload mTLS mode: {mode} (default)"
            );
        }
    }
    let root = &mesh.snapshot.settings.root_namespace;
    let policies: Vec<String> = mesh
        .authorization_policies()
        .filter(|(o, p)| {
            let selector = p.spec.selector.as_ref().map(|s| &s.match_labels);
            (o.namespace == *ns || o.namespace == *root)
                && selector.is_none_or(|sel| o.namespace == *ns && selects(sel, &pod.labels))
        })
        .map(|(o, p)| {
            let action = p
                .spec
                .action
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "ALLOW".into());
            format!("{}/{} ({action})", o.namespace, o.object.name())
        })
        .collect();
    if policies.is_empty() {
        let _ = writeln!(out, "Applied AuthorizationPolicies: none");
    } else {
        let _ = writeln!(
            out,
            "Applied AuthorizationPolicies: {}",
            policies.join(", ")
        );
    }
    out
}

/// Runs `weftctl describe pod`.
pub async fn run(command: Command) -> Result<(), DescribeError> {
    let Command::Pod(args) = command;
    let api = crate::remote::KubeApi::connect(&args.controller.kube, "--controller").await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    let settings = Settings {
        domain: args.domain.clone(),
        root_namespace: args.root_namespace.clone(),
    };
    let snapshot = input::from_cluster(&api, &settings, args.timeout).await?;
    let Some(pod) = snapshot
        .workloads
        .iter()
        .find(|w| w.kind == "Pod" && w.namespace == namespace && w.name == args.pod)
    else {
        return Err(DescribeError::NotFound {
            namespace,
            pod: args.pod,
            cluster: api.cluster().to_string(),
        });
    };
    let sync = if pod.injected {
        Some(
            crate::proxy_status::sync_of(&args.controller, &pod.name, &namespace, args.timeout)
                .await,
        )
    } else {
        None
    };
    let mesh = Mesh::new(&snapshot);
    print!("{}", describe(&mesh, pod, sync.as_deref()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::input::{Snapshot, add_text};

    #[test]
    fn describes_services_subsets_routes_mtls_and_policies() {
        let mut snapshot = Snapshot::default();
        let fixture = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/analyze/problems.yaml"),
        )
        .expect("fixture");
        add_text(&mut snapshot, &fixture, None, "default");
        add_text(
            &mut snapshot,
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {name: ratings-viewer, namespace: shop}\n\
             spec: {selector: {matchLabels: {app: ratings}}, action: DENY,\n\
             rules: [{to: [{operation: {methods: [DELETE]}}]}]}\n",
            None,
            "default",
        );
        let mesh = Mesh::new(&snapshot);
        let pod = snapshot
            .workloads
            .iter()
            .find(|w| w.name == "ratings-v1")
            .expect("pod");
        let text = describe(&mesh, pod, Some("SYNCED"));
        for wanted in [
            "Pod: ratings-v1",
            "WARNING: the pod has no sidecar",
            "Proxy status: SYNCED",
            "Service: ratings",
            "   Port: http 9080 targets pod port 9080",
            "No DestinationRule for ratings.shop.svc.cluster.local",
            "VirtualService: shop/ratings",
            "   Route 0: all requests -> 100% to ratings subset v2",
            "Effective PeerAuthentication: shop/ratings-strict\n   Workload mTLS mode: STRICT",
            "Applied AuthorizationPolicies: shop/ratings-viewer (DENY)",
        ] {
            assert!(text.contains(wanted), "{wanted:?} not in\n{text}");
        }
        let reviews = snapshot
            .workloads
            .iter()
            .find(|w| w.name == "reviews-v1")
            .expect("pod");
        let text = describe(&mesh, reviews, None);
        for wanted in [
            "DestinationRule: shop/reviews for \"reviews\"",
            "   Matching subsets: v1",
            "      (Non-matching subsets v4)",
            "VirtualService: shop/reviews\n   Route 0: all requests -> 90% to reviews subset v1, 10% to reviews subset v4",
            "VirtualService: shop/reviews-canary",
            "Workload mTLS mode: PERMISSIVE (default)",
            "Applied AuthorizationPolicies: none",
        ] {
            assert!(text.contains(wanted), "{wanted:?} not in\n{text}");
        }
    }
}
