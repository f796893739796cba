//! CDS additions of the capture shape: the clusters of destinations the mesh does not know and
//! of the ports the workload serves, all delivering to a connection's original destination.
//!
//! ```text
//! PassthroughCluster         ORIGINAL_DST, CLUSTER_PROVIDED, downstream protocol (ALLOW_ANY)
//! BlackHoleCluster           STATIC, no endpoints                      (REGISTRY_ONLY, loop guards)
//! InboundPassthroughCluster  ORIGINAL_DST, CLUSTER_PROVIDED, from 127.0.0.6
//! inbound|P||                ORIGINAL_DST, CLUSTER_PROVIDED, from 127.0.0.6 (+ downstream
//!                            protocol on HTTP and undeclared ports)
//! ```

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{BindConfig, SocketAddress, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::contract::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_SOURCE, PASSTHROUGH_CLUSTER,
};

use super::inbound_ports;
use crate::model::Model;
use crate::service::PortKind;
use crate::xds::clusters::{DEFAULT_CONNECT_TIMEOUT, protocol_options};
use crate::xds::{Proxy, duration, inbound_port_name};

/// The clusters the capture shape adds to the outbound ones.
pub fn clusters(model: &Model, proxy: &Proxy) -> Vec<Cluster> {
    let mut clusters = vec![
        Cluster {
            // The connection manager's allow_any route uses it too: Istio's protocol options.
            typed_extension_protocol_options: protocol_options(false),
            ..original_dst(PASSTHROUGH_CLUSTER)
        },
        blackhole(),
        Cluster {
            upstream_bind_config: Some(inbound_source()),
            ..original_dst(INBOUND_PASSTHROUGH_CLUSTER)
        },
    ];
    for (port, kind) in inbound_ports(model, proxy) {
        let mut cluster = Cluster {
            upstream_bind_config: Some(inbound_source()),
            metadata: Some(crate::xds::clusters::istio_metadata(
                super::workload_services(model, proxy, Some(port)),
            )),
            ..original_dst(&inbound_port_name(port))
        };
        if kind != PortKind::Tcp {
            cluster.typed_extension_protocol_options = protocol_options(false);
        }
        clusters.push(cluster);
    }
    clusters
}

/// A cluster that connects to the downstream connection's original destination.
fn original_dst(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

/// The cluster without endpoints: connections to it are closed.
fn blackhole() -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: BLACKHOLE_CLUSTER.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Deliveries to the app bind to `127.0.0.6` (any port), which the capture rules let through.
fn inbound_source() -> BindConfig {
    BindConfig {
        source_address: Some(SocketAddress {
            protocol: socket_address::Protocol::Tcp as i32,
            address: INBOUND_PASSTHROUGH_SOURCE.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}
