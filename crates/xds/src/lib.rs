//! Envoy xDS v3 Aggregated Discovery Service (ADS), state-of-the-world only: the server
//! used by the control plane and the client used by the proxy.
//!
//! The crate knows Envoy type URLs and the xDS protocol (versions, nonces, ACK/NACK,
//! subscriptions), and nothing about Istio. The control plane plugs in a [`Generator`];
//! the proxy plugs in a [`Handler`].

pub mod client;
pub mod contract;
pub mod metadata_exchange;
pub mod metrics;
pub mod nds;
pub mod resource;
pub mod server;
pub mod stats;
pub mod type_url;

pub use client::{AdsClient, ClientConfig, ClientError, Handler, error_chain};
pub use metrics::XdsMetrics;
pub use resource::{Resource, version_of};
pub use server::{AdsServer, AuthenticatedPeer, Generator, Nack, ProxyStatus, TypeStatus};

/// Re-export of the Envoy `Node` that identifies a proxy.
pub use envoy_types::pb::envoy::config::core::v3::Node;
/// Re-export of the generated tonic server wrapper returned by [`AdsServer::into_service`].
pub use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
/// Re-export of the protobuf `Any` used in resources, so users need not spell the path.
pub use envoy_types::pb::google::protobuf::Any;
