//! TCP access logs in process: the `tcp_proxy`'s `access_log` writes one line per connection
//! when it closes (bytes of the app, upstream, flags, both peers' identities over mutual TLS),
//! its CEL filter sees the connection's attributes and no request or response, and refused
//! connections (`NC`, `UF`, RBAC) are logged too.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::mesh::{CLUSTER, MeshOptions, echo_through, start};
use common::{any, cluster, endpoints, socket};
use envoy_types::pb::envoy::config::accesslog::v3 as accesslog;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3 as file;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3 as cel;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use tokio::io::AsyncReadExt as _;
use weft_proxy::ConfigStore;
use weft_proxy::metrics::Metrics;
use weft_xds::type_url;

/// Istio's JSON fields that make sense for TCP.
const FIELDS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("downstream_peer_principal", "%DOWNSTREAM_PEER_URI_SAN%"),
    ("upstream_peer_principal", "%UPSTREAM_PEER_URI_SAN%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
];

/// A fresh file path for one test's log.
fn log_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "weft-tcp-access-log-{}-{name}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// Envoy's file access logger to `path`, JSON, with a CEL `filter` when given.
fn json_log(path: &Path, filter: Option<&str>) -> accesslog::AccessLog {
    let fields = FIELDS
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value {
                    kind: Some(Kind::StringValue(v.to_string())),
                },
            )
        })
        .collect();
    accesslog::AccessLog {
        name: "envoy.access_loggers.file".into(),
        filter: filter.map(|expression| accesslog::AccessLogFilter {
            filter_specifier: Some(
                accesslog::access_log_filter::FilterSpecifier::ExtensionFilter(
                    accesslog::ExtensionFilter {
                        name: "envoy.access_loggers.extension_filters.cel".into(),
                        config_type: Some(accesslog::extension_filter::ConfigType::TypedConfig(
                            any(&cel::ExpressionFilter {
                                expression: expression.into(),
                                ..Default::default()
                            }),
                        )),
                    },
                ),
            ),
        }),
        config_type: Some(accesslog::access_log::ConfigType::TypedConfig(any(
            &file::FileAccessLog {
                path: path.display().to_string(),
                access_log_format: Some(file::file_access_log::AccessLogFormat::LogFormat(
                    core::SubstitutionFormatString {
                        format: Some(core::substitution_format_string::Format::JsonFormat(
                            Struct { fields },
                        )),
                        ..Default::default()
                    },
                )),
            },
        ))),
    }
}

/// The lines of `path` once there are `n` (polling, 5 s at most).
async fn lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            assert_eq!(lines.len(), n, "{text}");
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} lines in {}:\n{text}",
            lines.len(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_line_per_connection_when_it_closes_with_its_bytes_and_peers() {
    let (client_log, server_log, unlogged) =
        (log_path("client"), log_path("server"), log_path("unlogged"));
    let metrics = Arc::new(Metrics::disabled());
    let mesh = start(
        &metrics,
        &metrics,
        MeshOptions {
            server_exchange: true,
            client_exchange: true,
            client_logs: vec![json_log(&client_log, None)],
            server_logs: vec![
                json_log(
                    &server_log,
                    Some("connection.mtls && xds.cluster_name == 'inbound|9000||'"),
                ),
                // A TCP connection has no response: the expression fails and nothing is logged.
                json_log(&unlogged, Some("response.code == 0")),
            ],
        },
    )
    .await;
    let mut conn = echo_through(mesh.entry, b"twelve bytes").await;
    // Nothing yet: the line is written when the connection closes.
    assert!(
        std::fs::read_to_string(&client_log)
            .unwrap_or_default()
            .is_empty()
    );
    tokio::io::AsyncWriteExt::shutdown(&mut conn).await.unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    drop(conn);

    let client = &lines(&client_log, 1).await[0];
    assert_eq!(client["bytes_received"], 12, "{client}");
    assert_eq!(client["bytes_sent"], 12, "{client}");
    assert_eq!(client["response_code"], 0);
    assert_eq!(client["response_flags"], "-");
    assert_eq!(client["response_code_details"], serde_json::Value::Null);
    assert_eq!(client["method"], serde_json::Value::Null);
    assert_eq!(client["protocol"], serde_json::Value::Null);
    assert_eq!(client["upstream_cluster"], CLUSTER);
    assert_eq!(client["upstream_host"], mesh.server_addr.to_string());
    assert_eq!(
        client["upstream_peer_principal"],
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    assert_eq!(client["downstream_local_address"], mesh.entry.to_string());
    assert!(
        client["upstream_local_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert!(
        client["start_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(client["duration"].is_u64());

    let server = &lines(&server_log, 1).await[0];
    assert_eq!(server["bytes_received"], 12, "{server}");
    assert_eq!(server["bytes_sent"], 12, "{server}");
    assert_eq!(server["upstream_cluster"], "inbound|9000||");
    assert_eq!(
        server["downstream_peer_principal"],
        "spiffe://cluster.local/ns/default/sa/client"
    );
    assert_eq!(
        server["requested_server_name"],
        "outbound_.9000_._.tcp-echo.default.svc.cluster.local"
    );
    assert!(
        std::fs::read_to_string(&unlogged)
            .unwrap_or_default()
            .is_empty(),
        "request/response attributes are absent on TCP"
    );
}

/// A network RBAC filter denying every connection under the policy `deny-all`.
fn deny_all() -> lds::Filter {
    use envoy_types::pb::envoy::config::rbac::v3 as rbac;
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
    let policy = rbac::Policy {
        permissions: vec![rbac::Permission {
            rule: Some(rbac::permission::Rule::Any(true)),
        }],
        principals: vec![rbac::Principal {
            identifier: Some(rbac::principal::Identifier::Any(true)),
        }],
        ..Default::default()
    };
    lds::Filter {
        name: "envoy.filters.network.rbac".into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(any(&net_rbac::Rbac {
            stat_prefix: "tcp.".into(),
            rules: Some(rbac::Rbac {
                action: rbac::rbac::Action::Deny as i32,
                policies: [("deny-all".to_string(), policy)].into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        }))),
    }
}

/// A plaintext listener `name` on `ip` whose TCP proxy (after `before`) sends to `cluster` and
/// logs to `path`.
fn logged_listener(
    name: &str,
    ip: &str,
    before: Vec<lds::Filter>,
    cluster: &str,
    path: &Path,
) -> envoy_types::pb::google::protobuf::Any {
    let mut filters = before;
    filters.push(lds::Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(any(&tcp::TcpProxy {
            stat_prefix: cluster.into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
            access_log: vec![json_log(path, None)],
            ..Default::default()
        }))),
    });
    any(&lds::Listener {
        name: name.into(),
        address: Some(socket(format!("{ip}:0").parse().unwrap())),
        traffic_direction: core::TrafficDirection::Outbound as i32,
        filter_chains: vec![lds::FilterChain {
            filters,
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[tokio::test]
async fn refused_connections_are_logged_with_their_flags() {
    let path = log_path("refused");
    // A port nothing listens on: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut store = ConfigStore::new();
    store
        .apply_response(type_url::CLUSTER, "1", vec![cluster("dead", false)])
        .unwrap();
    store
        .apply_response(type_url::ENDPOINT, "1", vec![endpoints("dead", &[dead])])
        .unwrap();
    store
        .apply_response(
            type_url::LISTENER,
            "1",
            vec![
                logged_listener("uf", "127.0.0.1", vec![], "dead", &path),
                logged_listener("nc", "127.0.0.2", vec![], "missing", &path),
                logged_listener("denied", "127.0.0.3", vec![deny_all()], "dead", &path),
            ],
        )
        .unwrap();
    for (listener, n) in [("uf", 1), ("nc", 2), ("denied", 3)] {
        let addr = store.local_addr(listener).unwrap();
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        lines(&path, n).await;
    }
    let lines = lines(&path, 3).await;
    assert_eq!(lines[0]["response_flags"], "UF", "{}", lines[0]);
    assert_eq!(lines[0]["upstream_cluster"], "dead");
    assert_eq!(lines[0]["upstream_host"], dead.to_string());
    assert_eq!(lines[0]["bytes_received"], 0);
    assert_eq!(lines[1]["response_flags"], "NC", "{}", lines[1]);
    assert_eq!(lines[1]["upstream_cluster"], serde_json::Value::Null);
    // RBAC: closed before any cluster, with Envoy's termination details.
    assert_eq!(lines[2]["response_flags"], "-", "{}", lines[2]);
    assert_eq!(
        lines[2]["connection_termination_details"],
        "rbac_access_denied_matched_policy[deny-all]"
    );
    assert_eq!(lines[2]["upstream_host"], serde_json::Value::Null);
}
