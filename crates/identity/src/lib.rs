//! weft-identity: workload identity for the mesh, with no I/O but files.
//!
//! ```text
//!  spiffe     SpiffeId: spiffe://<trust domain>/ns/<namespace>/sa/<service account>
//!  cert       PEM in, CertInfo (serial, SANs, validity) out; TrustBundle (one or more roots)
//!  authority  CaMaterial (Istio's cacerts layout, self-signed on first start) ─► CertificateAuthority::sign(CSR, identity)
//!  workload   WorkloadKey (made and kept in the proxy) ─► CSR ─► WorkloadCert (checked CA response)
//!  verify     SpiffeServerVerifier: chain to the bundle + expected URI SANs (rustls)
//!  tls        rustls client/server configs for mutual TLS between workloads
//!  ca_api     Istio's CA API (istio.v1.auth.IstioCertificateService) wire types and gRPC glue
//! ```

pub mod authority;
pub mod ca_api;
pub mod cert;
pub mod spiffe;
pub mod tls;
pub mod verify;
pub mod workload;

pub use authority::{CaError, CaMaterial, CertificateAuthority, SignError};
pub use cert::{CertError, CertInfo, TrustBundle};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use verify::SpiffeServerVerifier;
pub use workload::{WorkloadCert, WorkloadError, WorkloadKey};
