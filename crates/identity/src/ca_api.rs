//! Istio's CA API, `istio.v1.auth.IstioCertificateService/CreateCertificate`
//! (istio/api `security/v1alpha1/ca.proto`): the wire messages and hand-written gRPC glue
//! for both sides.
//!
//! Written by hand rather than generated: the service has one unary method and two messages
//! of three fields, and generating them would need `protoc` (or a vendored proto) at build
//! time. `tests/ca_proto.rs` checks the field numbers and types against Istio's proto.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{Body, StdError, http};
use tonic::{Request, Response, Status};

/// The gRPC service name.
pub const SERVICE: &str = "istio.v1.auth.IstioCertificateService";
/// The method's path.
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// `istio.v1.auth.IstioCertificateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded certificate request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested validity in seconds (0: the CA's default).
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque metadata from the node (WorkloadName, WorkloadIP, ClusterID).
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<prost_types::Struct>,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM certificates: the leaf first, the root last.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

/// Calls `CreateCertificate` on `channel` (any tonic transport: TLS, in-memory, …).
pub async fn create_certificate<T>(
    channel: T,
    request: Request<IstioCertificateRequest>,
) -> Result<Response<IstioCertificateResponse>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(format!("CA not reachable: {}", err.into())))?;
    let path = http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE);
    grpc.unary(request, path, tonic_prost::ProstCodec::default())
        .await
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the server side implements: authenticate the caller, sign its CSR.
pub trait CertificateService: Send + Sync + 'static {
    fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> BoxFuture<Result<Response<IstioCertificateResponse>, Status>>;
}

/// A tonic service serving [`CertificateService`] (add it to a `tonic::transport::Server`).
pub struct CertificateServer<S> {
    inner: Arc<S>,
}

impl<S> CertificateServer<S> {
    pub fn new(inner: Arc<S>) -> Self {
        Self { inner }
    }
}

impl<S> Clone for CertificateServer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> tonic::server::NamedService for CertificateServer<S> {
    const NAME: &'static str = SERVICE;
}

struct Unary<S>(Arc<S>);

impl<S: CertificateService> tonic::server::UnaryService<IstioCertificateRequest> for Unary<S> {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<Result<Response<IstioCertificateResponse>, Status>>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        self.0.create_certificate(request)
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for CertificateServer<S>
where
    S: CertificateService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CREATE_CERTIFICATE {
            return Box::pin(async {
                Ok(Status::unimplemented("unknown method of IstioCertificateService").into_http())
            });
        }
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Unary(inner), request).await)
        })
    }
}
