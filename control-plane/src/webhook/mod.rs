//! The admission webhooks: HTTPS (rustls, ring) on `--webhook-address`, `POST /validate`
//! with an `admission.k8s.io/v1` AdmissionReview, `POST /inject` for sidecar injection
//! ([`crate::injection`]), `GET /ready`.
//!
//! The decision ([`review`]) is a pure function. CREATE and UPDATE of a kind weft-api
//! models are decoded and validated exactly as the sources do; an invalid object is denied
//! with `status.code` 400 and a `status.message` of one `field.path: reason` line per
//! error. DELETE (and CONNECT) are always allowed, and so are kinds weft-api does not
//! model: the ValidatingWebhookConfiguration decides what is sent here.
//!
//! Around it: [`tls`] keeps the serving certificate current (the CA's, or an operator's
//! files), [`ca_bundle`] keeps the API server trusting it, by writing the CA's roots into
//! the `caBundle` of the webhook configurations named on the command line, and [`metrics`]
//! counts every call by outcome (istiod's `galley_validation_*` and `sidecar_injection_*`)
//! and times it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::StatusSummary;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use weft_api::DocumentError;
use weft_injector::InjectConfig;
use weft_net::{Accepted, BoundedListener};

pub mod ca_bundle;
pub mod metrics;
pub mod tls;

use crate::injection::{INJECT_PATH, InjectionOutcome};
use crate::source::kube::{error_lines, parse_object};
use metrics::{FailureReason, ValidationOutcome, Webhook, WebhookMetrics};

/// The path the API server posts AdmissionReviews to.
pub const VALIDATE_PATH: &str = "/validate";

/// Largest AdmissionReview accepted (the API server's own request limit is 3 MiB; an
/// UPDATE review carries the object twice).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Request bytes all connections together may hold while their bodies are read: a slow
/// client holds at most its declared length, and waits (within [`BODY_READ_TIMEOUT`])
/// when the budget is spent, so memory stays bounded however many connections there are.
pub const BODY_BUDGET: usize = 64 * 1024 * 1024;

/// Time to receive a whole request body (the API server's default webhook timeout).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read webhook certificate {}: {source}", path.display())]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("webhook certificate {} holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("cannot read webhook key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("invalid webhook certificate or key: {0}")]
    Tls(#[from] rustls::Error),
    #[error(
        "--injector-webhook-config and --validator-webhook-config write the CA's roots into the webhooks' caBundle: they need --webhook-cert-from-ca (with --webhook-cert, set the caBundle yourself)"
    )]
    PatchNeedsCaCert,
    #[error("cannot listen for the webhook on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The admission decision for one review, and how it counts.
#[derive(Debug)]
pub struct Validated {
    pub response: AdmissionResponse,
    pub outcome: ValidationOutcome,
}

/// The admission decision for one review.
pub fn review(review: &AdmissionReview<DynamicObject>) -> Validated {
    let failed = |response, reason| Validated {
        response,
        outcome: ValidationOutcome::Failed(reason),
    };
    let Some(request) = &review.request else {
        return failed(
            AdmissionResponse::invalid("the AdmissionReview has no request"),
            FailureReason::YamlDecodeError,
        );
    };
    let mut response = AdmissionResponse::from(request);
    response.types = review.types.clone();
    if response.types.api_version.is_empty() {
        response.types.api_version = kube::core::admission::META_API_VERSION_V1.to_string();
        response.types.kind = kube::core::admission::META_KIND.to_string();
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        // Allowed; counted as istiod does.
        return failed(response, FailureReason::UnsupportedOperation);
    }
    let Some(object) = &request.object else {
        return failed(
            deny(response, vec!["request.object is missing".to_string()]),
            FailureReason::YamlDecodeError,
        );
    };
    let kind = &request.kind;
    let api_version = if kind.group.is_empty() {
        kind.version.clone()
    } else {
        format!("{}/{}", kind.group, kind.version)
    };
    match parse_object(
        object,
        &api_version,
        &kind.kind,
        request.namespace.as_deref(),
    ) {
        Ok(_) | Err(DocumentError::Unsupported { .. }) => Validated {
            response,
            outcome: ValidationOutcome::Passed,
        },
        Err(err) => failed(
            deny(response, error_lines(&err)),
            FailureReason::InvalidResource,
        ),
    }
}

fn deny(response: AdmissionResponse, lines: Vec<String>) -> AdmissionResponse {
    let mut response = response.deny(lines.join("\n"));
    response.result.code = 400;
    response.result.reason = "BadRequest".to_string();
    response.result.status = Some(StatusSummary::Failure);
    response
}

/// Answers one HTTP request (the TLS and HTTP layers are in [`serve`]) and counts it in
/// `metrics` (except its duration, which [`serve`] records).
pub fn handle(
    method: &Method,
    path: &str,
    body: &[u8],
    inject: &InjectConfig,
    metrics: &WebhookMetrics,
) -> Response<Full<Bytes>> {
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/ready") => text(StatusCode::OK, "ready\n"),
        (&Method::POST, INJECT_PATH) => {
            let parsed = match decode(body) {
                Ok(parsed) => parsed,
                Err(err) => {
                    metrics.injection(InjectionOutcome::Failed);
                    return undecodable(&err);
                }
            };
            let answer = crate::injection::review(&parsed, inject);
            metrics.injection(answer.outcome);
            let response = match answer.refusal {
                None => answer.response,
                Some(lines) => deny(answer.response, lines),
            };
            json_reply(response.into_review())
        }
        (&Method::POST, VALIDATE_PATH) => {
            let parsed = match decode(body) {
                Ok(parsed) => parsed,
                Err(err) => {
                    let malformed = ValidationOutcome::Failed(FailureReason::YamlDecodeError);
                    metrics.validated(None, malformed);
                    let reply = undecodable(&err);
                    metrics.validation_http_error(reply.status());
                    return reply;
                }
            };
            let Validated { response, outcome } = review(&parsed);
            metrics.validated(parsed.request.as_ref().map(|r| &r.resource), outcome);
            if let Some(request) = &parsed.request {
                debug!(
                    uid = %request.uid,
                    kind = %request.kind.kind,
                    namespace = request.namespace.as_deref().unwrap_or_default(),
                    name = %request.name,
                    operation = ?request.operation,
                    allowed = response.allowed,
                    "admission review"
                );
                if !response.allowed {
                    info!(
                        kind = %request.kind.kind,
                        namespace = request.namespace.as_deref().unwrap_or_default(),
                        name = %request.name,
                        "denied: {}",
                        response.result.message.replace('\n', "; ")
                    );
                }
            }
            json_reply(response.into_review())
        }
        (_, "/ready" | VALIDATE_PATH | INJECT_PATH) => {
            let reply = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            if let Some(webhook) = Webhook::of(path) {
                metrics.http_error(webhook, reply.status());
            }
            reply
        }
        (_, path) => text(StatusCode::NOT_FOUND, &format!("no endpoint {path}\n")),
    }
}

/// The AdmissionReview of a request body.
fn decode(body: &[u8]) -> Result<AdmissionReview<DynamicObject>, serde_json::Error> {
    serde_json::from_slice(body)
        .inspect_err(|err| warn!(error = %err, "webhook: cannot decode the AdmissionReview"))
}

/// The reply to a body that is not an AdmissionReview.
fn undecodable(err: &serde_json::Error) -> Response<Full<Bytes>> {
    text(
        StatusCode::BAD_REQUEST,
        &format!("cannot decode the AdmissionReview: {err}\n"),
    )
}

fn json_reply(review: AdmissionReview<DynamicObject>) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&review).unwrap_or_default();
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Binds the webhook's listener.
pub fn bind(address: SocketAddr) -> Result<TcpListener, WebhookError> {
    crate::listen::bind(address).map_err(|source| WebhookError::Bind { address, source })
}

/// Serves the webhook on `listener` until the task is dropped.
pub async fn serve(
    mut listener: BoundedListener,
    acceptor: TlsAcceptor,
    header_read_timeout: Option<Duration>,
    inject: Arc<InjectConfig>,
    metrics: Arc<WebhookMetrics>,
) {
    let budget = Arc::new(Semaphore::new(BODY_BUDGET));
    loop {
        let Accepted { io, peer } = listener.accept().await;
        let acceptor = acceptor.clone();
        let budget = budget.clone();
        let inject = inject.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%peer, error = %err, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |request: Request<Incoming>| {
                let (budget, inject, metrics) = (budget.clone(), inject.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(respond(request, &budget, &inject, &metrics).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            if let Err(err) = builder.serve_connection(TokioIo::new(tls), service).await {
                debug!(%peer, error = %err, "webhook connection ended with an error");
            }
        });
    }
}

/// Reads one request's body, answers it ([`handle`]), and counts and times it in `metrics`.
async fn respond<B>(
    request: Request<B>,
    budget: &Arc<Semaphore>,
    inject: &InjectConfig,
    metrics: &WebhookMetrics,
) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let webhook = Webhook::of(path);
    let reply = match read_body(&parts, body, budget).await {
        Ok(body) => handle(&parts.method, path, &body.bytes, inject, metrics),
        Err(reply) => {
            if let Some(webhook) = webhook {
                metrics.http_error(webhook, reply.status());
            }
            reply
        }
    };
    if let Some(webhook) = webhook {
        metrics.answered(webhook, started.elapsed());
    }
    reply
}

/// A request body and its share of [`BODY_BUDGET`], held until the reply is built.
struct Body {
    bytes: Bytes,
    _budget: OwnedSemaphorePermit,
}

/// Reads a request body within the webhook's limits: the declared length is checked
/// before a byte is read, the budget for it is reserved first, and the whole body must
/// arrive within [`BODY_READ_TIMEOUT`]. The `Err` is the reply to send.
async fn read_body<B>(
    parts: &hyper::http::request::Parts,
    body: B,
    budget: &Arc<Semaphore>,
) -> Result<Body, Response<Full<Bytes>>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {MAX_BODY} bytes\n"),
        ));
    }
    // Without a length (chunked), reserve the most a body may be.
    let reserve = declared.map_or(MAX_BODY, |length| length as usize).max(1);
    let read = async {
        let permits = u32::try_from(reserve).unwrap_or(u32::MAX);
        let Ok(permit) = budget.clone().acquire_many_owned(permits).await else {
            return Err(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook is stopping\n",
            ));
        };
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => Ok(Body {
                bytes: collected.to_bytes(),
                _budget: permit,
            }),
            Err(err) => Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read the request body: {err}\n"),
            )),
        }
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => {
            debug!("webhook: request body not received within {BODY_READ_TIMEOUT:?}");
            Err(text(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the request body did not arrive within {BODY_READ_TIMEOUT:?}\n"),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
