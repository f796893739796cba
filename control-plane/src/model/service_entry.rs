//! ServiceEntries → services, as Istio's ServiceEntry registry: one service per host, with
//! the entry's ports, its inline endpoints or the WorkloadEntries its `workloadSelector`
//! selects, and its resolution. Endpoints the proxy cannot use are not put in the model;
//! each becomes a warning naming the object and the address field:
//!
//! - a `unix://` address (the proxy does not support unix domain sockets yet);
//! - a DNS name under `resolution: STATIC` or `NONE` (EDS carries IP addresses only;
//!   Istio drops these from EDS silently);
//! - an empty address (a WorkloadEntry reachable through a network gateway only);
//! - every endpoint after the first under `resolution: DNS_ROUND_ROBIN` (a `LOGICAL_DNS`
//!   cluster has exactly one).
//!
//! With `resolution: DNS`/`DNS_ROUND_ROBIN` and neither endpoints nor a `workloadSelector`,
//! each host is its own endpoint (the host as written, at each port's `targetPort`, else
//! its number), as Istio does.
//!
//! For mTLS, each endpoint keeps its `serviceAccount` (in the namespace of the object that
//! defines the endpoint) and each service the entry's `subjectAltNames`: the identities its
//! servers may present.

use std::net::IpAddr;

use weft_api::host::{is_wildcard, resolve_short_name};
use weft_api::networking::{
    Resolution as IstioResolution, ServiceEntry, UNIX_ADDRESS_PREFIX, WorkloadEntry,
};

use super::Model;
use crate::object::{ObjectKey, Warning};
use crate::service::{Endpoint, Resolution, Service, ServicePort, labels_match};

/// Adds one service per host of a ServiceEntry to the model.
pub(super) fn add(
    model: &mut Model,
    key: &ObjectKey,
    entry: &ServiceEntry,
    workload_entries: &[(&ObjectKey, &WorkloadEntry)],
) {
    let mut ports: Vec<ServicePort> = entry
        .ports
        .iter()
        .enumerate()
        .map(|(index, port)| ServicePort {
            number: port.number,
            name: port.name.clone(),
            protocol: port.protocol.as_ref().map(|_| port.protocol()),
            target_port: port.target_port.filter(|target| *target != 0),
            index,
        })
        .collect();
    ports.sort_by_key(|port| port.number);
    ports.dedup_by_key(|port| port.number);

    let resolution = match entry.resolution() {
        IstioResolution::None | IstioResolution::Static => Resolution::Static,
        // DYNAMIC_DNS is refused by validation; resolving with DNS is the closest.
        IstioResolution::Dns | IstioResolution::DynamicDns => Resolution::Dns,
        IstioResolution::DnsRoundRobin => Resolution::DnsRoundRobin,
    };
    let endpoints = endpoints(key, entry, workload_entries, &mut model.warnings);
    let subject_alt_names = crate::service::subject_alt_names(
        &endpoints,
        entry.subject_alt_names.iter().cloned(),
        &model.trust_domain,
    );
    let mut addresses = entry.addresses.clone();
    addresses.sort();
    addresses.dedup();
    let hosts_are_endpoints =
        resolution.is_dns() && entry.endpoints.is_empty() && entry.workload_selector.is_none();

    for (index, host) in entry.hosts.iter().enumerate() {
        let hostname = resolve_short_name(host, &key.namespace, &model.domain);
        if let Some(existing) = model.services.get(&hostname) {
            let message = format!(
                "host {hostname} is already defined by {}; ignored here",
                existing.source
            );
            model.warn(key, format!("spec.hosts[{index}]"), message);
            continue;
        }
        let endpoints = if hosts_are_endpoints {
            if is_wildcard(host) {
                // Validation requires FQDNs here; do not send a name no resolver answers.
                let message = "a wildcard host cannot be resolved with DNS; the service has no endpoints (requests get 503)";
                model.warn(key, format!("spec.hosts[{index}]"), message);
                Vec::new()
            } else {
                vec![Endpoint::at(host.as_str())]
            }
        } else {
            endpoints.clone()
        };
        model.services.insert(
            hostname.clone(),
            Service {
                hostname,
                namespace: key.namespace.clone(),
                ports: ports.clone(),
                endpoints,
                resolution,
                addresses: addresses.clone(),
                source: key.clone(),
                subject_alt_names: subject_alt_names.clone(),
            },
        );
    }
}

/// What an endpoint address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressKind {
    Ip,
    DnsName,
    Unix,
    Empty,
}

fn address_kind(address: &str) -> AddressKind {
    if address.is_empty() {
        AddressKind::Empty
    } else if address.starts_with(UNIX_ADDRESS_PREFIX) {
        AddressKind::Unix
    } else if address.parse::<IpAddr>().is_ok() {
        AddressKind::Ip
    } else {
        AddressKind::DnsName
    }
}

/// The entry's endpoints the proxy can use, in order (inline endpoints, else the selected
/// WorkloadEntries by namespace/name); a warning for each one left out.
fn endpoints(
    key: &ObjectKey,
    entry: &ServiceEntry,
    workload_entries: &[(&ObjectKey, &WorkloadEntry)],
    warnings: &mut Vec<Warning>,
) -> Vec<Endpoint> {
    // Each candidate with the object and field that hold its address.
    let mut candidates: Vec<(&WorkloadEntry, ObjectKey, String)> = entry
        .endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| {
            (
                endpoint,
                key.clone(),
                format!("spec.endpoints[{index}].address"),
            )
        })
        .collect();
    if let Some(selector) = &entry.workload_selector {
        for (entry_key, workload) in workload_entries {
            if entry_key.namespace == key.namespace
                && labels_match(&selector.labels, &workload.labels)
            {
                candidates.push((workload, (*entry_key).clone(), "spec.address".to_string()));
            }
        }
    }

    let resolution = entry.resolution();
    let mut kept: Vec<Endpoint> = Vec::new();
    for (workload, object, path) in candidates {
        let address = &workload.address;
        let problem = match address_kind(address) {
            AddressKind::Ip => None,
            AddressKind::DnsName => match resolution {
                IstioResolution::Dns
                | IstioResolution::DnsRoundRobin
                | IstioResolution::DynamicDns => None,
                IstioResolution::Static | IstioResolution::None => Some(format!(
                    "{address:?} is a DNS name but {key} has resolution {}; the endpoint is not sent (EDS carries IP addresses; use resolution DNS to have the proxy resolve it)",
                    resolution_name(resolution)
                )),
            },
            AddressKind::Unix => Some(format!(
                "{address:?} is a unix domain socket; the proxy does not support those yet, so the endpoint is not sent for {key}"
            )),
            AddressKind::Empty => Some(format!(
                "the address is empty (reachable through a network gateway only, which is not supported yet); the endpoint is not sent for {key}"
            )),
        };
        if let Some(message) = problem {
            warnings.push(Warning::new(&object, path, message));
            continue;
        }
        if resolution == IstioResolution::DnsRoundRobin
            && let Some(first) = kept.first()
        {
            let message = format!(
                "{key} has resolution DNS_ROUND_ROBIN, which uses a single endpoint ({:?} is used); the endpoint {address:?} is not sent",
                first.address
            );
            warnings.push(Warning::new(&object, path, message));
            continue;
        }
        kept.push(Endpoint::from_workload(workload, &object.namespace));
    }
    kept
}

/// A resolution as Istio spells it in YAML.
fn resolution_name(resolution: IstioResolution) -> &'static str {
    match resolution {
        IstioResolution::None => "NONE",
        IstioResolution::Static => "STATIC",
        IstioResolution::Dns => "DNS",
        IstioResolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        IstioResolution::DynamicDns => "DYNAMIC_DNS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_kinds() {
        assert_eq!(address_kind("10.0.0.1"), AddressKind::Ip);
        assert_eq!(address_kind("::1"), AddressKind::Ip);
        assert_eq!(address_kind("2001:db8::2"), AddressKind::Ip);
        assert_eq!(address_kind("example.com"), AddressKind::DnsName);
        assert_eq!(address_kind("localhost"), AddressKind::DnsName);
        assert_eq!(address_kind("unix:///var/run/app.sock"), AddressKind::Unix);
        assert_eq!(address_kind("unix://@abstract"), AddressKind::Unix);
        assert_eq!(address_kind(""), AddressKind::Empty);
    }
}
