//! Fetches the key set (JWKS) of every `jwksUri` of the current RequestAuthentications, so
//! that the proxies get them inline, as istiod does: one task follows the config snapshots,
//! fetches each URI (HTTP or HTTPS, 5 s timeout unless the rule's `timeout` says otherwise),
//! refreshes it every 20 minutes (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`), retries failures with
//! exponential backoff, and publishes the set (URI → JWKS text, or why it could not be
//! fetched) through a `watch` channel that the model task reads. A failed refresh keeps the
//! keys fetched before.
//!
//! HTTPS trusts the certificates of `--jwks-ca-file` plus, when it exists,
//! `/etc/ssl/certs/ca-certificates.crt`; nothing else (no platform root store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};
use weft_api::ConfigObject;

use crate::args::Args;
use crate::source::{ConfigSet, Snapshot};

/// How long one fetch may take unless the JWT rule's `timeout` says otherwise (Istio's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a fetched key set is fetched again (Istio's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// The system CA bundle trusted besides `--jwks-ca-file`, when it exists.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The largest key set accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Redirects followed per fetch.
const MAX_REDIRECTS: usize = 5;

/// The key sets the controller has: per `jwksUri`, the JWKS text or why it could not be
/// fetched. A URI missing from the set has not been fetched yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksSet {
    entries: BTreeMap<String, Result<String, String>>,
}

impl JwksSet {
    /// What the controller has for `uri`.
    pub fn get(&self, uri: &str) -> Option<&Result<String, String>> {
        self.entries.get(uri)
    }

    /// Records what a fetch of `uri` gave.
    pub fn insert(&mut self, uri: impl Into<String>, result: Result<String, String>) {
        self.entries.insert(uri.into(), result);
    }

    /// Every URI and its result.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Result<String, String>)> {
        self.entries.iter()
    }
}

/// Why the JWKS fetcher cannot start.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("--jwks-ca-file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("--jwks-ca-file {}: no certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("--jwks-ca-file {}: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("cannot build the TLS client for JWKS fetches: {0}")]
    Tls(#[from] rustls::Error),
}

/// How the fetcher works; [`JwksOptions::from_args`] gives Istio's values.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// `--jwks-ca-file`.
    pub ca_file: Option<PathBuf>,
    /// A CA bundle used when it exists ([`SYSTEM_CA_BUNDLE`]).
    pub system_ca_file: Option<PathBuf>,
    pub refresh_interval: Duration,
    /// The first retry delay after a failure; it doubles (with jitter) up to `max_retry_delay`.
    pub min_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl JwksOptions {
    pub fn from_args(args: &Args) -> Self {
        Self {
            ca_file: args.jwks_ca_file.clone(),
            system_ca_file: Some(PathBuf::from(SYSTEM_CA_BUNDLE)),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(5 * 60),
        }
    }
}

/// Every `jwksUri` of the RequestAuthentications of `config` whose rule has no inline `jwks`,
/// with its fetch timeout (the longest `timeout` of the rules naming it, else 5 s).
pub fn uris(config: &ConfigSet) -> BTreeMap<String, Duration> {
    let mut uris: BTreeMap<String, Duration> = BTreeMap::new();
    for (_, object) in config.objects() {
        let ConfigObject::RequestAuthentication(resource) = object else {
            continue;
        };
        for rule in &resource.spec.jwt_rules {
            if rule.jwks.is_some() {
                continue;
            }
            if let Some(uri) = rule.jwks_uri() {
                let timeout = rule.timeout.map_or(DEFAULT_TIMEOUT, |t| t.as_std());
                let entry = uris.entry(uri.to_string()).or_insert(timeout);
                *entry = (*entry).max(timeout);
            }
        }
    }
    uris
}

/// How long the controller waits for the first fetches before it builds its first model
/// (istiod fetches a new key set synchronously, within its timeout).
pub const FIRST_FETCH_WAIT: Duration = Duration::from_secs(6);

/// Starts the fetch task for the URIs of `snapshots`. The first set is published once every
/// URI of the current snapshot has been tried (at once when there is none).
pub fn start(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fetcher: Fetcher,
    options: JwksOptions,
) -> (watch::Receiver<Arc<JwksSet>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(JwksSet::default()));
    let task = tokio::spawn(run(snapshots, fetcher, options, tx));
    (rx, task)
}

/// What the task knows about one URI.
struct Tracked {
    timeout: Duration,
    /// When to fetch it next.
    due: Instant,
    /// Delays of the retries since the last success.
    backoff: Option<ExponentialBackoff>,
}

async fn run(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    fetcher: Fetcher,
    options: JwksOptions,
    tx: watch::Sender<Arc<JwksSet>>,
) {
    let mut set = JwksSet::default();
    let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
    let mut published = false;
    loop {
        let wanted = uris(&snapshots.borrow_and_update().config);
        tracked.retain(|uri, _| wanted.contains_key(uri));
        set.entries.retain(|uri, _| wanted.contains_key(uri));
        let now = Instant::now();
        for (uri, timeout) in wanted {
            tracked
                .entry(uri)
                .or_insert_with(|| Tracked {
                    timeout,
                    due: now,
                    backoff: None,
                })
                .timeout = timeout;
        }

        let due: Vec<(String, Duration)> = tracked
            .iter()
            .filter(|(_, state)| state.due <= now)
            .map(|(uri, state)| (uri.clone(), state.timeout))
            .collect();
        let results = futures::future::join_all(
            due.iter()
                .map(|(uri, timeout)| fetcher.fetch(uri, *timeout)),
        )
        .await;
        for ((uri, _), result) in due.into_iter().zip(results) {
            let Some(state) = tracked.get_mut(&uri) else {
                continue;
            };
            match result {
                Ok(text) => {
                    state.backoff = None;
                    state.due = Instant::now() + options.refresh_interval;
                    if set.get(&uri) != Some(&Ok(text.clone())) {
                        info!(%uri, bytes = text.len(), "fetched JWKS");
                    }
                    set.insert(uri, Ok(text));
                }
                Err(reason) => {
                    let delay = state
                        .backoff
                        .get_or_insert_with(|| retry_delays(&options))
                        .next()
                        .unwrap_or(options.max_retry_delay);
                    state.due = Instant::now() + delay;
                    match set.get(&uri) {
                        Some(Ok(_)) => {
                            warn!(%uri, %reason, retry_in = ?delay, "cannot refresh JWKS; keeping the keys fetched before");
                        }
                        Some(Err(previous)) if *previous == reason => {
                            debug!(%uri, %reason, retry_in = ?delay, "cannot fetch JWKS");
                        }
                        _ => {
                            warn!(%uri, %reason, retry_in = ?delay, "cannot fetch JWKS");
                            set.insert(uri, Err(reason));
                        }
                    }
                }
            }
        }
        if !published || **tx.borrow() != set {
            tx.send_replace(Arc::new(set.clone()));
            published = true;
        }

        let next_due = tracked.values().map(|state| state.due).min();
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            () = sleep_until(next_due) => {}
            () = tx.closed() => return,
        }
    }
}

/// Sleeps until `deadline`, forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn retry_delays(options: &JwksOptions) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(options.min_retry_delay)
        .with_max_delay(options.max_retry_delay)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Fetches key sets over HTTP/1.1, plain or TLS (rustls with ring).
#[derive(Clone)]
pub struct Fetcher {
    tls: TlsConnector,
}

/// A response worth acting on.
enum Answer {
    Body(String),
    Redirect(String),
}

impl Fetcher {
    /// A fetcher trusting `options.ca_file` (which must hold certificates) and the system
    /// bundle when it exists.
    pub fn new(options: &JwksOptions) -> Result<Self, JwksError> {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &options.ca_file {
            let certs = read_certificates(path).map_err(|source| JwksError::CaFile {
                path: path.clone(),
                source,
            })?;
            if certs.is_empty() {
                return Err(JwksError::NoCertificate { path: path.clone() });
            }
            for cert in certs {
                roots.add(cert).map_err(|err| JwksError::BadCertificate {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            }
        }
        if let Some(path) = options.system_ca_file.as_ref().filter(|p| p.exists()) {
            match read_certificates(path) {
                Ok(certs) => {
                    let (added, ignored) = roots.add_parsable_certificates(certs);
                    debug!(path = %path.display(), added, ignored, "system CA bundle for JWKS fetches");
                }
                Err(err) => {
                    warn!(path = %path.display(), error = %err, "cannot read the system CA bundle; JWKS fetches do not trust it");
                }
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Fetches one key set within `timeout`, following redirects; the text must be a JWKS (a
    /// JSON object with a `keys` array).
    pub async fn fetch(&self, uri: &str, timeout: Duration) -> Result<String, String> {
        let fetch = async {
            let mut current = uri.to_string();
            for _ in 0..=MAX_REDIRECTS {
                match self.get(&current).await? {
                    Answer::Body(text) => return check_jwks(text),
                    Answer::Redirect(location) => current = redirect_target(&current, &location)?,
                }
            }
            Err(format!("more than {MAX_REDIRECTS} redirects"))
        };
        match tokio::time::timeout(timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(format!("no complete answer within {timeout:?}")),
        }
    }

    async fn get(&self, uri: &str) -> Result<Answer, String> {
        let parsed: Uri = uri.parse().map_err(|err| format!("invalid URL: {err}"))?;
        let https = match parsed.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("only http:// and https:// URLs are supported".to_string()),
        };
        let authority = parsed
            .authority()
            .ok_or_else(|| "the URL has no host".to_string())?
            .clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|err| format!("cannot connect to {authority}: {err}"))?;
        let path = parsed.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(HOST, authority.as_str())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "weft-controller")
            .body(Empty::<Bytes>::new())
            .map_err(|err| format!("invalid request: {err}"))?;
        if https {
            let name = ServerName::try_from(host)
                .map_err(|err| format!("invalid TLS server name: {err}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|err| format!("TLS handshake with {authority} failed: {err}"))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }
}

/// Sends one request on a new HTTP/1.1 connection and reads the answer.
async fn send<IO>(io: IO, request: Request<Empty<Bytes>>) -> Result<Answer, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| format!("HTTP handshake failed: {err}"))?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("request failed: {err}"))?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("HTTP status {status} without a Location"))?;
        return Ok(Answer::Redirect(location.to_string()));
    }
    if status != StatusCode::OK {
        return Err(format!("HTTP status {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|err| format!("cannot read the body: {err}"))?
        .to_bytes();
    drop(driver);
    String::from_utf8(body.to_vec())
        .map(Answer::Body)
        .map_err(|_| "the body is not UTF-8".to_string())
}

/// Aborts the connection task when the fetch is done or dropped (timeout).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The URL a `Location` points to: absolute, or a path on the same origin.
fn redirect_target(current: &str, location: &str) -> Result<String, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let uri: Uri = current
        .parse()
        .map_err(|err| format!("invalid URL: {err}"))?;
    match (uri.scheme_str(), uri.authority(), location.starts_with('/')) {
        (Some(scheme), Some(authority), true) => Ok(format!("{scheme}://{authority}{location}")),
        _ => Err(format!("unsupported redirect to {location:?}")),
    }
}

/// The text, if it is a JWKS: a JSON object with a `keys` array.
fn check_jwks(text: String) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| format!("the body is not JSON: {err}"))?;
    if value.get("keys").is_some_and(serde_json::Value::is_array) {
        Ok(text)
    } else {
        Err("the body is not a JWKS (a JSON object with a \"keys\" array)".to_string())
    }
}

fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
