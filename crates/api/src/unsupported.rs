//! What Weft accepts but its proxies do not act on yet: the fields (and kinds) of an object
//! that are ignored, each with its field path and what happens instead. One check of one
//! object at a time, shared by the controller (which reports each as a warning when it
//! loads the object) and `weftctl analyze` (which lists them before the object is applied).
//! What depends on more than the object (a provider the mesh config does not define, an
//! endpoint without an address) is the controller's to report.

use crate::ConfigObject;
use crate::networking::{
    ClientTlsSettings, ConnectionPoolSettings, CookieAttribute, DestinationRule,
    LoadBalancerSettings, OutlierDetection, ServiceEntry, Sidecar, SimpleLb, TlsMode,
    TrafficPolicy, VirtualService, WorkloadEntry,
};
use crate::security::{AuthorizationAction, AuthorizationPolicy};
use crate::telemetry::Telemetry;

const IGNORED: &str = "not supported yet; ignored";

/// One field Weft ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Its path in the object (`spec.trafficPolicy.tunnel`); empty for the whole object.
    pub path: String,
    /// What is ignored, and what Weft does instead.
    pub message: String,
}

/// The unsupported fields present in one object.
pub fn fields(object: &ConfigObject) -> Vec<Unsupported> {
    let mut found = Vec::new();
    match object {
        ConfigObject::VirtualService(resource) => virtual_service(&resource.spec, &mut found),
        ConfigObject::DestinationRule(resource) => destination_rule(&resource.spec, &mut found),
        ConfigObject::ServiceEntry(resource) => service_entry(&resource.spec, &mut found),
        ConfigObject::WorkloadEntry(resource) => {
            endpoint_network(&resource.spec, "spec", &mut found);
        }
        // Translated whole (the inbound mTLS mode).
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
        // Translated whole (inbound local rate limit filters).
        ConfigObject::LocalRateLimit(_) => {}
        // Access logging, tracing and metrics are translated; the providers a proxy can
        // report to are the controller's to judge (it knows the mesh config's).
        ConfigObject::Telemetry(resource) => telemetry(&resource.spec, &mut found),
        // Translated: egress hosts and the outbound traffic policy.
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
        .map(|(path, message)| Unsupported { path, message })
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
    // `http2KeepAlive` is translated when complete; Istio passes an incomplete one on, which
    // Envoy refuses (no timeout) or acts on by sending no PING (no interval).
    if let Some(keepalive) = settings
        .connection_pool
        .and_then(|pool| pool.http.as_ref())
        .and_then(|http| http.http2_keep_alive.as_ref())
    {
        let keepalive_path = format!("{path}.connectionPool.http.http2KeepAlive");
        for (field, missing) in [
            ("interval", keepalive.interval.is_none()),
            ("timeout", keepalive.timeout.is_none()),
        ] {
            if missing {
                found.push((
                    format!("{keepalive_path}.{field}"),
                    "required when http2KeepAlive is set; without it no PING is sent".to_string(),
                ));
            }
        }
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
            for (i, attribute) in cookie.attributes.iter().enumerate() {
                if !sendable_cookie_attribute(attribute) {
                    found.push((
                        format!("{lb_path}.consistentHash.httpCookie.attributes[{i}]"),
                        "has a control character, which a Set-Cookie header cannot carry; the attribute is left out".to_string(),
                    ));
                }
            }
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

/// Whether a consistent-hash cookie attribute can be written in a `Set-Cookie` header: a name,
/// and no control character (Envoy refuses a route whose attribute has one).
pub fn sendable_cookie_attribute(attribute: &CookieAttribute) -> bool {
    let plain = |text: &str| !text.chars().any(|c| c.is_control() && c != '\t');
    !attribute.name.is_empty()
        && plain(&attribute.name)
        && attribute.value.as_deref().is_none_or(plain)
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

/// Tracing and `targetRefs`; access logging's and metrics' providers are the controller's.
fn telemetry(spec: &Telemetry, found: &mut Found) {
    for (i, t) in spec.tracing.iter().enumerate() {
        if t.use_request_id_for_trace_sampling == Some(false) {
            found.push((
                format!("spec.tracing[{i}].useRequestIdForTraceSampling"),
                "false is not supported yet (proxies sample at random whatever the request id); ignored".to_string(),
            ));
        }
    }
    if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
        found.push(("spec.targetRefs".to_string(), IGNORED.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path: message` of every finding in the one document of `yaml`.
    fn found(yaml: &str) -> Vec<String> {
        let docs = crate::parse_documents(yaml);
        let object = docs[0].result.as_ref().expect("valid");
        fields(object)
            .into_iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect()
    }

    #[test]
    fn translated_objects_have_nothing() {
        assert_eq!(
            found(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n\
                 spec: {hosts: [r], exportTo: ['*'], http: [{route: [{destination: {host: r}}]}]}\n"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn telemetry_tracing_fields_and_target_refs() {
        let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
  tracing:
  - disableContextPropagation: true
    useRequestIdForTraceSampling: false
    customTags:
      team: {literal: {value: a}}
"#;
        assert_eq!(
            found(yaml),
            [
                "spec.tracing[0].useRequestIdForTraceSampling: false is not supported yet (proxies sample at random whatever the request id); ignored",
                "spec.targetRefs: not supported yet; ignored",
            ]
        );
    }

    #[test]
    fn whole_kinds_have_an_empty_path() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n\
                    spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n";
        assert_eq!(
            found(yaml),
            [": Gateway resources are not supported yet; ignored"]
        );
    }
}
