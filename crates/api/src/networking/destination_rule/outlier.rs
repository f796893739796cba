//! DestinationRule outlier detection (passive health checking).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::is_false;
use crate::duration::Duration;
use crate::validation::{FieldError, Path, Validate, check, check_duration, validate_percent_int};

/// Outlier detection (ejecting failing endpoints).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated: consecutive 502/503/504 before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    /// Separate local-origin failures from upstream ones.
    #[serde(default, skip_serializing_if = "is_false")]
    pub split_external_local_origin_errors: bool,
    /// Consecutive local-origin failures before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive gateway errors (502/503/504) before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx errors before ejection (YAML `consecutive5xxErrors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive5xx_errors: Option<u32>,
    /// Analysis sweep interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum share of endpoints ejected (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    /// Outlier detection turns off below this share of healthy endpoints (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
}

impl Validate for OutlierDetection {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check_duration(
            &path.field("baseEjectionTime"),
            errors,
            &self.base_ejection_time,
        );
        check_duration(&path.field("interval"), errors, &self.interval);
        if !self.split_external_local_origin_errors
            && self
                .consecutive_local_origin_failures
                .is_some_and(|v| v > 0)
        {
            path.field("consecutiveLocalOriginFailures").push(
                errors,
                "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
            );
        }
        if let Some(v) = self.consecutive_errors
            && v < 0
        {
            path.field("consecutiveErrors")
                .push(errors, "consecutiveErrors must be non-negative");
        }
        if let Some(v) = self.max_ejection_percent {
            check(
                &path.field("maxEjectionPercent"),
                errors,
                validate_percent_int(i64::from(v)),
            );
        }
        if let Some(v) = self.min_health_percent {
            check(
                &path.field("minHealthPercent"),
                errors,
                validate_percent_int(i64::from(v)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_err;

    #[test]
    fn outlier_detection() {
        assert_err(
            "host: a\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "0..100",
        );
        assert_err(
            "host: a\ntrafficPolicy: {outlierDetection: {minHealthPercent: -1}}",
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "0..100",
        );
        assert_err(
            "host: a\ntrafficPolicy: {outlierDetection: {interval: 0.1ms}}",
            "spec.trafficPolicy.outlierDetection.interval",
            "1ms",
        );
    }
}
