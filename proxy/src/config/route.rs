//! Route configuration (RDS): Envoy `RouteConfiguration` → `RouteConfig`, rejecting what the router cannot do.
//!
//! ```text
//!  RouteConfiguration ─► RouteConfig { domain index ─► VirtualHost ─► [Route { RouteMatch, Action }] }
//! ```

use std::collections::HashMap;
use std::mem::take;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;

use super::cors::Cors;
use super::fault::Fault;
use super::formatter::HeaderTemplate;
use super::matcher::{header_match, header_ops, query_match, regex};
use super::mirror::{Mirror, RegexRewrite, mirror, regex_rewrite};
use super::per_filter::route_filter_configs;
use super::retry::{RetryPolicy, retry_policy};
use super::route_action::{convert_direct, convert_redirect};
use super::{ConfigError, Reason, duration, invalid, reject_leftover, reject_set};
use weft_xds::contract::{CORS as CORS_FILTER, FAULT as FAULT_FILTER, RETRY_METADATA};

/// Envoy's route timeout when `route.timeout` is unset.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub(crate) exact: super::FastMap<String, usize>,
    /// `*.suffix` / `*-suffix` domains, longest first: (suffix without `*`, vhost).
    pub(crate) suffix: Vec<(String, usize)>,
    /// `prefix.*` domains, longest first: (prefix without `*`, vhost).
    pub(crate) prefix: Vec<(String, usize)>,
    pub(crate) default: Option<usize>,
    pub ignore_port: bool,
    pub most_specific_wins: bool,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Every cluster the routes name, by slot: resolved to clusters when the config is applied,
    /// so a request indexes a slot instead of looking a name up.
    pub cluster_slots: Vec<String>,
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: Action,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// `decorator.operation`: the name of the spans of the route's requests (`trace/`).
    pub operation: Option<Arc<str>>,
}

#[derive(Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

#[derive(Debug)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    SeparatedPrefix(String),
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub source: HeaderSource,
    pub kind: HeaderMatchKind,
    pub invert: bool,
    pub treat_missing_as_empty: bool,
}

/// Where a header matcher reads its value; pseudo-headers come from the request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    Method,
    Authority,
    Scheme,
    Path,
    Header(HeaderName),
}

#[derive(Debug)]
pub enum HeaderMatchKind {
    String(StringMatch),
    Present(bool),
}

#[derive(Debug)]
pub struct QueryMatch {
    pub name: String,
    /// `None` = present match.
    pub value: Option<StringMatch>,
}

#[derive(Debug)]
pub struct StringMatch {
    pub kind: StringMatchKind,
    pub ignore_case: bool,
}

#[derive(Debug)]
pub enum StringMatchKind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug)]
pub enum Action {
    Forward(ForwardAction),
    Redirect(Redirect),
    Direct(DirectResponse),
}

#[derive(Debug)]
pub struct ForwardAction {
    pub clusters: ClusterPick,
    /// `None` = no timeout (`timeout: 0s`).
    pub timeout: Option<Duration>,
    pub prefix_rewrite: Option<String>,
    pub host_rewrite: Option<HeaderValue>,
    pub cluster_not_found: StatusCode,
    /// `retry_policy`: what a failed attempt may do (`None`: no retries).
    pub retry: Option<Box<RetryPolicy>>,
    /// `typed_per_filter_config["envoy.filters.http.fault"]`: faults injected when the
    /// listener runs the fault filter.
    pub fault: Option<Box<Fault>>,
    /// `hash_policy`: what the request is hashed on for a consistent-hash cluster.
    pub hash_policy: Vec<super::hash_policy::HashPolicy>,
    /// `typed_per_filter_config["envoy.filters.http.cors"]`: the route's CORS policy, applied
    /// when the listener runs the CORS filter.
    pub cors: Option<Box<Cors>>,
    /// `request_mirror_policies`: shares of the requests copied to other clusters.
    pub mirrors: Vec<Mirror>,
    /// `regex_rewrite` (exclusive with `prefix_rewrite`).
    pub regex_rewrite: Option<Box<RegexRewrite>>,
}

#[derive(Debug)]
pub enum ClusterPick {
    Single(ClusterRef),
    Weighted {
        clusters: Vec<WeightedCluster>,
        total: u32,
    },
}

#[derive(Debug)]
pub struct WeightedCluster {
    pub cluster: ClusterRef,
    pub weight: u32,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// `host_rewrite_literal`: this cluster's authority (replaces the route's).
    pub host_rewrite: Option<HeaderValue>,
}

/// A cluster named by a route, with its slot in the route config's `cluster_slots`.
#[derive(Debug)]
pub struct ClusterRef {
    pub name: String,
    pub slot: usize,
}

impl ClusterRef {
    pub(super) fn new(name: String) -> Self {
        Self { name, slot: 0 }
    }
}

impl ClusterPick {
    /// Picks a cluster from a random point in `0..total`.
    pub fn pick(&self, point: u32) -> (&ClusterRef, Option<&WeightedCluster>) {
        match self {
            Self::Single(c) => (c, None),
            Self::Weighted { clusters, .. } => {
                let mut acc = 0u32;
                for c in clusters {
                    acc += c.weight;
                    if point < acc {
                        return (&c.cluster, Some(c));
                    }
                }
                // Unreachable for point < total (conversion guarantees a non-empty list);
                // the last cluster is a safe answer.
                let last = &clusters[clusters.len() - 1];
                (&last.cluster, Some(last))
            }
        }
    }

    fn refs_mut(&mut self) -> Vec<&mut ClusterRef> {
        match self {
            Self::Single(c) => vec![c],
            Self::Weighted { clusters, .. } => {
                clusters.iter_mut().map(|w| &mut w.cluster).collect()
            }
        }
    }
}

#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub status: StatusCode,
    pub strip_query: bool,
}

#[derive(Debug)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Option<Bytes>,
}

/// Header mutations at one level (route config, virtual host, route, weighted cluster).
#[derive(Debug, Default)]
pub struct HeaderOps {
    pub add: Vec<HeaderAdd>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    /// Whether some value has a per-request formatter (`%DOWNSTREAM_REMOTE_ADDRESS%`, …).
    pub fn is_dynamic(&self) -> bool {
        self.add.iter().any(|a| a.value.as_static().is_none())
    }
}

#[derive(Debug)]
pub struct HeaderAdd {
    pub name: HeaderName,
    /// The value, with Envoy's `%COMMAND%` formatters parsed (`config/formatter.rs`).
    pub value: HeaderTemplate,
    pub action: core::header_value_option::HeaderAppendAction,
    pub keep_empty: bool,
}

impl TryFrom<rt::RouteConfiguration> for RouteConfig {
    type Error = ConfigError;

    fn try_from(mut rc: rt::RouteConfiguration) -> Result<Self, ConfigError> {
        let path = format!("route config {:?}", rc.name);
        let err = |reason| ConfigError::new(&path, reason);
        let name = take(&mut rc.name);
        let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
        for vh in take(&mut rc.virtual_hosts) {
            let vh_path = format!("{path}: virtual host {:?}", vh.name);
            virtual_hosts.push(convert_vhost(vh, &vh_path)?);
        }
        let request_headers = header_ops(
            take(&mut rc.request_headers_to_add),
            take(&mut rc.request_headers_to_remove),
        )
        .map_err(err)?;
        let response_headers = header_ops(
            take(&mut rc.response_headers_to_add),
            take(&mut rc.response_headers_to_remove),
        )
        .map_err(err)?;
        let ignore_port = take(&mut rc.ignore_port_in_host_matching);
        let most_specific_wins = take(&mut rc.most_specific_header_mutations_wins);
        // Harmless: validation and metadata only.
        rc.validate_clusters = None;
        rc.metadata = None;
        rc.max_direct_response_body_size_bytes = None;
        (|| {
            reject_set!(
                rc,
                vhds,
                internal_only_headers,
                typed_per_filter_config,
                request_mirror_policies,
                vhost_header
            );
            reject_leftover(&rc, "route configuration")
        })()
        .map_err(err)?;
        let mut out = RouteConfig {
            name,
            virtual_hosts,
            exact: super::FastMap::default(),
            suffix: Vec::new(),
            prefix: Vec::new(),
            default: None,
            ignore_port,
            most_specific_wins,
            request_headers,
            response_headers,
            cluster_slots: Vec::new(),
        };
        out.index_domains().map_err(err)?;
        out.assign_slots();
        Ok(out)
    }
}

impl RouteConfig {
    /// Numbers the distinct cluster names the routes use (see `cluster_slots`).
    fn assign_slots(&mut self) {
        let mut slots: HashMap<String, usize> = HashMap::new();
        for vh in &mut self.virtual_hosts {
            for route in &mut vh.routes {
                let Action::Forward(f) = &mut route.action else {
                    continue;
                };
                let mirrors = f.mirrors.iter_mut().map(|m| &mut m.cluster);
                for r in f.clusters.refs_mut().into_iter().chain(mirrors) {
                    let next = slots.len();
                    r.slot = *slots.entry(r.name.clone()).or_insert(next);
                }
            }
        }
        let mut names = vec![String::new(); slots.len()];
        for (name, slot) in slots {
            names[slot] = name;
        }
        self.cluster_slots = names;
    }

    fn index_domains(&mut self) -> Result<(), Reason> {
        for (i, vh) in self.virtual_hosts.iter().enumerate() {
            for domain in &vh.domains {
                let d = domain.to_ascii_lowercase();
                let duplicate = if d == "*" {
                    self.default.replace(i).is_some()
                } else if let Some(suffix) = d.strip_prefix('*') {
                    let dup = self.suffix.iter().any(|(s, _)| s == suffix);
                    self.suffix.push((suffix.to_string(), i));
                    dup
                } else if let Some(prefix) = d.strip_suffix('*') {
                    let dup = self.prefix.iter().any(|(p, _)| p == prefix);
                    self.prefix.push((prefix.to_string(), i));
                    dup
                } else if d.contains('*') {
                    return Err(invalid(
                        format!("virtual host {:?} domain {domain:?}", vh.name),
                        "wildcard must be first or last",
                    ));
                } else {
                    self.exact.insert(d, i).is_some()
                };
                if duplicate {
                    return Err(invalid(
                        format!("virtual host {:?} domain {domain:?}", vh.name),
                        "domain is listed by more than one virtual host",
                    ));
                }
            }
        }
        // Longest wildcard wins (Envoy); stable sort keeps declaration order on ties.
        self.suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        self.prefix.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(())
    }
}

fn convert_vhost(mut vh: rt::VirtualHost, path: &str) -> Result<VirtualHost, ConfigError> {
    let err = |reason| ConfigError::new(path, reason);
    if vh.domains.is_empty() {
        return Err(err(Reason::Missing("domains")));
    }
    let mut routes = Vec::with_capacity(vh.routes.len());
    for (i, r) in take(&mut vh.routes).into_iter().enumerate() {
        let route_path = if r.name.is_empty() {
            format!("{path}: route {i}")
        } else {
            format!("{path}: route {i} ({:?})", r.name)
        };
        routes.push(convert_route(r).map_err(|reason| ConfigError::new(&route_path, reason))?);
    }
    let request_headers = header_ops(
        take(&mut vh.request_headers_to_add),
        take(&mut vh.request_headers_to_remove),
    )
    .map_err(err)?;
    let response_headers = header_ops(
        take(&mut vh.response_headers_to_add),
        take(&mut vh.response_headers_to_remove),
    )
    .map_err(err)?;
    let name = take(&mut vh.name);
    let domains = take(&mut vh.domains);
    vh.metadata = None;
    vh.virtual_clusters.clear(); // stats only
    (|| {
        reject_set!(
            vh,
            require_tls,
            retry_policy,
            retry_policy_typed_config,
            hedge_policy,
            cors,
            rate_limits,
            typed_per_filter_config,
            request_mirror_policies,
            matcher
        );
        reject_leftover(&vh, "virtual host")
    })()
    .map_err(err)?;
    Ok(VirtualHost {
        name,
        domains,
        routes,
        request_headers,
        response_headers,
    })
}

fn convert_route(mut r: rt::Route) -> Result<Route, Reason> {
    let m = r.r#match.take().ok_or(Reason::Missing("match"))?;
    let matcher = convert_match(m)?;
    let retry_metadata = r
        .metadata
        .as_mut()
        .and_then(|m| m.filter_metadata.remove(RETRY_METADATA));
    let (fault, cors) = route_filter_configs(&mut r.typed_per_filter_config)?;
    let action = match r.action.take() {
        Some(rt::route::Action::Route(a)) => {
            let mut forward = convert_forward(a, retry_metadata.as_ref())?;
            forward.fault = fault;
            forward.cors = cors;
            Action::Forward(forward)
        }
        Some(_) if fault.is_some() || cors.is_some() => {
            let key = if fault.is_some() {
                FAULT_FILTER
            } else {
                CORS_FILTER
            };
            return Err(Reason::Unsupported(format!(
                "typed_per_filter_config[{key:?}] on a route without a route action"
            )));
        }
        Some(rt::route::Action::Redirect(a)) => Action::Redirect(convert_redirect(a)?),
        Some(rt::route::Action::DirectResponse(a)) => Action::Direct(convert_direct(a)?),
        Some(rt::route::Action::FilterAction(_)) => {
            return Err(Reason::Unsupported("filter_action".into()));
        }
        Some(rt::route::Action::NonForwardingAction(_)) => {
            return Err(Reason::Unsupported("non_forwarding_action".into()));
        }
        None => {
            return Err(Reason::Missing(
                "action (route, redirect or direct_response)",
            ));
        }
    };
    let request_headers = header_ops(
        take(&mut r.request_headers_to_add),
        take(&mut r.request_headers_to_remove),
    )?;
    let response_headers = header_ops(
        take(&mut r.response_headers_to_add),
        take(&mut r.response_headers_to_remove),
    )?;
    let name = take(&mut r.name);
    // Observability-only fields.
    r.metadata = None;
    // The span name; `propagate` (whether the upstream hears the operation in
    // `x-envoy-decorator-operation`) is Envoy's business between Envoys: never sent.
    let operation = r
        .decorator
        .take()
        .map(|d| d.operation)
        .filter(|o| !o.is_empty())
        .map(Arc::from);
    r.stat_prefix.clear();
    reject_set!(r, route_specifiers, tracing);
    reject_leftover(&r, "route")?;
    Ok(Route {
        name,
        matcher,
        action,
        request_headers,
        response_headers,
        operation,
    })
}

fn convert_match(mut m: rt::RouteMatch) -> Result<RouteMatch, Reason> {
    use rt::route_match::PathSpecifier as P;
    let case_sensitive = m.case_sensitive.take().is_none_or(|b| b.value);
    let path = match m.path_specifier.take() {
        Some(P::Prefix(p)) => PathMatch::Prefix(p),
        Some(P::Path(p)) => PathMatch::Exact(p),
        Some(P::SafeRegex(r)) => PathMatch::Regex(regex("match.safe_regex", &r)?),
        Some(P::PathSeparatedPrefix(p)) => {
            if p.ends_with('/') || p.contains(['?', '#']) {
                return Err(invalid(
                    "match.path_separated_prefix",
                    "must not end in '/' or contain '?' or '#'",
                ));
            }
            PathMatch::SeparatedPrefix(p)
        }
        Some(P::ConnectMatcher(_)) => {
            return Err(Reason::Unsupported("match.connect_matcher".into()));
        }
        Some(P::PathMatchPolicy(_)) => {
            return Err(Reason::Unsupported("match.path_match_policy".into()));
        }
        None => {
            return Err(Reason::Missing(
                "match path specifier (prefix, path, safe_regex)",
            ));
        }
    };
    let headers = take(&mut m.headers)
        .into_iter()
        .enumerate()
        .map(|(i, h)| header_match(h).map_err(|r| prefix_reason(&format!("match.headers[{i}]"), r)))
        .collect::<Result<_, _>>()?;
    let query = take(&mut m.query_parameters)
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            query_match(q).map_err(|r| prefix_reason(&format!("match.query_parameters[{i}]"), r))
        })
        .collect::<Result<_, _>>()?;
    reject_set!(
        m,
        runtime_fraction,
        cookies,
        grpc,
        tls_context,
        dynamic_metadata,
        filter_state
    );
    reject_leftover(&m, "route match")?;
    Ok(RouteMatch {
        path,
        case_sensitive,
        headers,
        query,
    })
}

fn prefix_reason(prefix: &str, r: Reason) -> Reason {
    match r {
        Reason::Missing(f) => invalid(format!("{prefix}.{f}"), "is required"),
        Reason::Unsupported(f) => Reason::Unsupported(format!("{prefix}.{f}")),
        Reason::UnsupportedValue { field, value } => {
            Reason::Unsupported(format!("{prefix}.{field} {value:?}"))
        }
        Reason::Invalid { field, reason } => Reason::Invalid {
            field: format!("{prefix}.{field}"),
            reason,
        },
        Reason::Regex {
            field,
            pattern,
            error,
        } => Reason::Regex {
            field: format!("{prefix}.{field}"),
            pattern,
            error,
        },
        other => other,
    }
}

fn convert_forward(
    mut a: rt::RouteAction,
    retry_metadata: Option<&envoy_types::pb::google::protobuf::Struct>,
) -> Result<ForwardAction, Reason> {
    use rt::route_action::{
        ClusterNotFoundResponseCode as Nf, ClusterSpecifier as C, HostRewriteSpecifier as H,
    };
    let clusters = match a.cluster_specifier.take() {
        Some(C::Cluster(name)) if !name.is_empty() => ClusterPick::Single(ClusterRef::new(name)),
        Some(C::Cluster(_)) => return Err(Reason::Missing("route.cluster")),
        Some(C::WeightedClusters(w)) => weighted(w)?,
        Some(C::ClusterHeader(_)) => {
            return Err(Reason::Unsupported("route.cluster_header".into()));
        }
        Some(C::ClusterSpecifierPlugin(_) | C::InlineClusterSpecifierPlugin(_)) => {
            return Err(Reason::Unsupported("route.cluster_specifier_plugin".into()));
        }
        None => return Err(Reason::Missing("route.cluster or route.weighted_clusters")),
    };
    let timeout = match duration("route.timeout", a.timeout.take().as_ref())? {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let prefix_rewrite = Some(take(&mut a.prefix_rewrite)).filter(|p| !p.is_empty());
    let regex_rewrite = match a.regex_rewrite.take() {
        None => None,
        Some(_) if prefix_rewrite.is_some() => {
            return Err(invalid(
                "route.regex_rewrite",
                "cannot be set with route.prefix_rewrite",
            ));
        }
        Some(r) => Some(Box::new(regex_rewrite(r)?)),
    };
    let mirrors = take(&mut a.request_mirror_policies)
        .into_iter()
        .enumerate()
        .map(|(i, m)| mirror(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let host_rewrite = match a.host_rewrite_specifier.take() {
        None => None,
        Some(H::HostRewriteLiteral(h)) => Some(
            HeaderValue::try_from(h)
                .map_err(|e| invalid("route.host_rewrite_literal", e.to_string()))?,
        ),
        Some(H::AutoHostRewrite(b)) if !b.value => None,
        Some(_) => {
            return Err(Reason::Unsupported(
                "route.host_rewrite_specifier other than host_rewrite_literal".into(),
            ));
        }
    };
    let cluster_not_found = match Nf::try_from(take(&mut a.cluster_not_found_response_code)) {
        Ok(Nf::ServiceUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Ok(Nf::NotFound) => StatusCode::NOT_FOUND,
        Ok(Nf::InternalServerError) => StatusCode::INTERNAL_SERVER_ERROR,
        Err(_) => {
            return Err(invalid(
                "route.cluster_not_found_response_code",
                "unknown value",
            ));
        }
    };
    let retry = match a.retry_policy.take() {
        Some(p) => Some(Box::new(retry_policy(p, retry_metadata)?)),
        None if retry_metadata.is_some() => {
            return Err(Reason::Unsupported(format!(
                "metadata.filter_metadata[{RETRY_METADATA:?}] without route.retry_policy"
            )));
        }
        None => None,
    };
    let hash_policy = std::mem::take(&mut a.hash_policy)
        .into_iter()
        .enumerate()
        .map(|(i, p)| super::hash_policy::hash_policy(p, &format!("route.hash_policy[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    (|| {
        reject_set!(
            a,
            retry_policy_typed_config,
            path_rewrite_policy,
            cors,
            rate_limits,
            idle_timeout,
            max_stream_duration,
            max_grpc_timeout,
            grpc_timeout_offset,
            upgrade_configs,
            hedge_policy,
            internal_redirect_policy,
            metadata_match,
            priority
        );
        reject_leftover(&a, "route action")
    })()
    .map_err(|r| prefix_reason("route", r))?;
    Ok(ForwardAction {
        clusters,
        timeout,
        prefix_rewrite,
        host_rewrite,
        cluster_not_found,
        retry,
        fault: None,
        hash_policy,
        cors: None,
        mirrors,
        regex_rewrite,
    })
}

fn weighted(mut w: rt::WeightedCluster) -> Result<ClusterPick, Reason> {
    let mut clusters = Vec::with_capacity(w.clusters.len());
    let mut total = 0u32;
    for (i, mut c) in take(&mut w.clusters).into_iter().enumerate() {
        let field = format!("route.weighted_clusters.clusters[{i}]");
        if c.name.is_empty() {
            return Err(invalid(
                format!("{field}.name"),
                "is required (cluster_header is not supported)",
            ));
        }
        let weight = c.weight.take().map_or(0, |v| v.value);
        total = total
            .checked_add(weight)
            .ok_or_else(|| invalid(&field, "weights overflow"))?;
        let request_headers = header_ops(
            take(&mut c.request_headers_to_add),
            take(&mut c.request_headers_to_remove),
        )
        .map_err(|r| prefix_reason(&field, r))?;
        let response_headers = header_ops(
            take(&mut c.response_headers_to_add),
            take(&mut c.response_headers_to_remove),
        )
        .map_err(|r| prefix_reason(&field, r))?;
        let name = take(&mut c.name);
        let host_rewrite = match c.host_rewrite_specifier.take() {
            None => None,
            Some(
                rt::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(h),
            ) => Some(
                HeaderValue::try_from(h)
                    .map_err(|e| invalid(format!("{field}.host_rewrite_literal"), e.to_string()))?,
            ),
        };
        (|| {
            reject_set!(c, cluster_header, metadata_match, typed_per_filter_config);
            reject_leftover(&c, "weighted cluster")
        })()
        .map_err(|r| prefix_reason(&field, r))?;
        if weight > 0 {
            clusters.push(WeightedCluster {
                cluster: ClusterRef::new(name),
                weight,
                request_headers,
                response_headers,
                host_rewrite,
            });
        }
    }
    #[allow(deprecated)]
    if let Some(t) = w.total_weight.take()
        && t.value != total
    {
        return Err(invalid(
            "route.weighted_clusters.total_weight",
            format!("{} != sum of weights {total}", t.value),
        ));
    }
    if total == 0 {
        return Err(invalid("route.weighted_clusters", "weights sum to 0"));
    }
    reject_set!(w, runtime_key_prefix, random_value_specifier);
    reject_leftover(&w, "weighted clusters")?;
    Ok(ClusterPick::Weighted { clusters, total })
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
