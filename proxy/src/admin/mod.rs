//! Admin (`/ready`, `/config_dump`, `/clusters`, `/logging`, `/quitquitquit`,
//! `/drain_listeners`), health (`/healthz/ready`) and Prometheus (`/stats/prometheus`) HTTP
//! servers.
//!
//! ```text
//!  admin :15000  ─► /ready /config_dump /clusters /certs /stats/prometheus ─┐
//!                   GET|POST /logging ─► Control.logs (reload the log filter)
//!                   POST /quitquitquit /drain_listeners ─► Control (drain, quit)
//!  health :15021 ─► /healthz/ready ────────────────────┴─► latest Arc<ProxyConfig> (watch)
//!  stats :15090  ─► /stats/prometheus (what Prometheus scrapes: Istio's metrics, the proxy's)
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;
use crate::drain::Drain;
use crate::http::text_response;

pub mod clusters;
pub mod config_dump;
mod istio_descriptors;
mod stats;

/// Which endpoints a server exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Admin,
    Health,
    /// The Prometheus port: `/stats/prometheus` only.
    Stats,
}

/// What admin requests can set in motion.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub drain: Drain,
    /// Cancelled by `POST /quitquitquit`: the proxy drains and exits.
    pub quit: CancellationToken,
    /// The workload identity, when the proxy has one (`--ca-address`).
    pub identity: Option<crate::identity::Identity>,
    /// The proxy's metrics (`/stats/prometheus`).
    pub metrics: Option<Arc<prometheus_client::registry::Registry>>,
    /// The proxy's log levels (`/logging`), when its subscriber can be reloaded.
    pub logs: Option<Arc<crate::logging::LogControl>>,
    /// The xDS connection, versions and accepted resources (`/config_dump`).
    pub xds: Option<Arc<crate::config::xds_state::XdsState>>,
    /// The bootstrap the proxy runs (`/config_dump`'s first config).
    pub bootstrap: Option<Arc<envoy_types::pb::envoy::admin::v3::BootstrapConfigDump>>,
}

/// Serves admin or health requests (HTTP/1.1) on `listener` forever.
pub async fn serve(
    mut listener: weft_net::BoundedListener,
    kind: Kind,
    rx: watch::Receiver<Arc<ProxyConfig>>,
    ctl: Control,
    header_read_timeout: Option<std::time::Duration>,
) {
    loop {
        let accepted = listener.accept().await;
        let rx = rx.clone();
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let config = rx.borrow().clone();
                let resp = respond(kind, &config, &ctl, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(accepted.io), service)
                .await;
        });
    }
}

fn respond<B>(
    kind: Kind,
    config: &ProxyConfig,
    ctl: &Control,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let post = req.method() == http::Method::POST;
    match (kind, req.uri().path()) {
        (Kind::Admin, "/ready") | (Kind::Health, "/healthz/ready") => readiness(config, ctl),
        (Kind::Admin, "/quitquitquit") if post => {
            ctl.quit.cancel();
            text_response(StatusCode::OK, "OK\n")
        }
        (Kind::Admin, "/drain_listeners") if post => {
            ctl.drain.start();
            text_response(StatusCode::OK, "OK\n")
        }
        (Kind::Admin, "/quitquitquit" | "/drain_listeners") => {
            text_response(StatusCode::METHOD_NOT_ALLOWED, "use POST\n")
        }
        (Kind::Admin, "/logging") => logging(ctl, req),
        (Kind::Admin, "/clusters") => {
            if query_value(req, "format").as_deref() == Some("json") {
                json_response(&clusters::json(config))
            } else {
                text_response(StatusCode::OK, clusters::text(config))
            }
        }
        (Kind::Admin, "/certs") => {
            let body = match &ctl.identity {
                Some(identity) => identity.borrow().describe(),
                None => {
                    json!({"identity": null, "reason": "no --ca-address: the proxy has no workload identity"})
                }
            };
            let mut resp = Response::new(Full::new(Bytes::from(
                serde_json::to_vec_pretty(&body).unwrap_or_default(),
            )));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        (Kind::Admin, "/stats") if query_value(req, "format").as_deref() != Some("prometheus") => {
            let query = match stats::Query::parse(req.uri().query()) {
                Ok(query) => query,
                Err(e) => return text_response(StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            let mut text = String::new();
            if let Some(registry) = &ctl.metrics
                && let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry)
            {
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
            }
            let (body, content_type) = stats::render(&text, &query);
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            resp
        }
        (Kind::Admin | Kind::Stats, "/stats/prometheus") | (Kind::Admin, "/stats") => {
            let mut text = String::new();
            if let Some(registry) = &ctl.metrics
                && let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry)
            {
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
            }
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        (Kind::Admin, "/config_dump") => {
            let Some(xds) = &ctl.xds else {
                return text_response(StatusCode::NOT_FOUND, "no xDS state to dump\n");
            };
            let identity = ctl.identity.as_ref().map(|i| i.borrow().clone());
            let sources = config_dump::Sources {
                config,
                xds,
                identity: identity.as_deref(),
                bootstrap: ctl.bootstrap.as_deref(),
            };
            let query = config_dump::Query::parse(req.uri().query());
            match config_dump::render(sources, &query) {
                Ok(body) => json_response(&body),
                Err(e) if e.is_bad_request() => {
                    text_response(StatusCode::BAD_REQUEST, format!("{e}\n"))
                }
                Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The value of query parameter `key`, if the request has it.
fn query_value<B>(req: &Request<B>, key: &str) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A pretty JSON answer.
fn json_response(body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(body).unwrap_or_default(),
    )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Envoy's `/logging`: GET (or POST without parameters) lists the loggers and their levels;
/// POST `?level=`, `?<logger>=<level>`, `?paths=<module>:<level>` (and Weft's `?reset`)
/// changes them and lists the result; a refused change is a 400 that says why.
fn logging<B>(ctl: &Control, req: &Request<B>) -> Response<Full<Bytes>> {
    let Some(logs) = &ctl.logs else {
        return text_response(
            StatusCode::NOT_FOUND,
            "this proxy's log levels cannot be changed at run time\n",
        );
    };
    let query = req.uri().query().unwrap_or_default();
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if params.is_empty() {
        return text_response(StatusCode::OK, logs.levels().listing());
    }
    if req.method() != http::Method::POST {
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "changing log levels takes a POST\n",
        );
    }
    match logs.update(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(levels) => text_response(StatusCode::OK, levels.listing()),
        Err(e) => text_response(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// The proxy's readiness (`/ready`, `/healthz/ready` here and on the status port 15020): 200
/// once it has its config and identity and is not draining, else 503 with the reason.
pub(crate) fn readiness(config: &ProxyConfig, ctl: &Control) -> Response<Full<Bytes>> {
    let reason = if ctl.drain.is_draining() {
        Some("draining".to_string())
    } else {
        config.not_ready_reason().or_else(|| {
            ctl.identity
                .as_ref()
                .and_then(|identity| identity.borrow().not_ready_reason())
        })
    };
    match reason {
        None => text_response(StatusCode::OK, "LIVE\n"),
        Some(r) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {r}\n")),
    }
}
