//! Fuzz target: the admission webhook's request handler, `webhook::handle(POST, /validate, body)`.
//!
//! Seeds: `crates/fuzz/corpus/webhook/` (CREATE, UPDATE with the old object, DELETE, an invalid
//! object, a kind weft does not model, no request) and an AdmissionReview (CREATE, UPDATE) around
//! every object of a modelled kind in the Istio samples and API examples. Inputs are the reviews
//! mutated as JSON trees (mostly inside the object) or as raw bytes. Checked: no panic or hang;
//! the answer is either a 4xx with a message or a 200 whose body is an AdmissionReview response
//! (`apiVersion`/`kind` echoed, `uid` of the request, `allowed`; a denial has code 400 and a
//! message), of a size proportionate to the input, and each webhook counted the call exactly
//! once in its metrics. The run must see allowed, denied and 4xx.
//!
//! Default budget 2 s; a long run:
//! `WEFT_FUZZ_SECONDS=600 cargo test --release -p weft-controller --test fuzz_webhook`.

use http_body_util::BodyExt as _;
use hyper::Method;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};
use weft_api::Kind;
use weft_controller::injection::INJECT_PATH;
use weft_controller::webhook::metrics::WebhookMetrics;
use weft_controller::webhook::{VALIDATE_PATH, handle};
use weft_fuzz::json::Documents;
use weft_fuzz::raw::below;
use weft_fuzz::{Fuzz, Tally, corpus};
use weft_injector::InjectConfig;

#[test]
fn fuzz_webhook() {
    let mut fuzz = Fuzz::new("webhook").default_seconds(2.0);
    let mut objects: Vec<(String, Value)> = Vec::new();
    for (file, text) in corpus::istio_yaml_files(256 * 1024) {
        for (i, doc) in corpus::yaml_documents(&text).into_iter().enumerate() {
            objects.push((format!("istio/{file} document {i}"), doc));
        }
    }
    for (label, text) in corpus::istio_proto_examples() {
        for (i, doc) in corpus::yaml_documents(&text).into_iter().enumerate() {
            objects.push((format!("istio/{label} document {i}"), doc));
        }
    }
    for (n, (label, object)) in objects.into_iter().filter(|(_, o)| modelled(o)).enumerate() {
        let operation = if n % 2 == 0 { "CREATE" } else { "UPDATE" };
        let review = admission_review(n, operation, object);
        fuzz.seed(format!("{operation} {label}"), review.to_string());
    }

    let documents = Documents::new(
        fuzz.seeds()
            .iter()
            .filter_map(|s| serde_json::from_slice(&s.bytes).ok())
            .collect(),
    )
    .json_only();
    let outcomes = Tally::new();
    let seen = outcomes.clone();
    let summary = fuzz.run(
        move |rng, seeds| {
            let index = below(rng, documents.values.len());
            documents.mutate(rng, index, seeds)
        },
        move |input| {
            let outcome = check(input)?;
            seen.add(outcome, 1);
            Ok(())
        },
    );
    println!("fuzz_webhook: {outcomes:?}");
    for outcome in ["allowed", "denied", "4xx"] {
        assert!(
            outcomes.count(outcome) > 0,
            "no input was {outcome} in {} inputs: {outcomes:?}",
            summary.iterations
        );
    }
}

fn modelled(object: &Value) -> bool {
    object["kind"].as_str().and_then(Kind::parse).is_some()
}

/// An `admission.k8s.io/v1` review of `object` as the API server sends it.
fn admission_review(n: usize, operation: &str, object: Value) -> Value {
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let old = (operation == "UPDATE").then(|| object.clone());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-4000-8000-{n:012}"),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"].as_str().unwrap_or_default(),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "fuzz"},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    })
}

/// The sum of the samples of `name` (every label set) in `text`.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each webhook counted the one call it got exactly once, in one outcome.
fn counted_once(metrics: &WebhookMetrics) -> Result<(), String> {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| e.to_string())?;
    let validated =
        total(&text, "galley_validation_passed") + total(&text, "galley_validation_failed");
    let injected = ["success", "skip", "failure"]
        .iter()
        .map(|outcome| total(&text, &format!("sidecar_injection_{outcome}_total")))
        .sum::<f64>();
    let requests = total(&text, "sidecar_injection_requests_total");
    if validated != 1.0 || injected != 1.0 || requests != 1.0 {
        return Err(format!("one call each, counted as:\n{text}"));
    }
    Ok(())
}

/// Runs one request through the handler; the outcome (`allowed`, `denied`, `4xx`) or why the
/// answer is wrong.
fn check(input: &[u8]) -> Result<&'static str, String> {
    let metrics = WebhookMetrics::default();
    // The same bytes as a pod review for the injector: a JSON answer or a 4xx with a
    // message, never a panic or a 5xx.
    let injected = handle(
        &Method::POST,
        INJECT_PATH,
        input,
        &InjectConfig::default(),
        &metrics,
    );
    let status = injected.status();
    let body = futures::executor::block_on(injected.into_body().collect())
        .map_err(|e| format!("cannot read the injector's answer: {e}"))?
        .to_bytes();
    if !(status == hyper::StatusCode::OK || status.is_client_error() && !body.is_empty()) {
        return Err(format!(
            "injector: status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let response = handle(
        &Method::POST,
        VALIDATE_PATH,
        input,
        &InjectConfig::default(),
        &metrics,
    );
    counted_once(&metrics)?;
    let status = response.status();
    let body = futures::executor::block_on(response.into_body().collect())
        .map_err(|e| format!("cannot read the answer: {e}"))?
        .to_bytes();
    if body.len() > 16 * input.len() + 64 * 1024 {
        return Err(format!(
            "a {}-byte answer to a {}-byte review",
            body.len(),
            input.len()
        ));
    }
    if status.is_client_error() {
        if body.is_empty() {
            return Err(format!("{status} without a message"));
        }
        return Ok("4xx");
    }
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let answer: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "200 with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    // The handler's own decoding of the review: a 200 means it decoded.
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(input)
        .map_err(|e| format!("200 for a review that does not decode ({e}): {answer}"))?;
    // The review's own apiVersion and kind are echoed; a review without a request (nothing to
    // answer) gets the v1 ones.
    let expected_types = match &review.request {
        Some(_) if !review.types.api_version.is_empty() => (
            review.types.api_version.as_str(),
            review.types.kind.as_str(),
        ),
        _ => ("admission.k8s.io/v1", "AdmissionReview"),
    };
    if (answer["apiVersion"].as_str(), answer["kind"].as_str())
        != (Some(expected_types.0), Some(expected_types.1))
    {
        return Err(format!(
            "the answer's apiVersion/kind are not the review's {expected_types:?}: {answer}"
        ));
    }
    let response = &answer["response"];
    let Some(allowed) = response["allowed"].as_bool() else {
        return Err(format!("no response.allowed in {answer}"));
    };
    let request_uid = review.request.as_ref().map(|r| r.uid.as_str());
    if request_uid.is_some() && response["uid"].as_str() != request_uid {
        return Err(format!(
            "response.uid {} is not the request's {request_uid:?}",
            response["uid"]
        ));
    }
    if allowed {
        return Ok("allowed");
    }
    let message = response["status"]["message"].as_str().unwrap_or_default();
    if message.trim().is_empty() {
        return Err(format!("a denial without a message: {answer}"));
    }
    let code = response["status"]["code"].as_u64();
    if review.request.is_some() && code != Some(400) {
        return Err(format!("a denial with code {code:?}, not 400: {answer}"));
    }
    Ok("denied")
}
