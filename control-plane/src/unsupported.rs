//! Fields Weft accepts but does not translate yet (the proxy does not implement them):
//! each present one becomes a warning naming the object and the field path.

use weft_api::ConfigObject;
use weft_api::networking::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRule, LoadBalancerSettings, ServiceEntry,
    SimpleLb, TlsMode, TrafficPolicy, VirtualService,
};

use crate::model::Warning;
use crate::source::ObjectKey;

const IGNORED: &str = "not supported yet; ignored";

/// The unsupported fields present in one object.
pub fn fields(key: &ObjectKey, object: &ConfigObject) -> Vec<Warning> {
    let mut found = Vec::new();
    match object {
        ConfigObject::VirtualService(resource) => virtual_service(&resource.spec, &mut found),
        ConfigObject::DestinationRule(resource) => destination_rule(&resource.spec, &mut found),
        ConfigObject::ServiceEntry(resource) => service_entry(&resource.spec, &mut found),
        #[allow(unreachable_patterns)]
        _ => {}
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
            "gateways are not supported yet; this VirtualService (no \"mesh\" gateway) is ignored".to_string(),
        ));
        return;
    }
    note(found, !vs.tcp.is_empty(), "spec.tcp".to_string());
    note(found, !vs.tls.is_empty(), "spec.tls".to_string());
    for (index, http) in vs.http.iter().enumerate() {
        let path = format!("spec.http[{index}]");
        note(found, http.retries.is_some(), format!("{path}.retries"));
        note(found, http.fault.is_some(), format!("{path}.fault"));
        note(found, http.mirror.is_some(), format!("{path}.mirror"));
        note(found, !http.mirrors.is_empty(), format!("{path}.mirrors"));
        note(found, http.mirror_percent.is_some(), format!("{path}.mirrorPercent"));
        note(found, http.mirror_percentage.is_some(), format!("{path}.mirrorPercentage"));
        note(found, http.cors_policy.is_some(), format!("{path}.corsPolicy"));
        note(found, http.delegate.is_some(), format!("{path}.delegate"));
        if let Some(rewrite) = &http.rewrite {
            note(
                found,
                rewrite.uri_regex_rewrite.is_some(),
                format!("{path}.rewrite.uriRegexRewrite"),
            );
        }
        if let Some(redirect) = &http.redirect {
            note(found, redirect.derive_port.is_some(), format!("{path}.redirect.derivePort"));
        }
        if http.route.len() > 1 {
            for (dest, destination) in http.route.iter().enumerate() {
                note(
                    found,
                    destination.headers.is_some(),
                    format!("{path}.route[{dest}].headers"),
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
            traffic_policy(policy, &format!("spec.subsets[{index}].trafficPolicy"), found);
        }
    }
    note(found, dr.workload_selector.is_some(), "spec.workloadSelector".to_string());
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
    note(found, policy.proxy_protocol.is_some(), format!("{path}.proxyProtocol"));
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
        note(found, lb.locality_lb_setting.is_some(), format!("{lb_path}.localityLbSetting"));
        note(found, lb.warmup_duration_secs.is_some(), format!("{lb_path}.warmupDurationSecs"));
        note(found, lb.warmup.is_some(), format!("{lb_path}.warmup"));
    }
    if let Some(pool) = settings.connection_pool {
        let pool_path = format!("{path}.connectionPool");
        note(found, pool.http.is_some(), format!("{pool_path}.http"));
        if let Some(tcp) = &pool.tcp {
            note(found, tcp.max_connections.is_some(), format!("{pool_path}.tcp.maxConnections"));
            note(found, tcp.tcp_keepalive.is_some(), format!("{pool_path}.tcp.tcpKeepalive"));
            note(
                found,
                tcp.max_connection_duration.is_some(),
                format!("{pool_path}.tcp.maxConnectionDuration"),
            );
            note(found, tcp.idle_timeout.is_some(), format!("{pool_path}.tcp.idleTimeout"));
        }
    }
    note(found, settings.outlier_detection, format!("{path}.outlierDetection"));
    if let Some(tls) = settings.tls
        && tls.mode != TlsMode::Disable
    {
        found.push((
            format!("{path}.tls.mode"),
            format!("{:?} is not supported yet; ignored (plaintext is used)", tls.mode),
        ));
    }
}

fn service_entry(entry: &ServiceEntry, found: &mut Found) {
    note(found, !entry.addresses.is_empty(), "spec.addresses".to_string());
}
