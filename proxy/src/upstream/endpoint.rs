//! The endpoint layer: send one request to one endpoint over a pooled connection.
//!
//! ```text
//!  Request<RequestBody> (URI and headers already final) ─► Endpoint
//!    HTTP/1.1: pool.h1() ─► origin-form request ─► SendRequest ─► Response<Incoming>
//!    HTTP/2:   pool.h2() ─► stream slot ─► h2 send_request ─► request body piped with flow control
//!    upgrade:  pool.connect_dedicated() ─► a connection of its own (hyper with_upgrades), never pooled
//!  ─► Response<UpstreamBody>  (in-flight guard and connection/stream released when the body ends)
//! ```

use std::future::poll_fn;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;

use super::balance::Endpoint;
use super::body::{DownstreamBodyError, RequestBody, UpstreamBody};
use super::breakers::{Breakers, RequestPermit};
use super::connect::ConnectError;
use super::pool::{Pool, Protocol};

/// Why an upstream request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("upstream {endpoint}: {source}")]
    Http1 {
        endpoint: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("upstream {endpoint}: {source}")]
    Http2 {
        endpoint: SocketAddr,
        #[source]
        source: h2::Error,
    },
    #[error("cluster has no {0:?} connection pool for endpoint {1}")]
    NoPool(Protocol, SocketAddr),
}

/// How an exchange with an upstream failed, in the terms of Envoy's response flags (the
/// status, flag and body of each are in `crate::error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (`UF`).
    ConnectFailure,
    /// The cluster's circuit breakers refused a connection or a wait for one (`UO`).
    Overflow,
    /// The upstream connection ended (closed, or h2 GOAWAY) before the exchange completed (`UC`).
    Terminated,
    /// The upstream reset the request: h2 RST_STREAM, or TCP RST on the connection (`UR`).
    Reset,
    /// The upstream sent something that is not valid HTTP: a malformed status line or
    /// headers, bad chunked framing, h2 frames h2 refused (`UPE`).
    UpstreamProtocol,
    /// The downstream request body failed while it was forwarded: bad chunked framing,
    /// fewer bytes than its `content-length` (`DPE`).
    DownstreamProtocol,
}

impl UpstreamError {
    /// What kind of failure this is (see [`Failure`]).
    pub fn failure(&self) -> Failure {
        match self {
            Self::Connect(ConnectError::Overflow { .. }) => Failure::Overflow,
            Self::Connect(_) | Self::NoPool(..) => Failure::ConnectFailure,
            Self::Http1 { source, .. } => hyper_failure(source),
            Self::Http2 { source, .. } => h2_failure(source),
        }
    }
}

/// Classifies a hyper (HTTP/1.1 upstream) error.
pub(super) fn hyper_failure(e: &hyper::Error) -> Failure {
    // Our request body's error, i.e. the downstream's: checked first, since its own source
    // chain holds the downstream's I/O error.
    if e.is_user() && source_of::<DownstreamBodyError>(e).is_some() {
        return Failure::DownstreamProtocol;
    }
    if e.is_parse() {
        return Failure::UpstreamProtocol;
    }
    if let Some(io) = source_of::<std::io::Error>(e) {
        return match io.kind() {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            // hyper's body decoder: bad chunk size line, chunk extensions too long, …
            ErrorKind::InvalidInput | ErrorKind::InvalidData => Failure::UpstreamProtocol,
            _ => Failure::Terminated,
        };
    }
    // Closed before the message was complete, or the connection went away.
    Failure::Terminated
}

/// Classifies an h2 (HTTP/2 upstream) error.
pub(super) fn h2_failure(e: &h2::Error) -> Failure {
    if let Some(io) = e.get_io() {
        return match io.kind() {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Failure::Reset,
            // h2 reports the connection's end of file as BrokenPipe.
            _ => Failure::Terminated,
        };
    }
    if e.is_library() {
        // h2 itself found the upstream's frames or headers malformed.
        return Failure::UpstreamProtocol;
    }
    if e.is_go_away() {
        return Failure::Terminated;
    }
    Failure::Reset
}

/// The first error of type `E` in `e`'s source chain.
fn source_of<'a, E: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cause = e.source();
    while let Some(err) = cause {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        cause = err.source();
    }
    None
}

/// Sends `req` to `endpoint` with `protocol`. The request's URI carries the scheme and the
/// authority the upstream must see; headers are final (hop-by-hop removed, Host set).
pub async fn send(
    endpoint: &Arc<Endpoint>,
    protocol: Protocol,
    connect_timeout: Duration,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    send_limited(endpoint, protocol, connect_timeout, req, None).await
}

/// [`send`] under a cluster's circuit breakers: `limits` holds the request's permit (kept
/// until its response ends) and the breakers its connection waits are counted against.
pub async fn send_limited(
    endpoint: &Arc<Endpoint>,
    protocol: Protocol,
    connect_timeout: Duration,
    req: Request<RequestBody>,
    limits: Option<(RequestPermit, &Arc<Breakers>)>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let pool = endpoint
        .pool(protocol)
        .ok_or(UpstreamError::NoPool(protocol, endpoint.addr))?;
    let (permit, breakers) = match limits {
        Some((permit, breakers)) => (Some(permit), Some(breakers)),
        None => (None, None),
    };
    let in_flight = endpoint.start_request_with(permit);
    match protocol {
        Protocol::Http1 => {
            let mut conn = pool.h1(connect_timeout, breakers).await?;
            let resp = conn
                .send_request(origin_form(req))
                .await
                .map_err(|source| UpstreamError::Http1 {
                    endpoint: endpoint.addr,
                    source,
                })?;
            Ok(resp.map(|body| UpstreamBody::http1(body, Some(conn), in_flight)))
        }
        Protocol::Http2 => {
            let resp = send_h2(pool, connect_timeout, req).await;
            let (resp, stream) = resp.map_err(|e| match e {
                H2Failure::Connect(e) => UpstreamError::Connect(e),
                H2Failure::Stream(source) => UpstreamError::Http2 {
                    endpoint: endpoint.addr,
                    source,
                },
            })?;
            Ok(resp.map(|recv| UpstreamBody::http2(recv, stream, in_flight)))
        }
    }
}

/// Sends an HTTP/1.1 upgrade request (`Connection: upgrade` kept) or a `CONNECT` to `endpoint`
/// on a new connection of its own, never pooled: after a `101` (a `CONNECT`'s 2xx) the tunnel
/// owns the connection
/// (`hyper::upgrade::on` on the response), after any other answer it closes with the body.
/// Same transport as the endpoint's HTTP/1.1 pool (TLS, ALPN, source address).
pub async fn send_upgrade(
    endpoint: &Arc<Endpoint>,
    connect_timeout: Duration,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let addr = endpoint.addr;
    let pool = endpoint
        .pool(Protocol::Http1)
        .ok_or(UpstreamError::NoPool(Protocol::Http1, addr))?;
    let in_flight = endpoint.start_request();
    let io = pool.connect_dedicated(connect_timeout).await?;
    let (mut send, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|source| ConnectError::Http1 { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream upgrade connection ended with error");
        }
    });
    let resp = send
        .send_request(origin_form(req))
        .await
        .map_err(|source| UpstreamError::Http1 {
            endpoint: addr,
            source,
        })?;
    Ok(resp.map(|body| UpstreamBody::http1(body, None, in_flight)))
}

/// HTTP/1.1 upstreams get `path?query` as the request target; the authority travels in `Host`.
fn origin_form(mut req: Request<RequestBody>) -> Request<RequestBody> {
    *req.version_mut() = Version::HTTP_11;
    // A CONNECT's target is its authority (authority-form), not a path.
    if req.method() == http::Method::CONNECT
        || (req.uri().scheme().is_none() && req.uri().authority().is_none())
    {
        return req;
    }
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *req.uri_mut() = http::Uri::from(pq);
    *req.version_mut() = Version::HTTP_11;
    req
}

enum H2Failure {
    Connect(ConnectError),
    Stream(h2::Error),
}

async fn send_h2(
    pool: &Arc<Pool>,
    connect_timeout: Duration,
    req: Request<RequestBody>,
) -> Result<(Response<h2::RecvStream>, super::pool::StreamGuard), H2Failure> {
    let stream = pool.h2(connect_timeout).await.map_err(H2Failure::Connect)?;
    let mut send = stream.send.ready().await.map_err(H2Failure::Stream)?;
    let (mut parts, body) = req.into_parts();
    parts.version = Version::HTTP_2;
    // `:authority` comes from the URI; a `host` header would duplicate it.
    parts.headers.remove(http::header::HOST);
    let end_of_stream = body.is_end_stream();
    let (response, tx) = send
        .send_request(Request::from_parts(parts, ()), end_of_stream)
        .map_err(H2Failure::Stream)?;
    // Until the response head arrives, the body pipe lives only as long as this future: a
    // request given up on (timeout, client gone) stops reading the body and resets the stream.
    let mut pipe = AbortOnDrop((!end_of_stream).then(|| tokio::spawn(pipe_request_body(body, tx))));
    let resp = response.await.map_err(H2Failure::Stream)?;
    // The body keeps streaming while the response does.
    pipe.0 = None;
    stream.guard.response_received();
    Ok((resp, stream.guard))
}

/// Aborts the task when dropped (unless taken out first).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Copies a request body onto an HTTP/2 stream, respecting the peer's flow-control window.
async fn pipe_request_body(mut body: RequestBody, mut tx: h2::SendStream<Bytes>) {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // The upstream reset the stream (e.g. it answered early): stop reading the body.
            _ = poll_fn(|cx| tx.poll_reset(cx)) => return,
        };
        let frame = match frame {
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "downstream request body failed: resetting upstream stream");
                tx.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = tx.send_trailers(trailers);
                } else {
                    let _ = tx.send_data(Bytes::new(), true);
                }
                return;
            }
        };
        while !data.is_empty() {
            tx.reserve_capacity(data.len());
            match poll_fn(|cx| tx.poll_capacity(cx)).await {
                Some(Ok(n)) if n > 0 => {
                    let chunk = data.split_to(n.min(data.len()));
                    if tx.send_data(chunk, false).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            }
        }
    }
}
