//! Bounded TCP listeners shared by the proxy and the controller: no listener can be exhausted.
//!
//! ```text
//!  bind(addr) ─► BoundedListener::accept
//!                  ├─ EMFILE / ENFILE / … ─► back off (5 ms … 1 s), one log line per interval
//!                  ├─ over its limit (per listener, and the process budget) ─► accept + close,
//!                  │                                         one log line per interval
//!                  └─ Accepted { GuardedIo(stream, permits), peer }
//!  GuardedIo ─► closed with TimedOut when no first byte arrives in `first_byte_timeout`,
//!               or when no byte moves either way for `idle_timeout`; the permits are
//!               returned when it is dropped
//! ```
//!
//! HTTP framing limits (header-read timeout, body limits) stay with the HTTP servers; this
//! crate bounds what every TCP server needs whatever it speaks.

mod io;
mod limits;
mod listener;
mod log;

pub use io::GuardedIo;
pub use limits::{ConnectionBudget, ListenerLimits, raise_open_file_limit};
pub use listener::{Accepted, BoundedListener, bind};
pub use log::RateLimitedLog;
