//! The debug and monitoring HTTP server: `/ready` (200 once ready, else 503 saying what it
//! waits for: see [`crate::readiness`]), `/metrics` (Prometheus text, istiod's metric names),
//! `/version` (the controller's version), `/debug/syncz` (per proxy and xDS type: the versions
//! sent and ACKed, their ages, the outstanding NACK; `weft_xds::ProxyStatus`, read by `weftctl
//! proxy-status`) and `/debug/configz` (loaded
//! objects, errors per file or Kubernetes object, warnings, Kubernetes object counts,
//! readiness, the local source's counters). `/debug/configz` summarizes: string values
//! longer than [`MAX_STRING`] bytes are shown as `<N bytes>`, and at most [`MAX_OBJECTS`]
//! objects are listed (all are counted per kind).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::debug;

use crate::readiness::Readiness;
use crate::source::Snapshot;
use crate::source::local::LocalStats;
use crate::xds::XdsGenerator;

/// What the debug endpoints show.
pub struct DebugState {
    /// `/debug/syncz`: the ADS server's per-proxy status, as JSON.
    pub syncz: Box<dyn Fn() -> Value + Send + Sync>,
    /// The current source snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The current generator (and its model).
    pub generator: watch::Receiver<Arc<XdsGenerator>>,
    /// What the controller still waits for before it is ready.
    pub readiness: watch::Receiver<Readiness>,
    /// The local source's counters (local mode only).
    pub local_source: Option<Arc<LocalStats>>,
    /// `/debug/ca`: the CA's certificate, trust bundle and counters, as JSON.
    pub ca: Box<dyn Fn() -> Value + Send + Sync>,
    /// `/metrics`: the controller's metrics.
    pub metrics: Arc<prometheus_client::registry::Registry>,
}

impl std::fmt::Debug for DebugState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugState").finish_non_exhaustive()
    }
}

/// Serves the debug endpoints on `listener` until the task is dropped.
pub async fn serve(
    mut listener: weft_net::BoundedListener,
    state: Arc<DebugState>,
    header_read_timeout: Option<std::time::Duration>,
) {
    loop {
        let accepted = listener.accept().await;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = handle(&state, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(accepted.io), service)
                .await
            {
                debug!(peer = %accepted.peer, error = %err, "debug connection ended with an error");
            }
        });
    }
}

/// Answers one debug request.
pub fn handle<B>(state: &DebugState, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match request.uri().path() {
        "/ready" => {
            let readiness = state.readiness.borrow();
            let status = if readiness.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, &readiness.describe())
        }
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &state.metrics) {
                Ok(()) => Response::builder()
                    .header(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_default(),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("encoding the metrics failed: {e}\n"),
                ),
            }
        }
        "/version" => json_response(&version()),
        "/debug/syncz" => json_response(&(state.syncz)()),
        "/debug/ca" => json_response(&(state.ca)()),
        "/debug/configz" => {
            let mut value = configz(&state.snapshot.borrow(), &state.generator.borrow());
            let readiness = state.readiness.borrow();
            value["ready"] = json!({
                "ready": readiness.is_ready(),
                "waitingFor": readiness.waiting_for(),
            });
            if let Some(stats) = &state.local_source {
                value["localSource"] = json!(stats.snapshot());
            }
            json_response(&value)
        }
        "/" | "/debug" => text(
            StatusCode::OK,
            "weft-controller debug endpoints: /ready /metrics /version /debug/syncz /debug/configz /debug/ca\n",
        ),
        path => text(
            StatusCode::NOT_FOUND,
            &format!("no debug endpoint {path}\n"),
        ),
    }
}

/// The `/version` document: which program answers, and its version.
pub fn version() -> Value {
    json!({"component": "weft-controller", "version": env!("CARGO_PKG_VERSION")})
}

/// String values longer than this (bytes) are shown as `<N bytes>` at `/debug/configz`.
pub const MAX_STRING: usize = 1024;

/// At most this many objects are listed at `/debug/configz` (in key order); all are counted.
pub const MAX_OBJECTS: usize = 500;

/// The `/debug/configz` document.
pub fn configz(snapshot: &Snapshot, generator: &XdsGenerator) -> Value {
    let config = &snapshot.config;
    let objects: serde_json::Map<String, Value> = config
        .objects
        .iter()
        .take(MAX_OBJECTS)
        .map(|(key, sourced)| {
            let mut object = serde_json::to_value(&sourced.object).unwrap_or(Value::Null);
            summarize(&mut object);
            let entry = json!({
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
                "file": sourced.file.display().to_string(),
                "document": sourced.index,
                "stale": sourced.stale,
                "object": object,
            });
            (key.to_string(), entry)
        })
        .collect();
    let mut object_counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for key in config.objects.keys() {
        *object_counts.entry(key.kind.as_str()).or_default() += 1;
    }
    let model = &generator.model;
    let services: Vec<Value> = model
        .services
        .values()
        .map(|service| {
            json!({
                "hostname": service.hostname,
                "namespace": service.namespace,
                "ports": service.ports.iter().map(|port| port.number).collect::<Vec<_>>(),
                "endpoints": service.endpoints.len(),
                "source": service.source.to_string(),
                "virtualService": model.virtual_service(&service.hostname).map(|vs| vs.key.to_string()),
                "destinationRule": model.destination_rule(&service.hostname).map(|dr| dr.key.to_string()),
            })
        })
        .collect();
    let kubernetes = snapshot.registry.as_deref().map(|registry| {
        let mut istio: std::collections::BTreeMap<&str, usize> = Default::default();
        for key in config.objects.keys() {
            *istio.entry(key.kind.as_str()).or_default() += 1;
        }
        json!({
            "services": registry.services.len(),
            "endpointSlices": registry.endpoint_slices.len(),
            "pods": registry.pods.len(),
            "namespaces": registry.namespaces.len(),
            "istioObjects": istio,
            "invalidIstioObjects": config.errors.len(),
            "skippedServices": model.skipped_services.iter().map(|skipped| json!({
                "service": skipped.service.to_string(),
                "reason": skipped.reason,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "mode": if snapshot.registry.is_some() { "kubernetes" } else { "local" },
        "kubernetes": kubernetes,
        "objects": objects,
        "objectCounts": object_counts,
        "objectsOmitted": config.objects.len().saturating_sub(MAX_OBJECTS),
        "errors": config.errors,
        "warnings": model.warnings.iter().map(|warning| json!({
            "object": warning.object.to_string(),
            "path": warning.path,
            "message": warning.message,
        })).collect::<Vec<_>>(),
        "services": services,
    })
}

/// Replaces every string (value or key) longer than [`MAX_STRING`] bytes with `<N bytes>`.
fn summarize(value: &mut Value) {
    match value {
        Value::String(text) if text.len() > MAX_STRING => {
            *value = Value::String(format!("<{} bytes>", text.len()));
        }
        Value::Array(items) => items.iter_mut().for_each(summarize),
        Value::Object(map) => {
            if map.keys().any(|key| key.len() > MAX_STRING) {
                let entries = std::mem::take(map);
                for (key, value) in entries {
                    let key = if key.len() > MAX_STRING {
                        format!("<{} bytes>", key.len())
                    } else {
                        key
                    };
                    map.insert(key, value);
                }
            }
            map.values_mut().for_each(summarize);
        }
        _ => {}
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MeshSettings, Model};
    use http_body_util::BodyExt;

    fn state_with(readiness: Readiness) -> DebugState {
        let config = crate::testing::bookinfo_config();
        let model = Model::build(&config, &MeshSettings::default());
        DebugState {
            syncz: Box::new(|| json!([{"id": "sidecar~1~a.b~b.svc.cluster.local"}])),
            snapshot: watch::channel(Arc::new(Snapshot::local(Arc::new(config)))).1,
            generator: watch::channel(Arc::new(XdsGenerator::new(Arc::new(model)))).1,
            readiness: watch::channel(readiness).1,
            local_source: None,
            ca: Box::new(|| json!({"ca": "test"})),
            metrics: Arc::default(),
        }
    }

    fn state() -> DebugState {
        let mut readiness = Readiness::starting(Vec::new());
        readiness.served(&[]);
        state_with(readiness)
    }

    async fn get(state: &DebugState, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(()).expect("request");
        let response = handle(state, &request);
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn endpoints() {
        let state = state();
        assert_eq!(get(&state, "/ready").await.0, StatusCode::OK);
        let (status, body) = get(&state, "/debug/syncz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("sidecar~1"));
        let (status, body) = get(&state, "/version").await;
        assert_eq!(status, StatusCode::OK);
        let value: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["component"], json!("weft-controller"));
        assert_eq!(value["version"], json!(env!("CARGO_PKG_VERSION")));
        let (status, body) = get(&state, "/debug/configz").await;
        assert_eq!(status, StatusCode::OK);
        let value: Value = serde_json::from_str(&body).expect("json");
        assert!(value["objects"]["VirtualService default/reviews"]["file"].is_string());
        assert!(value["services"].as_array().is_some_and(|s| !s.is_empty()));
        // The fixture's `mirror` is translated now: listed nowhere among the warnings.
        assert!(value["warnings"].as_array().is_some_and(|w| {
            !w.iter()
                .any(|w| w["path"].as_str().is_some_and(|p| p.ends_with("mirror")))
        }));
        assert_eq!(value["ready"]["ready"], json!(true));
        assert_eq!(get(&state, "/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn configz_summarizes_large_values_and_caps_the_object_list() {
        let huge = "x".repeat(10_000);
        let mut yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: big\n  annotations: {{blob: {huge}}}\nspec: {{address: 10.0.0.1}}\n"
        );
        for i in 0..MAX_OBJECTS + 5 {
            yaml.push_str(&format!(
                "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: e{i}}}\nspec: {{address: 10.0.0.2}}\n"
            ));
        }
        let config = crate::testing::config_from_yaml(&yaml);
        let model = Model::build(&config, &MeshSettings::default());
        let value = configz(
            &Snapshot::local(Arc::new(config)),
            &XdsGenerator::new(Arc::new(model)),
        );
        let big = &value["objects"]["WorkloadEntry default/big"];
        assert_eq!(
            big["object"]["metadata"]["annotations"]["blob"],
            json!("<10000 bytes>")
        );
        assert_eq!(big["object"]["spec"]["address"], json!("10.0.0.1"));
        assert_eq!(big["stale"], json!(false));
        assert_eq!(
            value["objects"].as_object().map(serde_json::Map::len),
            Some(MAX_OBJECTS)
        );
        assert_eq!(value["objectsOmitted"], json!(6));
        assert_eq!(
            value["objectCounts"]["WorkloadEntry"],
            json!(MAX_OBJECTS + 6)
        );
        assert!(
            value.to_string().len() < 500 * MAX_OBJECTS,
            "the page is bounded"
        );
    }

    #[tokio::test]
    async fn configz_shows_the_local_source_counters() {
        let (_, body) = get(&state(), "/debug/configz").await;
        let value: Value = serde_json::from_str(&body).expect("json");
        assert!(value.get("localSource").is_none(), "only in local mode");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), "# nothing yet\n").expect("write");
        let source = crate::source::local::LocalSource::start(
            dir.path().to_path_buf(),
            std::time::Duration::ZERO,
        )
        .expect("starts");
        let state = DebugState {
            local_source: Some(source.stats.clone()),
            ..state()
        };
        let (_, body) = get(&state, "/debug/configz").await;
        let value: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["localSource"]["filesParsed"], json!(1));
        assert_eq!(value["localSource"]["files"], json!(1));
        assert_eq!(value["localSource"]["bytes"], json!(14));
        source.task.abort();
    }

    #[tokio::test]
    async fn metrics_are_served_in_prometheus_text() {
        let mut registry = prometheus_client::registry::Registry::default();
        weft_xds::XdsMetrics::default().register(&mut registry);
        let state = DebugState {
            metrics: Arc::new(registry),
            ..state()
        };
        let (status, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.lines().any(|l| l == "pilot_xds 0"), "{body}");
        assert!(
            body.contains("# TYPE pilot_proxy_convergence_time histogram"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn not_ready_until_synced_and_published_saying_why() {
        let (tx, rx) = watch::channel(Readiness::starting(vec![
            "endpointslices".to_string(),
            "services".to_string(),
        ]));
        let state = DebugState {
            readiness: rx,
            ..state()
        };
        let (status, body) = get(&state, "/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready; waiting for:\n- the initial list of: endpointslices, services\n- the first model built from a complete snapshot of the config source\n"
        );
        let (_, configz) = get(&state, "/debug/configz").await;
        let value: Value = serde_json::from_str(&configz).expect("json");
        assert_eq!(value["ready"]["ready"], json!(false));
        assert_eq!(
            value["ready"]["waitingFor"].as_array().map(Vec::len),
            Some(2)
        );

        // Synced, model not yet published.
        tx.send_modify(|readiness| readiness.unsynced.clear());
        let (status, body) = get(&state, "/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("the first model"), "{body}");
        assert!(!body.contains("initial list"), "{body}");

        tx.send_modify(|readiness| {
            readiness.served(&[]);
        });
        assert_eq!(
            get(&state, "/ready").await,
            (StatusCode::OK, "ready\n".to_string())
        );
    }
}
