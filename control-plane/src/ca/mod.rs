//! The certificate authority: Istio's CA API (`IstioCertificateService/CreateCertificate`)
//! on 15012, issuing X.509 SVIDs to callers for exactly the identity their token proves.
//!
//! ```text
//!  proxy ─TLS 15012─► server.rs (TLS accept, peer certificate) ─► CaService::create_certificate
//!                        bearer token ─► auth.rs (TokenReview | bootstrap tokens) ─► SpiffeId
//!                        CSR + SpiffeId ─► weft_identity::CertificateAuthority::sign ─► chain
//!  store.rs   the CA's key material: directory | Secrets | memory, reloaded on change
//!  publish.rs the trust bundle as the `istio-ca-root-cert` ConfigMap of every namespace
//!  metrics.rs istiod's citadel_server_* metrics: counters, and the expiry of the CA in use
//! ```

pub mod auth;
mod metrics;
pub mod publish;
pub mod server;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};
use weft_identity::CertificateAuthority;
use weft_identity::ca_api::{
    CertificateService, IstioCertificateRequest, IstioCertificateResponse,
};

pub use auth::{AuthError, Authenticator};
pub use server::PeerInfo;
pub use store::{CaStore, StoreError};

/// What the CA issues.
#[derive(Debug, Clone)]
pub struct CaSettings {
    pub trust_domain: String,
    /// Lifetime when the caller asks for none.
    pub default_lifetime: Duration,
    /// The longest lifetime a caller may ask for.
    pub max_lifetime: Duration,
}

/// Certificates issued and requests refused since start (`/debug/ca`, and `/metrics` under
/// istiod's `citadel_server_*` names).
#[derive(Debug, Default)]
pub struct CaStats {
    pub issued: AtomicU64,
    pub refused: AtomicU64,
    /// Refused for their credentials: no token, a bad or expired one, or the token reviewer
    /// unavailable.
    pub unauthenticated: AtomicU64,
    /// Refused because the CSR's identity is not the caller's.
    pub identity_mismatch: AtomicU64,
    /// Refused as invalid: the CSR or the lifetime asked for.
    pub invalid: AtomicU64,
    /// Signing failed.
    pub sign_failed: AtomicU64,
}

impl CaStats {
    /// Counts one refusal, by the status it was answered with.
    fn refused(&self, status: &Status) {
        self.refused.fetch_add(1, Relaxed);
        let kind = match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::Unavailable => &self.unauthenticated,
            tonic::Code::PermissionDenied => &self.identity_mismatch,
            tonic::Code::Internal => &self.sign_failed,
            _ => &self.invalid,
        };
        kind.fetch_add(1, Relaxed);
    }
}

/// The gRPC handler: authenticate, then sign.
pub struct CaService {
    ca: watch::Receiver<Arc<CertificateAuthority>>,
    auth: Authenticator,
    settings: CaSettings,
    stats: Arc<CaStats>,
}

impl CaService {
    pub fn new(
        ca: watch::Receiver<Arc<CertificateAuthority>>,
        auth: Authenticator,
        settings: CaSettings,
    ) -> Self {
        Self {
            ca,
            auth,
            settings,
            stats: Arc::default(),
        }
    }

    /// What the service issues.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// The service's counters.
    pub fn stats(&self) -> Arc<CaStats> {
        self.stats.clone()
    }

    /// Registers istiod's CA metrics (`citadel_server_*`): the counters, and the expiry of
    /// the CA in use, both read at each scrape.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(metrics::CaMetrics {
            stats: self.stats.clone(),
            ca: self.ca.clone(),
        }));
    }

    async fn issue(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<IstioCertificateResponse, Status> {
        let token = bearer(&request)
            .ok_or_else(|| Status::unauthenticated(AuthError::NoToken.to_string()))?;
        let identity = self
            .auth
            .authenticate(token, &self.settings.trust_domain)
            .await
            .map_err(|err| match err {
                AuthError::Unavailable(_) => Status::unavailable(err.to_string()),
                other => Status::unauthenticated(other.to_string()),
            })?;
        let message = request.into_inner();
        let lifetime = match message.validity_duration {
            0 => self.settings.default_lifetime,
            seconds if seconds < 0 => {
                return Err(Status::invalid_argument(format!(
                    "validity_duration {seconds} is negative"
                )));
            }
            seconds => {
                let asked = Duration::from_secs(seconds.unsigned_abs());
                if asked > self.settings.max_lifetime {
                    return Err(Status::invalid_argument(format!(
                        "validity_duration {asked:?} is longer than the maximum {:?} (--max-workload-cert-ttl)",
                        self.settings.max_lifetime
                    )));
                }
                asked
            }
        };
        let ca = self.ca.borrow().clone();
        let chain = ca
            .sign(&message.csr, &identity, lifetime)
            .map_err(|err| match err {
                weft_identity::SignError::IdentityMismatch { .. } => {
                    Status::permission_denied(err.to_string())
                }
                weft_identity::SignError::Sign(_) => Status::internal(err.to_string()),
                other => Status::invalid_argument(other.to_string()),
            })?;
        let leaf = weft_identity::cert::certs_from_pem("leaf", chain[0].as_bytes())
            .ok()
            .and_then(|certs| weft_identity::CertInfo::parse("leaf", &certs[0]).ok());
        if let Some(leaf) = leaf {
            info!(identity = %identity, serial = %leaf.serial, lifetime = ?lifetime, "issued a workload certificate");
        }
        Ok(IstioCertificateResponse { cert_chain: chain })
    }
}

impl CertificateService for CaService {
    fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Response<IstioCertificateResponse>, Status>>
                + Send,
        >,
    > {
        let this = Self {
            ca: self.ca.clone(),
            auth: self.auth.clone(),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
        };
        Box::pin(async move {
            let peer: Option<SocketAddr> = request
                .extensions()
                .get::<PeerInfo>()
                .and_then(|peer| peer.remote);
            match this.issue(request).await {
                Ok(response) => {
                    this.stats.issued.fetch_add(1, Relaxed);
                    Ok(Response::new(response))
                }
                Err(status) => {
                    this.stats.refused(&status);
                    warn!(
                        peer = ?peer,
                        code = ?status.code(),
                        reason = %status.message(),
                        "refused a certificate request"
                    );
                    Err(status)
                }
            }
        })
    }
}

/// The running CA: its current key material, the 15012 TLS configuration, the gRPC handler,
/// and the tasks that keep them current.
pub struct CaRuntime {
    pub ca: watch::Receiver<Arc<CertificateAuthority>>,
    pub tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    /// The controller's serving certificate (also the webhooks', unless an operator gave one).
    pub serving_key: watch::Receiver<Arc<rustls::sign::CertifiedKey>>,
    pub service: CaService,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Why the CA could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaStartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot issue the controller's TLS certificate: {0}")]
    Tls(String),
}

/// Loads (or creates) the CA, starts its reloads, its TLS configuration for 15012 and, in
/// Kubernetes, the trust-bundle ConfigMaps.
pub async fn start(
    args: &crate::Args,
    kube: Option<kube::Client>,
) -> Result<CaRuntime, CaStartError> {
    let (store, auth) = match &kube {
        Some(client) => (
            CaStore::Kube {
                client: client.clone(),
                namespace: args.namespace.clone(),
            },
            Authenticator::Kube {
                client: client.clone(),
                audience: args.ca_token_audience.clone(),
            },
        ),
        None => (
            args.ca_dir.clone().map_or(CaStore::Memory, CaStore::Dir),
            Authenticator::LocalTokens {
                dir: args.ca_token_dir.clone(),
            },
        ),
    };
    info!(store = ?store, authenticator = ?auth, trust_domain = %args.trust_domain, "starting the CA");
    let ca = store.load(&args.trust_domain).await?;
    let (tx, rx) = watch::channel(ca);
    let mut tasks: Vec<_> = store.spawn_reload(tx).into_iter().collect();
    let (tls, task) =
        server::spawn_tls_configs(rx.clone(), server::server_dns_names(&args.namespace))
            .map_err(CaStartError::Tls)?;
    tasks.push(task);
    if let Some(client) = kube {
        tasks.push(publish::spawn(
            client,
            rx.clone(),
            args.watch_namespace.clone(),
        ));
    }
    let settings = CaSettings {
        trust_domain: args.trust_domain.clone(),
        default_lifetime: args.workload_cert_ttl,
        max_lifetime: args.max_workload_cert_ttl,
    };
    Ok(CaRuntime {
        service: CaService::new(rx.clone(), auth, settings),
        ca: rx,
        tls: tls.configs,
        serving_key: tls.keys,
        tasks,
    })
}

/// The `/debug/ca` view: the signing certificate, every root of the bundle, the settings and
/// the counters.
pub fn describe(
    ca: &CertificateAuthority,
    settings: &CaSettings,
    stats: &CaStats,
) -> serde_json::Value {
    let cert = |info: &weft_identity::CertInfo| {
        serde_json::json!({
            "subject": info.subject,
            "issuer": info.issuer,
            "serial": info.serial,
            "notBefore": info.not_before.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "notAfter": info.not_after.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    };
    serde_json::json!({
        "trustDomain": settings.trust_domain,
        "defaultLifetimeSeconds": settings.default_lifetime.as_secs(),
        "maxLifetimeSeconds": settings.max_lifetime.as_secs(),
        "signer": cert(ca.ca_info()),
        "roots": ca.trust_bundle().infos().iter().map(cert).collect::<Vec<_>>(),
        "issued": stats.issued.load(Relaxed),
        "refused": stats.refused.load(Relaxed),
    })
}

/// The token of `authorization: Bearer <token>`.
fn bearer<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests;
