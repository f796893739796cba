//! The accept loop: connection limits, accept-error backoff and rate-limited overload logs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::io::GuardedIo;
use crate::limits::{ConnectionBudget, ListenerLimits};
use crate::log::RateLimitedLog;

/// Pending connections the kernel queues for a listener (before `accept`).
pub const BACKLOG: i32 = 1024;

/// How often an overload or accept-error line may be logged per listener.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// First and last pause after an accept error that is not about one connection (EMFILE, …).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Binds a listening socket with `SO_REUSEADDR`, so that a restarted process can bind its
/// ports at once while old connections are in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// One accepted connection.
#[derive(Debug)]
pub struct Accepted {
    pub io: GuardedIo<TcpStream>,
    pub peer: SocketAddr,
}

/// A TCP listener that never holds more than its limit of connections, and whose accept
/// loop survives running out of file descriptors.
#[derive(Debug)]
pub struct BoundedListener {
    listener: TcpListener,
    name: String,
    local: SocketAddr,
    limits: ListenerLimits,
    permits: Arc<Semaphore>,
    budget: Option<ConnectionBudget>,
    overflow_log: RateLimitedLog,
    error_log: RateLimitedLog,
    backoff: Duration,
    accept_errors: u64,
}

impl BoundedListener {
    /// `name` is what the logs call the listener (e.g. `virtualOutbound`, `ads`).
    pub fn new(
        listener: TcpListener,
        name: impl Into<String>,
        limits: ListenerLimits,
        budget: Option<ConnectionBudget>,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Self {
            listener,
            name: name.into(),
            local,
            permits: Arc::new(Semaphore::new(
                limits.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            limits,
            budget,
            overflow_log: RateLimitedLog::new(LOG_INTERVAL),
            error_log: RateLimitedLog::new(LOG_INTERVAL),
            backoff: BACKOFF_MIN,
            accept_errors: 0,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connections open now.
    pub fn in_use(&self) -> usize {
        self.limits
            .max_connections
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.permits.available_permits())
    }

    /// Accept calls that failed for lack of resources (EMFILE, …) so far.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors
    }

    /// The next connection within the limits. Connections over a limit are accepted and
    /// closed at once (the client sees the connection closed, not a hang); accept errors
    /// are backed off. Never returns an error: a listener keeps listening.
    pub async fn accept(&mut self) -> Accepted {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => {
                    self.backoff = BACKOFF_MIN;
                    accepted
                }
                Err(err) => {
                    self.accept_failed(&err).await;
                    continue;
                }
            };
            let Ok(own) = self.permits.clone().try_acquire_owned() else {
                self.overflow(&format!(
                    "{} connections are open, the listener's limit",
                    self.limits.max_connections
                ));
                continue;
            };
            let mut permits = vec![own];
            if let Some(budget) = &self.budget {
                let Some(shared) = budget.try_acquire() else {
                    let total = budget.total();
                    self.overflow(&format!(
                        "the process holds {total} downstream connections, its budget"
                    ));
                    continue;
                };
                permits.push(shared);
            }
            let _ = stream.set_nodelay(true);
            let io = GuardedIo::new(
                stream,
                self.limits.first_byte_timeout,
                self.limits.idle_timeout,
                permits,
            );
            return Accepted { io, peer };
        }
    }

    /// The connections as a stream (for servers that take one, such as tonic's).
    pub fn into_stream(self) -> impl Stream<Item = io::Result<GuardedIo<TcpStream>>> {
        futures::stream::unfold(self, |mut listener| async move {
            let accepted = listener.accept().await;
            Some((Ok(accepted.io), listener))
        })
    }

    fn overflow(&self, why: &str) {
        if let Some(suppressed) = self.overflow_log.allow() {
            tracing::warn!(
                listener = %self.name,
                address = %self.local,
                closed_since_last_line = suppressed,
                "{why}: closing new connections until some close"
            );
        }
    }

    async fn accept_failed(&mut self, err: &io::Error) {
        // Errors about one connection (the peer gave up before accept): take the next.
        if matches!(
            err.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        ) {
            return;
        }
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the host is out of resources.
        // Pause (5 ms doubling to 1 s) so that the loop does not spin while it lasts.
        self.accept_errors += 1;
        if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(
                listener = %self.name,
                address = %self.local,
                error = %err,
                errors_since_last_line = suppressed,
                retry_in = ?self.backoff,
                "accept failed; backing off"
            );
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn listener(limits: ListenerLimits, budget: Option<ConnectionBudget>) -> BoundedListener {
        let std = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let tokio = TcpListener::from_std(std).expect("register");
        BoundedListener::new(tokio, "test", limits, budget)
    }

    /// Whether the server closed `stream` (EOF or reset) within a few seconds.
    async fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_and_room_comes_back() {
        let mut listener = listener(ListenerLimits::new(2, None), None).await;
        let addr = listener.local_addr();
        let mut held = Vec::new();
        for _ in 0..2 {
            let client = TcpStream::connect(addr).await.expect("connect");
            held.push((client, listener.accept().await));
        }
        assert_eq!(listener.in_use(), 2);

        // The third is accepted and closed; `accept` keeps waiting for a connection it may serve.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let waiting = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(waiting.is_err(), "no connection within the limit yet");
        assert!(closed_by_server(&mut third).await);

        // Closing one makes room.
        held.pop();
        let mut fourth = TcpStream::connect(addr).await.expect("connect");
        let mut accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accepted within the limit");
        fourth.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        accepted.io.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn the_process_budget_is_shared_by_listeners() {
        let budget = ConnectionBudget::new(1);
        let mut first = listener(ListenerLimits::new(10, None), Some(budget.clone())).await;
        let mut second = listener(ListenerLimits::new(10, None), Some(budget.clone())).await;
        let _a = TcpStream::connect(first.local_addr())
            .await
            .expect("connect");
        let held = first.accept().await;
        let mut b = TcpStream::connect(second.local_addr())
            .await
            .expect("connect");
        let waiting = tokio::time::timeout(Duration::from_millis(300), second.accept()).await;
        assert!(waiting.is_err());
        assert!(closed_by_server(&mut b).await);
        assert_eq!(budget.in_use(), 1);
        drop(held);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_restarted_listener_binds_its_port_while_old_connections_linger() {
        let std = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = std.local_addr().expect("addr");
        let tokio = TcpListener::from_std(std).expect("register");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server_side, _) = tokio.accept().await.expect("accept");
        // The server closes first: its side of the connection goes to TIME_WAIT.
        drop(server_side);
        drop(tokio);
        let mut buf = [0u8; 1];
        let _ = client.read(&mut buf).await;
        drop(client);
        bind(addr).expect("rebinding at once works with SO_REUSEADDR");
    }
}
