//! `VirtualService` (networking.istio.io/v1): HTTP, TLS and TCP routing rules, and their validation.
//!
//! The top-level type and its host/gateway checks live here; the rules are split by concern:
//! [`http_route`] (HTTP rules and their destinations), [`http_match`] (request matching),
//! [`http_actions`] (rewrite, redirect, direct response, delegation), [`http_policy`] (retries,
//! faults, mirroring, CORS) and [`tcp_tls`] (TLS and TCP rules).

mod http_actions;
mod http_match;
mod http_policy;
mod http_route;
mod tcp_tls;

pub use http_actions::*;
pub use http_match::*;
pub use http_policy::*;
pub use http_route::*;
pub use tcp_tls::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::duration::Duration;
use crate::host::overlapping_hosts;
use crate::validation::{
    FieldError, Path, Validate, check, is_ip, validate_duration, validate_gateway_name,
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
        check_gateway_names(&self.gateways, &path.field("gateways"), errors);
        let to_mesh = self.applies_to_mesh();
        let sni = self
            .tls
            .iter()
            .any(|t| t.r#match.iter().any(|m| !m.sni_hosts.is_empty()));
        let hp = path.field("hosts");
        let mut all_valid = true;
        for (i, h) in self.hosts.iter().enumerate() {
            let p = hp.index(i);
            let checked = if to_mesh {
                validate_wildcard_domain(h)
            } else {
                validate_gateway_bound_host(sni, h)
            };
            if let Err(e) = checked {
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
            // One error per host that overlaps an earlier one (Istio reports every pair: n
            // copies of a host made n²/2 errors, megabytes for a small object).
            for (j, i) in overlapping_hosts(&self.hosts) {
                hp.index(j).push(
                    errors,
                    format!(
                        "duplicate hosts in virtual service: {} & {}",
                        self.hosts[i], self.hosts[j]
                    ),
                );
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
            gateways: &self.gateways,
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

/// What the HTTP rule checks need to know about the VirtualService they belong to.
struct RouteContext<'a> {
    /// A delegate VirtualService (no hosts).
    delegate: bool,
    /// Bound to gateways only (`mesh` not among them): JWT claim routing is allowed.
    gateway_only: bool,
    /// The VirtualService's gateways, for messages.
    gateways: &'a [String],
}

/// The message of the CRD rule Istio puts on every duration of a VirtualService
/// (`duration(self) >= duration('1ms')`).
pub const DURATION_RULE: &str = "must be a valid duration greater than 1ms";

/// Checks a duration field as the API server and Istio's webhook do: at least 1ms (the CRD
/// rule, with its message) and a whole number of milliseconds (`agent.ValidateDuration`).
fn check_route_duration(path: &Path, errors: &mut Vec<FieldError>, d: &Option<Duration>) {
    let Some(d) = d else { return };
    if d.0 < std::time::Duration::from_millis(1) {
        path.push(errors, format!("{DURATION_RULE}, got {d}"));
    } else {
        check(path, errors, validate_duration(d));
    }
}

/// Istio's `ValidateWildcardDomainForVirtualServiceBoundToGateway`: a host of a VirtualService
/// bound to gateways, or an SNI host of a TLS route (`sni`), may also be the name Envoy's
/// `AUTO_PASSTHROUGH` generates, `outbound_.<port>_._.<hostname>`.
fn validate_gateway_bound_host(sni: bool, domain: &str) -> crate::validation::Check {
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if domain.len() > 255 {
        return Err(format!("domain name \"{domain}\" too long (max 255)"));
    }
    if !(sni && domain.starts_with("outbound_")) {
        return validate_wildcard_domain(domain);
    }
    const FORMAT: &str = "outbound_.<port>_._.<hostname>";
    let parts: Vec<&str> = domain.split('_').collect();
    let [_, port, _, hostname, ..] = parts.as_slice() else {
        return Err(format!(
            "domain name \"{domain}\" invalid, should follow the {FORMAT} format"
        ));
    };
    let (port, hostname) = (port.trim_matches('.'), hostname.trim_matches('.'));
    if !port.bytes().any(|c| c.is_ascii_digit()) {
        return Err(format!(
            "domain name \"{domain}\" invalid (label \"{port}\" invalid), should follow the {FORMAT} format"
        ));
    }
    if !hostname.bytes().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "domain name \"{domain}\" invalid (label \"{hostname}\" invalid), should follow the {FORMAT} format"
        ));
    }
    Ok(())
}

/// Istio's `validateGatewayNames`. A name without `/` is checked as an FQDN and, as in Istio,
/// ends the check: names after it are not looked at (Istio accepts `[gw, "bad_gw"]`).
fn check_gateway_names(names: &[String], path: &Path, errors: &mut Vec<FieldError>) {
    for (i, name) in names.iter().enumerate() {
        check(&path.index(i), errors, validate_gateway_name(name));
        if !name.contains('/') {
            return;
        }
    }
}

/// Istio's `jwt.ToRoutingClaim(..).Match`: a header key routing on a JWT claim,
/// `@request.auth.claims.<name>[.<name>]` or `@request.auth.claims[<name>][<name>]`
/// (the prefix in any case).
fn is_jwt_claim_key(key: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let Some(head) = key.get(..PREFIX.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let rest = &key[PREFIX.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// Istio's `validateWeight` and the total check of `validateRouteDestinations`: no negative
/// weight, and several destinations may not all weigh 0. Weights are relative: they need not
/// sum to 100. Weft also refuses a sum over `u32::MAX`, which no proxy can split.
fn check_weights(
    weights: impl ExactSizeIterator<Item = Option<i32>>,
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let count = weights.len();
    let mut total: i64 = 0;
    for (i, weight) in weights.enumerate() {
        let w = weight.unwrap_or(0);
        if w < 0 {
            path.index(i)
                .field("weight")
                .push(errors, format!("weight {w} < 0"));
        }
        total += i64::from(w);
    }
    if count > 1 && total == 0 {
        path.push(errors, "total destination weight = 0");
    } else if total > i64::from(u32::MAX) {
        // Istio accepts it; Envoy and Weft's proxy refuse the route (docs/API_DIFFERENCES.md).
        path.push(
            errors,
            format!("the weights sum to {total}, more than a proxy can split (4294967295)"),
        );
    }
}

/// Helpers shared by the tests of this module's files: validate a `spec` given as YAML.
#[cfg(test)]
mod test_support {
    use super::VirtualService;
    use crate::validation::{FieldError, Path, Validate};

    pub(super) fn errors_of(yaml: &str) -> Vec<FieldError> {
        let vs: VirtualService = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        vs.validate(&Path::root("spec"), &mut errs);
        errs
    }

    pub(super) fn paths(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.path.as_str()).collect()
    }

    pub(super) fn assert_ok(yaml: &str) {
        let errs = errors_of(yaml);
        assert!(errs.is_empty(), "unexpected errors: {errs:?}");
    }

    pub(super) fn assert_err(yaml: &str, path: &str, contains: &str) {
        let errs = errors_of(yaml);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(contains)),
            "expected {path}: ..{contains}.. in {errs:#?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_err, assert_ok, errors_of, paths};

    #[test]
    fn auto_passthrough_sni_names_on_gateways() {
        let tls = "tls: [{match: [{sniHosts: [outbound_.80_._.e2e.foobar.mesh]}], route: [{destination: {host: a}}]}]";
        assert_ok(&format!(
            "hosts: [outbound_.80_._.e2e.foobar.mesh]\ngateways: [gw]\n{tls}"
        ));
        // In the mesh (or without TLS routes) the name is an ordinary, invalid host.
        assert_err(
            &format!("hosts: [outbound_.80_._.e2e.foobar.mesh]\n{tls}"),
            "spec.hosts[0]",
            "invalid",
        );
        assert_err(
            "hosts: [outbound_.80_._.e2e.foobar.mesh]\ngateways: [gw]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "invalid",
        );
        assert_err(
            &format!("hosts: [outbound_.http_._.e2e.foobar.mesh]\ngateways: [gw]\n{tls}"),
            "spec.hosts[0]",
            "should follow the outbound_.<port>_._.<hostname> format",
        );
    }

    #[test]
    fn a_repeated_host_is_one_error_per_copy() {
        let hosts = vec!["'*.com'"; 100].join(", ");
        let errs = errors_of(&format!(
            "hosts: [{hosts}]\ngateways: [gw]\nhttp: [{{route: [{{destination: {{host: a}}}}]}}]"
        ));
        assert_eq!(errs.len(), 99, "{:?}", paths(&errs));
        assert_eq!(paths(&errs)[0], "spec.hosts[1]");
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
}
