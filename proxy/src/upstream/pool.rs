//! One connection pool per endpoint and (protocol, TLS identity): HTTP/1.1 connections bounded, HTTP/2 multiplexed.
//!
//! ```text
//!  PoolRegistry ─ PoolKey { addr, protocol, tls } ─► Arc<Pool>   (shared by every cluster that has the endpoint)
//!  Pool
//!   ├─ HTTP/1.1: idle stack ─ checkout ─► ready SendRequest ─ response body ends ─► back on the idle stack
//!   │            slots: Semaphore(max_connections), one permit per open connection; none free ─► wait
//!   └─ HTTP/2:   [H2Conn { SendRequest, active streams, peer's SETTINGS_MAX_CONCURRENT_STREAMS }]
//!                first connection with a free stream; none ─► connect another (one connect at a time)
//!                http2_keepalive: a PING unanswered within its timeout closes the connection (h2_keepalive.rs)
//!  idle longer than idle_timeout ─► closed by the sweeper
//!  endpoint leaves the config ─► close(): idle connections dropped now, busy ones after their request
//! ```

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::body::RequestBody;
use super::breakers::Breakers;
use super::connect::{self, ConnectError};
use crate::tls::MeshTls;

/// Envoy's default `max_connections` circuit-breaker threshold, used as the per-endpoint
/// bound on HTTP/1.1 connections until DestinationRule connection pools are translated.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Envoy's default upstream `idle_timeout` (`common_http_protocol_options`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// h2's view of the peer's stream limit before (or without) a SETTINGS_MAX_CONCURRENT_STREAMS:
/// unlimited, as RFC 9113 says. A change from it means the peer's SETTINGS arrived.
const H2_UNSET_MAX_STREAMS: usize = usize::MAX;

/// The protocol a pool speaks to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Transport security towards the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Plaintext,
    /// TLS as the cluster's transport socket says (mesh mTLS, or files).
    Tls(Arc<crate::config::tls::UpstreamTls>),
}

impl TlsMode {
    /// Mesh mutual TLS: the workload certificate presented, the peer's SPIFFE identity checked.
    pub fn is_mesh(&self) -> bool {
        matches!(self, Self::Tls(tls) if matches!(**tls, crate::config::tls::UpstreamTls::Mesh { .. }))
    }

    pub fn from_config(tls: Option<Arc<crate::config::tls::UpstreamTls>>) -> Self {
        tls.map_or(Self::Plaintext, Self::Tls)
    }
}

/// What tells two pools apart: connections are never shared across these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub tls: TlsMode,
    /// The local address connections bind to (the cluster's `upstream_bind_config`).
    pub source: Option<std::net::IpAddr>,
    /// TCP keepalive of the connections (the cluster's `tcp_keepalive`).
    pub keepalive: Option<crate::config::cluster_http::Keepalive>,
}

/// Limits of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Open HTTP/1.1 connections at most; requests beyond wait for one to be free.
    pub max_connections: usize,
    /// An unused connection is closed after this long.
    pub idle_timeout: Duration,
    /// A connection serves at most this many requests (HTTP/1.1) or streams (HTTP/2).
    pub max_requests_per_connection: Option<u32>,
    /// A connection older than this takes no new request.
    pub max_connection_duration: Option<Duration>,
    /// HTTP/2 streams per connection at most, below the peer's own limit.
    pub max_concurrent_streams: Option<u32>,
    /// HTTP/2 PINGs: a connection whose peer stops answering is closed.
    pub http2_keepalive: Option<crate::config::cluster_http::Http2Keepalive>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_requests_per_connection: None,
            max_connection_duration: None,
            max_concurrent_streams: None,
            http2_keepalive: None,
        }
    }
}

impl PoolSettings {
    /// Whether a connection made at `born` that served `uses` requests may serve another.
    fn reusable(&self, uses: u32, born: Instant) -> bool {
        self.max_requests_per_connection
            .is_none_or(|max| uses < max)
            && self
                .max_connection_duration
                .is_none_or(|d| born.elapsed() < d)
    }
}

/// The connections to one endpoint for one (protocol, TLS identity).
pub struct Pool {
    key: PoolKey,
    settings: PoolSettings,
    /// Where TLS connections get their configuration (the proxy's identity).
    tls: MeshTls,
    closed: AtomicBool,
    /// Connections open right now (both protocols), for the admin view and tests.
    open: Arc<AtomicUsize>,
    h1_idle: Mutex<Vec<IdleH1>>,
    h1_slots: Arc<Semaphore>,
    h1_returned: Notify,
    h2_conns: Mutex<Vec<H2Conn>>,
    /// Serialises HTTP/2 connection setup so a burst opens one connection, not one per request.
    h2_connect: tokio::sync::Mutex<()>,
    /// Woken when a new HTTP/2 connection learns the peer's stream limit (or closes).
    h2_settled: Arc<Notify>,
    sweeping: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("key", &self.key)
            .field("open", &self.open_connections())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Pool {
    /// Whether its connections are mesh mutual TLS (the workload certificate presented).
    pub fn is_mesh_tls(&self) -> bool {
        self.key.tls.is_mesh()
    }

    pub fn new(key: PoolKey, settings: PoolSettings) -> Self {
        Self::with_tls(key, settings, MeshTls::default())
    }

    /// A pool whose TLS connections take their configuration from `tls`.
    pub fn with_tls(key: PoolKey, settings: PoolSettings, tls: MeshTls) -> Self {
        Self {
            key,
            settings,
            tls,
            closed: AtomicBool::new(false),
            open: Arc::new(AtomicUsize::new(0)),
            h1_idle: Mutex::new(Vec::new()),
            h1_slots: Arc::new(Semaphore::new(settings.max_connections.max(1))),
            h1_returned: Notify::new(),
            h2_conns: Mutex::new(Vec::new()),
            h2_connect: tokio::sync::Mutex::new(()),
            h2_settled: Arc::new(Notify::new()),
            sweeping: AtomicBool::new(false),
        }
    }

    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    /// Open connections (idle or busy).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections.
    pub fn idle_connections(&self) -> usize {
        self.h1_idle.lock().len()
            + self
                .h2_conns
                .lock()
                .iter()
                .filter(|c| c.state.active.load(Ordering::Relaxed) == 0)
                .count()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The endpoint left the config: idle connections close now, busy ones when their request ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.h1_idle.lock().clear();
        // Dropping our HTTP/2 handles lets each connection send GOAWAY once its streams finish.
        self.h2_conns.lock().clear();
        self.h1_slots.close();
        self.h1_returned.notify_waiters();
    }

    /// Checks out a ready HTTP/1.1 connection: an idle one, a new one, or the next one returned.
    /// `breakers`, the requesting cluster's: a new connection takes one of its connection slots
    /// (`max_connections`), and a request that must wait counts as pending
    /// (`max_pending_requests`): beyond either, `Overflow` at once.
    pub async fn h1(
        self: &Arc<Self>,
        connect_timeout: Duration,
        breakers: Option<&Arc<Breakers>>,
    ) -> Result<H1Conn, ConnectError> {
        let mut pending = None;
        loop {
            if self.is_closed() {
                return Err(self.closed_error());
            }
            if let Some(conn) = self.pop_idle_h1().await {
                return Ok(conn);
            }
            let returned = self.h1_returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            let cluster_slot = match breakers {
                Some(b) => match b.try_connection() {
                    Some(slot) => Some(slot),
                    None => {
                        if pending.is_none() {
                            pending = Some(self.pend(b)?);
                        }
                        tokio::select! {
                            slot = b.connection() => match slot {
                                Some(slot) => Some(slot),
                                None => return Err(self.closed_error()),
                            },
                            () = &mut returned => continue,
                        }
                    }
                },
                None => None,
            };
            let permit = match self.h1_slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => return Err(self.closed_error()),
                Err(TryAcquireError::NoPermits) => {
                    if pending.is_none()
                        && let Some(b) = breakers
                    {
                        pending = Some(self.pend(b)?);
                    }
                    tokio::select! {
                        p = self.h1_slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => return Err(self.closed_error()),
                        },
                        () = &mut returned => continue,
                    }
                }
            };
            drop(pending);
            // Boxed: connecting is rare, and its future (TCP, TLS, handshake) would otherwise
            // make every request's future that much larger, and every move of it a copy.
            return Box::pin(self.connect_h1((permit, cluster_slot), connect_timeout)).await;
        }
    }

    /// Counts a request that must wait for a connection, or refuses it (`max_pending_requests`).
    fn pend(&self, breakers: &Arc<Breakers>) -> Result<super::breakers::Pending, ConnectError> {
        breakers
            .try_pend()
            .map_err(|overflow| ConnectError::Overflow {
                addr: self.key.addr,
                overflow,
            })
    }

    async fn pop_idle_h1(&self) -> Option<H1Conn> {
        loop {
            let idle = self.h1_idle.lock().pop()?;
            if idle.since.elapsed() >= self.settings.idle_timeout
                || !self.settings.reusable(idle.conn.uses, idle.conn.born)
            {
                continue;
            }
            let mut conn = idle.conn;
            if conn.send.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    /// A new connection to the endpoint for this pool's protocol and transport (ALPN, mesh
    /// TLS) that never joins the pool: an upgraded request's (`http/upgrade.rs`), which the
    /// upgrade takes over for good. Bounded by the downstream listener's limits, not by
    /// `max_connections`.
    pub async fn connect_dedicated(
        &self,
        connect_timeout: Duration,
    ) -> Result<connect::UpstreamIo, ConnectError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        connect::connect(&self.key, connect_timeout, &self.tls).await
    }

    async fn connect_h1(
        self: &Arc<Self>,
        permit: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
        connect_timeout: Duration,
    ) -> Result<H1Conn, ConnectError> {
        let addr = self.key.addr;
        let io = connect::connect(&self.key, connect_timeout, &self.tls).await?;
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ConnectError::Http1 { addr, source })?;
        let open = self.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream HTTP/1.1 connection ended with error");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(H1Conn {
            send,
            _permit: permit,
            pool: self.clone(),
            uses: 0,
            born: Instant::now(),
        })
    }

    fn put_back_h1(self: &Arc<Self>, conn: H1Conn) {
        if self.is_closed()
            || conn.send.is_closed()
            || !self.settings.reusable(conn.uses, conn.born)
        {
            // Closed: its slots are free for a new connection.
            self.h1_returned.notify_one();
            return;
        }
        self.h1_idle.lock().push(IdleH1 {
            conn,
            since: Instant::now(),
        });
        self.h1_returned.notify_one();
        self.start_sweeper();
    }

    /// Takes a stream slot on an HTTP/2 connection with room, opening a connection if none has.
    ///
    /// A new connection carries one stream until the peer's limit is known (its SETTINGS, or
    /// the first response); requests arriving meanwhile wait for that instead of piling
    /// streams onto a connection that may refuse them, or each opening a connection.
    pub async fn h2(self: &Arc<Self>, connect_timeout: Duration) -> Result<H2Stream, ConnectError> {
        loop {
            let settled = self.h2_settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.try_h2() {
                H2Pick::Stream(s) => return Ok(s),
                H2Pick::Settling => {
                    if tokio::time::timeout(connect_timeout, settled).await.is_ok() {
                        continue;
                    }
                }
                H2Pick::Full => {}
            }
            let _connecting = self.h2_connect.lock().await;
            match self.try_h2() {
                H2Pick::Stream(s) => return Ok(s),
                H2Pick::Settling => continue,
                H2Pick::Full => {}
            }
            if self.is_closed() {
                return Err(self.closed_error());
            }
            // Boxed, as in `h1`: keeps the per-request future small.
            let conn = Box::pin(self.connect_h2(connect_timeout)).await?;
            let stream = conn.take_stream();
            let mut conns = self.h2_conns.lock();
            if !self.is_closed() {
                conns.push(conn);
            }
            drop(conns);
            self.start_sweeper();
            return Ok(stream);
        }
    }

    fn try_h2(&self) -> H2Pick {
        let mut conns = self.h2_conns.lock();
        // A connection that served its streams or lived its time takes no new stream: dropping
        // our handle lets it close (GOAWAY) once its open streams end.
        conns.retain(|c| {
            !c.state.closed.load(Ordering::Relaxed)
                && self.settings.reusable(
                    u32::try_from(c.state.streams.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
                    c.born,
                )
        });
        let ours = self
            .settings
            .max_concurrent_streams
            .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        let mut settling = false;
        for c in conns.iter() {
            let active = c.state.active.load(Ordering::Relaxed);
            if !c.state.settled.load(Ordering::Acquire) {
                if active == 0 {
                    return H2Pick::Stream(c.take_stream());
                }
                settling = true;
            } else if active < c.state.peer_max.load(Ordering::Relaxed).min(ours) {
                return H2Pick::Stream(c.take_stream());
            }
        }
        if settling {
            H2Pick::Settling
        } else {
            H2Pick::Full
        }
    }

    async fn connect_h2(&self, connect_timeout: Duration) -> Result<H2Conn, ConnectError> {
        let addr = self.key.addr;
        let io = connect::connect(&self.key, connect_timeout, &self.tls).await?;
        let (send, mut conn) = h2::client::Builder::new()
            .initial_max_send_streams(H2_UNSET_MAX_STREAMS)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|source| ConnectError::Http2 { addr, source })?;
        let state = Arc::new(H2State {
            active: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            peer_max: AtomicUsize::new(H2_UNSET_MAX_STREAMS),
            settled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
            notify: self.h2_settled.clone(),
        });
        let task_state = state.clone();
        let open = self.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        let keepalive = self
            .settings
            .http2_keepalive
            .and_then(|settings| Some((conn.ping_pong()?, settings)));
        tokio::spawn(async move {
            let drive = poll_fn(|cx| {
                let poll = Pin::new(&mut conn).poll(cx);
                // The peer's SETTINGS_MAX_CONCURRENT_STREAMS, refreshed whenever frames arrive.
                let max = conn.max_concurrent_send_streams();
                task_state.peer_max.store(max, Ordering::Relaxed);
                if max != H2_UNSET_MAX_STREAMS {
                    task_state.settle();
                }
                poll
            });
            let result = match keepalive {
                None => drive.await,
                Some((ping_pong, settings)) => tokio::select! {
                    result = drive => result,
                    () = super::h2_keepalive::unanswered(ping_pong, settings) => {
                        // Dropping the connection closes it; its streams fail.
                        tracing::debug!(
                            %addr,
                            timeout = ?settings.timeout,
                            "upstream HTTP/2 connection did not answer a PING: closing it"
                        );
                        Ok(())
                    }
                },
            };
            task_state.closed.store(true, Ordering::Relaxed);
            task_state.notify.notify_waiters();
            open.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = result {
                tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended with error");
            }
        });
        Ok(H2Conn {
            send,
            state,
            born: Instant::now(),
        })
    }

    fn closed_error(&self) -> ConnectError {
        ConnectError::PoolClosed {
            addr: self.key.addr,
        }
    }

    /// Starts the idle sweeper unless it runs already; it stops when nothing is left to sweep.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        let period = (self.settings.idle_timeout / 2)
            .clamp(Duration::from_millis(10), Duration::from_secs(3600));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = pool.upgrade() else { return };
                if !pool.sweep() {
                    pool.sweeping.store(false, Ordering::Release);
                    // A connection may have been added between the sweep and the flag.
                    if !pool.has_connections() || pool.sweeping.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    }

    /// Closes idle connections past the idle timeout; whether any connection remains.
    fn sweep(&self) -> bool {
        let timeout = self.settings.idle_timeout;
        let mut idle = self.h1_idle.lock();
        idle.retain(|c| c.since.elapsed() < timeout && !c.conn.send.is_closed());
        let h1_left = !idle.is_empty();
        drop(idle);
        let mut conns = self.h2_conns.lock();
        conns.retain(|c| {
            !c.state.closed.load(Ordering::Relaxed)
                && (c.state.active.load(Ordering::Relaxed) > 0
                    || c.state.idle_since.lock().elapsed() < timeout)
        });
        h1_left || !conns.is_empty()
    }

    fn has_connections(&self) -> bool {
        !self.h1_idle.lock().is_empty() || !self.h2_conns.lock().is_empty()
    }
}

struct IdleH1 {
    conn: H1Conn,
    since: Instant,
}

/// A checked-out HTTP/1.1 connection; goes back to its pool through [`H1Conn::release`].
pub struct H1Conn {
    send: http1::SendRequest<RequestBody>,
    /// The pool's connection slot, and the cluster's when it limits connections.
    _permit: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    pool: Arc<Pool>,
    /// Requests sent on it, and when it was made (`max_requests_per_connection`,
    /// `max_connection_duration`).
    uses: u32,
    born: Instant,
}

impl std::fmt::Debug for H1Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Conn")
            .field("addr", &self.pool.key.addr)
            .finish()
    }
}

impl H1Conn {
    pub fn send_request(
        &mut self,
        req: http::Request<RequestBody>,
    ) -> impl Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + use<>
    {
        self.uses = self.uses.saturating_add(1);
        self.send.send_request(req)
    }

    /// The response was read to its end: the connection can serve another request.
    pub fn release(self) {
        let pool = self.pool.clone();
        pool.put_back_h1(self);
    }
}

struct H2State {
    active: AtomicUsize,
    /// Streams opened on the connection in all (`max_requests_per_connection`).
    streams: AtomicUsize,
    peer_max: AtomicUsize,
    /// The peer's stream limit is known: its SETTINGS carried one, or a response arrived
    /// (so its SETTINGS, which precede any response, said nothing: unlimited).
    settled: AtomicBool,
    closed: AtomicBool,
    idle_since: Mutex<Instant>,
    notify: Arc<Notify>,
}

impl H2State {
    fn settle(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }
}

enum H2Pick {
    Stream(H2Stream),
    /// A new connection has not learnt the peer's limit yet: wait for it.
    Settling,
    Full,
}

struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    state: Arc<H2State>,
    born: Instant,
}

impl H2Conn {
    fn take_stream(&self) -> H2Stream {
        self.state.active.fetch_add(1, Ordering::Relaxed);
        self.state.streams.fetch_add(1, Ordering::Relaxed);
        H2Stream {
            send: self.send.clone(),
            guard: StreamGuard(self.state.clone()),
        }
    }
}

/// A stream slot on an HTTP/2 connection.
pub struct H2Stream {
    pub send: h2::client::SendRequest<Bytes>,
    pub guard: StreamGuard,
}

/// Holds one of a connection's concurrent streams until the response ends.
pub struct StreamGuard(Arc<H2State>);

impl StreamGuard {
    /// A response head arrived on this connection: the peer's SETTINGS have been applied.
    pub fn response_received(&self) {
        self.0.settle();
    }
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamGuard")
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
    }
}

/// Every pool the proxy has, by key. Owned by the config store (config time only); the data
/// path holds `Arc<Pool>`s inside its endpoints.
#[derive(Debug, Default)]
pub struct PoolRegistry {
    pools: HashMap<PoolKey, Arc<Pool>>,
    tls: MeshTls,
}

impl PoolRegistry {
    /// Where this registry's pools get their TLS configurations.
    pub fn tls(&self) -> MeshTls {
        self.tls.clone()
    }

    /// A registry whose pools make TLS connections with `tls`.
    pub fn with_tls(tls: MeshTls) -> Self {
        Self {
            pools: HashMap::new(),
            tls,
        }
    }

    /// The pool for `key`, created on first use. Settings changes replace the pool.
    pub fn get(&mut self, key: PoolKey, settings: PoolSettings) -> Arc<Pool> {
        let entry = self
            .pools
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Pool::with_tls(key.clone(), settings, self.tls.clone())));
        if entry.settings != settings {
            let replaced = std::mem::replace(
                entry,
                Arc::new(Pool::with_tls(key, settings, self.tls.clone())),
            );
            replaced.close();
        }
        entry.clone()
    }

    /// Closes and forgets every pool whose key is not in `used`.
    pub fn retain(&mut self, used: &std::collections::HashSet<PoolKey>) {
        self.pools.retain(|key, pool| {
            let keep = used.contains(key);
            if !keep {
                tracing::debug!(addr = %key.addr, protocol = ?key.protocol, "endpoint left the config: closing its connections");
                pool.close();
            }
            keep
        });
    }

    pub fn len(&self) -> usize {
        self.pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}
