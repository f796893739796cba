//! RequestAuthentications in the model: each JWT rule with the key set the proxy validates
//! tokens with, inline (`jwks`) or fetched by the controller from `jwksUri` ([`crate::jwks`]).
//! A key set the controller does not have (fetch failed or not done yet, or no source at all)
//! becomes a set without keys, so tokens of that issuer are rejected (401), never accepted
//! unchecked; each such rule is reported.

use weft_api::security::{JwtRule, RequestAuthentication};

use super::Target;
use crate::jwks::JwksSet;
use crate::object::{ObjectKey, Warning};

/// A JWKS without keys: every token of its issuer fails verification.
pub const EMPTY_JWKS: &str = r#"{"keys":[]}"#;

/// One RequestAuthentication with its key sets resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuthenticationEntry {
    pub key: ObjectKey,
    pub target: Target,
    /// `spec.jwtRules`, in order.
    pub rules: Vec<JwtRuleEntry>,
}

/// One JWT rule and the JWKS text its provider carries inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRuleEntry {
    pub rule: JwtRule,
    pub jwks: String,
}

impl RequestAuthenticationEntry {
    /// The entry of one RequestAuthentication; the warnings name the rules whose keys the
    /// controller does not have.
    pub fn new(
        key: &ObjectKey,
        spec: &RequestAuthentication,
        fetched: &JwksSet,
    ) -> (Self, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut rules = Vec::new();
        for (index, rule) in spec.jwt_rules.iter().enumerate() {
            let path = format!("spec.jwtRules[{index}]");
            let issuer = rule.issuer.as_deref().unwrap_or_default();
            let rejected = format!("tokens from issuer {issuer:?} are rejected (401) until it is");
            let uri_field = if rule.jwks_uri.is_some() {
                "jwksUri"
            } else {
                "jwks_uri"
            };
            let jwks = match (&rule.jwks, rule.jwks_uri()) {
                (Some(inline), _) => inline.clone(),
                (None, Some(uri)) => match fetched.get(uri) {
                    Some(Ok(text)) => text.clone(),
                    Some(Err(reason)) => {
                        warnings.push(Warning::new(
                            key,
                            format!("{path}.{uri_field}"),
                            format!(
                                "cannot fetch the JWKS from {uri}: {reason}; {rejected} fetched"
                            ),
                        ));
                        EMPTY_JWKS.to_string()
                    }
                    None => {
                        warnings.push(Warning::new(
                            key,
                            format!("{path}.{uri_field}"),
                            format!("the JWKS from {uri} is not fetched yet; {rejected}"),
                        ));
                        EMPTY_JWKS.to_string()
                    }
                },
                (None, None) => {
                    warnings.push(Warning::new(
                        key,
                        path,
                        format!(
                            "neither jwks nor jwksUri is set, and finding the keys through the issuer's OpenID discovery is not supported yet; tokens from issuer {issuer:?} are rejected (401)"
                        ),
                    ));
                    EMPTY_JWKS.to_string()
                }
            };
            rules.push(JwtRuleEntry {
                rule: rule.clone(),
                jwks,
            });
        }
        let entry = Self {
            key: key.clone(),
            target: Target::of(
                spec.selector.as_ref(),
                spec.target_ref.as_ref(),
                &spec.target_refs,
            ),
            rules,
        };
        (entry, warnings)
    }
}
