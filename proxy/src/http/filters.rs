//! Layer 0: the listener's HTTP filters before routing, in the HCM's order: JWT authentication,
//! RBAC, local rate limits.
//!
//! ```text
//!  request ─► jwt_authn: verify ─► AuthnResult (request extensions; the RBAC filters' metadata)
//!          │               └─ failure ─► ProxyError::JwtDenied (401, www-authenticate)
//!          ─► rbac*: Rbac::evaluate(Facts { request, connection, AuthnResult })
//!          │               ├─ deny ─► ProxyError::RbacDenied (403 "RBAC: access denied")
//!          │               └─ LOG policy matched ─► AuditMark (request extensions)
//!          ─► local_ratelimit*: rate_limit::check (a token from each bucket the request falls in)
//!          │               └─ none left ─► ProxyError::RateLimited (429 RL, x-envoy-ratelimited)
//!          ─► router
//! ```

use http::Request;

use super::{Downstream, rate_limit, request_view};
use crate::authn::{self, AuthnResult};
use crate::authz::{AuditMark, Decision, Facts};
use crate::config::HttpFilter;
use crate::error::ProxyError;

/// Runs `filters` on `req`; a denial is the error to answer with.
pub(super) fn run<B>(
    filters: &[HttpFilter],
    conn: &Downstream,
    mut req: Request<B>,
) -> Result<Request<B>, ProxyError> {
    let mut authn_result: Option<AuthnResult> = None;
    for filter in filters {
        match filter {
            HttpFilter::Jwt(jwt) => {
                let (mut parts, body) = req.into_parts();
                match jwt.authenticate(&mut parts) {
                    Ok(Some(result)) => authn_result = Some(result),
                    Ok(None) => {}
                    Err(error) => {
                        let challenge = authn::challenge(&parts, &error);
                        return Err(ProxyError::JwtDenied { error, challenge });
                    }
                }
                req = Request::from_parts(parts, body);
            }
            HttpFilter::Rbac(rbac) => {
                let facts = Facts::http(&req, conn.facts(), authn_result.as_ref());
                match rbac.evaluate(&facts) {
                    Decision::Deny { policy } => {
                        tracing::debug!(
                            policy = policy.map_or("none", |p| &**p),
                            peer = %conn.remote,
                            path = req.uri().path(),
                            "RBAC: access denied"
                        );
                        return Err(ProxyError::RbacDenied {
                            policy: policy.cloned(),
                        });
                    }
                    Decision::Audit { policy } => {
                        let mark = AuditMark(policy.clone());
                        req.extensions_mut().insert(mark);
                    }
                    Decision::Allow { .. } => {}
                }
            }
            HttpFilter::LocalRateLimit(limit) => rate_limit::check(limit, &request_view(&req))?,
        }
    }
    if let Some(result) = authn_result {
        req.extensions_mut().insert(result);
    }
    Ok(req)
}
