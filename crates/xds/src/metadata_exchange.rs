//! The config of Istio's TCP metadata exchange filter (`istio.metadata_exchange`,
//! `envoy.tcp.metadataexchange.config.MetadataExchange` in Istio's proxy), the same message on
//! inbound filter chains and on outbound clusters.
//!
//! Written out here with prost's derive because no published crate carries Istio's
//! `source/extensions/filters/network/metadata_exchange/config/metadata_exchange.proto`; field
//! names, tags and the package are Istio's, so Istio's proxy could read what the controller
//! sends and Weft's proxy could read istiod's (in this form; istiod sends it wrapped in a
//! `TypedStruct`).

/// `MetadataExchange`: the ALPN value under which the exchange happens.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetadataExchange {
    /// The ALPN the TLS handshake must have chosen for the exchange to happen
    /// (`istio-peer-exchange`).
    #[prost(string, tag = "1")]
    pub protocol: String,
    /// Istio's fallback to its workload discovery (WDS, ambient) when the peer sends no
    /// metadata; istiod sets it.
    #[prost(bool, tag = "2")]
    pub enable_discovery: bool,
}

impl prost::Name for MetadataExchange {
    const NAME: &'static str = "MetadataExchange";
    const PACKAGE: &'static str = "envoy.tcp.metadataexchange.config";

    fn full_name() -> String {
        format!("{}.{}", Self::PACKAGE, Self::NAME)
    }

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}
