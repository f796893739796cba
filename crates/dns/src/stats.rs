//! The DNS server's counters, read through a cheap handle the proxy can export as metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A handle on a server's counters; clones share them.
#[derive(Debug, Clone, Default)]
pub struct DnsStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    answered_locally: AtomicU64,
    forwarded: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    malformed: AtomicU64,
}

/// The counters at one moment; each only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStatsSnapshot {
    /// Queries answered from the name table (addresses, CNAME + addresses, or NODATA).
    pub answered_locally: u64,
    /// Queries sent upstream (each counted once, whatever the number of servers tried).
    pub forwarded: u64,
    /// Forwarded queries no upstream answered: the client got SERVFAIL.
    pub failed: u64,
    /// Queries refused with SERVFAIL because the limit of forwards in flight was reached.
    pub rejected: u64,
    /// Messages that were not a readable query: answered FORMERR or NOTIMP when their
    /// header could be read, else dropped.
    pub malformed: u64,
}

impl DnsStats {
    /// The counters now.
    pub fn snapshot(&self) -> DnsStatsSnapshot {
        let c = &self.counters;
        DnsStatsSnapshot {
            answered_locally: c.answered_locally.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn answered_locally(&self) {
        self.counters
            .answered_locally
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forwarded(&self) {
        self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn malformed(&self) {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
    }
}
