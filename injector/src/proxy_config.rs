//! A pod's `proxy.istio.io/config` annotation: Istio's `ProxyConfig` (YAML or JSON, field
//! names in camelCase or snake_case as Istio's parser takes them) over the mesh's defaults.
//!
//! What the injector acts on is typed here: `concurrency`, `proxyMetadata` (environment of
//! the proxy; `ISTIO_META_DNS_CAPTURE` also turns DNS capture on or off for the pod),
//! `terminationDrainDuration` and `holdApplicationUntilProxyStarts`. The other fields of
//! Istio's `ProxyConfig` are accepted and come back as warnings naming them (the pod is
//! injected, the API server shows the warning); a field Istio does not have, or a value of the
//! wrong type, refuses the pod with the field's path, as Istio's injector does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::inject::InjectError;

/// The annotation.
pub const ANNOTATION: &str = "proxy.istio.io/config";

/// The proxy's worker threads at most (`weft-proxy --concurrency`).
pub const MAX_CONCURRENCY: u16 = 256;

/// What a pod's annotation sets; `None` and empty leave the mesh's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodProxyConfig {
    /// Worker threads; 0 is one per CPU.
    pub concurrency: Option<u16>,
    /// Environment of the proxy, over the mesh's `proxyMetadata`.
    pub proxy_metadata: BTreeMap<String, String>,
    /// How long in-flight requests get when the pod stops.
    pub termination_drain_duration: Option<Duration>,
    pub hold_application_until_proxy_starts: Option<bool>,
    /// Fields Istio has that Weft does not act on yet, one line each.
    pub warnings: Vec<String>,
}

/// The fields of Istio's `ProxyConfig` (istio/api `mesh/v1alpha1/proxy.proto`) that Weft
/// does not act on, with what a user should know.
const NOT_ACTED_ON: &[(&str, &str)] = &[
    ("configPath", "Envoy's files; Weft has none"),
    ("binaryPath", "Envoy's files; Weft has none"),
    ("customConfigFile", "Envoy's files; Weft has none"),
    ("proxyBootstrapTemplatePath", "Envoy's files; Weft has none"),
    ("serviceCluster", "not used"),
    (
        "tracingServiceName",
        "tracing is not configured per pod yet",
    ),
    ("tracing", "tracing is not configured per pod yet"),
    ("drainDuration", "Envoy's hot restart; Weft has none"),
    (
        "discoveryAddress",
        "the injected proxy uses the controller that injected it",
    ),
    ("discoveryRefreshDelay", "deprecated in Istio"),
    ("zipkinAddress", "deprecated in Istio"),
    ("statsdUdpAddress", "not supported"),
    ("envoyMetricsServiceAddress", "deprecated in Istio"),
    ("envoyAccessLogService", "not supported"),
    ("envoyMetricsService", "not supported"),
    ("availabilityZone", "deprecated in Istio"),
    (
        "controlPlaneAuthPolicy",
        "the proxy always uses mutual TLS to the controller",
    ),
    ("statNameLength", "not used"),
    ("sds", "deprecated in Istio"),
    ("runtimeValues", "Envoy runtime; not supported"),
    ("extraStatTags", "not supported yet"),
    ("gatewayTopology", "not supported yet"),
    ("meshId", "multi-mesh is not supported"),
    (
        "readinessProbe",
        "the proxy's readiness is /healthz/ready on 15021",
    ),
    ("proxyStatsMatcher", "not supported yet"),
    ("caCertificatesPem", "not supported yet"),
    (
        "image",
        "the image type is not used; sidecar.istio.io/proxyImage is",
    ),
    ("privateKeyProvider", "not supported"),
    ("proxyHeaders", "not supported yet"),
    ("fileFlushInterval", "not supported yet"),
    ("fileFlushMinSizeKb", "not supported yet"),
    ("statsCompression", "not supported yet"),
    ("connectionSettings", "not supported yet"),
];

/// Reads the pod's annotation; no annotation is no change.
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<PodProxyConfig, InjectError> {
    let Some(text) = annotations.get(ANNOTATION) else {
        return Ok(PodProxyConfig::default());
    };
    let field = format!("metadata.annotations['{ANNOTATION}']");
    let bad = |path: &str, reason: String| InjectError {
        field: if path.is_empty() {
            field.clone()
        } else {
            format!("{field}.{path}")
        },
        reason,
    };
    let value: Value = serde_yaml::from_str(text)
        .map_err(|e| bad("", format!("not a ProxyConfig (YAML or JSON): {e}")))?;
    let object = match value {
        Value::Object(object) => object,
        Value::Null => return Ok(PodProxyConfig::default()),
        other => {
            return Err(bad(
                "",
                format!("a ProxyConfig is a map of fields, not {}", kind(&other)),
            ));
        }
    };
    let mut config = PodProxyConfig::default();
    for (key, value) in object {
        let name = camel_case(&key);
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "concurrency" => {
                let n = value.as_u64().filter(|n| *n <= u64::from(MAX_CONCURRENCY));
                let Some(n) = n else {
                    return Err(bad(
                        &key,
                        format!(
                            "{value} is not a number of worker threads from 0 (one per CPU) to {MAX_CONCURRENCY}"
                        ),
                    ));
                };
                config.concurrency = u16::try_from(n).ok();
            }
            "proxyMetadata" => {
                let Value::Object(entries) = value else {
                    return Err(bad(
                        &key,
                        format!("a map of names to strings, not {}", kind(&value)),
                    ));
                };
                for (name, value) in entries {
                    let path = format!("{key}.{name}");
                    if !is_env_name(&name) {
                        return Err(bad(
                            &path,
                            "is not an environment variable name (letters, digits and _, not starting with a digit)".into(),
                        ));
                    }
                    let Value::String(value) = value else {
                        return Err(bad(
                            &path,
                            format!("{value} must be a string (quote it: \"{value}\")"),
                        ));
                    };
                    config.proxy_metadata.insert(name, value);
                }
            }
            "terminationDrainDuration" => {
                let duration = value.as_str().and_then(proto_duration).ok_or_else(|| {
                    bad(
                        &key,
                        format!("{value} is not a duration in seconds such as \"5s\" or \"2.5s\""),
                    )
                })?;
                config.termination_drain_duration = Some(duration);
            }
            "holdApplicationUntilProxyStarts" => {
                let Value::Bool(hold) = value else {
                    return Err(bad(&key, format!("{value} is not true or false")));
                };
                config.hold_application_until_proxy_starts = Some(hold);
            }
            "interceptionMode" => match value.as_str() {
                Some("REDIRECT") => {}
                Some(mode @ ("TPROXY" | "NONE")) => config.warnings.push(format!(
                    "{field}.{key}: {mode} is not supported yet; the pod's traffic is captured with REDIRECT"
                )),
                _ => {
                    return Err(bad(
                        &key,
                        format!("{value} is not REDIRECT, TPROXY or NONE"),
                    ));
                }
            },
            "statusPort" | "proxyAdminPort" => {
                let fixed = if name == "statusPort" { 15020 } else { 15000 };
                if value.as_u64() != Some(fixed) {
                    config.warnings.push(format!(
                        "{field}.{key}: the proxy's port is {fixed}; {value} is not used"
                    ));
                }
            }
            other => match NOT_ACTED_ON.iter().find(|(known, _)| *known == other) {
                Some((_, why)) => config
                    .warnings
                    .push(format!("{field}.{key}: not acted on by Weft ({why})")),
                None => {
                    return Err(bad(&key, "unknown field: Istio's ProxyConfig has no such field".into()));
                }
            },
        }
    }
    Ok(config)
}

/// `termination_drain_duration` → `terminationDrainDuration` (protobuf's JSON names).
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A `google.protobuf.Duration` in its JSON form: seconds with up to nine decimals and `s`.
fn proto_duration(text: &str) -> Option<Duration> {
    let seconds = text.strip_suffix('s')?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    Some(Duration::new(whole.parse().ok()?, nanos))
}

/// Whether `name` is an environment variable name a proxy's metadata may use: letters, digits
/// and `_`, not starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(text: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ANNOTATION.to_string(), text.to_string())])
    }

    #[test]
    fn the_fields_weft_acts_on_are_read_in_either_spelling() {
        let config = parse(&annotated(
            "concurrency: 0\nproxy_metadata: {ISTIO_META_DNS_CAPTURE: \"true\", FOO: bar}\n\
             terminationDrainDuration: 2.5s\nholdApplicationUntilProxyStarts: false\n\
             interceptionMode: REDIRECT\nstatusPort: 15020\n",
        ))
        .expect("parses");
        assert_eq!(
            config,
            PodProxyConfig {
                concurrency: Some(0),
                proxy_metadata: BTreeMap::from([
                    ("FOO".into(), "bar".into()),
                    ("ISTIO_META_DNS_CAPTURE".into(), "true".into()),
                ]),
                termination_drain_duration: Some(Duration::from_millis(2500)),
                hold_application_until_proxy_starts: Some(false),
                warnings: vec![],
            }
        );
        let json = parse(&annotated(
            r#"{"concurrency": 4, "termination_drain_duration": "30s"}"#,
        ))
        .expect("JSON");
        assert_eq!(json.concurrency, Some(4));
        assert_eq!(
            json.termination_drain_duration,
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse(&BTreeMap::new()), Ok(PodProxyConfig::default()));
        assert_eq!(parse(&annotated("")), Ok(PodProxyConfig::default()));
    }

    #[test]
    fn fields_not_acted_on_are_warnings_not_refusals() {
        let config = parse(&annotated(
            "tracing: {sampling: 10}\ninterceptionMode: TPROXY\nproxyStatsMatcher: {inclusionPrefixes: [a]}\nstatusPort: 16000\n",
        ))
        .expect("accepted");
        let warnings = config.warnings.join("\n");
        for expected in [
            "metadata.annotations['proxy.istio.io/config'].tracing: not acted on by Weft",
            ".interceptionMode: TPROXY is not supported yet; the pod's traffic is captured with REDIRECT",
            ".proxyStatsMatcher: not acted on by Weft",
            ".statusPort: the proxy's port is 15020; 16000 is not used",
        ] {
            assert!(
                warnings.contains(expected),
                "{expected:?} missing:\n{warnings}"
            );
        }
        assert_eq!(config.warnings.len(), 4);
    }

    #[test]
    fn bad_values_are_refused_with_their_path() {
        for (text, path, reason) in [
            (
                "concurrency: -1",
                ".concurrency",
                "from 0 (one per CPU) to 256",
            ),
            (
                "concurrency: 300",
                ".concurrency",
                "from 0 (one per CPU) to 256",
            ),
            (
                "concurrency: two",
                ".concurrency",
                "\"two\" is not a number",
            ),
            (
                "proxyMetadata: {DNS: true}",
                ".proxyMetadata.DNS",
                "must be a string (quote it",
            ),
            ("proxyMetadata: [a]", ".proxyMetadata", "not a list"),
            (
                "proxyMetadata: {'1X': a}",
                ".proxyMetadata.1X",
                "not an environment variable name",
            ),
            (
                "terminationDrainDuration: 5m",
                ".terminationDrainDuration",
                "such as \"5s\"",
            ),
            (
                "terminationDrainDuration: 5",
                ".terminationDrainDuration",
                "such as \"5s\"",
            ),
            (
                "holdApplicationUntilProxyStarts: maybe",
                ".holdApplicationUntilProxyStarts",
                "\"maybe\" is not true or false",
            ),
            (
                "interceptionMode: CAPTURE",
                ".interceptionMode",
                "not REDIRECT, TPROXY or NONE",
            ),
            ("concurency: 2", ".concurency", "unknown field"),
            ("[1, 2]", "", "not a list"),
            ("{concurrency", "", "not a ProxyConfig (YAML or JSON)"),
        ] {
            let err = parse(&annotated(text)).expect_err(text);
            assert_eq!(
                err.field,
                format!("metadata.annotations['proxy.istio.io/config']{path}"),
                "{text}"
            );
            assert!(err.reason.contains(reason), "{text}: {}", err.reason);
        }
    }

    #[test]
    fn durations_are_protobufs_json_seconds() {
        assert_eq!(proto_duration("0s"), Some(Duration::ZERO));
        assert_eq!(proto_duration("1.000000001s"), Some(Duration::new(1, 1)));
        assert_eq!(proto_duration("0.5s"), Some(Duration::from_millis(500)));
        for bad in ["s", ".5s", "1.s5", "1ms", "-1s", "1.0000000001s", "5"] {
            assert_eq!(proto_duration(bad), None, "{bad}");
        }
    }
}
