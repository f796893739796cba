//! A provider's JWKS keys, and one token checked against a provider: issuer, time, audiences, signature.
//!
//! ```text
//!  JWKS text ─► [Key { kid, alg, DecodingKey }] (unusable keys left out, logged)
//!  token ─► header + claims (decoded, not trusted yet) ─► iss = provider's issuer
//!        ─► exp/nbf ± clock skew ─► aud ∩ audiences ─► signature by a key whose kid/alg fit
//!        ─► AuthnResult
//! ```

use std::fmt;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use super::config::{Provider, normalize_audience};
use super::{AuthnResult, JwtError};

/// The verification keys of a provider.
pub(crate) struct Keys {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

impl fmt::Debug for Keys {
    // Key material stays out of logs and dumps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.alg)))
            .finish()
    }
}

impl Keys {
    /// The usable keys of a JWKS. Like Envoy, a JWKS that cannot be read is not a config
    /// error: the provider has no key and its tokens fail.
    pub fn parse(provider: &str, jwks: &str) -> Self {
        let set: JwkSet = match serde_json::from_str(jwks) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(provider, error = %e, "invalid JWKS: tokens of this provider will fail");
                return Self { keys: Vec::new() };
            }
        };
        let mut keys = Vec::with_capacity(set.keys.len());
        for (i, jwk) in set.keys.iter().enumerate() {
            let alg = match jwk.common.key_algorithm.map(Algorithm::try_from) {
                None => None,
                Some(Ok(alg)) => Some(alg),
                Some(Err(_)) => {
                    tracing::warn!(
                        provider,
                        key = i,
                        "JWKS key with an unsupported alg: left out"
                    );
                    continue;
                }
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    family: key.family(),
                    key,
                }),
                Err(e) => {
                    tracing::warn!(provider, key = i, error = %e, "unusable JWKS key: left out");
                }
            }
        }
        Self { keys }
    }
}

/// The `iss` claim of a token, read without verifying anything (to pick its provider).
pub(super) fn issuer(token: &str) -> Result<String, JwtError> {
    let claims = claims(token)?;
    Ok(claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string())
}

fn claims(token: &str) -> Result<Value, JwtError> {
    if token.split('.').count() != 3 {
        return Err(JwtError::Malformed(
            "not in the form Header.Payload.Signature".into(),
        ));
    }
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| JwtError::Malformed(format!("payload: {e}")))?;
    if !claims.is_object() {
        return Err(JwtError::Malformed("payload is not a JSON object".into()));
    }
    Ok(claims)
}

/// Checks `token` against provider `p` (with `audiences` in place of the provider's) at unix
/// time `now`; returns what it proves.
pub(super) fn verify(
    p: &Provider,
    token: &str,
    audiences: Option<&[String]>,
    now: u64,
) -> Result<AuthnResult, JwtError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    let claims = claims(token)?;
    let str_claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    let iss = str_claim("iss");
    if !p.issuer.is_empty() && iss != p.issuer {
        return Err(JwtError::UnknownIssuer(iss.to_string()));
    }
    if let Some(exp) = time_claim(&claims, "exp")?
        && exp != 0
        && exp.saturating_add(p.clock_skew) < now
    {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = time_claim(&claims, "nbf")?
        && nbf > now.saturating_add(p.clock_skew)
    {
        return Err(JwtError::NotYetValid);
    }
    let token_audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let allowed = audiences.unwrap_or(&p.audiences);
    if !allowed.is_empty()
        && !token_audiences
            .iter()
            .any(|a| allowed.iter().any(|x| x == normalize_audience(a)))
    {
        return Err(JwtError::AudienceNotAllowed);
    }
    check_signature(p, token, &header)?;
    let sub = str_claim("sub");
    Ok(AuthnResult {
        principal: (!iss.is_empty() && !sub.is_empty()).then(|| format!("{iss}/{sub}")),
        audiences: token_audiences,
        presenter: Some(str_claim("azp"))
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        claims,
    })
}

/// A NumericDate claim (seconds; fractions dropped); `None` when absent.
fn time_claim(claims: &Value, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(t as u64)),
            _ => Err(JwtError::Malformed(format!(
                "{name} is not a non-negative number"
            ))),
        },
    }
}

/// Envoy's key choice: every key whose `kid` (when both have one) and `alg` (when the key
/// has one) fit the token is tried.
fn check_signature(
    p: &Provider,
    token: &str,
    header: &jsonwebtoken::Header,
) -> Result<(), JwtError> {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return Err(JwtError::Malformed("no signature".into()));
    };
    let candidates = p.keys.keys.iter().filter(|k| {
        let kid_fits = match (&header.kid, &k.kid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        kid_fits && k.alg.is_none_or(|a| a == header.alg) && k.family == header.alg.family()
    });
    let mut tried = false;
    for key in candidates {
        tried = true;
        if matches!(
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, header.alg),
            Ok(true)
        ) {
            return Ok(());
        }
    }
    Err(if tried {
        JwtError::BadSignature
    } else {
        JwtError::NoMatchingKey
    })
}
