//! `VirtualService` (networking.istio.io/v1): HTTP, TLS and TCP routing rules, and their validation.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Destination, Headers, Percent, StringMatch};
use crate::de::{is_false, null_default};
use crate::duration::Duration;
use crate::host::hosts_overlap;
use crate::validation::{
    FieldError, Path, Validate, check, check_duration, check_labels, is_ip, is_istio_dns1123_label,
    validate_cors_header_name, validate_gateway_name, validate_ip_subnet,
    validate_match_header_name, validate_percent_int, validate_port, validate_regex,
    validate_wildcard_domain,
};

/// The reserved gateway name meaning "all sidecars in the mesh".
pub const MESH_GATEWAY: &str = "mesh";

/// Routing rules for one or more hosts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to. Empty only for delegate VirtualServices.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hosts: Vec<String>,
    /// Gateways (and/or `mesh`) the rules apply to; empty means `mesh`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gateways: Vec<String>,
    /// HTTP routes, evaluated in order.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub http: Vec<HttpRoute>,
    /// TLS (SNI) routes for unterminated TLS.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tls: Vec<TlsRoute>,
    /// Opaque TCP routes.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces this VirtualService is visible to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub export_to: Vec<String>,
}

impl VirtualService {
    /// True if the rules apply to sidecars: no gateways, or `mesh` among them.
    pub fn applies_to_mesh(&self) -> bool {
        self.gateways.is_empty() || self.gateways.iter().any(|g| g == MESH_GATEWAY)
    }

    /// True for a delegate VirtualService (no hosts).
    pub fn is_delegate(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Validation that needs the object's namespace (for `exportTo` duplicates).
    pub fn validate_in_namespace(
        &self,
        namespace: Option<&str>,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        let delegate = self.is_delegate();
        if delegate {
            if !self.gateways.is_empty() {
                path.field("gateways").push(
                    errors,
                    "delegate virtual service must have no gateways specified",
                );
            }
            if !self.tls.is_empty() {
                path.field("tls").push(
                    errors,
                    "delegate virtual service must have no tls route specified",
                );
            }
            if !self.tcp.is_empty() {
                path.field("tcp").push(
                    errors,
                    "delegate virtual service must have no tcp route specified",
                );
            }
        }
        let gp = path.field("gateways");
        for (i, g) in self.gateways.iter().enumerate() {
            check(&gp.index(i), errors, validate_gateway_name(g));
        }
        let to_mesh = self.applies_to_mesh();
        let hp = path.field("hosts");
        let mut all_valid = true;
        for (i, h) in self.hosts.iter().enumerate() {
            let p = hp.index(i);
            if let Err(e) = validate_wildcard_domain(h) {
                if !is_ip(h) {
                    p.push(errors, e);
                    all_valid = false;
                }
            } else if to_mesh && h == "*" {
                p.push(
                    errors,
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
                all_valid = false;
            }
        }
        if all_valid {
            for i in 0..self.hosts.len() {
                for j in i + 1..self.hosts.len() {
                    if hosts_overlap(&self.hosts[i], &self.hosts[j]) {
                        hp.index(j).push(
                            errors,
                            format!(
                                "duplicate hosts in virtual service: {} & {}",
                                self.hosts[i], self.hosts[j]
                            ),
                        );
                    }
                }
            }
        }
        if self.http.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            path.push(
                errors,
                "http, tcp or tls must be provided in virtual service",
            );
        }
        let ctx = RouteContext {
            delegate,
            gateway_only: !to_mesh,
        };
        let httpp = path.field("http");
        for (i, r) in self.http.iter().enumerate() {
            r.validate_with(&ctx, &httpp.index(i), errors);
        }
        let tlsp = path.field("tls");
        for (i, r) in self.tls.iter().enumerate() {
            r.validate_with(self, &tlsp.index(i), errors);
        }
        let tcpp = path.field("tcp");
        for (i, r) in self.tcp.iter().enumerate() {
            r.validate(&tcpp.index(i), errors);
        }
        crate::validation::check_export_to(
            &path.field("exportTo"),
            errors,
            namespace,
            &self.export_to,
            false,
        );
    }
}

impl Validate for VirtualService {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_in_namespace(None, path, errors);
    }
}

struct RouteContext {
    delegate: bool,
    gateway_only: bool,
}

/// One HTTP routing rule: match conditions and an action (route, redirect, direct response or delegate).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name (for logs and stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions, OR-ed; empty matches everything.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Respond directly instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand the route over to another (delegate) VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite URI/authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Mirror traffic to several destinations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer form of `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// Share of traffic mirrored by `mirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// CORS policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

impl HttpRoute {
    fn validate_with(&self, ctx: &RouteContext, path: &Path, errors: &mut Vec<FieldError>) {
        let root = !ctx.delegate && self.delegate.is_some();
        // Action conflicts.
        if root {
            if self.redirect.is_some() {
                path.field("redirect").push(
                    errors,
                    "root HTTP route must not specify redirect when delegate is set",
                );
            }
            if !self.route.is_empty() {
                path.field("route").push(
                    errors,
                    "root HTTP route must not specify route when delegate is set",
                );
            }
            if self.direct_response.is_some() {
                path.field("directResponse").push(
                    errors,
                    "root HTTP route must not specify directResponse when delegate is set",
                );
            }
        } else {
            if ctx.delegate && self.delegate.is_some() {
                path.field("delegate")
                    .push(errors, "delegate HTTP route cannot contain delegate");
            }
            let has_route = !self.route.is_empty();
            match (&self.redirect, &self.direct_response) {
                (Some(_), Some(_)) => path.field("directResponse").push(
                    errors,
                    "HTTP route cannot contain both redirect and directResponse",
                ),
                (Some(_), None) => {
                    if has_route {
                        path.field("redirect")
                            .push(errors, "HTTP route cannot contain both route and redirect");
                    }
                    if self.fault.is_some() {
                        path.field("fault")
                            .push(errors, "HTTP route cannot contain both fault and redirect");
                    }
                    if self.rewrite.is_some() {
                        path.field("rewrite").push(
                            errors,
                            "HTTP route rule cannot contain both rewrite and redirect",
                        );
                    }
                }
                (None, Some(_)) => {
                    if has_route {
                        path.field("directResponse").push(
                            errors,
                            "HTTP route cannot contain both route and directResponse",
                        );
                    }
                    if self.fault.is_some() {
                        path.field("fault").push(
                            errors,
                            "HTTP route cannot contain both fault and directResponse",
                        );
                    }
                }
                (None, None) => {
                    if !has_route {
                        path.field("route")
                            .push(errors, "HTTP route, redirect or directResponse is required");
                    }
                }
            }
        }

        // Matches.
        let mp = path.field("match");
        let mut names = BTreeSet::new();
        for (i, m) in self.r#match.iter().enumerate() {
            let p = mp.index(i);
            m.validate_with(ctx, root || ctx.delegate, &p, errors);
            if let Some(n) = m.name.as_deref().filter(|n| !n.is_empty())
                && !names.insert(n)
            {
                p.field("name")
                    .push(errors, format!("duplicate match name {n:?}"));
            }
        }

        self.headers.validate(&path.field("headers"), errors);
        self.cors_policy.validate(&path.field("corsPolicy"), errors);
        self.fault.validate(&path.field("fault"), errors);
        if let Some(mp) = self.mirror_percent
            && mp > 100
        {
            path.field("mirrorPercent").push(
                errors,
                format!("mirrorPercent must have a max value of 100 (it has {mp})"),
            );
        }
        self.mirror_percentage
            .validate(&path.field("mirrorPercentage"), errors);
        self.mirror.validate(&path.field("mirror"), errors);
        let mip = path.field("mirrors");
        for (i, m) in self.mirrors.iter().enumerate() {
            m.validate(&mip.index(i), errors);
        }
        self.redirect.validate(&path.field("redirect"), errors);
        self.direct_response
            .validate(&path.field("directResponse"), errors);
        self.delegate.validate(&path.field("delegate"), errors);
        self.retries.validate(&path.field("retries"), errors);
        self.rewrite.validate(&path.field("rewrite"), errors);
        self.validate_authority_rewrite(path, errors);
        validate_http_destinations(&self.route, &path.field("route"), errors);
        check_duration(&path.field("timeout"), errors, &self.timeout);
    }

    fn validate_authority_rewrite(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let mut sources = 0;
        if self
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.as_ref())
            .is_some_and(|a| !a.is_empty())
        {
            sources += 1;
        }
        if let Some(req) = self.headers.as_ref().and_then(|h| h.request.as_ref()) {
            sources += req
                .set
                .keys()
                .chain(req.add.keys())
                .filter(|k| k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host"))
                .count();
        }
        if sources > 1 {
            path.field("headers")
                .push(errors, "authority header cannot be set multiple times");
        }
    }
}

fn validate_http_destinations(
    dests: &[HttpRouteDestination],
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let p = path.index(i);
        d.destination.validate(&p.field("destination"), errors);
        d.headers.validate(&p.field("headers"), errors);
        check_weight(d.weight, &p.field("weight"), errors);
        total += i64::from(d.weight.unwrap_or(0));
    }
    check_weight_sum(dests.len(), total, path, errors);
}

fn check_weight(weight: Option<i32>, path: &Path, errors: &mut Vec<FieldError>) {
    if let Some(w) = weight {
        if w < 0 {
            path.push(errors, format!("weight {w} < 0"));
        } else if w > 100 {
            path.push(errors, format!("weight {w} > 100"));
        }
    }
}

fn check_weight_sum(count: usize, total: i64, path: &Path, errors: &mut Vec<FieldError>) {
    if count > 1 && total != 100 {
        path.push(errors, format!("weights must sum to 100, got {total}"));
    }
}

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
    fn validate_with(
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

/// A destination with a weight and per-destination header operations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request.
    #[serde(default)]
    pub destination: Destination,
    /// Share of traffic (0..=100); may be omitted when there is a single destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Header manipulation for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// Regex-based URI rewrite.
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
}

impl Validate for HttpRedirect {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        if !set(&self.uri)
            && !set(&self.authority)
            && !set(&self.scheme)
            && self.port.is_none()
            && self.derive_port.is_none()
        {
            path.push(
                errors,
                "redirect must specify uri, authority, scheme, or port",
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
                "invalid redirect scheme, must be \"http\" or \"https\"",
            );
        }
        if let Some(p) = self.port {
            check(&path.field("port"), errors, validate_port(p));
            if self.derive_port.is_some() {
                path.field("derivePort")
                    .push(errors, "only one of port and derivePort may be set");
            }
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

impl Validate for HttpDirectResponse {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if !(200..=599).contains(&self.status) {
            path.field("status").push(
                errors,
                format!("HTTP status {} is not in range 200-599", self.status),
            );
        }
        if let Some(b) = &self.body {
            let len = match b {
                HttpBody::String(s) | HttpBody::Bytes(s) => s.len(),
            };
            if len > 1024 * 1024 {
                path.field("body").push(
                    errors,
                    "large direct responses may impact control plane performance, must be less than 1MB",
                );
            }
            if let (HttpBody::Bytes(_), Err(e)) = (b, b.to_bytes()) {
                path.field("body")
                    .field("bytes")
                    .push(errors, format!("not valid base64: {e}"));
            }
        }
    }
}

/// Delegate the route to another VirtualService.
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

impl Validate for Delegate {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.name.is_empty() {
            path.field("name").push(errors, "delegate name is required");
        } else if !self.name.split('.').all(is_istio_dns1123_label) {
            path.field("name")
                .push(errors, format!("invalid delegate name {:?}", self.name));
        }
        if let Some(ns) = &self.namespace
            && !ns.is_empty()
            && !is_istio_dns1123_label(ns)
        {
            path.field("namespace")
                .push(errors, format!("invalid delegate namespace {ns:?}"));
        }
    }
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries; 0 disables retries.
    #[serde(default)]
    pub attempts: i32,
    /// Timeout per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated retry conditions (Envoy `x-envoy-retry-on` values or status codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Retry in other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the exponential back-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

impl Validate for HttpRetry {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.attempts < 0 {
            path.field("attempts")
                .push(errors, "attempts cannot be negative");
        }
        if self.attempts == 0
            && (self.per_try_timeout.is_some()
                || self.retry_on.as_deref().is_some_and(|r| !r.is_empty())
                || self.retry_remote_localities.is_some())
        {
            path.field("attempts").push(
                errors,
                "http retry policy configured when attempts are set to 0 (disabled)",
            );
        }
        check_duration(&path.field("perTryTimeout"), errors, &self.per_try_timeout);
        check_duration(&path.field("backoff"), errors, &self.backoff);
        if let Some(r) = self.retry_on.as_deref().filter(|r| !r.is_empty()) {
            for policy in r.split(',') {
                let policy = policy.trim();
                let is_status = policy
                    .parse::<u16>()
                    .is_ok_and(|c| (100..=599).contains(&c));
                if !is_status && !RETRY_ON_POLICIES.contains(&policy) {
                    path.field("retryOn")
                        .push(errors, format!("{policy:?} is not a valid retryOn policy"));
                }
            }
        }
    }
}

/// Fault injection: delays and/or aborts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Abort requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

impl Validate for HttpFaultInjection {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.delay.is_none() && self.abort.is_none() {
            path.push(
                errors,
                "HTTP fault injection must have an abort and/or a delay",
            );
        }
        self.delay.validate(&path.field("delay"), errors);
        self.abort.validate(&path.field("abort"), errors);
    }
}

/// Fault delay.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// Fixed delay before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<Duration>,
    /// Exponential delay (not supported by Istio yet; rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
}

impl Validate for Delay {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.percentage.validate(&path.field("percentage"), errors);
        if let Some(p) = self.percent {
            check(
                &path.field("percent"),
                errors,
                validate_percent_int(i64::from(p)),
            );
        }
        if self.fixed_delay.is_some() && self.exponential_delay.is_some() {
            path.push(
                errors,
                "only one of fixedDelay or exponentialDelay may be set",
            );
        }
        check_duration(&path.field("fixedDelay"), errors, &self.fixed_delay);
        if self.exponential_delay.is_some() {
            path.field("exponentialDelay")
                .push(errors, "exponentialDelay not supported yet");
        }
    }
}

const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Fault abort.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// HTTP status to return, 200..=599.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// gRPC status name to return (e.g. `UNAVAILABLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// HTTP/2 error (not supported by Istio yet; rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

impl Validate for Abort {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.percentage.validate(&path.field("percentage"), errors);
        let set = usize::from(self.http_status.is_some())
            + usize::from(self.grpc_status.is_some())
            + usize::from(self.http2_error.is_some());
        if set > 1 {
            path.push(
                errors,
                "only one of httpStatus, grpcStatus or http2Error may be set",
            );
        }
        if set == 0 {
            path.push(errors, "abort must set httpStatus or grpcStatus");
        }
        if let Some(s) = self.http_status
            && !(200..=599).contains(&s)
        {
            path.field("httpStatus")
                .push(errors, format!("HTTP status {s} is not in range 200-599"));
        }
        if let Some(g) = &self.grpc_status
            && !GRPC_STATUSES.contains(&g.as_str())
        {
            path.field("grpcStatus").push(
                errors,
                format!(
                    "gRPC status {g:?} is not supported, use a code name such as \"NOT_FOUND\""
                ),
            );
        }
        if self.http2_error.is_some() {
            path.field("http2Error")
                .push(errors, "HTTP/2 abort fault injection not supported yet");
        }
    }
}

/// Mirror to a destination, with an optional share.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Mirror destination.
    #[serde(default)]
    pub destination: Destination,
    /// Share of traffic mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

impl Validate for HttpMirrorPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.destination
            .validate(&path.field("destination"), errors);
        self.percentage.validate(&path.field("percentage"), errors);
    }
}

/// What to do with CORS preflights that do not match the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default (forward).
    UnspecifiedPreflights,
    /// Forward to the upstream.
    Forward,
    /// Answer without forwarding.
    Ignore,
}

/// Cross-origin resource sharing policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Allowed origins.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated exact-match origins.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_origin: Vec<String>,
    /// Allowed methods.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_headers: Vec<String>,
    /// Headers the browser may read.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose_headers: Vec<String>,
    /// Preflight cache duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Allow credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Handling of unmatched preflights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

impl Validate for CorsPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let op = path.field("allowOrigins");
        for (i, o) in self.allow_origins.iter().enumerate() {
            let p = op.index(i);
            let empty = match o {
                StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Regex(s) => {
                    s.is_empty()
                }
                StringMatch::Present => true,
            };
            if empty {
                p.push(
                    errors,
                    "allowOrigins entries must set a non-empty exact, prefix or regex",
                );
            } else {
                o.validate_optional(&p, errors);
            }
        }
        let mp = path.field("allowMethods");
        for (i, m) in self.allow_methods.iter().enumerate() {
            if !HTTP_METHODS.contains(&m.as_str()) {
                mp.index(i)
                    .push(errors, format!("{m:?} is not a supported HTTP method"));
            }
        }
        for (field, list) in [
            ("allowHeaders", &self.allow_headers),
            ("exposeHeaders", &self.expose_headers),
        ] {
            let fp = path.field(field);
            for (i, h) in list.iter().enumerate() {
                check(&fp.index(i), errors, validate_cors_header_name(h));
            }
        }
        if let Some(m) = &self.max_age {
            let p = path.field("maxAge");
            check(&p, errors, crate::validation::validate_duration(m));
            if m.0.subsec_nanos() > 0 {
                p.push(errors, "maxAge is accurate only to seconds precision");
            }
        }
    }
}

/// A TLS (SNI-based) routing rule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Match conditions (at least one).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub r#match: Vec<TlsMatchAttributes>,
    /// Weighted destinations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub route: Vec<RouteDestination>,
}

impl TlsRoute {
    fn validate_with(&self, vs: &VirtualService, path: &Path, errors: &mut Vec<FieldError>) {
        let mp = path.field("match");
        if self.r#match.is_empty() {
            mp.push(errors, "TLS route must have at least one match condition");
        }
        for (i, m) in self.r#match.iter().enumerate() {
            m.validate_with(vs, &mp.index(i), errors);
        }
        if self.route.is_empty() {
            path.field("route").push(errors, "TLS route is required");
        }
        validate_l4_destinations(&self.route, &path.field("route"), errors);
    }
}

/// An opaque TCP routing rule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Match conditions; empty matches everything.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub r#match: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub route: Vec<RouteDestination>,
}

impl Validate for TcpRoute {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let mp = path.field("match");
        for (i, m) in self.r#match.iter().enumerate() {
            m.validate(&mp.index(i), errors);
        }
        if self.route.is_empty() {
            path.field("route").push(errors, "TCP route is required");
        }
        validate_l4_destinations(&self.route, &path.field("route"), errors);
    }
}

/// A weighted destination of a TCP or TLS route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send the connection.
    #[serde(default)]
    pub destination: Destination,
    /// Share of traffic (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

fn validate_l4_destinations(dests: &[RouteDestination], path: &Path, errors: &mut Vec<FieldError>) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let p = path.index(i);
        d.destination.validate(&p.field("destination"), errors);
        check_weight(d.weight, &p.field("weight"), errors);
        total += i64::from(d.weight.unwrap_or(0));
    }
    check_weight_sum(dests.len(), total, path, errors);
}

/// L4 match conditions of a TCP route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs or CIDRs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Deprecated source subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_subnet: Option<String>,
    /// Labels of the calling workload.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this match applies to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

fn validate_l4_common(
    subnets: &[String],
    port: Option<u32>,
    labels: &BTreeMap<String, String>,
    gateways: &[String],
    source_namespace: &Option<String>,
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let sp = path.field("destinationSubnets");
    for (i, s) in subnets.iter().enumerate() {
        check(&sp.index(i), errors, validate_ip_subnet(s));
    }
    if let Some(p) = port {
        check(&path.field("port"), errors, validate_port(p));
    }
    check_labels(&path.field("sourceLabels"), errors, labels);
    let gp = path.field("gateways");
    for (i, g) in gateways.iter().enumerate() {
        check(&gp.index(i), errors, validate_gateway_name(g));
    }
    if let Some(ns) = source_namespace
        && !is_istio_dns1123_label(ns)
    {
        path.field("sourceNamespace")
            .push(errors, format!("sourceNamespace match {ns} is invalid"));
    }
}

impl Validate for L4MatchAttributes {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        validate_l4_common(
            &self.destination_subnets,
            self.port,
            &self.source_labels,
            &self.gateways,
            &self.source_namespace,
            path,
            errors,
        );
        if let Some(s) = &self.source_subnet {
            check(&path.field("sourceSubnet"), errors, validate_ip_subnet(s));
        }
    }
}

/// Match conditions of a TLS route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values to match (at least one); each must be covered by a VirtualService host.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sni_hosts: Vec<String>,
    /// Destination IPs or CIDRs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub destination_subnets: Vec<String>,
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
    /// Gateways this match applies to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

impl TlsMatchAttributes {
    fn validate_with(&self, vs: &VirtualService, path: &Path, errors: &mut Vec<FieldError>) {
        let sp = path.field("sniHosts");
        if self.sni_hosts.is_empty() {
            sp.push(errors, "TLS match must have at least one SNI host");
        }
        for (i, sni) in self.sni_hosts.iter().enumerate() {
            let p = sp.index(i);
            if let Err(e) = validate_wildcard_domain(sni) {
                if !is_ip(sni) {
                    p.push(errors, e);
                }
                continue;
            }
            if !vs.hosts.iter().any(|h| crate::host::host_matches(h, sni)) {
                p.push(
                    errors,
                    format!(
                        "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                        vs.hosts.join(", ")
                    ),
                );
            }
        }
        validate_l4_common(
            &self.destination_subnets,
            self.port,
            &self.source_labels,
            &self.gateways,
            &self.source_namespace,
            path,
            errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        let vs: VirtualService = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        vs.validate(&Path::root("spec"), &mut errs);
        errs
    }

    fn paths(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.path.as_str()).collect()
    }

    fn assert_ok(yaml: &str) {
        let errs = errors_of(yaml);
        assert!(errs.is_empty(), "unexpected errors: {errs:?}");
    }

    fn assert_err(yaml: &str, path: &str, contains: &str) {
        let errs = errors_of(yaml);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(contains)),
            "expected {path}: ..{contains}.. in {errs:#?}"
        );
    }

    const OK: &str = "
hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
";

    #[test]
    fn simple_ok() {
        assert_ok(OK);
    }

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
    fn hosts() {
        assert_err(
            "http: [{route: [{destination: {host: a}}]}]\ngateways: [gw]",
            "spec.gateways",
            "delegate virtual service must have no gateways",
        );
        assert_err(
            "hosts: ['*']\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "wildcard host * is not allowed",
        );
        assert_err(
            "hosts: ['*']\ngateways: [gw, mesh]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "wildcard host *",
        );
        assert_ok("hosts: ['*']\ngateways: [gw]\nhttp: [{route: [{destination: {host: a}}]}]");
        assert_err(
            "hosts: ['foo..bar']\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "invalid",
        );
        assert_err(
            "hosts: ['*.foo.com', 'a.foo.com']\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[1]",
            "duplicate hosts",
        );
        assert_ok("hosts: ['10.0.0.1']\nhttp: [{route: [{destination: {host: a}}]}]");
        assert_err("hosts: [a]", "spec", "http, tcp or tls must be provided");
        assert_err(
            "hosts: [a]\ngateways: ['ns/bad_gw']\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[0]",
            "invalid value for gateway name",
        );
    }

    #[test]
    fn actions() {
        assert_err(
            "hosts: [a]\nhttp: [{name: x}]",
            "spec.http[0].route",
            "HTTP route, redirect or directResponse is required",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, route: [{destination: {host: a}}]}]",
            "spec.http[0].redirect",
            "both route and redirect",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, directResponse: {status: 200}}]",
            "spec.http[0].directResponse",
            "both redirect and directResponse",
        );
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 503}, route: [{destination: {host: a}}]}]",
            "spec.http[0].directResponse",
            "both route and directResponse",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, rewrite: {uri: /y}}]",
            "spec.http[0].rewrite",
            "rewrite and redirect",
        );
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
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 199}}]",
            "spec.http[0].directResponse.status",
            "200-599",
        );
        // Delegation.
        assert_ok("hosts: [a]\nhttp: [{delegate: {name: b, namespace: ns}}]");
        assert_err(
            "hosts: [a]\nhttp: [{delegate: {name: b}, route: [{destination: {host: a}}]}]",
            "spec.http[0].route",
            "root HTTP route must not specify route",
        );
        assert_err(
            "http: [{delegate: {name: b}}]",
            "spec.http[0].delegate",
            "delegate HTTP route cannot contain delegate",
        );
        assert_err(
            "http: [{match: [{uri: {regex: a.*}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri",
            "does not support regex match for delegating",
        );
    }

    #[test]
    fn weights() {
        let y = "
hosts: [a]
http:
- route: [{destination: {host: a}}]
- route:
  - destination: {host: a, subset: v1}
    weight: 80
  - destination: {host: a, subset: v2}
    weight: 10
";
        let errs = errors_of(y);
        assert_eq!(paths(&errs), ["spec.http[1].route"]);
        assert_eq!(errs[0].message, "weights must sum to 100, got 90");
        assert_eq!(
            errs[0].to_string(),
            "spec.http[1].route: weights must sum to 100, got 90"
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 25}, {destination: {host: b}, weight: 75}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: -5}, {destination: {host: b}, weight: 105}]}]",
            "spec.http[0].route[0].weight",
            "< 0",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 101}]}]",
            "spec.http[0].route[0].weight",
            "> 100",
        );
        assert_err(
            "hosts: [a]\ntcp: [{route: [{destination: {host: a}, weight: 50}, {destination: {host: b}}]}]",
            "spec.tcp[0].route",
            "weights must sum to 100, got 50",
        );
    }

    #[test]
    fn destinations() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: ''}}]}]",
            "spec.http[0].route[0].destination.host",
            "required",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: V_1}}]}]",
            "spec.http[0].route[0].destination.subset",
            "subset name is invalid",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a, port: {number: 70000}}}]}]",
            "spec.http[0].route[0].destination.port.number",
            "1..65535",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror: {host: '*'}}]",
            "spec.http[0].mirror.host",
            "invalid destination host",
        );
    }

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

    #[test]
    fn durations_retries_faults() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], timeout: 0.5ms}]",
            "spec.http[0].timeout",
            "at least 1ms",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], timeout: 10s, retries: {attempts: 3, perTryTimeout: 2s, retryOn: '5xx,connect-failure,503'}}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: -1}}]",
            "spec.http[0].retries.attempts",
            "negative",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: 1, perTryTimeout: 0s}}]",
            "spec.http[0].retries.perTryTimeout",
            "at least 1ms",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: 1, retryOn: 'bogus'}}]",
            "spec.http[0].retries.retryOn",
            "not a valid retryOn",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {}}]",
            "spec.http[0].fault",
            "abort and/or a delay",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 700, percentage: {value: 101}}}}]",
            "spec.http[0].fault.abort.httpStatus",
            "200-599",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 500, percentage: {value: 101}}}}]",
            "spec.http[0].fault.abort.percentage.value",
            "0..100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percentage: {value: -1}}}}]",
            "spec.http[0].fault.delay.percentage.value",
            "0..100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percent: 120}}}]",
            "spec.http[0].fault.delay.percent",
            "0..100",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {delay: {fixedDelay: 5s, percentage: {value: 10}}, abort: {grpcStatus: UNAVAILABLE}}}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {grpcStatus: NOPE}}}]",
            "spec.http[0].fault.abort.grpcStatus",
            "not supported",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror: {host: b}, mirrorPercentage: {value: 200}}]",
            "spec.http[0].mirrorPercentage.value",
            "0..100",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirrors: [{destination: {host: b}, percentage: {value: 200}}]}]",
            "spec.http[0].mirrors[0].percentage.value",
            "0..100",
        );
    }

    #[test]
    fn rewrite_and_cors() {
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
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], rewrite: {authority: x}, headers: {request: {set: {host: y}}}}]",
            "spec.http[0].headers",
            "authority header cannot be set multiple times",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], corsPolicy: {allowOrigins: [{}], allowMethods: [FETCH], allowHeaders: ['a b'], maxAge: 1.5s}}]",
            "spec.http[0].corsPolicy.allowOrigins[0]",
            "non-empty",
        );
        let errs = errors_of(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], corsPolicy: {allowOrigins: [{}], allowMethods: [FETCH], allowHeaders: ['a b'], maxAge: 1.5s}}]",
        );
        assert_eq!(
            paths(&errs),
            [
                "spec.http[0].corsPolicy.allowOrigins[0]",
                "spec.http[0].corsPolicy.allowMethods[0]",
                "spec.http[0].corsPolicy.allowHeaders[0]",
                "spec.http[0].corsPolicy.maxAge"
            ]
        );
    }

    #[test]
    fn tls_and_tcp() {
        assert_ok(
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com], port: 443}], route: [{destination: {host: a.com}}]}]",
        );
        assert_err(
            "hosts: [a.com]\ntls: [{match: [{sniHosts: [b.com]}], route: [{destination: {host: a.com}}]}]",
            "spec.tls[0].match[0].sniHosts[0]",
            "not a compatible subset",
        );
        assert_err(
            "hosts: [a.com]\ntls: [{route: [{destination: {host: a.com}}]}]",
            "spec.tls[0].match",
            "at least one match",
        );
        assert_err(
            "hosts: [a.com]\ntcp: [{match: [{destinationSubnets: [10.0.0.0/40]}]}]",
            "spec.tcp[0].route",
            "TCP route is required",
        );
        assert_err(
            "hosts: [a.com]\ntcp: [{match: [{destinationSubnets: [10.0.0.0/40]}], route: [{destination: {host: a}}]}]",
            "spec.tcp[0].match[0].destinationSubnets[0]",
            "CIDR",
        );
    }
}
