//! The DNS server the sidecar runs on UDP and TCP (port 15053): mesh names answered from
//! the current name table, everything else forwarded to the pod's resolv.conf servers.
//!
//! ```text
//!  UDP datagram ─┐                        ┌─ no header, or not a query ─► dropped
//!  TCP frame ────┴─► read_query ──────────┼─ bad body / too long ───────► FORMERR (NOTIMP: other opcodes)
//!  (len-prefixed,    (≤ max_message_size) │
//!   one at a time)                        └─ one question
//!                                              │
//!                    table snapshot (watch) ───┼─ A/AAAA of a mesh name ─► local answer:
//!                                              │                           addresses, CNAME + addresses, NODATA
//!                                              └─ anything else
//!                                                   │
//!                    in-flight permits ─────────────┼─ none left ─► SERVFAIL
//!                                                   ▼
//!                    upstream 1: UDP ─TC─► TCP ─► answer, the client's ID restored,
//!                      │ timeout / error           cut to its UDP size (TC) when longer
//!                      ▼
//!                    upstream 2 … ─► all failed, or the total timeout ─► SERVFAIL
//! ```
//!
//! Stopping: the shutdown token stops both loops; forwards and TCP connections under way
//! get `shutdown_grace` to finish, then are cancelled.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_net::{BoundedListener, ConnectionBudget, GuardedIo, ListenerLimits, RateLimitedLog};

use crate::message::{
    Inbound, MAX_TCP_MESSAGE, MIN_UDP_PAYLOAD, encode_within, local_answer, read_query, relay,
    servfail, udp_limit,
};
use crate::resolv_conf::ResolvConf;
use crate::stats::DnsStats;
use crate::table::NameTable;
use crate::upstream::Upstreams;

/// How often a warning about failing upstreams or overload may be logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Binding UDP and TCP to one free port (port 0) is retried when TCP finds it taken.
const BIND_ATTEMPTS: usize = 16;
/// Pause after a failed UDP receive, so a persistent error cannot spin the loop.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The server's limits and timeouts.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// How long one upstream server may take (UDP and its TCP retry together) before the
    /// next is tried.
    pub upstream_timeout: Duration,
    /// How long a forwarded query may take in all, every server included; SERVFAIL after.
    pub forward_timeout: Duration,
    /// Forwarded queries in flight at once (UDP and TCP together); more get SERVFAIL.
    pub max_in_flight: usize,
    /// The longest query read (UDP or TCP), and the longest UDP message read from an
    /// upstream or sent to a client (at least 512). Answers over TCP may reach 65535 bytes.
    pub max_message_size: usize,
    /// The TCP listener's connection limit, first-byte and idle timeouts.
    pub tcp: ListenerLimits,
    /// The process-wide connection budget the TCP connections also count against.
    pub budget: Option<ConnectionBudget>,
    /// How long forwards and TCP connections under way may finish after shutdown.
    pub shutdown_grace: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(2),
            forward_timeout: Duration::from_secs(5),
            max_in_flight: 256,
            max_message_size: 4096,
            tcp: ListenerLimits::new(128, Some(Duration::from_secs(5)))
                .with_idle_timeout(Some(Duration::from_secs(10))),
            budget: None,
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot bind the DNS server to {addr} ({transport}): {source}")]
    Bind {
        addr: SocketAddr,
        transport: &'static str,
        source: io::Error,
    },
    #[error("no upstream DNS server: resolv.conf lists no nameserver to forward to")]
    NoUpstream,
}

/// A bound DNS server; [`DnsServer::run`] serves it.
#[derive(Debug)]
pub struct DnsServer {
    udp: Arc<UdpSocket>,
    tcp: BoundedListener,
    local: SocketAddr,
    shared: Arc<Shared>,
    shutdown_grace: Duration,
}

/// What every query needs, shared by the loops and their tasks.
#[derive(Debug)]
struct Shared {
    table: watch::Receiver<Arc<NameTable>>,
    search: Vec<String>,
    upstreams: Upstreams,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    max_message_size: usize,
    stats: DnsStats,
    failure_log: RateLimitedLog,
    overload_log: RateLimitedLog,
}

/// What to do with one message from a client.
enum Step {
    /// Send this (or nothing).
    Reply(Option<Vec<u8>>),
    /// Ask upstream; the permit holds a place among the forwards in flight.
    Forward {
        query: Box<Message>,
        limit: usize,
        permit: OwnedSemaphorePermit,
    },
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: one free port for both). Each query answers
    /// from the table `table` holds at that moment; unknown names go to `resolv`'s
    /// nameservers in order, and its search domains are those taken off queries.
    pub async fn bind(
        addr: SocketAddr,
        table: watch::Receiver<Arc<NameTable>>,
        resolv: &ResolvConf,
        config: DnsConfig,
    ) -> Result<Self, DnsError> {
        if resolv.nameservers.is_empty() {
            return Err(DnsError::NoUpstream);
        }
        let max_message_size = config
            .max_message_size
            .clamp(MIN_UDP_PAYLOAD, MAX_TCP_MESSAGE);
        let (udp, tcp) = bind_both(addr).await?;
        let local = udp.local_addr().map_err(|source| DnsError::Bind {
            addr,
            transport: "UDP",
            source,
        })?;
        let shared = Shared {
            table,
            search: resolv.search.clone(),
            upstreams: Upstreams {
                servers: resolv.nameservers.clone(),
                attempt_timeout: config.upstream_timeout,
                total_timeout: config.forward_timeout,
                max_udp_answer: max_message_size,
            },
            in_flight: Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            max_in_flight: config.max_in_flight,
            max_message_size,
            stats: DnsStats::default(),
            failure_log: RateLimitedLog::new(LOG_INTERVAL),
            overload_log: RateLimitedLog::new(LOG_INTERVAL),
        };
        Ok(Self {
            udp: Arc::new(udp),
            tcp: BoundedListener::new(tcp, "dns", config.tcp, config.budget),
            local,
            shared: Arc::new(shared),
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The bound address (the same port for UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's counters; the handle stays valid after [`DnsServer::run`] ends.
    pub fn stats(&self) -> DnsStats {
        self.shared.stats.clone()
    }

    /// Serves until `shutdown` is cancelled, then lets what is under way finish for the
    /// grace period and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let abort = CancellationToken::new();
        tracing::info!(address = %self.local, upstreams = ?self.shared.upstreams.servers, "DNS proxy listening (UDP and TCP)");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = serve_udp(self.udp, self.shared.clone(), &tasks, &abort) => {}
            () = serve_tcp(self.tcp, self.shared.clone(), &tasks, &abort, &shutdown) => {}
        }
        tasks.close();
        if tokio::time::timeout(self.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                unfinished = tasks.len(),
                "DNS proxy: cancelling what did not finish in the grace period"
            );
            abort.cancel();
            tasks.wait().await;
        }
    }
}

/// UDP and TCP sockets on one address; for port 0, on one free port.
async fn bind_both(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                addr,
                transport: "UDP",
                source,
            })?;
        let port = udp.local_addr().map_err(|source| DnsError::Bind {
            addr,
            transport: "UDP",
            source,
        })?;
        let tcp_addr = SocketAddr::new(addr.ip(), port.port());
        let tcp = weft_net::bind(tcp_addr).and_then(TcpListener::from_std);
        match tcp {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err)
                if addr.port() == 0
                    && err.kind() == io::ErrorKind::AddrInUse
                    && attempt < BIND_ATTEMPTS => {}
            Err(source) => {
                return Err(DnsError::Bind {
                    addr: tcp_addr,
                    transport: "TCP",
                    source,
                });
            }
        }
    }
}

/// The UDP loop: local answers are sent from here; forwards run as tasks.
async fn serve_udp(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    tasks: &TaskTracker,
    abort: &CancellationToken,
) {
    // One byte more than the limit shows a datagram that was too long.
    let mut buf = vec![0; shared.max_message_size + 1];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(%err, "DNS proxy: UDP receive failed");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
                continue;
            }
        };
        let bytes = &buf[..len];
        match shared.step(bytes, Transport::Udp) {
            Step::Reply(None) => {}
            Step::Reply(Some(reply)) => send_udp(&socket, &reply, peer).await,
            Step::Forward {
                query,
                limit,
                permit,
            } => {
                let (socket, shared, bytes) = (socket.clone(), shared.clone(), bytes.to_vec());
                let abort = abort.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        () = abort.cancelled() => {}
                        reply = shared.forward(&bytes, &query, limit) => send_udp(&socket, &reply, peer).await,
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(err) = socket.send_to(reply, peer).await {
        tracing::debug!(%err, %peer, "DNS proxy: cannot send the answer");
    }
}

/// The TCP accept loop; each connection runs as a task.
async fn serve_tcp(
    mut listener: BoundedListener,
    shared: Arc<Shared>,
    tasks: &TaskTracker,
    abort: &CancellationToken,
    shutdown: &CancellationToken,
) {
    loop {
        let accepted = listener.accept().await;
        let (shared, abort, shutdown) = (shared.clone(), abort.clone(), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                () = abort.cancelled() => {}
                () = serve_connection(accepted.io, &shared, &shutdown) => {}
            }
        });
    }
}

/// One TCP connection: length-prefixed queries, answered in order, until the client
/// closes, times out (idle), sends something unusable, or the server stops.
async fn serve_connection(
    mut io: GuardedIo<TcpStream>,
    shared: &Shared,
    shutdown: &CancellationToken,
) {
    loop {
        let length = tokio::select! {
            () = shutdown.cancelled() => return,
            length = io.read_u16() => match length {
                Ok(length) => usize::from(length),
                Err(_) => return,
            },
        };
        if length > shared.max_message_size {
            // Reading it would mean buffering what we refuse; closing tells the client.
            shared.stats.malformed();
            return;
        }
        let mut query = vec![0; length];
        if io.read_exact(&mut query).await.is_err() {
            return;
        }
        let reply = match shared.step(&query, Transport::Tcp) {
            Step::Reply(None) => {
                // Not even a header: the stream cannot be trusted to be framed right.
                return;
            }
            Step::Reply(Some(reply)) => reply,
            Step::Forward {
                query: message,
                limit,
                permit,
            } => {
                let reply = shared.forward(&query, &message, limit).await;
                drop(permit);
                reply
            }
        };
        // Every reply fits a frame: forwarded ones came in one, ours are cut to the limit.
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(2 + reply.len());
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if io.write_all(&framed).await.is_err() {
            return;
        }
    }
}

impl Shared {
    /// Reads a client's message and answers what can be answered at once.
    fn step(&self, bytes: &[u8], transport: Transport) -> Step {
        let query = match read_query(bytes, self.max_message_size) {
            Inbound::Drop => {
                self.stats.malformed();
                return Step::Reply(None);
            }
            Inbound::Reply(reply) => {
                self.stats.malformed();
                return Step::Reply(Some(reply));
            }
            Inbound::Query(query) => query,
        };
        let limit = match transport {
            Transport::Udp => udp_limit(&query, self.max_message_size),
            Transport::Tcp => MAX_TCP_MESSAGE,
        };
        let table = self.table.borrow().clone();
        if let Some(reply) = local_answer(&query, &table, &self.search) {
            self.stats.answered_locally();
            return Step::Reply(Some(encode_within(&reply, limit)));
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.stats.rejected();
            if let Some(suppressed) = self.overload_log.allow() {
                tracing::warn!(
                    limit = self.max_in_flight,
                    refused_since_last_line = suppressed,
                    "DNS proxy: too many queries forwarded at once; answering SERVFAIL until some finish"
                );
            }
            return Step::Reply(Some(servfail(&query)));
        };
        Step::Forward {
            query,
            limit,
            permit,
        }
    }

    /// Forwards `bytes` (the client's `query`) and returns what the client gets.
    async fn forward(&self, bytes: &[u8], query: &Message, limit: usize) -> Vec<u8> {
        self.stats.forwarded();
        let Some(question) = query.queries.first() else {
            return servfail(query);
        };
        match self.upstreams.forward(bytes, question).await {
            Ok(answer) => relay(answer, query, limit),
            Err(err) => {
                self.stats.failed();
                if let Some(suppressed) = self.failure_log.allow() {
                    tracing::warn!(
                        name = %question.name(),
                        failed_since_last_line = suppressed,
                        "DNS proxy: {err}; answering SERVFAIL"
                    );
                }
                servfail(query)
            }
        }
    }
}
