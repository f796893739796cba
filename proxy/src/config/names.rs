//! The name table (NDS) converted for the DNS proxy: Istio's `NameTable` in, a
//! [`weft_dns::NameTable`] out, with the short names a pod in the proxy's namespace uses.
//!
//! ```text
//!  NameTable { host → NameInfo{ips, registry, shortname, namespace, alt_hosts} }
//!     ─► NameEntry { host, ips parsed, alt names: alt_hosts + (Kubernetes hosts)
//!                    `name.ns`, `name.ns.svc`, and `name` in the proxy's own namespace }
//!     ─► weft_dns::NameTable (names checked)   any error rejects the table (NACK)
//! ```

use std::net::IpAddr;

use weft_dns::{NameEntry, NameTable};
use weft_xds::nds;

use super::{ConfigError, Reason, invalid};

/// Converts the table for a proxy in `namespace`. The first invalid address or name
/// rejects the whole table: the DNS proxy keeps answering from the last good one.
pub fn name_table(table: nds::NameTable, namespace: &str) -> Result<NameTable, ConfigError> {
    let mut entries = Vec::with_capacity(table.table.len());
    for (host, info) in table.table {
        let at = |reason: Reason| ConfigError::new(format!("name table host {host:?}"), reason);
        let mut addresses = Vec::with_capacity(info.ips.len());
        for (i, ip) in info.ips.iter().enumerate() {
            let parsed = ip.parse::<IpAddr>().map_err(|_| {
                at(invalid(
                    format!("ips[{i}]"),
                    format!("{ip:?} is not an IP address"),
                ))
            })?;
            addresses.push(parsed);
        }
        let mut alt_names = info.alt_hosts.clone();
        alt_names.extend(kubernetes_short_names(&host, &info, namespace));
        entries.push(NameEntry {
            hostname: host.clone(),
            addresses,
            alt_names,
        });
    }
    NameTable::new(entries)
        .map_err(|e| ConfigError::new("name table", invalid("table", e.to_string())))
}

/// The names a pod in `namespace` may use for a Kubernetes Service's host
/// `<shortname>.<ns>.svc.<domain>`: `<shortname>.<ns>`, `<shortname>.<ns>.svc`, and the bare
/// `<shortname>` when the Service is in the pod's own namespace (Istio's agent makes the same,
/// and the search domains of the pod's resolv.conf cover the longer forms). A host of any
/// other shape (another registry, a ServiceEntry naming a Kubernetes host) gets none.
fn kubernetes_short_names(host: &str, info: &nds::NameInfo, namespace: &str) -> Vec<String> {
    if info.registry != "Kubernetes" || info.shortname.is_empty() || info.namespace.is_empty() {
        return Vec::new();
    }
    let svc = format!("{}.{}.svc", info.shortname, info.namespace);
    if !host
        .strip_prefix(svc.as_str())
        .is_some_and(|rest| rest.starts_with('.'))
    {
        return Vec::new();
    }
    let mut names = vec![format!("{}.{}", info.shortname, info.namespace), svc];
    if info.namespace == namespace {
        names.push(info.shortname.clone());
    }
    names
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info(ips: &[&str], registry: &str, short: &str, ns: &str) -> nds::NameInfo {
        nds::NameInfo {
            ips: ips.iter().map(|s| (*s).to_string()).collect(),
            registry: registry.into(),
            shortname: short.into(),
            namespace: ns.into(),
            alt_hosts: Vec::new(),
        }
    }

    fn table(entries: &[(&str, nds::NameInfo)]) -> nds::NameTable {
        nds::NameTable {
            table: entries
                .iter()
                .map(|(h, i)| ((*h).to_string(), i.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn answers(table: &NameTable, name: &str) -> Option<Vec<IpAddr>> {
        table.resolve(name, &[]).map(|r| r.addresses.to_vec())
    }

    #[test]
    fn kubernetes_hosts_get_short_names_relative_to_the_proxy_namespace() {
        let wire = table(&[
            (
                "reviews.default.svc.cluster.local",
                info(&["10.96.0.10"], "Kubernetes", "reviews", "default"),
            ),
            (
                "ratings.other.svc.cluster.local",
                info(
                    &["10.96.0.11", "fd00::11"],
                    "Kubernetes",
                    "ratings",
                    "other",
                ),
            ),
        ]);
        let names = name_table(wire, "default").expect("valid");
        let ten = |last: u8| Some(vec![IpAddr::from([10, 96, 0, last])]);
        for name in [
            "reviews",
            "reviews.default",
            "reviews.default.svc",
            "reviews.default.svc.cluster.local",
            "REVIEWS.default.svc.cluster.local.",
        ] {
            assert_eq!(answers(&names, name), ten(10), "{name}");
        }
        // Another namespace's Service: not by its bare name.
        assert_eq!(answers(&names, "ratings"), None);
        let both = Some(vec![
            IpAddr::from([10, 96, 0, 11]),
            "fd00::11".parse().unwrap(),
        ]);
        assert_eq!(answers(&names, "ratings.other"), both);
        assert_eq!(answers(&names, "ratings.other.svc"), both);
    }

    #[test]
    fn external_hosts_and_wildcards_only_by_their_names() {
        let wire = table(&[
            ("db.example.com", info(&["240.240.0.1"], "External", "", "")),
            (
                "*.wild.example.com",
                info(&["240.240.9.9"], "External", "", ""),
            ),
            // A ServiceEntry that names a Kubernetes-shaped host it does not own.
            (
                "fake.default.svc.cluster.local",
                info(&["240.240.0.2"], "External", "fake", "default"),
            ),
        ]);
        let names = name_table(wire, "default").expect("valid");
        assert_eq!(
            answers(&names, "db.example.com"),
            Some(vec![IpAddr::from([240, 240, 0, 1])])
        );
        assert_eq!(
            answers(&names, "a.wild.example.com"),
            Some(vec![IpAddr::from([240, 240, 9, 9])])
        );
        assert_eq!(answers(&names, "db"), None);
        assert_eq!(answers(&names, "fake"), None);
    }

    #[test]
    fn alt_hosts_from_the_control_plane_are_kept() {
        let mut entry = info(&["240.240.0.1"], "External", "", "");
        entry.alt_hosts = vec!["db.internal".into()];
        let names = name_table(table(&[("db.example.com", entry)]), "default").expect("valid");
        assert!(answers(&names, "db.internal").is_some());
    }

    #[test]
    fn a_bad_address_or_name_rejects_the_table_naming_it() {
        let wire = table(&[(
            "db.example.com",
            info(&["240.240.0.1", "not-an-ip"], "External", "", ""),
        )]);
        let err = name_table(wire, "default").unwrap_err().to_string();
        assert!(
            err.contains("db.example.com") && err.contains("ips[1]") && err.contains("not-an-ip"),
            "{err}"
        );

        let wire = table(&[("bad..name", info(&["240.240.0.1"], "External", "", ""))]);
        let err = name_table(wire, "default").unwrap_err().to_string();
        assert!(err.contains("bad..name"), "{err}");
    }
}
