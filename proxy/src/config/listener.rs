//! Listeners (LDS): Envoy `Listener` with one HTTP connection manager → `Listener`.
//!
//! ```text
//!  Listener ─► address ─► filter_chains[0] ─► http_connection_manager ─► rds name | inline routes
//!                                                 ├─► http_filters = [jwt_authn] [rbac]* router
//!                                                 │     (http_filters.rs: converted once, run per request)
//!                                                 └─► stream_idle_timeout, request_headers_timeout,
//!                                                     common_http_protocol_options.idle_timeout
//! ```

use std::mem::take;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use prost::Message;

use super::listener_transport::{ListenerTransport, MtlsInfo, filter_chains, mtls_info};
use super::{
    ConfigError, HttpFilter, Reason, RouteConfig, common_idle_timeout, duration, invalid,
    reject_leftover, reject_set, socket_address,
};

// Names shared with the controller: weft-xds's contract module.
pub use weft_xds::contract::{
    HTTP_CONNECTION_MANAGER as HCM_FILTER, HTTP_CONNECTION_MANAGER_TYPE_URL as HCM_TYPE,
    ROUTER as ROUTER_FILTER, ROUTER_TYPE_URL as ROUTER_TYPE,
};

/// Envoy's default HCM `stream_idle_timeout`.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's default downstream `common_http_protocol_options.idle_timeout`.
pub const DEFAULT_DOWNSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub routes: RouteSource,
    pub codec: Codec,
    pub generate_request_id: bool,
    /// The HCM's filters before the router, in order (JWT authentication, RBAC); empty when
    /// the router is the only one, which costs a request nothing.
    pub http_filters: Vec<HttpFilter>,
    /// HCM `stream_idle_timeout`: a request with no activity in either direction for this long
    /// ends (408/504 `SI` before the response head, reset after). Envoy's default 5 min when
    /// unset; `None` when set to 0 (disabled, as Istio does).
    pub stream_idle_timeout: Option<Duration>,
    /// HCM `request_headers_timeout`: the time a new request may take to send its headers.
    /// Unset or 0: none (Envoy's default).
    pub request_headers_timeout: Option<Duration>,
    /// HCM `common_http_protocol_options.idle_timeout`: a downstream connection without a
    /// request for this long is closed. Envoy's default 1 h when unset; `None` when 0.
    pub idle_timeout: Option<Duration>,
    /// Plaintext, TLS (STRICT) or both (PERMISSIVE), from the filter chains.
    pub transport: ListenerTransport,
    /// The mTLS mode and policy the controller named (`weft.mtls` metadata), for logs.
    pub mtls: Option<MtlsInfo>,
}

/// What the HTTP connection manager says, converted.
struct Manager {
    routes: RouteSource,
    codec: Codec,
    generate_request_id: bool,
    http_filters: Vec<HttpFilter>,
    stream_idle_timeout: Option<Duration>,
    request_headers_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

/// Where a listener's routes come from.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// RDS by name (over ADS).
    Rds(String),
    /// `route_config` inline in the connection manager.
    Inline(Arc<RouteConfig>),
}

/// Downstream codec (HCM `codec_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Auto,
    Http1,
    Http2,
}

impl TryFrom<lds::Listener> for Listener {
    type Error = ConfigError;

    fn try_from(mut l: lds::Listener) -> Result<Self, ConfigError> {
        let path = format!("listener {:?}", l.name);
        let err = |reason| ConfigError::new(&path, reason);
        if l.name.is_empty() {
            return Err(err(Reason::Missing("name")));
        }
        let address = socket_address("address", l.address.take().as_ref()).map_err(err)?;
        let chains = take(&mut l.filter_chains);
        let (chain, transport) =
            filter_chains(chains, take(&mut l.listener_filters)).map_err(err)?;
        let mtls = mtls_info(l.metadata.as_ref());
        let manager = filter_chain(chain).map_err(err)?;
        let name = take(&mut l.name);
        // Observability-only fields.
        l.stat_prefix.clear();
        l.metadata = None;
        l.traffic_direction = 0;
        l.access_log.clear();
        (|| {
            reject_set!(
                l,
                additional_addresses,
                use_original_dst,
                default_filter_chain,
                filter_chain_matcher,
                transparent,
                freebind,
                socket_options,
                udp_listener_config,
                api_listener,
                bind_to_port,
                listener_specifier
            );
            reject_leftover(&l, "listener")
        })()
        .map_err(err)?;
        Ok(Listener {
            name,
            address,
            routes: manager.routes,
            codec: manager.codec,
            generate_request_id: manager.generate_request_id,
            http_filters: manager.http_filters,
            stream_idle_timeout: manager.stream_idle_timeout,
            request_headers_timeout: manager.request_headers_timeout,
            idle_timeout: manager.idle_timeout,
            transport,
            mtls,
        })
    }
}

fn filter_chain(mut chain: lds::FilterChain) -> Result<Manager, Reason> {
    let filters = take(&mut chain.filters);
    chain.name.clear();
    chain.metadata = None;
    if chain
        .filter_chain_match
        .as_ref()
        .is_some_and(|m| *m != Default::default())
    {
        return Err(Reason::Unsupported(
            "filter_chains[0].filter_chain_match".into(),
        ));
    }
    chain.filter_chain_match = None;
    reject_set!(chain, transport_socket, use_proxy_proto);
    reject_leftover(&chain, "filter chain")?;
    let [filter] = <[lds::Filter; 1]>::try_from(filters).map_err(|f| {
        invalid(
            "filter_chains[0].filters",
            format!(
                "exactly one http_connection_manager filter is supported, got {} filters",
                f.len()
            ),
        )
    })?;
    let any = match filter.config_type {
        Some(lds::filter::ConfigType::TypedConfig(any)) if any.type_url == HCM_TYPE => any,
        Some(lds::filter::ConfigType::TypedConfig(any)) => {
            return Err(Reason::UnsupportedValue {
                field: "network filter",
                value: format!("{} ({})", filter.name, any.type_url),
            });
        }
        _ => {
            return Err(Reason::UnsupportedValue {
                field: "network filter without typed_config",
                value: filter.name,
            });
        }
    };
    let manager =
        hcm::HttpConnectionManager::decode(any.value.as_slice()).map_err(|e| Reason::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        })?;
    connection_manager(manager).map_err(|r| match r {
        Reason::Unsupported(f) => Reason::Unsupported(format!("http_connection_manager.{f}")),
        Reason::Invalid { field, reason } => Reason::Invalid {
            field: format!("http_connection_manager.{field}"),
            reason,
        },
        other => other,
    })
}

fn connection_manager(mut m: hcm::HttpConnectionManager) -> Result<Manager, Reason> {
    use hcm::http_connection_manager::{CodecType, RouteSpecifier};
    let codec = match CodecType::try_from(m.codec_type) {
        Ok(CodecType::Auto) => Codec::Auto,
        Ok(CodecType::Http1) => Codec::Http1,
        Ok(CodecType::Http2) => Codec::Http2,
        _ => {
            return Err(Reason::UnsupportedValue {
                field: "codec_type",
                value: m.codec_type.to_string(),
            });
        }
    };
    m.codec_type = 0;
    let routes = match m.route_specifier.take() {
        Some(RouteSpecifier::Rds(rds)) => {
            let ads = matches!(
                rds.config_source
                    .as_ref()
                    .and_then(|c| c.config_source_specifier.as_ref()),
                Some(core::config_source::ConfigSourceSpecifier::Ads(_))
            );
            if !ads {
                return Err(invalid("rds.config_source", "only ads is supported"));
            }
            if rds.route_config_name.is_empty() {
                return Err(Reason::Missing("rds.route_config_name"));
            }
            RouteSource::Rds(rds.route_config_name)
        }
        Some(RouteSpecifier::RouteConfig(rc)) => RouteSource::Inline(Arc::new(
            RouteConfig::try_from(rc).map_err(|e| invalid("route_config", e.to_string()))?,
        )),
        Some(RouteSpecifier::ScopedRoutes(_)) => {
            return Err(Reason::Unsupported("scoped_routes".into()));
        }
        None => return Err(Reason::Missing("rds or route_config")),
    };
    let http_filters = super::http_filters::http_filters(take(&mut m.http_filters))?;
    let generate_request_id = m.generate_request_id.take().is_none_or(|b| b.value);
    m.stat_prefix.clear();
    m.access_log.clear();
    m.tracing = None;
    // Envoy: unset = 5 min, 0 = disabled.
    let stream_idle_timeout =
        match duration("stream_idle_timeout", m.stream_idle_timeout.take().as_ref())? {
            None => Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            Some(d) => nonzero(d),
        };
    // Envoy: unset or 0 = none.
    let request_headers_timeout = duration(
        "request_headers_timeout",
        m.request_headers_timeout.take().as_ref(),
    )?
    .and_then(nonzero);
    // Envoy: unset = 1 h, 0 = none.
    let idle_timeout = match common_idle_timeout(m.common_http_protocol_options.take())? {
        None => Some(DEFAULT_DOWNSTREAM_IDLE_TIMEOUT),
        Some(d) => nonzero(d),
    };
    reject_set!(
        m,
        http_protocol_options,
        http2_protocol_options,
        request_timeout,
        use_remote_address,
        upgrade_configs,
        normalize_path,
        merge_slashes,
        local_reply_config,
        request_id_extension,
        forward_client_cert_details
    );
    reject_leftover(&m, "http_connection_manager")?;
    Ok(Manager {
        routes,
        codec,
        generate_request_id,
        http_filters,
        stream_idle_timeout,
        request_headers_timeout,
        idle_timeout,
    })
}

/// Envoy's timeouts: 0 means none.
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
