//! Envoy xDS v3 resource type URLs (defined in [`contract`](crate::contract)) and their
//! properties in the protocol.

pub use crate::contract::{CLUSTER, ENDPOINT, LISTENER, NAME_TABLE, ROUTE, SECRET};

/// The order in which the server pushes types after a change, so that a proxy never
/// sees a reference before what it references (clusters before their endpoints,
/// listeners before their routes, clusters before the listeners that use them).
pub const PUSH_ORDER: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/// Every known type's names: (type URL, short name for logs, istiod's metric label).
const NAMES: [(&str, &str, &str); 6] = [
    (LISTENER, "LDS", "lds"),
    (ROUTE, "RDS", "rds"),
    (CLUSTER, "CDS", "cds"),
    (ENDPOINT, "EDS", "eds"),
    (SECRET, "SDS", "sds"),
    (NAME_TABLE, "NDS", "nds"),
];

fn names(type_url: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    NAMES.iter().find(|(url, ..)| *url == type_url)
}

/// The short name of a type URL, for logs: `"LDS"`, `"RDS"`, `"CDS"`, `"EDS"`, `"SDS"`,
/// `"NDS"`, else `"unknown"`.
pub fn short(type_url: &str) -> &'static str {
    names(type_url).map_or("unknown", |(_, short, _)| short)
}

/// istiod's metric label for a type (`pilot_xds_pushes{type="cds"}`), else `"unknown"`.
pub fn metric_label(type_url: &str) -> &'static str {
    names(type_url).map_or("unknown", |(_, _, label)| label)
}

/// Whether clients subscribe to a type as a whole (LDS, CDS, NDS: a wildcard subscription,
/// whose first request carries no names) rather than by name (RDS, EDS, SDS).
///
/// These are also the only types whose state-of-the-world responses carry the complete set:
/// a listener or cluster missing from a response is deleted, while a route configuration or
/// load assignment missing from a response is not (see [`Handler`](crate::Handler)).
pub fn is_wildcard_type(type_url: &str) -> bool {
    matches!(type_url, LISTENER | CLUSTER | NAME_TABLE)
}

/// Where a type sits in [`PUSH_ORDER`]; unknown types sort after every known one.
pub(crate) fn push_rank(type_url: &str) -> usize {
    PUSH_ORDER
        .iter()
        .position(|t| *t == type_url)
        .unwrap_or(PUSH_ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short(LISTENER), "LDS");
        assert_eq!(short(ROUTE), "RDS");
        assert_eq!(short(CLUSTER), "CDS");
        assert_eq!(short(ENDPOINT), "EDS");
        assert_eq!(short(SECRET), "SDS");
        assert_eq!(short(NAME_TABLE), "NDS");
        assert_eq!(short("type.googleapis.com/foo"), "unknown");
    }

    #[test]
    fn wildcard_types() {
        assert!(is_wildcard_type(LISTENER));
        assert!(is_wildcard_type(CLUSTER));
        assert!(is_wildcard_type(NAME_TABLE));
        assert!(!is_wildcard_type(ROUTE));
        assert!(!is_wildcard_type(ENDPOINT));
        assert!(!is_wildcard_type(SECRET));
    }

    #[test]
    fn push_rank_orders_known_types_first() {
        assert!(push_rank(CLUSTER) < push_rank(ENDPOINT));
        assert!(push_rank(ENDPOINT) < push_rank(LISTENER));
        assert!(push_rank(LISTENER) < push_rank(ROUTE));
        assert!(push_rank(ROUTE) < push_rank(SECRET));
    }
}
