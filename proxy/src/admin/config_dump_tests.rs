//! `/config_dump`: Envoy's shape, each resource's proto as proto3 JSON, versions, rejections
//! and the query parameters.

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::google::protobuf::Duration;

use super::*;
use crate::config::xds_state::Outcome;

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";

fn cluster(name: &str) -> Any {
    pack(&cds::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::Eds as i32,
        )),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    })
}

fn listener(name: &str, port: u16) -> Any {
    // One chain with Istio's stats filter, whose message envoy-types lacks.
    let stats = weft_xds::stats::PluginConfig {
        disable_host_header_fallback: true,
        ..Default::default()
    };
    pack(&lds::Listener {
        name: name.into(),
        address: Some(socket_address(SocketAddr::from(([127, 0, 0, 1], port)))),
        filter_chains: vec![lds::FilterChain {
            filters: vec![lds::Filter {
                name: weft_xds::stats::STATS_FILTER.into(),
                config_type: Some(lds::filter::ConfigType::TypedConfig(pack(&stats))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Clusters `a` and `b` at v1; listener `l` accepted at v1, then rejected at v2.
fn state() -> XdsState {
    let xds = XdsState::default();
    xds.record(
        type_url::CLUSTER,
        "v1",
        None,
        Outcome {
            accepted: vec![("a".into(), cluster("a")), ("b".into(), cluster("b"))],
            rejected: vec![],
        },
        |_| true,
    );
    xds.record(
        type_url::LISTENER,
        "v1",
        None,
        Outcome {
            accepted: vec![("l".into(), listener("l", 80))],
            rejected: vec![],
        },
        |_| true,
    );
    xds.record(
        type_url::LISTENER,
        "v2",
        Some("listener \"l\": bad"),
        Outcome {
            accepted: vec![],
            rejected: vec![("l".into(), listener("l", 81), "listener \"l\": bad".into())],
        },
        |_| true,
    );
    xds
}

fn render_with(xds: &XdsState, query: &str) -> Result<Value, DumpError> {
    let config = ProxyConfig::default();
    let boot = bootstrap(core::Node::default(), "127.0.0.1:15000".parse().unwrap());
    let sources = Sources {
        config: &config,
        xds,
        identity: None,
        bootstrap: Some(&boot),
    };
    render(sources, &Query::parse(Some(query)))
}

#[test]
fn the_dump_has_envoys_shape_with_the_accepted_protos() {
    let dump = render_with(&state(), "").unwrap();
    let configs = dump["configs"].as_array().unwrap();
    let types: Vec<&str> = configs
        .iter()
        .map(|c| c["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "BootstrapConfigDump",
            "ClustersConfigDump",
            "ListenersConfigDump",
            "RoutesConfigDump",
            "SecretsConfigDump"
        ]
        .map(|t| format!("{ADMIN}{t}"))
    );
    assert_eq!(
        configs[0]["bootstrap"]["admin"]["address"]["socket_address"]["port_value"],
        15000
    );
    let clusters = &configs[1];
    assert_eq!(clusters["version_info"], "v1");
    let first = &clusters["dynamic_active_clusters"][0];
    assert_eq!(first["version_info"], "v1");
    assert!(
        first["last_updated"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    assert_eq!(
        first["cluster"]["@type"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    assert_eq!(first["cluster"]["name"], "a");
    assert_eq!(first["cluster"]["type"], "EDS");
    assert_eq!(first["cluster"]["connect_timeout"], "1s");

    let l = &configs[2]["dynamic_listeners"][0];
    assert_eq!(l["name"], "l");
    assert_eq!(
        l["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"],
        serde_json::json!({
            "@type": weft_xds::stats::STATS_TYPE_URL,
            "disable_host_header_fallback": true
        }),
        "Istio's stats filter config is rendered"
    );
    assert_eq!(l["active_state"]["version_info"], "v1");
    assert_eq!(
        l["active_state"]["listener"]["address"]["socket_address"]["port_value"],
        80
    );
    assert_eq!(l["error_state"]["details"], "listener \"l\": bad");
    assert_eq!(l["error_state"]["version_info"], "v2");
    assert_eq!(
        l["error_state"]["failed_configuration"]["address"]["socket_address"]["port_value"],
        81
    );
    assert!(l["error_state"]["last_update_attempt"].is_string());
}

#[test]
fn a_later_accepted_version_clears_the_error_state() {
    let xds = state();
    xds.record(
        type_url::LISTENER,
        "v3",
        None,
        Outcome {
            accepted: vec![("l".into(), listener("l", 82))],
            rejected: vec![],
        },
        |_| true,
    );
    let dump = render_with(&xds, "").unwrap();
    let l = &dump["configs"][2]["dynamic_listeners"][0];
    assert!(l.get("error_state").is_none(), "{l}");
    assert_eq!(l["active_state"]["version_info"], "v3");
}

#[test]
fn resource_mask_and_name_regex_select_as_envoy() {
    let xds = state();
    let dump = render_with(&xds, "resource=dynamic_active_clusters&name_regex=^b$").unwrap();
    let configs = dump["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "{dump}");
    assert_eq!(
        configs[0]["@type"],
        format!("{ADMIN}ClustersConfigDump.DynamicCluster")
    );
    assert_eq!(configs[0]["cluster"]["name"], "b");

    let dump = render_with(
        &xds,
        "resource=dynamic_active_clusters&mask=cluster.name,version_info",
    )
    .unwrap();
    let first = &dump["configs"][0];
    assert_eq!(first["version_info"], "v1");
    assert_eq!(first["cluster"]["name"], "a");
    assert!(first["cluster"].get("connect_timeout").is_none(), "{first}");
    assert!(first.get("last_updated").is_none(), "{first}");

    let err = render_with(&xds, "resource=nope").unwrap_err();
    assert!(err.is_bad_request(), "{err}");
    let err = render_with(&xds, "name_regex=(").unwrap_err();
    assert!(err.is_bad_request(), "{err}");
}

#[test]
fn include_eds_adds_the_endpoints() {
    let dump = render_with(&state(), "include_eds").unwrap();
    let last = dump["configs"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["@type"], format!("{ADMIN}EndpointsConfigDump"));
}

#[test]
fn a_resource_the_descriptors_cannot_render_does_not_hide_the_others() {
    let xds = XdsState::default();
    let mut odd = cds::Cluster {
        name: "odd".into(),
        ..Default::default()
    };
    odd.typed_extension_protocol_options.insert(
        "x".into(),
        Any {
            type_url: "type.googleapis.com/not.a.Known".into(),
            value: vec![1, 2, 3],
        },
    );
    xds.record(
        type_url::CLUSTER,
        "v1",
        None,
        Outcome {
            accepted: vec![("a".into(), cluster("a")), ("odd".into(), pack(&odd))],
            rejected: vec![],
        },
        |_| true,
    );
    let dump = render_with(&xds, "").unwrap();
    let clusters = &dump["configs"][1]["dynamic_active_clusters"];
    assert_eq!(clusters[0]["cluster"]["name"], "a", "{dump}");
    let odd = &clusters[1];
    assert_eq!(odd["version_info"], "v1", "{odd}");
    assert_eq!(
        odd["cluster"]["type_url"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    assert!(
        odd["cluster"]["weft_unrenderable"]
            .as_str()
            .is_some_and(|e| e.contains("not.a.Known")),
        "{odd}"
    );
}

#[test]
fn istios_metadata_exchange_config_renders() {
    let xds = XdsState::default();
    let exchange = weft_xds::metadata_exchange::MetadataExchange {
        protocol: "istio-peer-exchange".into(),
        enable_discovery: true,
    };
    let with_filter = cds::Cluster {
        name: "mx".into(),
        filters: vec![cds::Filter {
            name: "istio.metadata_exchange".into(),
            typed_config: Some(Any {
                type_url: weft_xds::contract::METADATA_EXCHANGE_TYPE_URL.into(),
                value: prost::Message::encode_to_vec(&exchange),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    xds.record(
        type_url::CLUSTER,
        "v1",
        None,
        Outcome {
            accepted: vec![("mx".into(), pack(&with_filter))],
            rejected: vec![],
        },
        |_| true,
    );
    let dump = render_with(&xds, "").unwrap();
    let filter = &dump["configs"][1]["dynamic_active_clusters"][0]["cluster"]["filters"][0];
    assert_eq!(filter["name"], "istio.metadata_exchange", "{dump}");
    assert_eq!(
        filter["typed_config"],
        serde_json::json!({
            "@type": weft_xds::contract::METADATA_EXCHANGE_TYPE_URL,
            "protocol": "istio-peer-exchange",
            "enable_discovery": true,
        }),
        "{dump}"
    );
}

/// The messages `/config_dump` renders: Envoy's config dump and every type the proxy reads
/// from an `Any` (or Istio commonly sends in one). `envoy_descriptors.bin` is the closure of
/// their files (see `regenerate_envoy_descriptors`).
const ROOTS: &[&str] = &[
    "envoy.admin.v3.ConfigDump",
    "envoy.admin.v3.BootstrapConfigDump",
    "envoy.admin.v3.ClustersConfigDump",
    "envoy.admin.v3.ListenersConfigDump",
    "envoy.admin.v3.RoutesConfigDump",
    "envoy.admin.v3.SecretsConfigDump",
    "envoy.admin.v3.EndpointsConfigDump",
    "envoy.config.endpoint.v3.ClusterLoadAssignment",
    "envoy.config.trace.v3.OpenTelemetryConfig",
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
    "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.extensions.filters.http.cors.v3.CorsPolicy",
    "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
    "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "envoy.extensions.filters.http.rbac.v3.RBAC",
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.network.rbac.v3.RBAC",
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
    "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
    "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "envoy.extensions.transport_sockets.tls.v3.Secret",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
];

#[test]
fn the_descriptors_have_every_type_the_dump_renders() {
    let pool = DescriptorPool::decode(DESCRIPTORS).unwrap();
    for root in ROOTS {
        assert!(pool.get_message_by_name(root).is_some(), "{root}");
    }
}

/// Writes `envoy_descriptors.bin`: the files of [`ROOTS`] and their imports, from the
/// descriptor set envoy-types ships (`ENVOY_TYPES_BIN=<cargo registry>/envoy-types-<v>/src/
/// generated/types.bin cargo test -p weft-proxy --lib regenerate -- --ignored`). Run it when
/// envoy-types is upgraded, or when the proxy reads a new type from an `Any`.
#[test]
#[ignore = "regenerates a checked-in file"]
fn regenerate_envoy_descriptors() {
    let path = std::env::var("ENVOY_TYPES_BIN").expect("ENVOY_TYPES_BIN");
    let full = DescriptorPool::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    fn visit(
        file: prost_reflect::FileDescriptor,
        seen: &mut std::collections::HashSet<String>,
        out: &mut Vec<u8>,
    ) {
        if !seen.insert(file.name().to_string()) {
            return;
        }
        for dependency in file.dependencies() {
            visit(dependency, seen, out);
        }
        // Without the comments (`source_code_info`): most of the bytes, and of the memory a
        // pool takes.
        let mut proto = file.file_descriptor_proto().clone();
        proto.source_code_info = None;
        prost::encoding::bytes::encode(1, &prost::Message::encode_to_vec(&proto), out);
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for root in ROOTS {
        let message = full
            .get_message_by_name(root)
            .unwrap_or_else(|| panic!("{root}"));
        visit(message.parent_file(), &mut seen, &mut out);
    }
    let dest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/admin/envoy_descriptors.bin"
    );
    std::fs::write(dest, &out).unwrap();
    println!("{} files, {} bytes", seen.len(), out.len());
}
