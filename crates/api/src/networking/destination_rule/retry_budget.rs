//! DestinationRule retry budget: how much retrying a destination allows.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{AnyDuration, Duration};
use crate::validation::{FieldError, Path, Validate};

/// A limit on retries in relation to the requests to the destination (Istio's
/// `trafficPolicy.retryBudget`; Weft counts it over a window, see docs/ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries as a percentage of requests (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Retries always allowed, whatever the traffic (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
    /// The window requests are counted over (no 1 ms floor: `0s` means the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<AnyDuration>")]
    pub budget_interval: Option<Duration>,
}

impl Validate for RetryBudget {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(p) = self.percent
            && (p.is_nan() || !(0.0..=100.0).contains(&p))
        {
            path.field("percent")
                .push(errors, format!("percent {p} is not in range 0..100"));
        }
        // `budgetInterval` has no rule in Istio (no CEL rule, no Go check): `0s` means the
        // default window.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_percent_and_interval() {
        let budget: RetryBudget =
            serde_yaml::from_str("{percent: 25, minRetryConcurrency: 5, budgetInterval: 1s}")
                .unwrap();
        let mut errors = Vec::new();
        budget.validate(&Path::root("retryBudget"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(budget.percent, Some(25.0));
        let bad: RetryBudget = serde_yaml::from_str("{percent: 120}").unwrap();
        bad.validate(&Path::root("retryBudget"), &mut errors);
        assert!(
            errors[0].to_string().contains("retryBudget.percent"),
            "{errors:?}"
        );
    }
}
