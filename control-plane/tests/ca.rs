//! The CA and ADS over TLS (15012) with a real controller and the proxy's own identity
//! client: certificates issued for the token's identity, renewed at half-life, kept across a
//! controller restart; ADS only for the namespace the client certificate proves.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use weft_controller::Args;
use weft_proxy::identity::{self, IdentityConfig, IdentityState};
use weft_xds::Node;

const SERVER_NAME: &str = "istiod.istio-system.svc";

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn controller(
    config: &Path,
    ca_dir: &Path,
    tokens: &Path,
    secure: SocketAddr,
) -> weft_controller::Controller {
    let args = Args::try_parse_from([
        "weft-controller",
        "--config-dir",
        &config.display().to_string(),
        "--webhook-address",
        "127.0.0.1:0",
        "--xds-address",
        "127.0.0.1:0",
        "--debug-address",
        "127.0.0.1:0",
        "--secure-xds-address",
        &secure.to_string(),
        "--ca-dir",
        &ca_dir.display().to_string(),
        "--ca-token-dir",
        &tokens.display().to_string(),
    ])
    .expect("flags parse");
    weft_controller::start(args).await.expect("starts")
}

async fn wait_for(
    rx: &mut identity::Identity,
    what: &str,
    check: impl FnMut(&Arc<IdentityState>) -> bool,
) -> Arc<IdentityState> {
    let watched = rx.clone();
    let waited = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(check))
        .await
        .map(|state| state.map(|s| s.clone()));
    match waited {
        Ok(state) => state.expect("identity task alive"),
        Err(_) => panic!(
            "timed out waiting for {what}: {}",
            watched.borrow().describe()
        ),
    }
}

fn node(namespace: &str) -> Node {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        "NAMESPACE".to_string(),
        Value {
            kind: Some(Kind::StringValue(namespace.to_string())),
        },
    );
    Node {
        id: format!("sidecar~127.0.0.1~reviews-v1.{namespace}~{namespace}.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}

/// Opens ADS over TLS and returns the first response's type URL, or the status.
async fn first_response(
    secure: SocketAddr,
    state: &IdentityState,
    with_cert: bool,
    namespace: &str,
) -> Result<String, tonic::Status> {
    let bundle = state.bundle.as_ref().expect("bundle");
    let cert = if with_cert {
        state.cert.as_deref()
    } else {
        None
    };
    let tls = identity::channel::client_config(bundle, cert).expect("tls");
    let channel = identity::channel::connect(&format!("https://{secure}"), SERVER_NAME, tls)
        .await
        .expect("TLS connection");
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let request = DiscoveryRequest {
        node: Some(node(namespace)),
        type_url: weft_xds::type_url::CLUSTER.to_string(),
        ..DiscoveryRequest::default()
    };
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("an answer within 10s")?;
    Ok(first.map(|r| r.type_url).unwrap_or_default())
}

/// `GET /debug/ca` on the controller's debug port, as JSON.
async fn debug_ca(addr: SocketAddr) -> serde_json::Value {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("debug port");
    stream
        .write_all(b"GET /debug/ca HTTP/1.1\r\nHost: debug\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let body = response.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_issued_renewed_and_survive_a_controller_restart() {
    let config = tempfile::tempdir().expect("tempdir");
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let tokens = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tokens.path().join("default")).expect("mkdir");
    std::fs::write(tokens.path().join("default/reviews"), "bootstrap-reviews").expect("token");
    let token_file = tokens.path().join("default/reviews");
    let secure = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let first = controller(config.path(), ca_dir.path(), tokens.path(), secure).await;
    assert_eq!(first.secure_xds_address, secure);

    let (mut rx, task) = identity::spawn(IdentityConfig {
        id: weft_identity::SpiffeId::new("cluster.local", "default", "reviews").expect("id"),
        ca_address: format!("https://{secure}"),
        server_name: SERVER_NAME.to_string(),
        root_cert: ca_dir.path().join("root-cert.pem"),
        token_file,
        lifetime: Some(Duration::from_secs(2)),
    });
    let state = wait_for(&mut rx, "the first certificate", |s| s.cert.is_some()).await;
    let cert = state.cert.as_ref().expect("cert");
    assert_eq!(
        cert.info.uris,
        ["spiffe://cluster.local/ns/default/sa/reviews"]
    );
    let root_serial = state.bundle.as_ref().expect("bundle").infos()[0]
        .serial
        .clone();
    // A 2 s certificate is renewed about every second.
    let renewed = wait_for(&mut rx, "two renewals", |s| s.issued >= 3).await;
    assert_ne!(
        renewed.cert.as_ref().expect("cert").info.serial,
        cert.info.serial
    );
    let described = renewed.describe();
    assert_eq!(
        described["identity"],
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    assert_eq!(described["roots"][0]["serial"], root_serial.as_str());

    // The controller's debug page shows the CA, its roots and what it issued.
    let debug = debug_ca(first.debug_address).await;
    assert_eq!(debug["roots"][0]["serial"], root_serial.as_str(), "{debug}");
    assert!(debug["issued"].as_u64().unwrap_or(0) >= 3, "{debug}");
    assert_eq!(debug["trustDomain"], "cluster.local");

    // ADS over TLS: the proven namespace only, and only with a certificate.
    assert_eq!(
        first_response(secure, &renewed, true, "default")
            .await
            .expect("served"),
        weft_xds::type_url::CLUSTER
    );
    let denied = first_response(secure, &renewed, true, "prod")
        .await
        .expect_err("another namespace");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("spiffe://cluster.local/ns/default/sa/reviews"),
        "{denied:?}"
    );
    let anonymous = first_response(secure, &renewed, false, "default")
        .await
        .expect_err("no client certificate");
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );

    // The controller restarts: the proxy keeps its certificate meanwhile, and renews against
    // the restarted controller, which kept its root.
    first.stop().await.expect("stops");
    let failing = wait_for(&mut rx, "a failed renewal", |s| s.last_error.is_some()).await;
    assert!(
        failing.cert.is_some(),
        "the certificate is kept while the CA is away"
    );
    let issued = failing.issued;
    let second = controller(config.path(), ca_dir.path(), tokens.path(), secure).await;
    let after = wait_for(&mut rx, "a renewal after the restart", |s| {
        s.issued > issued && s.last_error.is_none()
    })
    .await;
    assert_eq!(
        after.bundle.as_ref().expect("bundle").infos()[0].serial,
        root_serial,
        "the restarted controller kept its root"
    );
    task.abort();
    second.stop().await.expect("stops");
}
