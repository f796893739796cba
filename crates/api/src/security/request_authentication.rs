//! `RequestAuthentication`: which request credentials (JWTs) a workload accepts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyTargetReference, validate_policy_target};
use crate::de::{is_false, null_default};
use crate::duration::Duration;
use crate::networking::PolicyWorkloadSelector;
use crate::validation::{FieldError, Path, Validate, check_duration};

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
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 4096))]
    pub jwt_rules: Vec<JwtRule>,
}

/// How to validate the JWTs of one issuer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The token's issuer (`iss`), required.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub issuer: String,
    /// Accepted audiences (`aud`); any when empty.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub audiences: Vec<String>,
    /// URL of the provider's public key set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub jwks_uri: Option<String>,
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

impl Validate for JwtRule {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.issuer.is_empty() {
            path.field("issuer").push(errors, "issuer must be set");
        }
        for (i, a) in self.audiences.iter().enumerate() {
            if a.is_empty() {
                path.field("audiences")
                    .index(i)
                    .push(errors, "audience must not be empty");
            }
        }
        if let Some(uri) = &self.jwks_uri {
            let scheme_ok = uri.starts_with("http://") || uri.starts_with("https://");
            let host = uri.split_once("://").map(|(_, r)| r).unwrap_or("");
            if !scheme_ok || host.is_empty() || host.starts_with('/') {
                path.field("jwksUri").push(
                    errors,
                    format!("invalid jwksUri {uri:?}: must be an http:// or https:// URL"),
                );
            }
        }
        if self.jwks.as_deref().is_some_and(|j| j.trim().is_empty()) {
            path.field("jwks").push(errors, "jwks must not be empty");
        }
        for (i, h) in self.from_headers.iter().enumerate() {
            let p = path.field("fromHeaders").index(i);
            if h.name.is_empty() {
                p.field("name").push(errors, "header name must be set");
            } else if !is_header_name(&h.name) {
                p.field("name")
                    .push(errors, format!("invalid header name {:?}", h.name));
            }
        }
        for (field, list) in [
            ("fromParams", &self.from_params),
            ("fromCookies", &self.from_cookies),
        ] {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() {
                    path.field(field)
                        .index(i)
                        .push(errors, "value must not be empty");
                }
            }
        }
        if let Some(h) = &self.output_payload_to_header
            && !is_header_name(h)
        {
            path.field("outputPayloadToHeader")
                .push(errors, format!("invalid header name {h:?}"));
        }
        for (i, c) in self.output_claim_to_headers.iter().enumerate() {
            let p = path.field("outputClaimToHeaders").index(i);
            if !is_header_name(&c.header) {
                p.field("header")
                    .push(errors, format!("invalid header name {:?}", c.header));
            }
            if c.claim.is_empty() {
                p.field("claim").push(errors, "claim must be set");
            }
        }
        check_duration(&path.field("timeout"), errors, &self.timeout);
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
                "spec.jwtRules[0].issuer: issuer must be set",
                "spec.jwtRules[0].jwksUri: invalid jwksUri \"ftp://x\": must be an http:// or https:// URL",
                "spec.jwtRules[0].fromHeaders[0].name: header name must be set",
                "spec.jwtRules[0].outputClaimToHeaders[0].header: invalid header name \"bad header\"",
                "spec.jwtRules[0].outputClaimToHeaders[0].claim: claim must be set",
                "spec.jwtRules[0].timeout: duration must be at least 1ms, got 0s",
            ]
        );
        assert!(
            serde_yaml::from_str::<RequestAuthentication>("jwtRules: [{issuer: a, jwks_uri: b}]")
                .is_err()
        );
    }
}
