//! Listeners (LDS): Envoy `Listener` → `Listener`: an address, the listener filters that look
//! at a new connection (original destination, TLS and HTTP inspection), and the filter chains
//! a connection is matched to.
//!
//! ```text
//!  Listener ─► address
//!           ─► listener_filters: original_dst │ tls_inspector │ http_inspector (each at most once)
//!                               listener_filters_timeout, continue_on_listener_filters_timeout
//!           ─► filter_chains[] + default_filter_chain ─► FilterChain (filter_chain.rs)
//!                 each: ChainMatch, plaintext │ TLS, Network::Http (http_manager.rs) │ Network::Tcp
//!           ─► metadata weft.mtls (logs)
//! ```

use std::collections::HashSet;
use std::mem::take;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;

use super::filter_chain::{ChainMatch, FilterChain, MtlsInfo, Network, filter_chain, mtls_info};
use super::{ConfigError, Reason, duration, invalid, reject_leftover, reject_set, socket_address};
use weft_xds::contract::{
    HTTP_INSPECTOR, HTTP_INSPECTOR_TYPE_URL, ORIGINAL_DST, ORIGINAL_DST_TYPE_URL, TLS_INSPECTOR,
    TLS_INSPECTOR_TYPE_URL,
};

// Names shared with the controller: weft-xds's contract module.
pub use weft_xds::contract::{
    HTTP_CONNECTION_MANAGER as HCM_FILTER, HTTP_CONNECTION_MANAGER_TYPE_URL as HCM_TYPE,
    ROUTER as ROUTER_FILTER, ROUTER_TYPE_URL as ROUTER_TYPE,
};

/// Envoy's default `listener_filters_timeout`.
pub const DEFAULT_LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// The `original_dst` listener filter: chains match on (and the data path sees) the
    /// connection's original destination (`SO_ORIGINAL_DST`), else its local address.
    pub original_dst: bool,
    pub inspectors: Inspectors,
    /// The filter chains, then `default_filter_chain` when there is one.
    pub chains: Vec<FilterChain>,
    pub has_default_chain: bool,
    /// The mTLS mode and policy the controller named (`weft.mtls` metadata), for logs.
    pub mtls: Option<MtlsInfo>,
    /// `traffic_direction`: inbound listeners report Istio's metrics as the destination,
    /// the others (outbound, gateways) as the source.
    pub direction: Direction,
}

/// A listener's `traffic_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    Inbound,
    Outbound,
    #[default]
    Unspecified,
}

impl Direction {
    /// Who reports the requests of a listener of this direction.
    pub fn reporter(self) -> crate::metrics::Reporter {
        match self {
            Self::Inbound => crate::metrics::Reporter::Destination,
            Self::Outbound | Self::Unspecified => crate::metrics::Reporter::Source,
        }
    }
}

/// What the listener may look at in a connection's first bytes to pick a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspectors {
    /// `tls_inspector`: TLS or not, SNI, ALPN.
    pub tls: bool,
    /// `http_inspector`: HTTP/1.x or h2c (prior knowledge).
    pub http: bool,
    /// `listener_filters_timeout`: how long to wait for the bytes; `None` = for ever.
    pub timeout: Option<Duration>,
    /// On timeout, pick a chain with what is known (Envoy: `continue_on_listener_filters_timeout`)
    /// instead of closing the connection.
    pub continue_on_timeout: bool,
}

impl Listener {
    /// The default chain, if any.
    pub fn default_chain(&self) -> Option<usize> {
        self.has_default_chain.then(|| self.chains.len() - 1)
    }

    /// Every HTTP connection manager of the listener, with its chain index.
    pub fn http_managers(&self) -> impl Iterator<Item = (usize, &super::HttpManager)> {
        self.chains
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.network {
                Network::Http(m) => Some((i, &**m)),
                Network::Tcp(_) => None,
            })
    }
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
        let (original_dst, mut inspectors) =
            listener_filters(take(&mut l.listener_filters)).map_err(err)?;
        inspectors.timeout = match duration(
            "listener_filters_timeout",
            l.listener_filters_timeout.take().as_ref(),
        )
        .map_err(err)?
        {
            None => Some(DEFAULT_LISTENER_FILTERS_TIMEOUT),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        inspectors.continue_on_timeout = take(&mut l.continue_on_listener_filters_timeout);
        let mut chains = Vec::new();
        for (i, chain) in take(&mut l.filter_chains).into_iter().enumerate() {
            chains.push(filter_chain(&format!("filter_chains[{i}]"), chain).map_err(err)?);
        }
        let has_default_chain = match l.default_filter_chain.take() {
            Some(chain) => {
                let chain = filter_chain("default_filter_chain", chain).map_err(err)?;
                if chain.matcher != ChainMatch::default() {
                    return Err(err(invalid(
                        "default_filter_chain.filter_chain_match",
                        "the default chain takes no match",
                    )));
                }
                chains.push(chain);
                true
            }
            None => false,
        };
        if chains.is_empty() {
            return Err(err(invalid(
                "filter_chains",
                "at least one filter chain (or a default_filter_chain) is required",
            )));
        }
        check_chains(&chains, has_default_chain, inspectors).map_err(err)?;
        let mtls = mtls_info(l.metadata.as_ref());
        let name = take(&mut l.name);
        // Observability-only fields.
        l.stat_prefix.clear();
        l.metadata = None;
        let direction = match core::TrafficDirection::try_from(take(&mut l.traffic_direction)) {
            Ok(core::TrafficDirection::Inbound) => Direction::Inbound,
            Ok(core::TrafficDirection::Outbound) => Direction::Outbound,
            _ => Direction::Unspecified,
        };
        l.access_log.clear();
        (|| {
            reject_set!(
                l,
                additional_addresses,
                use_original_dst,
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
            original_dst,
            inspectors,
            chains,
            has_default_chain,
            mtls,
            direction,
        })
    }
}

/// The listener filters: which of original_dst, tls_inspector and http_inspector are on.
fn listener_filters(filters: Vec<lds::ListenerFilter>) -> Result<(bool, Inspectors), Reason> {
    let mut original_dst = false;
    let mut inspectors = Inspectors {
        tls: false,
        http: false,
        timeout: None,
        continue_on_timeout: false,
    };
    for (i, filter) in filters.into_iter().enumerate() {
        let field = format!("listener_filters[{i}]");
        if filter.filter_disabled.is_some() {
            return Err(Reason::Unsupported(format!("{field}.filter_disabled")));
        }
        let type_url = match &filter.config_type {
            Some(lds::listener_filter::ConfigType::TypedConfig(any)) => {
                if !any.value.is_empty() {
                    return Err(Reason::Unsupported(format!(
                        "{field} {:?} settings",
                        filter.name
                    )));
                }
                Some(any.type_url.as_str())
            }
            Some(lds::listener_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(Reason::Unsupported(format!("{field}.config_discovery")));
            }
            None => None,
        };
        let is = |name: &str, url: &str| type_url.map_or(filter.name == name, |t| t == url);
        let flag = if is(ORIGINAL_DST, ORIGINAL_DST_TYPE_URL) {
            &mut original_dst
        } else if is(TLS_INSPECTOR, TLS_INSPECTOR_TYPE_URL) {
            &mut inspectors.tls
        } else if is(HTTP_INSPECTOR, HTTP_INSPECTOR_TYPE_URL) {
            &mut inspectors.http
        } else {
            return Err(Reason::UnsupportedValue {
                field: "listener_filters[].name",
                value: filter.name,
            });
        };
        if *flag {
            return Err(invalid(field, format!("{} appears twice", filter.name)));
        }
        *flag = true;
    }
    Ok((original_dst, inspectors))
}

/// Chains that no connection could ever take, or two chains no connection could tell apart,
/// are config errors (as in Envoy).
fn check_chains(
    chains: &[FilterChain],
    has_default: bool,
    inspectors: Inspectors,
) -> Result<(), Reason> {
    let matched = if has_default {
        &chains[..chains.len() - 1]
    } else {
        chains
    };
    let mut seen = HashSet::new();
    for (i, chain) in matched.iter().enumerate() {
        let m = &chain.matcher;
        let field = format!("filter_chains[{i}].filter_chain_match");
        if (m.transport_protocol.is_some() || !m.server_names.is_empty()) && !inspectors.tls {
            return Err(invalid(
                field,
                format!(
                    "transport_protocol and server_names need the {TLS_INSPECTOR} listener filter"
                ),
            ));
        }
        if !m.application_protocols.is_empty() && !inspectors.tls && !inspectors.http {
            return Err(invalid(
                field,
                format!(
                    "application_protocols need the {TLS_INSPECTOR} or {HTTP_INSPECTOR} listener filter"
                ),
            ));
        }
        if !seen.insert(format!("{m:?}")) {
            return Err(invalid(
                field,
                format!(
                    "the same match as an earlier chain (chain {:?}): no connection could take it",
                    chain.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
