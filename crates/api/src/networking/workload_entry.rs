//! `WorkloadEntry` (networking.istio.io/v1): a non-Kubernetes workload (VM, external endpoint), also used as a ServiceEntry endpoint.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::validation::{
    FieldError, Path, Validate, check_labels, is_ip, is_istio_dns1123_label, validate_fqdn,
};

/// Prefix of unix domain socket addresses.
pub const UNIX_ADDRESS_PREFIX: &str = "unix://";

/// A workload's address, ports and labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP address, DNS name (DNS resolution) or `unix:///path`.
    #[serde(default)]
    pub address: String,
    /// Port name (of the service) → port on this workload.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub ports: BTreeMap<String, u32>,
    /// Workload labels.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Network the workload is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `region/zone/subzone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl WorkloadEntry {
    /// True if the address is a unix domain socket.
    pub fn is_unix(&self) -> bool {
        self.address.starts_with(UNIX_ADDRESS_PREFIX)
    }

    /// The CEL rules of Istio's CRD schema for a workload entry, which also hold for the
    /// endpoints of a ServiceEntry and (without the address rule) the template of a
    /// WorkloadGroup: an address or a network, `unix://` paths absolute and without ports,
    /// port names DNS-1123 labels of under 63 characters, port numbers in 1..65535.
    pub(crate) fn validate_schema_rules(
        &self,
        path: &Path,
        errors: &mut Vec<FieldError>,
        address_required: bool,
    ) {
        let ap = path.field("address");
        let has_network = self.network.as_deref().is_some_and(|n| !n.is_empty());
        if address_required && self.address.is_empty() && !has_network {
            ap.push(errors, "Address is required: set address or network");
        }
        if let Some(sock) = self.address.strip_prefix(UNIX_ADDRESS_PREFIX) {
            if !sock.starts_with('/') && !sock.starts_with('@') {
                ap.push(
                    errors,
                    format!(
                        "UDS must be an absolute path or abstract socket: \"{}\"",
                        self.address
                    ),
                );
            }
            if self.address.ends_with('/') {
                ap.push(
                    errors,
                    format!("UDS may not be a dir: \"{}\"", self.address),
                );
            }
            if !self.ports.is_empty() {
                path.field("ports").push(
                    errors,
                    format!(
                        "UDS may not include ports: unix endpoint \"{}\" must not include ports",
                        self.address
                    ),
                );
            }
        }
        check_endpoint_ports(&path.field("ports"), errors, &self.ports);
        for (field, value, max) in [
            ("address", Some(&self.address), 256),
            ("network", self.network.as_ref(), 2048),
            ("locality", self.locality.as_ref(), 2048),
            ("serviceAccount", self.service_account.as_ref(), 253),
        ] {
            check_max_len(
                &path.field(field),
                errors,
                value.map_or("", String::as_str),
                max,
            );
        }
        check_max_items(&path.field("labels"), errors, self.labels.len(), 256);
        check_max_items(&path.field("ports"), errors, self.ports.len(), 128);
    }

    /// Istio's `validateWorkloadEntry` on top of the schema rules: `service_ports` are the
    /// declared port names when the entry is an endpoint of a STATIC ServiceEntry;
    /// `allow_fqdn` is false there (STATIC needs IPs).
    pub(crate) fn validate_entry(
        &self,
        path: &Path,
        errors: &mut Vec<FieldError>,
        service_ports: Option<&BTreeSet<&str>>,
        allow_fqdn: bool,
    ) {
        self.validate_schema_rules(path, errors, true);
        let ap = path.field("address");
        if !self.address.is_empty() && !self.is_unix() && !is_ip(&self.address) {
            if !allow_fqdn {
                ap.push(
                    errors,
                    format!(
                        "endpoint address \"{}\" is not a valid IP address (STATIC resolution needs IPs or unix:// paths)",
                        self.address
                    ),
                );
            } else if validate_fqdn(&self.address).is_err() {
                ap.push(
                    errors,
                    format!(
                        "endpoint address \"{}\" is not a valid FQDN or an IP address",
                        self.address
                    ),
                );
            }
        }
        if let Some(sp) = service_ports {
            check_ports_declared(&path.field("ports"), errors, &self.ports, sp);
            if self.is_unix() && sp.len() != 1 {
                ap.push(errors, "exactly 1 service port required for unix endpoints");
            }
        }
        check_labels(&path.field("labels"), errors, &self.labels);
    }
}

/// The CEL rules on a `ports` map of an endpoint: names DNS-1123 labels under 63 characters,
/// numbers in 1..65535.
pub(crate) fn check_endpoint_ports(
    path: &Path,
    errors: &mut Vec<FieldError>,
    ports: &BTreeMap<String, u32>,
) {
    for (name, port) in ports {
        let p = path.key(name);
        if name.len() >= 63 || !is_istio_dns1123_label(name) {
            p.push(
                errors,
                format!(
                    "port name must be valid: \"{name}\" is not a DNS-1123 label of at most 62 characters"
                ),
            );
        }
        if !(1..=65535).contains(port) {
            p.push(errors, format!("port must be between 1-65535, got {port}"));
        }
    }
}

/// The schema's `maxLength` on a string field.
pub(crate) fn check_max_len(path: &Path, errors: &mut Vec<FieldError>, value: &str, max: usize) {
    let len = value.chars().count();
    if len > max {
        path.push(
            errors,
            format!("may have at most {max} characters, got {len}"),
        );
    }
}

/// The schema's `maxItems` / `maxProperties` on a list or map field.
pub(crate) fn check_max_items(path: &Path, errors: &mut Vec<FieldError>, len: usize, max: usize) {
    if len > max {
        path.push(errors, format!("may have at most {max} entries, got {len}"));
    }
}

/// Every port of an endpoint names a port of its ServiceEntry.
pub(crate) fn check_ports_declared(
    path: &Path,
    errors: &mut Vec<FieldError>,
    ports: &BTreeMap<String, u32>,
    service_ports: &BTreeSet<&str>,
) {
    for (name, port) in ports {
        if !service_ports.contains(name.as_str()) {
            path.key(name).push(
                errors,
                format!("endpoint port \"{name}\" ({port}) is not defined by the service entry"),
            );
        }
    }
}

impl Validate for WorkloadEntry {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_entry(path, errors, None, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        let we: WorkloadEntry = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        we.validate(&Path::root("spec"), &mut errs);
        errs
    }

    #[test]
    fn rules() {
        assert!(errors_of("address: 10.0.0.1\nports: {http: 8080}\nlabels: {app: a}").is_empty());
        assert!(errors_of("address: vm.example.com").is_empty());
        assert!(errors_of("network: net1").is_empty());
        assert!(errors_of("address: unix:///var/run/sock").is_empty());
        let e = errors_of("labels: {app: a}");
        assert_eq!(e[0].path, "spec.address");
        assert!(e[0].message.starts_with("Address is required"));
        let e = errors_of("address: 10.0.0.1\nports: {http: 0, Bad_Name: 80}");
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.ports[Bad_Name]", "spec.ports[http]"]);
        let e = errors_of("address: 10.0.0.1\nlabels: {'bad key': a}");
        assert_eq!(e[0].path, "spec.labels[bad key]");
        let e = errors_of("address: unix://relative\nports: {http: 80}");
        assert_eq!(e.len(), 2);
        let e = errors_of("address: 'not valid!'");
        assert_eq!(e[0].path, "spec.address");
    }
}
