//! The state-of-the-world ADS client: subscribes, hands every response to a [`Handler`],
//! ACKs or NACKs it, follows the handler's RDS/EDS names, and reconnects forever with a
//! jittered exponential backoff.
//!
//! Wire behaviour (Envoy's "xDS REST and gRPC protocol", state of the world over ADS):
//! - On connect it sends, in push order, CDS (wildcard), EDS (if the handler has names),
//!   LDS (wildcard) and RDS (if the handler has names), then the configured extra wildcard
//!   types (NDS for a proxy with a DNS proxy), each with the last version it
//!   accepted for that type on any earlier stream, and the node on the first request only.
//!   An empty `resource_names` means wildcard only on the first request of a type, so RDS
//!   and EDS are never first requested with an empty list (that would ask for every
//!   resource): the client subscribes to them once the handler has names.
//! - ACK: `version_info` and `response_nonce` of the response, `resource_names` as last
//!   requested for that type.
//! - NACK: `version_info` of the last accepted version of that type, `response_nonce` of
//!   the response, `error_detail` = `google.rpc.Status { code: 3 (INVALID_ARGUMENT), message }`.
//!   A response is NACKed without reaching the handler when one of its resources is packed
//!   with a type URL other than the response's.
//! - After a CDS (or LDS) response, if the handler's EDS (or RDS) names differ from what
//!   was last requested, it sends a new EDS (or RDS) request with the new names, the last
//!   accepted version and the last nonce of that type (and the error of a NACK of that
//!   nonce still waiting for its backoff). When the names become empty that request carries
//!   an empty list: an unsubscription from every resource of the type.
//! - RDS and EDS resources the client did not ask for are dropped before the handler sees
//!   them (the spec: "the client will silently ignore any supplied resources that were not
//!   explicitly requested").
//! - A server that answers a NACK by sending the same rejected resources again (whatever
//!   the version and nonce) is NACKed again, but after a jittered exponential delay (100 ms
//!   doubling to 30 s by default), so the two never spin; a different response of that type
//!   is answered at once and resets the delay. Each distinct error message of a type is
//!   logged once at warn; repeats are logged at debug with a count.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::resource::{content_hash, name_of};
use crate::type_url;

/// `google.rpc.Code.INVALID_ARGUMENT`, sent in every NACK.
const INVALID_ARGUMENT: i32 = 3;

/// How many distinct error messages per type are remembered for log deduplication.
const REMEMBERED_MESSAGES: usize = 16;

/// Receives the resources pushed by the server. The proxy implements it.
pub trait Handler: Send + 'static {
    /// Applies the resources of one response of `type_url` at `version`. `Err(message)` NACKs
    /// the response with that message, and the handler must have kept its old state.
    ///
    /// What a response means depends on the type, as in Envoy's state-of-the-world protocol:
    /// - LDS and CDS ([`is_wildcard_type`](crate::type_url::is_wildcard_type)): the response
    ///   is the complete set. A listener or cluster missing from it is deleted; an empty
    ///   response deletes them all.
    /// - RDS and EDS: the response carries some of the subscribed resources, each of them
    ///   complete. A route configuration or load assignment missing from the response is
    ///   **not** deleted (an empty response changes nothing). They go away when no applied
    ///   listener or cluster refers to them any more: the handler drops them itself, when its
    ///   [`resource_names`](Self::resource_names) no longer name them (the client then
    ///   unsubscribes from them, and the server sends no more updates for them).
    ///
    /// The client only passes resources packed with `type_url`, and for RDS and EDS only
    /// those it subscribed to (per the names it last requested).
    fn apply(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String>;

    /// The names to subscribe to for a non-wildcard type (RDS, EDS), derived from what was
    /// applied (route names in listeners, EDS service names in clusters). Order and
    /// duplicates do not matter; an empty list unsubscribes from the type.
    fn resource_names(&self, type_url: &str) -> Vec<String>;

    /// A stream to the server is up (the proxy's `control_plane.connected_state`).
    fn connected(&mut self) {}

    /// That stream ended; the client reconnects.
    fn disconnected(&mut self) {}
}

/// Where and how the client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's URI, e.g. `"http://127.0.0.1:15010"`.
    pub address: String,
    /// Sent on the first request of every stream.
    pub node: Node,
    /// The first reconnect delay (the upper bound; jittered down to half). Default 100ms.
    pub initial_backoff: Duration,
    /// The largest reconnect delay (the upper bound; jittered down to half). Default 5s.
    pub max_backoff: Duration,
    /// The first delay before NACKing the same rejected content again (jittered down to
    /// half). Default 100ms.
    pub nack_initial_backoff: Duration,
    /// The largest delay before NACKing the same rejected content again (jittered down to
    /// half). Default 30s.
    pub nack_max_backoff: Duration,
    /// Wildcard types subscribed after the Envoy ones, e.g. [`NAME_TABLE`] for a proxy that
    /// runs the DNS proxy. Default none.
    ///
    /// [`NAME_TABLE`]: crate::type_url::NAME_TABLE
    pub extra_types: Vec<&'static str>,
}

impl ClientConfig {
    /// A config with the default backoffs: reconnects 100ms doubling up to 5s, repeated
    /// NACKs 100ms doubling up to 30s.
    pub fn new(address: impl Into<String>, node: Node) -> Self {
        Self {
            address: address.into(),
            node,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            nack_initial_backoff: Duration::from_millis(100),
            nack_max_backoff: Duration::from_secs(30),
            extra_types: Vec::new(),
        }
    }

    /// Also subscribes to the wildcard type `type_url` (see [`extra_types`](Self::extra_types)).
    pub fn with_type(mut self, type_url: &'static str) -> Self {
        if !self.extra_types.contains(&type_url) {
            self.extra_types.push(type_url);
        }
        self
    }
}

/// Why one ADS stream ended. The client logs it and reconnects.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The channel could not be built or connected.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The RPC failed (at start or mid-stream).
    #[error("stream failed: {code:?}: {message}")]
    Stream {
        /// The gRPC status code.
        code: tonic::Code,
        /// The gRPC status message.
        message: String,
    },
    /// The server ended the stream without an error.
    #[error("the server closed the stream")]
    Closed,
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        Self::Stream {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// The ADS client. Build it with [`new`](Self::new), then drive it with [`run`](Self::run)
/// (usually in its own task).
pub struct AdsClient<H: Handler> {
    config: ClientConfig,
    handler: H,
    /// The last version accepted per type, kept across streams.
    accepted: HashMap<String, String>,
    /// Rejections per type since the type last had a response accepted, kept across streams.
    rejections: HashMap<String, Rejections>,
}

impl<H: Handler> std::fmt::Debug for AdsClient<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsClient")
            .field("address", &self.config.address)
            .field("node", &self.config.node.id)
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

/// What the client remembers of one type's rejections since it last accepted a response.
struct Rejections {
    /// [`content_hash`] of the last rejected response.
    content: u64,
    /// Delays before NACKing that same content again; rebuilt when the content changes.
    backoff: ExponentialBackoff,
    /// Error messages already logged at warn, with how often each was seen; most recent last.
    messages: Vec<(String, u64)>,
}

impl<H: Handler> AdsClient<H> {
    /// A client that has not connected yet.
    pub fn new(config: ClientConfig, handler: H) -> Self {
        Self {
            config,
            handler,
            accepted: HashMap::new(),
            rejections: HashMap::new(),
        }
    }

    /// Runs forever: connect, subscribe, apply, ACK/NACK; on any error or disconnect, log
    /// and reconnect after a jittered exponential backoff (reset after a successful
    /// response). Never returns: the `Infallible` output lets callers write
    /// `match client.run().await {}`; stop it by dropping or aborting its task.
    pub async fn run(self) -> Infallible {
        let address = self.config.address.clone();
        self.run_with_channel_factory(move || {
            let address = address.clone();
            async move {
                let endpoint = Endpoint::from_shared(address)
                    .map_err(|e| error_chain(&e))?
                    .connect_timeout(Duration::from_secs(5))
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .keep_alive_while_idle(true);
                endpoint.connect().await.map_err(|e| error_chain(&e))
            }
        })
        .await
    }

    /// Same as [`run`](Self::run), but every (re)connection dials through `connect`, which
    /// returns a ready channel or an error to log before backing off. Used in-process
    /// with `tokio::io::duplex` and `Endpoint::connect_with_connector`.
    pub async fn run_with_channel_factory<F, Fut, E>(mut self, mut connect: F) -> Infallible
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Channel, E>>,
        E: Display,
    {
        let reconnect = jittered_backoff(self.config.initial_backoff, self.config.max_backoff);
        let mut delays = reconnect.build();
        loop {
            let (error, got_response) = match connect().await {
                Ok(channel) => self.session(channel).await,
                Err(error) => (ClientError::Connect(error.to_string()), false),
            };
            if got_response {
                delays = reconnect.build();
            }
            let delay = delays.next().unwrap_or(self.config.max_backoff);
            warn!(
                "disconnected from xDS server {}: {error}; reconnecting in {delay:?}",
                self.config.address
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream, until it fails. Returns why, and whether any response arrived.
    async fn session(&mut self, channel: Channel) -> (ClientError, bool) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut stream = Outbox {
            tx,
            node: Some(self.config.node.clone()),
            requested: HashMap::new(),
            nonces: HashMap::new(),
            delayed: HashMap::new(),
        };
        for t in type_url::PUSH_ORDER {
            let names = if type_url::is_wildcard_type(t) {
                Vec::new()
            } else {
                let names = normalize(self.handler.resource_names(t));
                if names.is_empty() {
                    continue;
                }
                names
            };
            let version = self.accepted.get(t).cloned().unwrap_or_default();
            stream.request(t, version, names, String::new(), None);
        }
        for t in &self.config.extra_types {
            let version = self.accepted.get(*t).cloned().unwrap_or_default();
            stream.request(t, version, Vec::new(), String::new(), None);
        }

        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let mut responses = match client
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return (status.into(), false),
        };
        info!("connected to xDS server {}", self.config.address);
        self.handler.connected();
        let mut got_response = false;
        let ended = loop {
            let due = stream.next_due();
            // Without a delayed NACK the timer branch is disabled; the hour is never awaited.
            let wake = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                message = responses.message() => match message {
                    Ok(Some(response)) => {
                        got_response = true;
                        self.on_response(&mut stream, response);
                    }
                    Ok(None) => break ClientError::Closed,
                    Err(status) => break status.into(),
                },
                () = tokio::time::sleep_until(wake), if due.is_some() => stream.send_due(),
            }
        };
        self.handler.disconnected();
        (ended, got_response)
    }

    fn on_response(&mut self, stream: &mut Outbox, response: DiscoveryResponse) {
        let DiscoveryResponse {
            version_info,
            resources,
            type_url: t,
            nonce,
            ..
        } = response;
        let short = type_url::short(&t);
        // A delayed NACK of this type answers an older response: this one supersedes it.
        stream.delayed.remove(&t);
        stream.nonces.insert(t.clone(), nonce.clone());
        let names = stream.requested.get(&t).cloned().unwrap_or_default();
        let content = content_hash(&resources);
        let result = check_type_urls(&t, &resources).and_then(|()| {
            let resources = if type_url::is_wildcard_type(&t) {
                resources
            } else {
                requested_only(&t, &names, resources)
            };
            self.handler.apply(&t, &version_info, resources)
        });
        match result {
            Ok(()) => {
                debug!(r#type = short, version = %version_info, %nonce, "ACK");
                self.rejections.remove(&t);
                self.accepted.insert(t.clone(), version_info.clone());
                stream.request(&t, version_info, names, nonce, None);
            }
            Err(message) => {
                let delay = self.note_rejection(&t, &version_info, content, &message);
                let previous = self.accepted.get(&t).cloned().unwrap_or_default();
                let error = RpcStatus {
                    code: INVALID_ARGUMENT,
                    message,
                    details: Vec::new(),
                };
                match delay {
                    None => stream.request(&t, previous, names, nonce, Some(error)),
                    Some(delay) => {
                        let delayed = Delayed {
                            at: Instant::now() + delay,
                            version_info: previous,
                            resource_names: names,
                            response_nonce: nonce,
                            error,
                        };
                        stream.delayed.insert(t.clone(), delayed);
                    }
                }
            }
        }
        let dependent = match t.as_str() {
            type_url::CLUSTER => type_url::ENDPOINT,
            type_url::LISTENER => type_url::ROUTE,
            _ => return,
        };
        let names = normalize(self.handler.resource_names(dependent));
        let changed = match stream.requested.get(dependent) {
            Some(old) => *old != names,
            // Never subscribed on this stream: an empty first request would be a wildcard.
            None => !names.is_empty(),
        };
        if changed {
            debug!(
                r#type = type_url::short(dependent),
                ?names,
                "subscription changed"
            );
            let version = self.accepted.get(dependent).cloned().unwrap_or_default();
            let nonce = stream.nonces.get(dependent).cloned().unwrap_or_default();
            // A NACK of that type waiting for its backoff goes now, with the new names: a
            // later request would supersede it anyway.
            let error = stream.delayed.remove(dependent).map(|d| d.error);
            stream.request(dependent, version, names, nonce, error);
        }
    }

    /// Records a rejection of `content` for type `t`: logs it (each distinct message once at
    /// warn) and returns how long to wait before NACKing, `None` for at once (anything but
    /// the content rejected last time).
    fn note_rejection(
        &mut self,
        t: &str,
        version: &str,
        content: u64,
        message: &str,
    ) -> Option<Duration> {
        let short = type_url::short(t);
        let new_backoff = || {
            jittered_backoff(
                self.config.nack_initial_backoff,
                self.config.nack_max_backoff,
            )
            .build()
        };
        let repeat = match self.rejections.get_mut(t) {
            Some(state) if state.content == content => true,
            Some(state) => {
                state.content = content;
                state.backoff = new_backoff();
                false
            }
            None => {
                let state = Rejections {
                    content,
                    backoff: new_backoff(),
                    messages: Vec::new(),
                };
                self.rejections.insert(t.to_string(), state);
                false
            }
        };
        let state = self.rejections.get_mut(t)?;
        match state.messages.iter().position(|(m, _)| m == message) {
            Some(i) => {
                let (message, count) = state.messages.remove(i);
                let count = count.saturating_add(1);
                debug!(
                    "rejected {short} version {version} from the xDS server again ({count} times): {message}"
                );
                state.messages.push((message, count));
            }
            None => {
                warn!("rejected {short} version {version} from the xDS server: {message}");
                if state.messages.len() >= REMEMBERED_MESSAGES {
                    state.messages.remove(0);
                }
                state.messages.push((message.to_string(), 1));
            }
        }
        if !repeat {
            return None;
        }
        let delay = state.backoff.next().unwrap_or(self.config.nack_max_backoff);
        debug!("the xDS server resent rejected {short} content; NACKing again in {delay:?}");
        Some(delay)
    }
}

/// A NACK waiting for its backoff before it is sent.
struct Delayed {
    at: Instant,
    version_info: String,
    resource_names: Vec<String>,
    response_nonce: String,
    error: RpcStatus,
}

/// The request side of one stream and what was requested on it.
struct Outbox {
    tx: mpsc::UnboundedSender<DiscoveryRequest>,
    /// The node, until the first request takes it.
    node: Option<Node>,
    /// The names last requested per type on this stream.
    requested: HashMap<String, Vec<String>>,
    /// The nonce of the last response per type on this stream.
    nonces: HashMap<String, String>,
    /// NACKs of repeated content waiting for their backoff, per type.
    delayed: HashMap<String, Delayed>,
}

impl Outbox {
    fn request(
        &mut self,
        type_url: &str,
        version_info: String,
        resource_names: Vec<String>,
        response_nonce: String,
        error_detail: Option<RpcStatus>,
    ) {
        self.requested
            .insert(type_url.to_string(), resource_names.clone());
        let request = DiscoveryRequest {
            version_info,
            node: self.node.take(),
            resource_names,
            type_url: type_url.to_string(),
            response_nonce,
            error_detail,
            ..Default::default()
        };
        // A send error means the stream is gone; the response side notices and reports it.
        let _ = self.tx.send(request);
    }

    /// When the earliest delayed NACK is due.
    fn next_due(&self) -> Option<Instant> {
        self.delayed.values().map(|d| d.at).min()
    }

    /// Sends every delayed NACK that is due.
    fn send_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .delayed
            .iter()
            .filter(|(_, d)| d.at <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for t in due {
            if let Some(d) = self.delayed.remove(&t) {
                self.request(
                    &t,
                    d.version_info,
                    d.resource_names,
                    d.response_nonce,
                    Some(d.error),
                );
            }
        }
    }
}

/// Err names the first resource packed with a type URL other than the response's.
fn check_type_urls(type_url: &str, resources: &[Any]) -> Result<(), String> {
    let mut wrong = resources
        .iter()
        .enumerate()
        .filter(|(_, any)| any.type_url != type_url);
    let Some((index, any)) = wrong.next() else {
        return Ok(());
    };
    let others = wrong.count();
    let mut message = format!(
        "resource {index}: type URL {:?} does not match the response's type URL {type_url:?}",
        any.type_url
    );
    if others > 0 {
        message.push_str(&format!(" (and {others} more resources)"));
    }
    Err(message)
}

/// The resources of a by-name type whose names were requested; a resource whose name
/// does not decode is kept, for the handler to reject.
fn requested_only(type_url: &str, requested: &[String], resources: Vec<Any>) -> Vec<Any> {
    resources
        .into_iter()
        .filter(|any| match name_of(any) {
            Some(name) if requested.binary_search(&name).is_err() => {
                debug!(
                    r#type = type_url::short(type_url),
                    %name,
                    "ignoring a resource that was not requested"
                );
                false
            }
            _ => true,
        })
        .collect()
}

/// Sorted, deduplicated names, so that order changes are not subscription changes.
fn normalize(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// Delays starting at `initial` and doubling up to `max`, each jittered uniformly into
/// `[delay / 2, delay)`: backon's jitter adds up to 100%, so it starts from half.
fn jittered_backoff(initial: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(initial / 2)
        .with_max_delay(max / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// An error and its sources, `": "`-separated (tonic's transport error alone only says
/// "transport error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for _ in 0..100 {
            let mut delays = jittered_backoff(initial, max).build();
            let first = delays.next().expect("endless");
            assert!(
                first >= Duration::from_millis(50) && first < initial,
                "{first:?}"
            );
            delays.next();
            let third = delays.next().expect("endless");
            assert!(
                third >= Duration::from_millis(200) && third < Duration::from_millis(400),
                "{third:?}"
            );
            let late = delays.nth(40).expect("endless");
            assert!(late >= max / 2 && late < max, "{late:?}");
        }
    }

    #[test]
    fn normalize_sorts_and_dedups() {
        let names = normalize(vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!(names, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn type_url_check_names_index_and_both_urls() {
        let any = |t: &str| Any {
            type_url: t.to_string(),
            value: Vec::new(),
        };
        assert_eq!(
            check_type_urls(type_url::ROUTE, &[any(type_url::ROUTE)]),
            Ok(())
        );
        assert_eq!(check_type_urls(type_url::ROUTE, &[]), Ok(()));
        let error = check_type_urls(
            type_url::ROUTE,
            &[
                any(type_url::ROUTE),
                any(type_url::CLUSTER),
                any("type.googleapis.com/x"),
            ],
        )
        .expect_err("mismatch");
        assert_eq!(
            error,
            format!(
                "resource 1: type URL {:?} does not match the response's type URL {:?} (and 1 more resources)",
                type_url::CLUSTER,
                type_url::ROUTE
            )
        );
    }
}
