//! The table's machinery: a case (policies, request, expected outcome), the pipeline that turns
//! its YAML into the controller's `virtualInbound` HTTP filters and the proxy's converted
//! filters, and the evaluation of the request through them as Envoy chains them.
//!
//! ```text
//!  YAML ─load_text─► ConfigSet ─► Model ─generate(LDS)─► virtualInbound ─► HCM http_filters
//!    jwt_authn ─► JwtAuthn::try_from      rbac ─► Rbac::try_from      router (last)
//!  request + connection facts ─► filters in order:
//!    jwt_authn: token ─► AuthnResult │ failure ─► 401
//!    rbac DENY matched │ ALLOW unmatched ─► 403        LOG ─► audit mark, never denies
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use prost::Message;
use weft_controller::source::ConfigSet;
use weft_controller::source::local::load_text;
use weft_controller::xds::generate;
use weft_proxy::authn::{AuthnResult, JwtAuthn};
use weft_proxy::authz::{ConnFacts, Decision, Facts, Rbac};
use weft_xds::contract::{JWT_AUTHN, RBAC, ROUTER};
use weft_xds::type_url;

use super::check::{APP_PORT, ConfigCase, ProxySpec, controller_proxy};

/// The workload's namespace (every case's proxy runs there).
pub const WORKLOAD_NAMESPACE: &str = "default";
/// The workload's labels unless a case says otherwise.
pub const WORKLOAD_LABELS: &[(&str, &str)] = &[("app", "httpbin"), ("version", "v1")];
/// The default `Host` of a request.
pub const HOST: &str = "httpbin.default.svc.cluster.local";
/// The default peer address (a client pod).
pub const SOURCE_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
/// The default destination address (the workload's pod).
pub const DESTINATION_IP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 7);

/// What the inbound filters do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Reaches the router.
    Allowed,
    /// 403 "RBAC: access denied".
    Denied,
    /// 401 from the JWT filter (an invalid token).
    Unauthenticated,
}

/// One request and its connection, as the inbound listener sees them.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    /// Path and query.
    pub path: &'static str,
    pub host: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub source_ip: IpAddr,
    /// The peer's SPIFFE identity from mTLS; `None` for plaintext.
    pub principal: Option<String>,
    pub destination_ip: IpAddr,
    pub sni: Option<&'static str>,
    /// A JWT already validated (the `istio_authn` metadata a jwt_authn filter would write).
    pub jwt: Option<AuthnResult>,
}

/// `GET /` for [`HOST`], plaintext from [`SOURCE_IP`] to [`DESTINATION_IP`]:[`APP_PORT`].
pub fn req() -> Req {
    Req {
        method: "GET",
        path: "/",
        host: HOST,
        headers: Vec::new(),
        source_ip: IpAddr::V4(SOURCE_IP),
        principal: None,
        destination_ip: IpAddr::V4(DESTINATION_IP),
        sni: None,
        jwt: None,
    }
}

impl Req {
    pub fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub fn path(mut self, path: &'static str) -> Self {
        self.path = path;
        self
    }

    pub fn host(mut self, host: &'static str) -> Self {
        self.host = host;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: String) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn peer_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.parse().expect("a source IP");
        self
    }

    /// Over mutual TLS, as `spiffe://cluster.local/ns/<namespace>/sa/<account>`.
    pub fn mtls(mut self, namespace: &str, account: &str) -> Self {
        self.principal = Some(format!(
            "spiffe://cluster.local/ns/{namespace}/sa/{account}"
        ));
        self
    }

    /// Over mutual TLS with this exact peer identity.
    pub fn peer(mut self, spiffe_id: &str) -> Self {
        self.principal = Some(spiffe_id.to_string());
        self
    }

    pub fn dest_ip(mut self, ip: &str) -> Self {
        self.destination_ip = ip.parse().expect("a destination IP");
        self
    }

    pub fn sni(mut self, sni: &'static str) -> Self {
        self.sni = Some(sni);
        self
    }

    pub fn jwt(mut self, jwt: AuthnResult) -> Self {
        self.jwt = Some(jwt);
        self
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    /// YAML documents (AuthorizationPolicies, RequestAuthentications).
    pub policies: Vec<String>,
    pub labels: Vec<(&'static str, &'static str)>,
    pub request: Req,
    pub expect: Outcome,
    /// The policy an AUDIT (LOG) filter must mark the request with, when the row checks it.
    pub audited: Option<&'static str>,
    /// Whether some policy selects the workload (the listener then has filters before the
    /// router); checked so that a row cannot pass because its policy silently did not apply.
    pub selected: bool,
    /// Istio's rule that decides the row.
    pub reason: &'static str,
}

/// A row for the default workload.
pub fn case(
    name: &'static str,
    policies: impl IntoIterator<Item = String>,
    request: Req,
    expect: Outcome,
    reason: &'static str,
) -> Case {
    let policies: Vec<String> = policies.into_iter().collect();
    Case {
        name,
        selected: !policies.is_empty(),
        policies,
        labels: WORKLOAD_LABELS.to_vec(),
        request,
        expect,
        audited: None,
        reason,
    }
}

impl Case {
    pub fn labels(mut self, labels: &[(&'static str, &'static str)]) -> Self {
        self.labels = labels.to_vec();
        self
    }

    pub fn audited(mut self, policy: &'static str) -> Self {
        self.audited = Some(policy);
        self
    }

    /// No policy of the row selects the workload: the listener has the router alone.
    pub fn unselected(mut self) -> Self {
        self.selected = false;
        self
    }
}

/// An AuthorizationPolicy document with `spec` (flow-style YAML).
pub fn ap(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

/// A RequestAuthentication document with `spec` (flow-style YAML).
pub fn ra(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

/// One converted HCM filter before the router.
pub enum Filter {
    Jwt(Box<JwtAuthn>),
    Rbac(Rbac),
}

impl Filter {
    /// `jwt_authn` or `rbac <ACTION> [<policy names>]`.
    fn describe(&self) -> String {
        match self {
            Filter::Jwt(_) => "jwt_authn".to_string(),
            Filter::Rbac(rbac) => {
                let names: Vec<&str> = rbac.policies.iter().map(|(name, _)| &**name).collect();
                format!("rbac {:?} {names:?}", rbac.action)
            }
        }
    }
}

/// The `virtualInbound` filters the controller generates for the case's config and workload,
/// converted by the proxy's own `TryFrom`s; the error says what went wrong on the way.
pub fn inbound_filters(case: &Case) -> Result<Vec<Filter>, String> {
    let mut config = ConfigSet::default();
    let text = case.policies.join("---\n");
    load_text(
        &mut config,
        Path::new(&format!("{}.yaml", case.name)),
        &text,
        &ConfigSet::default(),
    );
    if !config.errors.is_empty() {
        return Err(format!("the config does not load: {:?}", config.errors));
    }
    if config.objects.len() != case.policies.len() {
        return Err(format!(
            "{} documents loaded as {} objects",
            case.policies.len(),
            config.objects.len()
        ));
    }
    let model = ConfigCase::local(case.name, config).model();
    let spec = ProxySpec {
        label: case.name.to_string(),
        namespace: WORKLOAD_NAMESPACE.to_string(),
        labels: case
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        app_port: Some(APP_PORT),
        capture: None,
    };
    let proxy = controller_proxy(&spec, 15001, 15006);
    let resource = generate(&model, &proxy, type_url::LISTENER)
        .into_iter()
        .find(|r| r.name == "virtualInbound")
        .ok_or("no virtualInbound listener")?;
    let listener = lds::Listener::decode(resource.body.value.as_slice())
        .map_err(|e| format!("virtualInbound does not decode: {e}"))?;
    let mut chains = listener.filter_chains.iter().map(|chain| {
        let Some(lds::filter::ConfigType::TypedConfig(any)) =
            chain.filters.first().and_then(|f| f.config_type.as_ref())
        else {
            return Err("a filter chain without a typed connection manager".to_string());
        };
        hcm::HttpConnectionManager::decode(any.value.as_slice())
            .map(|hcm| hcm.http_filters)
            .map_err(|e| format!("the connection manager does not decode: {e}"))
    });
    let filters = chains
        .next()
        .ok_or("virtualInbound has no filter chain")??;
    for other in chains {
        if other? != filters {
            return Err("the filter chains carry different HTTP filters".to_string());
        }
    }
    convert(filters)
}

fn convert(filters: Vec<hcm::HttpFilter>) -> Result<Vec<Filter>, String> {
    let count = filters.len();
    let mut out = Vec::new();
    for (i, filter) in filters.into_iter().enumerate() {
        let at = format!("http_filters[{i}] {:?}", filter.name);
        if filter.name == ROUTER {
            return if i + 1 == count {
                Ok(out)
            } else {
                Err(format!("{at}: the router is not last"))
            };
        }
        let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = filter.config_type else {
            return Err(format!("{at}: no typed config"));
        };
        match filter.name.as_str() {
            JWT_AUTHN => {
                let config = JwtAuthentication::decode(any.value.as_slice())
                    .map_err(|e| format!("{at}: {e}"))?;
                let jwt = JwtAuthn::try_from(config).map_err(|e| format!("{at}: {e}"))?;
                out.push(Filter::Jwt(Box::new(jwt)));
            }
            RBAC => {
                let config = http_rbac::Rbac::decode(any.value.as_slice())
                    .map_err(|e| format!("{at}: {e}"))?;
                let rbac = Rbac::try_from(config).map_err(|e| format!("{at}: {e}"))?;
                out.push(Filter::Rbac(rbac));
            }
            // Istio's metrics: no say in whether a request is allowed.
            weft_xds::stats::STATS_FILTER => {}
            other => return Err(format!("{at}: unexpected filter {other}")),
        }
    }
    Err("no router filter".to_string())
}

/// What happened to a request, and who decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// `filter i: policy` (or the JWT error) that decided a denial.
    pub by: Option<String>,
    /// The policy a LOG filter marked the request with.
    pub audit: Option<String>,
}

/// Runs `request` through `filters` in order, as Envoy's filter chain does.
pub fn evaluate(filters: &[Filter], request: &Req) -> Verdict {
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(request.path)
        .header("host", request.host);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let mut http = builder.body(()).expect("a valid request");
    let mut authn = request.jwt.clone();
    let mut audit = None;
    for (i, filter) in filters.iter().enumerate() {
        match filter {
            Filter::Jwt(jwt) => {
                let (mut parts, body) = http.into_parts();
                match jwt.authenticate(&mut parts) {
                    Ok(Some(result)) => authn = Some(result),
                    Ok(None) => {}
                    Err(error) => {
                        return Verdict {
                            outcome: Outcome::Unauthenticated,
                            by: Some(format!("filter {i}: {error}")),
                            audit,
                        };
                    }
                }
                http = hyper::Request::from_parts(parts, body);
            }
            Filter::Rbac(rbac) => {
                let conn = ConnFacts {
                    peer: SocketAddr::new(request.source_ip, 45678),
                    local: SocketAddr::new(request.destination_ip, APP_PORT),
                    principal: request.principal.as_deref(),
                    sni: request.sni,
                };
                let facts = Facts::http(&http, conn, authn.as_ref());
                match rbac.evaluate(&facts) {
                    Decision::Deny { policy } => {
                        return Verdict {
                            outcome: Outcome::Denied,
                            by: Some(format!(
                                "filter {i} ({:?}): {}",
                                rbac.action,
                                policy.map_or("no policy matched", |p| &**p)
                            )),
                            audit,
                        };
                    }
                    Decision::Audit { policy } => audit = Some(policy.to_string()),
                    Decision::Allow { .. } => {}
                }
            }
        }
    }
    Verdict {
        outcome: Outcome::Allowed,
        by: None,
        audit,
    }
}

/// Runs every case; the failures name the case, Istio's rule, the generated filters with their
/// policy names, and the outcome.
pub fn run(cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let filters = match inbound_filters(case) {
            Ok(filters) => filters,
            Err(error) => {
                failures.push(format!("{:?}: pipeline error: {error}", case.name));
                continue;
            }
        };
        if case.selected == filters.is_empty() {
            failures.push(format!(
                "{:?}: expected {}, the listener has {}",
                case.name,
                if case.selected {
                    "the policies to select the workload"
                } else {
                    "no policy to select the workload"
                },
                describe(&filters)
            ));
            continue;
        }
        let verdict = evaluate(&filters, &case.request);
        let audit_ok = case
            .audited
            .is_none_or(|want| verdict.audit.as_deref() == Some(want));
        if verdict.outcome == case.expect && audit_ok {
            continue;
        }
        let mut message = format!("{:?}: expected {:?}", case.name, case.expect);
        if let Some(want) = case.audited {
            let _ = write!(message, " audited by {want}");
        }
        let _ = write!(
            message,
            ", got {:?}{}{}\n    Istio: {}\n    request: {:?}\n    filters: {}",
            verdict.outcome,
            verdict
                .by
                .as_deref()
                .map_or(String::new(), |by| format!(" ({by})")),
            verdict
                .audit
                .as_deref()
                .map_or(String::new(), |p| format!(", audited by {p}")),
            case.reason,
            case.request,
            describe(&filters)
        );
        failures.push(message);
    }
    failures
}

/// The filters before the router, with their actions and policy names.
fn describe(filters: &[Filter]) -> String {
    if filters.is_empty() {
        return "no filter before the router".to_string();
    }
    filters
        .iter()
        .map(Filter::describe)
        .collect::<Vec<_>>()
        .join("; ")
}
