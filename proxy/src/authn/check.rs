//! Per request: the requirement of the first rule whose prefix matches, checked against the
//! request's tokens, then the providers' outputs applied.
//!
//! ```text
//!  Provider ─► its tokens (none: Missing) ─► each must verify
//!  Any      ─► the first child that passes; else the bypass (allow_missing: no token at the
//!              children's locations passes, a present one must verify with the provider of
//!              its issuer; allow_missing_or_failed: passes anyway); else the last failure
//!  All      ─► every child passes
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use http::request::Parts;
use serde_json::Value;

use super::config::{Bypass, JwtAuthn, Requirement};
use super::extract::Token;
use super::verify::{issuer, verify};
use super::{AuthnResult, JwtError, Verified};

impl JwtAuthn {
    /// Authenticates a request: `Ok(None)` when no rule applies or no token was needed and
    /// none was sent; `Ok(Some(..))` for a verified token (then its outputs are applied to
    /// `parts`: claim headers, payload header, token stripped unless `forward`); `Err` for a
    /// request to refuse with 401 (see [`super::challenge`]).
    pub fn authenticate(&self, parts: &mut Parts) -> Result<Option<AuthnResult>, JwtError> {
        if self.bypass_cors_preflight && is_cors_preflight(parts) {
            return Ok(None);
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let Some(rule) = self.rules.iter().find(|r| path.starts_with(&r.prefix)) else {
            return Ok(None);
        };
        for h in &self.output_headers {
            parts.headers.remove(h);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verified = self
            .check(&rule.requires, parts, now)
            .inspect_err(|e| tracing::debug!(reason = %e, "JWT authentication failed"))?;
        let mut first = None;
        for v in verified {
            self.apply(&v, parts);
            if first.is_none() {
                let mut result = v.result;
                split_space_delimited(
                    &mut result.claims,
                    &self.providers[v.provider].space_delimited_claims,
                );
                first = Some(result);
            }
        }
        Ok(first)
    }

    fn check(
        &self,
        requirement: &Requirement,
        parts: &Parts,
        now: u64,
    ) -> Result<Vec<Verified>, JwtError> {
        match requirement {
            Requirement::Pass => Ok(Vec::new()),
            Requirement::Provider { index, audiences } => {
                let mut tokens = Vec::new();
                for loc in &self.providers[*index].locations {
                    loc.extract(parts, &mut tokens);
                }
                if tokens.is_empty() {
                    return Err(JwtError::Missing);
                }
                tokens
                    .into_iter()
                    .map(|t| self.verify_with(*index, t, audiences.as_deref(), now))
                    .collect()
            }
            Requirement::All(all) => {
                let mut out = Vec::new();
                for r in all {
                    out.extend(self.check(r, parts, now)?);
                }
                Ok(out)
            }
            Requirement::Any { children, bypass } => {
                let mut last = Err(JwtError::Missing);
                for r in children {
                    last = self.check(r, parts, now);
                    if last.is_ok() {
                        return last;
                    }
                }
                match bypass {
                    Some(b) => self.check_bypass(b, parts, now),
                    None => last,
                }
            }
        }
    }

    /// allow_missing / allow_missing_or_failed inside requires_any: the tokens at the sibling
    /// providers' locations, each verified by the provider of its issuer that reads there.
    fn check_bypass(&self, b: &Bypass, parts: &Parts, now: u64) -> Result<Vec<Verified>, JwtError> {
        let mut out = Vec::new();
        for (loc, readers) in &b.locations {
            let mut tokens = Vec::new();
            loc.extract(parts, &mut tokens);
            for token in tokens {
                let verified = issuer(&token.value).and_then(|iss| {
                    let reader = readers.iter().copied().find(|&i| {
                        let p = &self.providers[i];
                        p.issuer.is_empty() || p.issuer == iss
                    });
                    match reader {
                        Some(i) => self.verify_with(i, token, None, now),
                        None => Err(JwtError::UnknownIssuer(iss)),
                    }
                });
                match verified {
                    Ok(v) => out.push(v),
                    Err(e) if b.allow_failed => {
                        tracing::debug!(reason = %e, "JWT ignored (allow_missing_or_failed)");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    fn verify_with(
        &self,
        provider: usize,
        token: Token,
        audiences: Option<&[String]>,
        now: u64,
    ) -> Result<Verified, JwtError> {
        let p = &self.providers[provider];
        let result = verify(p, &token.value, audiences, now).inspect_err(|e| {
            tracing::debug!(provider = %p.name, reason = %e, "JWT verification failed");
        })?;
        let payload_b64 = token.value.split('.').nth(1).unwrap_or("").to_string();
        Ok(Verified {
            provider,
            location: token.location,
            payload_b64,
            result,
        })
    }

    /// The provider's outputs for a verified token.
    fn apply(&self, v: &Verified, parts: &mut Parts) {
        let p = &self.providers[v.provider];
        if let Some(h) = &p.forward_payload_header
            && let Ok(value) = HeaderValue::try_from(v.payload_b64.as_str())
        {
            parts.headers.append(h.clone(), value);
        }
        for (header, path) in &p.claim_to_headers {
            let mut claim = &v.result.claims;
            let mut found = true;
            for key in path {
                match claim.get(key.as_str()) {
                    Some(c) => claim = c,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if let Some(value) = found.then(|| claim_text(claim)).flatten()
                && let Ok(value) = HeaderValue::try_from(value)
            {
                parts.headers.append(header.clone(), value);
            }
        }
        if !p.forward {
            v.location.strip(parts);
        }
    }
}

/// Envoy's `normalize_payload_in_metadata`: each named claim whose value is a string becomes
/// the list of its whitespace-separated words, for authorization policies to match one by one
/// (`scope: "read write"` → `["read", "write"]`). A name is a top-level claim, else (when no
/// claim has that name) a path into nested claims (`provider.login.scope`, Istio's example).
/// The headers a provider writes were made from the payload as the token has it.
fn split_space_delimited(claims: &mut Value, names: &[String]) {
    for name in names {
        let value = match claims.get(name.as_str()) {
            Some(_) => claims.get_mut(name.as_str()),
            None => name
                .split('.')
                .try_fold(&mut *claims, |value, key| value.get_mut(key)),
        };
        if let Some(value) = value
            && let Value::String(text) = value
        {
            let words = text
                .split_whitespace()
                .map(|w| Value::String(w.to_string()))
                .collect();
            *value = Value::Array(words);
        }
    }
}

/// A claim as a header value (Envoy: strings, integers or other numbers, booleans; nothing
/// for objects, lists and empty strings).
fn claim_text(claim: &Value) -> Option<String> {
    match claim {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 => {
                (f as u64).to_string()
            }
            _ => n.to_string(),
        }),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method` (Envoy's test).
fn is_cors_preflight(parts: &Parts) -> bool {
    let present = |name: &str| parts.headers.get(name).is_some_and(|v| !v.is_empty());
    parts.method == http::Method::OPTIONS
        && present("origin")
        && present("access-control-request-method")
}
