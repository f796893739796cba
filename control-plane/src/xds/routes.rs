//! RDS: the `outbound` route configuration (one virtual host per service port, routes
//! from VirtualServices) and `inbound|<app port>`; the capture shape's per-port route
//! configurations are built from the same virtual hosts ([`super::capture::routes`]).

use std::collections::{BTreeMap, HashSet};

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, data_source, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, WeightedCluster, redirect_action, route, route_action, route_match,
    weighted_cluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_api::host::resolve_short_name;
use weft_api::networking::{
    Destination, HeaderOperations, HttpBody, HttpMatchRequest, HttpRedirect, HttpRoute,
    HttpRouteDestination, RedirectPortSelection,
};

use super::proxy::Proxy;
use super::route_match::{is_catch_all, match_applies, translate_match};
use super::{
    capture, duration, inbound_cluster_name, outbound_cluster_name, route_cors, route_policy,
};
use crate::model::{Model, VirtualServiceEntry};
use crate::service::Service;
use weft_xds::contract::{CORS, FAULT};

/// Name of the outbound route configuration.
pub const OUTBOUND: &str = "outbound";

/// Name of the inbound route configuration for an app port.
pub fn inbound_name(app_port: u16) -> String {
    format!("inbound|{app_port}")
}

/// All route configurations of a proxy: `outbound`, and `inbound|<app port>` when set; for a
/// proxy whose traffic is captured, the capture shape's ([`super::capture::routes`]).
pub fn route_configurations(model: &Model, proxy: &Proxy) -> Vec<RouteConfiguration> {
    let mut configs = if proxy.capture {
        capture::routes::route_configurations(model, proxy)
    } else {
        let mut configs = vec![outbound(model, proxy)];
        if let Some(app_port) = proxy.app_port {
            configs.push(inbound(app_port));
        }
        configs
    };
    super::trace::decorate(model, proxy, &mut configs);
    configs
}

/// The inbound route configuration: everything to the app.
pub fn inbound(app_port: u16) -> RouteConfiguration {
    RouteConfiguration {
        name: inbound_name(app_port),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{app_port}"),
            domains: vec!["*".to_string()],
            routes: vec![default_route(inbound_cluster_name(app_port))],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The outbound route configuration: one virtual host per service (that the proxy's Sidecar
/// lets it see) and HTTP port.
pub fn outbound(model: &Model, proxy: &Proxy) -> RouteConfiguration {
    let mut used_domains = HashSet::new();
    let mut virtual_hosts = Vec::new();
    for service in model.services_for(&proxy.namespace, &proxy.labels) {
        let bare_port = service.default_http_port();
        for port in service.http_ports() {
            let mut domains = Vec::new();
            for domain in domains_for(
                service,
                port.number,
                bare_port == Some(port.number),
                proxy,
                &model.domain,
            ) {
                // Envoy rejects a domain used twice; the first service keeps it.
                if used_domains.insert(domain.clone()) {
                    domains.push(domain);
                }
            }
            if domains.is_empty() {
                continue;
            }
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", service.hostname, port.number),
                domains,
                routes: service_routes(model, service, port.number, proxy),
                ..Default::default()
            });
        }
    }
    RouteConfiguration {
        name: OUTBOUND.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

/// The routes of a service port's virtual host: its VirtualService's, else the default route
/// to the port's cluster.
pub fn service_routes(model: &Model, service: &Service, port: u32, proxy: &Proxy) -> Vec<Route> {
    match model.virtual_service(&service.hostname) {
        Some(vs) => virtual_service_routes(model, vs, port, proxy),
        None => {
            let mut route =
                default_outbound_route(outbound_cluster_name(port, "", &service.hostname));
            if let Some(route::Action::Route(action)) = &mut route.action {
                action.hash_policy = super::cluster_policy::cluster_policy(
                    model.destination_rule(&service.hostname),
                    None,
                    port,
                )
                .hash_policy();
            }
            vec![route]
        }
    }
}

/// The domains of a service port's virtual host: `<fqdn>:<port>` and the short forms
/// Istio adds for the proxy's namespace; the same without the port when `bare`.
pub fn domains_for(
    service: &Service,
    port: u32,
    bare: bool,
    proxy: &Proxy,
    domain: &str,
) -> Vec<String> {
    let mut names = vec![service.hostname.clone()];
    names.extend(alt_hosts(&service.hostname, &proxy.namespace, domain));
    let mut domains: Vec<String> = names.iter().map(|name| format!("{name}:{port}")).collect();
    if bare {
        domains.extend(names);
    }
    domains
}

/// Istio's alternative names of a Kubernetes-style host (`name.ns.svc.<domain>`):
/// `name`, `name.ns`, `name.ns.svc` in the proxy's namespace; `name.ns`, `name.ns.svc`
/// from other namespaces; none for other hosts.
pub fn alt_hosts(hostname: &str, proxy_namespace: &str, domain: &str) -> Vec<String> {
    let suffix = format!(".svc.{}", domain.trim_matches('.'));
    let Some(name_ns) = hostname.strip_suffix(&suffix) else {
        return Vec::new();
    };
    let Some((name, namespace)) = name_ns.split_once('.') else {
        return Vec::new();
    };
    if name.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return Vec::new();
    }
    let mut hosts = Vec::new();
    if namespace == proxy_namespace {
        hosts.push(name.to_string());
    }
    hosts.push(name_ns.to_string());
    hosts.push(format!("{name_ns}.svc"));
    hosts
}

/// The route used when no VirtualService applies: everything to one cluster.
pub fn default_route(cluster: String) -> Route {
    Route {
        name: "default".to_string(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
            // Istio disables the route timeout unless a VirtualService sets one.
            timeout: Some(duration(std::time::Duration::ZERO)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The default route of a service without VirtualService, as Istio builds it: everything to
/// `cluster`, with Istio's default retry policy.
pub fn default_outbound_route(cluster: String) -> Route {
    let mut out = default_route(cluster);
    let (policy, metadata) = route_policy::retry_policy(None);
    if let Some(route::Action::Route(action)) = &mut out.action {
        action.retry_policy = policy;
    }
    out.metadata = metadata;
    out
}

/// The routes of a VirtualService for one service port, as seen by `proxy`: one route
/// per applicable match, in order, stopping after a catch-all. Nothing is added after
/// them, so unmatched requests get 404, as in Istio.
pub fn virtual_service_routes(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    proxy: &Proxy,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for http in &vs.spec.http {
        if http.r#match.is_empty() {
            routes.push(translate_route(model, vs, port, http, None));
            // A route without a match catches everything: later ones are unreachable.
            break;
        }
        let mut catch_all = false;
        for matching in http
            .r#match
            .iter()
            .filter(|m| match_applies(m, port, proxy))
        {
            routes.push(translate_route(model, vs, port, http, Some(matching)));
            if is_catch_all(matching) {
                catch_all = true;
                break;
            }
        }
        if catch_all {
            break;
        }
    }
    routes
}

fn translate_route(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    http: &HttpRoute,
    matching: Option<&HttpMatchRequest>,
) -> Route {
    let mut out = Route {
        name: route_name(http, matching),
        r#match: Some(matching.map_or_else(
            || RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            },
            translate_match,
        )),
        // Observability only (Istio's `match[].statPrefix`).
        stat_prefix: matching
            .and_then(|m| m.stat_prefix.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let mut host_rewrite = http
        .rewrite
        .as_ref()
        .and_then(|rewrite| rewrite.authority.clone())
        .filter(|authority| !authority.is_empty());

    if let Some(headers) = &http.headers {
        if let Some(request) = &headers.request {
            let (add, remove, authority) = header_operations(request);
            out.request_headers_to_add = add;
            out.request_headers_to_remove = remove;
            host_rewrite = host_rewrite.or(authority);
        }
        if let Some(response) = &headers.response {
            let (add, remove, _) = header_operations(response);
            out.response_headers_to_add = add;
            out.response_headers_to_remove = remove;
        }
    }

    if let Some(redirect) = &http.redirect {
        out.action = Some(route::Action::Redirect(redirect_action(redirect, port)));
        return out;
    }

    if let Some(direct) = &http.direct_response {
        out.action = Some(route::Action::DirectResponse(DirectResponseAction {
            status: direct.status,
            body: direct.body.as_ref().map(|body| DataSource {
                specifier: Some(match body {
                    HttpBody::String(text) => data_source::Specifier::InlineString(text.clone()),
                    // Validation rejected bodies that are not base64.
                    HttpBody::Bytes(_) => {
                        data_source::Specifier::InlineBytes(body.to_bytes().unwrap_or_default())
                    }
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
        return out;
    }

    // Headers of a single destination apply to the whole route.
    if let [single] = http.route.as_slice()
        && let Some(headers) = &single.headers
    {
        if let Some(request) = &headers.request {
            let (add, remove, authority) = header_operations(request);
            out.request_headers_to_add.extend(add);
            out.request_headers_to_remove.extend(remove);
            host_rewrite = host_rewrite.or(authority);
        }
        if let Some(response) = &headers.response {
            let (add, remove, _) = header_operations(response);
            out.response_headers_to_add.extend(add);
            out.response_headers_to_remove.extend(remove);
        }
    }

    let (retry_policy, retry_metadata) = route_policy::retry_policy(http.retries.as_ref());
    out.metadata = retry_metadata;
    if let Some(fault) = &http.fault {
        out.typed_per_filter_config
            .insert(FAULT.to_string(), route_policy::fault_config(fault));
    }
    if let Some(cors) = &http.cors_policy {
        out.typed_per_filter_config
            .insert(CORS.to_string(), route_cors::cors_config(cors));
    }
    let regex_rewrite = http
        .rewrite
        .as_ref()
        .and_then(|rewrite| rewrite.uri_regex_rewrite.as_ref())
        .map(|rewrite| RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: rewrite.r#match.clone(),
                ..Default::default()
            }),
            substitution: rewrite.rewrite.clone(),
        });
    let action = RouteAction {
        request_mirror_policies: route_policy::mirror_policies(http, |mirror| {
            cluster_of(model, vs, port, mirror)
        }),
        regex_rewrite,
        retry_policy,
        hash_policy: destination_hash_policy(model, vs, port, &http.route),
        cluster_specifier: Some(cluster_specifier(model, vs, port, &http.route)),
        timeout: Some(duration(
            http.timeout.map(|timeout| timeout.0).unwrap_or_default(),
        )),
        prefix_rewrite: http
            .rewrite
            .as_ref()
            .and_then(|rewrite| rewrite.uri.clone())
            .unwrap_or_default(),
        host_rewrite_specifier: host_rewrite
            .map(route_action::HostRewriteSpecifier::HostRewriteLiteral),
        ..Default::default()
    };
    out.action = Some(route::Action::Route(action));
    out
}

/// A set, non-empty text field.
fn non_empty(text: &Option<String>) -> Option<String> {
    text.clone().filter(|text| !text.is_empty())
}

/// An Istio redirect as Istio's `ApplyRedirect` builds it for a sidecar (plain HTTP):
/// `derivePort: FROM_REQUEST_PORT` is the routed port, and the default port of the
/// scheme is left out.
pub fn redirect_action(redirect: &HttpRedirect, port: u32) -> RedirectAction {
    let code = match redirect.redirect_code {
        Some(302) => redirect_action::RedirectResponseCode::Found,
        Some(303) => redirect_action::RedirectResponseCode::SeeOther,
        Some(307) => redirect_action::RedirectResponseCode::TemporaryRedirect,
        Some(308) => redirect_action::RedirectResponseCode::PermanentRedirect,
        _ => redirect_action::RedirectResponseCode::MovedPermanently,
    };
    let scheme = redirect.scheme.clone().filter(|scheme| !scheme.is_empty());
    let mut port_redirect = match (redirect.port, redirect.derive_port) {
        (Some(port), _) => port,
        (None, Some(RedirectPortSelection::FromRequestPort)) => port,
        _ => 0,
    };
    let effective_scheme = scheme.as_deref().unwrap_or("http");
    if (port_redirect == 80 && effective_scheme == "http")
        || (port_redirect == 443 && effective_scheme == "https")
    {
        port_redirect = 0;
    }
    RedirectAction {
        host_redirect: redirect.authority.clone().unwrap_or_default(),
        port_redirect,
        response_code: code as i32,
        scheme_rewrite_specifier: scheme
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        // `uri` replaces the whole path; else `prefixRewrite` the matched prefix.
        path_rewrite_specifier: match (
            non_empty(&redirect.uri),
            non_empty(&redirect.prefix_rewrite),
        ) {
            (Some(uri), _) => Some(redirect_action::PathRewriteSpecifier::PathRedirect(uri)),
            (None, Some(prefix)) => {
                Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(prefix))
            }
            (None, None) => None,
        },
        ..Default::default()
    }
}

fn route_name(http: &HttpRoute, matching: Option<&HttpMatchRequest>) -> String {
    let route = http.name.clone().unwrap_or_default();
    let matched = matching.and_then(|m| m.name.clone()).unwrap_or_default();
    match (route.is_empty(), matched.is_empty()) {
        (false, false) => format!("{route}.{matched}"),
        (true, false) => matched,
        _ => route,
    }
}

/// The cluster(s) of a route: one cluster, or weighted clusters for several destinations.
fn cluster_specifier(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    destinations: &[HttpRouteDestination],
) -> route_action::ClusterSpecifier {
    if let [single] = destinations {
        return route_action::ClusterSpecifier::Cluster(destination_cluster(
            model, vs, port, single,
        ));
    }
    let mut clusters: Vec<weighted_cluster::ClusterWeight> = destinations
        .iter()
        .filter_map(|destination| {
            let weight = u32::try_from(destination.weight.unwrap_or(0)).unwrap_or(0);
            (weight > 0).then(|| cluster_weight(model, vs, port, destination, weight))
        })
        .collect();
    if clusters.is_empty() {
        // No weights at all: split evenly.
        clusters = destinations
            .iter()
            .map(|destination| cluster_weight(model, vs, port, destination, 1))
            .collect();
    }
    if let [single] = clusters.as_slice() {
        return route_action::ClusterSpecifier::Cluster(single.name.clone());
    }
    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters,
        ..Default::default()
    })
}

/// One destination of a split, with its own header operations as Istio puts them on the
/// weighted cluster, and its own authority (`:authority`/`host` in `set`, else `add`) as the
/// cluster's `host_rewrite_literal`.
fn cluster_weight(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    destination: &HttpRouteDestination,
    weight: u32,
) -> weighted_cluster::ClusterWeight {
    let mut out = weighted_cluster::ClusterWeight {
        name: destination_cluster(model, vs, port, destination),
        weight: Some(UInt32Value { value: weight }),
        ..Default::default()
    };
    if let Some(headers) = &destination.headers {
        if let Some(request) = &headers.request {
            let (add, remove, authority) = header_operations(request);
            out.request_headers_to_add = add;
            out.request_headers_to_remove = remove;
            out.host_rewrite_specifier = authority
                .map(weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral);
        }
        if let Some(response) = &headers.response {
            let (add, remove, _) = header_operations(response);
            out.response_headers_to_add = add;
            out.response_headers_to_remove = remove;
        }
    }
    out
}

/// The cluster of one destination (Istio's `GetDestinationCluster`): host resolved in
/// the VirtualService's namespace, subset, and the destination port, else the
/// destination service's only port, else the port being routed. Unknown hosts still
/// get a name: the proxy answers 503.
pub fn destination_cluster(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    destination: &HttpRouteDestination,
) -> String {
    cluster_of(model, vs, port, &destination.destination)
}

/// [`destination_cluster`] for any route's destination (HTTP, TCP or TLS).
pub fn cluster_of(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    dest: &Destination,
) -> String {
    let (host, target_port) = destination_host_port(model, vs, port, dest);
    outbound_cluster_name(
        target_port,
        dest.subset.as_deref().unwrap_or_default(),
        &host,
    )
}

/// A destination's host (fully qualified) and port: its own, else the service's only port,
/// else the routed one.
fn destination_host_port(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    dest: &Destination,
) -> (String, u32) {
    let host = resolve_short_name(&dest.host, &vs.namespace, &model.domain);
    let target_port = dest
        .port
        .as_ref()
        .map(|selector| selector.number)
        .filter(|number| *number != 0)
        .or_else(|| match model.services.get(&host)?.ports.as_slice() {
            [only] => Some(only.number),
            _ => None,
        })
        .unwrap_or(port);
    (host, target_port)
}

/// The merged DestinationRule policy of the cluster a destination goes to: its host's rule,
/// its subset, and the port [`cluster_of`] picks.
pub fn destination_policy(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    dest: &Destination,
) -> super::cluster_policy::ClusterPolicy {
    let (host, target_port) = destination_host_port(model, vs, port, dest);
    let rule = model.destination_rule(&host);
    let subset = dest
        .subset
        .as_deref()
        .and_then(|name| rule?.spec.subsets.iter().find(|subset| subset.name == name));
    super::cluster_policy::cluster_policy(rule, subset, target_port)
}

/// The route's `hash_policy`: the consistent hash of the first destination whose
/// DestinationRule (subset, port) balances by one.
fn destination_hash_policy(
    model: &Model,
    vs: &VirtualServiceEntry,
    port: u32,
    destinations: &[HttpRouteDestination],
) -> Vec<route_action::HashPolicy> {
    destinations
        .iter()
        .map(|d| destination_policy(model, vs, port, &d.destination).hash_policy())
        .find(|policy| !policy.is_empty())
        .unwrap_or_default()
}

/// Header operations as Envoy fields, as Istio's `TranslateHeadersOperations`: headers
/// to add (`set` overwrites, `add` appends; sorted by name), headers to remove, and the
/// authority named by `:authority`/`host` in `set` (else `add`), which becomes a host
/// rewrite. Pseudo-headers and `host` are never added or removed directly.
fn header_operations(
    ops: &HeaderOperations,
) -> (Vec<HeaderValueOption>, Vec<String>, Option<String>) {
    let (mut add, set_authority) = headers_to_add(
        &ops.set,
        header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
    );
    let (appended, add_authority) = headers_to_add(
        &ops.add,
        header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
    );
    add.extend(appended);
    let remove = ops
        .remove
        .iter()
        .filter(|key| !is_internal_header(key))
        .cloned()
        .collect();
    (add, remove, set_authority.or(add_authority))
}

fn headers_to_add(
    headers: &BTreeMap<String, String>,
    action: header_value_option::HeaderAppendAction,
) -> (Vec<HeaderValueOption>, Option<String>) {
    let mut authority = None;
    let mut options = Vec::new();
    for (key, value) in headers {
        if key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host") {
            authority = Some(value.clone());
        }
        if !is_internal_header(key) {
            options.push(header_value(key, value, action));
        }
    }
    (options, authority)
}

fn is_internal_header(key: &str) -> bool {
    key.starts_with(':') || key.eq_ignore_ascii_case("host")
}

fn header_value(
    key: &str,
    value: &str,
    action: header_value_option::HeaderAppendAction,
) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
