//! Connection limits and timeouts of every proxy listener (flags; docs/LIMITS.md lists them).
//!
//! ```text
//!  traffic listeners (LDS)  max_connections_per_listener each ─┐
//!  admin 15000, health 15021  admin_max_connections each ──────┼─► budget (all listeners together)
//!  first byte + header read: HCM request_headers_timeout (when set, non-zero), else header_read_timeout
//!  idle (no byte either way): HCM common_http_protocol_options.idle_timeout (Envoy: unset 1 h, 0 none)
//! ```

use std::time::Duration;

use weft_net::{ConnectionBudget, ListenerLimits};

/// hyper's (and Weft's) default time to receive a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits every downstream connection of the proxy lives under.
#[derive(Debug, Clone)]
pub struct DownstreamLimits {
    /// Connections each traffic listener serves at once.
    pub max_connections_per_listener: usize,
    /// Connections the admin and health servers each serve at once.
    pub admin_max_connections: usize,
    /// Time to send a request's headers when the HCM sets none (`None`: unbounded).
    pub header_read_timeout: Option<Duration>,
    /// Downstream connections of all listeners together.
    pub budget: ConnectionBudget,
}

impl Default for DownstreamLimits {
    fn default() -> Self {
        Self {
            max_connections_per_listener: 10_000,
            admin_max_connections: 1024,
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            budget: ConnectionBudget::new(15_000),
        }
    }
}

impl DownstreamLimits {
    /// The accept-time limits of a traffic listener. The idle timeout is set per
    /// connection from the listener's HCM (see [`crate::http::serve_connection`]).
    pub fn traffic(&self) -> ListenerLimits {
        ListenerLimits::new(self.max_connections_per_listener, self.header_read_timeout)
    }

    /// The limits of the admin and health servers (HTTP/1 only: the header-read timeout
    /// also closes connections idle between requests).
    pub fn admin(&self) -> ListenerLimits {
        ListenerLimits::new(self.admin_max_connections, self.header_read_timeout)
    }
}
