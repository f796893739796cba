//! The Envoy names the control plane and the proxy must agree on: resource type URLs,
//! filter names and their config type URLs, extension option keys.
//!
//! One definition for both sides, so the generator and the converter cannot drift apart.
//! Each value is what Envoy itself uses (and the tests check the type URLs against the
//! generated protobuf types). `docs/ARCHITECTURE.md` ("xDS contract") describes how they
//! are used.

/// Listener Discovery Service resources (wildcard).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Route Discovery Service resources (by name).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Cluster Discovery Service resources (wildcard).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Endpoint Discovery Service resources (by name).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Secret Discovery Service resources (by name).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The network filter name of the HTTP connection manager, in a listener's filter chain.
pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
/// The type URL of the HTTP connection manager's `typed_config`.
pub const HTTP_CONNECTION_MANAGER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The HTTP filter name of the router, the last (and only) filter of the connection manager.
pub const ROUTER: &str = "envoy.filters.http.router";
/// The type URL of the router's `typed_config`.
pub const ROUTER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// The key of a cluster's upstream HTTP protocol options in
/// `Cluster.typed_extension_protocol_options`.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The type URL of the value under [`HTTP_PROTOCOL_OPTIONS`].
pub const HTTP_PROTOCOL_OPTIONS_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config;
    use envoy_types::pb::envoy::extensions::{filters, transport_sockets, upstreams};
    use prost::Name;

    #[test]
    fn resource_type_urls_match_envoy_types() {
        assert_eq!(config::listener::v3::Listener::type_url(), LISTENER);
        assert_eq!(config::route::v3::RouteConfiguration::type_url(), ROUTE);
        assert_eq!(config::cluster::v3::Cluster::type_url(), CLUSTER);
        assert_eq!(
            config::endpoint::v3::ClusterLoadAssignment::type_url(),
            ENDPOINT
        );
        assert_eq!(transport_sockets::tls::v3::Secret::type_url(), SECRET);
    }

    #[test]
    fn extension_type_urls_match_envoy_types() {
        assert_eq!(
            filters::network::http_connection_manager::v3::HttpConnectionManager::type_url(),
            HTTP_CONNECTION_MANAGER_TYPE_URL
        );
        assert_eq!(
            filters::http::router::v3::Router::type_url(),
            ROUTER_TYPE_URL
        );
        assert_eq!(
            upstreams::http::v3::HttpProtocolOptions::type_url(),
            HTTP_PROTOCOL_OPTIONS_TYPE_URL
        );
        // The protocol options key is the message's full name.
        assert_eq!(
            upstreams::http::v3::HttpProtocolOptions::full_name(),
            HTTP_PROTOCOL_OPTIONS
        );
    }
}
