//! A cluster's `outlier_detection` and `common_lb_config.healthy_panic_threshold`
//! (DestinationRule `outlierDetection`) → `OutlierConfig`.
//!
//! ```text
//!  consecutive_5xx / _gateway_failure / _local_origin_failure (+ enforcing_* 0 │ 100),
//!  split_external_local_origin_errors, interval, base_ejection_time, max_ejection_time,
//!  max_ejection_percent ─► weft_lb::outlier::Config
//!  healthy_panic_threshold ─► below it, the balancer uses every endpoint (Envoy's panic mode)
//! ```
//!
//! Envoy's other detectors (success rate, failure percentage) are not implemented: a config
//! that enforces them is refused (Istio always turns success rate off).

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use weft_lb::outlier::{Config, ENVOY_DEFAULT_CONSECUTIVE};

use super::{Reason, duration, invalid, reject_leftover, reject_set};

/// Envoy's `healthy_panic_threshold` when a cluster sets none.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;

/// Outlier detection of one cluster, and when the balancer ignores it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    pub detection: Config,
    /// Below this share of endpoints not ejected (percent), every endpoint is used; 0: never.
    pub panic_threshold: f64,
}

/// Converts the cluster's fields; `None` when the cluster has no outlier detection.
pub(super) fn outlier(
    detection: Option<cds::OutlierDetection>,
    common_lb: Option<cds::cluster::CommonLbConfig>,
) -> Result<Option<OutlierConfig>, Reason> {
    let panic_threshold = match common_lb {
        None => DEFAULT_PANIC_THRESHOLD,
        Some(mut common) => {
            let threshold = common
                .healthy_panic_threshold
                .take()
                .map_or(DEFAULT_PANIC_THRESHOLD, |p| p.value);
            if !(0.0..=100.0).contains(&threshold) {
                return Err(invalid(
                    "common_lb_config.healthy_panic_threshold",
                    format!("{threshold} is not in [0, 100]"),
                ));
            }
            reject_leftover(&common, "common_lb_config")
                .map_err(|r| r.within("common_lb_config"))?;
            threshold
        }
    };
    let Some(mut o) = detection else {
        return Ok(None);
    };
    let at = |r: Reason| r.within("outlier_detection");
    let enforced =
        |count: Option<u32>, enforcing: Option<u32>, default_enforcing: u32, field| match enforcing
            .unwrap_or(default_enforcing)
        {
            0 => Ok(None),
            100 => Ok(Some(count.unwrap_or(ENVOY_DEFAULT_CONSECUTIVE)).filter(|n| *n > 0)),
            other => Err(Reason::Unsupported(format!(
                "outlier_detection.{field} {other} (only 0 or 100)"
            ))),
        };
    let value = |v: Option<envoy_types::pb::google::protobuf::UInt32Value>| v.map(|v| v.value);
    let consecutive_5xx = enforced(
        value(o.consecutive_5xx.take()),
        value(o.enforcing_consecutive_5xx.take()),
        100,
        "enforcing_consecutive_5xx",
    )?;
    let consecutive_gateway_failure = enforced(
        value(o.consecutive_gateway_failure.take()),
        value(o.enforcing_consecutive_gateway_failure.take()),
        0,
        "enforcing_consecutive_gateway_failure",
    )?;
    let consecutive_local_origin_failure = enforced(
        value(o.consecutive_local_origin_failure.take()),
        value(o.enforcing_consecutive_local_origin_failure.take()),
        100,
        "enforcing_consecutive_local_origin_failure",
    )?;
    // Success-rate and failure-percentage detection: only "off" is accepted.
    for (field, enforcing, default) in [
        (
            "enforcing_success_rate",
            value(o.enforcing_success_rate.take()),
            100,
        ),
        (
            "enforcing_local_origin_success_rate",
            value(o.enforcing_local_origin_success_rate.take()),
            100,
        ),
        (
            "enforcing_failure_percentage",
            value(o.enforcing_failure_percentage.take()),
            0,
        ),
        (
            "enforcing_failure_percentage_local_origin",
            value(o.enforcing_failure_percentage_local_origin.take()),
            0,
        ),
    ] {
        // Local-origin success rate only runs with split errors.
        let applies =
            field != "enforcing_local_origin_success_rate" || o.split_external_local_origin_errors;
        if applies && enforcing.unwrap_or(default) != 0 {
            return Err(Reason::Unsupported(format!(
                "outlier_detection.{field} (success-rate and failure-percentage detection; set it to 0)"
            )));
        }
    }
    // Their parameters do nothing once they are off.
    o.success_rate_minimum_hosts = None;
    o.success_rate_request_volume = None;
    o.success_rate_stdev_factor = None;
    o.failure_percentage_threshold = None;
    o.failure_percentage_minimum_hosts = None;
    o.failure_percentage_request_volume = None;
    let defaults = Config::default();
    let interval = duration("interval", o.interval.take().as_ref())
        .map_err(at)?
        .unwrap_or(defaults.interval);
    if interval.is_zero() {
        return Err(invalid(
            "outlier_detection.interval",
            "must be greater than 0",
        ));
    }
    let base_ejection_time = duration("base_ejection_time", o.base_ejection_time.take().as_ref())
        .map_err(at)?
        .unwrap_or(defaults.base_ejection_time);
    let max_ejection_time = duration("max_ejection_time", o.max_ejection_time.take().as_ref())
        .map_err(at)?
        .unwrap_or(defaults.max_ejection_time);
    let max_ejection_percent =
        value(o.max_ejection_percent.take()).unwrap_or(defaults.max_ejection_percent);
    let split = std::mem::take(&mut o.split_external_local_origin_errors);
    (|| {
        reject_set!(
            o,
            max_ejection_time_jitter,
            successful_active_health_check_uneject_host,
            monitors
        );
        reject_leftover(&o, "outlier_detection")
    })()
    .map_err(at)?;
    Ok(Some(OutlierConfig {
        detection: Config {
            consecutive_5xx,
            consecutive_gateway_failure,
            consecutive_local_origin_failure: consecutive_local_origin_failure.filter(|_| split),
            split_external_local_origin_errors: split,
            interval,
            base_ejection_time,
            max_ejection_time,
            max_ejection_percent,
            always_eject_one_host: false,
        },
        panic_threshold,
    }))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

    use super::*;

    fn istio(consecutive_5xx: u32, max_percent: u32) -> cds::OutlierDetection {
        cds::OutlierDetection {
            consecutive_5xx: Some(UInt32Value {
                value: consecutive_5xx,
            }),
            enforcing_consecutive_5xx: Some(UInt32Value { value: 100 }),
            enforcing_success_rate: Some(UInt32Value { value: 0 }),
            interval: Some(PbDuration {
                seconds: 1,
                nanos: 0,
            }),
            base_ejection_time: Some(PbDuration {
                seconds: 3,
                nanos: 0,
            }),
            max_ejection_percent: Some(UInt32Value { value: max_percent }),
            ..Default::default()
        }
    }

    #[test]
    fn istios_translation() {
        let common = cds::cluster::CommonLbConfig {
            healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: 0.0,
            }),
            ..Default::default()
        };
        let c = outlier(Some(istio(3, 100)), Some(common)).unwrap().unwrap();
        assert_eq!(c.detection.consecutive_5xx, Some(3));
        assert_eq!(
            c.detection.consecutive_gateway_failure, None,
            "Envoy: not enforced"
        );
        assert_eq!(c.detection.interval.as_secs(), 1);
        assert_eq!(c.detection.base_ejection_time.as_secs(), 3);
        assert_eq!(c.detection.max_ejection_percent, 100);
        assert_eq!(c.panic_threshold, 0.0);
        assert!(outlier(None, None).unwrap().is_none());
    }

    #[test]
    fn envoys_defaults_and_refusals() {
        // An empty message: Envoy's 5 consecutive 5xx, but success rate enforced: refused.
        let err = outlier(Some(cds::OutlierDetection::default()), None).unwrap_err();
        assert!(err.to_string().contains("enforcing_success_rate"), "{err}");
        let mut half = istio(5, 10);
        half.enforcing_consecutive_5xx = Some(UInt32Value { value: 50 });
        assert!(
            outlier(Some(half), None)
                .unwrap_err()
                .to_string()
                .contains("only 0 or 100")
        );
        let mut jitter = istio(5, 10);
        jitter.max_ejection_time_jitter = Some(PbDuration {
            seconds: 1,
            nanos: 0,
        });
        assert!(
            outlier(Some(jitter), None)
                .unwrap_err()
                .to_string()
                .contains("jitter")
        );
        let c = outlier(Some(istio(5, 10)), None).unwrap().unwrap();
        assert_eq!(c.panic_threshold, DEFAULT_PANIC_THRESHOLD);
    }
}
