//! The state-of-the-world ADS client: subscribes, hands every response to a [`Handler`],
//! ACKs or NACKs it, follows the handler's RDS/EDS names, and reconnects forever with a
//! jittered exponential backoff.
//!
//! Wire behaviour:
//! - On connect it sends, in push order, CDS (wildcard), EDS (if the handler has names),
//!   LDS (wildcard) and RDS (if the handler has names), each with the last version it
//!   accepted for that type on any earlier stream, and the node on the first request only.
//! - ACK: `version_info` and `response_nonce` of the response, `resource_names` as last
//!   requested for that type.
//! - NACK: `version_info` of the last accepted version of that type, `response_nonce` of
//!   the response, `error_detail` = `google.rpc.Status { code: 3 (INVALID_ARGUMENT), message }`.
//! - After a CDS (or LDS) response, if the handler's EDS (or RDS) names differ from what
//!   was last requested, it sends a new EDS (or RDS) request with the new names, the last
//!   accepted version and the last nonce of that type.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::type_url;

/// `google.rpc.Code.INVALID_ARGUMENT`, sent in every NACK.
const INVALID_ARGUMENT: i32 = 3;

/// Receives the resources pushed by the server. The proxy implements it.
pub trait Handler: Send + 'static {
    /// Apply one SotW response (the full set of that type). Err(message) => NACK with that
    /// message, and the handler must have kept its old state.
    fn apply(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String>;

    /// The names to subscribe to for a non-wildcard type (RDS, EDS), derived from what was
    /// applied (route names in listeners, EDS service names in clusters). Order and
    /// duplicates do not matter.
    fn resource_names(&self, type_url: &str) -> Vec<String>;
}

/// Where and how the client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's URI, e.g. `"http://127.0.0.1:15010"`.
    pub address: String,
    /// Sent on the first request of every stream.
    pub node: Node,
    /// The first reconnect delay (before jitter). Default 100ms.
    pub initial_backoff: Duration,
    /// The largest reconnect delay (before jitter). Default 5s.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// A config with the default backoffs (100ms doubling up to 5s).
    pub fn new(address: impl Into<String>, node: Node) -> Self {
        Self {
            address: address.into(),
            node,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
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

impl<H: Handler> AdsClient<H> {
    /// A client that has not connected yet.
    pub fn new(config: ClientConfig, handler: H) -> Self {
        Self {
            config,
            handler,
            accepted: HashMap::new(),
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
        let mut attempt: u32 = 0;
        loop {
            let (error, got_response) = match connect().await {
                Ok(channel) => self.session(channel).await,
                Err(error) => (ClientError::Connect(error.to_string()), false),
            };
            if got_response {
                attempt = 0;
            }
            let delay = backoff(
                self.config.initial_backoff,
                self.config.max_backoff,
                attempt,
            );
            attempt = attempt.saturating_add(1);
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

        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let mut responses = match client
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return (status.into(), false),
        };
        info!("connected to xDS server {}", self.config.address);
        let mut got_response = false;
        loop {
            match responses.message().await {
                Ok(Some(response)) => {
                    got_response = true;
                    self.on_response(&mut stream, response);
                }
                Ok(None) => return (ClientError::Closed, got_response),
                Err(status) => return (status.into(), got_response),
            }
        }
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
        stream.nonces.insert(t.clone(), nonce.clone());
        let names = stream.requested.get(&t).cloned().unwrap_or_default();
        match self.handler.apply(&t, &version_info, resources) {
            Ok(()) => {
                debug!(r#type = short, version = %version_info, %nonce, "ACK");
                self.accepted.insert(t.clone(), version_info.clone());
                stream.request(&t, version_info, names, nonce, None);
            }
            Err(message) => {
                warn!("rejected {short} version {version_info} from the xDS server: {message}");
                let previous = self.accepted.get(&t).cloned().unwrap_or_default();
                let error = RpcStatus {
                    code: INVALID_ARGUMENT,
                    message,
                    details: Vec::new(),
                };
                stream.request(&t, previous, names, nonce, Some(error));
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
            stream.request(dependent, version, names, nonce, None);
        }
    }
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
}

/// Sorted, deduplicated names, so that order changes are not subscription changes.
fn normalize(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// The delay before reconnect attempt `attempt` (0-based): `initial * 2^attempt`, capped
/// at `max`, then jittered uniformly into `[delay / 2, delay]`.
fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(20);
    let delay = initial.saturating_mul(factor).min(max);
    delay.mul_f64(rand::random_range(0.5..=1.0))
}

/// An error and its sources, `": "`-separated (tonic's transport error alone only says
/// "transport error").
fn error_chain(error: &dyn std::error::Error) -> String {
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
            let first = backoff(initial, max, 0);
            assert!(
                first >= Duration::from_millis(50) && first <= initial,
                "{first:?}"
            );
            let third = backoff(initial, max, 2);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(initial, max, 40);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
    }

    #[test]
    fn normalize_sorts_and_dedups() {
        let names = normalize(vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!(names, vec!["a".to_string(), "b".to_string()]);
    }
}
