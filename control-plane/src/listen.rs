//! The controller's listeners (ADS, debug, webhook): bound and served under weft-net's limits.
//!
//! ```text
//!  ADS 15010     max_xds_connections, first byte within header_read_timeout,
//!                HTTP/2 keepalive pings (xds_keepalive_interval 30 s, 10 s to answer)
//!                find dead proxies
//!  debug 15014   max_http_connections, header_read_timeout (HTTP/1.1)
//!  webhook 15017 max_http_connections, TLS handshake 10 s, header_read_timeout,
//!                bodies: ≤ 8 MiB each, ≤ 64 MiB in flight, read within 10 s
//!  all of them   share a budget of three quarters of the open-file limit
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use weft_net::{BoundedListener, ConnectionBudget, ListenerLimits};

use crate::Args;

/// The limits of every listener of the controller, from the flags.
#[derive(Debug, Clone)]
pub struct Limits {
    pub xds: ListenerLimits,
    pub http: ListenerLimits,
    /// Time to send each request's headers on the debug and webhook servers.
    pub header_read_timeout: Option<Duration>,
    pub budget: ConnectionBudget,
}

impl Limits {
    /// Raises the open-file limit and derives the limits from `args`.
    pub fn from_args(args: &Args) -> Self {
        let open_files = weft_net::raise_open_file_limit();
        let header_read_timeout = Some(args.header_read_timeout).filter(|t| !t.is_zero());
        let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Self {
            xds: ListenerLimits::new(count(args.max_xds_connections), header_read_timeout),
            http: ListenerLimits::new(count(args.max_http_connections), header_read_timeout),
            header_read_timeout,
            budget: ConnectionBudget::from_open_file_limit(open_files),
        }
    }

    /// A bounded listener named `name` with `limits`, sharing the process budget.
    pub fn listener(
        &self,
        listener: TcpListener,
        name: &str,
        limits: ListenerLimits,
    ) -> BoundedListener {
        BoundedListener::new(listener, name, limits, Some(self.budget.clone()))
    }
}

/// Binds `address` (`SO_REUSEADDR`: a restarted controller binds at once).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(weft_net::bind(address)?)
}
