//! VirtualService TLS (SNI) and opaque TCP rules (`tls[]`, `tcp[]`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{VirtualService, check_gateway_names, check_weights, validate_gateway_bound_host};
use crate::de::null_default;
use crate::networking::common::Destination;
use crate::validation::{
    FieldError, Path, Validate, check, check_labels, is_ip, validate_ip_subnet, validate_port,
    validate_wildcard_domain,
};

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
    pub(super) fn validate_with(
        &self,
        vs: &VirtualService,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
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
    /// Relative share of traffic (not negative; the weights of a rule need not sum to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// Istio's `validateRouteDestinations`.
fn validate_l4_destinations(dests: &[RouteDestination], path: &Path, errors: &mut Vec<FieldError>) {
    for (i, d) in dests.iter().enumerate() {
        d.destination
            .validate(&path.index(i).field("destination"), errors);
    }
    check_weights(dests.iter().map(|d| d.weight), path, errors);
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
    /// Deprecated source subnet (not checked, and not used for sidecars, as in Istio).
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

/// The checks Istio's `validateTCPMatch` and `validateTLSMatch` share. `sourceNamespace`
/// (and a TCP match's `sourceSubnet`) are not checked by Istio.
fn validate_l4_common(
    subnets: &[String],
    port: Option<u32>,
    labels: &BTreeMap<String, String>,
    gateways: &[String],
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let sp = path.field("destinationSubnets");
    for (i, s) in subnets.iter().enumerate() {
        check(&sp.index(i), errors, validate_ip_subnet(s));
    }
    if let Some(p) = port.filter(|p| *p != 0) {
        check(&path.field("port"), errors, validate_port(p));
    }
    check_labels(&path.field("sourceLabels"), errors, labels);
    check_gateway_names(gateways, &path.field("gateways"), errors);
}

impl Validate for L4MatchAttributes {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        validate_l4_common(
            &self.destination_subnets,
            self.port,
            &self.source_labels,
            &self.gateways,
            path,
            errors,
        );
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
        // Istio's `isGateway`: no `mesh` among the gateways (also when there are none).
        let gateway = !vs.gateways.iter().any(|g| g == super::MESH_GATEWAY);
        for (i, sni) in self.sni_hosts.iter().enumerate() {
            let p = sp.index(i);
            let checked = if gateway {
                validate_gateway_bound_host(true, sni)
            } else {
                validate_wildcard_domain(sni)
            };
            if let Err(e) = checked {
                if !is_ip(sni) {
                    p.push(errors, e);
                }
                continue;
            }
            if !vs.hosts.iter().any(|h| crate::host::host_matches(h, sni)) {
                p.push(
                    errors,
                    format!(
                        "SNI host \"{sni}\" is not a compatible subset of any of the virtual service hosts: [{}]",
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
            path,
            errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok};

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
        assert_ok(
            "hosts: [a]\ntcp: [{match: [{port: 0, sourceNamespace: Not_A_Label, sourceSubnet: x}], route: [{destination: {host: a}, weight: 50}, {destination: {host: b}}]}]",
        );
        assert_err(
            "hosts: [a]\ntcp: [{route: [{destination: {host: a}}, {destination: {host: b}}]}]",
            "spec.tcp[0].route",
            "total destination weight = 0",
        );
    }
}
