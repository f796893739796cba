//! The name table: which host names the proxy answers itself, and with which addresses.
//!
//! Built from the entries the control plane sends (Istio's `NameTable`): a fully qualified
//! host name, its addresses and the short forms valid in the pod's namespace. Names are
//! compared case-insensitively and without their trailing dot. Lookups follow Istio's
//! precedence:
//!
//! ```text
//!  query name ─► exact name (host names before alt names, earlier entries first)
//!             ─► <known name>.<search domain>   answered as a CNAME to the known name
//!             ─► *.<suffix> wildcard, the longest suffix first
//!             ─► <wildcard match>.<search domain>, again as a CNAME
//!             ─► unknown: forwarded upstream
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The longest host name, without its trailing dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// One host of the table, as the control plane sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    /// The fully qualified name, e.g. `reviews.default.svc.cluster.local`, or a wildcard
    /// such as `*.example.com` (from a ServiceEntry).
    pub hostname: String,
    /// The addresses answered for it, IPv4 and IPv6.
    pub addresses: Vec<IpAddr>,
    /// Other names of the same host, e.g. `reviews`, `reviews.default`,
    /// `reviews.default.svc`: the short forms valid in the pod's namespace.
    pub alt_names: Vec<String>,
}

/// Why a table could not be built; names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("name table entry {hostname:?}: invalid host name: {reason}")]
    InvalidHostname { hostname: String, reason: String },
    #[error("name table entry {hostname:?}: invalid alt name {alt_name:?}: {reason}")]
    InvalidAltName {
        hostname: String,
        alt_name: String,
        reason: String,
    },
}

/// What the table knows about a queried name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution<'t> {
    /// Every address of the host (the answer keeps those of the family asked for; none of
    /// that family is an empty answer, never a forward).
    pub addresses: &'t [IpAddr],
    /// Set when the query matched only once a search domain was taken off its end (a
    /// resolver appended it): how many trailing labels to take off to get the name the
    /// answer's CNAME points to.
    pub search_labels: Option<usize>,
}

/// Host name → addresses, immutable once built; published as `Arc<NameTable>` snapshots.
#[derive(Debug, Default, Clone)]
pub struct NameTable {
    /// Lowercase names without the trailing dot.
    exact: HashMap<String, Arc<[IpAddr]>>,
    /// Wildcards keyed by what follows `*.`, lowercase.
    wildcards: HashMap<String, Arc<[IpAddr]>>,
}

impl NameTable {
    /// A table that knows no name: every query is forwarded.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds the table. A name claimed twice goes to a host name before an alt name, then
    /// to the earlier entry. Entries without addresses are left out (as Istio does): queries
    /// for them are forwarded. Fails on the first entry with an invalid name.
    pub fn new(entries: impl IntoIterator<Item = NameEntry>) -> Result<Self, TableError> {
        let entries: Vec<NameEntry> = entries.into_iter().collect();
        let mut exact: HashMap<String, Arc<[IpAddr]>> = HashMap::new();
        let mut wildcards: HashMap<String, Arc<[IpAddr]>> = HashMap::new();
        let mut alts: Vec<(String, Arc<[IpAddr]>)> = Vec::new();
        for entry in &entries {
            let host = normalize(&entry.hostname);
            let name = check_name(&host, true).map_err(|reason| TableError::InvalidHostname {
                hostname: entry.hostname.clone(),
                reason,
            })?;
            let mut alt_names = Vec::with_capacity(entry.alt_names.len());
            for alt in &entry.alt_names {
                let normalized = normalize(alt);
                match check_name(&normalized, false) {
                    Ok(_) => alt_names.push(normalized),
                    Err(reason) => {
                        return Err(TableError::InvalidAltName {
                            hostname: entry.hostname.clone(),
                            alt_name: alt.clone(),
                            reason,
                        });
                    }
                }
            }
            if entry.addresses.is_empty() {
                continue;
            }
            let addresses: Arc<[IpAddr]> = entry.addresses.iter().copied().collect();
            match name {
                Checked::Wildcard(suffix) => {
                    wildcards
                        .entry(suffix.to_owned())
                        .or_insert_with(|| addresses.clone());
                }
                Checked::Exact => {
                    exact.entry(host).or_insert_with(|| addresses.clone());
                }
            }
            alts.extend(alt_names.into_iter().map(|alt| (alt, addresses.clone())));
        }
        for (alt, addresses) in alts {
            exact.entry(alt).or_insert(addresses);
        }
        Ok(Self { exact, wildcards })
    }

    /// Names (host and alt names) and wildcards in the table.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcards.len()
    }

    /// Whether the table knows no name.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the table answers for `name` (any case, trailing dot or not), given the pod's
    /// search domains (lowercase, without trailing dot, as [`crate::ResolvConf`] keeps
    /// them). `None`: not a mesh name, forward the query.
    pub fn resolve(&self, name: &str, search: &[String]) -> Option<Resolution<'_>> {
        // A label holding an escaped dot or odd byte is no host name of ours; splitting it
        // at its dots could match a wildcard it is not under.
        if name.contains('\\') {
            return None;
        }
        let name = normalize(name);
        if name.is_empty() {
            return None;
        }
        if let Some(addresses) = self.exact.get(&name) {
            return Some(Resolution {
                addresses,
                search_labels: None,
            });
        }
        let stripped: Vec<(&str, usize)> = search
            .iter()
            .filter_map(|domain| strip_search(&name, domain))
            .collect();
        for &(base, labels) in &stripped {
            if let Some(addresses) = self.exact.get(base) {
                return Some(Resolution {
                    addresses,
                    search_labels: Some(labels),
                });
            }
        }
        if let Some(addresses) = self.wildcard(&name) {
            return Some(Resolution {
                addresses,
                search_labels: None,
            });
        }
        for &(base, labels) in &stripped {
            if let Some(addresses) = self.wildcard(base) {
                return Some(Resolution {
                    addresses,
                    search_labels: Some(labels),
                });
            }
        }
        None
    }

    /// The most specific wildcard above `name` (never `name` itself: `*.a.b` does not
    /// match `a.b`).
    fn wildcard(&self, name: &str) -> Option<&[IpAddr]> {
        if self.wildcards.is_empty() {
            return None;
        }
        name.match_indices('.')
            .map(|(dot, _)| &name[dot + 1..])
            .find_map(|suffix| self.wildcards.get(suffix))
            .map(|addresses| &addresses[..])
    }
}

impl TryFrom<Vec<NameEntry>> for NameTable {
    type Error = TableError;

    fn try_from(entries: Vec<NameEntry>) -> Result<Self, Self::Error> {
        Self::new(entries)
    }
}

/// `name` without the search domain `domain` at its end, and the number of labels taken off.
fn strip_search<'n>(name: &'n str, domain: &str) -> Option<(&'n str, usize)> {
    let base = name.strip_suffix(domain)?.strip_suffix('.')?;
    if base.is_empty() {
        return None;
    }
    Some((base, domain.split('.').count()))
}

/// Lowercase, without the trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

enum Checked<'n> {
    Exact,
    /// What follows `*.`.
    Wildcard(&'n str),
}

/// Checks a normalized name: labels of letters, digits, `-` and `_`, within DNS lengths;
/// a wildcard only as a whole first label `*` and only where `wildcard_ok`.
fn check_name(name: &str, wildcard_ok: bool) -> Result<Checked<'_>, String> {
    if name.is_empty() {
        return Err("empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} characters, more than DNS allows ({MAX_NAME_LEN})",
            name.len()
        ));
    }
    let (checked, rest) = match name.strip_prefix("*.") {
        Some(_) if !wildcard_ok => return Err("a wildcard is not allowed here".to_owned()),
        Some(suffix) => (Checked::Wildcard(suffix), suffix),
        None => (Checked::Exact, name),
    };
    for label in rest.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_owned());
        }
        if label == "*" {
            return Err(
                "a wildcard may only be the whole first label, as in *.example.com".to_owned(),
            );
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label {label:?} has {} characters, more than DNS allows ({MAX_LABEL_LEN})",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "label {label:?} holds {bad:?}: only letters, digits, '-' and '_' are allowed"
            ));
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn entry(hostname: &str, addresses: &[&str], alt_names: &[&str]) -> NameEntry {
        NameEntry {
            hostname: hostname.to_owned(),
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            alt_names: alt_names.iter().map(|&a| a.to_owned()).collect(),
        }
    }

    fn search() -> Vec<String> {
        [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
        .map(String::from)
        .to_vec()
    }

    fn table() -> NameTable {
        NameTable::new([
            entry(
                "reviews.default.svc.cluster.local",
                &["10.0.0.1", "fd00::1"],
                &["reviews", "reviews.default", "reviews.default.svc"],
            ),
            entry("ratings.default.svc.cluster.local", &["10.0.0.2"], &[]),
            entry("*.example.com", &["192.0.2.1"], &[]),
            entry("*.api.example.com", &["192.0.2.2"], &[]),
            entry("api.example.com", &["192.0.2.3"], &[]),
        ])
        .expect("valid table")
    }

    fn addresses(table: &NameTable, name: &str) -> Option<Vec<IpAddr>> {
        table.resolve(name, &search()).map(|r| r.addresses.to_vec())
    }

    #[test]
    fn exact_and_alt_names_resolve_case_insensitively_with_or_without_dot() {
        let table = table();
        let want = Some(vec![ip("10.0.0.1"), ip("fd00::1")]);
        for name in [
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local.",
            "Reviews.DEFAULT.svc.Cluster.Local.",
            "reviews",
            "REVIEWS.",
            "reviews.default",
            "reviews.default.svc",
        ] {
            assert_eq!(addresses(&table, name), want, "{name}");
            assert_eq!(
                table.resolve(name, &search()).and_then(|r| r.search_labels),
                None
            );
        }
        assert_eq!(addresses(&table, "details.default.svc.cluster.local"), None);
        assert_eq!(
            addresses(&table, "ratings"),
            None,
            "no alt names were given"
        );
    }

    #[test]
    fn a_known_name_with_a_search_domain_appended_is_a_cname_to_it() {
        let table = table();
        let hit = table
            .resolve(
                "reviews.default.svc.cluster.local.default.svc.cluster.local.",
                &search(),
            )
            .expect("known once the search domain is taken off");
        assert_eq!(hit.search_labels, Some(4));
        assert_eq!(hit.addresses, &[ip("10.0.0.1"), ip("fd00::1")]);

        let hit = table
            .resolve("reviews.default.cluster.local", &search())
            .expect("alt name + third search domain");
        assert_eq!(hit.search_labels, Some(2));
        // Not a search domain of this pod: unknown.
        assert_eq!(addresses(&table, "reviews.other.svc.cluster.local"), None);
        // Without search domains there is nothing to take off.
        assert!(
            table
                .resolve("reviews.default.svc.cluster.local.cluster.local", &[])
                .is_none()
        );
    }

    #[test]
    fn wildcards_match_one_or_more_labels_below_them_after_exact_names() {
        let table = table();
        assert_eq!(
            addresses(&table, "www.example.com"),
            Some(vec![ip("192.0.2.1")])
        );
        assert_eq!(
            addresses(&table, "a.b.c.example.com"),
            Some(vec![ip("192.0.2.1")])
        );
        assert_eq!(
            addresses(&table, "example.com"),
            None,
            "*.x does not match x"
        );
        // The exact name beats the wildcard above it, the longest wildcard the shorter.
        assert_eq!(
            addresses(&table, "api.example.com"),
            Some(vec![ip("192.0.2.3")])
        );
        assert_eq!(
            addresses(&table, "v1.api.example.com"),
            Some(vec![ip("192.0.2.2")])
        );
        // A wildcard match with a search domain appended is a CNAME to it.
        let hit = table
            .resolve("www.example.com.default.svc.cluster.local", &search())
            .expect("wildcard under the search domain");
        assert_eq!(hit.search_labels, Some(4));
        assert_eq!(hit.addresses, &[ip("192.0.2.1")]);
        // An escaped dot inside a label is not a label boundary: never a wildcard match.
        assert_eq!(addresses(&table, "evil\\.x.example.com"), None);
    }

    #[test]
    fn host_names_win_over_alt_names_and_earlier_entries_over_later_ones() {
        let table = NameTable::new([
            entry(
                "a.ns.svc.cluster.local",
                &["10.0.0.1"],
                &["b.ns.svc.cluster.local"],
            ),
            entry("b.ns.svc.cluster.local", &["10.0.0.2"], &[]),
            entry("a.ns.svc.cluster.local", &["10.0.0.3"], &[]),
        ])
        .expect("valid");
        assert_eq!(
            addresses(&table, "b.ns.svc.cluster.local"),
            Some(vec![ip("10.0.0.2")])
        );
        assert_eq!(
            addresses(&table, "a.ns.svc.cluster.local"),
            Some(vec![ip("10.0.0.1")])
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_known_name_keeps_all_its_families_for_nodata_answers() {
        let table = table();
        let hit = table
            .resolve("ratings.default.svc.cluster.local", &search())
            .expect("known");
        assert!(
            hit.addresses.iter().all(IpAddr::is_ipv4),
            "only IPv4: AAAA is NODATA"
        );
    }

    #[test]
    fn entries_without_addresses_are_left_out() {
        let table = NameTable::new([entry("empty.example.com", &[], &["empty"])]).expect("valid");
        assert!(table.is_empty());
        assert_eq!(addresses(&table, "empty.example.com"), None);
    }

    #[test]
    fn invalid_names_are_rejected_naming_the_entry() {
        let cases = [
            (entry("", &["10.0.0.1"], &[]), "invalid host name: empty"),
            (entry("a..b", &["10.0.0.1"], &[]), "empty label"),
            (entry("a b.com", &["10.0.0.1"], &[]), "holds ' '"),
            (entry("a.*.com", &["10.0.0.1"], &[]), "whole first label"),
            (entry("*", &["10.0.0.1"], &[]), "whole first label"),
            (
                entry(&format!("{}.com", "a".repeat(64)), &["10.0.0.1"], &[]),
                "64 characters",
            ),
            (
                entry(&format!("{}a", "a.".repeat(127)), &["10.0.0.1"], &[]),
                "255 characters",
            ),
            (
                entry("ok.com", &["10.0.0.1"], &["*.ok.com"]),
                "invalid alt name \"*.ok.com\"",
            ),
            (entry("ok.com", &["10.0.0.1"], &["bad/name"]), "holds '/'"),
        ];
        for (bad, want) in cases {
            let hostname = bad.hostname.clone();
            let err = NameTable::new([entry("fine.com", &["10.0.0.9"], &[]), bad])
                .expect_err("invalid entry")
                .to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(
                err.starts_with(&format!("name table entry {hostname:?}")),
                "{err}"
            );
        }
    }
}
