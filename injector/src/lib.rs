//! Sidecar injection: what Weft adds to a pod so that its traffic goes through a proxy, as
//! Istio's injector does (same container, volume, label and annotation names, so Istio's
//! tools and habits keep working).
//!
//! ```text
//!  Pod (or a workload's pod template) + namespace + InjectConfig
//!     ─► inject.rs: skip (opted out, already injected, host network, mesh namespace)
//!                   or mutate: istio-init (weft-proxy init, capture flags from the
//!                   traffic.sidecar.istio.io annotations), istio-proxy as a native sidecar
//!                   (startup probe: the app starts once the proxy is ready; without
//!                   native sidecars the first container, postStart `weft-proxy wait`), its token,
//!                   root cert and pod-info volumes, labels, sidecar.istio.io/status
//!     ─► proxy_config.rs: the pod's proxy.istio.io/config (concurrency, proxyMetadata,
//!                   terminationDrainDuration, holdApplicationUntilProxyStarts; the rest warned)
//!     ─► probes.rs: the app's probes through the proxy's status port 15020
//!                   (/app-health/<container>/…, originals in ISTIO_KUBE_APP_PROBERS)
//!     ─► patch(): the JSONPatch an AdmissionReview answers with
//! ```
//!
//! Pure functions: the webhook server and `weftctl kube-inject` are built on them.

pub mod config;
pub mod inject;
pub mod probes;
pub mod proxy_config;

pub use config::InjectConfig;
pub use inject::{InjectError, Outcome, inject_pod, inject_template, patch};
