//! VirtualService HTTP request matching (`http[].match[]`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RouteContext;
use crate::de::{is_false, null_default};
use crate::networking::common::StringMatch;
use crate::validation::{
    FieldError, Path, check, check_labels, is_istio_dns1123_label, validate_gateway_name,
    validate_match_header_name, validate_port,
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

const JWT_CLAIM_PREFIX: &str = "@request.auth.claims.";

impl HttpMatchRequest {
    pub(super) fn validate_with(
        &self,
        ctx: &RouteContext,
        delegating: bool,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        for (field, m) in [
            ("uri", &self.uri),
            ("scheme", &self.scheme),
            ("method", &self.method),
            ("authority", &self.authority),
        ] {
            if let Some(m) = m {
                let p = path.field(field);
                m.validate_required(&p, errors);
                if delegating && matches!(m, StringMatch::Regex(_)) {
                    p.push(
                        errors,
                        format!("{field} match does not support regex match for delegating"),
                    );
                }
            }
        }
        for (field, map) in [
            ("headers", &self.headers),
            ("withoutHeaders", &self.without_headers),
        ] {
            let fp = path.field(field);
            for (name, m) in map {
                let p = fp.key(name);
                if name.starts_with(JWT_CLAIM_PREFIX) {
                    if !ctx.gateway_only {
                        p.push(
                            errors,
                            format!("JWT claim based routing (key: {name}) is only supported for gateway-bound virtual services"),
                        );
                    }
                } else {
                    check(&p, errors, validate_match_header_name(name));
                }
                m.validate_optional(&p, errors);
                if delegating && matches!(m, StringMatch::Regex(_)) {
                    p.push(
                        errors,
                        format!("header match {name} does not support regex match for delegating"),
                    );
                }
            }
        }
        let qp = path.field("queryParams");
        for (name, m) in &self.query_params {
            let p = qp.key(name);
            if name.is_empty() {
                p.push(errors, "query parameter name cannot be empty");
            }
            m.validate_optional(&p, errors);
            if delegating && matches!(m, StringMatch::Regex(_)) {
                p.push(
                    errors,
                    format!("query param match {name} does not support regex match for delegating"),
                );
            }
        }
        if let Some(port) = self.port {
            check(&path.field("port"), errors, validate_port(port));
        }
        check_labels(&path.field("sourceLabels"), errors, &self.source_labels);
        let gp = path.field("gateways");
        for (i, g) in self.gateways.iter().enumerate() {
            check(&gp.index(i), errors, validate_gateway_name(g));
        }
        if let Some(ns) = &self.source_namespace
            && !is_istio_dns1123_label(ns)
        {
            path.field("sourceNamespace")
                .push(errors, format!("sourceNamespace match {ns} is invalid"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok};

    #[test]
    fn matches() {
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {X-Foo: {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[X-Foo]",
            "must be lowercase",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{headers: {'': {exact: a}}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].headers[]",
            "cannot be empty",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{match: [{headers: {x-foo: {}}, withoutHeaders: {x-bar: {}}, queryParams: {q: {}}}], route: [{destination: {host: a}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{uri: {}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri",
            "must set one of",
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
        assert_err(
            "hosts: [a]\nhttp: [{match: [{port: 0}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].port",
            "1..65535",
        );
        assert_err(
            "hosts: [a]\nhttp: [{match: [{name: m}, {name: m}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[1].name",
            "duplicate match name",
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
