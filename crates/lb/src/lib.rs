//! Load-balancing mechanism for `weft-proxy`, kept free of I/O, clocks and config formats:
//! every type here is a pure data structure or state machine that the proxy's upstream layer
//! drives (time is passed in as `std::time::Instant`, so tests are deterministic).
//!
//! - [`hash`]: consistent hashing of request keys onto endpoints (a ring hash whose sizing
//!   bounds key movement, and Envoy's Maglev).
//! - [`outlier`]: passive outlier detection (Envoy's consecutive-error ejection).
//! - [`priority`]: priority levels and locality weights (Envoy's priority load and spillover).
//! - [`warmup`]: slow start of new endpoints.
//! - [`budget`]: the retry budget of a cluster.

pub mod budget;
pub mod hash;
pub mod outlier;
pub mod priority;
pub mod warmup;
