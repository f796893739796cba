//! RDS: the `outbound` route configuration (one virtual host per service port, routes
//! from VirtualServices) and `inbound|<app port>`.

use std::collections::{BTreeMap, HashSet};

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, data_source, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, header_matcher,
    query_parameter_matcher, redirect_action, route, route_action, route_match,
    weighted_cluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use weft_api::host::resolve_short_name;
use weft_api::networking::{
    HeaderOperations, HttpBody, HttpMatchRequest, HttpRoute, HttpRouteDestination, StringMatch,
};

use super::proxy::Proxy;
use super::{duration, inbound_cluster_name, outbound_cluster_name};
use crate::model::{MESH_GATEWAY, Model, Service, VirtualServiceEntry, labels_match};

/// Name of the outbound route configuration.
pub const OUTBOUND: &str = "outbound";

/// Name of the inbound route configuration for an app port.
pub fn inbound_name(app_port: u16) -> String {
    format!("inbound|{app_port}")
}

/// All route configurations of a proxy: `outbound`, and `inbound|<app port>` when set.
pub fn route_configurations(model: &Model, proxy: &Proxy) -> Vec<RouteConfiguration> {
    let mut configs = vec![outbound(model, proxy)];
    if let Some(app_port) = proxy.app_port {
        configs.push(inbound(app_port));
    }
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

/// The outbound route configuration: one virtual host per service and HTTP port.
pub fn outbound(model: &Model, proxy: &Proxy) -> RouteConfiguration {
    let mut used_domains = HashSet::new();
    let mut virtual_hosts = Vec::new();
    for service in model.services.values() {
        let bare_port = service.default_http_port();
        for port in service.http_ports() {
            let mut domains = Vec::new();
            for domain in domains_for(service, port.number, bare_port == Some(port.number), proxy, &model.domain) {
                // Envoy rejects a domain used twice; the first service keeps it.
                if used_domains.insert(domain.clone()) {
                    domains.push(domain);
                }
            }
            if domains.is_empty() {
                continue;
            }
            let routes = match model.virtual_service(&service.hostname) {
                Some(vs) => virtual_service_routes(model, vs, service, port.number, proxy),
                None => vec![default_route(outbound_cluster_name(port.number, "", &service.hostname))],
            };
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", service.hostname, port.number),
                domains,
                routes,
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

/// The domains of a service port's virtual host: `<fqdn>:<port>` and the short forms
/// Istio adds for the proxy's namespace; the same without the port when `bare`.
pub fn domains_for(service: &Service, port: u32, bare: bool, proxy: &Proxy, domain: &str) -> Vec<String> {
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

/// The routes of a VirtualService for one service port, as seen by `proxy`: one route
/// per applicable match, in order, stopping after a catch-all. Nothing is added after
/// them, so unmatched requests get 404, as in Istio.
pub fn virtual_service_routes(
    model: &Model,
    vs: &VirtualServiceEntry,
    service: &Service,
    port: u32,
    proxy: &Proxy,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for http in &vs.spec.http {
        if http.r#match.is_empty() {
            routes.push(translate_route(model, vs, service, port, http, None));
            // A route without a match catches everything: later ones are unreachable.
            break;
        }
        let mut catch_all = false;
        for matching in http.r#match.iter().filter(|m| match_applies(m, port, proxy)) {
            routes.push(translate_route(model, vs, service, port, http, Some(matching)));
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

/// Whether an Istio match can apply to this port and proxy (`port`, `sourceLabels`,
/// `sourceNamespace`, `gateways`).
pub fn match_applies(matching: &HttpMatchRequest, port: u32, proxy: &Proxy) -> bool {
    if matching.port.is_some_and(|p| p != 0 && p != port) {
        return false;
    }
    if !labels_match(&matching.source_labels, &proxy.labels) {
        return false;
    }
    if let Some(namespace) = matching.source_namespace.as_deref().filter(|ns| !ns.is_empty())
        && namespace != proxy.namespace
    {
        return false;
    }
    matching.gateways.is_empty() || matching.gateways.iter().any(|gateway| gateway == MESH_GATEWAY)
}

/// Istio's catch-all: a match on every path with no other condition.
fn is_catch_all(matching: &HttpMatchRequest) -> bool {
    let all_paths = match &matching.uri {
        None => true,
        Some(StringMatch::Prefix(prefix)) => prefix == "/" || prefix.is_empty(),
        Some(StringMatch::Regex(regex)) => regex == "*" || regex == ".*",
        Some(_) => false,
    };
    all_paths
        && matching.headers.is_empty()
        && matching.without_headers.is_empty()
        && matching.query_params.is_empty()
        && matching.method.is_none()
        && matching.authority.is_none()
        && matching.scheme.is_none()
}

fn translate_route(
    model: &Model,
    vs: &VirtualServiceEntry,
    service: &Service,
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
        let code = match redirect.redirect_code {
            Some(302) => redirect_action::RedirectResponseCode::Found,
            Some(303) => redirect_action::RedirectResponseCode::SeeOther,
            Some(307) => redirect_action::RedirectResponseCode::TemporaryRedirect,
            Some(308) => redirect_action::RedirectResponseCode::PermanentRedirect,
            _ => redirect_action::RedirectResponseCode::MovedPermanently,
        };
        out.action = Some(route::Action::Redirect(RedirectAction {
            host_redirect: redirect.authority.clone().unwrap_or_default(),
            port_redirect: redirect.port.unwrap_or(0),
            response_code: code as i32,
            scheme_rewrite_specifier: redirect
                .scheme
                .clone()
                .filter(|scheme| !scheme.is_empty())
                .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
            path_rewrite_specifier: redirect
                .uri
                .clone()
                .filter(|uri| !uri.is_empty())
                .map(redirect_action::PathRewriteSpecifier::PathRedirect),
            ..Default::default()
        }));
        return out;
    }

    if let Some(direct) = &http.direct_response {
        out.action = Some(route::Action::DirectResponse(DirectResponseAction {
            status: direct.status,
            body: direct.body.as_ref().map(|body| DataSource {
                specifier: Some(match body {
                    HttpBody::String(text) => data_source::Specifier::InlineString(text.clone()),
                    HttpBody::Bytes(base64) => {
                        data_source::Specifier::InlineBytes(decode_base64(base64))
                    }
                }),
                ..Default::default()
            }),
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

    let action = RouteAction {
        cluster_specifier: Some(cluster_specifier(model, vs, service, port, &http.route)),
        timeout: Some(duration(http.timeout.map(|timeout| timeout.0).unwrap_or_default())),
        prefix_rewrite: http
            .rewrite
            .as_ref()
            .and_then(|rewrite| rewrite.uri.clone())
            .unwrap_or_default(),
        host_rewrite_specifier: host_rewrite.map(route_action::HostRewriteSpecifier::HostRewriteLiteral),
        ..Default::default()
    };
    out.action = Some(route::Action::Route(action));
    out
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
    service: &Service,
    port: u32,
    destinations: &[HttpRouteDestination],
) -> route_action::ClusterSpecifier {
    if let [single] = destinations {
        return route_action::ClusterSpecifier::Cluster(destination_cluster(model, vs, service, port, single));
    }
    let mut clusters: Vec<weighted_cluster::ClusterWeight> = destinations
        .iter()
        .filter_map(|destination| {
            let weight = u32::try_from(destination.weight.unwrap_or(0)).unwrap_or(0);
            (weight > 0).then(|| weighted_cluster::ClusterWeight {
                name: destination_cluster(model, vs, service, port, destination),
                weight: Some(UInt32Value { value: weight }),
                ..Default::default()
            })
        })
        .collect();
    if clusters.is_empty() {
        // No weights at all: split evenly.
        clusters = destinations
            .iter()
            .map(|destination| weighted_cluster::ClusterWeight {
                name: destination_cluster(model, vs, service, port, destination),
                weight: Some(UInt32Value { value: 1 }),
                ..Default::default()
            })
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

/// The cluster of one destination: host resolved in the VirtualService's namespace,
/// subset, and the destination port, else the service's only port, else the port being
/// routed (Istio's rule). Unknown hosts still get a name: the proxy answers 503.
pub fn destination_cluster(
    model: &Model,
    vs: &VirtualServiceEntry,
    service: &Service,
    port: u32,
    destination: &HttpRouteDestination,
) -> String {
    let dest = &destination.destination;
    let host = resolve_short_name(&dest.host, &vs.namespace, &model.domain);
    let target_port = dest
        .port
        .as_ref()
        .map(|selector| selector.number)
        .filter(|number| *number != 0)
        .or_else(|| {
            let target = model.services.get(&host).unwrap_or(service);
            match target.ports.as_slice() {
                [only] => Some(only.number),
                _ => None,
            }
        })
        .unwrap_or(port);
    outbound_cluster_name(target_port, dest.subset.as_deref().unwrap_or_default(), &host)
}

/// An Istio match as an Envoy route match.
pub fn translate_match(matching: &HttpMatchRequest) -> RouteMatch {
    let path_specifier = match &matching.uri {
        Some(StringMatch::Exact(path)) => route_match::PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => route_match::PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => route_match::PathSpecifier::SafeRegex(regex_matcher(regex)),
        Some(StringMatch::Present) | None => route_match::PathSpecifier::Prefix("/".to_string()),
    };
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", &matching.method),
        (":authority", &matching.authority),
        (":scheme", &matching.scheme),
    ] {
        if let Some(value) = value {
            headers.push(header_matcher(name, value, false));
        }
    }
    for (name, value) in &sorted(&matching.headers) {
        headers.push(header_matcher(name, value, false));
    }
    for (name, value) in &sorted(&matching.without_headers) {
        headers.push(header_matcher(name, value, true));
    }
    let query_parameters = sorted(&matching.query_params)
        .into_iter()
        .map(|(name, value)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(value) {
                Some(matcher) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(matcher),
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: matching.ignore_uri_case.then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn sorted<V>(map: &BTreeMap<String, V>) -> Vec<(&String, &V)> {
    map.iter().collect()
}

fn header_matcher(name: &str, value: &StringMatch, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        header_match_specifier: Some(match string_matcher(value) {
            Some(matcher) => header_matcher::HeaderMatchSpecifier::StringMatch(matcher),
            None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        }),
        ..Default::default()
    }
}

/// An Istio string match as an Envoy one; `None` for `{}` (presence only).
fn string_matcher(value: &StringMatch) -> Option<StringMatcher> {
    let pattern = match value {
        StringMatch::Exact(text) => string_matcher::MatchPattern::Exact(text.clone()),
        StringMatch::Prefix(text) => string_matcher::MatchPattern::Prefix(text.clone()),
        StringMatch::Regex(regex) => string_matcher::MatchPattern::SafeRegex(regex_matcher(regex)),
        StringMatch::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}

/// Header operations as Envoy fields: headers to add (`set` overwrites, `add` appends),
/// headers to remove, and the authority when `set` names `:authority`/`host` (Istio turns
/// it into a host rewrite).
fn header_operations(ops: &HeaderOperations) -> (Vec<HeaderValueOption>, Vec<String>, Option<String>) {
    let mut authority = None;
    let mut add = Vec::new();
    for (key, value) in &ops.set {
        if key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host") {
            authority = Some(value.clone());
            continue;
        }
        add.push(header_value(key, value, header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd));
    }
    for (key, value) in &ops.add {
        add.push(header_value(key, value, header_value_option::HeaderAppendAction::AppendIfExistsOrAdd));
    }
    (add, ops.remove.clone(), authority)
}

fn header_value(key: &str, value: &str, action: header_value_option::HeaderAppendAction) -> HeaderValueOption {
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

/// Decodes standard or URL-safe base64 (padding optional); invalid characters are skipped
/// (validation already rejected malformed bodies).
pub fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        buffer = ((buffer << 6) | u32::from(value)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    out
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
