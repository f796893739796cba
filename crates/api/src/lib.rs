//! Istio API types (`networking.istio.io`, `security.istio.io`, `telemetry.istio.io`), and Weft's
//! `ratelimit.weft.io` LocalRateLimit, with Istio's YAML field names, parsing of
//! multi-document YAML, and validation that reports every error with its field path.
//!
//! ```
//! let docs = weft_api::parse_documents(
//!     "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n\
//!      spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n",
//! );
//! assert!(docs[0].result.is_ok());
//! ```

pub mod crd;
mod de;
mod documents;
pub mod duration;
pub mod header_format;
pub mod host;
pub mod mesh;
pub mod meta;
pub mod networking;
pub mod object;
pub mod ratelimit;
pub mod schema;
pub mod security;
pub mod telemetry;
pub mod unsupported;
pub mod validation;

pub use de::quoted;
pub use duration::Duration;
pub use meta::ObjectMeta;
pub use object::{ConfigObject, DocumentError, Kind, ParsedDocument, Resource, parse_documents};
pub use validation::{FieldError, ValidationErrors};
