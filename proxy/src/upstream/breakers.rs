//! A cluster's circuit breakers (`circuit_breakers`): requests in flight, requests waiting for a
//! connection, open connections, and retries (a budget and retries in flight). Shared by every
//! request to the cluster and kept across config pushes that leave the limits unchanged.
//!
//! ```text
//!  attempt ─► try_request: in flight < max_requests ─► RequestPermit (held until the response ends)
//!                          └─ no: 503 UO
//!  HTTP/1.1 pool, no idle connection ─► connection_slot: open < max_connections ─► connect
//!                          └─ no: try_pend: waiting < max_pending_requests ─► wait for a connection
//!                                 └─ no: 503 UO
//!  first attempt ─► record_request ─► budget slot
//!  retry? ─► budget.try_retry (share of the window's requests) ─► in flight < max_retries ─► RetryGuard
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weft_lb::budget::RetryBudget;

use crate::config::circuit_breakers::CircuitBreakers;

/// The circuit breakers of one cluster.
#[derive(Debug)]
pub struct Breakers {
    config: CircuitBreakers,
    budget: Option<RetryBudget>,
    retries: AtomicU32,
    requests: AtomicU32,
    pending: AtomicU32,
    /// One permit per connection the cluster may open (HTTP/1.1 pools).
    connections: Arc<Semaphore>,
}

/// Which limit refused a request: the cluster is overflowing (`UO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overflow {
    #[error("max_requests ({0}) requests in flight")]
    Requests(u32),
    #[error("max_pending_requests ({0}) requests already wait for a connection")]
    Pending(u32),
}

impl Breakers {
    pub fn new(config: CircuitBreakers) -> Self {
        let budget = config
            .retry_budget
            .map(|b| RetryBudget::new(b, Instant::now()));
        let connections = usize::try_from(config.max_connections)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            config,
            budget,
            retries: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            connections: Arc::new(Semaphore::new(connections)),
        }
    }

    /// The settings these breakers were built from.
    pub fn config(&self) -> &CircuitBreakers {
        &self.config
    }

    /// One more request in flight, or `Overflow` at `max_requests`. Without a limit (Istio's
    /// default, `u32::MAX`) nothing is counted: the permit is free on the hot path.
    pub fn try_request(self: &Arc<Self>) -> Result<RequestPermit, Overflow> {
        if self.config.max_requests == u32::MAX {
            return Ok(RequestPermit(None));
        }
        take(&self.requests, self.config.max_requests)
            .map(|()| RequestPermit(Some(self.clone())))
            .ok_or(Overflow::Requests(self.config.max_requests))
    }

    /// A slot for a new connection, if the cluster has one free now.
    pub fn try_connection(&self) -> Option<OwnedSemaphorePermit> {
        self.connections.clone().try_acquire_owned().ok()
    }

    /// Waits for a connection slot (the caller holds a [`Pending`] meanwhile).
    pub async fn connection(&self) -> Option<OwnedSemaphorePermit> {
        self.connections.clone().acquire_owned().await.ok()
    }

    /// One more request waiting for a connection, or `Overflow` at `max_pending_requests`.
    pub fn try_pend(self: &Arc<Self>) -> Result<Pending, Overflow> {
        take(&self.pending, self.config.max_pending_requests)
            .map(|()| Pending(self.clone()))
            .ok_or(Overflow::Pending(self.config.max_pending_requests))
    }

    /// Counts a request's first attempt towards the retry budget.
    pub fn record_request(&self) {
        if let Some(budget) = &self.budget {
            budget.record_request(Instant::now());
        }
    }

    /// Takes a retry, or says which limit refuses it.
    pub fn try_retry(self: &Arc<Self>) -> Result<RetryGuard, &'static str> {
        if take(&self.retries, self.config.max_retries).is_none() {
            return Err("max_retries reached");
        }
        if let Some(budget) = &self.budget
            && !budget.try_retry(Instant::now())
        {
            self.retries.fetch_sub(1, Ordering::AcqRel);
            return Err("retry budget exhausted");
        }
        Ok(RetryGuard(self.clone()))
    }

    /// Retries in flight now.
    pub fn retries_in_flight(&self) -> u32 {
        self.retries.load(Ordering::Acquire)
    }

    /// Requests in flight now, counted when `max_requests` limits them (else 0).
    pub fn requests_in_flight(&self) -> u32 {
        self.requests.load(Ordering::Acquire)
    }

    /// Requests waiting for a connection now (`upstream_rq_pending_active`).
    pub fn pending_requests(&self) -> u32 {
        self.pending.load(Ordering::Acquire)
    }
}

/// Increments `counter` unless it is at `max`.
fn take(counter: &AtomicU32, max: u32) -> Option<()> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| ())
}

/// One request in flight; released when dropped (with the response body). `None`: the cluster
/// does not limit requests, and does not count them.
#[derive(Debug)]
pub struct RequestPermit(Option<Arc<Breakers>>);

impl Drop for RequestPermit {
    fn drop(&mut self) {
        if let Some(breakers) = &self.0 {
            breakers.requests.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One request waiting for a connection; released when dropped.
#[derive(Debug)]
pub struct Pending(Arc<Breakers>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One retry in flight; released when dropped.
#[derive(Debug)]
pub struct RetryGuard(Arc<Breakers>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use weft_lb::budget::BudgetConfig;

    use super::*;

    fn breakers(config: CircuitBreakers) -> Arc<Breakers> {
        Arc::new(Breakers::new(config))
    }

    #[test]
    fn max_retries_bounds_retries_in_flight() {
        let limits = breakers(CircuitBreakers {
            max_retries: 2,
            ..CircuitBreakers::default()
        });
        let a = limits.try_retry().unwrap();
        let _b = limits.try_retry().unwrap();
        assert_eq!(limits.try_retry().unwrap_err(), "max_retries reached");
        drop(a);
        assert!(limits.try_retry().is_ok());
        assert_eq!(
            limits.retries_in_flight(),
            1,
            "the guard of the last retry was dropped"
        );
    }

    #[test]
    fn the_budget_refuses_beyond_its_share() {
        let limits = breakers(CircuitBreakers {
            max_retries: u32::MAX,
            retry_budget: Some(BudgetConfig {
                percent: 10.0,
                min_retries: 0,
                window: std::time::Duration::from_secs(60),
            }),
            ..CircuitBreakers::default()
        });
        for _ in 0..20 {
            limits.record_request();
        }
        assert!(limits.try_retry().is_ok());
        assert!(limits.try_retry().is_ok());
        assert_eq!(limits.try_retry().unwrap_err(), "retry budget exhausted");
        assert_eq!(limits.retries_in_flight(), 0);
    }

    #[test]
    fn requests_pending_and_connections_overflow() {
        let limits = breakers(CircuitBreakers {
            max_connections: 1,
            max_pending_requests: 1,
            max_requests: 2,
            ..CircuitBreakers::default()
        });
        let r1 = limits.try_request().unwrap();
        let _r2 = limits.try_request().unwrap();
        assert_eq!(limits.try_request().unwrap_err(), Overflow::Requests(2));
        drop(r1);
        assert!(limits.try_request().is_ok());
        let connection = limits.try_connection().expect("one connection");
        assert!(limits.try_connection().is_none());
        let pending = limits.try_pend().unwrap();
        assert_eq!(limits.try_pend().unwrap_err(), Overflow::Pending(1));
        drop(pending);
        assert!(limits.try_pend().is_ok());
        drop(connection);
        assert!(limits.try_connection().is_some());
    }

    #[test]
    fn unlimited_requests_are_neither_refused_nor_counted() {
        let limits = breakers(CircuitBreakers {
            max_requests: u32::MAX,
            ..CircuitBreakers::default()
        });
        let permits: Vec<RequestPermit> =
            (0..1000).map(|_| limits.try_request().unwrap()).collect();
        assert_eq!(limits.requests_in_flight(), 0);
        assert!(permits.iter().all(|p| p.0.is_none()), "no Arc held");
    }
}
