//! `weftctl kube-inject -f FILE`: the injector's mutation offline, as `istioctl kube-inject`:
//! every Pod and workload pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet,
//! ReplicationController, Job, CronJob) of a YAML stream gets the sidecar; other documents
//! pass through unchanged.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::Value;
use weft_injector::{InjectConfig, Outcome, inject_pod, inject_template};

/// Where a kind keeps its pod template.
fn template_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Injects every document of `input` (YAML, `---`-separated); the injected stream.
pub fn inject_stream(input: &str, namespace: &str, cfg: &InjectConfig) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let mut doc: Value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("document {}: not YAML", index + 1))?;
        if doc.is_null() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(namespace)
            .to_string();
        let at = || format!("document {} ({kind} {name})", index + 1);
        let outcome = if kind == "Pod" {
            let mut pod: Pod = serde_json::from_value(doc.clone())
                .with_context(|| format!("{}: not a Pod", at()))?;
            let outcome = inject_pod(&mut pod, &ns, cfg).with_context(at)?;
            doc = serde_json::to_value(&pod)?;
            Some(outcome)
        } else if let Some(path) = template_path(&kind) {
            let Some(slot) = doc.pointer_mut(path) else {
                bail!("{}: no pod template at {path}", at());
            };
            let mut template: PodTemplateSpec = serde_json::from_value(slot.take())
                .with_context(|| format!("{}: the pod template at {path}", at()))?;
            let outcome = inject_template(&mut template, &ns, cfg).with_context(at)?;
            *slot = serde_json::to_value(&template)?;
            Some(outcome)
        } else {
            None
        };
        match outcome {
            Some(Outcome::Skipped(why)) => eprintln!("{}: not injected: {why}", at()),
            Some(Outcome::Injected { warnings }) => {
                for warning in warnings {
                    eprintln!("{}: warning: {warning}", at());
                }
            }
            None => {}
        }
        out.push(serde_yaml::to_string(&doc)?);
    }
    Ok(out.join("---\n"))
}

/// Reads `file` (`-`: standard input) and prints it injected.
pub fn run(
    file: &Path,
    namespace: &str,
    proxy_image: Option<String>,
    native_sidecars: bool,
) -> anyhow::Result<()> {
    let input = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut cfg = InjectConfig {
        native_sidecars,
        ..InjectConfig::default()
    };
    if let Some(image) = proxy_image {
        cfg.proxy_image = image;
    }
    print!("{}", inject_stream(&input, namespace, &cfg)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bookinfo() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/istio/samples/bookinfo/platform/kube/bookinfo.yaml");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the Istio corpus at {}: {e}", path.display()))
    }

    #[test]
    fn bookinfo_gets_a_sidecar_per_deployment_and_the_rest_passes_through() {
        let injected =
            inject_stream(&bookinfo(), "default", &InjectConfig::default()).expect("inject");
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&injected)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        let kinds = |k: &str| docs.iter().filter(|d| d["kind"] == k).count();
        assert_eq!(
            (
                kinds("Deployment"),
                kinds("Service"),
                kinds("ServiceAccount")
            ),
            (6, 4, 4)
        );
        for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
            let init = &d["spec"]["template"]["spec"]["initContainers"];
            assert_eq!(init[0]["name"], "istio-init", "{}", d["metadata"]["name"]);
            assert_eq!(init[1]["name"], "istio-proxy");
            assert_eq!(init[1]["restartPolicy"], "Always");
        }
        // Injecting the output again changes nothing.
        let again = inject_stream(&injected, "default", &InjectConfig::default()).expect("again");
        assert_eq!(again, injected);
    }

    #[test]
    fn without_native_sidecars_the_proxy_is_the_first_container() {
        let input = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  \
                     template:\n    spec:\n      restartPolicy: Never\n      containers:\n      \
                     - {name: migrate, image: x}\n";
        let cfg = InjectConfig {
            native_sidecars: false,
            ..InjectConfig::default()
        };
        let injected = inject_stream(input, "default", &cfg).expect("inject");
        let doc: Value = serde_yaml::from_str(&injected).expect("yaml");
        let spec = &doc["spec"]["template"]["spec"];
        assert_eq!(spec["initContainers"][0]["name"], "istio-init");
        assert_eq!(spec["initContainers"].as_array().map(Vec::len), Some(1));
        assert_eq!(spec["containers"][0]["name"], "istio-proxy");
        assert_eq!(spec["containers"][1]["name"], "migrate");
        assert_eq!(
            spec["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
            serde_json::json!(["weft-proxy", "wait"])
        );
        // Injected output in either shape is left alone.
        let again = inject_stream(&injected, "default", &InjectConfig::default()).expect("again");
        assert_eq!(again, injected);
    }

    #[test]
    fn the_flag_defaults_to_native_sidecars() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let args = [&["weftctl", "kube-inject", "-f", "-"], extra].concat();
            match crate::Cli::try_parse_from(args).expect("parses").command {
                crate::Commands::KubeInject {
                    native_sidecars, ..
                } => native_sidecars,
                other => panic!("{other:?}"),
            }
        };
        assert!(parse(&[]));
        assert!(!parse(&["--native-sidecars", "false"]));
        assert!(parse(&["--native-sidecars=true"]));
        assert!(
            crate::Cli::try_parse_from([
                "weftctl",
                "kube-inject",
                "-f",
                "-",
                "--native-sidecars",
                "no"
            ])
            .is_err()
        );
    }

    #[test]
    fn a_bad_annotation_names_the_document_and_field() {
        let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    \
                     traffic.sidecar.istio.io/includeInboundPorts: http\nspec:\n  containers:\n  \
                     - {name: app, image: x}\n";
        let err =
            inject_stream(input, "default", &InjectConfig::default()).expect_err("bad annotation");
        assert_eq!(
            format!("{err:#}"),
            "document 1 (Pod p): metadata.annotations['traffic.sidecar.istio.io/includeInboundPorts']: \
             \"http\" is not a port (1-65535)"
        );
    }
}
