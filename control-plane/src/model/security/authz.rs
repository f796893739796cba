//! AuthorizationPolicy rules parsed into the attribute tests an Envoy RBAC policy is made of,
//! as istiod's `pilot/pkg/security/authz/model` sorts them: tests on the peer and the request's
//! credentials (principals) and tests on the operation (permissions). Everything Istio-specific
//! is decided here (which key means what, service accounts as SPIFFE identities in the trust
//! domain, `*` forms); the generator only encodes the result as Envoy protos.
//!
//! What a rule cannot be translated into (an `experimental.envoy.filters.*` condition, a
//! malformed claim key) is reported and never widens access: an ALLOW rule that needs it is
//! left out (it allows nothing), a DENY or AUDIT rule drops that condition (it matches more
//! requests), as istiod does for rules it cannot express.

use std::net::IpAddr;

use weft_api::security::{
    AuthorizationAction, AuthorizationPolicy, Condition, Operation, Rule, Source,
};

use super::Target;
use crate::object::{ObjectKey, Warning};

/// The RBAC action of a policy (Envoy's ALLOW, DENY, LOG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthzAction {
    /// Requests must match a rule of some ALLOW policy.
    Allow,
    /// Requests matching a rule are denied (also CUSTOM, until ext_authz is supported).
    Deny,
    /// Requests matching a rule are marked for audit logging (Envoy's LOG).
    Audit,
}

/// One AuthorizationPolicy with its rules parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicyEntry {
    pub key: ObjectKey,
    pub target: Target,
    pub action: AuthzAction,
    /// The rules that translate, in order; each keeps its index in `spec.rules`.
    pub rules: Vec<AuthzRule>,
    /// `spec.rules` is empty: the policy matches no request (istiod sends an explicit policy
    /// that never matches, so an ALLOW policy without rules still denies everything else).
    pub matches_nothing: bool,
}

/// One rule: it matches when one of `principals` and one of `permissions` match. Each inner
/// list is one `from` (or `to`) with the rule's `when` conditions of that side appended, all
/// of which must match; an empty inner list matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzRule {
    /// The rule's index in `spec.rules` (Envoy policy `ns[<ns>]-policy[<name>]-rule[<index>]`).
    pub index: usize,
    pub principals: Vec<Vec<PrincipalMatch>>,
    pub permissions: Vec<Vec<PermissionMatch>>,
}

/// `values` (any of them must match) and `notValues` (none may match) of one attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Values<T> {
    pub values: Vec<T>,
    pub not_values: Vec<T>,
}

impl<T> Values<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.not_values.is_empty()
    }
}

/// A string as Istio policies match it: `abc` exactly, `abc*` by prefix, `*abc` by suffix,
/// `*` when present (non-empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Present,
}

impl Pattern {
    /// Istio's reading: `*` first, then a leading `*`, then a trailing `*`.
    pub fn parse(value: &str) -> Self {
        if value == "*" {
            Pattern::Present
        } else if let Some(suffix) = value.strip_prefix('*') {
            Pattern::Suffix(suffix.to_string())
        } else if let Some(prefix) = value.strip_suffix('*') {
            Pattern::Prefix(prefix.to_string())
        } else {
            Pattern::Exact(value.to_string())
        }
    }
}

/// A path: a pattern, or an Envoy URI template (`{*}` → `*`, `{**}` → `**`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Pattern(Pattern),
    Template(String),
}

/// An IP address block; a bare address is a /32 (IPv4) or /128 (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u32,
}

impl Cidr {
    pub fn parse(value: &str) -> Result<Self, String> {
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{value:?} is not an IP address or CIDR block"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u32>()
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| format!("{value:?} has an invalid prefix length"))?,
        };
        Ok(Self {
            address,
            prefix_len,
        })
    }
}

/// A test on who sends the request (Envoy RBAC principal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalMatch {
    /// `source.principals`, `source.principal`: the peer identity, `spiffe://<value>`.
    Principal(Values<Pattern>),
    /// `source.serviceAccounts`, `source.serviceAccount`: full SPIFFE identities
    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`, matched exactly.
    Identity(Values<String>),
    /// `source.namespaces`, `source.namespace`: the namespace in the peer identity (values as
    /// written; every `*` matches any text).
    Namespace(Values<String>),
    /// `source.trustDomains`: the trust domain of the peer identity (values as written; every
    /// `*` matches any text, so exact, prefix, suffix and presence).
    TrustDomain(Values<String>),
    /// `source.ipBlocks`, `source.ip`: the peer's address.
    SourceIp(Values<Cidr>),
    /// `source.remoteIpBlocks`, `remote.ip`: the original client address.
    RemoteIp(Values<Cidr>),
    /// `request.headers[<name>]`.
    Header {
        name: String,
        values: Values<Pattern>,
    },
    /// `source.requestPrincipals` and the `request.auth.principal`, `request.auth.audiences`,
    /// `request.auth.presenter` conditions: the JWT filter's metadata under `key`.
    Authn {
        key: &'static str,
        values: Values<Pattern>,
    },
    /// `request.auth.claims[a][b]`: the claim at `path` (a string, or a list of strings).
    Claim {
        path: Vec<String>,
        values: Values<Pattern>,
    },
}

/// A test on what the request does (Envoy RBAC permission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionMatch {
    /// `to.operation.hosts`: the `:authority`, case-insensitive.
    Host(Values<Pattern>),
    /// `to.operation.methods`: `:method`.
    Method(Values<Pattern>),
    /// `to.operation.paths`.
    Path(Values<PathPattern>),
    /// `to.operation.ports`, `destination.port`.
    Port(Values<u32>),
    /// `destination.ip`.
    DestinationIp(Values<Cidr>),
    /// `connection.sni`.
    Sni(Values<Pattern>),
}

/// The JWT filter metadata key of the request principal (`<iss>/<sub>`).
pub const REQUEST_PRINCIPAL: &str = "request.auth.principal";
/// The JWT filter metadata key of the audiences.
pub const REQUEST_AUDIENCES: &str = "request.auth.audiences";
/// The JWT filter metadata key of the presenter (`azp`).
pub const REQUEST_PRESENTER: &str = "request.auth.presenter";
/// The JWT filter metadata key of the whole payload (claims).
pub const REQUEST_CLAIMS: &str = "request.auth.claims";

/// A part of a rule that does not translate: its field path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
struct RuleError {
    path: String,
    reason: String,
}

/// What parsing one rule needs to know.
struct Context<'a> {
    /// The policy's namespace (the default namespace of `serviceAccounts`).
    namespace: &'a str,
    trust_domain: &'a str,
    errors: Vec<RuleError>,
}

impl AuthorizationPolicyEntry {
    /// Parses a policy; the warnings name what does not translate and what that does.
    pub fn new(
        key: &ObjectKey,
        spec: &AuthorizationPolicy,
        trust_domain: &str,
    ) -> (Self, Vec<Warning>) {
        let action = match spec.action {
            None | Some(AuthorizationAction::Allow) => AuthzAction::Allow,
            // CUSTOM is reported by `unsupported` and enforced as DENY: never a silent allow.
            Some(AuthorizationAction::Deny | AuthorizationAction::Custom) => AuthzAction::Deny,
            Some(AuthorizationAction::Audit) => AuthzAction::Audit,
        };
        let mut rules = Vec::new();
        let mut warnings = Vec::new();
        for (index, rule) in spec.rules.iter().enumerate() {
            let mut context = Context {
                namespace: &key.namespace,
                trust_domain,
                errors: Vec::new(),
            };
            let parsed = AuthzRule::parse(index, rule, &mut context);
            let consequence = match action {
                AuthzAction::Allow => "the rule is left out, so it allows nothing",
                AuthzAction::Deny => {
                    "ignored, so the rule matches more requests (it denies more, never less)"
                }
                AuthzAction::Audit => "ignored, so the rule matches (audits) more requests",
            };
            for error in &context.errors {
                warnings.push(Warning::new(
                    key,
                    error.path.clone(),
                    format!("{}; {consequence}", error.reason),
                ));
            }
            if context.errors.is_empty() || action != AuthzAction::Allow {
                rules.push(parsed);
            }
        }
        let entry = Self {
            key: key.clone(),
            target: Target::of(
                spec.selector.as_ref(),
                spec.target_ref.as_ref(),
                &spec.target_refs,
            ),
            action,
            rules,
            matches_nothing: spec.rules.is_empty(),
        };
        (entry, warnings)
    }
}

/// A `when` condition sorted to its side.
enum Side {
    Principal(PrincipalMatch),
    Permission(PermissionMatch),
}

impl AuthzRule {
    fn parse(index: usize, rule: &Rule, context: &mut Context<'_>) -> Self {
        let path = format!("spec.rules[{index}]");
        let mut base_principals = Vec::new();
        let mut base_permissions = Vec::new();
        for (i, condition) in rule.when.iter().enumerate() {
            let path = format!("{path}.when[{i}]");
            match parse_condition(condition, &path, context) {
                Ok(Side::Principal(test)) => base_principals.push(test),
                Ok(Side::Permission(test)) => base_permissions.push(test),
                Err(reason) => context.errors.push(RuleError {
                    path: format!("{path}.key"),
                    reason,
                }),
            }
        }
        let mut principals = Vec::new();
        for (i, from) in rule.from.iter().enumerate() {
            let path = format!("{path}.from[{i}].source");
            let mut tests = match &from.source {
                Some(source) => source_tests(source, &path, context),
                None => Vec::new(),
            };
            tests.extend(base_principals.iter().cloned());
            principals.push(tests);
        }
        if rule.from.is_empty() {
            principals.push(base_principals);
        }
        let mut permissions = Vec::new();
        for (i, to) in rule.to.iter().enumerate() {
            let path = format!("{path}.to[{i}].operation");
            let mut tests = match &to.operation {
                Some(operation) => operation_tests(operation, &path, context),
                None => Vec::new(),
            };
            tests.extend(base_permissions.iter().cloned());
            permissions.push(tests);
        }
        if rule.to.is_empty() {
            permissions.push(base_permissions);
        }
        Self {
            index,
            principals,
            permissions,
        }
    }
}

/// The tests of one `from.source`, in istiod's order: identities, request principals,
/// namespaces, trust domains, remote IPs, peer IPs.
fn source_tests(source: &Source, path: &str, context: &mut Context<'_>) -> Vec<PrincipalMatch> {
    let mut tests = Vec::new();
    let patterns = |values: &[String], not_values: &[String]| Values {
        values: values.iter().map(|v| Pattern::parse(v)).collect(),
        not_values: not_values.iter().map(|v| Pattern::parse(v)).collect(),
    };
    let principals = patterns(&source.principals, &source.not_principals);
    if !principals.is_empty() {
        tests.push(PrincipalMatch::Principal(principals));
    }
    let accounts = Values {
        values: identities(&source.service_accounts, context),
        not_values: identities(&source.not_service_accounts, context),
    };
    if !accounts.is_empty() {
        tests.push(PrincipalMatch::Identity(accounts));
    }
    let request_principals = patterns(&source.request_principals, &source.not_request_principals);
    if !request_principals.is_empty() {
        tests.push(PrincipalMatch::Authn {
            key: REQUEST_PRINCIPAL,
            values: request_principals,
        });
    }
    let namespaces = Values {
        values: source.namespaces.clone(),
        not_values: source.not_namespaces.clone(),
    };
    if !namespaces.is_empty() {
        tests.push(PrincipalMatch::Namespace(namespaces));
    }
    let trust_domains = Values {
        values: source.trust_domains.clone(),
        not_values: source.not_trust_domains.clone(),
    };
    if !trust_domains.is_empty() {
        tests.push(PrincipalMatch::TrustDomain(trust_domains));
    }
    let remote = cidrs(
        &source.remote_ip_blocks,
        &source.not_remote_ip_blocks,
        &format!("{path}.remoteIpBlocks"),
        &format!("{path}.notRemoteIpBlocks"),
        context,
    );
    if !remote.is_empty() {
        tests.push(PrincipalMatch::RemoteIp(remote));
    }
    let direct = cidrs(
        &source.ip_blocks,
        &source.not_ip_blocks,
        &format!("{path}.ipBlocks"),
        &format!("{path}.notIpBlocks"),
        context,
    );
    if !direct.is_empty() {
        tests.push(PrincipalMatch::SourceIp(direct));
    }
    tests
}

/// The tests of one `to.operation`, in istiod's order: hosts, methods, paths, ports.
fn operation_tests(
    operation: &Operation,
    path: &str,
    context: &mut Context<'_>,
) -> Vec<PermissionMatch> {
    let mut tests = Vec::new();
    let patterns = |values: &[String], not_values: &[String]| Values {
        values: values.iter().map(|v| Pattern::parse(v)).collect(),
        not_values: not_values.iter().map(|v| Pattern::parse(v)).collect(),
    };
    let hosts = patterns(&operation.hosts, &operation.not_hosts);
    if !hosts.is_empty() {
        tests.push(PermissionMatch::Host(hosts));
    }
    let methods = patterns(&operation.methods, &operation.not_methods);
    if !methods.is_empty() {
        tests.push(PermissionMatch::Method(methods));
    }
    let paths = Values {
        values: operation.paths.iter().map(|p| path_pattern(p)).collect(),
        not_values: operation
            .not_paths
            .iter()
            .map(|p| path_pattern(p))
            .collect(),
    };
    if !paths.is_empty() {
        tests.push(PermissionMatch::Path(paths));
    }
    let ports = ports(
        &operation.ports,
        &operation.not_ports,
        &format!("{path}.ports"),
        &format!("{path}.notPorts"),
        context,
    );
    if !ports.is_empty() {
        tests.push(PermissionMatch::Port(ports));
    }
    tests
}

fn parse_condition(
    condition: &Condition,
    path: &str,
    context: &mut Context<'_>,
) -> Result<Side, String> {
    let key = condition.key.as_str();
    let (values, not_values) = (&condition.values, &condition.not_values);
    let patterns = || Values {
        values: values.iter().map(|v| Pattern::parse(v)).collect(),
        not_values: not_values.iter().map(|v| Pattern::parse(v)).collect(),
    };
    let values_path = format!("{path}.values");
    let not_values_path = format!("{path}.notValues");
    let side = match key {
        "source.ip" => Side::Principal(PrincipalMatch::SourceIp(cidrs(
            values,
            not_values,
            &values_path,
            &not_values_path,
            context,
        ))),
        "remote.ip" => Side::Principal(PrincipalMatch::RemoteIp(cidrs(
            values,
            not_values,
            &values_path,
            &not_values_path,
            context,
        ))),
        "source.namespace" => Side::Principal(PrincipalMatch::Namespace(Values {
            values: values.clone(),
            not_values: not_values.clone(),
        })),
        "source.principal" => Side::Principal(PrincipalMatch::Principal(patterns())),
        "source.serviceAccount" => Side::Principal(PrincipalMatch::Identity(Values {
            values: identities(values, context),
            not_values: identities(not_values, context),
        })),
        REQUEST_PRINCIPAL => Side::Principal(PrincipalMatch::Authn {
            key: REQUEST_PRINCIPAL,
            values: patterns(),
        }),
        REQUEST_AUDIENCES => Side::Principal(PrincipalMatch::Authn {
            key: REQUEST_AUDIENCES,
            values: patterns(),
        }),
        REQUEST_PRESENTER => Side::Principal(PrincipalMatch::Authn {
            key: REQUEST_PRESENTER,
            values: patterns(),
        }),
        "destination.ip" => Side::Permission(PermissionMatch::DestinationIp(cidrs(
            values,
            not_values,
            &values_path,
            &not_values_path,
            context,
        ))),
        "destination.port" => Side::Permission(PermissionMatch::Port(ports(
            values,
            not_values,
            &values_path,
            &not_values_path,
            context,
        ))),
        "connection.sni" => Side::Permission(PermissionMatch::Sni(patterns())),
        _ => {
            if let Some(rest) = key.strip_prefix("request.headers") {
                let name = in_brackets(rest)
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| format!("{key:?}: expected request.headers[<header name>]"))?;
                Side::Principal(PrincipalMatch::Header {
                    name: name.to_string(),
                    values: patterns(),
                })
            } else if let Some(rest) = key.strip_prefix(REQUEST_CLAIMS) {
                let path = nested_brackets(rest).ok_or_else(|| {
                    format!("{key:?}: expected request.auth.claims[<claim>] or request.auth.claims[<claim>][<nested claim>]…")
                })?;
                Side::Principal(PrincipalMatch::Claim {
                    path,
                    values: patterns(),
                })
            } else if key.starts_with("experimental.envoy.filters.") {
                return Err(format!(
                    "{key:?}: experimental.envoy.filters.* attributes (Envoy filter metadata) are not supported yet"
                ));
            } else {
                return Err(format!("{key:?} is not a known attribute"));
            }
        }
    };
    Ok(side)
}

/// `[name]` → `name`.
fn in_brackets(text: &str) -> Option<&str> {
    text.strip_prefix('[')?.strip_suffix(']')
}

/// `[a][b]` → `[a, b]`; `None` unless the text is one or more non-empty bracketed names.
fn nested_brackets(text: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        names.push(name.to_string());
        rest = &inner[end + 1..];
    }
    (!names.is_empty()).then_some(names)
}

/// `serviceAccounts` values as SPIFFE identities: `<ns>/<sa>`, or `<sa>` in the policy's
/// namespace.
fn identities(accounts: &[String], context: &Context<'_>) -> Vec<String> {
    accounts
        .iter()
        .map(|account| {
            let (namespace, name) = account
                .split_once('/')
                .unwrap_or((context.namespace, account.as_str()));
            format!("spiffe://{}/ns/{namespace}/sa/{name}", context.trust_domain)
        })
        .collect()
}

fn path_pattern(path: &str) -> PathPattern {
    if path.contains("{*}") || path.contains("{**}") {
        PathPattern::Template(path.replace("{**}", "**").replace("{*}", "*"))
    } else {
        PathPattern::Pattern(Pattern::parse(path))
    }
}

/// Parses every value with `parse`; a value that does not parse (validation rejects them
/// first) is reported and left out, as istiod leaves it out.
fn parse_all<T>(
    list: &[String],
    path: &str,
    context: &mut Context<'_>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut parsed = Vec::new();
    for (i, value) in list.iter().enumerate() {
        match parse(value) {
            Ok(value) => parsed.push(value),
            Err(reason) => context.errors.push(RuleError {
                path: format!("{path}[{i}]"),
                reason,
            }),
        }
    }
    parsed
}

fn cidrs(
    values: &[String],
    not_values: &[String],
    path: &str,
    not_path: &str,
    context: &mut Context<'_>,
) -> Values<Cidr> {
    Values {
        values: parse_all(values, path, context, Cidr::parse),
        not_values: parse_all(not_values, not_path, context, Cidr::parse),
    }
}

fn ports(
    values: &[String],
    not_values: &[String],
    path: &str,
    not_path: &str,
    context: &mut Context<'_>,
) -> Values<u32> {
    let port = |value: &str| {
        value
            .parse::<u16>()
            .map(u32::from)
            .map_err(|_| format!("invalid port {value:?}"))
    };
    Values {
        values: parse_all(values, path, context, port),
        not_values: parse_all(not_values, not_path, context, port),
    }
}
