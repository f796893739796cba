//! The xDS generator: pure functions from `(Model, Proxy)` to Envoy resources, plugged
//! into the `weft-xds` ADS server. A proxy gets the explicit shape (clients address its
//! listeners) or, when its pod's traffic is captured, the capture shape ([`capture`]); both
//! cover only the services its Sidecar lets it see.

pub mod access_log;
pub mod canonical;
pub mod capture;
pub mod cluster_policy;
pub mod clusters;
pub mod dns;
pub mod endpoints;
pub mod listeners;
pub mod locality_lb;
pub mod metadata_exchange;
pub mod proxy;
pub mod ratelimit;
pub mod route_cors;
pub mod route_match;
pub mod route_policy;
pub mod routes;
pub mod security;
pub mod stats;
pub mod tls;
pub mod trace;

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, Node, config_source,
};
use envoy_types::pb::google::protobuf::{Any, Duration};
use weft_xds::{Resource, type_url};

use crate::model::Model;
pub use proxy::Proxy;

/// Serves one immutable [`Model`]; a new generator is published for every new model.
#[derive(Debug, Clone)]
pub struct XdsGenerator {
    pub model: Arc<Model>,
    /// When the source saw the change this model was built for (convergence is measured
    /// from it); `None`: when a stream gets it.
    pub changed_at: Option<std::time::Instant>,
}

impl XdsGenerator {
    pub fn new(model: Arc<Model>) -> Self {
        Self {
            model,
            changed_at: None,
        }
    }

    /// A generator for a model built for a change the source saw at `changed_at`.
    pub fn for_change(model: Arc<Model>, changed_at: Option<std::time::Instant>) -> Self {
        Self { model, changed_at }
    }

    /// All resources of one type for a proxy (empty for an unknown type URL).
    pub fn resources(&self, proxy: &Proxy, type_url: &str) -> Vec<Resource> {
        generate(&self.model, proxy, type_url)
    }
}

impl weft_xds::Generator for XdsGenerator {
    type Proxy = Proxy;

    fn connect(
        &self,
        node: &Node,
        peer: Option<&weft_xds::AuthenticatedPeer>,
    ) -> Result<Proxy, tonic::Status> {
        let mut proxy = Proxy::from_node(node)
            .map_err(|err| tonic::Status::invalid_argument(err.to_string()))?;
        if let Some(peer) = peer {
            proxy
                .authenticate(&peer.uri, &self.model.trust_domain)
                .map_err(|err| tonic::Status::permission_denied(err.to_string()))?;
        }
        Ok(proxy)
    }

    fn generate(&self, proxy: &Proxy, type_url: &str) -> Vec<Resource> {
        self.resources(proxy, type_url)
    }

    fn changed_at(&self) -> Option<std::time::Instant> {
        self.changed_at
    }
}

/// All resources of one type for a proxy (empty for an unknown type URL).
pub fn generate(model: &Model, proxy: &Proxy, type_url: &str) -> Vec<Resource> {
    match type_url {
        type_url::LISTENER => listeners::listeners(model, proxy)
            .iter()
            .map(|listener| {
                Resource::from_any(listener.name.clone(), tls::inbound::pack_listener(listener))
            })
            .collect(),
        type_url::ROUTE => routes::route_configurations(model, proxy)
            .iter()
            .map(|config| Resource::new(config.name.clone(), config))
            .collect(),
        type_url::CLUSTER => clusters::clusters(model, proxy)
            .iter()
            .map(|cluster| {
                Resource::from_any(cluster.name.clone(), canonical::pack_cluster(cluster))
            })
            .collect(),
        type_url::ENDPOINT => endpoints::load_assignments_for(model, proxy)
            .iter()
            .map(|assignment| Resource::new(assignment.cluster_name.clone(), assignment))
            .collect(),
        type_url::NAME_TABLE => dns::resources(model, proxy),
        other => {
            tracing::debug!(type_url = other, proxy = %proxy.id, "no resources for unknown type");
            Vec::new()
        }
    }
}

/// Packs a message into an `Any` with its own type URL.
pub fn pack<M: prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// A config source that says "over the same ADS stream".
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// A protobuf duration from a std one.
pub fn duration(value: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(value.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(value.subsec_nanos()).unwrap_or(0),
    }
}

/// Name of the outbound cluster of a service port (and subset; empty for all endpoints).
pub fn outbound_cluster_name(port: u32, subset: &str, hostname: &str) -> String {
    format!("outbound|{port}|{subset}|{hostname}")
}

/// Name of the inbound cluster that forwards to the app port.
pub fn inbound_cluster_name(app_port: u16) -> String {
    format!("inbound|{app_port}||")
}

/// Name of the inbound cluster (and, in the capture shape, route configuration) of a port the
/// workload serves.
pub fn inbound_port_name(port: u32) -> String {
    format!("inbound|{port}||")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_type() {
        let model = crate::testing::bookinfo_model();
        let mut proxy = Proxy::sidecar("default");
        proxy.app_port = Some(9080);
        let listeners = generate(&model, &proxy, type_url::LISTENER);
        assert_eq!(listeners.len(), 2);
        assert!(
            listeners[0]
                .body
                .type_url
                .ends_with("envoy.config.listener.v3.Listener")
        );
        let routes = generate(&model, &proxy, type_url::ROUTE);
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["outbound", "inbound|9080"]);
        assert!(!generate(&model, &proxy, type_url::CLUSTER).is_empty());
        assert!(!generate(&model, &proxy, type_url::ENDPOINT).is_empty());
        assert!(generate(&model, &proxy, "type.googleapis.com/unknown").is_empty());
    }

    #[test]
    fn names() {
        assert_eq!(
            outbound_cluster_name(9080, "v1", "reviews.default.svc.cluster.local"),
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        );
        assert_eq!(outbound_cluster_name(80, "", "a.b"), "outbound|80||a.b");
        assert_eq!(inbound_cluster_name(8080), "inbound|8080||");
        assert_eq!(
            duration(std::time::Duration::from_millis(1500)),
            Duration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
    }
}
