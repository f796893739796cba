//! Two sidecars speaking opaque TCP over mesh mutual TLS in one process: a client sidecar
//! (outbound listener, a cluster with Istio's mesh TLS socket) → a server sidecar (inbound
//! listener with the downstream TLS socket) → an echo app. Identities come from a real CA;
//! Istio's metadata exchange filters and the TCP proxies' access logs are the caller's choice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::config::accesslog::v3 as accesslog;
use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use weft_identity::{CaMaterial, CertificateAuthority, SpiffeId, WorkloadCert, WorkloadKey};
use weft_proxy::ConfigStore;
use weft_proxy::identity::IdentityState;
use weft_proxy::metrics::Metrics;
use weft_proxy::tls::MeshTls;
use weft_xds::contract::{METADATA_EXCHANGE, TCP_PROXY};
use weft_xds::metadata_exchange::MetadataExchange;
use weft_xds::type_url;

use super::{any, cluster, endpoints, socket};

const DAY: Duration = Duration::from_secs(86_400);

pub fn ca() -> CertificateAuthority {
    CertificateAuthority::new(CaMaterial::self_signed("cluster.local", DAY).unwrap()).unwrap()
}

/// The identity of ServiceAccount `sa` in `default`, signed by `ca` (keep the sender alive).
pub fn identity(ca: &CertificateAuthority, sa: &str) -> watch::Sender<Arc<IdentityState>> {
    let (tx, _rx) = watch::channel(Arc::new(state(ca, sa)));
    tx
}

/// A fresh certificate of ServiceAccount `sa` in `default`, signed by `ca`.
pub fn state(ca: &CertificateAuthority, sa: &str) -> IdentityState {
    let id = SpiffeId::new("cluster.local", "default", sa).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let chain = ca.sign(&key.csr_pem(&id).unwrap(), &id, DAY).unwrap();
    let cert =
        WorkloadCert::from_response(key, &chain, &id, &weft_identity::tls::provider()).unwrap();
    IdentityState {
        cert: Some(Arc::new(cert)),
        bundle: Some(Arc::new(ca.trust_bundle().clone())),
        last_error: None,
        issued: 1,
    }
}

fn sds(name: &str) -> tls::SdsSecretConfig {
    tls::SdsSecretConfig {
        name: name.into(),
        sds_config: Some(core::ConfigSource {
            config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                Default::default(),
            )),
            resource_api_version: core::ApiVersion::V3 as i32,
            ..Default::default()
        }),
    }
}

/// Istio's mesh TLS context: TLS 1.3, the workload certificate and root from SDS (`default`,
/// `ROOTCA`), the peer's URI SANs checked when `sans` names any.
pub fn mesh_common(alpn: &[&str], sans: &[&str]) -> tls::CommonTlsContext {
    tls::CommonTlsContext {
        tls_params: Some(tls::TlsParameters {
            tls_minimum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv13 as i32,
            ..Default::default()
        }),
        alpn_protocols: alpn.iter().map(ToString::to_string).collect(),
        tls_certificate_sds_secret_configs: vec![sds("default")],
        validation_context_type: Some(
            tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                tls::common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(tls::CertificateValidationContext {
                        match_typed_subject_alt_names: sans
                            .iter()
                            .map(|san| tls::SubjectAltNameMatcher {
                                san_type: tls::subject_alt_name_matcher::SanType::Uri as i32,
                                matcher: Some(StringMatcher {
                                    match_pattern: Some(string_matcher::MatchPattern::Exact(
                                        san.to_string(),
                                    )),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds("ROOTCA")),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

pub fn tls_socket(any: Any) -> core::TransportSocket {
    core::TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(any)),
    }
}

fn exchange_config() -> Any {
    any(&MetadataExchange {
        protocol: "istio-peer-exchange".into(),
        enable_discovery: true,
    })
}

/// What the two sidecars are configured with.
#[derive(Default, Clone)]
pub struct MeshOptions {
    /// `istio.metadata_exchange` on the server's chain and the client's cluster.
    pub server_exchange: bool,
    pub client_exchange: bool,
    /// The TCP proxies' `access_log`.
    pub client_logs: Vec<accesslog::AccessLog>,
    pub server_logs: Vec<accesslog::AccessLog>,
}

/// The client and server sidecars and the app behind them.
pub struct TcpMesh {
    pub client: ConfigStore,
    pub server: ConfigStore,
    /// The client sidecar's outbound listener: connect here.
    pub entry: SocketAddr,
    pub server_addr: SocketAddr,
    /// Bytes the echo app received.
    pub app_received: Arc<AtomicU64>,
    _ids: [watch::Sender<Arc<IdentityState>>; 2],
}

/// The outbound cluster's name: its host is the destination service.
pub const CLUSTER: &str = "outbound|9000||tcp-echo.default.svc.cluster.local";

/// An echo app counting what it receives.
async fn echo(received: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Istio's stats filter without overrides, as the controller writes it before a TCP proxy:
/// the chain records Istio's TCP metrics.
fn stats_filter() -> lds::Filter {
    let config = weft_xds::stats::PluginConfig {
        disable_host_header_fallback: true,
        ..Default::default()
    };
    lds::Filter {
        name: weft_xds::stats::STATS_FILTER.into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(any(&config))),
    }
}

fn tcp_filter(cluster: &str, logs: Vec<accesslog::AccessLog>) -> lds::Filter {
    lds::Filter {
        name: TCP_PROXY.into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(any(&tcp::TcpProxy {
            stat_prefix: cluster.into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
            access_log: logs,
            ..Default::default()
        }))),
    }
}

/// Starts the pair: client (`client_metrics`, ServiceAccount `client`) → server
/// (`server_metrics`, ServiceAccount `reviews`) → echo app.
pub async fn start(
    client_metrics: &Arc<Metrics>,
    server_metrics: &Arc<Metrics>,
    options: MeshOptions,
) -> TcpMesh {
    let ca = ca();
    let (client_id, server_id) = (identity(&ca, "client"), identity(&ca, "reviews"));
    let app_received = Arc::new(AtomicU64::new(0));
    let app = echo(app_received.clone()).await;

    let inbound = "inbound|9000||";
    let mut server = ConfigStore::new()
        .with_tls(MeshTls::new(Some(server_id.subscribe())))
        .with_metrics(server_metrics.clone());
    server
        .apply_response(type_url::CLUSTER, "1", vec![cluster(inbound, false)])
        .unwrap();
    server
        .apply_response(type_url::ENDPOINT, "1", vec![endpoints(inbound, &[app])])
        .unwrap();
    let mut filters = Vec::new();
    if options.server_exchange {
        filters.push(lds::Filter {
            name: METADATA_EXCHANGE.into(),
            config_type: Some(lds::filter::ConfigType::TypedConfig(exchange_config())),
        });
    }
    filters.push(stats_filter());
    filters.push(tcp_filter(inbound, options.server_logs));
    let downstream = tls::DownstreamTlsContext {
        require_client_certificate: Some(BoolValue { value: true }),
        common_tls_context: Some(mesh_common(&["h2", "http/1.1"], &[])),
        ..Default::default()
    };
    let listener = lds::Listener {
        name: "in".into(),
        address: Some(socket("127.0.0.1:0".parse().unwrap())),
        traffic_direction: core::TrafficDirection::Inbound as i32,
        filter_chains: vec![lds::FilterChain {
            filters,
            transport_socket: Some(tls_socket(any(&downstream))),
            ..Default::default()
        }],
        ..Default::default()
    };
    server
        .apply_response(type_url::LISTENER, "1", vec![any(&listener)])
        .unwrap();
    let server_addr = server.local_addr("in").unwrap();

    let mut client = ConfigStore::new()
        .with_tls(MeshTls::new(Some(client_id.subscribe())))
        .with_metrics(client_metrics.clone());
    let mut outbound = cds::Cluster::decode(cluster(CLUSTER, false).value.as_slice()).unwrap();
    let upstream = tls::UpstreamTlsContext {
        sni: "outbound_.9000_._.tcp-echo.default.svc.cluster.local".into(),
        common_tls_context: Some(mesh_common(&["istio-peer-exchange", "istio"], &[])),
        ..Default::default()
    };
    outbound.transport_socket = Some(tls_socket(any(&upstream)));
    if options.client_exchange {
        outbound.filters = vec![cds::Filter {
            name: METADATA_EXCHANGE.into(),
            typed_config: Some(exchange_config()),
            ..Default::default()
        }];
    }
    client
        .apply_response(type_url::CLUSTER, "1", vec![any(&outbound)])
        .unwrap();
    client
        .apply_response(
            type_url::ENDPOINT,
            "1",
            vec![endpoints(CLUSTER, &[server_addr])],
        )
        .unwrap();
    let listener = lds::Listener {
        name: "out".into(),
        address: Some(socket("127.0.0.1:0".parse().unwrap())),
        traffic_direction: core::TrafficDirection::Outbound as i32,
        filter_chains: vec![lds::FilterChain {
            filters: vec![stats_filter(), tcp_filter(CLUSTER, options.client_logs)],
            ..Default::default()
        }],
        ..Default::default()
    };
    client
        .apply_response(type_url::LISTENER, "1", vec![any(&listener)])
        .unwrap();
    let entry = client.local_addr("out").unwrap();
    TcpMesh {
        client,
        server,
        entry,
        server_addr,
        app_received,
        _ids: [client_id, server_id],
    }
}

/// Sends `message` through `entry` and reads its echo back; returns the open connection.
pub async fn echo_through(entry: SocketAddr, message: &[u8]) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(entry).await.unwrap();
    conn.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut back))
        .await
        .expect("the echo within 10 s")
        .unwrap();
    assert_eq!(back, message, "the app echoes exactly what was sent");
    conn
}
