//! The HTTP connection manager (`envoy.filters.network.http_connection_manager`) of a filter
//! chain → `HttpManager`: where its routes come from, its codec, its HTTP filters and timeouts.
//!
//! ```text
//!  HttpConnectionManager ─► rds name | inline routes
//!     ├─► http_filters = [jwt_authn] [rbac]* [local_ratelimit]* [cors] [fault] router
//!     │                  (http_filters.rs: converted once, run per request)
//!     ├─► stream_idle_timeout, request_headers_timeout, common_http_protocol_options.idle_timeout
//!     ├─► tracing: sampling, tags, OpenTelemetry or Zipkin collector (trace.rs)
//!     └─► upgrade_configs: websocket, CONNECT ─► carried (http/upgrade.rs); other types NACKed
//! ```

use std::mem::take;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;

use super::{
    HttpFilter, Reason, RouteConfig, common_idle_timeout, duration, invalid, reject_leftover,
    reject_set,
};

/// Envoy's default HCM `stream_idle_timeout`.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's default downstream `common_http_protocol_options.idle_timeout`.
pub const DEFAULT_DOWNSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What one filter chain's HTTP connection manager says, converted.
#[derive(Debug)]
pub struct HttpManager {
    pub routes: RouteSource,
    pub codec: Codec,
    pub generate_request_id: bool,
    /// The HCM's filters before the router, in order (JWT authentication, RBAC, local rate
    /// limits); empty when the router is the only one, which costs a request nothing.
    pub http_filters: Vec<HttpFilter>,
    /// The HCM has the fault filter: `Some(None)` applies the routes' faults (Istio's empty
    /// default), `Some(Some(f))` also `f` on routes without their own; `None`: no faults at all.
    pub fault_filter: Option<Option<Box<super::fault::Fault>>>,
    /// The HCM has the CORS filter: routes' CORS policies apply.
    pub cors_filter: bool,
    /// HCM `stream_idle_timeout`: a request with no activity in either direction for this long
    /// ends (408/504 `SI` before the response head, reset after). Envoy's default 5 min when
    /// unset; `None` when set to 0 (disabled, as Istio does).
    pub stream_idle_timeout: Option<Duration>,
    /// HCM `request_headers_timeout`: the time a new request may take to send its headers.
    /// Unset or 0: none (Envoy's default).
    pub request_headers_timeout: Option<Duration>,
    /// HCM `common_http_protocol_options.idle_timeout`: a downstream connection without a
    /// request for this long is closed. Envoy's default 1 h when unset; `None` when 0.
    /// Also the idle timeout of an upgraded (WebSocket) tunnel.
    pub idle_timeout: Option<Duration>,
    /// HCM `upgrade_configs` has an enabled `websocket` entry: HTTP/1.1 upgrade requests are
    /// carried (`http/upgrade.rs`); otherwise their upgrade headers are removed.
    pub websocket: bool,
    /// HCM `access_log`: the file access logs its requests are written to (`access_log/`).
    pub access_logs: crate::access_log::AccessLogs,
    /// HCM `upgrade_configs` has an enabled `CONNECT` entry: HTTP/1.1 `CONNECT` requests are
    /// routed by their authority and, once the upstream answers 2xx, tunnelled
    /// (`http/upgrade.rs`); otherwise they are refused (`404`, as Envoy without it).
    pub connect: bool,
    /// HCM `tracing`: spans of its requests and where they go (`trace/`); `None`: requests
    /// pass their trace headers through untouched.
    pub tracing: Option<Arc<super::trace::Tracing>>,
    /// Istio's stats filter: requests are recorded in Istio's metrics with these settings;
    /// none: they are not recorded.
    pub stats: Option<Arc<crate::metrics::view::Stats>>,
}

/// Where a connection manager's routes come from.
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

/// Converts an HTTP connection manager (field names in errors relative to it).
pub(super) fn connection_manager(mut m: hcm::HttpConnectionManager) -> Result<HttpManager, Reason> {
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
    let filters = super::http_filters::http_filters(take(&mut m.http_filters))?;
    let generate_request_id = m.generate_request_id.take().is_none_or(|b| b.value);
    m.stat_prefix.clear();
    let access_logs = super::access_logs(take(&mut m.access_log))?;
    let tracing = m
        .tracing
        .take()
        .map(super::trace::tracing)
        .transpose()?
        .map(Arc::new);
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
    let (websocket, connect) = upgrades(take(&mut m.upgrade_configs))?;
    reject_set!(
        m,
        http_protocol_options,
        http2_protocol_options,
        request_timeout,
        use_remote_address,
        normalize_path,
        merge_slashes,
        local_reply_config,
        request_id_extension,
        forward_client_cert_details
    );
    reject_leftover(&m, "http_connection_manager")?;
    Ok(HttpManager {
        routes,
        codec,
        generate_request_id,
        http_filters: filters.before_routing,
        cors_filter: filters.cors,
        fault_filter: filters
            .fault
            .map(|f| Some(Box::new(f)).filter(|f| !f.is_empty())),
        stream_idle_timeout,
        request_headers_timeout,
        idle_timeout,
        websocket,
        connect,
        access_logs,
        tracing,
        stats: filters.stats,
    })
}

/// The upgrade types the proxy carries (Envoy compares upgrade types case-insensitively).
const WEBSOCKET: &str = "websocket";
const CONNECT: &str = "CONNECT";

/// `upgrade_configs` → whether WebSocket upgrades and `CONNECT` tunnels are carried. Envoy's
/// rules: the type is matched case-insensitively, `enabled` defaults to true, a type may
/// appear once. A type the proxy does not carry (`h2c`, …) is refused unless it is disabled,
/// as are upgrade-specific filter chains.
fn upgrades(
    configs: Vec<hcm::http_connection_manager::UpgradeConfig>,
) -> Result<(bool, bool), Reason> {
    let (mut websocket, mut connect) = (false, false);
    for (i, config) in configs.iter().enumerate() {
        let kind = config.upgrade_type.as_str();
        if kind.is_empty() {
            return Err(invalid(
                format!("upgrade_configs[{i}].upgrade_type"),
                "is required",
            ));
        }
        if configs[..i]
            .iter()
            .any(|c| c.upgrade_type.eq_ignore_ascii_case(kind))
        {
            return Err(invalid(
                format!("upgrade_configs[{i}].upgrade_type"),
                format!("{kind:?} appears more than once"),
            ));
        }
        let enabled = config.enabled.is_none_or(|b| b.value);
        if !config.filters.is_empty() {
            return Err(Reason::Unsupported(format!("upgrade_configs[{i}].filters")));
        }
        if kind.eq_ignore_ascii_case(WEBSOCKET) {
            websocket = enabled;
        } else if kind.eq_ignore_ascii_case(CONNECT) {
            connect = enabled;
        } else if enabled {
            // Only WebSocket and CONNECT are carried (docs/LIMITS.md).
            return Err(Reason::Unsupported(format!(
                "upgrade_configs[{i}].upgrade_type {kind:?}"
            )));
        }
    }
    Ok((websocket, connect))
}

/// Envoy's timeouts: 0 means none.
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}
