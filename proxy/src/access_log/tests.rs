//! Access log config conversion and line rendering.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use envoy_types::pb::envoy::config::accesslog::v3 as accesslog;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3 as file;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3 as cel_filter;
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message;

use super::*;

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.into(),
        value: m.encode_to_vec(),
    }
}

fn log(
    format: Option<file::file_access_log::AccessLogFormat>,
    filter: Option<&str>,
) -> accesslog::AccessLog {
    accesslog::AccessLog {
        name: FILE_LOGGER.into(),
        filter: filter.map(|expression| accesslog::AccessLogFilter {
            filter_specifier: Some(
                accesslog::access_log_filter::FilterSpecifier::ExtensionFilter(
                    accesslog::ExtensionFilter {
                        name: "envoy.access_loggers.extension_filters.cel".into(),
                        config_type: Some(accesslog::extension_filter::ConfigType::TypedConfig(
                            any(
                                CEL_FILTER_TYPE_URL,
                                &cel_filter::ExpressionFilter {
                                    expression: expression.into(),
                                    ..Default::default()
                                },
                            ),
                        )),
                    },
                ),
            ),
        }),
        config_type: Some(accesslog::access_log::ConfigType::TypedConfig(any(
            FILE_LOGGER_TYPE_URL,
            &file::FileAccessLog {
                path: "/dev/stdout".into(),
                access_log_format: format,
            },
        ))),
    }
}

fn json_format(fields: &[(&str, &str)]) -> file::file_access_log::AccessLogFormat {
    file::file_access_log::AccessLogFormat::LogFormat(core::SubstitutionFormatString {
        format: Some(core::substitution_format_string::Format::JsonFormat(
            Struct {
                fields: fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::StringValue(v.to_string())),
                            },
                        )
                    })
                    .collect(),
            },
        )),
        ..Default::default()
    })
}

fn entry<'a>(request: &'a LogRequest, code: u16) -> Entry<'a> {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    Entry {
        tcp: false,
        start: UNIX_EPOCH + Duration::from_millis(1_764_805_271_123),
        duration: Duration::from_millis(12),
        request: Some(request),
        response_headers: None,
        code,
        flags: ResponseFlags::NONE,
        grpc_status: None,
        bytes_received: 0,
        bytes_sent: 42,
        upstream_host: Some(addr("10.0.0.7:9080")),
        via_upstream: true,
        upstream_cluster: Some("outbound|9080||reviews.default.svc.cluster.local"),
        route_name: Some("default"),
        downstream_local: addr("10.0.0.1:15001"),
        downstream_remote: addr("10.0.0.2:40000"),
        sni: None,
        downstream_peer: Some("spiffe://cluster.local/ns/default/sa/client"),
        upstream_peer: None,
        trace_id: None,
        termination: None,
        upstream_local: None,
        upstream_failure: None,
    }
}

fn request() -> LogRequest {
    let req = http::Request::get("/reviews/1?x=y")
        .header("host", "reviews:9080")
        .header("user-agent", "say \"hi\"\t")
        .header("x-request-id", "abc")
        .body(())
        .unwrap();
    *LogRequest::of(&req)
}

#[test]
fn json_lines_have_typed_numbers_nulls_and_escapes() {
    let log = AccessLog::try_from(log(
        Some(json_format(&[
            ("method", "%REQ(:METHOD)%"),
            ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
            ("response_code", "%RESPONSE_CODE%"),
            ("response_flags", "%RESPONSE_FLAGS%"),
            ("bytes_sent", "%BYTES_SENT%"),
            ("duration", "%DURATION%"),
            ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
            ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
            ("request_id", "%REQ(X-REQUEST-ID)%"),
            ("start_time", "%START_TIME%"),
            ("peer", "%DOWNSTREAM_PEER_URI_SAN%"),
            ("user_agent", "%REQ(USER-AGENT)%"),
        ])),
        None,
    ))
    .unwrap();
    let request = request();
    let line = log.format.line(&entry(&request, 200));
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/reviews/1?x=y");
    assert_eq!(json["user_agent"], "say \"hi\"\t");
    assert_eq!(json["response_code"], 200);
    assert_eq!(json["response_flags"], "-");
    assert_eq!(json["bytes_sent"], 42);
    assert_eq!(json["duration"], 12);
    assert_eq!(
        json["upstream_cluster"],
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(json["requested_server_name"], serde_json::Value::Null);
    assert_eq!(json["request_id"], "abc");
    assert_eq!(json["start_time"], "2025-12-03T23:41:11.123Z");
    assert_eq!(json["peer"], "spiffe://cluster.local/ns/default/sa/client");
    assert!(line.ends_with("}\n"));
}

#[test]
fn a_sampled_requests_trace_id_is_logged() {
    let log =
        AccessLog::try_from(log(Some(json_format(&[("trace_id", "%TRACE_ID%")])), None)).unwrap();
    let request = request();
    let untraced = log.format.line(&entry(&request, 200));
    let json: serde_json::Value = serde_json::from_str(&untraced).unwrap();
    assert_eq!(json["trace_id"], serde_json::Value::Null);
    let mut traced = entry(&request, 200);
    let mut id = [0u8; 16];
    id[0] = 0x4b;
    id[15] = 0x36;
    traced.trace_id = Some(id);
    let json: serde_json::Value = serde_json::from_str(&log.format.line(&traced)).unwrap();
    assert_eq!(json["trace_id"], "4b000000000000000000000000000036");
}

#[test]
fn the_default_text_format_and_the_cel_filter() {
    let log = AccessLog::try_from(log(None, Some("response.code >= 400"))).unwrap();
    let request = request();
    assert!(!log.filter.as_ref().unwrap().matches(&entry(&request, 200)));
    assert!(log.filter.as_ref().unwrap().matches(&entry(&request, 503)));
    let line = log.format.line(&entry(&request, 503));
    assert!(
        line.starts_with("[2025-12-03T23:41:11.123Z] \"GET /reviews/1?x=y HTTP/1.1\" 503 - 0 42 12 - \"-\" \"say \"hi\"\t\" \"abc\" \"reviews:9080\" \"10.0.0.7:9080\""),
        "{line}"
    );
    let by_header =
        Filter::compile("request.headers['x-request-id'] == 'abc' && request.method == 'GET'")
            .unwrap();
    assert!(by_header.matches(&entry(&request, 200)));
}

#[test]
fn what_cannot_be_applied_is_refused() {
    let err = |l: accesslog::AccessLog| AccessLog::try_from(l).unwrap_err().to_string();
    assert!(err(log(None, Some("respose.code > 1"))).contains("unknown attribute \"respose\""));
    assert!(
        err(log(Some(json_format(&[("x", "%NOPE%")])), None)).contains("unknown command %NOPE%")
    );
    let mut other = log(None, None);
    other.config_type = Some(accesslog::access_log::ConfigType::TypedConfig(Any {
        type_url:
            "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"
                .into(),
        value: vec![],
    }));
    assert!(err(other).contains("only envoy.access_loggers.file"));
}

/// Istio's default text format.
const ISTIO_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// A TCP connection's entry: no request or response.
fn tcp_entry<'a>() -> Entry<'a> {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    Entry {
        tcp: true,
        request: None,
        code: 0,
        bytes_received: 5,
        route_name: None,
        via_upstream: false,
        upstream_cluster: Some("outbound|3306||db"),
        upstream_local: Some(addr("10.0.0.1:41000")),
        termination: Some("rbac_access_denied_matched_policy[none]"),
        ..entry_without_request()
    }
}

fn entry_without_request<'a>() -> Entry<'a> {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    Entry {
        tcp: false,
        start: UNIX_EPOCH + Duration::from_millis(1_764_805_271_123),
        duration: Duration::from_millis(12),
        request: None,
        response_headers: None,
        code: 0,
        flags: ResponseFlags::NONE,
        grpc_status: None,
        bytes_received: 0,
        bytes_sent: 42,
        upstream_host: Some(addr("10.0.0.7:3306")),
        via_upstream: false,
        upstream_cluster: None,
        route_name: None,
        downstream_local: addr("10.0.0.1:15001"),
        downstream_remote: addr("10.0.0.2:40000"),
        sni: None,
        downstream_peer: None,
        upstream_peer: None,
        trace_id: None,
        termination: None,
        upstream_local: None,
        upstream_failure: None,
    }
}

#[test]
fn a_tcp_connection_in_istios_text_format() {
    let log = AccessLog::try_from(log(
        Some(file::file_access_log::AccessLogFormat::LogFormat(
            core::SubstitutionFormatString {
                format: Some(core::substitution_format_string::Format::TextFormatSource(
                    core::DataSource {
                        specifier: Some(core::data_source::Specifier::InlineString(
                            ISTIO_TEXT.into(),
                        )),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
        )),
        None,
    ))
    .unwrap();
    assert_eq!(
        log.format.line(&tcp_entry()),
        "[2025-12-03T23:41:11.123Z] \"- - -\" 0 - - rbac_access_denied_matched_policy[none] \"-\" 5 42 12 - \"-\" \"-\" \"-\" \"-\" \"10.0.0.7:3306\" outbound|3306||db 10.0.0.1:41000 10.0.0.1:15001 10.0.0.2:40000 - -\n"
    );
}

#[test]
fn a_tcp_connection_has_no_request_or_response_for_the_filter() {
    let entry = tcp_entry();
    let matches = |expression: &str| Filter::compile(expression).unwrap().matches(&entry);
    assert!(matches("xds.cluster_name == 'outbound|3306||db'"));
    assert!(matches(
        "destination.port == 15001 && source.address == '10.0.0.2'"
    ));
    assert!(matches(
        "connection.termination_details.startsWith('rbac_access_denied')"
    ));
    assert!(matches("upstream.local_address == '10.0.0.1:41000'"));
    // Absent, so the expression fails and the connection is not logged (as in Envoy).
    assert!(!matches("response.code == 0"));
    assert!(!matches("request.size == 5"));
}
