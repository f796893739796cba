//! Access logs: the `access_log` of HTTP connection managers and TCP proxies (Envoy's file
//! access logger, what Istio's mesh `accessLogFile` and Telemetry `accessLogging` become), one
//! line per request, or per TCP connection.
//!
//! ```text
//!  HCM │ tcp_proxy access_log[] ─► AccessLog { path, format (format.rs: text │ JSON), filter (filter.rs: CEL) }
//!  handle (http/mod.rs): the listener logs? ─► LogRequest (method, URI, headers, version; boxed)
//!  the response body ends (metrics/http.rs Pending::finish) ─┐
//!  a TCP connection closes, or fails (tcp.rs; no request) ────┴─► Entry ─► filter? ─► line
//!     ─► sink.rs: the path's queue ─► its writer task (never blocks a request; full: dropped)
//! ```

pub mod filter;
pub mod format;
pub mod sink;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::accesslog::v3 as accesslog;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3 as file;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3 as cel_filter;
use envoy_types::pb::google::protobuf::value::Kind;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use prost::Message as _;

use crate::error::ResponseFlags;
pub use filter::Filter;
pub use format::Format;

/// Envoy's file access logger.
pub const FILE_LOGGER: &str = "envoy.access_loggers.file";
/// Its config's type URL.
pub const FILE_LOGGER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
/// The CEL access log filter's type URL.
pub const CEL_FILTER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter";

/// One access log of a connection manager.
#[derive(Debug)]
pub struct AccessLog {
    pub path: String,
    pub format: Format,
    pub filter: Option<Filter>,
    /// The path's queue, looked up on the first line.
    queue: OnceLock<tokio::sync::mpsc::Sender<String>>,
}

impl PartialEq for AccessLog {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.format == other.format && self.filter == other.filter
    }
}

/// Why an `access_log` entry was refused (the listener is NACKed).
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("logger {0:?}: only {FILE_LOGGER} (FileAccessLog) is supported")]
    Logger(String),
    #[error("typed_config: {0}")]
    Config(String),
    #[error("path: empty")]
    NoPath,
    #[error("log_format: {0}")]
    Format(#[from] format::FormatError),
    #[error("log_format.json_format[{key:?}]: only string values are supported")]
    JsonValue { key: String },
    #[error("filter: {0}")]
    Filter(String),
}

impl TryFrom<accesslog::AccessLog> for AccessLog {
    type Error = AccessLogError;

    fn try_from(log: accesslog::AccessLog) -> Result<Self, AccessLogError> {
        let Some(accesslog::access_log::ConfigType::TypedConfig(any)) = log.config_type else {
            return Err(AccessLogError::Logger(log.name));
        };
        if any.type_url != FILE_LOGGER_TYPE_URL {
            return Err(AccessLogError::Logger(any.type_url));
        }
        let config = file::FileAccessLog::decode(any.value.as_slice())
            .map_err(|e| AccessLogError::Config(e.to_string()))?;
        if config.path.is_empty() {
            return Err(AccessLogError::NoPath);
        }
        #[allow(deprecated)]
        let format = match config.access_log_format {
            None => Format::Text(format::Template::parse(format::ENVOY_DEFAULT)?),
            Some(file::file_access_log::AccessLogFormat::Format(text)) => {
                Format::Text(format::Template::parse(&text)?)
            }
            Some(
                file::file_access_log::AccessLogFormat::JsonFormat(s)
                | file::file_access_log::AccessLogFormat::TypedJsonFormat(s),
            ) => json(s)?,
            Some(file::file_access_log::AccessLogFormat::LogFormat(f)) => substitution(f)?,
        };
        let filter = match log.filter.and_then(|f| f.filter_specifier) {
            None => None,
            Some(accesslog::access_log_filter::FilterSpecifier::ExtensionFilter(ext)) => {
                let Some(accesslog::extension_filter::ConfigType::TypedConfig(any)) =
                    ext.config_type
                else {
                    return Err(AccessLogError::Filter(
                        "extension_filter without typed_config".into(),
                    ));
                };
                if any.type_url != CEL_FILTER_TYPE_URL {
                    return Err(AccessLogError::Filter(format!(
                        "{}: only the CEL expression filter is supported",
                        any.type_url
                    )));
                }
                let cel = cel_filter::ExpressionFilter::decode(any.value.as_slice())
                    .map_err(|e| AccessLogError::Filter(e.to_string()))?;
                Some(
                    Filter::compile(&cel.expression)
                        .map_err(|e| AccessLogError::Filter(e.to_string()))?,
                )
            }
            Some(_) => {
                return Err(AccessLogError::Filter(
                    "only extension_filter (CEL) is supported".into(),
                ));
            }
        };
        Ok(Self {
            path: config.path,
            format,
            filter,
            queue: OnceLock::new(),
        })
    }
}

// `text_format` is deprecated for `text_format_source`, and still honoured by Envoy.
#[allow(deprecated)]
fn substitution(f: core::SubstitutionFormatString) -> Result<Format, AccessLogError> {
    use core::substitution_format_string::Format as F;
    match f.format {
        Some(F::TextFormat(text)) => Ok(Format::Text(format::Template::parse(&text)?)),
        Some(F::TextFormatSource(source)) => match source.specifier {
            Some(core::data_source::Specifier::InlineString(text)) => {
                Ok(Format::Text(format::Template::parse(&text)?))
            }
            _ => Err(AccessLogError::Config(
                "log_format.text_format_source: only inline_string is supported".into(),
            )),
        },
        Some(F::JsonFormat(s)) => json(s),
        None => Ok(Format::Text(format::Template::parse(
            format::ENVOY_DEFAULT,
        )?)),
    }
}

fn json(s: envoy_types::pb::google::protobuf::Struct) -> Result<Format, AccessLogError> {
    // Keys in a stable order (the Struct is a map): sorted, as Envoy's sorted JSON output.
    let mut fields: Vec<_> = s.fields.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let fields = fields
        .into_iter()
        .map(|(key, value)| match value.kind {
            Some(Kind::StringValue(text)) => Ok((key, format::Template::parse(&text)?)),
            _ => Err(AccessLogError::JsonValue { key }),
        })
        .collect::<Result<_, _>>()?;
    Ok(Format::Json(fields))
}

impl AccessLog {
    /// Writes `entry`'s line when the filter lets it through.
    pub fn log(&self, entry: &Entry<'_>) {
        if self.filter.as_ref().is_some_and(|f| !f.matches(entry)) {
            return;
        }
        let line = self.format.line(entry);
        let queue = self.queue.get_or_init(|| sink::sender(&self.path));
        sink::send(queue, line);
    }
}

/// The request head an access log needs, kept from the request's start (only when its
/// listener logs: the one allocation access logging adds to a request).
#[derive(Debug)]
pub struct LogRequest {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub authority: Option<String>,
    pub headers: HeaderMap,
}

impl LogRequest {
    pub fn of<B>(req: &http::Request<B>) -> Box<Self> {
        Box::new(Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            authority: Some(crate::http::request_authority(req).to_string())
                .filter(|a| !a.is_empty()),
            headers: req.headers().clone(),
        })
    }

    /// `:path` (with the query).
    pub fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// Sets `x-request-id` when the proxy made one (the log shows what the upstream got).
    pub fn set_request_id(&mut self, id: &HeaderValue) {
        self.headers
            .entry("x-request-id")
            .or_insert_with(|| id.clone());
    }
}

/// Everything a log line can say about a finished request or TCP connection.
#[derive(Debug)]
pub struct Entry<'a> {
    /// A TCP connection's line: no request, response or code details (`-`), code 0, and no
    /// `request.*` or `response.*` attributes for the filter.
    pub tcp: bool,
    pub start: SystemTime,
    pub duration: Duration,
    pub request: Option<&'a LogRequest>,
    pub response_headers: Option<&'a HeaderMap>,
    pub code: u16,
    pub flags: ResponseFlags,
    pub grpc_status: Option<u16>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_host: Option<SocketAddr>,
    /// The response is the upstream's (not a reply the proxy made).
    pub via_upstream: bool,
    pub upstream_cluster: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub downstream_local: SocketAddr,
    pub downstream_remote: SocketAddr,
    pub sni: Option<&'a str>,
    pub downstream_peer: Option<&'a str>,
    pub upstream_peer: Option<&'a str>,
    /// A sampled request's trace (`%TRACE_ID%`).
    pub trace_id: Option<[u8; 16]>,
    /// Why the proxy closed the connection (`%CONNECTION_TERMINATION_DETAILS%`: Envoy's
    /// `rbac_access_denied_matched_policy[…]`).
    pub termination: Option<&'a str>,
    /// The local address of the upstream connection (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub upstream_local: Option<SocketAddr>,
    /// Why the upstream connection failed (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub upstream_failure: Option<&'a str>,
}

impl Entry<'_> {
    pub fn duration_ms(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The access logs of a connection manager, shared by its requests.
pub type AccessLogs = Arc<[AccessLog]>;

#[cfg(test)]
mod tests;
