//! Access logs: the `access_log` of each HTTP connection manager and TCP proxy, from the
//! Telemetry that applies to the proxy ([`crate::model::telemetry`]) or the mesh's access log
//! settings, as Istio writes them: Envoy's file access logger (`envoy.access_loggers.file`)
//! with Istio's default text or JSON format (or the mesh's `accessLogFormat`; the same format
//! for TCP connections, whose request fields print `-`), and the Telemetry's
//! `filter.expression` as Envoy's CEL access log filter.
//!
//! ```text
//!  virtualInbound  HCMs, tcp_proxies ─► SERVER rules ┐
//!  virtualOutbound HCMs, tcp_proxies ─► CLIENT rules ┴─► AccessLog { FileAccessLog { path, log_format }, filter: CEL }
//! ```

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLog, AccessLogFilter, ExtensionFilter, access_log, access_log_filter, extension_filter,
};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message as _;

use super::listeners::{VIRTUAL_INBOUND, VIRTUAL_OUTBOUND};
use super::{Proxy, pack};
use crate::model::Model;
use crate::model::telemetry::{self, Side};

/// Envoy's file access logger.
pub const FILE_LOGGER: &str = "envoy.access_loggers.file";
/// Envoy's CEL access log filter.
pub const CEL_FILTER: &str = "envoy.access_loggers.extension_filters.cel";
/// Where Telemetry access logs go when the mesh names no file.
pub const STDOUT: &str = "/dev/stdout";

/// Istio's default text format.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON fields, and the peers' identities and the trace id.
pub const ISTIO_JSON_FIELDS: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_peer_principal", "%DOWNSTREAM_PEER_URI_SAN%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route_name", "%ROUTE_NAME%"),
    ("start_time", "%START_TIME%"),
    ("trace_id", "%TRACE_ID%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("upstream_peer_principal", "%UPSTREAM_PEER_URI_SAN%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
];

/// The access logs of the proxy's requests on `side` (empty: none).
pub fn access_logs(model: &Model, proxy: &Proxy, side: Side) -> Vec<AccessLog> {
    let Some(filter) = telemetry::access_log(model, &proxy.namespace, &proxy.labels, side) else {
        return Vec::new();
    };
    let path = if model.access_log.file.is_empty() {
        STDOUT.to_string()
    } else {
        model.access_log.file.clone()
    };
    let log_format = SubstitutionFormatString {
        format: Some(format(&model.access_log)),
        ..Default::default()
    };
    vec![AccessLog {
        name: FILE_LOGGER.to_string(),
        filter: filter.map(|expression| AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(
                ExtensionFilter {
                    name: CEL_FILTER.to_string(),
                    config_type: Some(extension_filter::ConfigType::TypedConfig(pack(
                        &ExpressionFilter {
                            expression,
                            ..Default::default()
                        },
                    ))),
                },
            )),
        }),
        config_type: Some(access_log::ConfigType::TypedConfig(pack_file_log(
            path, log_format,
        ))),
    }]
}

/// `FileAccessLog.log_format`.
const LOG_FORMAT_TAG: u32 = 5;
/// `SubstitutionFormatString.json_format`.
const JSON_FORMAT_TAG: u32 = 2;

/// The file access logger's config, a JSON format's fields in key order (see
/// [`super::canonical`]: the listener's version must not change when nothing did).
fn pack_file_log(path: String, log_format: SubstitutionFormatString) -> Any {
    let mut value = FileAccessLog {
        path,
        access_log_format: None,
    }
    .encode_to_vec();
    let format = match &log_format.format {
        Some(substitution_format_string::Format::JsonFormat(fields)) => {
            let mut body = Vec::new();
            super::canonical::length_delimited(
                &mut body,
                JSON_FORMAT_TAG,
                &super::canonical::struct_bytes(fields),
            );
            body
        }
        _ => log_format.encode_to_vec(),
    };
    super::canonical::length_delimited(&mut value, LOG_FORMAT_TAG, &format);
    Any {
        type_url: <FileAccessLog as prost::Name>::type_url(),
        value,
    }
}

fn format(mesh: &crate::model::MeshAccessLog) -> substitution_format_string::Format {
    if mesh.json {
        let custom: Option<serde_json::Map<String, serde_json::Value>> = (!mesh.format.is_empty())
            .then(|| serde_json::from_str(&mesh.format).ok())
            .flatten();
        let fields = match custom {
            Some(map) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect(),
            None => ISTIO_JSON_FIELDS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        };
        substitution_format_string::Format::JsonFormat(Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        Value {
                            kind: Some(Kind::StringValue(v)),
                        },
                    )
                })
                .collect(),
        })
    } else {
        let text = if mesh.format.is_empty() {
            ISTIO_TEXT_FORMAT.to_string()
        } else {
            mesh.format.clone()
        };
        substitution_format_string::Format::TextFormatSource(DataSource {
            specifier: Some(data_source::Specifier::InlineString(text)),
            ..Default::default()
        })
    }
}

/// Sets the access logs of every HTTP connection manager and TCP proxy of `listener`
/// (`virtualInbound`: the server side's, `virtualOutbound`: the client side's).
pub fn apply(model: &Model, proxy: &Proxy, listener: &mut Listener) {
    let side = match listener.name.as_str() {
        VIRTUAL_INBOUND => Side::Server,
        VIRTUAL_OUTBOUND => Side::Client,
        _ => return,
    };
    let logs = access_logs(model, proxy, side);
    if logs.is_empty() {
        return;
    }
    super::listeners::for_each_hcm(listener, |hcm| hcm.access_log = logs.clone());
    super::listeners::for_each_tcp_proxy(listener, |tcp| tcp.access_log = logs.clone());
}

/// Why the mesh's access log settings cannot be used (the controller does not start).
#[derive(Debug, thiserror::Error)]
pub enum MeshAccessLogError {
    #[error(
        "--access-log-format: with --access-log-encoding JSON it must be a JSON object of field names to format strings: {0}"
    )]
    Json(String),
    #[error("--access-log-format: unknown command %{0}% (supported: {list})", list = weft_xds::contract::ACCESS_LOG_COMMANDS.join(", "))]
    Command(String),
    #[error(
        "--access-log-format: a `%` opens a command that is not closed (`%%` is a literal `%`)"
    )]
    Unterminated,
}

/// Checks the mesh's access log format as the proxies will read it.
pub fn check_mesh_format(mesh: &crate::model::MeshAccessLog) -> Result<(), MeshAccessLogError> {
    if mesh.format.is_empty() {
        return Ok(());
    }
    let formats: Vec<String> = if mesh.json {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&mesh.format)
            .map_err(|e| MeshAccessLogError::Json(e.to_string()))?;
        map.into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(MeshAccessLogError::Json(format!(
                    "field {k:?} is not a string"
                ))),
            })
            .collect::<Result<_, _>>()?
    } else {
        vec![mesh.format.clone()]
    };
    use weft_xds::contract::{FormatCommandError, check_format_commands};
    for format in formats {
        check_format_commands(&format).map_err(|e| match e {
            FormatCommandError::Unterminated => MeshAccessLogError::Unterminated,
            FormatCommandError::Unknown(name) => MeshAccessLogError::Command(name),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MeshAccessLog;

    fn check(json: bool, format: &str) -> Result<(), MeshAccessLogError> {
        check_mesh_format(&MeshAccessLog {
            file: "/dev/stdout".into(),
            json,
            format: format.into(),
        })
    }

    #[test]
    fn mesh_formats_are_checked_as_the_proxy_reads_them() {
        assert!(check(false, ISTIO_TEXT_FORMAT).is_ok());
        assert!(check(false, "100%% %REQ(:METHOD)% %DURATION%").is_ok());
        assert!(
            matches!(check(false, "%NOPE%"), Err(MeshAccessLogError::Command(c)) if c == "NOPE")
        );
        assert!(matches!(
            check(false, "50% off"),
            Err(MeshAccessLogError::Unterminated)
        ));
        assert!(check(true, r#"{"code": "%RESPONSE_CODE%"}"#).is_ok());
        assert!(matches!(
            check(true, "[1]"),
            Err(MeshAccessLogError::Json(_))
        ));
        assert!(matches!(
            check(true, r#"{"n": 1}"#),
            Err(MeshAccessLogError::Json(_))
        ));
    }
}

#[cfg(test)]
mod pack_tests {
    use super::*;
    use crate::model::MeshAccessLog;

    #[test]
    fn a_json_format_packs_to_the_same_bytes_every_time() {
        let mesh = MeshAccessLog {
            file: "/dev/stdout".into(),
            json: true,
            format: String::new(),
        };
        let packed = || {
            pack_file_log(
                "/dev/stdout".into(),
                SubstitutionFormatString {
                    format: Some(format(&mesh)),
                    ..Default::default()
                },
            )
        };
        let first = packed();
        for _ in 0..20 {
            assert_eq!(packed(), first);
        }
        let decoded = FileAccessLog::decode(first.value.as_slice()).unwrap();
        let Some(envoy_types::pb::envoy::extensions::access_loggers::file::v3::file_access_log::AccessLogFormat::LogFormat(f)) = decoded.access_log_format else {
            panic!("log_format: {decoded:?}");
        };
        let Some(substitution_format_string::Format::JsonFormat(fields)) = f.format else {
            panic!("json_format: {f:?}");
        };
        assert_eq!(fields.fields.len(), ISTIO_JSON_FIELDS.len());
    }
}
