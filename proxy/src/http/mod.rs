//! The HTTP data path: the downstream server and the request stack, top-down.
//!
//! ```text
//!  DownstreamIo (plaintext or mTLS, tls/accept.rs) ─► auto::Builder (h1 | h2 | both, per HCM codec) ─► handle(req)  [this file]
//!    0. filters  (filters.rs): the listener's jwt_authn, RBAC and local rate limit
//!                (rate_limit.rs) filters (none: nothing to do)
//!    1. router   (router.rs):  one ProxyConfig snapshot ─► listener ─► route table ─► vhost ─► route
//!    2. action:  Direct │ Redirect (redirect.rs) answered here │ Forward (policy.rs): CORS,
//!                faults, cluster slot, rewrites, headers (headers.rs), timeouts, retries
//!    3. balancer (upstream/balance.rs): Cluster::pick ─► endpoint
//!    4. endpoint (upstream/endpoint.rs): pooled connection (upstream/pool.rs) ─► upstream
//!    errors ─► error.rs (status + response flag), once; the flags a request collected on the
//!    way (DI, URX) join its response's, in handle
//!  HTTP/1.1 upgrade (WebSocket) answered 101 (upgrade.rs): the connection becomes a tunnel
//!  drain (listener removed, SIGTERM): graceful_shutdown (h2 GOAWAY, h1 Connection: close),
//!  in-flight requests and tunnels finish within the drain period, then the connection is closed
//! ```

mod cors;
mod fault;
mod filters;
mod hash;
mod headers;
pub mod mirror;
mod policy;
pub(crate) mod rate_limit;
mod redirect;
mod retry;
pub mod router;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::DEFAULT_DOWNSTREAM_IDLE_TIMEOUT;
use crate::config::formatter::{FormatContext, HeaderTemplate};
use crate::config::{
    Action, Codec, DirectResponse, HttpManager, ProxyConfig, Route, RouteConfig, RouteTable,
    VirtualHost,
};
use crate::error::{ProxyError, ResponseFlags};
use crate::limits::DownstreamLimits;
use crate::listeners::ChainRef;
use crate::metrics::{ConnMetrics, Metrics, Outcome, Started};
use crate::upstream::UpstreamBody;
use router::RequestView;

/// What the proxy answers with: the upstream's streamed body, or a local one.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// What goes downstream: a [`ProxyBody`] that records its request's metrics when it ends.
pub type ServedBody = crate::metrics::Recorded<ProxyBody>;

/// Per-connection context shared by the requests of that connection.
#[derive(Debug)]
struct Conn {
    at: ChainRef,
    downstream: Downstream,
    rx: watch::Receiver<Arc<ProxyConfig>>,
    /// An upgraded request's tunnel, run once hyper hands the connection over.
    tunnel: upgrade::Slot,
    /// Istio's metrics of the connection's requests (metrics/http.rs).
    metrics: Arc<ConnMetrics>,
    /// Where its requests' spans go, and which kind they are (trace/).
    tracer: Arc<crate::trace::Tracer>,
    span_kind: crate::trace::Kind,
}

/// What is known about a downstream connection, made once when it is served: its addresses
/// (header formatters and RBAC read them) and, over mTLS, the peer's identity.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The peer's SPIFFE identity from mTLS; `None` for plaintext.
    pub principal: Option<Arc<str>>,
    /// The TLS server name the client asked for; `None` for plaintext.
    pub sni: Option<Arc<str>>,
}

impl Downstream {
    /// The connection as RBAC sees it.
    pub fn facts(&self) -> crate::authz::ConnFacts<'_> {
        crate::authz::ConnFacts {
            peer: self.remote,
            local: self.local,
            principal: self.principal.as_deref(),
            sni: self.sni.as_deref(),
        }
    }
}

/// What the layers know about a request besides the request itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestMeta<'a> {
    pub downstream: &'a Downstream,
    pub start: SystemTime,
    /// Where an upgrade answered `101` leaves its tunnel.
    pub tunnel: &'a upgrade::Slot,
    /// The connection's metrics: whether the proxy reports as source or destination, and the
    /// peer metadata it sends.
    pub metrics: &'a ConnMetrics,
}

impl RequestMeta<'_> {
    /// The formatter context for `%COMMAND%` header values.
    pub fn format_context<'a>(
        &self,
        req: (&'a http::Method, &'a http::Uri, Version),
        request_headers: &'a http::HeaderMap,
        response_headers: Option<&'a http::HeaderMap>,
        upstream: Option<SocketAddr>,
    ) -> FormatContext<'a> {
        FormatContext {
            downstream_remote: self.downstream.remote,
            downstream_local: self.downstream.local,
            protocol: req.2,
            request_method: Some(req.0),
            request_uri: Some(req.1),
            request_headers,
            response_headers,
            upstream,
            start_time: self.start,
            hostname: headers::hostname(),
        }
    }
}

/// Serves one accepted downstream connection until it closes. When `drain` is cancelled
/// (listener removed, proxy draining) the connection is asked to close gracefully and is
/// closed after `drain_period` at the latest.
///
/// Timeouts, from the listener's HCM when it sets them, else the proxy's defaults
/// ([`DownstreamLimits`]): a client has the header-read timeout to send its first byte and
/// then each request's headers (HTTP/1: also the wait for the next request on a
/// keep-alive connection); a connection where no byte moves either way for the idle
/// timeout is closed.
///
/// An HTTP/1.1 connection whose request was upgraded (WebSocket, [`upgrade`]) goes on as a
/// tunnel in this same task: the drain and the idle timeout apply to it as to the connection.
///
/// `local` is the connection's destination (its original one when redirected), `at` the
/// listener and filter chain whose connection manager serves it.
#[allow(clippy::too_many_arguments)]
pub async fn serve_connection(
    secured: crate::tls::accept::Accepted,
    peer: SocketAddr,
    local: SocketAddr,
    at: ChainRef,
    rx: watch::Receiver<Arc<ProxyConfig>>,
    drain: CancellationToken,
    drain_period: Duration,
    limits: Arc<DownstreamLimits>,
    metrics: &Arc<Metrics>,
    tracer: &Arc<crate::trace::Tracer>,
) {
    let listener = at.listener;
    let (codec, header_read_timeout, idle_timeout, reporter, span_kind) = {
        let config = rx.borrow();
        let active = config.listener(&listener);
        let hcm = active.and_then(|l| l.http(at.chain)).map(|(m, _)| m);
        (
            hcm.map_or(Codec::Auto, |c| c.codec),
            hcm.and_then(|c| c.request_headers_timeout)
                .or(limits.header_read_timeout),
            hcm.map_or(Some(DEFAULT_DOWNSTREAM_IDLE_TIMEOUT), |c| c.idle_timeout),
            active.map_or(crate::metrics::Reporter::Source, |l| {
                l.config.direction.reporter()
            }),
            match active.map(|l| l.config.direction) {
                Some(crate::config::Direction::Outbound) => crate::trace::Kind::Client,
                _ => crate::trace::Kind::Server,
            },
        )
    };
    let mut stream = secured.io;
    crate::tls::accept::guarded_mut(&mut stream).set_timeouts(header_read_timeout, idle_timeout);
    let downstream = Downstream {
        remote: peer,
        local,
        principal: secured.principal,
        sni: secured.sni,
    };
    let conn = Arc::new(Conn {
        at,
        downstream,
        rx,
        tunnel: upgrade::Slot::default(),
        metrics: Arc::new(ConnMetrics::new(metrics.clone(), reporter)),
        tracer: tracer.clone(),
        span_kind,
    });
    let handler = conn.clone();
    let service = hyper::service::service_fn(move |req| handle(handler.clone(), req));
    let io = TokioIo::new(stream);
    // HTTP/1.1 connections are served with upgrades: whether one is carried is the HCM's
    // `upgrade_configs` at the time of the request (upgrade.rs).
    let served = match codec {
        Codec::Http2 => {
            let mut builder = auto::Builder::new(TokioExecutor::new()).http2_only();
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection(io, service);
            drive(connection, |c| c.graceful_shutdown(), &drain, drain_period).await
        }
        Codec::Http1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(io, service).with_upgrades();
            drive(connection, |c| c.graceful_shutdown(), &drain, drain_period).await
        }
        Codec::Auto => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection_with_upgrades(io, service);
            drive(connection, |c| c.graceful_shutdown(), &drain, drain_period).await
        }
    };
    let drain_deadline = match served {
        Served::Closed {
            result,
            drain_deadline,
        } => {
            if let Err(e) = result {
                tracing::debug!(%peer, %listener, error = %e, "downstream connection ended with error");
            }
            drain_deadline
        }
        Served::DrainPeriodOver => {
            tracing::debug!(%peer, %listener, "drain period over: closing the connection");
            return;
        }
    };
    if let Some(tunnel) = conn.tunnel.take() {
        upgrade::run(tunnel, peer, &drain, drain_deadline, drain_period).await;
    }
}

/// How serving a connection with hyper ended.
enum Served {
    /// hyper is done with it (closed, or handed over for an upgrade); `drain_deadline`: when
    /// the drain period ends, if the connection was draining.
    Closed {
        result: Result<(), Box<dyn std::error::Error + Send + Sync>>,
        drain_deadline: Option<Instant>,
    },
    /// It was draining and the drain period ran out.
    DrainPeriodOver,
}

/// Drives a hyper connection; when `drain` fires, asks it to close (`graceful`) and gives it
/// the drain period.
async fn drive<C, E>(
    connection: C,
    graceful: impl FnOnce(Pin<&mut C>),
    drain: &CancellationToken,
    drain_period: Duration,
) -> Served
where
    C: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => Served::Closed {
            result: result.map_err(Into::into),
            drain_deadline: None,
        },
        () = drain.cancelled() => {
            graceful(connection.as_mut());
            let deadline = Instant::now() + drain_period;
            match tokio::time::timeout_at(deadline, connection).await {
                Ok(result) => Served::Closed {
                    result: result.map_err(Into::into),
                    drain_deadline: Some(deadline),
                },
                Err(_) => Served::DrainPeriodOver,
            }
        }
    }
}

/// One request, top-down. Its future is what hyper holds (and moves) per request, and every
/// `async fn` awaited below is a copy of its callee's future into its own: so routing and the
/// local answers are plain functions, and one await level (`policy::forward`) does the rest.
async fn handle(
    conn: Arc<Conn>,
    mut req: Request<Incoming>,
) -> Result<Response<ServedBody>, Infallible> {
    // One snapshot for the whole request: in-flight requests finish on the config they began with.
    let config = conn.rx.borrow().clone();
    let meta = RequestMeta {
        downstream: &conn.downstream,
        start: SystemTime::now(),
        tunnel: &conn.tunnel,
        metrics: &conn.metrics,
    };
    // What happened to the request besides its status (flags), and what its metrics' labels
    // and its access log need from the way it took.
    let mut outcome = Outcome::default();
    let (result, started) = match manager(&config, conn.at) {
        Ok((manager, routes)) => {
            // The request leaves with this proxy's span as the next hop's parent.
            let span = manager.tracing.as_ref().and_then(|tracing| {
                crate::trace::start(
                    &conn.tracer,
                    tracing,
                    conn.span_kind,
                    &mut req,
                    conn.downstream.remote,
                )
            });
            // Inbound, the client's peer metadata comes off here: the app never sees it.
            let started = conn.metrics.start(
                &mut req,
                Some(&manager.access_logs),
                manager.stats.as_ref(),
                span,
            );
            // Logged or traced: the outcome keeps what logs and spans print.
            let detailed = started.as_ref().is_some_and(Started::detailed);
            let result = match route(manager, routes, &meta, req) {
                Ok((routed, req)) => {
                    if detailed {
                        outcome.route_name = Some(routed.levels.route.name.clone());
                        outcome.operation = routed.levels.route.operation.clone();
                    }
                    match &routed.levels.route.action {
                        Action::Forward(action) => {
                            policy::forward(&routed, &meta, action, req, &mut outcome, detailed)
                                .await
                        }
                        Action::Direct(direct) => {
                            Ok(direct_response(direct, &routed.levels, &meta, &req))
                        }
                        Action::Redirect(r) => redirect::redirect(
                            r,
                            &routed.levels.route.matcher,
                            &req,
                        )
                        .map(|mut resp| {
                            apply_local_response_headers(&routed.levels, &meta, &req, &mut resp);
                            resp
                        }),
                    }
                }
                Err(e) => Err(e),
            };
            (result, started)
        }
        Err(e) => (Err(e), conn.metrics.start(&mut req, None, None, None)),
    };
    let flags = outcome.flags;
    let mut resp = match result {
        Ok(mut resp) => {
            if !flags.is_empty() {
                match resp.extensions_mut().get_mut::<ResponseFlags>() {
                    Some(own) => own.insert(flags),
                    None => drop(resp.extensions_mut().insert(flags)),
                }
            }
            resp
        }
        Err(e) => {
            tracing::debug!(listener = %conn.at.listener, error = %e, "local reply");
            e.flagged(flags).into_response().map(Either::Right)
        }
    };
    // A client that told who it is hears who answered (Istio's metadata exchange).
    if started.as_ref().is_some_and(|s| s.peer.is_some()) {
        conn.metrics.own_headers().insert(resp.headers_mut());
    }
    Ok(crate::metrics::http::record(
        &conn.metrics,
        started,
        outcome,
        &conn.downstream,
        resp,
    ))
}

/// Where a request goes: its listener's connection manager and route table, after the
/// listener's filters, and the route it matched.
pub(crate) struct Routed<'a> {
    pub manager: &'a HttpManager,
    pub table: &'a RouteTable,
    pub levels: Levels<'a>,
}

/// The connection manager of the connection's chain, and its route table slot.
fn manager(
    config: &ProxyConfig,
    at: ChainRef,
) -> Result<(&HttpManager, Option<&crate::config::RouteSlot>), ProxyError> {
    config
        .listener(&at.listener)
        .and_then(|l| l.http(at.chain))
        .ok_or(ProxyError::NoListener)
}

/// Runs the listener's filters and routes `req`: the route it matched, and the request
/// (which the filters may have changed).
fn route<'a>(
    manager: &'a HttpManager,
    routes: Option<&'a crate::config::RouteSlot>,
    meta: &RequestMeta<'_>,
    req: Request<Incoming>,
) -> Result<(Routed<'a>, Request<Incoming>), ProxyError> {
    let req = if manager.http_filters.is_empty() {
        req
    } else {
        filters::run(&manager.http_filters, meta.downstream, req)?
    };
    let table = match routes {
        Some(slot) => slot.current(),
        None => {
            return Err(match &manager.routes {
                crate::config::RouteSource::Rds(n) => ProxyError::NoRouteConfig(n.clone()),
                crate::config::RouteSource::Inline(_) => ProxyError::NoRoute,
            });
        }
    };
    let rc = &table.config;
    // A CONNECT is routed only where the connection manager carries CONNECT tunnels (Envoy
    // answers 404 without them); HTTP/1.1 only.
    if req.method() == http::Method::CONNECT
        && (!manager.connect || req.version() != http::Version::HTTP_11)
    {
        return Err(ProxyError::NoRoute);
    }
    let (vh, route) = {
        let view = request_view(&req);
        let vh = rc.select_vhost(view.authority).ok_or(ProxyError::NoRoute)?;
        (vh, vh.select_route(&view).ok_or(ProxyError::NoRoute)?)
    };
    let routed = Routed {
        manager,
        table,
        levels: Levels { rc, vh, route },
    };
    Ok((routed, req))
}

/// A route's direct response, with the levels' response headers.
fn direct_response(
    d: &DirectResponse,
    levels: &Levels<'_>,
    meta: &RequestMeta<'_>,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(d.body.clone().unwrap_or_default())));
    *resp.status_mut() = d.status;
    if d.body.is_some() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    apply_local_response_headers(levels, meta, req, &mut resp);
    resp
}

/// The levels' response header mutations on a response made here (direct, redirect).
fn apply_local_response_headers(
    levels: &Levels<'_>,
    meta: &RequestMeta<'_>,
    req: &Request<Incoming>,
    resp: &mut Response<ProxyBody>,
) {
    let request = (req.method(), req.uri(), req.version());
    let render = |t: &HeaderTemplate, h: &http::HeaderMap| {
        t.render(&meta.format_context(request, req.headers(), Some(h), None))
    };
    levels.apply_response(None, resp.headers_mut(), &render);
}

/// The header-mutation levels that apply to a request, most specific first.
pub(crate) struct Levels<'a> {
    pub rc: &'a RouteConfig,
    pub vh: &'a VirtualHost,
    pub route: &'a Route,
}

impl Levels<'_> {
    fn ordered<'b>(
        &'b self,
        cluster: Option<&'b crate::config::HeaderOps>,
        request: bool,
    ) -> [Option<&'b crate::config::HeaderOps>; 4] {
        let pick = |r: &'b crate::config::RouteConfig| {
            if request {
                &r.request_headers
            } else {
                &r.response_headers
            }
        };
        let (vh, route) = if request {
            (&self.vh.request_headers, &self.route.request_headers)
        } else {
            (&self.vh.response_headers, &self.route.response_headers)
        };
        // Envoy applies the most specific level first, so outer levels win on overwrite,
        // unless most_specific_header_mutations_wins.
        let mut order = [cluster, Some(route), Some(vh), Some(pick(self.rc))];
        if self.rc.most_specific_wins {
            order.reverse();
        }
        order
    }

    pub fn apply_request(
        &self,
        cluster: Option<&crate::config::HeaderOps>,
        headers: &mut http::HeaderMap,
        render: headers::Render<'_>,
    ) {
        for ops in self.ordered(cluster, true).into_iter().flatten() {
            headers::apply_header_ops(ops, headers, render);
        }
    }

    pub fn apply_response(
        &self,
        cluster: Option<&crate::config::HeaderOps>,
        headers: &mut http::HeaderMap,
        render: headers::Render<'_>,
    ) {
        for ops in self.ordered(cluster, false).into_iter().flatten() {
            headers::apply_header_ops(ops, headers, render);
        }
    }

    /// Whether a response header value has a formatter (then the request is kept to render it).
    pub fn response_is_dynamic(&self, cluster: Option<&crate::config::HeaderOps>) -> bool {
        self.ordered(cluster, false)
            .into_iter()
            .flatten()
            .any(crate::config::HeaderOps::is_dynamic)
    }
}

/// Where a request's authority comes from.
pub(crate) enum AuthoritySource<'a> {
    /// The `Host` header (its value is UTF-8).
    Host(&'a HeaderValue),
    /// The request target: absolute-form (HTTP/1) or `:authority` (HTTP/2).
    Target(&'a str),
}

/// The one precedence rule for a request's authority: HTTP/1 prefers an absolute-form target
/// over `Host`; HTTP/2 prefers `Host` over `:authority`.
pub(crate) fn authority_source<B>(req: &Request<B>) -> Option<AuthoritySource<'_>> {
    let host = || {
        req.headers()
            .get(http::header::HOST)
            .filter(|h| h.to_str().is_ok())
            .map(AuthoritySource::Host)
    };
    let target = || {
        req.uri()
            .authority()
            .map(|a| AuthoritySource::Target(a.as_str()))
    };
    if req.version() == Version::HTTP_2 {
        host().or_else(target)
    } else {
        target().or_else(host)
    }
}

/// The authority a request is for (see [`authority_source`]); empty when it has none.
pub(crate) fn request_authority<B>(req: &Request<B>) -> &str {
    match authority_source(req) {
        Some(AuthoritySource::Host(h)) => h.to_str().unwrap_or(""),
        Some(AuthoritySource::Target(t)) => t,
        None => "",
    }
}

pub(crate) fn request_view<B>(req: &Request<B>) -> RequestView<'_> {
    RequestView {
        method: req.method(),
        authority: request_authority(req),
        scheme: req.uri().scheme_str().unwrap_or("http"),
        // A CONNECT's authority-form target has no path: it is routed as a request for `/`.
        path: match req.uri().path() {
            "" => "/",
            path => path,
        },
        query: req.uri().query(),
        path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers: req.headers(),
    }
}

/// Builds a local response with a static body (used by tests and the admin server).
pub fn text_response(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}
