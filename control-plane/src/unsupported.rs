//! Fields Weft accepts but does not translate yet (the proxy does not implement them):
//! each present one becomes a warning naming the object and the field path. A check of one
//! object at a time; endpoints that cannot be sent (which depend on the ServiceEntry that
//! selects them) are reported by the model builder.

use weft_api::ConfigObject;
use weft_api::networking::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRule, LoadBalancerSettings,
    OutlierDetection, ServiceEntry, Sidecar, SimpleLb, TlsMode, TrafficPolicy, VirtualService,
    WorkloadEntry,
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
        ConfigObject::WorkloadEntry(resource) => {
            endpoint_network(&resource.spec, "spec", &mut found);
        }
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
            for (i, rule) in spec.jwt_rules.iter().enumerate() {
                if !rule.space_delimited_claims.is_empty() {
                    found.push((
                        format!("spec.jwtRules[{i}].spaceDelimitedClaims"),
                        "not supported yet; ignored (claim values are matched whole, never split at spaces)".to_string(),
                    ));
                }
            }
        }
        // Istio uses it for VM auto-registration, which Weft does not do.
        ConfigObject::WorkloadGroup(_) => found.push((
            String::new(),
            "WorkloadGroup resources are not supported yet (Weft does not auto-register VMs); ignored"
                .to_string(),
        )),
        ConfigObject::Gateway(_) => found.push((
            String::new(),
            "Gateway resources are not supported yet; ignored".to_string(),
        )),
        // Translated whole (inbound local rate limit filters: model::ratelimit).
        ConfigObject::LocalRateLimit(_) => {}
        // Access logging translated; the rest is reported by model::telemetry.
        ConfigObject::Telemetry(_) => {}
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
    // `tcp` and `tls` are translated for captured sidecars (xds/capture/l4_routes.rs), except
    // the deprecated `sourceSubnet`, which Istio does not use for sidecars either.
    for (index, tcp) in vs.tcp.iter().enumerate() {
        for (m, matching) in tcp.r#match.iter().enumerate() {
            if matching.source_subnet.is_some() {
                found.push((
                    format!("spec.tcp[{index}].match[{m}].sourceSubnet"),
                    "not supported (deprecated; Istio ignores it for sidecars too); ignored"
                        .to_string(),
                ));
            }
        }
    }
    // Every HTTP route field is translated: mirrors, CORS, uriRegexRewrite, per-destination
    // authorities, statPrefix (xds/routes.rs) and delegation (model/delegate.rs, which reports a
    // missing delegate).
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
            tls: policy.tls.as_ref(),
            connection_pool: policy.connection_pool.as_ref(),
            outlier_detection: policy.outlier_detection.as_ref(),
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
                tls: level.tls.as_ref(),
                connection_pool: level.connection_pool.as_ref(),
                outlier_detection: level.outlier_detection.as_ref(),
            },
            &format!("{path}.portLevelSettings[{index}]"),
            found,
        );
    }
}

/// The settings shared by a traffic policy and its port-level settings.
struct Settings<'a> {
    load_balancer: Option<&'a LoadBalancerSettings>,
    tls: Option<&'a ClientTlsSettings>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    outlier_detection: Option<&'a OutlierDetection>,
}

fn settings(settings: Settings<'_>, path: &str, found: &mut Found) {
    if let Some(pool) = settings.connection_pool {
        note(
            found,
            pool.http
                .as_ref()
                .is_some_and(|h| h.http2_keep_alive.is_some()),
            format!("{path}.connectionPool.http.http2KeepAlive"),
        );
    }
    if let Some(outlier) = settings.outlier_detection {
        note(
            found,
            !outlier.outlier_detection_http_error_codes.is_empty(),
            format!("{path}.outlierDetection.outlierDetectionHttpErrorCodes"),
        );
    }
    if let Some(lb) = settings.load_balancer {
        let lb_path = format!("{path}.loadBalancer");
        note(
            found,
            lb.zone_aware_lb_setting.is_some(),
            format!("{lb_path}.zoneAwareLbSetting"),
        );
        if let Some(cookie) = lb
            .consistent_hash
            .as_ref()
            .and_then(|h| h.http_cookie.as_ref())
        {
            note(
                found,
                !cookie.attributes.is_empty(),
                format!("{lb_path}.consistentHash.httpCookie.attributes"),
            );
        }
        if lb.simple == Some(SimpleLb::Passthrough) {
            found.push((
                format!("{lb_path}.simple"),
                "PASSTHROUGH is not supported for sidecars addressed explicitly (local mode), which use LEAST_REQUEST; sidecars whose traffic is captured apply it".to_string(),
            ));
        }
        // Warmup is translated for ROUND_ROBIN and LEAST_REQUEST, as Istio does.
        if (lb.warmup.is_some() || lb.warmup_duration_secs.is_some())
            && (lb.consistent_hash.is_some()
                || matches!(lb.simple, Some(SimpleLb::Random | SimpleLb::Passthrough)))
        {
            found.push((
                format!("{lb_path}.warmup"),
                "not supported with RANDOM, PASSTHROUGH or consistent hashing (Istio applies it to ROUND_ROBIN and LEAST_REQUEST only); ignored".to_string(),
            ));
        }
    }
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
    for (index, endpoint) in entry.endpoints.iter().enumerate() {
        endpoint_network(endpoint, &format!("spec.endpoints[{index}]"), found);
    }
}

/// The network of an endpoint with an address: every endpoint is taken as reachable directly
/// (an endpoint without an address is reported by the model builder, which does not send it).
fn endpoint_network(entry: &WorkloadEntry, path: &str, found: &mut Found) {
    if !entry.address.is_empty() && entry.network.as_deref().is_some_and(|n| !n.is_empty()) {
        found.push((
            format!("{path}.network"),
            "not supported yet; ignored (the endpoint is taken as reachable directly)".to_string(),
        ));
    }
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
  - match: [{sourceSubnet: 10.0.0.0/8}]
    route: [{destination: {host: ratings}}]
  tls:
  - match: [{sniHosts: [ratings]}]
    route: [{destination: {host: ratings}}]
"#,
        );
        for expected in [
            "VirtualService default/ratings spec.exportTo",
            "VirtualService default/ratings spec.tcp[0].match[0].sourceSubnet",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected} in {found:#?}"
            );
        }
        // Translated: retries, faults, mirrors, CORS, regex rewrites, TCP and TLS routes.
        assert!(
            !found
                .iter()
                .any(|f| f.ends_with("spec.tcp") || f.ends_with("spec.tls")),
            "{found:#?}"
        );
        assert!(
            !found.iter().any(|f| [
                ".retries",
                ".fault",
                ".mirror",
                ".corsPolicy",
                ".uriRegexRewrite"
            ]
            .iter()
            .any(|field| f.contains(field))),
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
    outlierDetection: {consecutive5xxErrors: 3}
    tls: {mode: ISTIO_MUTUAL}
    connectionPool: {http: {http2MaxRequests: 10, maxRetries: 4}, tcp: {maxConnections: 5, connectTimeout: 1s, idleTimeout: 1h}}
    loadBalancer: {consistentHash: {httpHeaderName: x-user}, warmup: {duration: 10s}}
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
            "DestinationRule default/ratings spec.trafficPolicy.loadBalancer.warmup",
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
    fn destination_rule_fields_the_proxy_does_not_act_on() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    connectionPool: {http: {http2KeepAlive: {interval: 10s, timeout: 2s}}}
    outlierDetection: {consecutive5xxErrors: 3, outlierDetectionHttpErrorCodes: [500, 503]}
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 0s, attributes: [{name: SameSite, value: Strict}]}}
      zoneAwareLbSetting: {enabled: true}
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {http: {http2KeepAlive: {interval: 10s, timeout: 2s}}}
"#,
        );
        for expected in [
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive",
            "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes",
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes",
            "spec.trafficPolicy.portLevelSettings[0].connectionPool.http.http2KeepAlive",
        ] {
            let expected = format!("DestinationRule default/ratings {expected}");
            assert!(
                found.contains(&expected),
                "missing {expected} in {found:#?}"
            );
        }
    }

    #[test]
    fn workload_fields() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: default}
spec: {address: 10.0.0.9, network: vm-net, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vms, namespace: default}
spec:
  template: {serviceAccount: ratings}
  probe: {tcpSocket: {port: 9080}}
"#,
        );
        for expected in [
            "WorkloadEntry default/vm spec.network",
            "WorkloadGroup default/vms ",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected:?} in {found:#?}"
            );
        }
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
