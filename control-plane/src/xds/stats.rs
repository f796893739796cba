//! Istio's stats filter (`istio.stats`) in every chain of a proxy's listeners, as Istio puts
//! it there: before the router in each HTTP connection manager, before the TCP proxy in each
//! TCP chain, with the side's metric overrides ([`crate::model::metrics`]). A side whose
//! metrics are off gets no filter, and its proxy records nothing there.
//!
//! ```text
//!  virtualInbound  ─► SERVER ┐                        HCM: [… filters] istio.stats router
//!  virtualOutbound ─► CLIENT ┴─► resolve ─► PluginConfig ─► TCP: [… filters] istio.stats tcp_proxy
//! ```

use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;
use weft_xds::contract::TCP_PROXY;
use weft_xds::stats::{MetricConfig, PluginConfig, STATS_FILTER, STATS_TYPE_URL};

use super::Proxy;
use super::listeners::VIRTUAL_INBOUND;
use crate::model::Model;
use crate::model::metrics::{SideMetrics, resolve};
use crate::model::telemetry::Side;

/// The stats filter config of a side's listeners.
pub fn plugin_config(side: &SideMetrics) -> PluginConfig {
    PluginConfig {
        // Weft's proxies never label with the Host header (see the field's doc).
        disable_host_header_fallback: true,
        tcp_reporting_duration: side.reporting_interval.map(super::duration),
        metrics: side
            .overrides
            .iter()
            .map(|o| MetricConfig {
                name: o.name.to_string(),
                drop: o.drop,
                tags_to_remove: o.remove.clone(),
                dimensions: o.dimensions.clone(),
                r#match: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Adds the stats filter to every chain of `listener` (`virtualInbound`: the server side's
/// metrics, the others: the client side's).
pub fn apply(model: &Model, proxy: &Proxy, listener: &mut Listener) {
    let side = if listener.name == VIRTUAL_INBOUND {
        Side::Server
    } else {
        Side::Client
    };
    let Some(metrics) = resolve(model, &proxy.namespace, &proxy.labels, side) else {
        return;
    };
    let config = Any {
        type_url: STATS_TYPE_URL.to_string(),
        value: plugin_config(&metrics).encode_to_vec(),
    };
    let chains = listener
        .filter_chains
        .iter_mut()
        .chain(listener.default_filter_chain.as_mut());
    for chain in chains {
        if let Some(i) = chain.filters.iter().position(|f| f.name == TCP_PROXY) {
            chain.filters.insert(
                i,
                Filter {
                    name: STATS_FILTER.to_string(),
                    config_type: Some(filter::ConfigType::TypedConfig(config.clone())),
                },
            );
        }
    }
    super::listeners::for_each_hcm(listener, |hcm| {
        // Before the router, which is last.
        let at = hcm.http_filters.len().saturating_sub(1);
        hcm.http_filters.insert(
            at,
            HttpFilter {
                name: STATS_FILTER.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(config.clone())),
                ..Default::default()
            },
        );
    });
}
