//! VirtualService HTTP request matching (`http[].match[]`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RouteContext, check_gateway_names, is_jwt_claim_key};
use crate::de::{is_false, null_default};
use crate::networking::common::StringMatch;
use crate::validation::{
    Check, FieldError, Path, check, check_labels, is_istio_dns1123_label, validate_port,
    validate_regex,
};

/// Conditions on an HTTP request; all set fields must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Match name (for logs and stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Scheme match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// Method match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Authority (Host) match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header matches (lower-case names); `{}` means "present".
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, StringMatch>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this match applies to (overrides the VirtualService's).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gateways: Vec<String>,
    /// Query parameter matches; `{}` means "present".
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive URI matching.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_uri_case: bool,
    /// Headers that must NOT match.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the calling workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// Stats prefix for this match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_prefix: Option<String>,
}

/// The pseudo-headers a header match may name (Istio's `pseudoHeaders`).
const PSEUDO_HEADERS: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];

/// Istio's `ValidateHTTPHeaderNameOrJwtClaimRoute`: a header name in a match is an HTTP token
/// (any case), a pseudo-header, or a JWT claim key.
fn validate_match_header_key(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_jwt_claim_key(name) || PSEUDO_HEADERS.contains(&name) {
        return Ok(());
    }
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.bytes().all(token) {
        Ok(())
    } else {
        Err(format!("header name \"{name}\" is not a valid header name"))
    }
}

/// Istio's `validateStringMatch`: no empty prefix, and a regex must compile. `{}` (no match
/// type) and an empty `exact` are accepted. With `prefix_may_be_empty` (the `uri`), only the
/// regex is checked (Istio's `validateStringMatchRegexp`).
fn check_string_match(
    m: &StringMatch,
    prefix_may_be_empty: bool,
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    match m {
        StringMatch::Prefix(p) if p.is_empty() && !prefix_may_be_empty => path
            .field("prefix")
            .push(errors, "prefix string match should not be empty"),
        StringMatch::Regex(re) if re.is_empty() => path
            .field("regex")
            .push(errors, "regex string match should not be empty"),
        StringMatch::Regex(re) => check(&path.field("regex"), errors, validate_regex(re)),
        _ => {}
    }
}

impl HttpMatchRequest {
    /// Istio's `validateHTTPRouteMatchRequest`, and the VirtualService's check that JWT claim
    /// routing is only used on gateways.
    pub(super) fn validate_with(
        &self,
        ctx: &RouteContext<'_>,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        for (field, map) in [
            ("headers", &self.headers),
            ("withoutHeaders", &self.without_headers),
        ] {
            let fp = path.field(field);
            for (name, m) in map {
                let p = fp.key(name);
                check(&p, errors, validate_match_header_key(name));
                if name == ":status" {
                    // Istio accepts it (a request never has one); Weft's proxy refuses the
                    // route configuration (docs/API_DIFFERENCES.md).
                    p.push(
                        errors,
                        "a request has no :status pseudo-header to match; Weft's proxy matches :method, :scheme, :authority and :path",
                    );
                }
                if !ctx.gateway_only && is_jwt_claim_key(name) {
                    p.push(
                        errors,
                        format!(
                            "JWT claim based routing (key: {name}) is only supported for gateway, found no gateways: [{}]",
                            ctx.gateways.join(" ")
                        ),
                    );
                }
                // In `withoutHeaders`, regex `*` is not RE2: it means "present".
                let presence =
                    field == "withoutHeaders" && matches!(m, StringMatch::Regex(re) if re == "*");
                if !presence {
                    check_string_match(m, false, &p, errors);
                }
            }
        }
        if let Some(m) = &self.uri {
            check_string_match(m, true, &path.field("uri"), errors);
        }
        for (field, m) in [
            ("scheme", &self.scheme),
            ("method", &self.method),
            ("authority", &self.authority),
        ] {
            if let Some(m) = m {
                check_string_match(m, false, &path.field(field), errors);
            }
        }
        let qp = path.field("queryParams");
        for (name, m) in &self.query_params {
            let p = qp.key(name);
            if name.is_empty() {
                // Istio accepts it; Envoy and Weft's proxy refuse the route
                // (docs/API_DIFFERENCES.md).
                p.push(errors, "query parameter name cannot be empty");
            }
            check_string_match(m, false, &p, errors);
        }
        if let Some(port) = self.port.filter(|p| *p != 0) {
            check(&path.field("port"), errors, validate_port(port));
        }
        check_labels(&path.field("sourceLabels"), errors, &self.source_labels);
        check_gateway_names(&self.gateways, &path.field("gateways"), errors);
        if let Some(ns) = self.source_namespace.as_deref().filter(|ns| !ns.is_empty())
            && !is_istio_dns1123_label(ns)
        {
            path.field("sourceNamespace")
                .push(errors, format!("sourceNamespace match \"{ns}\" is invalid"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok};

    #[test]
    fn matches() {
        // Any HTTP token (any case) or pseudo-header, as Istio's current rule.
        assert_ok(
            "hosts: [a]\nhttp: [{match: [{headers: {X-Foo: {exact: a}, ':path': {prefix: /}}}], route: [{destination: {host: a}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {':status': {exact: '200'}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[:status]",
            "a request has no :status",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {'x foo': {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[x foo]",
            "is not a valid header name",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {'': {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[]",
            "cannot be empty",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{match: [{headers: {x-foo: {}}, withoutHeaders: {x-bar: {}}, queryParams: {q: {}}}], route: [{destination: {host: a}}]}]",
        );
        // No match type, or an empty uri prefix: accepted (as Istio).
        assert_ok(
            "hosts: [a]\nhttp: [{match: [{uri: {}, method: {}}, {uri: {prefix: ''}}], route: [{destination: {host: a}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{method: {prefix: ''}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].method.prefix",
            "prefix string match should not be empty",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{match: [{withoutHeaders: {x: {regex: '*'}}}], route: [{destination: {host: a}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{uri: {regex: 'a(b'}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri.regex",
            "invalid regex",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {x: {regex: '['}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[x].regex",
            "invalid regex",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{match: [{port: 0, name: m}, {name: m}], route: [{destination: {host: a}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{port: 70000}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].port",
            "1..65535",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{sourceLabels: {'a b': c}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].sourceLabels[a b]",
            "invalid label key",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{sourceNamespace: foo_bar}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].sourceNamespace",
            "invalid",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {'@request.auth.claims.sub': {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[@request.auth.claims.sub]",
            "only supported for gateway",
        );
        assert_ok(
            "hosts: [a]\ngateways: [gw]\nhttp: [{match: [{headers: {'@request.auth.claims.sub': {exact: a}}}], route: [{destination: {host: a}}]}]",
        );
    }
}
