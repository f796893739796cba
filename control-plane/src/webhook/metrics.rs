//! The admission webhooks' metrics, under istiod's names and labels where istiod has them,
//! so that Istio's control-plane dashboards read Weft's unchanged.
//!
//! ```text
//!  POST /validate, body read ─► galley_validation_passed{group,version,resource}
//!                               galley_validation_failed{group,version,resource,reason}
//!  /validate answered with an HTTP error instead of a review ─► galley_validation_http_error{status}
//!  /inject, every request    ─► sidecar_injection_requests_total, and exactly one of
//!                               sidecar_injection_success_total (injected),
//!                               sidecar_injection_skip_total (allowed unchanged),
//!                               sidecar_injection_failure_total (refused, malformed, HTTP error)
//!  every /validate, /inject request ─► weft_webhook_request_duration_seconds{webhook} (Weft's own)
//!  every /inject request            ─► sidecar_injection_time_seconds (istiod's)
//! ```
//!
//! istiod's `galley_*` counters have no `_total` suffix ([`BareCounter`]); its
//! `sidecar_injection_*_total` ones carry it in their names (prometheus-client's `Counter`,
//! registered without it, adds it back). Like istiod, a review of an operation other than
//! CREATE or UPDATE is counted failed (`unsupported_operation`) although it is allowed. Unlike
//! istiod: kinds weft-api does not model are allowed and counted passed (istiod validates
//! `telemetry.istio.io`, which the chart sends, so its operators see those as passed); a body
//! that is not an AdmissionReview is counted failed (`yaml_decode_error`, empty resource
//! labels); a skipped or refused pod is not also counted a success (istiod counts every
//! review it answers as one), so requests = success + skip + failure.

use std::time::Duration;

use kube::core::gvk::GroupVersionResource;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use weft_xds::metrics::BareCounter;

use crate::injection::InjectionOutcome;

/// Seconds; from a millisecond (a pod review is a few) to the API server's 10 s timeout.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Which webhook a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    Validate,
    Inject,
}

impl Webhook {
    /// The webhook served at `path`, if any.
    pub fn of(path: &str) -> Option<Self> {
        match path {
            super::VALIDATE_PATH => Some(Self::Validate),
            crate::injection::INJECT_PATH => Some(Self::Inject),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::Inject => "inject",
        }
    }
}

/// Why a review did not pass: istiod's `reason` values (istiod also has `unknown_type` and
/// `crd_conversion_error`; Weft allows kinds it does not model, and tells a field that does
/// not decode from one that does not validate by path, not by reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Neither CREATE nor UPDATE (allowed, as istiod).
    UnsupportedOperation,
    /// The body is not an AdmissionReview, or the review has no request or no object.
    YamlDecodeError,
    /// The object is invalid: denied.
    InvalidResource,
}

impl FailureReason {
    fn label(self) -> &'static str {
        match self {
            Self::UnsupportedOperation => "unsupported_operation",
            Self::YamlDecodeError => "yaml_decode_error",
            Self::InvalidResource => "invalid_resource",
        }
    }
}

/// What the validating webhook decided about one review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationOutcome {
    Passed,
    Failed(FailureReason),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    group: String,
    version: String,
    resource: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabels {
    group: String,
    version: String,
    resource: String,
    reason: &'static str,
}

type StatusLabels = [(&'static str, String); 1];
type WebhookLabels = [(&'static str, &'static str); 1];

/// The webhooks' metrics; one per controller, shared by every connection.
#[derive(Debug)]
pub struct WebhookMetrics {
    validation_passed: Family<ResourceLabels, BareCounter>,
    validation_failed: Family<FailedLabels, BareCounter>,
    validation_http_error: Family<StatusLabels, BareCounter>,
    injection_requests: Counter,
    injection_success: Counter,
    injection_skip: Counter,
    injection_failure: Counter,
    injection_time: Histogram,
    duration: Family<WebhookLabels, Histogram, fn() -> Histogram>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS.iter().copied())
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self {
            validation_passed: Family::default(),
            validation_failed: Family::default(),
            validation_http_error: Family::default(),
            injection_requests: Counter::default(),
            injection_success: Counter::default(),
            injection_skip: Counter::default(),
            injection_failure: Counter::default(),
            injection_time: duration_histogram(),
            duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl WebhookMetrics {
    /// Adds the metrics to `registry` (to be used without a prefix: istiod's names).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "galley_validation_passed",
            "Reviews the validating webhook passed, by the object's resource",
            self.validation_passed.clone(),
        );
        registry.register(
            "galley_validation_failed",
            "Reviews the validating webhook did not pass, by the object's resource and reason (invalid_resource: denied)",
            self.validation_failed.clone(),
        );
        registry.register(
            "galley_validation_http_error",
            "Requests to /validate answered with an HTTP error instead of an AdmissionReview, by status",
            self.validation_http_error.clone(),
        );
        // prometheus-client adds `_total` to counters: istiod's names end with it.
        registry.register(
            "sidecar_injection_requests",
            "Requests to the sidecar-injection webhook",
            self.injection_requests.clone(),
        );
        registry.register(
            "sidecar_injection_success",
            "Pods the sidecar-injection webhook injected",
            self.injection_success.clone(),
        );
        registry.register(
            "sidecar_injection_skip",
            "Pods the sidecar-injection webhook allowed unchanged (opted out, or not a pod creation)",
            self.injection_skip.clone(),
        );
        registry.register(
            "sidecar_injection_failure",
            "Sidecar-injection requests that failed: a pod refused, a malformed review, an HTTP error",
            self.injection_failure.clone(),
        );
        registry.register(
            "sidecar_injection_time_seconds",
            "Seconds to answer a sidecar-injection request, from its headers to the reply",
            self.injection_time.clone(),
        );
        registry.register(
            "weft_webhook_request_duration_seconds",
            "Seconds to answer an admission webhook request, from its headers to the reply, by webhook (validate, inject)",
            self.duration.clone(),
        );
    }

    /// Counts one review of the validating webhook; `resource` is the request's (none when
    /// the body was not a review with a request).
    pub fn validated(&self, resource: Option<&GroupVersionResource>, outcome: ValidationOutcome) {
        let (group, version, resource) = resource.map_or_else(Default::default, |r| {
            (r.group.clone(), r.version.clone(), r.resource.clone())
        });
        match outcome {
            ValidationOutcome::Passed => self
                .validation_passed
                .get_or_create(&ResourceLabels {
                    group,
                    version,
                    resource,
                })
                .inc(),
            ValidationOutcome::Failed(reason) => self
                .validation_failed
                .get_or_create(&FailedLabels {
                    group,
                    version,
                    resource,
                    reason: reason.label(),
                })
                .inc(),
        }
    }

    /// Counts a `/validate` reply that is an HTTP error rather than an AdmissionReview.
    pub fn validation_http_error(&self, status: hyper::StatusCode) {
        self.validation_http_error
            .get_or_create(&[("status", status.as_u16().to_string())])
            .inc();
    }

    /// Counts one request to the injection webhook, by its outcome.
    pub fn injection(&self, outcome: InjectionOutcome) {
        self.injection_requests.inc();
        match outcome {
            InjectionOutcome::Injected => self.injection_success.inc(),
            InjectionOutcome::Skipped => self.injection_skip.inc(),
            InjectionOutcome::Failed => self.injection_failure.inc(),
        };
    }

    /// Counts a request to `webhook` answered with the HTTP error `status` before a review
    /// was read from it (a body too large or too slow, a method other than POST).
    pub fn http_error(&self, webhook: Webhook, status: hyper::StatusCode) {
        match webhook {
            Webhook::Validate => self.validation_http_error(status),
            Webhook::Inject => self.injection(InjectionOutcome::Failed),
        }
    }

    /// Records how long one request to `webhook` took to answer.
    pub fn answered(&self, webhook: Webhook, took: Duration) {
        let seconds = took.as_secs_f64();
        self.duration
            .get_or_create(&[("webhook", webhook.label())])
            .observe(seconds);
        if webhook == Webhook::Inject {
            self.injection_time.observe(seconds);
        }
    }
}
