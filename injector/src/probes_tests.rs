//! Probe rewriting: each probe kind, what is kept, named ports, the opt-outs, idempotence and
//! the exact ISTIO_KUBE_APP_PROBERS value.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::inject::{Outcome, inject_pod};

fn pod(annotations: Value, containers: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": containers},
    }))
    .expect("pod")
}

fn app(probes: Value) -> Value {
    let mut container = json!({"name": "app", "image": "x",
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9090}]});
    for (k, v) in probes.as_object().expect("probes") {
        container[k] = v.clone();
    }
    container
}

/// Injects and returns the pod's containers (as JSON) and the proxy's ISTIO_KUBE_APP_PROBERS.
fn injected(p: &mut Pod, cfg: &InjectConfig) -> (Value, Option<String>) {
    assert_eq!(
        inject_pod(p, "default", cfg),
        Ok(Outcome::Injected { warnings: vec![] })
    );
    let spec = p.spec.as_ref().expect("spec");
    let proxy = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == PROXY_CONTAINER)
        .expect("proxy");
    let env = proxy
        .env
        .iter()
        .flatten()
        .find(|e| e.name == APP_PROBERS_ENV)
        .and_then(|e| e.value.clone());
    (serde_json::to_value(&spec.containers).expect("json"), env)
}

fn probers(env: Option<String>) -> Value {
    serde_json::from_str(&env.expect("ISTIO_KUBE_APP_PROBERS")).expect("JSON")
}

#[test]
fn every_probe_kind_goes_through_the_status_port() {
    let cases = [
        (
            "livenessProbe",
            json!({"httpGet": {"path": "/healthz", "port": 8080}}),
            "/app-health/app/livez",
            json!({"httpGet": {"path": "/healthz", "port": 8080}}),
        ),
        (
            "readinessProbe",
            json!({"tcpSocket": {"port": 8080}, "timeoutSeconds": 3}),
            "/app-health/app/readyz",
            json!({"tcpSocket": {"port": 8080}, "timeoutSeconds": 3}),
        ),
        (
            "startupProbe",
            json!({"grpc": {"port": 9090, "service": "shop.Cart"}}),
            "/app-health/app/startupz",
            json!({"grpc": {"port": 9090, "service": "shop.Cart"}}),
        ),
        (
            "readinessProbe",
            json!({"grpc": {"port": 9090}, "timeoutSeconds": 2}),
            "/app-health/app/readyz",
            json!({"grpc": {"port": 9090}, "timeoutSeconds": 2}),
        ),
    ];
    for (field, probe, path, original) in cases {
        let mut p = pod(json!({}), json!([app(json!({field: probe}))]));
        let (containers, env) = injected(&mut p, &InjectConfig::default());
        let mut expected =
            json!({"httpGet": {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}});
        if let Some(t) = probe.get("timeoutSeconds") {
            expected["timeoutSeconds"] = t.clone();
        }
        assert_eq!(containers[0][field], expected, "{field} {probe}");
        assert_eq!(probers(env), json!({path: original}), "{field} {probe}");
    }
}

#[test]
fn timing_fields_are_kept() {
    let timing = json!({"initialDelaySeconds": 5, "periodSeconds": 7, "timeoutSeconds": 2,
        "successThreshold": 1, "failureThreshold": 9, "terminationGracePeriodSeconds": 30});
    let mut probe = timing.clone();
    probe["tcpSocket"] = json!({"port": 8080});
    let mut p = pod(json!({}), json!([app(json!({"livenessProbe": probe}))]));
    let (containers, _) = injected(&mut p, &InjectConfig::default());
    let mut expected = timing;
    expected["httpGet"] =
        json!({"path": "/app-health/app/livez", "port": STATUS_PORT, "scheme": "HTTP"});
    assert_eq!(containers[0]["livenessProbe"], expected);
}

#[test]
fn named_ports_are_resolved_and_http_details_kept() {
    let probe = json!({"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTPS",
        "host": "app.local", "httpHeaders": [{"name": "X-Probe", "value": "1"},
                                              {"name": "Host", "value": "shop"}]}});
    let mut p = pod(
        json!({}),
        json!([app(
            json!({"readinessProbe": probe, "livenessProbe": {"tcpSocket": {"port": "grpc"}}})
        )]),
    );
    let (containers, env) = injected(&mut p, &InjectConfig::default());
    // Kubelet speaks plain HTTP to the proxy, to the pod's IP; the proxy speaks HTTPS to the app.
    assert_eq!(
        containers[0]["readinessProbe"]["httpGet"],
        json!({"path": "/app-health/app/readyz", "port": STATUS_PORT, "scheme": "HTTP"})
    );
    assert_eq!(
        probers(env),
        json!({
            "/app-health/app/readyz": {"httpGet": {"path": "/ready", "port": 8080,
                "scheme": "HTTPS", "host": "app.local",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}, {"name": "Host", "value": "shop"}]}},
            "/app-health/app/livez": {"tcpSocket": {"port": 9090}},
        })
    );
}

#[test]
fn bad_ports_are_refused_with_their_field() {
    let cases = [
        (
            json!([app(
                json!({"readinessProbe": {"httpGet": {"port": "metrics"}}})
            )]),
            "spec.containers[0].readinessProbe.httpGet.port: port \"metrics\" is not a port name of container \"app\"",
        ),
        (
            json!([{"name": "side", "image": "x"},
                   {"name": "web", "image": "x", "startupProbe": {"tcpSocket": {"port": "http"}}}]),
            "spec.containers[1].startupProbe.tcpSocket.port: port \"http\" is not a port name of container \"web\"",
        ),
        (
            json!([app(json!({"livenessProbe": {"grpc": {"port": 70000}}}))]),
            "spec.containers[0].livenessProbe.grpc.port: 70000 is not a port (1-65535)",
        ),
    ];
    for (containers, message) in cases {
        let mut p = pod(json!({}), containers);
        let before = p.clone();
        let err = inject_pod(&mut p, "default", &InjectConfig::default()).expect_err(message);
        assert_eq!(err.to_string(), message);
        assert_eq!(p, before, "a refused pod is not half-injected");
    }
}

#[test]
fn opt_outs_and_exec_probes_leave_probes_alone() {
    let probes = json!({"livenessProbe": {"httpGet": {"path": "/", "port": 8080}},
                        "readinessProbe": {"exec": {"command": ["true"]}}});
    let off = InjectConfig {
        rewrite_app_probes: false,
        ..InjectConfig::default()
    };
    let cases = [
        (
            json!({REWRITE_ANNOTATION: "false"}),
            InjectConfig::default(),
            false,
        ),
        (json!({}), off.clone(), false),
        // The annotation wins over the config, both ways; a non-boolean is ignored.
        (json!({REWRITE_ANNOTATION: "true"}), off.clone(), true),
        (json!({REWRITE_ANNOTATION: "maybe"}), off, false),
        (json!({}), InjectConfig::default(), true),
    ];
    for (annotations, cfg, rewritten) in cases {
        let mut p = pod(annotations.clone(), json!([app(probes.clone())]));
        let original =
            serde_json::to_value(&p.spec.as_ref().expect("spec").containers).expect("json");
        let (containers, env) = injected(&mut p, &cfg);
        // exec probes run in the container: never rewritten.
        assert_eq!(
            containers[0]["readinessProbe"], original[0]["readinessProbe"],
            "{annotations}"
        );
        if rewritten {
            assert_eq!(
                containers[0]["livenessProbe"]["httpGet"]["port"], STATUS_PORT,
                "{annotations}"
            );
            assert_eq!(
                probers(env),
                json!({"/app-health/app/livez": {"httpGet": {"path": "/", "port": 8080}}})
            );
        } else {
            assert_eq!(containers, original, "{annotations}");
            assert_eq!(env, None, "{annotations}");
        }
    }
    // Nothing to rewrite: no environment variable.
    let mut p = pod(
        json!({}),
        json!([app(
            json!({"readinessProbe": {"exec": {"command": ["true"]}}})
        )]),
    );
    assert_eq!(injected(&mut p, &InjectConfig::default()).1, None);
}

#[test]
fn injection_with_probes_is_idempotent() {
    let cfg = InjectConfig::default();
    let mut p = pod(
        json!({}),
        json!([app(
            json!({"livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
                          "readinessProbe": {"tcpSocket": {"port": 8080}}})
        )]),
    );
    injected(&mut p, &cfg);
    let once = p.clone();
    assert_eq!(
        inject_pod(&mut p, "default", &cfg),
        Ok(Outcome::Skipped("already injected"))
    );
    assert_eq!(p, once);
    // Were the rewrite reached again, the rewritten probes would be left as they are.
    let mut spec = p.spec.clone().expect("spec");
    let mut proxy = Container::default();
    let rewrite = plan(&spec).expect("plan");
    rewrite.apply(&mut spec, &mut proxy);
    assert_eq!(Some(spec), once.spec);
    assert_eq!(proxy.env, None);
}

#[test]
fn the_environment_variable_is_istios_json() {
    let mut p = pod(
        json!({}),
        json!([
            app(json!({
                "livenessProbe": {"httpGet": {"path": "/live", "port": "http",
                    "httpHeaders": [{"name": "X-A", "value": "b"}]}, "timeoutSeconds": 1},
                "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 5},
                "startupProbe": {"grpc": {"port": 9090, "service": "s"}},
            })),
            {"name": "sidecar", "image": "y",
             "readinessProbe": {"httpGet": {"path": "/r", "port": 3000, "scheme": "HTTPS"}}},
        ]),
    );
    let (_, env) = injected(&mut p, &InjectConfig::default());
    assert_eq!(
        env.as_deref(),
        Some(concat!(
            r#"{"/app-health/app/livez":{"httpGet":{"httpHeaders":[{"name":"X-A","value":"b"}],"path":"/live","port":8080},"timeoutSeconds":1},"#,
            r#""/app-health/app/readyz":{"tcpSocket":{"port":8080},"timeoutSeconds":5},"#,
            r#""/app-health/app/startupz":{"grpc":{"port":9090,"service":"s"}},"#,
            r#""/app-health/sidecar/readyz":{"httpGet":{"path":"/r","port":3000,"scheme":"HTTPS"}}}"#,
        ))
    );
}
