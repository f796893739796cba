//! Authorization: Envoy's RBAC filter (HTTP `envoy.filters.http.rbac` and network
//! `envoy.filters.network.rbac`) as one engine, converted once and evaluated per request.
//!
//! ```text
//!  envoy RBAC (http | network) ─TryFrom (convert.rs)─► Rbac { action, policies: [(name, Policy)] by name }
//!     Policy { permissions: any of [Permission], principals: any of [Principal] }   (rules.rs)
//!        header/:authority/:method/:path ─► config::HeaderMatch (route matchers, reused)
//!        url_path, authenticated, requested_server_name ─► config::StringMatch
//!        uri_template ─► one regex compiled at conversion (uri_template.rs)
//!        metadata istio_authn ─► the request's AuthnResult (metadata.rs)
//!  Rbac::evaluate(&Facts { request?, conn, authn? }) ─► Decision (no allocation)
//!     DENY: a matching policy denies │ ALLOW: no matching policy denies │ LOG: never denies,
//!     the matching policy is marked for the access log (AuditMark)
//! ```
//!
//! To evaluate a request from another crate's tests:
//!
//! ```no_run
//! # fn demo(rules: envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac)
//! # -> Result<(), weft_proxy::config::Reason> {
//! use weft_proxy::authz::{ConnFacts, Facts, Rbac};
//! let rbac = Rbac::try_from(rules)?;
//! let req = http::Request::get("http://reviews:9080/api?x=1").body(()).unwrap();
//! let conn = ConnFacts {
//!     peer: "10.0.0.1:40000".parse().unwrap(),
//!     local: "10.0.0.2:9080".parse().unwrap(),
//!     principal: Some("spiffe://cluster.local/ns/default/sa/productpage"),
//!     sni: None,
//! };
//! let decision = rbac.evaluate(&Facts::http(&req, conn, None));
//! assert!(!decision.is_denied());
//! # Ok(()) }
//! ```

mod convert;
pub(crate) use convert::cidr;
mod metadata;
mod rules;
mod uri_template;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use metadata::{DoubleMatch, ISTIO_AUTHN, MetadataKey, MetadataMatch, ValueMatch};
pub use rules::{Cidr, Permission, Principal};
pub use uri_template::UriTemplate;

use crate::authn::AuthnResult;
use crate::http::router::RequestView;

/// What the filter does with a request that a policy matches (`rules.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Only requests that some policy matches pass.
    Allow,
    /// Requests that some policy matches are denied.
    Deny,
    /// Nothing is denied; a matching policy is recorded for the access log.
    Log,
}

/// One RBAC filter's rules, converted.
#[derive(Debug)]
pub struct Rbac {
    pub action: Action,
    /// Sorted by name (Envoy keeps them in an ordered map): the first match is reported.
    pub policies: Vec<(Arc<str>, Policy)>,
}

/// A policy matches when any permission and any principal match.
#[derive(Debug)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

/// What a connection tells about its peer, borrowed for one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts<'a> {
    /// The direct remote address (also the "remote" one: `x-forwarded-for` is not trusted,
    /// Envoy's default with `num_trusted_hops: 0`).
    pub peer: SocketAddr,
    /// The local (destination) address of the connection.
    pub local: SocketAddr,
    /// The peer's SPIFFE identity from mTLS; `None` for plaintext.
    pub principal: Option<&'a str>,
    /// The TLS server name the client asked for.
    pub sni: Option<&'a str>,
}

/// Everything a policy can look at, borrowed from the request and its connection.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The HTTP request; `None` for a network (L4) evaluation, where header, url_path,
    /// uri_template and metadata rules never match.
    pub request: Option<RequestView<'a>>,
    pub conn: ConnFacts<'a>,
    /// The request's verified JWT (the `istio_authn` metadata); `None` without a token.
    pub authn: Option<&'a AuthnResult>,
}

impl<'a> Facts<'a> {
    /// The facts of an HTTP request (its method, `:authority`, path and headers).
    pub fn http<B>(
        req: &'a http::Request<B>,
        conn: ConnFacts<'a>,
        authn: Option<&'a AuthnResult>,
    ) -> Self {
        Self {
            request: Some(crate::http::request_view(req)),
            conn,
            authn,
        }
    }

    /// The facts of a connection without a request (network RBAC).
    pub fn network(conn: ConnFacts<'a>) -> Self {
        Self {
            request: None,
            conn,
            authn: None,
        }
    }

    /// The remote IP (the direct peer: forwarded addresses are not trusted).
    fn remote_ip(&self) -> IpAddr {
        self.conn.peer.ip()
    }
}

/// The outcome of one RBAC filter for a request; names the policy that decided, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'r> {
    Allow {
        policy: Option<&'r Arc<str>>,
    },
    Deny {
        policy: Option<&'r Arc<str>>,
    },
    /// A LOG filter's policy matched: the request passes and is marked for the access log.
    Audit {
        policy: &'r Arc<str>,
    },
}

impl Decision<'_> {
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Deny { .. })
    }

    /// The policy that matched, if one did.
    pub fn policy(&self) -> Option<&str> {
        match self {
            Self::Allow { policy } | Self::Deny { policy } => policy.map(|p| &**p),
            Self::Audit { policy } => Some(policy),
        }
    }
}

/// Kept in a request's extensions when a LOG (Istio AUDIT) policy matched it: the policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditMark(pub Arc<str>);

impl Rbac {
    /// Envoy's RBAC decision for `facts`.
    pub fn evaluate<'r>(&'r self, facts: &Facts<'_>) -> Decision<'r> {
        let matched = self
            .policies
            .iter()
            .find(|(_, p)| p.matches(facts))
            .map(|(name, _)| name);
        match (self.action, matched) {
            (Action::Allow, policy @ Some(_)) => Decision::Allow { policy },
            (Action::Allow, None) => Decision::Deny { policy: None },
            (Action::Deny, policy @ Some(_)) => Decision::Deny { policy },
            (Action::Deny | Action::Log, None) => Decision::Allow { policy: None },
            (Action::Log, Some(policy)) => Decision::Audit { policy },
        }
    }
}

impl Policy {
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(facts))
            && self.principals.iter().any(|p| p.matches(facts))
    }
}

#[cfg(test)]
mod convert_tests;
#[cfg(test)]
mod eval_tests;
#[cfg(test)]
pub(crate) mod test_support;
