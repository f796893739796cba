//! The sidecar's DNS proxy (`--dns-capture`): its servers on the pod's loopback, and their
//! counters on `/stats/prometheus` as `weft_dns_queries_total{result}`.
//!
//! ```text
//!  app ─UDP/TCP 53─► capture ─► 127.0.0.1:15053 │ [::1]:15053 ─► weft-dns: the NDS name table,
//!                                                               else the resolv.conf servers
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;

use crate::Args;

/// Binds the DNS proxy on `127.0.0.1:--dns-port` (UDP and TCP), where the capture rules
/// redirect the pod's IPv4 queries, and on `[::1]` at the same port, where ip6tables sends
/// the IPv6 ones (skipped, with a log line, when the pod has no IPv6 loopback). It answers
/// from `table` and forwards the rest to the servers of `--resolv-conf`. Its TCP
/// connections count against the proxy's connection budget.
pub(crate) async fn start(
    args: &Args,
    table: tokio::sync::watch::Receiver<Arc<weft_dns::NameTable>>,
    limits: &crate::limits::DownstreamLimits,
) -> Result<Vec<weft_dns::DnsServer>, crate::StartError> {
    let resolv = weft_dns::ResolvConf::read(&args.resolv_conf)
        .map_err(|e| crate::StartError::Dns(e.to_string()))?;
    let config = || weft_dns::DnsConfig {
        budget: Some(limits.budget.clone()),
        ..weft_dns::DnsConfig::default()
    };
    let v4 = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, args.dns_port));
    let server = weft_dns::DnsServer::bind(v4, table.clone(), &resolv, config())
        .await
        .map_err(|e| crate::StartError::Dns(e.to_string()))?;
    tracing::info!(
        address = %server.local_addr(),
        upstreams = ?resolv.nameservers,
        search = ?resolv.search,
        "DNS proxy enabled"
    );
    // The same port (a port 0 in tests was resolved by the first bind).
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.local_addr().port()));
    let mut servers = vec![server];
    match weft_dns::DnsServer::bind(v6, table, &resolv, config()).await {
        Ok(server) => servers.push(server),
        Err(err) => tracing::info!(error = %err, "DNS proxy on 127.0.0.1 only: no IPv6 loopback"),
    }
    Ok(servers)
}

/// The DNS servers' counters, read at each scrape (the servers count with atomics of their own).
#[derive(Debug)]
pub(crate) struct Metrics(Vec<weft_dns::DnsStats>);

impl Metrics {
    pub(crate) fn new(stats: Vec<weft_dns::DnsStats>) -> Self {
        Self(stats)
    }

    /// The servers' counters added up, by `result` label.
    fn totals(&self) -> [(&'static str, u64); 5] {
        let mut totals = [
            ("answered_locally", 0),
            ("forwarded", 0),
            ("failed", 0),
            ("rejected", 0),
            ("malformed", 0),
        ];
        for stats in &self.0 {
            let s = stats.snapshot();
            let counts = [
                s.answered_locally,
                s.forwarded,
                s.failed,
                s.rejected,
                s.malformed,
            ];
            for (total, count) in totals.iter_mut().zip(counts) {
                total.1 += count;
            }
        }
        totals
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "dns_queries",
            "DNS queries the sidecar's DNS proxy handled, by result: answered_locally (from the mesh's name table), forwarded (to the pod's resolvers), failed (no resolver answered: SERVFAIL), rejected (too many forwards in flight: SERVFAIL), malformed",
            None,
            counter.metric_type(),
        )?;
        for (result, count) in self.totals() {
            let labels = [("result", result)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn the_counters_are_exported_by_result() {
        let metrics = Metrics::new(vec![weft_dns::DnsStats::default(); 2]);
        let mut registry = Registry::with_prefix("weft");
        registry.register_collector(Box::new(metrics));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for result in [
            "answered_locally",
            "forwarded",
            "failed",
            "rejected",
            "malformed",
        ] {
            let line = format!("weft_dns_queries_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains("# TYPE weft_dns_queries counter"), "{text}");
    }
}
