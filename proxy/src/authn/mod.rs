//! Request authentication: Envoy's `envoy.filters.http.jwt_authn` filter (Istio's RequestAuthentication).
//!
//! ```text
//!  JwtAuthentication ─TryFrom (config.rs)─► JwtAuthn { providers, rules (match.prefix ─► Requirement) }
//!  authenticate(&mut Parts):
//!    CORS preflight (bypass_cors_preflight) │ no rule matches the path ─► pass, nothing verified
//!    output headers of the providers removed (a client cannot forge them)
//!    Requirement: provider │ requires_any [.., allow_missing │ allow_missing_or_failed] │ requires_all
//!      provider: tokens at its locations (extract.rs) ─► issuer = provider's ─► exp/nbf (clock skew)
//!                ─► audiences ─► signature against its JWKS (verify.rs, jsonwebtoken)
//!    ok ─► claim_to_headers, forward_payload_header, token stripped unless forward
//!        ─► AuthnResult { principal <iss>/<sub>, audiences, presenter, claims } (istio_authn metadata)
//!    failure ─► JwtError ─► 401 "Jwt verification fails", www-authenticate (error.rs)
//! ```

mod check;
mod config;
mod extract;
pub(crate) use extract::cookie;
mod verify;

use std::sync::Arc;

use http::HeaderValue;
use http::request::Parts;
use serde_json::Value;

pub use config::JwtAuthn;

/// What a verified JWT says about the request: Istio's `request.auth.*` attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthnResult {
    /// `<iss>/<sub>`; `None` when the token lacks either.
    pub principal: Option<String>,
    /// The `aud` claim (a string or a list of strings).
    pub audiences: Vec<String>,
    /// The `azp` claim.
    pub presenter: Option<String>,
    /// The whole payload.
    pub claims: Value,
}

/// Why a request's JWT was refused (Envoy's status texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("Jwt is missing")]
    Missing,
    #[error("Jwt is not valid: {0}")]
    Malformed(String),
    #[error("Jwt issuer {0:?} is not configured")]
    UnknownIssuer(String),
    #[error("Jwt is expired")]
    Expired,
    #[error("Jwt not yet valid")]
    NotYetValid,
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    NoMatchingKey,
    #[error("Jwt verification fails")]
    BadSignature,
}

/// Envoy's challenge for a refused request: `Bearer realm="<scheme>://<authority><path>"`, with
/// `error="invalid_token"` unless the token was missing. The path (with its query) is cut at
/// 256 bytes, as Envoy does.
pub fn challenge(parts: &Parts, error: &JwtError) -> HeaderValue {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut cut = path.len().min(256);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut value = format!("Bearer realm=\"{scheme}://{authority}{}\"", &path[..cut]);
    if *error != JwtError::Missing {
        value.push_str(", error=\"invalid_token\"");
    }
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// A verified token: what it proves and how to apply the provider's outputs.
#[derive(Debug)]
struct Verified {
    provider: usize,
    location: Arc<extract::Location>,
    /// The payload segment as sent (base64url, unpadded).
    payload_b64: String,
    result: AuthnResult,
}

#[cfg(test)]
mod tests;
