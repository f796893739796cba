//! The settings of outlier detection, with Envoy's defaults.

use std::time::Duration;

/// The count Envoy uses for `consecutive_5xx`, `consecutive_gateway_failure` and
/// `consecutive_local_origin_failure` when an `OutlierDetection` message leaves them unset.
pub const ENVOY_DEFAULT_CONSECUTIVE: u32 = 5;

/// Outlier detection settings of one cluster, in Envoy's terms.
///
/// A detector ejects only when its threshold is `Some(n)` with `n > 0`. From Envoy's
/// `OutlierDetection` proto: a threshold is `Some(value or 5)` when its enforcing percentage
/// (`enforcing_consecutive_5xx` default 100, `enforcing_consecutive_gateway_failure` default 0,
/// `enforcing_consecutive_local_origin_failure` default 100) is above 0. Percentages strictly
/// between 0 and 100 (a random draw in Envoy) are not modelled; Istio only writes 0 or 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Consecutive 5xx responses that eject a host. Unless local-origin errors are split, a
    /// local-origin failure counts as one too.
    pub consecutive_5xx: Option<u32>,
    /// Consecutive gateway errors (502, 503, 504) that eject a host. Unless local-origin errors
    /// are split, a local-origin failure counts as one too.
    pub consecutive_gateway_failure: Option<u32>,
    /// Consecutive local-origin failures (connect failure, reset, timeout) that eject a host.
    /// Used only when `split_external_local_origin_errors` is set.
    pub consecutive_local_origin_failure: Option<u32>,
    /// Count local-origin failures apart from the responses' status codes.
    pub split_external_local_origin_errors: bool,
    /// How often the caller runs [`sweep`](super::Detector::sweep); a returned host's
    /// multiplier decays once per interval. Envoy's default: 10 s.
    pub interval: Duration,
    /// The first ejection's length; later ones are multiples of it. Envoy's default: 30 s.
    pub base_ejection_time: Duration,
    /// The longest ejection. Envoy's default: 300 s, or `base_ejection_time` if that is
    /// longer; a value below `base_ejection_time` is taken as `base_ejection_time`.
    pub max_ejection_time: Duration,
    /// The largest share of the cluster's hosts that may be ejected at once, in percent
    /// (values above 100 count as 100). Envoy's default: 10.
    pub max_ejection_percent: u32,
    /// Allow one ejection even when `max_ejection_percent` would refuse it (no host ejected
    /// yet). Envoy's `always_eject_one_host`, default false.
    pub always_eject_one_host: bool,
}

impl Default for Config {
    /// Envoy's defaults for the durations and the percentage, with every detector off.
    fn default() -> Self {
        Self {
            consecutive_5xx: None,
            consecutive_gateway_failure: None,
            consecutive_local_origin_failure: None,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one_host: false,
        }
    }
}

impl Config {
    /// Whether any detector can eject a host.
    pub fn is_enabled(&self) -> bool {
        self.threshold_5xx().is_some()
            || self.threshold_gateway().is_some()
            || self.threshold_local_origin().is_some()
    }

    /// How long an ejection lasts when the host's multiplier is `multiplier`:
    /// `base_ejection_time × multiplier`, at most `max_ejection_time`.
    pub fn ejection_time(&self, multiplier: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(multiplier)
            .min(self.effective_max_ejection_time())
    }

    pub(super) fn effective_max_ejection_time(&self) -> Duration {
        self.max_ejection_time.max(self.base_ejection_time)
    }

    pub(super) fn threshold_5xx(&self) -> Option<u32> {
        self.consecutive_5xx.filter(|&n| n > 0)
    }

    pub(super) fn threshold_gateway(&self) -> Option<u32> {
        self.consecutive_gateway_failure.filter(|&n| n > 0)
    }

    pub(super) fn threshold_local_origin(&self) -> Option<u32> {
        if self.split_external_local_origin_errors {
            self.consecutive_local_origin_failure.filter(|&n| n > 0)
        } else {
            None
        }
    }

    /// Whether one more ejection fits: Envoy's `100 × (ejected + 1) / total ≤ max percent`.
    pub(super) fn may_eject(&self, ejected: usize, total: usize) -> bool {
        let wanted = (ejected as u128 + 1) * 100;
        let allowed = u128::from(self.max_ejection_percent.min(100)) * total as u128;
        wanted <= allowed || (self.always_eject_one_host && ejected == 0)
    }
}
