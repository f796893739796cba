//! What the detector reports: ejections, counters, per-host status and host counts.

use std::fmt;
use std::time::{Duration, Instant};

/// Which detector ejected a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EjectionKind {
    /// `consecutive_5xx` was reached.
    Consecutive5xx,
    /// `consecutive_gateway_failure` was reached.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure` was reached.
    ConsecutiveLocalOriginFailure,
}

impl EjectionKind {
    /// Envoy's name for it in outlier detection event logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consecutive5xx => "CONSECUTIVE_5XX",
            Self::ConsecutiveGatewayFailure => "CONSECUTIVE_GATEWAY_FAILURE",
            Self::ConsecutiveLocalOriginFailure => "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
        }
    }
}

impl fmt::Display for EjectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ejection that [`Detector::record`](super::Detector::record) just made, with what a log line needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    /// The detector whose threshold was reached.
    pub kind: EjectionKind,
    /// The consecutive count that was reached (the threshold).
    pub consecutive: u32,
    /// How long the host stays out; it returns at the first sweep after that.
    pub duration: Duration,
    /// How many times this host has been ejected, this one included.
    pub times_ejected: u32,
    /// Hosts of the cluster ejected now, this one included.
    pub ejected_hosts: usize,
    /// Hosts in the cluster.
    pub total_hosts: usize,
}

/// Counters of ejection decisions, named after Envoy's `outlier_detection.*` stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ejections made, all kinds.
    pub ejections_enforced_total: u64,
    /// Ejections made by the 5xx detector.
    pub ejections_enforced_consecutive_5xx: u64,
    /// Ejections made by the gateway-failure detector.
    pub ejections_enforced_consecutive_gateway_failure: u64,
    /// Ejections made by the local-origin detector.
    pub ejections_enforced_consecutive_local_origin_failure: u64,
    /// Thresholds reached by the 5xx detector (ejected or not).
    pub ejections_detected_consecutive_5xx: u64,
    /// Thresholds reached by the gateway-failure detector (ejected or not).
    pub ejections_detected_consecutive_gateway_failure: u64,
    /// Thresholds reached by the local-origin detector (ejected or not).
    pub ejections_detected_consecutive_local_origin_failure: u64,
    /// Ejections refused by `max_ejection_percent`.
    pub ejections_overflow: u64,
}

impl Stats {
    pub(super) fn detected(&mut self, kind: EjectionKind) {
        let counter = match kind {
            EjectionKind::Consecutive5xx => &mut self.ejections_detected_consecutive_5xx,
            EjectionKind::ConsecutiveGatewayFailure => {
                &mut self.ejections_detected_consecutive_gateway_failure
            }
            EjectionKind::ConsecutiveLocalOriginFailure => {
                &mut self.ejections_detected_consecutive_local_origin_failure
            }
        };
        *counter = counter.saturating_add(1);
    }

    pub(super) fn enforced(&mut self, kind: EjectionKind) {
        let counter = match kind {
            EjectionKind::Consecutive5xx => &mut self.ejections_enforced_consecutive_5xx,
            EjectionKind::ConsecutiveGatewayFailure => {
                &mut self.ejections_enforced_consecutive_gateway_failure
            }
            EjectionKind::ConsecutiveLocalOriginFailure => {
                &mut self.ejections_enforced_consecutive_local_origin_failure
            }
        };
        *counter = counter.saturating_add(1);
        self.ejections_enforced_total = self.ejections_enforced_total.saturating_add(1);
    }
}

/// The consecutive-error counters of a host at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consecutive {
    /// Consecutive 5xx (and, unless split, local-origin failures).
    pub errors_5xx: u32,
    /// Consecutive gateway errors (and, unless split, local-origin failures).
    pub gateway_failures: u32,
    /// Consecutive local-origin failures (split mode only).
    pub local_origin_failures: u32,
}

/// The detector's view of one host: Envoy's per-host monitor, minus the hot-path counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStatus {
    /// Whether the host is ejected.
    pub ejected: bool,
    /// How many times it has been ejected while in this detector.
    pub times_ejected: u32,
    /// The ejection-time multiplier: the next ejection lasts `base × (multiplier + 1)`.
    pub multiplier: u32,
    /// When it was last ejected.
    pub ejected_at: Option<Instant>,
    /// When it last returned.
    pub returned_at: Option<Instant>,
}

/// How many hosts a detector has, and how many of them are ejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounts {
    /// Hosts in the cluster.
    pub total: usize,
    /// Hosts ejected now.
    pub ejected: usize,
}

impl HostCounts {
    /// Hosts not ejected.
    pub fn healthy(&self) -> usize {
        self.total.saturating_sub(self.ejected)
    }

    /// The share of hosts not ejected, from 0 to 1; 0 for an empty cluster (Envoy counts an
    /// empty host set as 0 % healthy). Below the panic threshold the balancer uses all hosts.
    pub fn healthy_fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.healthy() as f64 / self.total as f64
        }
    }
}
