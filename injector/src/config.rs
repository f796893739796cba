//! What the injector puts into pods, as the chart's values set it.

use std::collections::BTreeMap;

/// The injection's settings (chart values; defaults are Istio's where Istio has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectConfig {
    /// The proxy image (its entrypoint is `weft-proxy`).
    pub proxy_image: String,
    /// The controller's TLS address, for ADS and the CA.
    pub controller_address: String,
    /// The name the controller's certificate carries.
    pub controller_server_name: String,
    pub trust_domain: String,
    /// The proxy's user and group (never captured).
    pub proxy_uid: i64,
    /// The mesh's own namespace: never injected.
    pub mesh_namespace: String,
    /// DNS capture by default: the default of the proxy metadata `ISTIO_META_DNS_CAPTURE`,
    /// which `proxy_metadata` and a pod's `proxy.istio.io/config` override.
    pub dns_capture: bool,
    /// The mesh's `defaultConfig.proxyMetadata`: environment of every proxy.
    pub proxy_metadata: BTreeMap<String, String>,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
    /// The proxy's worker threads (0: one per CPU) unless the pod's `proxy.istio.io/config`
    /// says otherwise.
    pub concurrency: u16,
    /// Rewrite the app containers' probes through the proxy's status port 15020 (Istio's
    /// `sidecar.istio.io/rewriteAppHTTPProbers`, which a pod's annotation overrides).
    pub rewrite_app_probes: bool,
    /// The proxy as a native sidecar (an init container with `restartPolicy: Always`,
    /// Kubernetes 1.29+); else, for older API servers, as the first app container whose
    /// `postStart` hook (`weft-proxy wait`) holds the app until the proxy is ready (Istio's
    /// `holdApplicationUntilProxyStarts`).
    pub native_sidecars: bool,
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            proxy_image: format!("ghcr.io/weft-mesh/weft-proxy:{}", env!("CARGO_PKG_VERSION")),
            controller_address: "https://weft-controller.weft-system.svc:15012".into(),
            controller_server_name: "weft-controller.weft-system.svc".into(),
            trust_domain: "cluster.local".into(),
            proxy_uid: 1337,
            mesh_namespace: "weft-system".into(),
            dns_capture: false,
            proxy_metadata: BTreeMap::new(),
            cpu_request: "100m".into(),
            memory_request: "128Mi".into(),
            cpu_limit: "2000m".into(),
            memory_limit: "1024Mi".into(),
            concurrency: 2,
            rewrite_app_probes: true,
            native_sidecars: true,
        }
    }
}

/// Whether `text` is a Kubernetes resource quantity as the injector accepts one: a
/// non-negative number with an optional suffix (`100m`, `128Mi`, `1.5`, `2e3`).
pub fn is_quantity(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<f64>()
            .is_ok_and(|n| n >= 0.0)
}
