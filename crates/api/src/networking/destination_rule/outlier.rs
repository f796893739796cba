//! DestinationRule outlier detection (passive health checking).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check_ms_duration;
use crate::de::is_false;
use crate::de::null_default;
use crate::duration::Duration;
use crate::validation::{FieldError, Path, Validate, check, validate_percent_int};

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
    /// The HTTP status codes counted as errors (100..=599; default: the 5xx).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

impl Validate for OutlierDetection {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check_ms_duration(
            &path.field("baseEjectionTime"),
            errors,
            &self.base_ejection_time,
        );
        check_ms_duration(&path.field("interval"), errors, &self.interval);
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
        // `consecutiveErrors` (deprecated) only draws a warning from Istio, whatever its value.
        let cp = path.field("outlierDetectionHttpErrorCodes");
        for (i, code) in self.outlier_detection_http_error_codes.iter().enumerate() {
            if !(100..=599).contains(code) {
                cp.index(i).push(
                    errors,
                    format!("HTTP status code {code} is not in range 100..599"),
                );
            }
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
