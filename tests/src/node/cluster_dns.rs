//! The test node's cluster DNS at `198.18.<N>.254:53` (UDP and TCP), the address the pods'
//! `resolv.conf` names: `<service>.<namespace>.svc.cluster.local` → the Service's ClusterIP,
//! served by the workspace's own DNS server (`weft-dns`) from a table [`super::services`]
//! keeps up to date.
//!
//! ```text
//!  pod's resolver (search <ns>.svc.cluster.local …, ndots:5)
//!    ─► DnsServer on 198.18.<N>.254:53 ─► a Service's name: its ClusterIP (A), none (AAAA)
//!                                      └► anything else ─► the upstream on 127.0.0.1: NXDOMAIN
//! ```
//!
//! The upstream answers every query NXDOMAIN at once, so a resolver walking its search list
//! moves on without waiting, and no query ever leaves the machine. Not done: headless
//! Services (pod addresses), SRV records, pod names.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use k8s_openapi::api::core::v1::Service;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weft_dns::{DNS_PORT, DnsConfig, DnsError, DnsServer, NameEntry, NameTable, ResolvConf};

/// A running cluster DNS; stops when dropped.
#[derive(Debug)]
pub struct ClusterDns {
    table: watch::Sender<Arc<NameTable>>,
    /// The entries last published.
    names: Vec<NameEntry>,
    shutdown: CancellationToken,
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl ClusterDns {
    /// Serves `address:53` (an address of this host) with no names yet, on the current Tokio
    /// runtime.
    pub async fn start(address: Ipv4Addr) -> Result<Self, DnsError> {
        let shutdown = CancellationToken::new();
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let upstream = UdpSocket::bind(loopback)
            .await
            .map_err(|source| DnsError::Bind {
                addr: loopback,
                transport: "UDP",
                source,
            })?;
        let upstream_addr = upstream.local_addr().map_err(|source| DnsError::Bind {
            addr: loopback,
            transport: "UDP",
            source,
        })?;
        tokio::spawn(answer_nxdomain(upstream, shutdown.clone()));
        let (table, tables) = watch::channel(Arc::new(NameTable::empty()));
        let resolv = ResolvConf {
            nameservers: vec![upstream_addr],
            // The table holds full names only: nothing to take off a query.
            search: Vec::new(),
            ndots: 1,
        };
        let config = DnsConfig {
            upstream_timeout: Duration::from_millis(500),
            forward_timeout: Duration::from_secs(1),
            ..DnsConfig::default()
        };
        let server = DnsServer::bind((address, DNS_PORT).into(), tables, &resolv, config).await?;
        tokio::spawn(server.run(shutdown.clone()));
        Ok(Self {
            table,
            names: Vec::new(),
            shutdown,
        })
    }

    /// Makes the server answer for exactly `services` (from the next query on).
    pub fn update(&mut self, services: &[Service]) {
        let names = names(services);
        if names == self.names {
            return;
        }
        match NameTable::new(names.clone()) {
            Ok(table) => {
                self.table.send_replace(Arc::new(table));
                self.names = names;
            }
            Err(e) => eprintln!("node services: the cluster DNS's names: {e}"),
        }
    }
}

/// `<name>.<namespace>.svc.cluster.local` → ClusterIP for every Service with an IPv4
/// ClusterIP, sorted by name.
pub fn names(services: &[Service]) -> Vec<NameEntry> {
    let mut names: Vec<NameEntry> = services
        .iter()
        .filter_map(|service| {
            let ip: Ipv4Addr = service.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()?;
            Some(NameEntry {
                hostname: format!(
                    "{}.{}.svc.cluster.local",
                    service.metadata.name.as_deref()?,
                    service.metadata.namespace.as_deref()?
                ),
                addresses: vec![IpAddr::V4(ip)],
                alt_names: Vec::new(),
            })
        })
        .collect();
    names.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    names
}

/// The cluster DNS's upstream: NXDOMAIN to every query (what is not a Service's name does
/// not exist here), until `shutdown`.
async fn answer_nxdomain(socket: UdpSocket, shutdown: CancellationToken) {
    let mut buf = vec![0; 4096];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let Ok((len, peer)) = received else {
            return;
        };
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let mut reply = Message::error_msg(
            query.metadata.id,
            query.metadata.op_code,
            ResponseCode::NXDomain,
        );
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.queries = query.queries;
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}
