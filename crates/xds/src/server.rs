//! The state-of-the-world ADS server: one task per stream, tracking per type what was
//! sent (version, nonce) and what the proxy ACKed or NACKed, and pushing changed types
//! whenever the generator snapshot changes.
//!
//! Protocol rules implemented here, per stream and per type URL:
//! - The first request of a type is the subscription, answered with the generated set even
//!   when it is empty. Its `resource_names` say what is wanted: none at all is a wildcard
//!   subscription (every resource of the type, whatever the type), and so is the name `"*"`;
//!   other names select resources by name.
//! - Later requests carry the full list of wanted names. While every request of the type has
//!   had an empty list, the subscription stays wildcard (Envoy's "legacy wildcard", which
//!   Envoy and weft-xds's client use for LDS and CDS). Once a request named something, an
//!   empty list unsubscribes from every resource of the type: nothing more of it is sent
//!   until a request names resources (or `"*"`) again.
//! - `version_info` is a content hash ([`version_of`]); the nonce is a per-stream counter.
//! - A request whose `response_nonce` is not the last nonce sent for its type is stale and
//!   ignored. An empty nonce means the client has not seen a response of that type on this
//!   stream yet: it is treated as a (re)subscription and answered.
//! - ACK (matching nonce, no `error_detail`): the version is recorded, with its time; if it is
//!   the version last sent, an outstanding NACK is cleared. If the subscription changed (and is
//!   not an unsubscription), the type is regenerated and sent.
//! - NACK (matching nonce, `error_detail`): logged at warn and recorded (message, rejected
//!   version, time); the rejected content is not sent again (only a different version, or a
//!   change of names, is sent).
//! - A new generator snapshot regenerates every subscribed (not unsubscribed) type in
//!   [`PUSH_ORDER`](crate::type_url::PUSH_ORDER) and sends those whose version changed.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::metrics::XdsMetrics;
use crate::resource::{Resource, version_of};
use crate::type_url;

/// How many responses may wait for a slow client before its stream task blocks. Only
/// that stream's task blocks: every stream is independent.
const RESPONSE_BUFFER: usize = 16;

/// The clock of the status times (connected, sent, ACKed, NACKed): Tokio's, which tests
/// can pause and advance.
type StatusInstant = tokio::time::Instant;

/// The identity a client certificate proved (its first URI SAN), put into each request's
/// extensions by a TLS listener; the ADS server hands it to [`Generator::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedPeer {
    pub uri: String,
}

/// Produces the resources for each connected proxy. The control plane implements it; the
/// server calls it from each stream's task.
pub trait Generator: Send + Sync + 'static {
    /// The control plane's view of one connected proxy, parsed from its Node on the first request.
    type Proxy: Send + Sync + 'static;

    /// Err closes the stream with the status (e.g. InvalidArgument "node.id is empty").
    /// `peer` is the identity the connection's client certificate proves (TLS listeners
    /// only; `None` on plaintext): a generator serves it only the config it may see.
    fn connect(&self, node: &Node, peer: Option<&AuthenticatedPeer>)
    -> Result<Self::Proxy, Status>;

    /// Every resource of `type_url` this proxy should have (SotW: the full set). The server
    /// filters by the proxy's requested names for non-wildcard types (RDS, EDS, SDS).
    fn generate(&self, proxy: &Self::Proxy, type_url: &str) -> Vec<Resource>;

    /// When the control plane's source first saw the change this generator serves (a file
    /// edit, a Kubernetes watch event). A push it causes converges when the proxy has ACKed
    /// every response of it, measured from then (`pilot_proxy_convergence_time`); `None`:
    /// from when the stream gets the new generator.
    fn changed_at(&self) -> Option<Instant> {
        None
    }
}

/// The sync state of one connected proxy (one ADS stream), for `/debug/syncz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProxyStatus {
    /// The proxy's `node.id`.
    pub id: String,
    /// Seconds since the stream's first request.
    pub connected_for_secs: u64,
    /// One entry per subscribed type, in push order.
    pub types: Vec<TypeStatus>,
}

/// The sync state of one type on one stream.
///
/// The controller's current version of a type for this proxy is `sent_version`: every new
/// snapshot regenerates every subscribed type and sends it at once when its version changed,
/// so the proxy is in sync exactly when its last ACK answered the last response sent
/// (`acked_nonce == sent_nonce`). Versions alone can't tell: a fix that restores the content
/// the proxy ACKed before a rejected push is sent with the version it ACKed then.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TypeStatus {
    /// The type URL.
    pub type_url: String,
    /// The type's short name: `CDS`, `EDS`, `LDS`, `RDS`, `SDS`, `NDS` (else `unknown`).
    #[serde(rename = "type")]
    pub short_name: &'static str,
    /// Version of the last response sent (empty before the first one).
    pub sent_version: String,
    /// Nonce of the last response sent (empty before the first one).
    pub sent_nonce: String,
    /// Milliseconds since the last response was sent (queued for the proxy).
    pub sent_ago_ms: Option<u64>,
    /// The last version the proxy ACKed on this stream.
    pub acked_version: Option<String>,
    /// The nonce of the response the proxy last ACKed.
    pub acked_nonce: Option<String>,
    /// Milliseconds since the last ACK.
    pub acked_ago_ms: Option<u64>,
    /// The rejection the proxy has not got past: its most recent NACK, until the proxy ACKs
    /// the version last sent (a later one, or the same one sent again).
    pub nack: Option<Nack>,
    /// The error message of the most recent NACK on this stream, prefixed with the rejected
    /// version (`"version <v>: <message>"`). Kept after later ACKs (unlike `nack`): the
    /// stream's history.
    pub last_nack: Option<String>,
    /// Whether the proxy subscribed to every resource of the type (an empty first request,
    /// or the name `"*"`).
    pub wildcard: bool,
    /// The names the proxy subscribed to explicitly (without `"*"`). Empty and not
    /// `wildcard`: the proxy unsubscribed from the type.
    pub resource_names: Vec<String>,
    /// How many resources the last response carried.
    pub resource_count: usize,
}

/// A NACK: the version the proxy rejected, with the proxy's error message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Nack {
    /// The rejected version (the `sent_version` the NACK answered).
    pub version: String,
    /// The proxy's `error_detail.message`.
    pub message: String,
    /// Milliseconds since the NACK arrived.
    pub ago_ms: u64,
}

/// The ADS server. Cheap to clone: every clone shares the same state.
pub struct AdsServer<G: Generator> {
    shared: Arc<Shared<G>>,
}

impl<G: Generator> Clone for AdsServer<G> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<G: Generator> std::fmt::Debug for AdsServer<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsServer")
            .field("streams", &self.shared.streams.lock().len())
            .finish()
    }
}

struct Shared<G> {
    snapshots: watch::Receiver<Arc<G>>,
    next_stream: AtomicU64,
    /// Status of every live stream, by stream number.
    streams: Mutex<BTreeMap<u64, StreamStatus>>,
    /// `true` once the server shuts down: every stream ends, new ones are refused.
    shutdown: watch::Sender<bool>,
    metrics: Arc<XdsMetrics>,
}

struct StreamStatus {
    id: String,
    connected_at: StatusInstant,
    types: Vec<TypeRecord>,
}

/// A type's status as published by its stream, with the times its ages are computed from
/// when the status is read.
struct TypeRecord {
    status: TypeStatus,
    sent_at: Option<StatusInstant>,
    acked_at: Option<StatusInstant>,
    nack_at: Option<StatusInstant>,
}

impl TypeRecord {
    /// The status with its ages as of `now`.
    fn at(&self, now: StatusInstant) -> TypeStatus {
        let ago = |at: StatusInstant| millis(now.saturating_duration_since(at));
        let mut status = self.status.clone();
        status.sent_ago_ms = self.sent_at.map(ago);
        status.acked_ago_ms = self.acked_at.map(ago);
        if let (Some(nack), Some(at)) = (status.nack.as_mut(), self.nack_at) {
            nack.ago_ms = ago(at);
        }
        status
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl<G: Generator> AdsServer<G> {
    /// `snapshots` carries the current generator; every change triggers a push to every stream.
    pub fn new(snapshots: watch::Receiver<Arc<G>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                snapshots,
                next_stream: AtomicU64::new(1),
                streams: Mutex::new(BTreeMap::new()),
                shutdown: watch::Sender::new(false),
                metrics: Arc::default(),
            }),
        }
    }

    /// The server's metrics (istiod's names), to register with the process's registry.
    pub fn metrics(&self) -> &Arc<XdsMetrics> {
        &self.shared.metrics
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
    }

    /// Snapshot of every connected proxy's sync state, for /debug/syncz. One entry per
    /// stream, in connection order; a proxy disappears when its stream ends.
    pub fn status(&self) -> Vec<ProxyStatus> {
        let now = StatusInstant::now();
        self.shared
            .streams
            .lock()
            .values()
            .map(|s| ProxyStatus {
                id: s.id.clone(),
                connected_for_secs: now.saturating_duration_since(s.connected_at).as_secs(),
                types: s.types.iter().map(|t| t.at(now)).collect(),
            })
            .collect()
    }

    /// Ends every stream with `UNAVAILABLE` ("the control plane is shutting down"), so that
    /// proxies reconnect (to another replica, or to this one once it is back), and refuses
    /// new streams the same way. The proxies keep serving their last config meanwhile.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Serves one ADS stream from any stream of requests, without gRPC: spawns the
    /// stream's task and returns its responses. An `Err` item ends the stream with that
    /// status. [`into_service`](Self::into_service) uses this for every gRPC stream.
    pub fn serve_stream<S>(&self, requests: S) -> ReceiverStream<Result<DiscoveryResponse, Status>>
    where
        S: Stream<Item = Result<DiscoveryRequest, Status>> + Send + Unpin + 'static,
    {
        self.serve_stream_as(requests, None)
    }

    /// [`serve_stream`](Self::serve_stream) for a client whose certificate proved `peer`.
    pub fn serve_stream_as<S>(
        &self,
        requests: S,
        peer: Option<AuthenticatedPeer>,
    ) -> ReceiverStream<Result<DiscoveryResponse, Status>>
    where
        S: Stream<Item = Result<DiscoveryRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let number = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run_stream(
            Arc::clone(&self.shared),
            number,
            requests,
            tx,
            peer,
        ));
        ReceiverStream::new(rx)
    }
}

type ResponseSender = mpsc::Sender<Result<DiscoveryResponse, Status>>;

/// Removes a stream from the status map when its task ends, however it ends.
struct Registration<G> {
    shared: Arc<Shared<G>>,
    number: u64,
}

impl<G> Drop for Registration<G> {
    fn drop(&mut self) {
        self.shared.streams.lock().remove(&self.number);
        self.shared.metrics.stream_closed();
    }
}

async fn run_stream<G, S>(
    shared: Arc<Shared<G>>,
    number: u64,
    mut requests: S,
    tx: ResponseSender,
    peer: Option<AuthenticatedPeer>,
) where
    G: Generator,
    S: Stream<Item = Result<DiscoveryRequest, Status>> + Unpin,
{
    let mut shutdown = shared.shutdown.subscribe();
    let first = tokio::select! {
        request = requests.next() => request,
        () = stopped(&mut shutdown) => None,
    };
    let stopping = *shutdown.borrow();
    if stopping {
        let _ = tx.send(Err(shutting_down())).await;
        return;
    }
    let first = match first {
        Some(Ok(request)) => request,
        Some(Err(status)) => {
            debug!(stream = number, %status, "ADS stream failed before its first request");
            return;
        }
        None => return,
    };
    let mut snapshots = shared.snapshots.clone();
    let generator = Arc::clone(&snapshots.borrow_and_update());
    let Some(node) = first.node.as_ref() else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first request of an ADS stream must carry the node",
            )))
            .await;
        return;
    };
    let proxy = match generator.connect(node, peer.as_ref()) {
        Ok(proxy) => proxy,
        Err(status) => {
            let peer = peer.as_ref().map_or("-", |peer| peer.uri.as_str());
            warn!(node = %node.id, peer, %status, "refused ADS stream");
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut conn = Connection {
        id: node.id.clone(),
        generator,
        proxy,
        subscriptions: HashMap::new(),
        next_nonce: 1,
        metrics: Arc::clone(&shared.metrics),
        converging: None,
    };
    shared.streams.lock().insert(
        number,
        StreamStatus {
            id: conn.id.clone(),
            connected_at: StatusInstant::now(),
            types: Vec::new(),
        },
    );
    shared.metrics.stream_opened();
    let _registration = Registration {
        shared: Arc::clone(&shared),
        number,
    };
    info!(proxy = %conn.id, stream = number, "ADS stream connected");

    let reason = 'stream: {
        let response = conn.on_request(first);
        publish(&shared, number, &conn);
        if let Some(response) = response
            && tx.send(Ok(response)).await.is_err()
        {
            break 'stream "the response stream was dropped".to_string();
        }
        let mut watching = true;
        loop {
            let responses = tokio::select! {
                request = requests.next() => match request {
                    Some(Ok(request)) => conn.on_request(request).into_iter().collect(),
                    Some(Err(status)) => break 'stream format!("request stream failed: {status}"),
                    None => break 'stream "the proxy closed the stream".to_string(),
                },
                () = stopped(&mut shutdown) => {
                    let _ = tx.send(Err(shutting_down())).await;
                    break 'stream "the control plane is shutting down".to_string();
                }
                changed = snapshots.changed(), if watching => {
                    if changed.is_err() {
                        // The control plane dropped the sender: keep serving the last snapshot.
                        watching = false;
                        Vec::new()
                    } else {
                        let generator = Arc::clone(&snapshots.borrow_and_update());
                        conn.on_snapshot(generator)
                    }
                }
            };
            publish(&shared, number, &conn);
            for response in responses {
                if tx.send(Ok(response)).await.is_err() {
                    break 'stream "the response stream was dropped".to_string();
                }
            }
        }
    };
    info!(proxy = %conn.id, stream = number, %reason, "ADS stream ended");
}

/// Completes once the server shuts down (or is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn shutting_down() -> Status {
    Status::unavailable("the control plane is shutting down; reconnect")
}

/// Copies a stream's per-type state into the shared status map.
fn publish<G: Generator>(shared: &Shared<G>, number: u64, conn: &Connection<G>) {
    let types = conn.type_statuses();
    if let Some(status) = shared.streams.lock().get_mut(&number) {
        status.types = types;
    }
}

/// One stream's state: the proxy, the generator it is served from, and what was sent.
struct Connection<G: Generator> {
    id: String,
    generator: Arc<G>,
    proxy: G::Proxy,
    subscriptions: HashMap<String, Subscription>,
    next_nonce: u64,
    metrics: Arc<XdsMetrics>,
    /// The push of a new snapshot, until the proxy has ACKed every response it caused.
    converging: Option<Converging>,
}

/// A push on its way to a proxy (`pilot_proxy_convergence_time`).
struct Converging {
    /// When the first snapshot not yet ACKed reached the stream.
    since: Instant,
    /// The types whose latest response is not ACKed yet.
    waiting: Vec<String>,
}

#[derive(Debug, Default)]
struct Subscription {
    /// Explicitly requested names (without `"*"`), sorted and deduplicated.
    names: Vec<String>,
    /// Every resource of the type is wanted.
    wildcard: bool,
    /// Every request of the type so far had an empty `resource_names`: an empty list still
    /// means wildcard. The first request naming anything ends it for the stream.
    legacy_wildcard: bool,
    sent_version: Option<String>,
    sent_nonce: String,
    sent_at: Option<StatusInstant>,
    acked_version: Option<String>,
    acked_nonce: Option<String>,
    acked_at: Option<StatusInstant>,
    /// The outstanding NACK (rejected version, message) and when it came.
    nack: Option<(String, String, StatusInstant)>,
    last_nack: Option<String>,
    resource_count: usize,
}

impl Subscription {
    /// A subscription from the first request of a type.
    fn new(requested: Vec<String>) -> Self {
        let mut sub = Self {
            wildcard: requested.is_empty(),
            legacy_wildcard: requested.is_empty(),
            ..Self::default()
        };
        sub.update(requested);
        sub
    }

    /// Applies the names of a later request; returns whether what is wanted changed.
    fn update(&mut self, requested: Vec<String>) -> bool {
        if self.legacy_wildcard {
            if requested.is_empty() {
                return false;
            }
            self.legacy_wildcard = false;
        }
        let mut names = normalize(requested);
        let star = names.iter().position(|n| n == "*");
        let wildcard = star.is_some();
        if let Some(i) = star {
            names.remove(i);
        }
        let changed = wildcard != self.wildcard || names != self.names;
        self.wildcard = wildcard;
        self.names = names;
        changed
    }

    /// The proxy asked for nothing of this type.
    fn unsubscribed(&self) -> bool {
        !self.wildcard && self.names.is_empty()
    }
}

impl<G: Generator> Connection<G> {
    /// Handles one request; returns the response to send, if any.
    fn on_request(&mut self, request: DiscoveryRequest) -> Option<DiscoveryResponse> {
        let type_url = request.type_url.as_str();
        let short = type_url::short(type_url);
        if type_url.is_empty() {
            warn!(proxy = %self.id, "ignoring a request without type_url");
            return None;
        }
        let names = request.resource_names;
        let Some(sub) = self.subscriptions.get_mut(type_url) else {
            debug!(proxy = %self.id, r#type = short, ?names, "new subscription");
            self.subscriptions
                .insert(type_url.to_string(), Subscription::new(names));
            return Some(self.respond(type_url, None));
        };
        if request.response_nonce.is_empty() {
            // The proxy has not seen any response of this type on this stream: a
            // repeated initial request. Answer it with the current set.
            debug!(proxy = %self.id, r#type = short, ?names, "repeated subscription");
            sub.update(names);
            if sub.unsubscribed() {
                return None;
            }
            return Some(self.respond(type_url, None));
        }
        if request.response_nonce != sub.sent_nonce {
            debug!(
                proxy = %self.id,
                r#type = short,
                nonce = %request.response_nonce,
                latest = %sub.sent_nonce,
                "ignoring stale request"
            );
            return None;
        }
        if let Some(error) = request.error_detail {
            self.metrics.rejected(type_url::metric_label(type_url));
            // A rejected push has not converged: the next snapshot starts the clock again.
            self.converging = None;
            let rejected = sub.sent_version.clone().unwrap_or_default();
            warn!(
                "proxy {} rejected {} version {}: {}",
                self.id, short, rejected, error.message
            );
            sub.last_nack = Some(format!("version {rejected}: {}", error.message));
            sub.nack = Some((rejected, error.message, StatusInstant::now()));
        } else {
            debug!(proxy = %self.id, r#type = short, version = %request.version_info, "ACK");
            if sub.sent_version.as_ref() == Some(&request.version_info) {
                sub.nack = None;
            }
            sub.acked_version = Some(request.version_info);
            sub.acked_nonce = Some(request.response_nonce);
            sub.acked_at = Some(StatusInstant::now());
            if let Some(push) = self.converging.as_mut() {
                push.waiting.retain(|t| t != type_url);
                if push.waiting.is_empty() {
                    self.metrics.converged(push.since.elapsed());
                    self.converging = None;
                }
            }
        }
        if sub.update(names) {
            if sub.unsubscribed() {
                debug!(proxy = %self.id, r#type = short, "unsubscribed");
                return None;
            }
            debug!(
                proxy = %self.id,
                r#type = short,
                names = ?sub.names,
                wildcard = sub.wildcard,
                "subscription changed"
            );
            return Some(self.respond(type_url, None));
        }
        None
    }

    /// Switches to a new generator and returns the responses for every subscribed type
    /// whose content changed, in push order.
    fn on_snapshot(&mut self, generator: Arc<G>) -> Vec<DiscoveryResponse> {
        self.generator = generator;
        let mut types: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| !s.unsubscribed())
            .map(|(t, _)| t.clone())
            .collect();
        types.sort_by(|a, b| {
            type_url::push_rank(a)
                .cmp(&type_url::push_rank(b))
                .then_with(|| a.cmp(b))
        });
        let responses: Vec<DiscoveryResponse> = types
            .iter()
            .filter_map(|t| {
                let resources = self.resources(t);
                let version = version_of(&resources);
                let sent = self
                    .subscriptions
                    .get(t)
                    .and_then(|s| s.sent_version.as_deref());
                if sent == Some(version.as_str()) {
                    None
                } else {
                    Some(self.respond(t, Some((resources, version))))
                }
            })
            .collect();
        if !responses.is_empty() {
            // From the source's event when it says (never later than now); a push still
            // waiting for ACKs keeps its earlier start.
            let now = Instant::now();
            let since = self.generator.changed_at().map_or(now, |at| at.min(now));
            let push = self.converging.get_or_insert_with(|| Converging {
                since,
                waiting: Vec::new(),
            });
            for response in &responses {
                if !push.waiting.contains(&response.type_url) {
                    push.waiting.push(response.type_url.clone());
                }
            }
        }
        responses
    }

    /// The generated resources of a type, filtered by the subscription and sorted by name.
    fn resources(&self, type_url: &str) -> Vec<Resource> {
        let Some(sub) = self.subscriptions.get(type_url) else {
            return Vec::new();
        };
        let started = Instant::now();
        let mut resources = self.generator.generate(&self.proxy, type_url);
        self.metrics
            .generated(type_url::metric_label(type_url), started.elapsed());
        if !sub.wildcard {
            resources.retain(|r| sub.names.binary_search(&r.name).is_ok());
        }
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        resources
    }

    /// Builds the response for a type (generating it unless given) and records it as sent.
    fn respond(
        &mut self,
        type_url: &str,
        generated: Option<(Vec<Resource>, String)>,
    ) -> DiscoveryResponse {
        let (resources, version) = generated.unwrap_or_else(|| {
            let resources = self.resources(type_url);
            let version = version_of(&resources);
            (resources, version)
        });
        let nonce = self.next_nonce.to_string();
        self.next_nonce += 1;
        debug!(
            proxy = %self.id,
            r#type = type_url::short(type_url),
            %version,
            %nonce,
            count = resources.len(),
            "sending response"
        );
        self.metrics.pushed(type_url::metric_label(type_url));
        let sub = self.subscriptions.entry(type_url.to_string()).or_default();
        sub.sent_version = Some(version.clone());
        sub.sent_nonce = nonce.clone();
        sub.sent_at = Some(StatusInstant::now());
        sub.resource_count = resources.len();
        DiscoveryResponse {
            version_info: version,
            resources: resources.into_iter().map(|r| r.body).collect(),
            type_url: type_url.to_string(),
            nonce,
            ..Default::default()
        }
    }

    fn type_statuses(&self) -> Vec<TypeRecord> {
        let mut types: Vec<TypeRecord> = self
            .subscriptions
            .iter()
            .map(|(t, s)| TypeRecord {
                status: TypeStatus {
                    type_url: t.clone(),
                    short_name: type_url::short(t),
                    sent_version: s.sent_version.clone().unwrap_or_default(),
                    sent_nonce: s.sent_nonce.clone(),
                    sent_ago_ms: None,
                    acked_version: s.acked_version.clone(),
                    acked_nonce: s.acked_nonce.clone(),
                    acked_ago_ms: None,
                    nack: s.nack.as_ref().map(|(version, message, _)| Nack {
                        version: version.clone(),
                        message: message.clone(),
                        ago_ms: 0,
                    }),
                    last_nack: s.last_nack.clone(),
                    wildcard: s.wildcard,
                    resource_names: s.names.clone(),
                    resource_count: s.resource_count,
                },
                sent_at: s.sent_at,
                acked_at: s.acked_at,
                nack_at: s.nack.as_ref().map(|(.., at)| *at),
            })
            .collect();
        types.sort_by(|a, b| {
            let (a, b) = (&a.status.type_url, &b.status.type_url);
            type_url::push_rank(a)
                .cmp(&type_url::push_rank(b))
                .then_with(|| a.cmp(b))
        });
        types
    }
}

/// Sorted, deduplicated names, so that order changes are not subscription changes.
fn normalize(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<G: Generator> AggregatedDiscoveryService for AdsServer<G> {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request.extensions().get::<AuthenticatedPeer>().cloned();
        Ok(Response::new(
            self.serve_stream_as(request.into_inner(), peer),
        ))
    }

    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not supported yet, use state-of-the-world",
        ))
    }
}
