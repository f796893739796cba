//! RBAC `metadata` matchers over the `istio_authn` dynamic metadata, read from the request's verified JWT.
//!
//! ```text
//!  MetadataMatcher { filter: istio_authn, path: [key, claim...], value, invert }
//!    request.auth.principal ─► "<iss>/<sub>"     request.auth.presenter ─► azp
//!    request.auth.audiences ─► aud (string or list)
//!    request.auth.claims ─► the payload; further path keys walk into nested claims
//!  ValueMatcher: string │ list.one_of │ present │ bool │ double │ null │ or
//!    a claim may be a string or a list of strings: a string matcher matches any string of a
//!    list, a list matcher matches a string as a one-element list (the xDS contract)
//! ```

use serde_json::Value;

use crate::authn::AuthnResult;
use crate::config::StringMatch;

/// The metadata namespace the proxy's JWT filter produces (Istio's).
pub const ISTIO_AUTHN: &str = weft_xds::contract::ISTIO_AUTHN_METADATA;

/// The `istio_authn` keys the proxy produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataKey {
    Principal,
    Audiences,
    Presenter,
    Claims,
}

impl MetadataKey {
    pub fn parse(key: &str) -> Option<Self> {
        Some(match key {
            "request.auth.principal" => Self::Principal,
            "request.auth.audiences" => Self::Audiences,
            "request.auth.presenter" => Self::Presenter,
            "request.auth.claims" => Self::Claims,
            _ => return None,
        })
    }
}

/// A converted `MetadataMatcher` of the `istio_authn` namespace.
#[derive(Debug)]
pub struct MetadataMatch {
    pub key: MetadataKey,
    /// Keys inside the claims (only for [`MetadataKey::Claims`]).
    pub claim_path: Vec<String>,
    pub value: ValueMatch,
    pub invert: bool,
}

/// A converted `ValueMatcher`.
#[derive(Debug)]
pub enum ValueMatch {
    Null,
    Double(DoubleMatch),
    String(StringMatch),
    Bool(bool),
    Present(bool),
    /// `list_match.one_of`: some element of a list matches.
    ListOneOf(Box<ValueMatch>),
    Or(Vec<ValueMatch>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DoubleMatch {
    /// `[start, end)`.
    Range {
        start: f64,
        end: f64,
    },
    Exact(f64),
}

/// A metadata value, borrowed from the request's [`AuthnResult`].
#[derive(Debug, Clone, Copy)]
enum Found<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl MetadataMatch {
    /// Envoy: the value matcher's result (a missing value matches nothing), inverted on `invert`.
    pub fn matches(&self, authn: Option<&AuthnResult>) -> bool {
        let found = authn.and_then(|a| self.lookup(a));
        self.value.matches(found) != self.invert
    }

    fn lookup<'a>(&self, authn: &'a AuthnResult) -> Option<Found<'a>> {
        match self.key {
            MetadataKey::Principal => authn.principal.as_deref().map(Found::Str),
            MetadataKey::Presenter => authn.presenter.as_deref().map(Found::Str),
            MetadataKey::Audiences => authn.claims.get("aud").map(Found::Json),
            MetadataKey::Claims => {
                let mut value = &authn.claims;
                for key in &self.claim_path {
                    value = value.get(key.as_str())?;
                }
                Some(Found::Json(value))
            }
        }
    }
}

impl ValueMatch {
    fn matches(&self, found: Option<Found<'_>>) -> bool {
        let Some(found) = found else {
            return false;
        };
        match self {
            Self::Present(p) => *p,
            Self::Or(any) => any.iter().any(|m| m.matches(Some(found))),
            Self::String(s) => match found {
                Found::Str(v) => s.matches(v),
                Found::Json(Value::String(v)) => s.matches(v),
                Found::Json(Value::Array(items)) => items
                    .iter()
                    .any(|i| i.as_str().is_some_and(|v| s.matches(v))),
                Found::Json(_) => false,
            },
            Self::ListOneOf(inner) => match found {
                Found::Json(Value::Array(items)) => {
                    items.iter().any(|i| inner.matches(Some(Found::Json(i))))
                }
                Found::Str(_) | Found::Json(Value::String(_)) => inner.matches(Some(found)),
                Found::Json(_) => false,
            },
            Self::Null => matches!(found, Found::Json(Value::Null)),
            Self::Bool(b) => matches!(found, Found::Json(Value::Bool(v)) if v == b),
            Self::Double(d) => match found {
                Found::Json(Value::Number(n)) => n.as_f64().is_some_and(|v| d.matches(v)),
                _ => false,
            },
        }
    }
}

impl DoubleMatch {
    fn matches(&self, v: f64) -> bool {
        match *self {
            Self::Range { start, end } => start <= v && v < end,
            Self::Exact(x) => v == x,
        }
    }
}
