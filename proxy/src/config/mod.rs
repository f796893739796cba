//! Domain configuration: Envoy xDS resources converted (and validated) into what the data path runs.
//!
//! ```text
//!  Any ─decode─► envoy Listener / RouteConfiguration / Cluster / ClusterLoadAssignment
//!      ─TryFrom─► Listener / RouteConfig / ClusterConfig / Assignment   (reject = NACK)
//!      ─ConfigStore─► Arc<ProxyConfig> (snapshot.rs: names resolved) ─watch─► data path
//! ```

pub mod assignment;
pub mod circuit_breakers;
mod cluster;
pub mod cluster_http;
pub mod cors;
pub mod fault;
pub mod filter_chain;
pub mod formatter;
pub mod hash_policy;
mod http_filters;
mod http_manager;
mod listener;
pub mod local_ratelimit;
pub(crate) mod matcher;
pub mod mirror;
mod names;
pub mod outlier;
mod per_filter;
pub mod retry;
mod route;
mod route_action;
mod snapshot;
pub mod stats;
mod store;
pub mod tls;
pub mod trace;
pub mod xds_state;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use cluster::{
    Assignment, ClusterConfig, ClusterTls, DiscoveryKind, HTTP_PROTOCOL_OPTIONS, SocketMatch,
    UpstreamProtocol,
};
pub use filter_chain::{
    ChainMatch, FilterChain, MtlsInfo, Network, TcpCluster, TcpProxy, TransportProtocol,
};
pub use http_filters::{
    HttpFilter, JWT_AUTHN_FILTER, JWT_AUTHN_TYPE, NETWORK_RBAC_FILTER, NETWORK_RBAC_TYPE,
    RBAC_FILTER, RBAC_TYPE,
};
pub use http_manager::{Codec, DEFAULT_DOWNSTREAM_IDLE_TIMEOUT, HttpManager, RouteSource};
pub use listener::{
    Direction, HCM_FILTER, HCM_TYPE, Inspectors, Listener, ROUTER_FILTER, ROUTER_TYPE,
};
pub use route::{
    Action, ClusterPick, ClusterRef, DirectResponse, ForwardAction, HeaderAdd, HeaderMatch,
    HeaderMatchKind, HeaderOps, HeaderSource, PathMatch, QueryMatch, Redirect, Route, RouteConfig,
    RouteMatch, StringMatch, StringMatchKind, VirtualHost, WeightedCluster,
};
pub use snapshot::{ActiveChain, ActiveListener, ProxyConfig, RouteSlot, RouteTable, TypeState};
pub use store::{ConfigStore, INITIAL_FETCH_TIMEOUT};

use crate::upstream::Cluster;

/// A config resource that the proxy cannot apply, with the path to the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// e.g. `route config "outbound": virtual host "reviews:9080": route 2`.
    pub path: String,
    pub reason: Reason,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0} is not supported by weft-proxy")]
    Unsupported(String),
    #[error("{field} {value:?} is not supported by weft-proxy")]
    UnsupportedValue { field: &'static str, value: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field} {pattern:?}: regex parse error: {error}")]
    Regex {
        field: String,
        pattern: String,
        error: String,
    },
    #[error("cannot decode {type_url}: {error}")]
    Decode { type_url: String, error: String },
    #[error("duplicate resource name")]
    Duplicate,
}

impl Reason {
    /// The same reason for a field inside `prefix` (e.g. `http_filters[1]`): field names are
    /// prefixed so that the error keeps naming the field from the resource's root.
    pub(crate) fn within(self, prefix: &str) -> Reason {
        let join = |field: &str| {
            if field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{field}")
            }
        };
        match self {
            Reason::Missing(field) => invalid(join(field), "is required"),
            Reason::Unsupported(field) => Reason::Unsupported(join(&field)),
            Reason::UnsupportedValue { field, value } => {
                Reason::Unsupported(format!("{} {value:?}", join(field)))
            }
            Reason::Invalid { field, reason } => Reason::Invalid {
                field: join(&field),
                reason,
            },
            Reason::Regex {
                field,
                pattern,
                error,
            } => Reason::Regex {
                field: join(&field),
                pattern,
                error,
            },
            Reason::Decode { type_url, error } => Reason::Decode {
                type_url,
                error: format!("{prefix}: {error}"),
            },
            Reason::Duplicate => invalid(prefix, "duplicate"),
        }
    }
}

impl ConfigError {
    pub fn new(path: impl fmt::Display, reason: Reason) -> Self {
        Self {
            path: path.to_string(),
            reason,
        }
    }
}

/// Shorthand for `Reason::Invalid`.
/// An `access_log` list (a connection manager's or a TCP proxy's) → the access logs it writes.
pub(crate) fn access_logs(
    logs: Vec<envoy_types::pb::envoy::config::accesslog::v3::AccessLog>,
) -> Result<crate::access_log::AccessLogs, Reason> {
    Ok(logs
        .into_iter()
        .enumerate()
        .map(|(i, log)| {
            crate::access_log::AccessLog::try_from(log)
                .map_err(|e| invalid(format!("access_log[{i}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into())
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Reason {
    Reason::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Fails with `Unsupported` for the first listed field that differs from its default.
macro_rules! reject_set {
    ($msg:expr, $($field:ident),+ $(,)?) => {{
        let msg = &$msg;
        $(
            #[allow(deprecated)]
            if $crate::config::is_set(&msg.$field) {
                return Err($crate::config::Reason::Unsupported(stringify!($field).to_string()));
            }
        )+
    }};
}
pub(crate) use reject_set;

/// Whether a protobuf field differs from its default value.
pub(crate) fn is_set<T: Default + PartialEq>(v: &T) -> bool {
    *v != T::default()
}

/// After the honoured and harmless fields of `rest` were cleared, any field still set
/// would change behaviour: reject it by its protobuf tag.
pub(crate) fn reject_leftover<M: prost::Message>(rest: &M, message: &str) -> Result<(), Reason> {
    let bytes = rest.encode_to_vec();
    if bytes.is_empty() {
        return Ok(());
    }
    let mut buf = bytes.as_slice();
    let tag = prost::encoding::decode_varint(&mut buf)
        .map(|key| key >> 3)
        .unwrap_or(0);
    Err(Reason::Unsupported(format!("{message} field #{tag}")))
}

/// Converts an optional protobuf duration; negative or out-of-range values are errors.
pub(crate) fn duration(
    field: &'static str,
    d: Option<&envoy_types::pb::google::protobuf::Duration>,
) -> Result<Option<std::time::Duration>, Reason> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(invalid(
            field,
            format!("{}s {}ns is not a valid duration", d.seconds, d.nanos),
        ));
    }
    Ok(Some(std::time::Duration::new(
        d.seconds as u64,
        d.nanos as u32,
    )))
}

/// `common_http_protocol_options` (HCM and cluster protocol options alike): its `idle_timeout`
/// (unset options or field: `None`); any other setting is refused.
pub(crate) fn common_idle_timeout(
    options: Option<envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions>,
) -> Result<Option<std::time::Duration>, Reason> {
    let Some(mut common) = options else {
        return Ok(None);
    };
    let idle = duration(
        "common_http_protocol_options.idle_timeout",
        common.idle_timeout.take().as_ref(),
    )?;
    if common != Default::default() {
        return Err(Reason::Unsupported(
            "common_http_protocol_options settings other than idle_timeout".into(),
        ));
    }
    Ok(idle)
}

/// Parses a socket address from an Envoy `Address` (TCP `socket_address` only).
pub(crate) fn socket_address(
    field: &'static str,
    address: Option<&envoy_types::pb::envoy::config::core::v3::Address>,
) -> Result<std::net::SocketAddr, Reason> {
    let (host, port) = host_port(field, address)?;
    let ip: std::net::IpAddr = host.parse().map_err(|_| {
        invalid(
            format!("{field}.address"),
            format!("{host:?} is not an IP address"),
        )
    })?;
    Ok(std::net::SocketAddr::new(ip, port))
}

/// The host (as written: an IP or, for DNS clusters, a name) and port of an Envoy `Address`
/// (TCP `socket_address` only, no resolver or namespace settings).
pub(crate) fn host_port<'a>(
    field: &'static str,
    address: Option<&'a envoy_types::pb::envoy::config::core::v3::Address>,
) -> Result<(&'a str, u16), Reason> {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    let Some(address) = address.and_then(|a| a.address.as_ref()) else {
        return Err(Reason::Missing(field));
    };
    let address::Address::SocketAddress(sa) = address else {
        return Err(Reason::Unsupported(format!("{field}: non-socket address")));
    };
    if sa.protocol != socket_address::Protocol::Tcp as i32 {
        return Err(Reason::Unsupported(format!("{field}.protocol UDP")));
    }
    if !sa.resolver_name.is_empty() || sa.ipv4_compat || !sa.network_namespace_filepath.is_empty() {
        return Err(Reason::Unsupported(format!(
            "{field}: resolver_name/ipv4_compat/network_namespace_filepath"
        )));
    }
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p).map_err(|_| {
            invalid(
                format!("{field}.port_value"),
                format!("{p} is out of range"),
            )
        })?,
        Some(socket_address::PortSpecifier::NamedPort(ref n)) => {
            return Err(Reason::Unsupported(format!("{field}.named_port {n:?}")));
        }
        None => return Err(Reason::Missing("port_value")),
    };
    Ok((sa.address.as_str(), port))
}

/// A hash map for the lookups every request makes (listener by address, virtual host by
/// domain). foldhash instead of std's SipHash: a lookup of a 40-byte host costs a tenth of the
/// instructions. Flooding attacks need control over the keys inserted, and these maps are built
/// from config only (requests only look up); the seed is still random per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Clusters by name, as the data path sees them.
pub type Clusters = HashMap<String, Arc<Cluster>>;
