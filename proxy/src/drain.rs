//! Graceful drain: stop accepting, ask every connection to close (h2 GOAWAY, h1 `Connection: close`), let in-flight requests finish within the drain period.
//!
//! ```text
//!  SIGTERM │ POST /quitquitquit │ POST /drain_listeners ─► Drain::start ─► every listener token cancelled
//!     listener: stops accepting          connection: graceful_shutdown ─► closes when its requests end
//!     a listener removed by LDS: only its own token is cancelled, same steps
//!  Drain::wait: all tracked connections closed, or the drain period is over
//! ```

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Envoy's (and Istio's) default drain period for a sidecar.
pub const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(5);

/// The proxy-wide drain signal, the connections it waits for, and how long it waits.
#[derive(Debug, Clone)]
pub struct Drain {
    signal: CancellationToken,
    connections: TaskTracker,
    period: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new(DEFAULT_DRAIN_PERIOD)
    }
}

impl Drain {
    pub fn new(period: Duration) -> Self {
        Self {
            signal: CancellationToken::new(),
            connections: TaskTracker::new(),
            period,
        }
    }

    /// How long connections get to finish their requests once asked to close.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Starts draining every listener (idempotent).
    pub fn start(&self) {
        if !self.signal.is_cancelled() {
            tracing::info!(period = ?self.period, "draining: listeners stop accepting, connections close after their requests");
        }
        self.signal.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.signal.is_cancelled()
    }

    /// A token for one listener: cancelled when the proxy drains or when the listener is removed.
    pub fn listener_token(&self) -> CancellationToken {
        self.signal.child_token()
    }

    /// Spawns a downstream connection so [`Drain::wait`] waits for it.
    pub fn spawn_connection<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.connections.spawn(fut);
    }

    /// Open downstream connections.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Waits until every connection has closed or the drain period (plus a small grace for
    /// the forced close) is over; whether all closed in time.
    pub async fn wait(&self) -> bool {
        self.connections.close();
        let done = tokio::time::timeout(
            self.period + Duration::from_millis(100),
            self.connections.wait(),
        )
        .await
        .is_ok();
        self.connections.reopen();
        done
    }
}
