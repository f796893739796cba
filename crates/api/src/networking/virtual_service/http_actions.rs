//! VirtualService HTTP actions other than forwarding: URI/authority rewrite, redirect, direct
//! response (with its body) and delegation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{Check, FieldError, Path, Validate, check, validate_port, validate_regex};

/// A regex path rewrite (`rewrite.uriRegexRewrite`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 pattern to match.
    #[serde(default)]
    pub r#match: String,
    /// Replacement, may reference capture groups (`\1`).
    #[serde(default)]
    pub rewrite: String,
}

/// Rewrite the URI and/or authority before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replace the matched path/prefix with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replace the Authority/Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Regex-based path rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

impl Validate for HttpRewrite {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let uri = self.uri.as_deref().is_some_and(|u| !u.is_empty());
        let auth = self.authority.as_deref().is_some_and(|a| !a.is_empty());
        if uri && self.uri_regex_rewrite.is_some() {
            path.push(
                errors,
                "rewrite may only contain one of uri or uriRegexRewrite",
            );
        }
        if !uri && !auth && self.uri_regex_rewrite.is_none() {
            path.push(
                errors,
                "rewrite must specify at least one of uri, uriRegexRewrite or authority",
            );
        }
        if let Some(r) = &self.uri_regex_rewrite {
            let p = path.field("uriRegexRewrite");
            if r.r#match.is_empty() || r.rewrite.is_empty() {
                p.push(errors, "uriRegexRewrite requires both match and rewrite");
            }
            if !r.r#match.is_empty() {
                check(&p.field("match"), errors, validate_regex(&r.r#match));
            }
        }
    }
}

/// How the redirect port is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    /// 80 for http, 443 for https.
    FromProtocolDefault,
    /// Keep the request's port.
    FromRequestPort,
}

/// Respond with a redirect.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replace the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replace the authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Replace the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Derive the port instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<RedirectPortSelection>,
    /// Replace the scheme (`http` or `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Status code (default 301).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<u32>,
    /// Replace the matched prefix of the path with this (as `rewrite.uri` does); `uri` wins
    /// when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
}

/// Istio's `validateHTTPRedirect`, plus the CRD's "one of `port` or `derivePort`".
impl Validate for HttpRedirect {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        // `prefixRewrite` (new in Istio 1.31) is a way to redirect too.
        if !set(&self.uri)
            && !set(&self.prefix_rewrite)
            && !set(&self.authority)
            && !set(&self.scheme)
            && self.port.is_none()
            && self.derive_port.is_none()
        {
            path.push(
                errors,
                "redirect must specify uri, prefixRewrite, authority, scheme, or port",
            );
        }
        if let Some(code) = self.redirect_code
            && code != 0
            && !(300..=399).contains(&code)
        {
            path.field("redirectCode").push(
                errors,
                format!("{code} is not a valid redirect code, must be 3xx"),
            );
        }
        if let Some(s) = self.scheme.as_deref()
            && !s.is_empty()
            && s != "http"
            && s != "https"
        {
            path.field("scheme").push(
                errors,
                format!("invalid redirect scheme \"{s}\", must be \"http\" or \"https\""),
            );
        }
        if let Some(p) = self.port.filter(|p| *p > 0) {
            check(&path.field("port"), errors, validate_port(p));
        }
        if self.port.is_some() && self.derive_port.is_some() {
            path.push(errors, "only one of port and derivePort may be set");
        }
    }
}

/// Body of a direct response: inline text or base64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HttpBodyRepr", into = "HttpBodyRepr")]
pub enum HttpBody {
    /// `string: ...`
    String(String),
    /// `bytes: ...` (base64 as in protobuf JSON).
    Bytes(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpBodyRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<String>,
}

impl JsonSchema for HttpBody {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HttpBody".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// Exactly one of `string` or `bytes`.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "string": {"type": "string"},
                "bytes": {"type": "string", "format": "byte"}
            },
            "additionalProperties": false
        })
    }
}

impl TryFrom<HttpBodyRepr> for HttpBody {
    type Error = String;
    fn try_from(r: HttpBodyRepr) -> Result<Self, String> {
        match (r.string, r.bytes) {
            (Some(s), None) => Ok(HttpBody::String(s)),
            (None, Some(b)) => Ok(HttpBody::Bytes(b)),
            (None, None) => Err("body must set one of `string` or `bytes`".into()),
            (Some(_), Some(_)) => Err("only one of `string` or `bytes` may be set".into()),
        }
    }
}

/// Base64 as protobuf JSON reads it: standard or URL-safe alphabet, padding optional.
const LENIENT: base64::engine::GeneralPurposeConfig = base64::engine::GeneralPurposeConfig::new()
    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64_STANDARD: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const BASE64_URL_SAFE: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

impl HttpBody {
    /// The body's bytes: the text as is, or `bytes` decoded from base64.
    pub fn to_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        use base64::Engine;
        match self {
            HttpBody::String(text) => Ok(text.clone().into_bytes()),
            HttpBody::Bytes(encoded) => BASE64_STANDARD
                .decode(encoded)
                .or_else(|_| BASE64_URL_SAFE.decode(encoded)),
        }
    }
}

impl From<HttpBody> for HttpBodyRepr {
    fn from(b: HttpBody) -> Self {
        match b {
            HttpBody::String(s) => HttpBodyRepr {
                string: Some(s),
                bytes: None,
            },
            HttpBody::Bytes(b) => HttpBodyRepr {
                string: None,
                bytes: Some(b),
            },
        }
    }
}

/// Respond directly with a status and optional body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// HTTP status, 200..=599.
    #[serde(default)]
    pub status: u32,
    /// Optional body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// Istio's `validateHTTPDirectResponse`.
impl Validate for HttpDirectResponse {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check(
            &path.field("status"),
            errors,
            validate_http_status(self.status),
        );
        if let Some(b) = &self.body {
            let size = match (b, b.to_bytes()) {
                (HttpBody::String(s), _) => s.len(),
                (HttpBody::Bytes(_), Ok(bytes)) => bytes.len(),
                (HttpBody::Bytes(_), Err(e)) => {
                    path.field("body")
                        .field("bytes")
                        .push(errors, format!("not valid base64: {e}"));
                    0
                }
            };
            if size > 1024 * 1024 {
                path.field("body").push(
                    errors,
                    "large direct responses may impact control plane performance, must be less than 1MB",
                );
            }
        }
    }
}

/// Istio's `validateHTTPStatus` (for direct responses and aborts): 200 to 599. Istio lets 600
/// through (its check is `status > 600`), but Envoy and Weft's proxy refuse it and would reject
/// the whole route configuration, so Weft refuses it here (docs/API_DIFFERENCES.md).
pub(super) fn validate_http_status(status: impl Into<i64>) -> Check {
    let status = status.into();
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status} is not in range 200-599"))
    }
}

/// Delegate the route to another VirtualService. Istio does not check the name or namespace:
/// a delegate that does not exist is reported when the routes are built.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default)]
    pub name: String,
    /// Its namespace (default: the root's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok};
    use super::HttpBody;

    #[test]
    fn direct_response_bytes_are_base64() {
        let bytes = |b: &str| HttpBody::Bytes(b.to_string()).to_bytes().ok();
        assert_eq!(bytes("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(bytes("aGVsbG8gd29ybGQ"), Some(b"hello world".to_vec()));
        assert_eq!(bytes("-_8"), Some(vec![0xfb, 0xff]), "URL-safe alphabet");
        assert_eq!(
            HttpBody::String("hi".into()).to_bytes().ok(),
            Some(b"hi".to_vec())
        );
        assert_ok("hosts: [a]\nhttp: [{directResponse: {status: 200, body: {bytes: aGVsbG8=}}}]");
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 200, body: {bytes: 'not base64!'}}}]",
            "spec.http[0].directResponse.body.bytes",
            "not valid base64",
        );
    }

    #[test]
    fn redirect_and_direct_response() {
        assert_ok("hosts: [a]\nhttp: [{redirect: {uri: /x, redirectCode: 302}}]");
        assert_ok(
            "hosts: [a]\nhttp: [{directResponse: {status: 503, body: {string: unavailable}}}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x, redirectCode: 200}}]",
            "spec.http[0].redirect.redirectCode",
            "must be 3xx",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {}}]",
            "spec.http[0].redirect",
            "redirect must specify",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {scheme: ftp}}]",
            "spec.http[0].redirect.scheme",
            "http",
        );
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 600}}]",
            "spec.http[0].directResponse.status",
            "200-599",
        );
        assert_ok("hosts: [a]\nhttp: [{redirect: {prefixRewrite: /b, port: 0}}]");
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}}]",
            "spec.http[0].redirect",
            "only one of port and derivePort",
        );
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 199}}]",
            "spec.http[0].directResponse.status",
            "200-599",
        );
    }

    #[test]
    fn rewrite() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], rewrite: {}}]",
            "spec.http[0].rewrite",
            "at least one of",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}}]",
            "spec.http[0].rewrite",
            "only contain one",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], rewrite: {uriRegexRewrite: {match: '(', rewrite: b}}}]",
            "spec.http[0].rewrite.uriRegexRewrite.match",
            "invalid regex",
        );
    }
}
