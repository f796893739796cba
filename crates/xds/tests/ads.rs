//! In-process ADS tests over `tokio::io::duplex`: the real server driven by a raw gRPC
//! stream, the real client against a fake server, and the two together.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster::EdsClusterConfig};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::Stream;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Request, Response, Status, Streaming};
use weft_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use weft_xds::{
    AdsClient, AdsServer, ClientConfig, Generator, Handler, ProxyStatus, Resource, TypeStatus,
    version_of,
};

const NODE_ID: &str = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local";
/// How long to wait for something that must happen (virtual time in paused tests).
const WAIT: Duration = Duration::from_secs(5);
/// How long to wait before concluding nothing more will arrive.
const QUIET: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------
// Resources and the test generator.

fn cluster(name: &str) -> Resource {
    Resource::new(
        name,
        &Cluster {
            name: name.to_string(),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: name.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn endpoints(name: &str) -> Resource {
    Resource::new(
        name,
        &ClusterLoadAssignment {
            cluster_name: name.to_string(),
            ..Default::default()
        },
    )
}

/// A listener whose `stat_prefix` names its route configuration (the test handler's
/// stand-in for an HTTP connection manager's RDS name).
fn listener(name: &str, route: &str) -> Resource {
    Resource::new(
        name,
        &Listener {
            name: name.to_string(),
            stat_prefix: route.to_string(),
            ..Default::default()
        },
    )
}

fn route(name: &str) -> Resource {
    Resource::new(
        name,
        &RouteConfiguration {
            name: name.to_string(),
            ..Default::default()
        },
    )
}

/// Serves fixed resources per type; refuses nodes without an id.
#[derive(Debug, Default, Clone)]
struct TestGen {
    resources: BTreeMap<&'static str, Vec<Resource>>,
}

impl TestGen {
    fn with(mut self, type_url: &'static str, resources: Vec<Resource>) -> Self {
        self.resources.insert(type_url, resources);
        self
    }
}

impl Generator for TestGen {
    type Proxy = String;

    fn connect(&self, node: &Node) -> Result<String, Status> {
        if node.id.is_empty() {
            return Err(Status::invalid_argument("node.id is empty"));
        }
        Ok(node.id.clone())
    }

    fn generate(&self, _proxy: &String, type_url: &str) -> Vec<Resource> {
        self.resources.get(type_url).cloned().unwrap_or_default()
    }
}

fn base_snapshot() -> TestGen {
    TestGen::default()
        .with(CLUSTER, vec![cluster("a"), cluster("b")])
        .with(ENDPOINT, vec![endpoints("a"), endpoints("b")])
        .with(LISTENER, vec![listener("virtualOutbound", "outbound")])
        .with(ROUTE, vec![route("outbound"), route("inbound|8080")])
}

fn node() -> Node {
    Node {
        id: NODE_ID.to_string(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// In-process transport.

/// A live in-process connection: aborting `relay` cuts it like a dead network.
struct Link {
    relay: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Link {
    fn cut(&self) {
        self.relay.abort();
        self.server.abort();
    }
}

/// Serves `service` on a fresh duplex connection and returns a channel to it.
async fn connect_in_process<S>(service: S) -> (Channel, Link)
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (client_io, mut relay_client) = tokio::io::duplex(64 * 1024);
    let (mut relay_server, server_io) = tokio::io::duplex(64 * 1024);
    let relay = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut relay_client, &mut relay_server).await;
    });
    let server = tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(service)
            .serve_with_incoming(futures::stream::iter([Ok::<_, io::Error>(server_io)]))
            .await;
    });
    let mut client_io = Some(client_io);
    let channel = Endpoint::from_static("http://in-process")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let io = client_io.take();
            async move {
                io.map(TokioIo::new)
                    .ok_or_else(|| io::Error::other("the in-process link is used up"))
            }
        }))
        .await
        .expect("in-process connect");
    (channel, Link { relay, server })
}

// ---------------------------------------------------------------------------------------
// Server harness: the real server, driven by raw requests.

struct ServerHarness {
    server: AdsServer<TestGen>,
    snapshots: watch::Sender<Arc<TestGen>>,
}

impl ServerHarness {
    fn new(generator: TestGen) -> Self {
        let (snapshots, rx) = watch::channel(Arc::new(generator));
        Self {
            server: AdsServer::new(rx),
            snapshots,
        }
    }

    fn publish(&self, generator: TestGen) {
        self.snapshots.send_replace(Arc::new(generator));
    }

    async fn open(&self) -> RawStream {
        let (channel, link) = connect_in_process(self.server.clone().into_service()).await;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let responses = client
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        RawStream {
            tx,
            responses,
            _link: link,
        }
    }

    fn proxy(&self) -> ProxyStatus {
        let mut all = self.server.status();
        assert_eq!(all.len(), 1, "expected one proxy: {all:?}");
        all.remove(0)
    }

    fn type_status(&self, type_url: &str) -> TypeStatus {
        self.proxy()
            .types
            .into_iter()
            .find(|t| t.type_url == type_url)
            .unwrap_or_else(|| panic!("no status for {type_url}"))
    }

    /// Waits until the status satisfies `ok` (the server applies requests asynchronously).
    async fn wait_status(&self, what: &str, ok: impl Fn(&[ProxyStatus]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if ok(&self.server.status()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.server.status()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

struct RawStream {
    tx: mpsc::UnboundedSender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
    _link: Link,
}

impl RawStream {
    fn send(&self, request: DiscoveryRequest) {
        self.tx.send(request).expect("request stream open");
    }

    /// The first request of a type (with the node, as every first request may carry it).
    fn subscribe(&self, type_url: &str, names: &[&str]) {
        self.send(DiscoveryRequest {
            node: Some(node()),
            type_url: type_url.to_string(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
    }

    fn ack(&self, response: &DiscoveryResponse, names: &[&str]) {
        self.send(DiscoveryRequest {
            version_info: response.version_info.clone(),
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
    }

    fn nack(&self, response: &DiscoveryResponse, previous_version: &str, message: &str) {
        self.send(DiscoveryRequest {
            version_info: previous_version.to_string(),
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: message.to_string(),
                details: Vec::new(),
            }),
            ..Default::default()
        });
    }

    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn assert_quiet(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.responses.message()).await {
            panic!("expected no response, got {message:?}");
        }
    }
}

fn names_of(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| match any.type_url.as_str() {
            CLUSTER => Cluster::decode(any.value.as_slice()).expect("decodes").name,
            ENDPOINT => {
                ClusterLoadAssignment::decode(any.value.as_slice())
                    .expect("decodes")
                    .cluster_name
            }
            LISTENER => {
                Listener::decode(any.value.as_slice())
                    .expect("decodes")
                    .name
            }
            ROUTE => {
                RouteConfiguration::decode(any.value.as_slice())
                    .expect("decodes")
                    .name
            }
            other => panic!("unexpected type {other}"),
        })
        .collect()
}

thread_local! {
    /// Log output of the test running on this thread.
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Starts capturing this crate's logs for the current test. One global subscriber writes
/// every event into a buffer of the thread that emitted it: `#[tokio::test]` runs the
/// test and all its spawned tasks on the test's own thread. (Per-thread scoped
/// subscribers race with each other's callsite caches when tests run in parallel.)
fn capture_logs() {
    struct ThreadBuf;
    impl io::Write for ThreadBuf {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            LOGS.with(|logs| logs.borrow_mut().extend_from_slice(bytes));
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("weft_xds=debug"))
            .with_writer(|| ThreadBuf)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    });
    LOGS.with(|logs| logs.borrow_mut().clear());
}

/// What this thread logged since `capture_logs`.
fn logs() -> String {
    LOGS.with(|logs| String::from_utf8_lossy(&logs.borrow()).into_owned())
}

// ---------------------------------------------------------------------------------------
// Server tests.

#[tokio::test(start_paused = true)]
async fn initial_subscription_gets_full_set_even_when_empty() {
    let harness =
        ServerHarness::new(TestGen::default().with(CLUSTER, vec![cluster("b"), cluster("a")]));
    let mut stream = harness.open().await;

    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(names_of(&cds), ["a", "b"], "sorted by name");
    assert_eq!(cds.version_info, version_of(&[cluster("a"), cluster("b")]));
    assert!(!cds.nonce.is_empty());

    // No listeners at all: the initial request is still answered, with an empty set.
    stream.subscribe(LISTENER, &[]);
    let lds = stream.next().await;
    assert_eq!(lds.type_url, LISTENER);
    assert!(lds.resources.is_empty());
    assert_eq!(lds.version_info, version_of(&[]));
    assert_ne!(lds.nonce, cds.nonce, "nonces are unique on a stream");

    let proxy = harness.proxy();
    assert_eq!(proxy.id, NODE_ID);
    let types: Vec<&str> = proxy.types.iter().map(|t| t.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER, LISTENER]);
    let cds_status = harness.type_status(CLUSTER);
    assert_eq!(cds_status.sent_version, cds.version_info);
    assert_eq!(cds_status.sent_nonce, cds.nonce);
    assert_eq!(cds_status.resource_count, 2);
    assert_eq!(cds_status.acked_version, None);
    serde_json::to_string(&harness.server.status()).expect("status serializes");
}

#[tokio::test(start_paused = true)]
async fn version_is_the_same_across_streams_for_the_same_content() {
    let harness = ServerHarness::new(base_snapshot());
    let mut first = harness.open().await;
    first.subscribe(CLUSTER, &[]);
    let v1 = first.next().await.version_info;
    drop(first);
    let mut second = harness.open().await;
    second.subscribe(CLUSTER, &[]);
    assert_eq!(second.next().await.version_info, v1);
}

#[tokio::test(start_paused = true)]
async fn ack_is_recorded_in_status() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    stream.ack(&cds, &[]);
    harness
        .wait_status("the ACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(cds.version_info.clone())
        })
        .await;
    // An ACK with unchanged names gets no response.
    stream.assert_quiet().await;
    assert_eq!(harness.type_status(CLUSTER).last_nack, None);
}

#[tokio::test(start_paused = true)]
async fn nack_is_logged_recorded_and_content_not_resent() {
    capture_logs();
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let v1 = stream.next().await;
    stream.ack(&v1, &[]);
    harness
        .wait_status("the ACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(v1.version_info.clone())
        })
        .await;

    // v2 adds a cluster the proxy rejects.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("bad")]));
    let v2 = stream.next().await;
    assert_eq!(names_of(&v2), ["a", "bad"]);
    stream.nack(&v2, &v1.version_info, "cluster bad: unsupported lb_policy");

    harness
        .wait_status("the NACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .is_some_and(|t| t.last_nack.is_some())
        })
        .await;
    let status = harness.type_status(CLUSTER);
    let nack = status.last_nack.expect("nack recorded");
    assert!(
        nack.contains("cluster bad: unsupported lb_policy"),
        "{nack}"
    );
    assert!(nack.contains(&v2.version_info), "{nack}");
    assert_eq!(status.acked_version, Some(v1.version_info.clone()));
    assert_eq!(status.sent_version, v2.version_info);
    let expected = format!(
        "proxy {NODE_ID} rejected CDS version {}: cluster bad: unsupported lb_policy",
        v2.version_info
    );
    let text = logs();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains(&expected)),
        "missing warn log {expected:?} in:\n{text}"
    );

    // The rejected content is not sent again: not for the NACK, not for an unrelated
    // snapshot change that regenerates the same clusters.
    stream.assert_quiet().await;
    harness.publish(
        base_snapshot()
            .with(CLUSTER, vec![cluster("a"), cluster("bad")])
            .with(LISTENER, vec![]),
    );
    stream.assert_quiet().await;

    // Fixed content is pushed, and the stream keeps working.
    harness.publish(base_snapshot());
    let v3 = stream.next().await;
    assert_eq!(names_of(&v3), ["a", "b"]);
    assert_eq!(v3.version_info, v1.version_info);
    stream.ack(&v3, &[]);
    harness
        .wait_status("the ACK after the NACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(v3.version_info.clone())
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn snapshot_change_pushes_only_changed_types_in_order() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    // Subscribe in the "wrong" order; pushes still follow CDS, EDS, LDS, RDS.
    stream.subscribe(ROUTE, &["outbound"]);
    let rds = stream.next().await;
    stream.ack(&rds, &["outbound"]);
    stream.subscribe(LISTENER, &[]);
    let lds = stream.next().await;
    stream.ack(&lds, &[]);
    stream.subscribe(ENDPOINT, &["a", "b"]);
    let eds = stream.next().await;
    stream.ack(&eds, &["a", "b"]);
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    stream.ack(&cds, &[]);

    // Only clusters change.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("b"), cluster("c")]));
    let push = stream.next().await;
    assert_eq!(push.type_url, CLUSTER);
    assert_eq!(names_of(&push), ["a", "b", "c"]);
    stream.ack(&push, &[]);
    stream.assert_quiet().await;

    // A change that leaves the generated content identical pushes nothing.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("c"), cluster("b"), cluster("a")]));
    stream.assert_quiet().await;

    // Everything changes: all four, in push order.
    harness.publish(
        TestGen::default()
            .with(CLUSTER, vec![cluster("x")])
            .with(ENDPOINT, vec![endpoints("a")])
            .with(LISTENER, vec![listener("virtualInbound", "inbound|8080")])
            .with(
                ROUTE,
                vec![
                    Resource::new(
                        "outbound",
                        &RouteConfiguration {
                            name: "outbound".into(),
                            most_specific_header_mutations_wins: true,
                            ..Default::default()
                        },
                    ),
                    route("other"),
                ],
            ),
    );
    let mut order = Vec::new();
    for _ in 0..4 {
        let response = stream.next().await;
        order.push(response.type_url.clone());
        if response.type_url == ENDPOINT {
            assert_eq!(names_of(&response), ["a"]);
        }
    }
    assert_eq!(order, [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    stream.assert_quiet().await;
}

#[tokio::test(start_paused = true)]
async fn stale_nonce_is_ignored() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(ENDPOINT, &["a"]);
    let first = stream.next().await;
    assert_eq!(names_of(&first), ["a"]);

    // The server pushes a newer version before the proxy answered the first one.
    harness.publish(base_snapshot().with(
        ENDPOINT,
        vec![
            Resource::new(
                "a",
                &ClusterLoadAssignment {
                    cluster_name: "a".into(),
                    policy: Some(Default::default()),
                    ..Default::default()
                },
            ),
            endpoints("b"),
        ],
    ));
    let second = stream.next().await;
    assert_ne!(second.nonce, first.nonce);
    assert_ne!(second.version_info, first.version_info);

    // A request answering the old nonce, even one changing names or NACKing, is stale.
    stream.ack(&first, &["a", "b"]);
    stream.nack(&first, "", "too late");
    stream.assert_quiet().await;
    let status = harness.type_status(ENDPOINT);
    assert_eq!(status.resource_names, ["a"]);
    assert_eq!(status.acked_version, None);
    assert_eq!(status.last_nack, None);

    // The current nonce is honoured.
    stream.ack(&second, &["a", "b"]);
    let third = stream.next().await;
    assert_eq!(names_of(&third), ["a", "b"]);
    harness
        .wait_status("the ACK of the current nonce", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(second.version_info.clone())
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn rds_and_eds_are_filtered_by_name_and_follow_name_changes() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;

    stream.subscribe(ROUTE, &["outbound", "missing"]);
    let rds = stream.next().await;
    assert_eq!(
        names_of(&rds),
        ["outbound"],
        "unknown names are simply absent"
    );

    stream.subscribe(ENDPOINT, &["b"]);
    let eds = stream.next().await;
    assert_eq!(names_of(&eds), ["b"]);

    // The proxy now wants more routes: the ACK carries the new names and is answered.
    stream.ack(&rds, &["outbound", "inbound|8080"]);
    let rds2 = stream.next().await;
    assert_eq!(rds2.type_url, ROUTE);
    assert_eq!(names_of(&rds2), ["inbound|8080", "outbound"]);
    assert_eq!(
        harness.type_status(ROUTE).resource_names,
        ["inbound|8080", "outbound"]
    );

    // Names that change without changing content are still answered.
    stream.ack(&eds, &["b", "not-there"]);
    let eds2 = stream.next().await;
    assert_eq!(names_of(&eds2), ["b"]);
    assert_eq!(eds2.version_info, eds.version_info);

    // Reordered names are not a change.
    stream.ack(&rds2, &["outbound", "inbound|8080"]);
    stream.assert_quiet().await;

    // Unsubscribing everything yields an empty set.
    stream.ack(&eds2, &[]);
    let eds3 = stream.next().await;
    assert!(eds3.resources.is_empty());

    // Wildcard types ignore "*" and empty names, but honour explicit names.
    stream.subscribe(CLUSTER, &["*"]);
    assert_eq!(names_of(&stream.next().await), ["a", "b"]);
    stream.subscribe(LISTENER, &["nope"]);
    assert!(stream.next().await.resources.is_empty());
}

#[tokio::test(start_paused = true)]
async fn node_without_id_is_refused_and_delta_is_unimplemented() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.send(DiscoveryRequest {
        node: Some(Node::default()),
        type_url: CLUSTER.to_string(),
        ..Default::default()
    });
    let status = tokio::time::timeout(WAIT, stream.responses.message())
        .await
        .expect("in time")
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "node.id is empty");
    assert!(harness.server.status().is_empty());

    let (channel, _link) = connect_in_process(harness.server.clone().into_service()).await;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let status = client
        .delta_aggregated_resources(futures::stream::empty::<DeltaDiscoveryRequest>())
        .await
        .expect_err("delta is not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(status.message().contains("state-of-the-world"));
}

#[tokio::test(start_paused = true)]
async fn proxy_leaves_status_when_its_stream_ends() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    stream.next().await;
    assert_eq!(harness.server.status().len(), 1);
    drop(stream);
    harness
        .wait_status("the proxy to leave", |s| s.is_empty())
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_stuck_stream_does_not_block_others() {
    let harness = ServerHarness::new(base_snapshot());

    // A stream whose responses nobody reads: its task fills its buffer and blocks.
    let (stuck_tx, stuck_rx) = mpsc::unbounded_channel::<Result<DiscoveryRequest, Status>>();
    let _stuck_responses = harness
        .server
        .serve_stream(UnboundedReceiverStream::new(stuck_rx));
    stuck_tx
        .send(Ok(DiscoveryRequest {
            node: Some(Node {
                id: "stuck".into(),
                ..Default::default()
            }),
            type_url: CLUSTER.to_string(),
            ..Default::default()
        }))
        .unwrap();

    let mut live = harness.open().await;
    live.subscribe(CLUSTER, &[]);
    live.next().await;
    for i in 0..50 {
        harness.publish(base_snapshot().with(CLUSTER, vec![cluster(&format!("c{i}"))]));
        let push = live.next().await;
        assert_eq!(names_of(&push), [format!("c{i}")]);
    }
    assert_eq!(harness.server.status().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Client side.

/// A handler over simple state shared with the test: clusters named "bad" are rejected;
/// EDS names are the clusters' EDS service names, RDS names the listeners' stat_prefix.
#[derive(Debug, Default)]
struct TestState {
    clusters: Vec<Cluster>,
    listeners: Vec<Listener>,
    endpoints: Vec<String>,
    routes: Vec<String>,
    /// (type short name, version) of every apply, accepted or not.
    applied: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct TestHandler(Arc<Mutex<TestState>>);

impl Handler for TestHandler {
    fn apply(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String> {
        let mut state = self.0.lock();
        state.applied.push((
            weft_xds::type_url::short(type_url).to_string(),
            version.to_string(),
        ));
        match type_url {
            CLUSTER => {
                let clusters = resources
                    .iter()
                    .map(|a| Cluster::decode(a.value.as_slice()).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(bad) = clusters.iter().find(|c| c.name == "bad") {
                    return Err(format!("cluster {}: unsupported", bad.name));
                }
                state.clusters = clusters;
            }
            LISTENER => {
                state.listeners = resources
                    .iter()
                    .map(|a| Listener::decode(a.value.as_slice()).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
            }
            ENDPOINT => {
                state.endpoints = resources
                    .iter()
                    .map(|a| {
                        ClusterLoadAssignment::decode(a.value.as_slice())
                            .map(|c| c.cluster_name)
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            ROUTE => {
                state.routes = resources
                    .iter()
                    .map(|a| {
                        RouteConfiguration::decode(a.value.as_slice())
                            .map(|r| r.name)
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            other => return Err(format!("unexpected type {other}")),
        }
        Ok(())
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        let state = self.0.lock();
        match type_url {
            ENDPOINT => state
                .clusters
                .iter()
                .filter_map(|c| c.eds_cluster_config.as_ref())
                .map(|e| e.service_name.clone())
                .rev() // order must not matter
                .collect(),
            ROUTE => state
                .listeners
                .iter()
                .map(|l| l.stat_prefix.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..ClientConfig::new("http://in-process", node())
    }
}

/// A fake ADS server: hands every stream to the test.
#[derive(Clone)]
struct FakeAds {
    streams: mpsc::UnboundedSender<FakeStream>,
}

struct FakeStream {
    requests: Streaming<DiscoveryRequest>,
    responses: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl FakeStream {
    async fn next(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(WAIT, self.requests.message())
            .await
            .expect("a request in time")
            .expect("request stream ok")
            .expect("request stream open")
    }

    async fn assert_quiet(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.requests.message()).await {
            panic!("expected no request, got {message:?}");
        }
    }

    async fn respond(&self, type_url: &str, version: &str, nonce: &str, resources: Vec<Resource>) {
        self.responses
            .send(Ok(DiscoveryResponse {
                version_info: version.to_string(),
                type_url: type_url.to_string(),
                nonce: nonce.to_string(),
                resources: resources.into_iter().map(|r| r.body).collect(),
                ..Default::default()
            }))
            .await
            .expect("client listening");
    }
}

type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for FakeAds {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let _ = self.streams.send(FakeStream {
            requests: request.into_inner(),
            responses: tx,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Where the client dials: each dial serves `service` on a new in-process link, unless
/// the server is "down". `cut` drops every live link.
#[derive(Clone)]
struct Dialer<S> {
    service: S,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<Link>>>,
}

impl<S> Dialer<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    fn new(service: S) -> Self {
        Self {
            service,
            up: Arc::new(AtomicBool::new(true)),
            links: Arc::default(),
        }
    }

    fn spawn_client(&self, handler: TestHandler) -> JoinHandle<()> {
        let dialer = self.clone();
        tokio::spawn(async move {
            let client = AdsClient::new(client_config(), handler);
            let _ = client
                .run_with_channel_factory(move || {
                    let dialer = dialer.clone();
                    async move {
                        if !dialer.up.load(Ordering::SeqCst) {
                            return Err("server down".to_string());
                        }
                        let (channel, link) = connect_in_process(dialer.service.clone()).await;
                        dialer.links.lock().push(link);
                        Ok(channel)
                    }
                })
                .await;
        })
    }

    fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.cut();
        }
    }

    fn come_back(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn fake_server() -> (
    Dialer<AggregatedDiscoveryServiceServer<FakeAds>>,
    mpsc::UnboundedReceiver<FakeStream>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Dialer::new(AggregatedDiscoveryServiceServer::new(FakeAds {
            streams: tx,
        })),
        rx,
    )
}

async fn next_stream(streams: &mut mpsc::UnboundedReceiver<FakeStream>) -> FakeStream {
    tokio::time::timeout(WAIT, streams.recv())
        .await
        .expect("a stream in time")
        .expect("fake server alive")
}

#[tokio::test(start_paused = true)]
async fn client_subscribes_acks_nacks_and_follows_names() {
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());
    let mut stream = next_stream(&mut streams).await;

    // Initial subscription: CDS then LDS, wildcard, node on the first request only.
    let cds_req = stream.next().await;
    assert_eq!(cds_req.type_url, CLUSTER);
    assert_eq!(cds_req.node.as_ref().map(|n| n.id.as_str()), Some(NODE_ID));
    assert!(cds_req.resource_names.is_empty());
    assert_eq!(cds_req.version_info, "");
    assert_eq!(cds_req.response_nonce, "");
    assert!(cds_req.error_detail.is_none());
    let lds_req = stream.next().await;
    assert_eq!(lds_req.type_url, LISTENER);
    assert!(lds_req.node.is_none());
    assert!(lds_req.resource_names.is_empty());
    stream.assert_quiet().await;

    // CDS v1 → ACK, then an EDS subscription for the clusters' service names.
    stream
        .respond(CLUSTER, "v1", "n1", vec![cluster("a"), cluster("b")])
        .await;
    let ack = stream.next().await;
    assert_eq!(ack.type_url, CLUSTER);
    assert_eq!(ack.version_info, "v1");
    assert_eq!(ack.response_nonce, "n1");
    assert!(ack.error_detail.is_none());
    assert!(ack.node.is_none());
    assert!(ack.resource_names.is_empty());
    let eds_req = stream.next().await;
    assert_eq!(eds_req.type_url, ENDPOINT);
    assert_eq!(eds_req.resource_names, ["a", "b"]);
    assert_eq!(eds_req.version_info, "");
    assert_eq!(eds_req.response_nonce, "");

    // EDS e1 → ACK carrying the subscribed names.
    stream
        .respond(ENDPOINT, "e1", "n2", vec![endpoints("a"), endpoints("b")])
        .await;
    let eds_ack = stream.next().await;
    assert_eq!(
        (
            eds_ack.type_url.as_str(),
            eds_ack.version_info.as_str(),
            eds_ack.response_nonce.as_str()
        ),
        (ENDPOINT, "e1", "n2")
    );
    assert_eq!(eds_ack.resource_names, ["a", "b"]);

    // CDS v2 is rejected → NACK with the last accepted version and INVALID_ARGUMENT;
    // the handler kept v1, so no EDS resubscription.
    stream
        .respond(CLUSTER, "v2", "n3", vec![cluster("a"), cluster("bad")])
        .await;
    let nack = stream.next().await;
    assert_eq!(nack.type_url, CLUSTER);
    assert_eq!(nack.version_info, "v1");
    assert_eq!(nack.response_nonce, "n3");
    let detail = nack.error_detail.expect("error_detail");
    assert_eq!(detail.code, 3);
    assert_eq!(detail.message, "cluster bad: unsupported");
    stream.assert_quiet().await;
    assert_eq!(handler.0.lock().clusters.len(), 2);

    // CDS v3 drops cluster "b": ACK, then EDS resubscription with the last EDS version
    // and nonce.
    stream
        .respond(CLUSTER, "v3", "n4", vec![cluster("a")])
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v3", "n4")
    );
    let eds_req = stream.next().await;
    assert_eq!(eds_req.type_url, ENDPOINT);
    assert_eq!(eds_req.resource_names, ["a"]);
    assert_eq!(eds_req.version_info, "e1");
    assert_eq!(eds_req.response_nonce, "n2");
    assert!(eds_req.error_detail.is_none());

    // LDS → ACK, then an RDS subscription.
    stream
        .respond(
            LISTENER,
            "l1",
            "n5",
            vec![listener("virtualOutbound", "outbound")],
        )
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.type_url.as_str(), ack.version_info.as_str()),
        (LISTENER, "l1")
    );
    let rds_req = stream.next().await;
    assert_eq!(rds_req.type_url, ROUTE);
    assert_eq!(rds_req.resource_names, ["outbound"]);

    // The same CDS content again does not resubscribe EDS.
    stream
        .respond(CLUSTER, "v3", "n6", vec![cluster("a")])
        .await;
    let ack = stream.next().await;
    assert_eq!(ack.response_nonce, "n6");
    stream.assert_quiet().await;
    client.abort();
}

#[tokio::test(start_paused = true)]
async fn client_reconnects_and_resends_accepted_versions() {
    capture_logs();
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());

    let mut stream = next_stream(&mut streams).await;
    stream.next().await; // CDS
    stream.next().await; // LDS
    stream
        .respond(CLUSTER, "v1", "n1", vec![cluster("a")])
        .await;
    stream.next().await; // ACK
    stream.next().await; // EDS subscribe
    stream
        .respond(ENDPOINT, "e1", "n2", vec![endpoints("a")])
        .await;
    stream.next().await; // ACK
    // A rejected CDS version must not count as accepted.
    stream
        .respond(CLUSTER, "v2", "n3", vec![cluster("bad")])
        .await;
    assert!(stream.next().await.error_detail.is_some());

    // The server goes away; the client retries while it is down, then comes back.
    dialer.go_down();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        streams.try_recv().is_err(),
        "no stream while the server is down"
    );
    dialer.come_back();

    let mut stream = next_stream(&mut streams).await;
    let cds = stream.next().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(cds.version_info, "v1");
    assert_eq!(cds.response_nonce, "");
    assert_eq!(cds.node.as_ref().map(|n| n.id.as_str()), Some(NODE_ID));
    let eds = stream.next().await;
    assert_eq!(eds.type_url, ENDPOINT);
    assert_eq!(eds.version_info, "e1");
    assert_eq!(eds.resource_names, ["a"]);
    assert!(eds.node.is_none());
    let lds = stream.next().await;
    assert_eq!(lds.type_url, LISTENER);
    assert_eq!(lds.version_info, "");
    stream.assert_quiet().await;

    // A server that closes the stream cleanly is reconnected to as well.
    drop(stream);
    let mut stream = next_stream(&mut streams).await;
    assert_eq!(stream.next().await.version_info, "v1");
    client.abort();

    let text = logs();
    let line = |needle: &str, level: &str| {
        text.lines()
            .any(|l| l.contains(level) && l.contains(needle))
    };
    assert!(
        line("connected to xDS server http://in-process", "INFO"),
        "{text}"
    );
    assert!(
        line(
            "disconnected from xDS server http://in-process: cannot connect: server down",
            "WARN"
        ),
        "{text}"
    );
    assert!(
        line(
            "disconnected from xDS server http://in-process: the server closed the stream",
            "WARN"
        ),
        "{text}"
    );
    assert!(
        line(
            "rejected CDS version v2 from the xDS server: cluster bad: unsupported",
            "WARN"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The real client against the real server.

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn all_acked(statuses: &[ProxyStatus], types: usize) -> bool {
    statuses.len() == 1
        && statuses[0].types.len() == types
        && statuses[0]
            .types
            .iter()
            .all(|t| t.acked_version.as_deref() == Some(t.sent_version.as_str()))
}

#[tokio::test(start_paused = true)]
async fn client_and_server_sync_push_and_resync_after_reconnect() {
    let harness = ServerHarness::new(base_snapshot());
    let dialer = Dialer::new(harness.server.clone().into_service());
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());

    wait_for("all four types ACKed", || {
        all_acked(&harness.server.status(), 4)
    })
    .await;
    {
        let state = handler.0.lock();
        assert_eq!(state.clusters.len(), 2);
        assert_eq!(state.endpoints, ["a", "b"]);
        assert_eq!(state.routes, ["outbound"], "only the listener's route");
    }
    assert_eq!(harness.type_status(ENDPOINT).resource_names, ["a", "b"]);
    assert_eq!(harness.type_status(ROUTE).resource_names, ["outbound"]);

    // A push that rejects: the proxy keeps its clusters, the server records the NACK.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("bad")]));
    wait_for("the NACK", || {
        harness.type_status(CLUSTER).last_nack.is_some()
    })
    .await;
    assert_eq!(handler.0.lock().clusters.len(), 2);

    // A push that drops cluster "b" and changes the listener's route.
    harness.publish(
        base_snapshot()
            .with(CLUSTER, vec![cluster("a")])
            .with(LISTENER, vec![listener("virtualInbound", "inbound|8080")]),
    );
    wait_for("the new names", || {
        let state = handler.0.lock();
        state.endpoints == ["a"] && state.routes == ["inbound|8080"]
    })
    .await;
    wait_for("all ACKed again", || all_acked(&harness.server.status(), 4)).await;
    assert_eq!(harness.type_status(ENDPOINT).resource_names, ["a"]);
    assert_eq!(harness.type_status(ROUTE).resource_names, ["inbound|8080"]);

    // The server goes away and comes back: the proxy resyncs, and identical content
    // keeps its version, so nothing is re-applied with a different version.
    let before = harness.proxy().types;
    dialer.go_down();
    wait_for("the proxy to leave", || harness.server.status().is_empty()).await;
    let applied_before = handler.0.lock().applied.len();
    dialer.come_back();
    wait_for("resync", || all_acked(&harness.server.status(), 4)).await;
    let after = harness.proxy().types;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.type_url, a.type_url);
        assert_eq!(b.sent_version, a.sent_version, "{}", a.type_url);
        assert_eq!(b.resource_names, a.resource_names, "{}", a.type_url);
    }
    let state = handler.0.lock();
    assert!(state.applied.len() > applied_before);
    assert_eq!(state.endpoints, ["a"]);
    drop(state);
    client.abort();
}
