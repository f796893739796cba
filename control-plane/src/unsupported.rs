//! Fields Weft accepts but does not translate yet (the proxy does not implement them):
//! each present one becomes a warning naming the object and the field path. A check of one
//! object at a time; endpoints that cannot be sent (which depend on the ServiceEntry that
//! selects them) are reported by the model builder.

use weft_api::ConfigObject;
use weft_api::networking::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRule, LoadBalancerSettings, ServiceEntry,
    Sidecar, SimpleLb, TlsMode, TrafficPolicy, VirtualService,
};
use weft_api::security::{AuthorizationAction, AuthorizationPolicy};

use crate::object::{ObjectKey, Warning};

const IGNORED: &str = "not supported yet; ignored";

/// The unsupported fields present in one object.
pub fn fields(key: &ObjectKey, object: &ConfigObject) -> Vec<Warning> {
    let mut found = Vec::new();
    match object {
        ConfigObject::VirtualService(resource) => virtual_service(&resource.spec, &mut found),
        ConfigObject::DestinationRule(resource) => destination_rule(&resource.spec, &mut found),
        ConfigObject::ServiceEntry(resource) => service_entry(&resource.spec, &mut found),
        ConfigObject::WorkloadEntry(_) => {}
        // Translated whole (inbound mTLS mode: model::security::peer_authentication).
        ConfigObject::PeerAuthentication(_) => {}
        ConfigObject::AuthorizationPolicy(resource) => {
            authorization_policy(&resource.spec, &mut found);
        }
        ConfigObject::RequestAuthentication(resource) => {
            let spec = &resource.spec;
            policy_target(
                spec.target_ref.is_some(),
                spec.target_refs.len(),
                &mut found,
            );
        }
        ConfigObject::Gateway(_) => found.push((
            String::new(),
            "Gateway resources are not supported yet; ignored".to_string(),
        )),
        // Translated: egress hosts and the outbound traffic policy (model::sidecar).
        ConfigObject::Sidecar(resource) => sidecar(&resource.spec, &mut found),
        // Kinds weft-api models that the controller does not translate (yet).
        #[allow(unreachable_patterns)]
        other => found.push((
            String::new(),
            format!("{} resources are not supported yet; ignored", other.kind()),
        )),
    }
    found
        .into_iter()
        .map(|(path, message)| Warning {
            object: key.clone(),
            path,
            message,
        })
        .collect()
}

type Found = Vec<(String, String)>;

fn note(found: &mut Found, present: bool, path: String) {
    if present {
        found.push((path, IGNORED.to_string()));
    }
}

fn virtual_service(vs: &VirtualService, found: &mut Found) {
    if !vs.applies_to_mesh() {
        // Gateway routes are not served at all yet.
        found.push((
            "spec.gateways".to_string(),
            "gateways are not supported yet; this VirtualService (no \"mesh\" gateway) is ignored"
                .to_string(),
        ));
        return;
    }
    export_to(&vs.export_to, found);
    note(found, !vs.tcp.is_empty(), "spec.tcp".to_string());
    note(found, !vs.tls.is_empty(), "spec.tls".to_string());
    for (index, http) in vs.http.iter().enumerate() {
        let path = format!("spec.http[{index}]");
        note(found, http.mirror.is_some(), format!("{path}.mirror"));
        note(found, !http.mirrors.is_empty(), format!("{path}.mirrors"));
        note(
            found,
            http.mirror_percent.is_some(),
            format!("{path}.mirrorPercent"),
        );
        note(
            found,
            http.mirror_percentage.is_some(),
            format!("{path}.mirrorPercentage"),
        );
        note(
            found,
            http.cors_policy.is_some(),
            format!("{path}.corsPolicy"),
        );
        note(found, http.delegate.is_some(), format!("{path}.delegate"));
        if let Some(rewrite) = &http.rewrite {
            note(
                found,
                rewrite.uri_regex_rewrite.is_some(),
                format!("{path}.rewrite.uriRegexRewrite"),
            );
        }
        if http.route.len() > 1 {
            // Header operations per destination are translated; a per-destination
            // authority is not (Envoy's weighted clusters carry no host rewrite we apply).
            for (dest, destination) in http.route.iter().enumerate() {
                let sets_authority = destination
                    .headers
                    .as_ref()
                    .and_then(|h| h.request.as_ref())
                    .is_some_and(|ops| {
                        ops.set.keys().chain(ops.add.keys()).any(|key| {
                            key.eq_ignore_ascii_case(":authority")
                                || key.eq_ignore_ascii_case("host")
                        })
                    });
                note(
                    found,
                    sets_authority,
                    format!("{path}.route[{dest}].headers.request (authority)"),
                );
            }
        }
        for (index, matching) in http.r#match.iter().enumerate() {
            note(
                found,
                matching.stat_prefix.is_some(),
                format!("{path}.match[{index}].statPrefix"),
            );
        }
    }
}

fn destination_rule(dr: &DestinationRule, found: &mut Found) {
    if let Some(policy) = &dr.traffic_policy {
        traffic_policy(policy, "spec.trafficPolicy", found);
    }
    for (index, subset) in dr.subsets.iter().enumerate() {
        if let Some(policy) = &subset.traffic_policy {
            traffic_policy(
                policy,
                &format!("spec.subsets[{index}].trafficPolicy"),
                found,
            );
        }
    }
    note(
        found,
        dr.workload_selector.is_some(),
        "spec.workloadSelector".to_string(),
    );
}

fn traffic_policy(policy: &TrafficPolicy, path: &str, found: &mut Found) {
    settings(
        Settings {
            load_balancer: policy.load_balancer.as_ref(),
            connection_pool: policy.connection_pool.as_ref(),
            outlier_detection: policy.outlier_detection.is_some(),
            tls: policy.tls.as_ref(),
        },
        path,
        found,
    );
    note(found, policy.tunnel.is_some(), format!("{path}.tunnel"));
    note(
        found,
        policy.proxy_protocol.is_some(),
        format!("{path}.proxyProtocol"),
    );
    for (index, level) in policy.port_level_settings.iter().enumerate() {
        settings(
            Settings {
                load_balancer: level.load_balancer.as_ref(),
                connection_pool: level.connection_pool.as_ref(),
                outlier_detection: level.outlier_detection.is_some(),
                tls: level.tls.as_ref(),
            },
            &format!("{path}.portLevelSettings[{index}]"),
            found,
        );
    }
}

/// The settings shared by a traffic policy and its port-level settings.
struct Settings<'a> {
    load_balancer: Option<&'a LoadBalancerSettings>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    outlier_detection: bool,
    tls: Option<&'a ClientTlsSettings>,
}

fn settings(settings: Settings<'_>, path: &str, found: &mut Found) {
    if let Some(lb) = settings.load_balancer {
        let lb_path = format!("{path}.loadBalancer");
        if lb.consistent_hash.is_some() {
            found.push((
                format!("{lb_path}.consistentHash"),
                "not supported yet; ignored (LEAST_REQUEST is used)".to_string(),
            ));
        }
        if lb.simple == Some(SimpleLb::Passthrough) {
            found.push((
                format!("{lb_path}.simple"),
                "PASSTHROUGH is not supported yet; ignored (LEAST_REQUEST is used)".to_string(),
            ));
        }
        note(
            found,
            lb.locality_lb_setting.is_some(),
            format!("{lb_path}.localityLbSetting"),
        );
        note(
            found,
            lb.warmup_duration_secs.is_some(),
            format!("{lb_path}.warmupDurationSecs"),
        );
        note(found, lb.warmup.is_some(), format!("{lb_path}.warmup"));
    }
    if let Some(pool) = settings.connection_pool {
        let pool_path = format!("{path}.connectionPool");
        if let Some(http) = &pool.http {
            // maxRetries is translated (the cluster's circuit_breakers.max_retries).
            let http_path = format!("{pool_path}.http");
            note(
                found,
                http.http1_max_pending_requests.is_some(),
                format!("{http_path}.http1MaxPendingRequests"),
            );
            note(
                found,
                http.http2_max_requests.is_some(),
                format!("{http_path}.http2MaxRequests"),
            );
            note(
                found,
                http.max_requests_per_connection.is_some(),
                format!("{http_path}.maxRequestsPerConnection"),
            );
            note(
                found,
                http.idle_timeout.is_some(),
                format!("{http_path}.idleTimeout"),
            );
            note(
                found,
                http.h2_upgrade_policy.is_some(),
                format!("{http_path}.h2UpgradePolicy"),
            );
            note(
                found,
                http.use_client_protocol,
                format!("{http_path}.useClientProtocol"),
            );
            note(
                found,
                http.max_concurrent_streams.is_some(),
                format!("{http_path}.maxConcurrentStreams"),
            );
        }
        if let Some(tcp) = &pool.tcp {
            note(
                found,
                tcp.max_connections.is_some(),
                format!("{pool_path}.tcp.maxConnections"),
            );
            note(
                found,
                tcp.tcp_keepalive.is_some(),
                format!("{pool_path}.tcp.tcpKeepalive"),
            );
            note(
                found,
                tcp.max_connection_duration.is_some(),
                format!("{pool_path}.tcp.maxConnectionDuration"),
            );
            note(
                found,
                tcp.idle_timeout.is_some(),
                format!("{pool_path}.tcp.idleTimeout"),
            );
        }
    }
    note(
        found,
        settings.outlier_detection,
        format!("{path}.outlierDetection"),
    );
    if let Some(tls) = settings.tls {
        client_tls(tls, &format!("{path}.tls"), found);
    }
}

/// Upstream TLS is translated (xds::tls), except the parts sidecars cannot use yet.
fn client_tls(tls: &ClientTlsSettings, path: &str, found: &mut Found) {
    let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let mode = istio_name(&tls.mode);
    let originates = matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual);
    let unused = || format!("ignored with mode {mode} (as in Istio)");
    if set(&tls.credential_name) {
        let message = if originates {
            let without = if tls.mode == TlsMode::Mutual {
                "without a client certificate, verifying the server against the system roots"
            } else {
                "verifying the server against the system roots"
            };
            format!(
                "not supported yet for sidecars (no secret is fetched); {mode} TLS is originated {without}"
            )
        } else {
            unused()
        };
        found.push((format!("{path}.credentialName"), message));
    }
    if set(&tls.ca_crl) {
        let message = if originates {
            "not supported yet; ignored (the revocation list is not checked)".to_string()
        } else {
            unused()
        };
        found.push((format!("{path}.caCrl"), message));
    }
}

fn authorization_policy(policy: &AuthorizationPolicy, found: &mut Found) {
    policy_target(policy.target_ref.is_some(), policy.target_refs.len(), found);
    if policy.action == Some(AuthorizationAction::Custom) {
        let provider = policy
            .provider
            .as_ref()
            .map_or(String::new(), |p| format!(" (provider {:?})", p.name));
        found.push((
            "spec.action".to_string(),
            format!(
                "CUSTOM{provider} is not supported yet (no ext_authz); the policy is enforced as a DENY of every request its rules match"
            ),
        ));
    }
}

/// `targetRef`/`targetRefs` (attachment to gateways and services) is not supported until
/// gateways are: such a policy applies to no workload.
fn policy_target(target_ref: bool, target_refs: usize, found: &mut Found) {
    let message = "attaching a policy to a Gateway or Service is not supported yet; this policy applies to nothing";
    if target_ref {
        found.push(("spec.targetRef".to_string(), message.to_string()));
    }
    if target_refs > 0 {
        found.push(("spec.targetRefs".to_string(), message.to_string()));
    }
}

fn service_entry(entry: &ServiceEntry, found: &mut Found) {
    export_to(&entry.export_to, found);
}

/// A Sidecar's `egress[].hosts` and `outboundTrafficPolicy.mode` are translated; its listeners'
/// ports, binds and capture modes, its ingress listeners, connection pool and egress proxy are
/// not (the proxy keeps its default listeners and sends unknown traffic to the passthrough).
fn sidecar(sidecar: &Sidecar, found: &mut Found) {
    for index in 0..sidecar.ingress.len() {
        found.push((
            format!("spec.ingress[{index}]"),
            "not supported yet; ignored (inbound ports come from the services the workload serves)"
                .to_string(),
        ));
    }
    for (index, egress) in sidecar.egress.iter().enumerate() {
        let path = format!("spec.egress[{index}]");
        if egress.port.is_some() {
            found.push((
                format!("{path}.port"),
                "not supported yet; ignored (the hosts are visible on every port)".to_string(),
            ));
        }
        note(
            found,
            egress.bind.as_deref().is_some_and(|bind| !bind.is_empty()),
            format!("{path}.bind"),
        );
        note(
            found,
            egress.capture_mode.is_some(),
            format!("{path}.captureMode"),
        );
    }
    note(
        found,
        sidecar.inbound_connection_pool.is_some(),
        "spec.inboundConnectionPool".to_string(),
    );
    if let Some(policy) = &sidecar.outbound_traffic_policy
        && policy.egress_proxy.is_some()
    {
        found.push((
            "spec.outboundTrafficPolicy.egressProxy".to_string(),
            "not supported yet; ignored (unknown destinations are reached directly)".to_string(),
        ));
    }
}

/// An enum value as Istio spells it in YAML (`ISTIO_MUTUAL`).
fn istio_name<T: serde::Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{value:?}"),
    }
}

/// `exportTo` other than everywhere: every object is visible everywhere for now.
fn export_to(export_to: &[String], found: &mut Found) {
    if !export_to.is_empty() && !export_to.iter().any(|to| to == "*") {
        found.push((
            "spec.exportTo".to_string(),
            "not supported yet; ignored (the object is visible to every namespace)".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{SERVICES, model_from_yaml};

    fn paths(yaml: &str) -> Vec<String> {
        let model = model_from_yaml(&format!("{SERVICES}\n---\n{yaml}"));
        model
            .warnings
            .iter()
            .filter(|w| w.message.contains("not supported"))
            .map(|w| format!("{} {}", w.object, w.path))
            .collect()
    }

    #[test]
    fn virtual_service_fields() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  exportTo: ["."]
  http:
  - route: [{destination: {host: ratings}}]
    retries: {attempts: 2}
    fault: {abort: {httpStatus: 500, percentage: {value: 10}}}
    mirror: {host: details.other.svc.cluster.local}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    rewrite: {uriRegexRewrite: {match: "^/a(.*)", rewrite: "/b\\1"}}
  tcp:
  - route: [{destination: {host: ratings}}]
"#,
        );
        for expected in [
            "VirtualService default/ratings spec.exportTo",
            "VirtualService default/ratings spec.tcp",
            "VirtualService default/ratings spec.http[0].mirror",
            "VirtualService default/ratings spec.http[0].corsPolicy",
            "VirtualService default/ratings spec.http[0].rewrite.uriRegexRewrite",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected} in {found:#?}"
            );
        }
        // Translated: retries and faults.
        assert!(
            !found
                .iter()
                .any(|f| f.contains(".retries") || f.contains(".fault")),
            "{found:#?}"
        );
    }

    #[test]
    fn destination_rule_and_service_entry_fields() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    outlierDetection: {consecutive5xxErrors: 3}
    tls: {mode: ISTIO_MUTUAL}
    connectionPool: {http: {http2MaxRequests: 10, maxRetries: 4}, tcp: {maxConnections: 5, connectTimeout: 1s}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"#,
        );
        for expected in [
            "DestinationRule default/ratings spec.trafficPolicy.loadBalancer.consistentHash",
            "DestinationRule default/ratings spec.trafficPolicy.outlierDetection",
            "DestinationRule default/ratings spec.trafficPolicy.connectionPool.http.http2MaxRequests",
            "DestinationRule default/ratings spec.trafficPolicy.connectionPool.tcp.maxConnections",
            "DestinationRule default/ratings spec.subsets[0].trafficPolicy.loadBalancer.simple",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected} in {found:#?}"
            );
        }
        assert!(!found.iter().any(|f| f.contains("connectTimeout")));
        assert!(
            !found.iter().any(|f| f.contains("maxRetries")),
            "translated: {found:#?}"
        );
        // Upstream TLS is translated (xds::tls).
        assert!(!found.iter().any(|f| f.contains(".tls")), "{found:#?}");
        // DNS resolution of the hosts themselves is translated (a STRICT_DNS cluster).
        assert!(
            !found.iter().any(|f| f.contains("ServiceEntry")),
            "{found:#?}"
        );
    }

    #[test]
    fn client_tls_fields_sidecars_cannot_use() {
        let model = model_from_yaml(&format!(
            r#"{SERVICES}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: default}}
spec:
  host: ratings
  trafficPolicy:
    tls: {{mode: SIMPLE, credentialName: ratings-ca}}
    portLevelSettings:
    - port: {{number: 9080}}
      tls: {{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, caCrl: /crl.pem}}
  subsets:
  - name: v1
    labels: {{version: v1}}
    trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL, credentialName: unused, caCrl: /unused.pem}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [api.example.com]
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  resolution: DNS
  subjectAltNames: [api.example.com]
"#
        ));
        let found: Vec<String> = model
            .warnings
            .iter()
            .filter(|w| w.path.contains("tls") || w.path.contains("subjectAltNames"))
            .map(|w| format!("{} {}: {}", w.object, w.path, w.message))
            .collect();
        let dr = "DestinationRule default/ratings spec";
        assert_eq!(
            found,
            [
                format!(
                    "{dr}.subsets[0].trafficPolicy.tls.caCrl: ignored with mode ISTIO_MUTUAL (as in Istio)"
                ),
                format!(
                    "{dr}.subsets[0].trafficPolicy.tls.credentialName: ignored with mode ISTIO_MUTUAL (as in Istio)"
                ),
                format!(
                    "{dr}.trafficPolicy.portLevelSettings[0].tls.caCrl: not supported yet; ignored (the revocation list is not checked)"
                ),
                format!(
                    "{dr}.trafficPolicy.tls.credentialName: not supported yet for sidecars (no secret is fetched); SIMPLE TLS is originated verifying the server against the system roots"
                ),
            ]
        );
    }
}
