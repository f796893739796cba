//! `WorkloadEntry` (networking.istio.io/v1): a non-Kubernetes workload (VM, external endpoint), also used as a ServiceEntry endpoint.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::validation::{
    FieldError, Path, Validate, check, check_labels, is_ip, validate_fqdn, validate_port,
    validate_port_name, validate_unix_address,
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

    /// Istio's `validateWorkloadEntry`: `service_ports` are the declared port names when the entry
    /// is a ServiceEntry endpoint; `allow_fqdn` is false for STATIC resolution.
    pub(crate) fn validate_entry(
        &self,
        path: &Path,
        errors: &mut Vec<FieldError>,
        service_ports: Option<&BTreeSet<&str>>,
        allow_fqdn: bool,
    ) {
        let ap = path.field("address");
        let has_network = self.network.as_deref().is_some_and(|n| !n.is_empty());
        if self.address.is_empty() {
            if !has_network {
                ap.push(errors, "address is required");
                return;
            }
        } else if let Some(sock) = self.address.strip_prefix(UNIX_ADDRESS_PREFIX) {
            check(&ap, errors, validate_unix_address(sock));
            if !self.ports.is_empty() {
                path.field("ports").push(
                    errors,
                    format!("unix endpoint {} must not include ports", self.address),
                );
            }
            if let Some(sp) = service_ports
                && sp.len() != 1
            {
                ap.push(errors, "exactly 1 service port required for unix endpoints");
            }
        } else if !is_ip(&self.address) {
            if !allow_fqdn {
                ap.push(
                    errors,
                    format!(
                        "endpoint address {:?} is not a valid IP address (STATIC resolution needs IPs or unix:// paths)",
                        self.address
                    ),
                );
            } else if validate_fqdn(&self.address).is_err() {
                ap.push(
                    errors,
                    format!(
                        "endpoint address {:?} is not a valid FQDN or an IP address",
                        self.address
                    ),
                );
            }
        }
        let pp = path.field("ports");
        for (name, port) in &self.ports {
            let p = pp.key(name);
            if let Some(sp) = service_ports
                && !sp.contains(name.as_str())
            {
                p.push(
                    errors,
                    format!("endpoint port {name:?} is not defined by the service entry"),
                );
            }
            check(&p, errors, validate_port_name(name));
            check(&p, errors, validate_port(*port));
        }
        check_labels(&path.field("labels"), errors, &self.labels);
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
        assert_eq!(e[0].message, "address is required");
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
