//! A TCP connection's access log line (the `tcp_proxy`'s `access_log`): what `tcp.rs` learns as
//! the connection goes, written once when it ends, whether it was proxied or refused.
//!
//! ```text
//!  tcp.rs: accepted ─► TcpLog::new (start, addresses, SNI, the client's identity)
//!    RBAC denied │ NC │ UH │ UF │ copied until closed ─► TcpEnd (flags, cluster, upstream,
//!    bytes of the app, termination details) ─► write: Entry { tcp: true } per access log
//! ```

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::{AccessLogs, Entry};
use crate::error::ResponseFlags;

/// The start of a connection's line; `None` when its chain does not log.
#[derive(Debug)]
pub struct TcpLog<'a> {
    logs: &'a AccessLogs,
    start: SystemTime,
    clock: Instant,
    remote: SocketAddr,
    local: SocketAddr,
    sni: Option<&'a str>,
    principal: Option<&'a str>,
}

/// How a connection ended.
#[derive(Debug, Default)]
pub struct TcpEnd<'a> {
    pub flags: ResponseFlags,
    pub cluster: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    pub upstream_local: Option<SocketAddr>,
    /// The server's identity (its certificate's URI SAN).
    pub upstream_peer: Option<&'a str>,
    /// Bytes of the app from and to the downstream (never the metadata exchange's).
    pub received: u64,
    pub sent: u64,
    /// Why the proxy closed it (`rbac_access_denied_matched_policy[…]`).
    pub termination: Option<&'a str>,
    /// Why the upstream TLS failed.
    pub failure: Option<&'a str>,
}

impl<'a> TcpLog<'a> {
    /// A connection from `remote` to `local` (its original destination) starting now.
    pub fn new(
        logs: &'a AccessLogs,
        remote: SocketAddr,
        local: SocketAddr,
        sni: Option<&'a str>,
        principal: Option<&'a str>,
    ) -> Option<Self> {
        (!logs.is_empty()).then(|| Self {
            logs,
            start: SystemTime::now(),
            clock: Instant::now(),
            remote,
            local,
            sni,
            principal,
        })
    }

    /// One line per access log whose filter lets the connection through.
    pub fn write(&self, end: &TcpEnd<'_>) {
        let entry = entry(
            self.start,
            self.clock.elapsed(),
            (self.remote, self.local),
            self.sni,
            self.principal,
            end,
        );
        for log in self.logs.iter() {
            log.log(&entry);
        }
    }
}

/// A TCP connection as access log lines and metric label expressions read it: from `remote` to
/// `local` (its original destination), started at `start`, `duration` so far.
pub fn entry<'a>(
    start: SystemTime,
    duration: std::time::Duration,
    (remote, local): (SocketAddr, SocketAddr),
    sni: Option<&'a str>,
    principal: Option<&'a str>,
    end: &TcpEnd<'a>,
) -> Entry<'a> {
    Entry {
        tcp: true,
        start,
        duration,
        request: None,
        response_headers: None,
        code: 0,
        flags: end.flags,
        grpc_status: None,
        bytes_received: end.received,
        bytes_sent: end.sent,
        upstream_host: end.upstream,
        via_upstream: false,
        upstream_cluster: end.cluster,
        route_name: None,
        downstream_local: local,
        downstream_remote: remote,
        sni,
        downstream_peer: principal,
        upstream_peer: end.upstream_peer,
        trace_id: None,
        termination: end.termination,
        upstream_local: end.upstream_local,
        upstream_failure: end.failure,
    }
}
