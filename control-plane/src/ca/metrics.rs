//! The CA's metrics under istiod's `citadel_server_*` names, read at each scrape: the request
//! counters of [`CaStats`], and the expiry of the CA in use (which follows root rotation).
//!
//! ```text
//!  CaStats (counters, no _total suffix, as istiod's)      citadel_server_csr_count, …
//!  watch<CertificateAuthority> (the CA now in use) ─► citadel_server_root_cert_expiry_timestamp
//!                                                     citadel_server_root_cert_expiry_seconds
//!                                                     citadel_server_cert_chain_expiry_timestamp
//!                                                     citadel_server_cert_chain_expiry_seconds
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;
use weft_identity::CertificateAuthority;

use super::CaStats;

/// The CA's counters and the expiry of the CA in use, as one collector.
#[derive(Debug)]
pub(super) struct CaMetrics {
    pub(super) stats: Arc<CaStats>,
    pub(super) ca: watch::Receiver<Arc<CertificateAuthority>>,
}

/// Unix seconds of `time` (negative before 1970).
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// istiod's four expiry gauges for `ca` at `now`: (name, help, value).
pub(super) fn expiry_gauges(
    ca: &CertificateAuthority,
    now: SystemTime,
) -> [(&'static str, &'static str, i64); 4] {
    let now = unix_seconds(now);
    let root = unix_seconds(ca.root_info().not_after);
    let chain = unix_seconds(ca.chain_not_after());
    [
        (
            "citadel_server_root_cert_expiry_timestamp",
            "Unix time, in seconds, when the CA's signing root certificate expires",
            root,
        ),
        (
            "citadel_server_root_cert_expiry_seconds",
            "Seconds until the CA's signing root certificate expires (negative: expired)",
            root.saturating_sub(now),
        ),
        (
            "citadel_server_cert_chain_expiry_timestamp",
            "Unix time, in seconds, when the CA's signing chain (ca-cert.pem, intermediates, root) expires: its earliest notAfter",
            chain,
        ),
        (
            "citadel_server_cert_chain_expiry_seconds",
            "Seconds until the CA's signing chain expires (negative: expired)",
            chain.saturating_sub(now),
        ),
    ]
}

impl Collector for CaMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = &self.stats;
        let issued = stats.issued.load(Relaxed);
        for (name, help, value) in [
            (
                "citadel_server_csr_count",
                "Certificate signing requests received",
                issued + stats.refused.load(Relaxed),
            ),
            (
                "citadel_server_success_cert_issuance_count",
                "Workload certificates issued",
                issued,
            ),
            (
                "citadel_server_authentication_failure_count",
                "Requests refused for their credentials (no token, a bad or expired one, or the token reviewer unavailable)",
                stats.unauthenticated.load(Relaxed),
            ),
            (
                "citadel_server_id_extraction_err_count",
                "Requests refused because the CSR's identity is not the caller's",
                stats.identity_mismatch.load(Relaxed),
            ),
            (
                "citadel_server_csr_parsing_err_count",
                "Requests refused as invalid (the CSR, or the lifetime asked for)",
                stats.invalid.load(Relaxed),
            ),
            (
                "citadel_server_csr_sign_err_count",
                "Requests whose signing failed",
                stats.sign_failed.load(Relaxed),
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            // A gauge's sample line is the bare name: istiod's counters have no suffix.
            metric.encode_gauge(&i64::try_from(value).unwrap_or(i64::MAX))?;
        }
        // The CA in use now: a rotated CA shows at the next scrape.
        let ca = self.ca.borrow().clone();
        for (name, help, value) in expiry_gauges(&ca, SystemTime::now()) {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&value)?;
        }
        Ok(())
    }
}
