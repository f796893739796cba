//! Istio's TCP metadata exchange (`istio.metadata_exchange`), where istiod puts it: first on
//! every inbound TCP filter chain that accepts mutual TLS (the server side), and in the
//! `filters` of every outbound cluster with mesh mTLS (auto mTLS or `ISTIO_MUTUAL`, the client
//! side). After a handshake that chose ALPN `istio-peer-exchange` (which mesh mTLS clients of
//! opaque TCP offer first), both sidecars write their node metadata in a frame before the app's
//! bytes, so that Istio's TCP metrics name the peer on both reporters.
//!
//! ```text
//!  virtualInbound  0.0.0.0_P {tls} (TCP P) ─► [istio.metadata_exchange, network rbac*, tcp_proxy]
//!  outbound|P|subset|host (mesh mTLS)      ─► filters: [istio.metadata_exchange]
//! ```

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use weft_xds::contract::{METADATA_EXCHANGE, PEER_EXCHANGE_ALPN};
use weft_xds::metadata_exchange::MetadataExchange;

use super::pack;

/// The filter's config, as istiod writes it.
fn config() -> MetadataExchange {
    MetadataExchange {
        protocol: PEER_EXCHANGE_ALPN.to_string(),
        enable_discovery: true,
    }
}

/// The network filter of an inbound TCP chain with mutual TLS (before its RBAC and TCP proxy).
pub fn listener_filter() -> Filter {
    Filter {
        name: METADATA_EXCHANGE.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&config()))),
    }
}

/// The upstream filter of an outbound cluster with mesh mTLS.
pub fn cluster_filter() -> cds::Filter {
    cds::Filter {
        name: METADATA_EXCHANGE.to_string(),
        typed_config: Some(pack(&config())),
        ..Default::default()
    }
}
