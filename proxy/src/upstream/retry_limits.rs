//! A cluster's limits on retries (`circuit_breakers`): its retry budget and the number of
//! retries in flight, shared by every request to the cluster and kept across config pushes
//! that leave them unchanged.
//!
//! ```text
//!  first attempt ─► record_request ─► budget slot
//!  retry? ─► budget.try_retry (share of the window's requests) ─► in flight < max_retries ─► RetryGuard
//!                      └─ no: "retry budget exhausted"            └─ no: "max_retries reached"
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use weft_lb::budget::RetryBudget;

use crate::config::circuit_breakers::CircuitBreakers;

/// The retry limits of one cluster.
#[derive(Debug)]
pub struct RetryLimits {
    config: CircuitBreakers,
    budget: Option<RetryBudget>,
    in_flight: AtomicU32,
}

impl RetryLimits {
    pub fn new(config: CircuitBreakers) -> Self {
        let budget = config
            .retry_budget
            .map(|b| RetryBudget::new(b, Instant::now()));
        Self {
            config,
            budget,
            in_flight: AtomicU32::new(0),
        }
    }

    /// The settings these limits were built from.
    pub fn config(&self) -> &CircuitBreakers {
        &self.config
    }

    /// Counts a request's first attempt towards the budget.
    pub fn record_request(&self) {
        if let Some(budget) = &self.budget {
            budget.record_request(Instant::now());
        }
    }

    /// Takes a retry, or says which limit refuses it.
    pub fn try_retry(self: &Arc<Self>) -> Result<RetryGuard, &'static str> {
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= self.config.max_retries {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err("max_retries reached");
        }
        if let Some(budget) = &self.budget
            && !budget.try_retry(Instant::now())
        {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err("retry budget exhausted");
        }
        Ok(RetryGuard(self.clone()))
    }

    /// Retries in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// One retry in flight; released when dropped.
#[derive(Debug)]
pub struct RetryGuard(Arc<RetryLimits>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use weft_lb::budget::BudgetConfig;

    use super::*;

    #[test]
    fn max_retries_bounds_retries_in_flight() {
        let limits = Arc::new(RetryLimits::new(CircuitBreakers {
            max_retries: 2,
            retry_budget: None,
        }));
        let a = limits.try_retry().unwrap();
        let _b = limits.try_retry().unwrap();
        assert_eq!(limits.try_retry().unwrap_err(), "max_retries reached");
        drop(a);
        assert!(limits.try_retry().is_ok());
        assert_eq!(
            limits.in_flight(),
            1,
            "the guard of the last retry was dropped"
        );
    }

    #[test]
    fn the_budget_refuses_beyond_its_share() {
        let limits = Arc::new(RetryLimits::new(CircuitBreakers {
            max_retries: u32::MAX,
            retry_budget: Some(BudgetConfig {
                percent: 10.0,
                min_retries: 0,
                window: std::time::Duration::from_secs(60),
            }),
        }));
        for _ in 0..20 {
            limits.record_request();
        }
        assert!(limits.try_retry().is_ok());
        assert!(limits.try_retry().is_ok());
        assert_eq!(limits.try_retry().unwrap_err(), "retry budget exhausted");
        assert_eq!(limits.in_flight(), 0);
    }
}
