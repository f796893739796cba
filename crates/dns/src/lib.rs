//! The sidecar's DNS proxy, as Istio's: mesh names answered from a name table, the rest
//! forwarded to the pod's resolv.conf servers.
//!
//! ```text
//!  xDS ─► watch<Arc<NameTable>> ─┐
//!  /etc/resolv.conf ─► ResolvConf ┼─► DnsServer::bind(addr, …) ─► run(shutdown)
//!  DnsConfig (limits, timeouts) ──┘        UDP + TCP on one port (15053 in the proxy)
//! ```
//!
//! Modules: `table` decides what is a mesh name, `message` reads queries and builds
//! answers, `upstream` forwards, `server` runs the UDP and TCP loops, `resolv_conf` reads
//! the pod's resolver config, `stats` counts.

mod message;
mod resolv_conf;
mod server;
mod stats;
mod table;
mod upstream;

pub use resolv_conf::{DNS_PORT, ResolvConf, ResolvConfError};
pub use server::{DnsConfig, DnsError, DnsServer};
pub use stats::{DnsStats, DnsStatsSnapshot};
pub use table::{NameEntry, NameTable, Resolution, TableError};
