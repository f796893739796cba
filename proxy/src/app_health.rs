//! The status port (Istio's pilot-agent 15020): kubelet's app probes, rewritten by the injector, performed by the proxy from inside the pod.
//!
//! ```text
//!  kubelet ─HTTP─► :15020 (pod IP) ─┬─► GET /app-health/<container>/<livez│readyz│startupz>
//!                                   │     AppProbers (ISTIO_KUBE_APP_PROBERS, parsed once at start)
//!                                   │     ─► one new connection to <pod IP │ host>:<port> (captured pods: from
//!                                   │        127.0.0.6, which the capture lets through), within the timeout:
//!                                   │        Http  GET <path> (HTTPS: certificate not verified) ─► 2xx/3xx: 200 │ its status │ 503
//!                                   │        Tcp   connect                                   ─► 200 │ 503
//!                                   │        Grpc  grpc.health.v1.Health/Check over h2c      ─► SERVING: 200 │ 503
//!                                   ├─► GET /healthz/ready ─► admin.rs readiness (as :15021)
//!  the pod's app ─► :15020 (localhost) ─► POST /quitquitquit (from loopback only) ─► drain, exit
//! ```

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message as _;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_util::task::AbortOnDropHandle;

use crate::StartError;
use crate::admin;
use crate::config::ProxyConfig;
use crate::http::text_response;
use crate::limits::DownstreamLimits;
use crate::upstream::connect::{ConnectError, tcp};

mod probers;
pub use probers::{
    APP_PROBERS_ENV, AppProbe, AppProbers, DEFAULT_TIMEOUT, FieldError, Prober, ProbersError,
    Scheme,
};

/// The most of a gRPC health answer read (it is a few bytes).
const MAX_GRPC_ANSWER: usize = 64 * 1024;

/// Why a probe failed (the body of the answer kubelet gets, and in its events).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot resolve {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS client: {0}")]
    TlsSetup(String),
    #[error("{host:?} is not a TLS server name")]
    ServerName { host: String },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("gRPC health check of {addr}: {reason}")]
    Grpc { addr: SocketAddr, reason: String },
}

/// The status server's state: the probes, where the app is, and the proxy's readiness.
pub struct StatusServer {
    probers: AppProbers,
    pod_ip: IpAddr,
    /// The source address of connections to the pod IP (`None`: the kernel's choice).
    source: Option<IpAddr>,
    /// The HTTPS probes' client (an error only if the crypto provider lacks TLS 1.2 and 1.3).
    tls: Result<TlsConnector, String>,
    readiness: Option<(watch::Receiver<Arc<ProxyConfig>>, admin::Control)>,
}

impl StatusServer {
    /// Probes the app at `pod_ip` (Istio's destination: the pod IP, as kubelet's, so that
    /// apps bound to it answer).
    pub fn new(probers: AppProbers, pod_ip: IpAddr) -> Self {
        Self {
            probers,
            pod_ip,
            source: None,
            tls: probe_tls_config()
                .map(|config| TlsConnector::from(Arc::new(config)))
                .map_err(|e| e.to_string()),
            readiness: None,
        }
    }

    /// For a captured pod: connections to the pod IP leave from `127.0.0.6` (`::6`), which the
    /// capture rules let through, as the inbound cluster's do; from another address the
    /// proxy's own connection would be redirected to its inbound listener (and refused there
    /// under STRICT mutual TLS).
    pub fn captured(mut self) -> Self {
        self.source = Some(match self.pod_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6)),
        });
        self
    }

    /// Also answers `/healthz/ready` as the health port 15021 does (Istio's agent does).
    pub fn with_readiness(
        mut self,
        rx: watch::Receiver<Arc<ProxyConfig>>,
        ctl: admin::Control,
    ) -> Self {
        self.readiness = Some((rx, ctl));
        self
    }

    /// The answer to one request from `peer`: `POST /quitquitquit` (Istio's agent's: a Job's
    /// app stops its sidecar with it) from inside the pod only, else [`Self::respond`].
    pub async fn respond_from<B>(&self, req: &Request<B>, peer: IpAddr) -> Response<Full<Bytes>> {
        if req.uri().path() == "/quitquitquit" {
            return self.quit(req.method(), peer);
        }
        self.respond(req).await
    }

    fn quit(&self, method: &http::Method, peer: IpAddr) -> Response<Full<Bytes>> {
        let Some((_, ctl)) = &self.readiness else {
            return text_response(StatusCode::NOT_FOUND, "no /quitquitquit here\n");
        };
        if method != http::Method::POST {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        if !peer.is_loopback() {
            return text_response(
                StatusCode::FORBIDDEN,
                "POST /quitquitquit is accepted from inside the pod only (localhost)\n",
            );
        }
        tracing::info!("POST /quitquitquit on the status port: draining and exiting");
        ctl.quit.cancel();
        text_response(StatusCode::OK, "OK\n")
    }

    /// The answer to one GET (probes and readiness).
    pub async fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        if path == "/healthz/ready"
            && let Some((rx, ctl)) = &self.readiness
        {
            let config = rx.borrow().clone();
            return admin::readiness(&config, ctl);
        }
        let Some(probe) = self.probers.get(path) else {
            return text_response(StatusCode::NOT_FOUND, format!("no app probe at {path}\n"));
        };
        let verdict = tokio::time::timeout(probe.timeout, self.run(probe, req.headers()))
            .await
            .unwrap_or(Err(ProbeError::Timeout(probe.timeout)));
        match verdict {
            Ok((status, body)) => text_response(status, body),
            Err(err) => {
                tracing::debug!(path, error = %err, "app probe failed");
                text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n"))
            }
        }
    }

    /// Runs one probe: the status kubelet gets and why.
    async fn run(
        &self,
        probe: &AppProbe,
        incoming: &HeaderMap,
    ) -> Result<(StatusCode, String), ProbeError> {
        let timeout = probe.timeout;
        match &probe.prober {
            Prober::Http {
                port,
                path,
                scheme,
                host,
                headers,
            } => {
                let addr = self.address(host.as_deref(), *port).await?;
                let request = http_request(addr, path, host.as_deref(), headers, incoming);
                let stream = self.connect(addr, timeout).await?;
                let status = match scheme {
                    Scheme::Http => http_status(addr, TokioIo::new(stream), request).await?,
                    Scheme::Https => {
                        let name = host.clone().unwrap_or_else(|| addr.ip().to_string());
                        let name = rustls::pki_types::ServerName::try_from(name.clone())
                            .map_err(|_| ProbeError::ServerName { host: name })?;
                        let tls = self
                            .tls
                            .as_ref()
                            .map_err(|e| ProbeError::TlsSetup(e.clone()))?;
                        let stream = tls
                            .connect(name, stream)
                            .await
                            .map_err(|source| ProbeError::Tls { addr, source })?;
                        http_status(addr, TokioIo::new(stream), request).await?
                    }
                };
                Ok(if (200..400).contains(&status.as_u16()) {
                    (StatusCode::OK, format!("the app answered {status}\n"))
                } else if status.as_u16() < 200 {
                    let why = format!("the app answered {status} to GET {path}\n");
                    (StatusCode::SERVICE_UNAVAILABLE, why)
                } else {
                    (status, format!("the app answered {status} to GET {path}\n"))
                })
            }
            Prober::Tcp { port, host } => {
                let addr = self.address(host.as_deref(), *port).await?;
                drop(self.connect(addr, timeout).await?);
                Ok((StatusCode::OK, format!("connected to {addr}\n")))
            }
            Prober::Grpc { port, service } => {
                let addr = SocketAddr::new(self.pod_ip, *port);
                let stream = self.connect(addr, timeout).await?;
                let status = grpc_health(addr, TokioIo::new(stream), service, incoming).await?;
                let name = serving_status_name(status);
                Ok(if status == SERVING {
                    (StatusCode::OK, format!("{name}\n"))
                } else {
                    let why = format!("the app's health service {service:?} is {name}\n");
                    (StatusCode::SERVICE_UNAVAILABLE, why)
                })
            }
        }
    }

    /// `host` (an IP, or a name resolved now) or the pod IP, at `port`.
    async fn address(&self, host: Option<&str>, port: u16) -> Result<SocketAddr, ProbeError> {
        let Some(host) = host else {
            return Ok(SocketAddr::new(self.pod_ip, port));
        };
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolve_error = |reason: String| ProbeError::Resolve {
            host: host.to_string(),
            reason,
        };
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address".into()))
    }

    /// A new connection (probes are rare: no pooling), from the capture-exempt source when it
    /// goes to the pod's own IP.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, ProbeError> {
        let source = self.source.filter(|_| addr.ip() == self.pod_ip);
        Ok(tcp(addr, source, timeout).await?)
    }
}

/// The probe's request, as kubelet sends it: `Host` is the target unless a header sets it;
/// kubelet's `User-Agent` and `Accept` are passed on; `httpHeaders` replace headers of the
/// same name.
fn http_request(
    addr: SocketAddr,
    path: &PathAndQuery,
    host: Option<&str>,
    headers: &[(HeaderName, HeaderValue)],
    incoming: &HeaderMap,
) -> Request<Empty<Bytes>> {
    let authority = match host {
        Some(h) if h.parse::<Ipv6Addr>().is_ok() => format!("[{h}]:{}", addr.port()),
        Some(h) => format!("{h}:{}", addr.port()),
        None => addr.to_string(),
    };
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = http::Uri::from(path.clone());
    let out = request.headers_mut();
    if let Ok(value) = HeaderValue::try_from(authority) {
        out.insert(HOST, value);
    }
    for name in [USER_AGENT, ACCEPT] {
        if let Some(value) = incoming.get(&name) {
            out.insert(name, value.clone());
        }
    }
    for (name, _) in headers {
        out.remove(name);
    }
    for (name, value) in headers {
        out.append(name.clone(), value.clone());
    }
    out.insert(CONNECTION, HeaderValue::from_static("close"));
    request
}

/// Sends `request` on a new HTTP/1.1 connection and returns the answer's status (the body
/// is not read: the connection closes with this function).
async fn http_status<I>(
    addr: SocketAddr,
    io: I,
    request: Request<Empty<Bytes>>,
) -> Result<StatusCode, ProbeError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |source| ProbeError::Http { addr, source };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    let _conn = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender.send_request(request).await.map_err(http)?;
    Ok(response.status())
}

// grpc.health.v1 (grpc/health/v1/health.proto): the two one-field messages of `Check`,
// with prost's derive (prost is already the proxy's protobuf library, for xDS). tonic-health
// is not in the workspace, and its generated client would bring tonic's channel stack for
// one unary call; a hand-written frame over hyper's HTTP/2 client is a few lines.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// `ServingStatus`: UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3.
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

/// A `ServingStatus` by its proto name, as kubelet and grpc-health-probe print it.
fn serving_status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        SERVING => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => format!("status {other}"),
    }
}

/// `grpc.health.v1.Health/Check` for `service` over h2c: the serving status, or why there is
/// none (a non-zero `grpc-status`, e.g. 12 when the app has no health service).
async fn grpc_health<I>(
    addr: SocketAddr,
    io: I,
    service: &str,
    incoming: &HeaderMap,
) -> Result<i32, ProbeError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let grpc = |reason: String| ProbeError::Grpc { addr, reason };
    let http = |source| ProbeError::Http { addr, source };
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(http)?;
    let _conn = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let message = HealthCheckRequest {
        service: service.to_string(),
    }
    .encode_to_vec();
    // The gRPC frame: not compressed, length (big-endian u32), message.
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    let mut request = Request::new(Full::new(Bytes::from(frame)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::try_from(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .map_err(|e| grpc(e.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    if let Some(agent) = incoming.get(USER_AGENT) {
        headers.insert(USER_AGENT, agent.clone());
    }
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status() != StatusCode::OK {
        return Err(grpc(format!("HTTP status {}", response.status())));
    }
    let (parts, body) = response.into_parts();
    let collected = Limited::new(body, MAX_GRPC_ANSWER)
        .collect()
        .await
        .map_err(|e| grpc(e.to_string()))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    // A trailers-only answer (an error) carries grpc-status in its headers.
    let header = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match header("grpc-status").as_deref() {
        Some("0") => {}
        Some(code) => {
            let message = header("grpc-message").unwrap_or_default();
            return Err(grpc(
                format!("grpc-status {code} {message}").trim_end().into(),
            ));
        }
        None => return Err(grpc("the answer has no grpc-status".into())),
    }
    let mut data = collected.to_bytes();
    if data.len() < 5 {
        return Err(grpc("the answer has no message".into()));
    }
    let compressed = data.get_u8();
    let len = usize::try_from(data.get_u32()).unwrap_or(usize::MAX);
    if compressed != 0 || len > data.len() {
        return Err(grpc("the answer is compressed or cut short".into()));
    }
    HealthCheckResponse::decode(data.slice(..len))
        .map(|r| r.status)
        .map_err(|e| grpc(format!("the answer is not a HealthCheckResponse: {e}")))
}

/// The probes' TLS client: any server certificate, as kubelet's HTTPS probes (Go's
/// `InsecureSkipVerify`): the app's certificate is made for its clients, not for the pod IP
/// the probe connects to, and the probe never leaves the pod. Handshake signatures are still
/// checked. HTTP/1.1 only.
fn probe_tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = weft_identity::tls::provider();
    let verifier = Arc::new(crate::tls::NoVerification::new(provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds the status port (`--status-port`) on the pod IP and serves it: the proxy's start.
pub fn spawn(
    args: &crate::Args,
    limits: &DownstreamLimits,
    probers: AppProbers,
    rx: watch::Receiver<Arc<ProxyConfig>>,
    ctl: admin::Control,
) -> Result<(), StartError> {
    for (path, probe) in probers.iter() {
        tracing::info!(path, prober = %probe.prober, timeout = ?probe.timeout, "app probe");
    }
    // kubelet comes to the pod IP; the pod's own containers to localhost (a Job's app posts
    // `/quitquitquit` there), unless the proxy already is on a loopback address (tests).
    let mut addrs = vec![SocketAddr::new(args.instance_ip, args.status_port)];
    if !args.instance_ip.is_loopback() && !args.instance_ip.is_unspecified() {
        let loopback = match args.instance_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        addrs.push(SocketAddr::new(loopback, args.status_port));
    }
    let mut server = StatusServer::new(probers, args.instance_ip).with_readiness(rx, ctl);
    if args.interception_mode == "REDIRECT" {
        server = server.captured();
    }
    let server = Arc::new(server);
    for addr in addrs {
        let listener = weft_net::bind(addr)
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| StartError::Bind {
                what: "status",
                addr,
                source,
            })?;
        tracing::info!(
            %addr,
            app_probes = server.probers.len(),
            max_connections = limits.admin_max_connections,
            "status server listening"
        );
        let listener = weft_net::BoundedListener::new(
            listener,
            "status",
            limits.admin(),
            Some(limits.budget.clone()),
        );
        tokio::spawn(serve(listener, server.clone(), limits.header_read_timeout));
    }
    Ok(())
}

/// Serves the status port (HTTP/1.1) on `listener` forever.
pub async fn serve(
    mut listener: weft_net::BoundedListener,
    server: Arc<StatusServer>,
    header_read_timeout: Option<Duration>,
) {
    loop {
        let accepted = listener.accept().await;
        let server = server.clone();
        let peer = accepted.peer.ip();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.respond_from(&req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(accepted.io), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests;
