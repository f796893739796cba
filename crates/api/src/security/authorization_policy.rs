//! `AuthorizationPolicy`: access control on workloads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyTargetReference, no_null_items, validate_policy_target};
use crate::de::null_default;
use crate::networking::PolicyWorkloadSelector;
use crate::validation::{Check, FieldError, Path, Validate, check, validate_ip_subnet};

/// `spec` of an `AuthorizationPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The workloads the policy applies to; all workloads in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicyWorkloadSelector>,
    /// The resource the policy attaches to (a Gateway, Service, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the policy attaches to.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Which requests the policy matches; no rule matches nothing, an empty rule matches all.
    #[serde(
        default,
        deserialize_with = "no_null_items",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 512))]
    pub rules: Vec<Rule>,
    /// What to do with a matching request (default ALLOW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<AuthorizationAction>,
    /// The extension provider of a CUSTOM action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

/// Action of an authorization policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    /// Allow a request only if it matches the rules.
    Allow,
    /// Deny a request if it matches any of the rules.
    Deny,
    /// Audit a request if it matches any of the rules.
    Audit,
    /// Delegate the decision to the extension provider.
    Custom,
}

/// The extension provider of a CUSTOM action.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Name of an extension provider declared in the mesh config.
    #[serde(default)]
    pub name: String,
}

/// A rule: matches when `from`, `to` and `when` all match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources of the request (any of them).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from: Vec<RuleFrom>,
    /// Operations of the request (any of them).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub to: Vec<RuleTo>,
    /// Additional conditions (all of them).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub when: Vec<Condition>,
}

/// `from` entry of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source's attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `to` entry of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation's attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

macro_rules! string_lists {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
                pub $field: Vec<String>,
            )*
        }

        impl $name {
            /// Every list with its YAML field name.
            pub fn lists(&self) -> Vec<(&'static str, &[String])> {
                vec![$((string_lists!(@camel $field), self.$field.as_slice())),*]
            }
        }
    };
    (@camel principals) => { "principals" };
    (@camel not_principals) => { "notPrincipals" };
    (@camel request_principals) => { "requestPrincipals" };
    (@camel not_request_principals) => { "notRequestPrincipals" };
    (@camel namespaces) => { "namespaces" };
    (@camel not_namespaces) => { "notNamespaces" };
    (@camel ip_blocks) => { "ipBlocks" };
    (@camel not_ip_blocks) => { "notIpBlocks" };
    (@camel remote_ip_blocks) => { "remoteIpBlocks" };
    (@camel not_remote_ip_blocks) => { "notRemoteIpBlocks" };
    (@camel service_accounts) => { "serviceAccounts" };
    (@camel not_service_accounts) => { "notServiceAccounts" };
    (@camel trust_domains) => { "trustDomains" };
    (@camel not_trust_domains) => { "notTrustDomains" };
    (@camel hosts) => { "hosts" };
    (@camel not_hosts) => { "notHosts" };
    (@camel ports) => { "ports" };
    (@camel not_ports) => { "notPorts" };
    (@camel methods) => { "methods" };
    (@camel not_methods) => { "notMethods" };
    (@camel paths) => { "paths" };
    (@camel not_paths) => { "notPaths" };
}

string_lists! {
    /// Attributes of a request's source. Values match exactly, by prefix (`abc*`), by suffix
    /// (`*abc`) or by presence (`*`).
    pub struct Source {
        /// Peer identities (`<trust domain>/ns/<namespace>/sa/<service account>`).
        principals,
        /// Negative match of peer identities.
        not_principals,
        /// Request identities (`<iss>/<sub>` of the JWT).
        request_principals,
        /// Negative match of request identities.
        not_request_principals,
        /// Namespaces of the peer.
        namespaces,
        /// Negative match of namespaces.
        not_namespaces,
        /// IP addresses or CIDR blocks of the peer.
        ip_blocks,
        /// Negative match of IP blocks.
        not_ip_blocks,
        /// Original client IP addresses or CIDR blocks (X-Forwarded-For, proxy protocol).
        remote_ip_blocks,
        /// Negative match of remote IP blocks.
        not_remote_ip_blocks,
        /// Service accounts of the peer (`<namespace>/<name>`).
        service_accounts,
        /// Negative match of service accounts.
        not_service_accounts,
        /// Trust domains of the peer identity.
        trust_domains,
        /// Negative match of trust domains.
        not_trust_domains,
    }
}

string_lists! {
    /// Attributes of a request's operation.
    pub struct Operation {
        /// Hosts (the `Host` header).
        hosts,
        /// Negative match of hosts.
        not_hosts,
        /// Destination ports.
        ports,
        /// Negative match of ports.
        not_ports,
        /// HTTP methods (or gRPC `POST`).
        methods,
        /// Negative match of methods.
        not_methods,
        /// HTTP paths.
        paths,
        /// Negative match of paths.
        not_paths,
    }
}

/// An additional condition: `key` must have one of `values` and none of `notValues`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute (`request.headers[x-token]`, `source.ip`, `request.auth.claims[iss]`, ...).
    #[serde(default)]
    pub key: String,
    /// Values that match.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<String>,
    /// Values that do not match.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_values: Vec<String>,
}

/// `when` attributes that take no `[name]` part (Istio's `pkg/config/security` list).
const PLAIN_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

/// `when` attributes written `name[key]`, by prefix.
const MAP_KEY_PREFIXES: &[&str] = &[
    "request.headers",
    "request.experimental.inline.headers",
    "request.auth.claims",
    "experimental.envoy.filters.",
];

/// Source fields the CUSTOM action cannot use (the external authorizer is called before
/// the peer and JWT identities are known).
const NOT_WITH_CUSTOM: &[&str] = &[
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
];

/// Istio's `validateMapKey`: `name[key]` with a non-empty key.
fn check_map_key(key: &str) -> Check {
    let ok = key.ends_with(']')
        && key
            .find('[')
            .is_some_and(|open| open > 0 && open + 2 < key.len());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad key {}: must have the form name[key]",
            crate::de::quoted(key)
        ))
    }
}

/// An IP address or CIDR block as Go's `netip` reads it (no leading zero in the prefix length).
fn check_ip(value: &str) -> Check {
    validate_ip_subnet(value)?;
    if let Some((_, bits)) = value.split_once('/')
        && bits.len() > 1
        && bits.starts_with('0')
    {
        return Err(format!(
            "{} is not a valid CIDR block",
            crate::de::quoted(value)
        ));
    }
    Ok(())
}

/// A port as Istio reads it: decimal digits, at most 65535.
fn check_port(value: &str) -> Check {
    if !value.is_empty()
        && value.bytes().all(|c| c.is_ascii_digit())
        && value.parse::<u32>().is_ok_and(|p| p <= 65535)
    {
        Ok(())
    } else {
        Err(format!(
            "bad port {}: must be a number in 0..65535",
            crate::de::quoted(value)
        ))
    }
}

/// A service account as Istio reads it: `name` or `namespace/name`, no wildcard, at most 320
/// characters.
fn check_service_account(value: &str) -> Check {
    if value.is_empty() {
        return Err("empty value is not allowed".into());
    }
    if value.contains('*') {
        return Err(format!(
            "wildcard not allowed in {}",
            crate::de::quoted(value)
        ));
    }
    if value.len() > 320 {
        return Err(format!(
            "{} is longer than 320 characters",
            crate::de::quoted(value)
        ));
    }
    let format = "expected the form 'serviceAccount' or 'namespace/serviceAccount'";
    match value.split_once('/') {
        Some((_, rest)) if rest.contains('/') => {
            Err(format!("{format}, found {}", crate::de::quoted(value)))
        }
        Some(("", _)) => Err(format!(
            "{format}, found an empty namespace in {}",
            crate::de::quoted(value)
        )),
        Some((_, "")) => Err(format!(
            "{format}, found an empty service account in {}",
            crate::de::quoted(value)
        )),
        _ => Ok(()),
    }
}

fn check_service_accounts(path: &Path, errors: &mut Vec<FieldError>, values: &[String]) {
    if values.len() > 16 {
        path.push(errors, "may not have more than 16 values");
    }
    for (i, v) in values.iter().enumerate() {
        check(&path.index(i), errors, check_service_account(v));
    }
}

/// A path template may use `{*}` and `{**}` (the latter last) as whole segments; the other
/// segments of a template are literals (Istio's `CheckValidPathTemplate`).
fn check_path_template(value: &str) -> Check {
    let template = value.contains("{*}") || value.contains("{**}");
    let mut any_seen = false;
    for segment in value.trim_matches('/').split('/') {
        let is_template = segment == "{*}" || segment == "{**}";
        if is_template && any_seen {
            return Err(format!(
                "invalid or unsupported path {}: {{**}} is not the last operator",
                crate::de::quoted(value)
            ));
        }
        if is_template {
            any_seen |= segment == "{**}";
            continue;
        }
        if segment.contains(['{', '}']) {
            return Err(format!(
                "invalid or unsupported path {}: contains '{{' or '}}' beyond a supported path template",
                crate::de::quoted(value)
            ));
        }
        let literal = !segment.is_empty()
            && segment
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&c));
        if template && !literal {
            return Err(format!(
                "invalid or unsupported path {}: segment {} is not a valid literal",
                crate::de::quoted(value),
                crate::de::quoted(segment)
            ));
        }
    }
    Ok(())
}

fn no_empty_values(path: &Path, errors: &mut Vec<FieldError>, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() {
            path.index(i).push(errors, "empty value is not allowed");
        }
    }
}

fn each(path: &Path, errors: &mut Vec<FieldError>, values: &[String], f: fn(&str) -> Check) {
    for (i, v) in values.iter().enumerate() {
        check(&path.index(i), errors, f(v));
    }
}

impl Validate for Source {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let lists = self.lists();
        if lists.iter().all(|(_, l)| l.is_empty()) {
            path.push(
                errors,
                "from.source must not be empty: set at least one of its fields",
            );
        }
        let uses_accounts =
            !self.service_accounts.is_empty() || !self.not_service_accounts.is_empty();
        let uses_identities = !self.principals.is_empty()
            || !self.not_principals.is_empty()
            || !self.namespaces.is_empty()
            || !self.not_namespaces.is_empty();
        if uses_accounts && uses_identities {
            path.push(
                errors,
                "Cannot set serviceAccounts with namespaces or principals",
            );
        }
        for (name, list) in &lists {
            let p = path.field(name);
            match *name {
                "serviceAccounts" | "notServiceAccounts" => {
                    check_service_accounts(&p, errors, list);
                }
                "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                    no_empty_values(&p, errors, list);
                    each(&p, errors, list, |v| {
                        if v.is_empty() { Ok(()) } else { check_ip(v) }
                    });
                }
                _ => no_empty_values(&p, errors, list),
            }
        }
    }
}

impl Validate for Operation {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let lists = self.lists();
        if lists.iter().all(|(_, l)| l.is_empty()) {
            path.push(
                errors,
                "to.operation must not be empty: set at least one of its fields",
            );
        }
        for (name, list) in &lists {
            let p = path.field(name);
            no_empty_values(&p, errors, list);
            match *name {
                "ports" | "notPorts" => {
                    each(&p, errors, list, |v| {
                        if v.is_empty() { Ok(()) } else { check_port(v) }
                    });
                }
                "paths" | "notPaths" => each(&p, errors, list, check_path_template),
                _ => {}
            }
        }
    }
}

/// Istio's `ValidateAttribute`: what the key means decides what its values must be.
fn validate_attribute(path: &Path, errors: &mut Vec<FieldError>, key: &str, values: &[String]) {
    if values.iter().any(String::is_empty) {
        no_empty_values(path, errors, values);
        return;
    }
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => each(path, errors, values, check_ip),
        "destination.port" => each(path, errors, values, check_port),
        "source.serviceAccount" => check_service_accounts(path, errors, values),
        _ => {}
    }
}

/// The problem with a `when` key, if Istio does not know it.
fn check_condition_key(key: &str) -> Check {
    if MAP_KEY_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return check_map_key(key);
    }
    if PLAIN_KEYS.contains(&key) {
        return Ok(());
    }
    if key == "destination.namespace" {
        return Err(format!(
            "attribute {} is replaced by the policy's metadata.namespace",
            crate::de::quoted(key)
        ));
    }
    if key.starts_with("destination.labels") {
        return Err(format!(
            "attribute {} is replaced by the workload selector",
            crate::de::quoted(key)
        ));
    }
    if key == "destination.name" || key == "destination.user" {
        return Err(format!(
            "deprecated attribute {}: only supported in security.istio.io/v1alpha1",
            crate::de::quoted(key)
        ));
    }
    Err(format!("unknown attribute {}", crate::de::quoted(key)))
}

impl Validate for Condition {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.key.is_empty() {
            path.field("key").push(errors, "key must not be empty");
            return;
        }
        if self.values.is_empty() && self.not_values.is_empty() {
            path.push(
                errors,
                format!(
                    "at least one of values or notValues must be set for key {}",
                    crate::de::quoted(&self.key)
                ),
            );
            return;
        }
        check(&path.field("key"), errors, check_condition_key(&self.key));
        validate_attribute(&path.field("values"), errors, &self.key, &self.values);
        validate_attribute(
            &path.field("notValues"),
            errors,
            &self.key,
            &self.not_values,
        );
    }
}

impl Validate for Rule {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.from.len() > 512 {
            path.field("from")
                .push(errors, "may not have more than 512 sources");
        }
        for (i, f) in self.from.iter().enumerate() {
            let p = path.field("from").index(i);
            match &f.source {
                Some(s) => s.validate(&p.field("source"), errors),
                None => p.field("source").push(errors, "from.source must be set"),
            }
        }
        for (i, t) in self.to.iter().enumerate() {
            let p = path.field("to").index(i);
            match &t.operation {
                Some(o) => o.validate(&p.field("operation"), errors),
                None => p
                    .field("operation")
                    .push(errors, "to.operation must be set"),
            }
        }
        for (i, c) in self.when.iter().enumerate() {
            c.validate(&path.field("when").index(i), errors);
        }
    }
}

impl AuthorizationAction {
    /// The action as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationAction::Allow => "ALLOW",
            AuthorizationAction::Deny => "DENY",
            AuthorizationAction::Audit => "AUDIT",
            AuthorizationAction::Custom => "CUSTOM",
        }
    }
}

/// What the CUSTOM action cannot match on: peer and request identities.
fn validate_custom_rules(path: &Path, errors: &mut Vec<FieldError>, rules: &[Rule]) {
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.index(i);
        for (j, from) in rule.from.iter().enumerate() {
            let Some(source) = &from.source else { continue };
            for (name, list) in source.lists() {
                if !list.is_empty() && NOT_WITH_CUSTOM.contains(&name) {
                    rp.field("from").index(j).field("source").field(name).push(
                        errors,
                        format!("{name} is currently not supported with the CUSTOM action"),
                    );
                }
            }
        }
        for (j, when) in rule.when.iter().enumerate() {
            let key = when.key.as_str();
            if matches!(
                key,
                "source.namespace" | "source.serviceAccount" | "source.principal"
            ) || key.starts_with("request.auth.")
            {
                rp.field("when").index(j).field("key").push(
                    errors,
                    format!(
                        "{} is currently not supported with the CUSTOM action",
                        crate::de::quoted(key)
                    ),
                );
            }
        }
    }
}

impl Validate for AuthorizationPolicy {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        validate_policy_target(
            path,
            errors,
            &self.selector,
            &self.target_ref,
            &self.target_refs,
        );
        let action = self.action.unwrap_or(AuthorizationAction::Allow);
        let never = "without rules is meaningless as it will never be triggered; add an empty rule {} to trigger it for every request";
        match action {
            AuthorizationAction::Custom => {
                if self.rules.is_empty() {
                    path.field("rules")
                        .push(errors, format!("the CUSTOM action {never}"));
                } else if self.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                    path.field("provider").field("name").push(
                        errors,
                        "provider.name must not be empty with the CUSTOM action",
                    );
                }
                validate_custom_rules(&path.field("rules"), errors, &self.rules);
            }
            AuthorizationAction::Deny if self.rules.is_empty() => {
                path.field("rules")
                    .push(errors, format!("the DENY action {never}"));
            }
            _ => {}
        }
        if self.provider.is_some() && action != AuthorizationAction::Custom {
            path.field("provider").push(
                errors,
                format!(
                    "provider can only be set with the CUSTOM action, found {}",
                    action.as_str()
                ),
            );
        }
        if self.rules.len() > 512 {
            path.field("rules")
                .push(errors, "may not have more than 512 rules");
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(&path.field("rules").index(i), errors);
        }
    }
}

#[cfg(test)]
#[path = "authorization_policy_tests.rs"]
mod tests;
