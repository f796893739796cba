//! `RequestAuthentication`: which request credentials (JWTs) a workload accepts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyTargetReference, check_min_duration, no_null_items, validate_policy_target};
use crate::de::{is_false, null_default};
use crate::duration::Duration;
use crate::networking::PolicyWorkloadSelector;
use crate::validation::{Check, FieldError, Path, Validate, check};

/// `spec` of a `RequestAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// The workloads the policy applies to; all workloads in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicyWorkloadSelector>,
    /// The resource the policy attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the policy attaches to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// How to validate JWTs; a request with an invalid token is rejected.
    #[serde(
        default,
        deserialize_with = "no_null_items",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 4096))]
    pub jwt_rules: Vec<JwtRule>,
}

/// How to validate the JWTs of one issuer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The token's issuer (`iss`); tokens of any issuer are accepted when unset (then
    /// `jwksUri` must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub issuer: Option<String>,
    /// Accepted audiences (`aud`); any when empty.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub audiences: Vec<String>,
    /// URL of the provider's public key set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub jwks_uri: Option<String>,
    /// The same as `jwksUri`, spelled as its proto field name (deprecated).
    #[serde(default, rename = "jwks_uri", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub jwks_uri_alias: Option<String>,
    /// The public key set inline (JWKS JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers the token is read from (default `Authorization: Bearer`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token is read from (default `access_token`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from_params: Vec<String>,
    /// Cookies the token is read from.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from_cookies: Vec<String>,
    /// Header the verified payload is written to (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Forward the original token upstream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_original_token: bool,
    /// Claims copied into request headers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Timeout of the JWKS fetch (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Claims whose string value is a space-separated list (`scope`, `permission` are by
    /// default), for matching single values in authorization policies.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64))]
    pub space_delimited_claims: Vec<String>,
}

impl JwtRule {
    /// The JWKS URL, written `jwksUri` or `jwks_uri`.
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref().or(self.jwks_uri_alias.as_deref())
    }
}

/// A header a token is read from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// Header name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Prefix before the token (e.g. `Bearer `).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// A claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Header name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub header: String,
    /// Claim name.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub claim: String,
}

/// An HTTP header name: one or more token characters (RFC 9110).
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// A header name as Istio's `ValidateStrictHTTPHeaderName` (and the CRD's pattern) reads it:
/// letters, digits, `-` and `_`.
fn is_strict_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The JWKS URL rule of the CRD (`url(self).getScheme() in ["http", "https"]`) and Istio's
/// `ParseJwksURI`.
fn check_jwks_uri(uri: &str) -> Check {
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    let parsable = !uri.chars().any(|c| c.is_whitespace() || c.is_control());
    if !parsable || !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(format!(
            "invalid URL {}: url must have scheme http:// or https://",
            crate::de::quoted(uri)
        ));
    }
    // The port, if any, is a number (Go's url.Parse).
    if let Some((_, rest)) = uri.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let after_host = host_port.rsplit_once(']').map_or(host_port, |(_, p)| p);
        if let Some((_, port)) = after_host.rsplit_once(':')
            && !port.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(format!(
                "invalid URL {}: invalid port {}",
                crate::de::quoted(uri),
                crate::de::quoted(port)
            ));
        }
    }
    Ok(())
}

/// The members a JSON Web Key of each type must have (RFC 7518 section 6).
fn required_jwk_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "RSA" => Some(&["n", "e"]),
        "EC" => Some(&["crv", "x", "y"]),
        "oct" => Some(&["k"]),
        "OKP" => Some(&["crv", "x"]),
        _ => None,
    }
}

fn check_jwk(key: &serde_json::Value) -> Check {
    let Some(key) = key.as_object() else {
        return Err("a key is not a JSON object".into());
    };
    let Some(kty) = key.get("kty").and_then(serde_json::Value::as_str) else {
        return Err("a key has no \"kty\"".into());
    };
    let Some(required) = required_jwk_members(kty) else {
        return Err(format!("unknown key type {}", crate::de::quoted(kty)));
    };
    if let Some(missing) = required.iter().find(|m| !key.contains_key(**m)) {
        return Err(format!("a {kty} key has no {}", crate::de::quoted(missing)));
    }
    Ok(())
}

/// Inline `jwks`: a JSON Web Key Set (`{"keys": [...]}`) or a single key, as Istio's
/// `jwk.Parse` reads it.
fn check_jwks(jwks: &str) -> Check {
    let parsed: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("jwks parse error: not JSON ({e})"))?;
    let result = match parsed.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.iter().try_for_each(check_jwk),
        Some(_) => Err("\"keys\" is not a list".into()),
        None => check_jwk(&parsed),
    };
    result.map_err(|e| format!("jwks parse error: {e}"))
}

impl Validate for JwtRule {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.issuer.as_deref() == Some("") {
            path.field("issuer")
                .push(errors, "issuer must not be empty when set");
        }
        if self.issuer.as_deref().unwrap_or("").is_empty()
            && self.jwks_uri().unwrap_or("").is_empty()
        {
            path.field("issuer")
                .push(errors, "issuer or jwksUri must be set");
        }
        for (i, a) in self.audiences.iter().enumerate() {
            if a.is_empty() {
                path.field("audiences")
                    .index(i)
                    .push(errors, "audience must not be empty");
            }
        }
        let sources = usize::from(self.jwks_uri.is_some())
            + usize::from(self.jwks_uri_alias.is_some())
            + usize::from(self.jwks.is_some());
        if sources > 1 {
            path.push(
                errors,
                "only one of jwks or jwksUri can be set (jwksUri, jwks_uri and jwks are exclusive)",
            );
        }
        for (field, uri) in [
            ("jwksUri", &self.jwks_uri),
            ("jwks_uri", &self.jwks_uri_alias),
        ] {
            let Some(uri) = uri else { continue };
            let p = path.field(field);
            if uri.is_empty() {
                p.push(errors, "must not be empty when set");
            } else if uri.len() > 2048 {
                p.push(errors, "must be at most 2048 characters");
            } else {
                check(&p, errors, check_jwks_uri(uri));
            }
        }
        if let Some(jwks) = self.jwks.as_deref().filter(|j| !j.is_empty()) {
            check(&path.field("jwks"), errors, check_jwks(jwks));
        }
        for (i, h) in self.from_headers.iter().enumerate() {
            let p = path.field("fromHeaders").index(i).field("name");
            if h.name.is_empty() {
                p.push(errors, "header name must not be empty");
            } else if !is_header_name(&h.name) {
                p.push(
                    errors,
                    format!(
                        "{} is not a valid HTTP header name",
                        crate::de::quoted(&h.name)
                    ),
                );
            }
        }
        for (field, what, list) in [
            ("fromParams", "query parameter", &self.from_params),
            ("fromCookies", "cookie name", &self.from_cookies),
            (
                "spaceDelimitedClaims",
                "claim name",
                &self.space_delimited_claims,
            ),
        ] {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() {
                    path.field(field)
                        .index(i)
                        .push(errors, format!("{what} must not be empty"));
                }
            }
        }
        if self.space_delimited_claims.len() > 64 {
            path.field("spaceDelimitedClaims")
                .push(errors, "may not have more than 64 claims");
        }
        if let Some(h) = &self.output_payload_to_header
            && !h.is_empty()
            && !is_header_name(h)
        {
            path.field("outputPayloadToHeader").push(
                errors,
                format!("{} is not a valid HTTP header name", crate::de::quoted(h)),
            );
        }
        for (i, c) in self.output_claim_to_headers.iter().enumerate() {
            let p = path.field("outputClaimToHeaders").index(i);
            if c.header.is_empty() {
                p.field("header").push(errors, "header must not be empty");
            } else if !is_strict_header_name(&c.header) {
                p.field("header").push(
                    errors,
                    format!(
                        "{} is not a valid header name (letters, digits, '-' and '_')",
                        crate::de::quoted(&c.header)
                    ),
                );
            }
            if c.claim.is_empty() {
                p.field("claim").push(errors, "claim must not be empty");
            }
        }
        if let Some(timeout) = &self.timeout {
            check(
                &path.field("timeout"),
                errors,
                check_min_duration(timeout, true),
            );
        }
    }
}

impl Validate for RequestAuthentication {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        validate_policy_target(
            path,
            errors,
            &self.selector,
            &self.target_ref,
            &self.target_refs,
        );
        if self.jwt_rules.len() > 4096 {
            path.field("jwtRules")
                .push(errors, "may not have more than 4096 rules");
        }
        for (i, r) in self.jwt_rules.iter().enumerate() {
            r.validate(&path.field("jwtRules").index(i), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let ra: RequestAuthentication = serde_yaml::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        ra.validate(&Path::root("spec"), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn accepts_istio_examples() {
        let yaml = r#"
selector: {matchLabels: {app: httpbin}}
jwtRules:
- issuer: "issuer-foo"
  jwksUri: https://example.com/.well-known/jwks.json
  audiences: [bookstore]
  fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]
  fromParams: [my_token]
  fromCookies: [session]
  outputPayloadToHeader: x-jwt-payload
  forwardOriginalToken: true
  outputClaimToHeaders: [{header: x-sub, claim: sub}]
  timeout: 10s
- issuer: "issuer-bar"
  jwks: '{"keys": []}'
"#;
        assert_eq!(errors(yaml), Vec::<String>::new());
    }

    #[test]
    fn jwks_and_uris_as_istio_reads_them() {
        assert!(check_jwks(r#"{"keys": []}"#).is_ok());
        assert!(check_jwks(r#"{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}"#).is_ok());
        assert!(check_jwks(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_ok());
        assert!(check_jwks(r#"{"keys": [{"kty": "XYZ"}]}"#).is_err());
        assert!(check_jwks(r#"{"keys": {}}"#).is_err());
        assert!(check_jwks("[]").is_err());
        assert!(check_jwks_uri("https://example.com/jwks").is_ok());
        assert!(check_jwks_uri("HTTP://example.com:8080/jwks").is_ok());
        assert!(check_jwks_uri("https://[::1]:8443/jwks").is_ok());
        assert!(check_jwks_uri("https://example.com:https/jwks").is_err());
        assert!(check_jwks_uri("example.com/jwks").is_err());
        assert!(check_jwks_uri("https://example.com/a b").is_err());
    }

    #[test]
    fn reports_paths() {
        let yaml = r#"
jwtRules:
- jwksUri: "ftp://x"
  fromHeaders: [{name: ""}]
  outputClaimToHeaders: [{header: "bad header", claim: ""}]
  timeout: 0s
"#;
        assert_eq!(
            errors(yaml),
            [
                "spec.jwtRules[0].jwksUri: invalid URL \"ftp://x\": url must have scheme http:// or https://",
                "spec.jwtRules[0].fromHeaders[0].name: header name must not be empty",
                "spec.jwtRules[0].outputClaimToHeaders[0].header: \"bad header\" is not a valid header name (letters, digits, '-' and '_')",
                "spec.jwtRules[0].outputClaimToHeaders[0].claim: claim must not be empty",
                "spec.jwtRules[0].timeout: must be a valid duration greater than 1ms, got 0s",
            ]
        );
        assert_eq!(
            errors("jwtRules: [{jwks: '{\"keys\": [{\"kty\": \"RSA\", \"e\": \"AQAB\"}]}'}]"),
            [
                "spec.jwtRules[0].issuer: issuer or jwksUri must be set",
                "spec.jwtRules[0].jwks: jwks parse error: a RSA key has no \"n\"",
            ]
        );
        assert_eq!(
            errors("jwtRules: [{jwksUri: https://a/k, jwks_uri: https://a/k}]"),
            [
                "spec.jwtRules[0]: only one of jwks or jwksUri can be set (jwksUri, jwks_uri and jwks are exclusive)"
            ]
        );
        assert!(errors("jwtRules: [{jwks_uri: https://a/k}]").is_empty());
    }
}
