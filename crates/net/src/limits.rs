//! What bounds a listener: its connection limit and timeouts, and the process-wide budget.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections served at once; one more is accepted and closed at once.
    pub max_connections: usize,
    /// A connection that sends nothing for this long after it is accepted is closed.
    pub first_byte_timeout: Option<Duration>,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Option<Duration>,
}

impl ListenerLimits {
    /// `max_connections` connections, closed when silent for `first_byte_timeout` after
    /// accept; no idle timeout.
    pub fn new(max_connections: usize, first_byte_timeout: Option<Duration>) -> Self {
        Self {
            max_connections,
            first_byte_timeout,
            idle_timeout: None,
        }
    }

    /// The same limits with an idle timeout.
    pub fn with_idle_timeout(self, idle_timeout: Option<Duration>) -> Self {
        Self {
            idle_timeout,
            ..self
        }
    }
}

/// Downstream connections the whole process may hold, shared by all its listeners, so
/// that connections alone never use up the open-file limit: the rest stays for upstream
/// connections, xDS and config files (Envoy's `global_downstream_max_connections`).
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

impl ConnectionBudget {
    /// A budget of `total` connections.
    pub fn new(total: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            total,
        }
    }

    /// Three quarters of the open-file limit (at least 64): the budget a process gets when
    /// it is not told otherwise.
    pub fn from_open_file_limit(limit: u64) -> Self {
        let total = usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX).max(64);
        Self::new(total)
    }

    /// The size of the budget.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections in use now.
    pub fn in_use(&self) -> usize {
        self.total
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.semaphore.available_permits())
    }

    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.semaphore.clone().try_acquire_owned().ok()
    }
}

/// Raises this process's soft open-file limit to its hard limit (as Go's runtime and Envoy
/// do) and returns the limit now in force. A process that cannot raise it keeps the
/// current one.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            let current = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024);
            tracing::warn!(error = %err, limit = current, "cannot raise the open-file limit");
            current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_three_quarters_of_the_open_file_limit() {
        assert_eq!(
            ConnectionBudget::from_open_file_limit(20_000).total(),
            15_000
        );
        assert_eq!(ConnectionBudget::from_open_file_limit(10).total(), 64);
        let budget = ConnectionBudget::new(2);
        let first = budget.try_acquire().expect("one");
        let _second = budget.try_acquire().expect("two");
        assert!(budget.try_acquire().is_none());
        assert_eq!(budget.in_use(), 2);
        drop(first);
        assert_eq!(budget.in_use(), 1);
    }

    #[test]
    fn raising_the_open_file_limit_never_lowers_it() {
        let (before, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
        assert!(raise_open_file_limit() >= before);
    }
}
