//! The proxy's workload identity: a key made here (it never leaves the process), a
//! certificate from the CA for the identity the workload's token proves, renewed at
//! half-life; and the trust bundle, read again whenever its file changes.
//!
//! ```text
//!  --ca-root-cert (polled) ──────────────► TrustBundle ─┐
//!  WorkloadKey ─CSR + bearer token─► CA (15012, TLS) ─► WorkloadCert ─┴─► watch<IdentityState>
//!      renew at half-life (retry 1 s doubling to 30 s)        ├─► admin /certs, readiness
//!                                                             ├─► ADS over TLS (client cert)
//!                                                             └─► mesh mTLS (later: tls/)
//! ```
//!
//! One task owns the state; everyone else reads snapshots from the `watch`. A renewed
//! certificate serves new connections; connections already open keep theirs.

pub mod channel;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Request;
use tracing::{info, warn};
use weft_identity::ca_api::{IstioCertificateRequest, create_certificate};
use weft_identity::{CertInfo, SpiffeId, TrustBundle, WorkloadCert, WorkloadKey};

/// How often the trust bundle file is checked for changes.
const BUNDLE_POLL: Duration = Duration::from_secs(2);
/// Retries of a failed certificate request: 1 s doubling to 30 s.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the identity needs, from the flags.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub id: SpiffeId,
    pub ca_address: String,
    pub server_name: String,
    pub root_cert: PathBuf,
    pub token_file: PathBuf,
    /// The lifetime to ask for; `None`: the CA's default.
    pub lifetime: Option<Duration>,
}

/// Why a certificate could not be obtained. Logged, shown by `/certs` and readiness.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read the trust bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("cannot read the CA token {path}: {reason}")]
    Token { path: String, reason: String },
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    #[error("the CA refused: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error(transparent)]
    Workload(#[from] weft_identity::WorkloadError),
}

/// What the proxy currently holds.
#[derive(Debug, Clone, Default)]
pub struct IdentityState {
    pub cert: Option<Arc<WorkloadCert>>,
    pub bundle: Option<Arc<TrustBundle>>,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Certificates obtained since start.
    pub issued: u64,
}

impl IdentityState {
    /// Why the proxy is not ready yet, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        match (&self.cert, &self.last_error) {
            (Some(_), _) => None,
            (None, Some(err)) => Some(format!("waiting for the workload certificate: {err}")),
            (None, None) => Some("waiting for the workload certificate".to_string()),
        }
    }

    /// The admin `/certs` view.
    pub fn describe(&self) -> Value {
        let info = |info: &CertInfo| {
            json!({
                "serial": info.serial,
                "subject": info.subject,
                "issuer": info.issuer,
                "san": info.uris.iter().chain(&info.dns_names).collect::<Vec<_>>(),
                "not_before": unix(info.not_before),
                "not_after": unix(info.not_after),
                "expires_in_seconds": info.not_after.duration_since(SystemTime::now()).map_or(0, |d| d.as_secs()),
            })
        };
        json!({
            "identity": self.cert.as_ref().map(|c| c.id.uri()),
            "certificate": self.cert.as_ref().map(|c| {
                let mut v = info(&c.info);
                v["chain_length"] = json!(c.chain.len());
                v
            }),
            "roots": self.bundle.as_ref().map(|b| b.infos().iter().map(info).collect::<Vec<_>>()).unwrap_or_default(),
            "issued": self.issued,
            "last_error": self.last_error,
        })
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Handle on the proxy's identity.
pub type Identity = watch::Receiver<Arc<IdentityState>>;

/// Starts the task that owns the identity.
pub fn spawn(config: IdentityConfig) -> (Identity, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(IdentityState::default()));
    let task = tokio::spawn(run(config, tx));
    (rx, task)
}

async fn run(config: IdentityConfig, tx: watch::Sender<Arc<IdentityState>>) {
    let mut bundle_text: Option<Vec<u8>> = None;
    let mut retry = RETRY_MIN;
    // When to ask for a certificate next: now.
    let mut renew_at = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(BUNDLE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = poll.tick() => {
                match read_bundle(&config.root_cert, &mut bundle_text) {
                    Ok(Some(bundle)) => {
                        info!(
                            path = %config.root_cert.display(),
                            roots = ?bundle.infos().iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
                            "trust bundle loaded"
                        );
                        let bundle = Arc::new(bundle);
                        tx.send_modify(|state| {
                            let mut next = (**state).clone();
                            next.bundle = Some(bundle);
                            *state = Arc::new(next);
                        });
                    }
                    Ok(None) => {}
                    Err(err) => {
                        let message = err.to_string();
                        if tx.borrow().last_error.as_deref() != Some(message.as_str()) {
                            warn!("{message}; keeping the bundle in use");
                        }
                        set_error(&tx, message);
                    }
                }
                continue;
            }
            () = tokio::time::sleep_until(renew_at) => {}
        }
        let Some(bundle) = tx.borrow().bundle.clone() else {
            // No trust bundle yet: the CA cannot be verified. Try again after the next poll.
            renew_at = tokio::time::Instant::now() + BUNDLE_POLL;
            continue;
        };
        match fetch(&config, &bundle).await {
            Ok(cert) => {
                info!(
                    identity = %cert.id,
                    serial = %cert.info.serial,
                    not_after = unix(cert.info.not_after),
                    "workload certificate issued"
                );
                // Renew halfway through what is left of the lifetime (CAs back-date
                // certificates, so the nominal half-life can be already past).
                let wait = (cert
                    .info
                    .not_after
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
                    / 2)
                .max(Duration::from_millis(100));
                renew_at = tokio::time::Instant::now() + wait;
                retry = RETRY_MIN;
                let cert = Arc::new(cert);
                tx.send_modify(|state| {
                    let mut next = (**state).clone();
                    next.cert = Some(cert);
                    next.last_error = None;
                    next.issued += 1;
                    *state = Arc::new(next);
                });
            }
            Err(err) => {
                warn!(ca = %config.ca_address, error = %err, retry_in = ?retry, "cannot get a workload certificate");
                set_error(&tx, err.to_string());
                renew_at = tokio::time::Instant::now() + retry;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

fn set_error(tx: &watch::Sender<Arc<IdentityState>>, message: String) {
    tx.send_if_modified(|state| {
        if state.last_error.as_deref() == Some(message.as_str()) {
            return false;
        }
        let mut next = (**state).clone();
        next.last_error = Some(message);
        *state = Arc::new(next);
        true
    });
}

/// Reads the bundle file; `Some` only when its content changed and is valid.
fn read_bundle(
    path: &std::path::Path,
    last: &mut Option<Vec<u8>>,
) -> Result<Option<TrustBundle>, IdentityError> {
    let err = |reason: String| IdentityError::Bundle {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if last.as_ref() == Some(&text) {
        return Ok(None);
    }
    let bundle = TrustBundle::from_pem(&path.display().to_string(), &text)
        .map_err(|e| err(e.to_string()))?;
    *last = Some(text);
    Ok(Some(bundle))
}

/// One certificate request: a fresh key, its CSR, the token, the CA over TLS.
async fn fetch(
    config: &IdentityConfig,
    bundle: &TrustBundle,
) -> Result<WorkloadCert, IdentityError> {
    let token = tokio::fs::read_to_string(&config.token_file)
        .await
        .map_err(|e| IdentityError::Token {
            path: config.token_file.display().to_string(),
            reason: e.to_string(),
        })?;
    let key = WorkloadKey::generate()?;
    let csr = key.csr_pem(&config.id)?;
    let tls = channel::client_config(bundle, None)?;
    let channel = channel::connect(&config.ca_address, &config.server_name, tls).await?;
    let mut request = Request::new(IstioCertificateRequest {
        csr,
        validity_duration: config
            .lifetime
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        metadata: None,
    });
    let bearer = format!("Bearer {}", token.trim());
    let value = bearer.parse().map_err(|_| IdentityError::Token {
        path: config.token_file.display().to_string(),
        reason: "not a valid header value (control characters?)".to_string(),
    })?;
    request.metadata_mut().insert("authorization", value);
    let response = create_certificate(channel, request)
        .await
        .map_err(|status| IdentityError::Refused {
            code: status.code(),
            message: status.message().to_string(),
        })?;
    let cert = WorkloadCert::from_response(
        key,
        &response.into_inner().cert_chain,
        &config.id,
        &weft_identity::tls::provider(),
    )?;
    Ok(cert)
}
