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
/// Istio's name table for the sidecar's DNS proxy (NDS; wildcard, one resource): see
/// [`nds`](crate::nds). Subscribed only by proxies that run the DNS proxy.
pub const NAME_TABLE: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

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

/// The HTTP filter name of role-based access control (AuthorizationPolicy), on the inbound
/// listener's connection manager: up to three, DENY then ALLOW then LOG.
pub const RBAC: &str = "envoy.filters.http.rbac";
/// The type URL of the HTTP RBAC filter's `typed_config`.
pub const RBAC_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The network filter name of role-based access control (TCP filter chains).
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// The type URL of the network RBAC filter's `typed_config`.
pub const NETWORK_RBAC_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

/// The HTTP filter name of JWT validation (RequestAuthentication), first on the inbound
/// listener's connection manager.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// The type URL of the JWT filter's `typed_config`.
pub const JWT_AUTHN_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

/// The extension name of an RBAC permission's `uri_template` (paths with `{*}` / `{**}`).
pub const URI_TEMPLATE_MATCHER: &str = "envoy.path.match.uri_template.uri_template_matcher";
/// The type URL of the `uri_template` extension's `typed_config`.
pub const URI_TEMPLATE_MATCHER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig";

/// The dynamic metadata namespace the JWT filter fills for a request with a valid token
/// (`request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`,
/// `request.auth.claims`) and RBAC principals match on.
pub const ISTIO_AUTHN_METADATA: &str = "istio_authn";

/// The transport socket name of TLS (`UpstreamTlsContext` on clusters,
/// `DownstreamTlsContext` on filter chains).
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// The transport socket name of plaintext.
pub const RAW_BUFFER_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
/// The listener filter that tells TLS from plaintext (filter chains matched on
/// `transport_protocol` "tls" / "raw_buffer").
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// The SDS secret name of the workload certificate; the proxy resolves it itself.
pub const WORKLOAD_SECRET: &str = "default";
/// The SDS secret name of the trust bundle; the proxy resolves it itself.
pub const ROOTCA_SECRET: &str = "ROOTCA";
/// The `LbEndpoint.metadata.filter_metadata` key a cluster's `transport_socket_matches`
/// match against.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
/// The key, under [`TRANSPORT_SOCKET_MATCH`], that says whether the endpoint has a sidecar,
/// and its value when it does (Istio's `tlsMode: istio`).
pub const TLS_MODE_KEY: &str = "tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";
/// The listener `metadata.filter_metadata` key with the inbound mTLS mode and the deciding
/// PeerAuthentication (`{mode, policy}`), for the proxy's logs.
pub const MTLS_METADATA: &str = "weft.mtls";
/// The keys of the [`MTLS_METADATA`] struct: the mode (`STRICT`, `PERMISSIVE` or `DISABLE`) and
/// the deciding PeerAuthentication as `<namespace>/<name>` (empty when none applies).
pub const MTLS_METADATA_MODE: &str = "mode";
pub const MTLS_METADATA_POLICY: &str = "policy";
/// The substitution-format commands an access log format may use (the proxy implements them,
/// with Envoy's meaning; the controller refuses a mesh `accessLogFormat` with others).
pub const ACCESS_LOG_COMMANDS: &[&str] = &[
    "START_TIME",
    "REQ",
    "RESP",
    "PROTOCOL",
    "RESPONSE_CODE",
    "RESPONSE_FLAGS",
    "RESPONSE_CODE_DETAILS",
    "CONNECTION_TERMINATION_DETAILS",
    "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "DURATION",
    "UPSTREAM_HOST",
    "UPSTREAM_CLUSTER",
    "UPSTREAM_CLUSTER_RAW",
    "UPSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS",
    "REQUESTED_SERVER_NAME",
    "ROUTE_NAME",
    "DOWNSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_URI_SAN",
    "TRACE_ID",
    "GRPC_STATUS",
];

/// Why a substitution format would be refused by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatCommandError {
    #[error("unterminated command: a `%` opens a command, `%%` is a literal `%`")]
    Unterminated,
    #[error("unknown command %{0}% (supported: {list})", list = ACCESS_LOG_COMMANDS.join(", "))]
    Unknown(String),
}

/// Checks that every command of a substitution format (`%NAME%`, `%NAME(arg)%`,
/// `%NAME:len%`; `%%` is a literal `%`) is one of [`ACCESS_LOG_COMMANDS`], as the proxy reads
/// it (its arguments are the proxy's to check).
pub fn check_format_commands(format: &str) -> Result<(), FormatCommandError> {
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        let after = &rest[i + 1..];
        if let Some(more) = after.strip_prefix('%') {
            rest = more;
            continue;
        }
        let end = after.find('%').ok_or(FormatCommandError::Unterminated)?;
        let name = after[..end].split(['(', ':']).next().unwrap_or_default();
        if !ACCESS_LOG_COMMANDS.contains(&name) {
            return Err(FormatCommandError::Unknown(name.to_string()));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// The cluster `metadata.filter_metadata` key of Istio's service metadata:
/// `{services: [{host, name, namespace}]}`, the service(s) behind the cluster (outbound: the
/// destination service; inbound: the services that select the workload on the port). The
/// proxy's metrics take `destination_service*` from the first.
pub const ISTIO_METADATA: &str = "istio";
pub const ISTIO_METADATA_SERVICES: &str = "services";
/// The type URL of a TLS transport socket's `typed_config` on a cluster.
pub const UPSTREAM_TLS_CONTEXT_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// The type URL of a TLS transport socket's `typed_config` on a filter chain.
pub const DOWNSTREAM_TLS_CONTEXT_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// The type URL of the plaintext transport socket's `typed_config`.
pub const RAW_BUFFER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
/// The type URL of the TLS inspector's `typed_config`.
pub const TLS_INSPECTOR_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
/// `FilterChainMatch.transport_protocol` of the inbound chain for mutual TLS, as the TLS
/// inspector detects it, and of the plaintext chain.
pub const TRANSPORT_PROTOCOL_TLS: &str = "tls";
pub const TRANSPORT_PROTOCOL_RAW_BUFFER: &str = "raw_buffer";

/// The listener filter that restores a redirected connection's original destination
/// (`SO_ORIGINAL_DST`): filter chains then match on it.
pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
/// The type URL of the original-destination listener filter's `typed_config`.
pub const ORIGINAL_DST_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst";
/// The listener filter that detects HTTP/1.x and h2c (prior knowledge) from the first bytes:
/// filter chains match on `application_protocols` `http/1.0`, `http/1.1`, `h2c`.
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
/// The type URL of the HTTP inspector's `typed_config`.
pub const HTTP_INSPECTOR_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
/// The network filter that proxies a connection's bytes to a cluster (opaque TCP).
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// The type URL of the TCP proxy's `typed_config`.
pub const TCP_PROXY_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/// Node metadata key of the traffic interception mode: [`INTERCEPTION_REDIRECT`] when the
/// pod's traffic is captured by iptables (virtual listeners matched by original destination);
/// absent or `NONE`: clients address the proxy explicitly.
pub const INTERCEPTION_MODE: &str = "INTERCEPTION_MODE";
pub const INTERCEPTION_REDIRECT: &str = "REDIRECT";
/// The cluster (`ORIGINAL_DST`) that connects to a captured connection's original destination:
/// outbound traffic to a destination the mesh does not know (`ALLOW_ANY`).
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// The cluster without endpoints: connections to it are closed (`REGISTRY_ONLY`, loop guard).
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// The cluster (`ORIGINAL_DST`, bound to [`INBOUND_PASSTHROUGH_SOURCE`]) that delivers
/// captured inbound connections to a port no service declares.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The source address inbound deliveries to the app bind to: the capture rules let traffic
/// from it on the loopback interface through, so it is not captured again.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";
/// The ALPN values a sidecar offers when it carries HTTP over mesh TLS, so the server's
/// inbound listener can tell HTTP from opaque TCP on a port of undeclared protocol (Istio's).
pub const ISTIO_HTTP_ALPNS: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// `FilterChainMatch.application_protocols` of chains for plaintext HTTP detected by the
/// HTTP inspector.
pub const HTTP_APPLICATION_PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// Istio's TCP metadata exchange (`istio.metadata_exchange`, Istio's proxy extension): a
/// network filter on inbound TCP filter chains, and an upstream filter in the `filters` of
/// outbound clusters with mesh mTLS. When the TLS handshake chose [`PEER_EXCHANGE_ALPN`], each
/// side writes a frame with its node metadata before any byte of the app (see
/// [`metadata_exchange`](crate::metadata_exchange)).
pub const METADATA_EXCHANGE: &str = "istio.metadata_exchange";
/// The type URL of the metadata exchange filter's `typed_config` (the same message on the
/// listener and on the cluster).
pub const METADATA_EXCHANGE_TYPE_URL: &str =
    "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange";
/// The ALPN value under which the metadata exchange happens (Istio's `istio-peer-exchange`):
/// the filter's `protocol`, offered first by mesh mTLS clients of opaque TCP.
pub const PEER_EXCHANGE_ALPN: &str = "istio-peer-exchange";

/// The HTTP filter name of fault injection (VirtualService `fault`), before the router on every
/// outbound connection manager; the faults themselves are per route, in the route's
/// `typed_per_filter_config` under this name.
pub const FAULT: &str = "envoy.filters.http.fault";
/// The type URL of the fault filter's `typed_config` and of its per-route config.
pub const FAULT_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// The HTTP filter name of CORS (VirtualService `corsPolicy`), on outbound connection
/// managers before the fault filter (Istio's order); routes carry their policy under this key
/// in `typed_per_filter_config`.
pub const CORS: &str = "envoy.filters.http.cors";
/// The type URL of the CORS filter's `typed_config` (empty: routes' policies apply).
pub const CORS_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
/// The type URL of a route's CORS policy (`typed_per_filter_config[CORS]`).
pub const CORS_POLICY_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";
/// The HTTP filter name of local rate limiting (Weft's LocalRateLimit), on the inbound
/// connection managers of the workloads a LocalRateLimit selects, before the router.
pub const LOCAL_RATELIMIT: &str = "envoy.filters.http.local_ratelimit";
/// The type URL of the local rate limit filter's `typed_config`.
pub const LOCAL_RATELIMIT_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// The descriptor key of the entry a LocalRateLimit rule's match produces (value: the rule's
/// name), in the filter's `rate_limits` and `descriptors`.
pub const RATELIMIT_RULE_KEY: &str = "weft.rule";
/// The descriptor key of the entry that says an earlier rule did not match (value: that rule's
/// name): first match wins.
pub const RATELIMIT_UNMATCHED_KEY: &str = "weft.unmatched";
/// The retry host predicate that makes each retry pick another endpoint than the ones tried.
pub const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
/// The type URL of [`PREVIOUS_HOSTS`]' `typed_config`.
pub const PREVIOUS_HOSTS_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
/// The retry priority that moves retries to other priorities (localities) than the ones tried
/// (VirtualService `retryRemoteLocalities`).
pub const PREVIOUS_PRIORITIES: &str = "envoy.retry_priorities.previous_priorities";
/// The type URL of [`PREVIOUS_PRIORITIES`]' `typed_config`.
pub const PREVIOUS_PRIORITIES_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig";
/// The route `metadata.filter_metadata` key of Weft's retry safety: `{non_idempotent:
/// "before_send"}` on routes with Istio's default retry policy, where a request whose method is
/// not idempotent is retried only when it never reached the upstream (connect failure, refused
/// stream). Envoy ignores it; a route without it retries as its policy says.
pub const RETRY_METADATA: &str = "weft.retry";
pub const RETRY_METADATA_NON_IDEMPOTENT: &str = "non_idempotent";
pub const RETRY_METADATA_BEFORE_SEND: &str = "before_send";

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
        assert_eq!(filters::http::rbac::v3::Rbac::type_url(), RBAC_TYPE_URL);
        assert_eq!(
            filters::network::rbac::v3::Rbac::type_url(),
            NETWORK_RBAC_TYPE_URL
        );
        assert_eq!(
            filters::http::jwt_authn::v3::JwtAuthentication::type_url(),
            JWT_AUTHN_TYPE_URL
        );
        assert_eq!(
            filters::http::fault::v3::HttpFault::type_url(),
            FAULT_TYPE_URL
        );
        assert_eq!(filters::http::cors::v3::Cors::type_url(), CORS_TYPE_URL);
        assert_eq!(
            filters::http::local_ratelimit::v3::LocalRateLimit::type_url(),
            LOCAL_RATELIMIT_TYPE_URL
        );
        assert_eq!(
            filters::http::cors::v3::CorsPolicy::type_url(),
            CORS_POLICY_TYPE_URL
        );
        assert_eq!(
            envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate::type_url(),
            PREVIOUS_HOSTS_TYPE_URL
        );
        assert_eq!(
            envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig::type_url(),
            PREVIOUS_PRIORITIES_TYPE_URL
        );
        assert_eq!(
            envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig::type_url(),
            URI_TEMPLATE_MATCHER_TYPE_URL
        );
        assert_eq!(
            transport_sockets::tls::v3::UpstreamTlsContext::type_url(),
            UPSTREAM_TLS_CONTEXT_TYPE_URL
        );
        assert_eq!(
            transport_sockets::tls::v3::DownstreamTlsContext::type_url(),
            DOWNSTREAM_TLS_CONTEXT_TYPE_URL
        );
        assert_eq!(
            transport_sockets::raw_buffer::v3::RawBuffer::type_url(),
            RAW_BUFFER_TYPE_URL
        );
        assert_eq!(
            filters::listener::tls_inspector::v3::TlsInspector::type_url(),
            TLS_INSPECTOR_TYPE_URL
        );
        assert_eq!(
            filters::listener::original_dst::v3::OriginalDst::type_url(),
            ORIGINAL_DST_TYPE_URL
        );
        assert_eq!(
            filters::listener::http_inspector::v3::HttpInspector::type_url(),
            HTTP_INSPECTOR_TYPE_URL
        );
        assert_eq!(
            filters::network::tcp_proxy::v3::TcpProxy::type_url(),
            TCP_PROXY_TYPE_URL
        );
        assert_eq!(
            <crate::metadata_exchange::MetadataExchange as prost::Name>::type_url(),
            METADATA_EXCHANGE_TYPE_URL
        );
        // The protocol options key is the message's full name.
        assert_eq!(
            upstreams::http::v3::HttpProtocolOptions::full_name(),
            HTTP_PROTOCOL_OPTIONS
        );
    }
}
