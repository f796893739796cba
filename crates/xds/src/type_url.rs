//! Envoy xDS v3 resource type URLs and their properties.

/// Listener Discovery Service (wildcard).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Route Discovery Service (by name).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Cluster Discovery Service (wildcard).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Endpoint Discovery Service (by name).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Secret Discovery Service (by name).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The order in which the server pushes types after a change, so that a proxy never
/// sees a reference before what it references (clusters before their endpoints,
/// listeners before their routes, clusters before the listeners that use them).
pub const PUSH_ORDER: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/// The short name of a type URL, for logs: `"LDS"`, `"RDS"`, `"CDS"`, `"EDS"`, `"SDS"`,
/// else `"unknown"`.
pub fn short(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "LDS",
        ROUTE => "RDS",
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        SECRET => "SDS",
        _ => "unknown",
    }
}

/// Whether a type is subscribed to as a whole (LDS, CDS): there an empty
/// `resource_names` means "every resource". Other types are subscribed to by name.
pub fn is_wildcard_type(type_url: &str) -> bool {
    matches!(type_url, LISTENER | CLUSTER)
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
        assert_eq!(short("type.googleapis.com/foo"), "unknown");
    }

    #[test]
    fn wildcard_types() {
        assert!(is_wildcard_type(LISTENER));
        assert!(is_wildcard_type(CLUSTER));
        assert!(!is_wildcard_type(ROUTE));
        assert!(!is_wildcard_type(ENDPOINT));
        assert!(!is_wildcard_type(SECRET));
    }

    #[test]
    fn type_urls_match_envoy_types() {
        use envoy_types::pb::envoy::config;
        use prost::Name;
        assert_eq!(config::listener::v3::Listener::type_url(), LISTENER);
        assert_eq!(config::route::v3::RouteConfiguration::type_url(), ROUTE);
        assert_eq!(config::cluster::v3::Cluster::type_url(), CLUSTER);
        assert_eq!(
            config::endpoint::v3::ClusterLoadAssignment::type_url(),
            ENDPOINT
        );
        assert_eq!(
            envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::type_url(),
            SECRET
        );
    }

    #[test]
    fn push_rank_orders_known_types_first() {
        assert!(push_rank(CLUSTER) < push_rank(ENDPOINT));
        assert!(push_rank(ENDPOINT) < push_rank(LISTENER));
        assert!(push_rank(LISTENER) < push_rank(ROUTE));
        assert!(push_rank(ROUTE) < push_rank(SECRET));
    }
}
