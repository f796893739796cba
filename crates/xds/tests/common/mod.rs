//! Shared harness of the in-process ADS tests (over `tokio::io::duplex`): resources and a
//! test generator, the real server driven by raw requests, a fake server for the real client,
//! a test handler, and log capture. Each test binary uses part of it.
#![allow(dead_code)]

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
};

pub const NODE_ID: &str = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local";
/// How long to wait for something that must happen (virtual time in paused tests).
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to wait before concluding nothing more will arrive.
pub const QUIET: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------
// Resources and the test generator.

pub fn cluster(name: &str) -> Resource {
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

pub fn endpoints(name: &str) -> Resource {
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
pub fn listener(name: &str, route: &str) -> Resource {
    Resource::new(
        name,
        &Listener {
            name: name.to_string(),
            stat_prefix: route.to_string(),
            ..Default::default()
        },
    )
}

pub fn route(name: &str) -> Resource {
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
pub struct TestGen {
    pub resources: BTreeMap<&'static str, Vec<Resource>>,
    /// When the change it serves was seen ([`Generator::changed_at`]).
    pub changed_at: Option<std::time::Instant>,
}

impl TestGen {
    pub fn with(mut self, type_url: &'static str, resources: Vec<Resource>) -> Self {
        self.resources.insert(type_url, resources);
        self
    }
}

impl Generator for TestGen {
    type Proxy = String;

    fn connect(
        &self,
        node: &Node,
        _peer: Option<&weft_xds::AuthenticatedPeer>,
    ) -> Result<String, Status> {
        if node.id.is_empty() {
            return Err(Status::invalid_argument("node.id is empty"));
        }
        Ok(node.id.clone())
    }

    fn generate(&self, _proxy: &String, type_url: &str) -> Vec<Resource> {
        self.resources.get(type_url).cloned().unwrap_or_default()
    }

    fn changed_at(&self) -> Option<std::time::Instant> {
        self.changed_at
    }
}

pub fn base_snapshot() -> TestGen {
    TestGen::default()
        .with(CLUSTER, vec![cluster("a"), cluster("b")])
        .with(ENDPOINT, vec![endpoints("a"), endpoints("b")])
        .with(LISTENER, vec![listener("virtualOutbound", "outbound")])
        .with(ROUTE, vec![route("outbound"), route("inbound|8080")])
}

pub fn node() -> Node {
    Node {
        id: NODE_ID.to_string(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// In-process transport.

/// A live in-process connection: aborting `relay` cuts it like a dead network.
pub struct Link {
    pub relay: JoinHandle<()>,
    pub server: JoinHandle<()>,
}

impl Link {
    pub fn cut(&self) {
        self.relay.abort();
        self.server.abort();
    }
}

/// Serves `service` on a fresh duplex connection and returns a channel to it.
pub async fn connect_in_process<S>(service: S) -> (Channel, Link)
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

pub struct ServerHarness {
    pub server: AdsServer<TestGen>,
    pub snapshots: watch::Sender<Arc<TestGen>>,
}

impl ServerHarness {
    pub fn new(generator: TestGen) -> Self {
        let (snapshots, rx) = watch::channel(Arc::new(generator));
        Self {
            server: AdsServer::new(rx),
            snapshots,
        }
    }

    pub fn publish(&self, generator: TestGen) {
        self.snapshots.send_replace(Arc::new(generator));
    }

    pub async fn open(&self) -> RawStream {
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

    pub fn proxy(&self) -> ProxyStatus {
        let mut all = self.server.status();
        assert_eq!(all.len(), 1, "expected one proxy: {all:?}");
        all.remove(0)
    }

    pub fn type_status(&self, type_url: &str) -> TypeStatus {
        self.proxy()
            .types
            .into_iter()
            .find(|t| t.type_url == type_url)
            .unwrap_or_else(|| panic!("no status for {type_url}"))
    }

    /// Waits until the status satisfies `ok` (the server applies requests asynchronously).
    pub async fn wait_status(&self, what: &str, ok: impl Fn(&[ProxyStatus]) -> bool) {
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

pub struct RawStream {
    pub tx: mpsc::UnboundedSender<DiscoveryRequest>,
    pub responses: Streaming<DiscoveryResponse>,
    _link: Link,
}

impl RawStream {
    pub fn send(&self, request: DiscoveryRequest) {
        self.tx.send(request).expect("request stream open");
    }

    /// The first request of a type (with the node, as every first request may carry it).
    pub fn subscribe(&self, type_url: &str, names: &[&str]) {
        self.send(DiscoveryRequest {
            node: Some(node()),
            type_url: type_url.to_string(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
    }

    pub fn ack(&self, response: &DiscoveryResponse, names: &[&str]) {
        self.send(DiscoveryRequest {
            version_info: response.version_info.clone(),
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
    }

    pub fn nack(&self, response: &DiscoveryResponse, previous_version: &str, message: &str) {
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

    pub async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open")
    }

    pub async fn assert_quiet(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.responses.message()).await {
            panic!("expected no response, got {message:?}");
        }
    }
}

pub fn names_of(response: &DiscoveryResponse) -> Vec<String> {
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
pub fn capture_logs() {
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
pub fn logs() -> String {
    LOGS.with(|logs| String::from_utf8_lossy(&logs.borrow()).into_owned())
}

// ---------------------------------------------------------------------------------------
// Client side.

/// A handler over simple state shared with the test: clusters and routes named "bad" are
/// rejected; RDS responses replace the route names (a stand-in, simpler than a proxy);
/// EDS names are the clusters' EDS service names, RDS names the listeners' stat_prefix.
#[derive(Debug, Default)]
pub struct TestState {
    pub clusters: Vec<Cluster>,
    pub listeners: Vec<Listener>,
    pub endpoints: Vec<String>,
    pub routes: Vec<String>,
    /// (type short name, version) of every apply, accepted or not.
    pub applied: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct TestHandler(pub Arc<Mutex<TestState>>);

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
                let routes = resources
                    .iter()
                    .map(|a| {
                        RouteConfiguration::decode(a.value.as_slice())
                            .map(|r| r.name)
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<String>, _>>()?;
                if routes.iter().any(|r| r == "bad") {
                    return Err("route bad: unsupported".to_string());
                }
                state.routes = routes;
            }
            weft_xds::type_url::NAME_TABLE => {}
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
                .filter(|route| !route.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }
}

pub fn client_config() -> ClientConfig {
    ClientConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..ClientConfig::new("http://in-process", node())
    }
}

/// A fake ADS server: hands every stream to the test.
#[derive(Clone)]
pub struct FakeAds {
    pub streams: mpsc::UnboundedSender<FakeStream>,
}

pub struct FakeStream {
    pub requests: Streaming<DiscoveryRequest>,
    pub responses: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl FakeStream {
    pub async fn next(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(WAIT, self.requests.message())
            .await
            .expect("a request in time")
            .expect("request stream ok")
            .expect("request stream open")
    }

    /// The next request, waiting up to `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> DiscoveryRequest {
        tokio::time::timeout(limit, self.requests.message())
            .await
            .expect("a request in time")
            .expect("request stream ok")
            .expect("request stream open")
    }

    pub async fn assert_quiet(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.requests.message()).await {
            panic!("expected no request, got {message:?}");
        }
    }

    pub async fn respond(
        &self,
        type_url: &str,
        version: &str,
        nonce: &str,
        resources: Vec<Resource>,
    ) {
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

impl FakeStream {
    /// Sends a response of already packed resources (which may carry any type URL).
    pub async fn respond_any(
        &self,
        type_url: &str,
        version: &str,
        nonce: &str,
        resources: Vec<Any>,
    ) {
        self.responses
            .send(Ok(DiscoveryResponse {
                version_info: version.to_string(),
                type_url: type_url.to_string(),
                nonce: nonce.to_string(),
                resources,
                ..Default::default()
            }))
            .await
            .expect("client listening");
    }

    /// The next request, which must be a NACK of `nonce`; returns its error message.
    pub async fn next_nack(&mut self, nonce: &str) -> String {
        let request = self.next().await;
        assert_eq!(request.response_nonce, nonce, "{request:?}");
        match request.error_detail {
            Some(detail) => detail.message,
            None => panic!("expected a NACK of {nonce}, got {request:?}"),
        }
    }
}

pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

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
pub struct Dialer<S> {
    pub service: S,
    pub up: Arc<AtomicBool>,
    pub links: Arc<Mutex<Vec<Link>>>,
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
    pub fn new(service: S) -> Self {
        Self {
            service,
            up: Arc::new(AtomicBool::new(true)),
            links: Arc::default(),
        }
    }

    pub fn spawn_client(&self, handler: TestHandler) -> JoinHandle<()> {
        self.spawn_client_with(client_config(), handler)
    }

    pub fn spawn_client_with(&self, config: ClientConfig, handler: TestHandler) -> JoinHandle<()> {
        let dialer = self.clone();
        tokio::spawn(async move {
            let client = AdsClient::new(config, handler);
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

    pub fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.cut();
        }
    }

    pub fn come_back(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

pub fn fake_server() -> (
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

pub async fn next_stream(streams: &mut mpsc::UnboundedReceiver<FakeStream>) -> FakeStream {
    tokio::time::timeout(WAIT, streams.recv())
        .await
        .expect("a stream in time")
        .expect("fake server alive")
}

// ---------------------------------------------------------------------------------------
// The real client against the real server.

pub async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn all_acked(statuses: &[ProxyStatus], types: usize) -> bool {
    statuses.len() == 1
        && statuses[0].types.len() == types
        && statuses[0]
            .types
            .iter()
            .all(|t| t.acked_version.as_deref() == Some(t.sent_version.as_str()))
}
