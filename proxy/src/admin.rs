//! Admin (`/ready`, `/config_dump`, `/quitquitquit`, `/drain_listeners`), health
//! (`/healthz/ready`) and Prometheus (`/stats/prometheus`) HTTP servers.
//!
//! ```text
//!  admin :15000  ─► /ready /config_dump /certs /stats/prometheus ─┐
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

use crate::config::{
    Action, ClusterPick, DiscoveryKind, PathMatch, ProxyConfig, RouteSource, TypeState,
};
use crate::drain::Drain;
use crate::http::text_response;

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
        (Kind::Admin | Kind::Stats, "/stats/prometheus") => {
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
            let body = serde_json::to_vec_pretty(&config_dump(config)).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
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

fn type_state(t: &TypeState) -> Value {
    json!({
        "version": t.version,
        "resources": t.names,
        "last_rejection": t.last_rejection.as_ref().map(|(v, e)| json!({"version": v, "error": e})),
    })
}

/// JSON view of one filter chain: its match, transport and what it forwards to.
fn chain_summary(c: &crate::config::FilterChain) -> Value {
    let m = &c.matcher;
    let target = match &c.network {
        crate::config::Network::Http(h) => json!({"routes": match &h.routes {
            RouteSource::Rds(n) => n.clone(),
            RouteSource::Inline(r) => format!("inline:{}", r.name),
        }}),
        crate::config::Network::Tcp(t) => json!({"tcp_proxy": t.describe()}),
    };
    json!({
        "name": c.name,
        "match": {
            "destination_port": m.destination_port,
            "prefix_ranges": m.prefix_ranges.iter().map(|r| format!("{}/{}", r.addr, r.len)).collect::<Vec<_>>(),
            "server_names": m.server_names,
            "transport_protocol": m.transport_protocol.map(|t| format!("{t:?}")),
            "application_protocols": m.application_protocols,
        },
        "tls": c.tls.is_some(),
        "network": target,
    })
}

/// JSON view of the applied config: per type the version and names, plus summaries.
pub fn config_dump(config: &ProxyConfig) -> Value {
    let mut listeners: Vec<Value> = config
        .listeners
        .values()
        .map(|l| {
            let l = &l.config;
            json!({
                "name": l.name,
                "address": l.address.to_string(),
                "original_dst": l.original_dst,
                "chains": l.chains.iter().map(chain_summary).collect::<Vec<_>>(),
            })
        })
        .collect();
    listeners.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut route_tables: Vec<Value> = config
        .routes
        .values()
        .map(|slot| {
            let rc = &slot.active.config;
            let vhosts: Vec<Value> = rc
                .virtual_hosts
                .iter()
                .map(|vh| {
                    let routes: Vec<Value> = vh.routes.iter().map(route_summary).collect();
                    json!({"name": vh.name, "domains": vh.domains, "routes": routes})
                })
                .collect();
            let pending = slot.pending.as_ref().map(
                |(t, _)| json!({"waiting_for_clusters": t.cold_clusters().collect::<Vec<_>>()}),
            );
            json!({"name": rc.name, "virtual_hosts": vhosts, "pending_update": pending})
        })
        .collect();
    route_tables.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut clusters: Vec<Value> = config
        .clusters
        .values()
        .map(|c| {
            let endpoints: Vec<Value> = c
                .endpoints()
                .iter()
                .map(|e| {
                    let pools: Vec<Value> = e
                        .pools()
                        .map(|p| {
                            json!({
                                "protocol": format!("{:?}", p.key().protocol),
                                "open_connections": p.open_connections(),
                                "idle_connections": p.idle_connections(),
                            })
                        })
                        .collect();
                    json!({
                        "address": e.addr.to_string(),
                        "weight": e.weight,
                        "in_flight": e.in_flight(),
                        "ejected": e.is_ejected(),
                        "pools": pools,
                    })
                })
                .collect();
            json!({
                "name": c.config.name,
                "type": match &c.config.discovery {
                    DiscoveryKind::Eds(s) => format!("EDS({s})"),
                    DiscoveryKind::Static(_) => "STATIC".into(),
                    DiscoveryKind::Dns(d) => format!("{:?}_DNS", d.kind).to_uppercase(),
                    DiscoveryKind::OriginalDst => "ORIGINAL_DST".into(),
                },
                "warm": c.is_ready(),
                "outlier_detection": c.outlier.is_some(),
                "lb_policy": c.config.lb_policy.as_str(),
                "protocol": format!("{:?}", c.config.protocol),
                "connect_timeout_ms": c.config.connect_timeout.as_millis() as u64,
                "endpoints": endpoints,
            })
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({
        "ready": config.ready(),
        "not_ready_reason": config.not_ready_reason(),
        "listeners": type_state(&config.lds),
        "routes": type_state(&config.rds),
        "clusters": type_state(&config.cds),
        "endpoints": type_state(&config.eds),
        "active_listeners": listeners,
        "route_tables": route_tables,
        "active_clusters": clusters,
    })
}

fn route_summary(r: &crate::config::Route) -> Value {
    let path = match &r.matcher.path {
        PathMatch::Prefix(p) => format!("prefix {p}"),
        PathMatch::Exact(p) => format!("path {p}"),
        PathMatch::Regex(re) => format!("regex {}", re.as_str()),
        PathMatch::SeparatedPrefix(p) => format!("path_separated_prefix {p}"),
    };
    let action = match &r.action {
        Action::Forward(f) => match &f.clusters {
            ClusterPick::Single(c) => json!({"cluster": c.name}),
            ClusterPick::Weighted { clusters, .. } => {
                json!({"weighted_clusters": clusters.iter().map(|c| json!({"name": c.cluster.name, "weight": c.weight})).collect::<Vec<_>>()})
            }
        },
        Action::Redirect(rd) => json!({"redirect": rd.status.as_u16()}),
        Action::Direct(d) => json!({"direct_response": d.status.as_u16()}),
    };
    json!({"name": r.name, "match": path, "headers": r.matcher.headers.len(), "query_parameters": r.matcher.query.len(), "action": action})
}
