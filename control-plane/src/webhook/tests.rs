//! Unit tests of the admission decision: no server, no TLS.

use serde_json::{Value, json};

use super::*;
use weft_injector::InjectConfig;

fn gvk(api_version: &str, kind: &str) -> Value {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    json!({"group": group, "version": version, "kind": kind})
}

/// An AdmissionReview as the API server sends it.
fn admission(operation: &str, object: Option<Value>, old: Option<Value>) -> Value {
    let source = object
        .as_ref()
        .or(old.as_ref())
        .cloned()
        .unwrap_or(json!({}));
    let api_version = source["apiVersion"]
        .as_str()
        .unwrap_or("networking.istio.io/v1");
    let kind = source["kind"].as_str().unwrap_or("VirtualService");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b6c1c56-0000-4000-8000-000000000001",
            "kind": gvk(api_version, kind),
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": source["metadata"]["name"].as_str().unwrap_or_default(),
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    })
}

fn decide(operation: &str, object: Value) -> AdmissionResponse {
    let parsed: AdmissionReview<DynamicObject> =
        serde_json::from_value(admission(operation, Some(object), None)).expect("review");
    review(&parsed).response
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

fn vs(http: Value) -> Value {
    object(
        "VirtualService",
        "reviews",
        json!({"hosts": ["reviews"], "http": http}),
    )
}

fn dr(spec: Value) -> Value {
    object("DestinationRule", "reviews", spec)
}

fn se(spec: Value) -> Value {
    object("ServiceEntry", "external", spec)
}

fn we(spec: Value) -> Value {
    object("WorkloadEntry", "vm-1", spec)
}

fn route(host: &str) -> Value {
    json!([{"destination": {"host": host}}])
}

/// Invalid objects: (what, object, a field path the message must name).
fn invalid_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "weights that are all 0",
            vs(json!([{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 0},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0},
            ]}])),
            "spec.http[0].route: total destination weight = 0",
        ),
        (
            "a regex that does not compile",
            vs(json!([{"match": [{"uri": {"regex": "(unclosed"}}], "route": route("reviews")}])),
            "spec.http[0].match[0].uri",
        ),
        (
            "a bad duration",
            vs(json!([{"timeout": "5 parsecs", "route": route("reviews")}])),
            "spec.http[0].timeout",
        ),
        (
            "a negative duration",
            vs(json!([{"timeout": "-1s", "route": route("reviews")}])),
            "spec.http[0].timeout",
        ),
        (
            "redirect together with route",
            vs(json!([{"redirect": {"uri": "/v2"}, "route": route("reviews")}])),
            "spec.http[0]",
        ),
        (
            "a header name with a space",
            vs(
                json!([{"match": [{"headers": {"x user": {"exact": "jason"}}}], "route": route("reviews")}]),
            ),
            "spec.http[0].match[0].headers",
        ),
        (
            "an unknown field",
            vs(json!([{"route": [{"destination": {"hots": "reviews"}}]}])),
            "spec.http[0].route[0].destination.hots",
        ),
        (
            "a bad direct response status",
            vs(json!([{"directResponse": {"status": 999}}])),
            "spec.http[0].directResponse.status",
        ),
        (
            "a wildcard inside a host name",
            object(
                "VirtualService",
                "reviews",
                json!({"hosts": ["rev*iews"], "http": [{"route": route("reviews")}]}),
            ),
            "spec.hosts[0]",
        ),
        (
            "an upper-case object name",
            object(
                "VirtualService",
                "Reviews",
                json!({"hosts": ["reviews"], "http": [{"route": route("reviews")}]}),
            ),
            "metadata.name",
        ),
        (
            "duplicate subset names",
            dr(json!({"host": "reviews", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v1", "labels": {"version": "v2"}},
            ]})),
            "spec.subsets[1].name",
        ),
        (
            "a bad enum value",
            dr(
                json!({"host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}),
            ),
            "spec.trafficPolicy.loadBalancer.simple",
        ),
        (
            "a DestinationRule without host",
            dr(json!({"subsets": [{"name": "v1", "labels": {"version": "v1"}}]})),
            "spec.host",
        ),
        (
            "a ServiceEntry with a wildcard host",
            se(json!({"hosts": ["*"], "resolution": "DNS"})),
            "spec.hosts[0]",
        ),
        (
            "a DNS_ROUND_ROBIN ServiceEntry with two endpoints",
            se(
                json!({"hosts": ["api.example.com"], "resolution": "DNS_ROUND_ROBIN",
                      "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
                      "endpoints": [{"address": "a.example.com"}, {"address": "b.example.com"}]}),
            ),
            // The CRD's CEL rule sits on the spec, so the API server and Weft name the spec.
            "spec: DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        ),
        (
            "a bad resolution",
            se(json!({"hosts": ["api.example.com"], "resolution": "MAGIC",
                      "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]})),
            "spec.resolution",
        ),
        (
            "a WorkloadEntry port out of range",
            we(json!({"address": "10.0.0.5", "ports": {"http": 70000}})),
            "spec.ports",
        ),
        (
            "a WorkloadEntry without address",
            we(json!({"labels": {"app": "vm"}})),
            "spec: Address is required",
        ),
    ]
}

#[test]
fn denies_invalid_objects_naming_the_field() {
    let cases = invalid_cases();
    assert!(cases.len() >= 15);
    for (what, object, path) in cases {
        for operation in ["CREATE", "UPDATE"] {
            let response = decide(operation, object.clone());
            assert!(!response.allowed, "{what} ({operation}) was allowed");
            assert_eq!(response.uid, "0b6c1c56-0000-4000-8000-000000000001");
            assert_eq!(response.result.code, 400, "{what}");
            let message = &response.result.message;
            assert!(
                message.lines().any(|line| line.starts_with(path)),
                "{what}: no line starts with {path:?}:\n{message}"
            );
            // Every line is `field.path: reason`.
            assert!(
                message.lines().all(|line| line.contains(": ")),
                "{what}: {message}"
            );
        }
    }
}

#[test]
fn every_error_is_listed_one_per_line() {
    let response = decide(
        "CREATE",
        vs(json!([
            {"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 0},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0},
            ]},
            {"directResponse": {"status": 999}},
        ])),
    );
    assert!(!response.allowed);
    let lines: Vec<&str> = response.result.message.lines().collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("spec.http[0].route: total destination weight")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("spec.http[1].directResponse")),
        "{lines:?}"
    );
}

#[test]
fn allows_valid_objects_and_edge_cases() {
    let valid = [
        vs(json!([{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25},
        ]}])),
        // A single destination without weight; the smallest timeout.
        vs(json!([{"timeout": "1ms", "route": route("reviews")}])),
        vs(
            json!([{"match": [{"uri": {"regex": "^/api/v[0-9]+/.*$"}}, {"headers": {"x-user": {"exact": "jason"}}}],
                   "route": route("reviews")}]),
        ),
        vs(json!([{"redirect": {"uri": "/v2", "authority": "new"}}])),
        dr(
            json!({"host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
                  "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                              {"name": "v2", "labels": {"version": "v2"}}]}),
        ),
        // Only a host: nothing else is required.
        dr(json!({"host": "*.example.com"})),
        se(json!({"hosts": ["api.example.com"], "resolution": "DNS",
                  "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]})),
        // STATIC with a workloadSelector instead of endpoints.
        se(json!({"hosts": ["vm.internal"], "resolution": "STATIC",
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                  "workloadSelector": {"labels": {"app": "vm"}}})),
        we(json!({"address": "10.0.0.5", "ports": {"http": 8080}, "labels": {"app": "vm"}})),
    ];
    for object in valid {
        let response = decide("CREATE", object.clone());
        assert!(
            response.allowed,
            "{object}\ndenied: {}",
            response.result.message
        );
    }
    // The namespace comes from the request when the object does not carry one.
    let mut object = dr(json!({"host": "reviews"}));
    object["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    assert!(decide("CREATE", object).allowed);
    // Server-populated metadata (as in an UPDATE) is accepted.
    let mut object = dr(json!({"host": "reviews"}));
    object["metadata"] = json!({
        "name": "reviews", "namespace": "default", "uid": "x", "resourceVersion": "42",
        "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    });
    object["status"] = json!({"observedGeneration": 3});
    assert!(decide("UPDATE", object).allowed);
}

#[test]
fn delete_is_always_allowed() {
    let invalid = invalid_cases().remove(0).1;
    let parsed: AdmissionReview<DynamicObject> =
        serde_json::from_value(admission("DELETE", None, Some(invalid))).expect("review");
    let response = review(&parsed).response;
    assert!(response.allowed);
    assert_eq!(response.uid, "0b6c1c56-0000-4000-8000-000000000001");
}

#[test]
fn unknown_kinds_are_allowed() {
    let object = json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "anything", "namespace": "default"},
        "spec": {"whatever": [1, 2, 3]},
    });
    assert!(decide("CREATE", object).allowed);
    let object = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": "XL"},
    });
    assert!(decide("CREATE", object).allowed);
}

#[test]
fn http_layer() {
    let metrics = WebhookMetrics::default();
    let body = serde_json::to_vec(&admission(
        "CREATE",
        Some(invalid_cases().remove(0).1),
        None,
    ))
    .expect("json");
    let response = handle(
        &Method::POST,
        VALIDATE_PATH,
        &body,
        &InjectConfig::default(),
        &WebhookMetrics::default(),
    );
    assert_eq!(response.status(), StatusCode::OK);
    let body = futures::executor::block_on(response.into_body().collect())
        .expect("body")
        .to_bytes();
    let value: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(value["kind"], "AdmissionReview");
    assert_eq!(
        value["response"]["uid"],
        "0b6c1c56-0000-4000-8000-000000000001"
    );
    assert_eq!(value["response"]["allowed"], false);
    assert_eq!(value["response"]["status"]["code"], 400);
    assert_eq!(
        value["response"]["status"]["message"],
        "spec.http[0].route: total destination weight = 0"
    );

    assert_eq!(
        handle(
            &Method::GET,
            "/ready",
            b"",
            &InjectConfig::default(),
            &metrics
        )
        .status(),
        StatusCode::OK
    );
    assert_eq!(
        handle(
            &Method::POST,
            VALIDATE_PATH,
            b"{not json",
            &InjectConfig::default(),
            &metrics
        )
        .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        handle(
            &Method::GET,
            VALIDATE_PATH,
            b"",
            &InjectConfig::default(),
            &metrics
        )
        .status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        handle(
            &Method::GET,
            "/nope",
            b"",
            &InjectConfig::default(),
            &metrics
        )
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn missing_certificate_files_are_named() {
    let err = tls::start(tls::CertSource::Files {
        cert: "/no/such/cert.pem".into(),
        key: "/no/such/key.pem".into(),
        poll: tls::FILE_POLL,
    })
    .err()
    .expect("missing");
    assert!(err.to_string().contains("/no/such/cert.pem"), "{err}");
}

#[test]
fn security_kinds_are_validated_too() {
    let policy = |spec: Value| {
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "policy", "namespace": "default"},
            "spec": spec,
        })
    };
    let response = decide("CREATE", policy(json!({"action": "PERMIT"})));
    assert!(!response.allowed);
    assert!(
        response.result.message.starts_with("spec.action"),
        "{}",
        response.result.message
    );
    let response = decide("UPDATE", policy(json!({"action": "CUSTOM", "rules": [{}]})));
    assert!(!response.allowed);
    assert!(
        response.result.message.starts_with("spec.provider"),
        "{}",
        response.result.message
    );
    let response = decide(
        "CREATE",
        policy(
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}),
        ),
    );
    assert!(response.allowed, "{}", response.result.message);
}

#[test]
fn local_rate_limits_are_validated_too() {
    let limit = |spec: Value| {
        json!({
            "apiVersion": "ratelimit.weft.io/v1alpha1",
            "kind": "LocalRateLimit",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": spec,
        })
    };
    let response = decide(
        "CREATE",
        limit(json!({"rules": [{"name": "login", "limit": {"requests": 5, "per": "10ms"}}]})),
    );
    assert!(!response.allowed);
    assert!(
        response
            .result
            .message
            .starts_with("spec.rules[0].limit.per: must be at least 50ms"),
        "{}",
        response.result.message
    );
    let response = decide(
        "UPDATE",
        limit(json!({"limit": {"requests": 1, "per": "1s", "burts": 2}})),
    );
    assert!(!response.allowed);
    assert!(
        response.result.message.contains("burts"),
        "{}",
        response.result.message
    );
    let response = decide(
        "CREATE",
        limit(
            json!({"selector": {"matchLabels": {"app": "reviews"}}, "limit": {"requests": 100, "per": "1s", "burst": 200}}),
        ),
    );
    assert!(response.allowed, "{}", response.result.message);
}

/// The `/metrics` text of the webhooks' metrics alone.
fn scrape(metrics: &WebhookMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

/// A request as hyper hands it to the webhook, with its declared length.
fn request(method: Method, path: &str, body: Vec<u8>, declared: usize) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_LENGTH, declared)
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

fn post(path: &str, review: &Value) -> Request<Full<Bytes>> {
    let body = serde_json::to_vec(review).expect("json");
    let length = body.len();
    request(Method::POST, path, body, length)
}

/// A pod review as the API server sends it to `/inject`.
fn pod_review(operation: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "operation": operation, "namespace": "shop", "name": "",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"generateName": "web-", "annotations": annotations},
                       "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
        },
    })
}

#[tokio::test]
async fn every_call_is_counted_once_by_outcome_and_timed() {
    let metrics = WebhookMetrics::default();
    let budget = Arc::new(Semaphore::new(BODY_BUDGET));
    let inject = InjectConfig::default();
    let valid = admission(
        "CREATE",
        Some(vs(json!([{"route": route("reviews")}]))),
        None,
    );
    let invalid = admission("CREATE", Some(invalid_cases().remove(0).1), None);
    let envoy_filter = admission(
        "CREATE",
        Some(
            json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                    "metadata": {"name": "f", "namespace": "default"}, "spec": {}}),
        ),
        None,
    );
    let delete = admission("DELETE", None, Some(invalid_cases().remove(0).1));
    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let too_large = || request(Method::POST, VALIDATE_PATH, Vec::new(), MAX_BODY + 1);
    let mut calls = vec![
        post(VALIDATE_PATH, &valid),
        post(VALIDATE_PATH, &valid),
        post(VALIDATE_PATH, &envoy_filter),
        post(VALIDATE_PATH, &invalid),
        post(VALIDATE_PATH, &invalid),
        post(VALIDATE_PATH, &invalid),
        post(VALIDATE_PATH, &delete),
        post(VALIDATE_PATH, &no_request),
        request(Method::POST, VALIDATE_PATH, b"{not json".to_vec(), 9),
        request(Method::POST, VALIDATE_PATH, Vec::new(), 0),
        request(Method::GET, VALIDATE_PATH, Vec::new(), 0),
        too_large(),
    ];
    let opted_out = json!({"sidecar.istio.io/inject": "false"});
    let bad_port = json!({"traffic.sidecar.istio.io/includeInboundPorts": "http"});
    calls.extend([
        post(INJECT_PATH, &pod_review("CREATE", json!({}))),
        post(INJECT_PATH, &pod_review("CREATE", json!({}))),
        post(INJECT_PATH, &pod_review("CREATE", opted_out)),
        post(INJECT_PATH, &pod_review("UPDATE", json!({}))),
        post(INJECT_PATH, &pod_review("CREATE", bad_port)),
        request(Method::POST, INJECT_PATH, b"[]".to_vec(), 2),
        request(Method::GET, INJECT_PATH, Vec::new(), 0),
        request(Method::POST, INJECT_PATH, Vec::new(), MAX_BODY + 1),
        // Not a webhook: neither counted nor timed.
        request(Method::GET, "/ready", Vec::new(), 0),
        request(Method::GET, "/nope", Vec::new(), 0),
    ]);
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(
            respond(call, &budget, &inject, &metrics)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [
            200, 200, 200, 200, 200, 200, 200, 200, 400, 400, 405, 413, 200, 200, 200, 200, 200,
            400, 405, 413, 200, 404
        ]
    );

    let text = scrape(&metrics);
    let vs = r#"group="networking.istio.io",version="v1",resource="virtualservices""#;
    let expected = [
        "# TYPE galley_validation_passed counter".to_string(),
        format!("galley_validation_passed{{{vs}}} 2"),
        r#"galley_validation_passed{group="networking.istio.io",version="v1alpha3",resource="envoyfilters"} 1"#.to_string(),
        "# TYPE galley_validation_failed counter".to_string(),
        format!(r#"galley_validation_failed{{{vs},reason="invalid_resource"}} 3"#),
        format!(r#"galley_validation_failed{{{vs},reason="unsupported_operation"}} 1"#),
        r#"galley_validation_failed{group="",version="",resource="",reason="yaml_decode_error"} 3"#.to_string(),
        r#"galley_validation_http_error{status="400"} 2"#.to_string(),
        r#"galley_validation_http_error{status="405"} 1"#.to_string(),
        r#"galley_validation_http_error{status="413"} 1"#.to_string(),
        "# TYPE sidecar_injection_requests counter".to_string(),
        "sidecar_injection_requests_total 8".to_string(),
        "sidecar_injection_success_total 2".to_string(),
        "sidecar_injection_skip_total 2".to_string(),
        "sidecar_injection_failure_total 4".to_string(),
        "sidecar_injection_time_seconds_count 8".to_string(),
        r#"weft_webhook_request_duration_seconds_count{webhook="validate"} 12"#.to_string(),
        r#"weft_webhook_request_duration_seconds_count{webhook="inject"} 8"#.to_string(),
    ];
    for line in &expected {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // Nothing else was counted: every passed/failed/http_error sample is one listed above.
    let counted = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(counted("galley_validation_passed{"), 2, "{text}");
    assert_eq!(counted("galley_validation_failed{"), 3, "{text}");
    assert_eq!(counted("galley_validation_http_error{"), 3, "{text}");
}
