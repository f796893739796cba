//! `AuthorizationPolicy`: access control on workloads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyTargetReference, validate_policy_target};
use crate::de::null_default;
use crate::networking::PolicyWorkloadSelector;
use crate::validation::{FieldError, Path, Validate, check, validate_ip_subnet};

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
        deserialize_with = "null_default",
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

/// `when` keys Istio knows (exact names, or prefixes of `name[...]` keys).
const KNOWN_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];
const KNOWN_MAP_KEYS: &[&str] = &[
    "request.headers",
    "request.auth.claims",
    "experimental.envoy.filters.",
];

fn validate_ports(path: &Path, errors: &mut Vec<FieldError>, ports: &[String]) {
    for (i, p) in ports.iter().enumerate() {
        if p.parse::<u16>().is_err() {
            path.index(i).push(
                errors,
                format!("invalid port {p:?}: must be a number in 0..65535"),
            );
        }
    }
}

fn validate_ip_blocks(path: &Path, errors: &mut Vec<FieldError>, blocks: &[String]) {
    for (i, b) in blocks.iter().enumerate() {
        check(&path.index(i), errors, validate_ip_subnet(b));
    }
}

fn no_empty_values(path: &Path, errors: &mut Vec<FieldError>, field: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() {
            path.field(field)
                .index(i)
                .push(errors, format!("empty value is not allowed in {field}"));
        }
    }
}

impl Validate for Source {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let lists = self.lists();
        if lists.iter().all(|(_, l)| l.is_empty()) {
            path.push(errors, "`from.source` must not be empty");
        }
        for (name, list) in &lists {
            no_empty_values(path, errors, name, list);
        }
        for (name, list) in [
            ("ipBlocks", &self.ip_blocks),
            ("notIpBlocks", &self.not_ip_blocks),
            ("remoteIpBlocks", &self.remote_ip_blocks),
            ("notRemoteIpBlocks", &self.not_remote_ip_blocks),
        ] {
            validate_ip_blocks(&path.field(name), errors, list);
        }
        let uses_principals = !self.principals.is_empty() || !self.not_principals.is_empty();
        let uses_accounts =
            !self.service_accounts.is_empty() || !self.not_service_accounts.is_empty();
        if uses_principals && uses_accounts {
            path.push(
                errors,
                "cannot set serviceAccounts and principals at the same time",
            );
        }
    }
}

impl Validate for Operation {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let lists = self.lists();
        if lists.iter().all(|(_, l)| l.is_empty()) {
            path.push(errors, "`to.operation` must not be empty");
        }
        for (name, list) in &lists {
            no_empty_values(path, errors, name, list);
        }
        validate_ports(&path.field("ports"), errors, &self.ports);
        validate_ports(&path.field("notPorts"), errors, &self.not_ports);
    }
}

impl Validate for Condition {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let kp = path.field("key");
        if self.key.is_empty() {
            kp.push(errors, "`key` must not be empty");
        } else {
            let known = KNOWN_KEYS.contains(&self.key.as_str())
                || KNOWN_MAP_KEYS.iter().any(|prefix| {
                    self.key.strip_prefix(prefix).is_some_and(|rest| {
                        prefix.ends_with('.')
                            || (rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']'))
                    })
                });
            if !known {
                kp.push(errors, format!("unknown attribute: {}", self.key));
            }
        }
        if self.values.is_empty() && self.not_values.is_empty() {
            path.push(
                errors,
                format!(
                    "at least one of values or notValues must be set for key: {}",
                    self.key
                ),
            );
        }
        match self.key.as_str() {
            "source.ip" | "remote.ip" | "destination.ip" => {
                validate_ip_blocks(&path.field("values"), errors, &self.values);
                validate_ip_blocks(&path.field("notValues"), errors, &self.not_values);
            }
            "destination.port" => {
                validate_ports(&path.field("values"), errors, &self.values);
                validate_ports(&path.field("notValues"), errors, &self.not_values);
            }
            _ => {}
        }
    }
}

impl Validate for Rule {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        for (i, f) in self.from.iter().enumerate() {
            let p = path.field("from").index(i);
            match &f.source {
                Some(s) => s.validate(&p.field("source"), errors),
                None => p.push(errors, "`from.source` must not be nil"),
            }
        }
        for (i, t) in self.to.iter().enumerate() {
            let p = path.field("to").index(i);
            match &t.operation {
                Some(o) => o.validate(&p.field("operation"), errors),
                None => p.push(errors, "`to.operation` must not be nil"),
            }
        }
        for (i, c) in self.when.iter().enumerate() {
            c.validate(&path.field("when").index(i), errors);
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
        let custom = self.action == Some(AuthorizationAction::Custom);
        match (&self.provider, custom) {
            (Some(_), false) => path
                .field("provider")
                .push(errors, "provider can only be used with the CUSTOM action"),
            (None, true) => path
                .field("provider")
                .push(errors, "the CUSTOM action requires a provider"),
            (Some(p), true) if p.name.is_empty() => path
                .field("provider")
                .field("name")
                .push(errors, "provider name must not be empty"),
            _ => {}
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(&path.field("rules").index(i), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let ap: AuthorizationPolicy = serde_yaml::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        ap.validate(&Path::root("spec"), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn accepts_istio_examples() {
        let yaml = r#"
selector: {matchLabels: {app: httpbin}}
action: ALLOW
rules:
- from:
  - source: {principals: ["cluster.local/ns/default/sa/sleep"], ipBlocks: ["10.0.0.0/8"]}
  - source: {namespaces: [test], notRemoteIpBlocks: ["1.2.3.4"]}
  to:
  - operation: {methods: [GET], paths: ["/info*"], ports: ["8080"]}
  when:
  - key: request.auth.claims[iss]
    values: ["https://accounts.google.com"]
  - key: destination.port
    notValues: ["9090"]
- {}
"#;
        assert_eq!(errors(yaml), Vec::<String>::new());
        assert!(errors("{}").is_empty());
        assert!(errors("action: DENY\nrules: [{}]").is_empty());
        assert!(
            errors("action: CUSTOM\nprovider: {name: ext-authz}\nrules: [{to: [{operation: {paths: [/admin]}}]}]")
                .is_empty()
        );
        assert!(
            errors("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]")
                .is_empty()
        );
    }

    #[test]
    fn reports_paths() {
        let yaml = r#"
selector: {matchLabels: {app: a}}
targetRef: {kind: Gateway, name: gw}
provider: {name: x}
rules:
- from: [{source: {}}, {}]
  to: [{operation: {ports: ["http"]}}]
  when: [{key: source.ip, values: ["10.0.0.0/99"]}, {key: bogus}]
"#;
        assert_eq!(
            errors(yaml),
            [
                "spec: only one of selector, targetRef or targetRefs can be set",
                "spec.provider: provider can only be used with the CUSTOM action",
                "spec.rules[0].from[0].source: `from.source` must not be empty",
                "spec.rules[0].from[1]: `from.source` must not be nil",
                "spec.rules[0].to[0].operation.ports[0]: invalid port \"http\": must be a number in 0..65535",
                "spec.rules[0].when[0].values[0]: \"10.0.0.0/99\" is not a valid CIDR block",
                "spec.rules[0].when[1].key: unknown attribute: bogus",
                "spec.rules[0].when[1]: at least one of values or notValues must be set for key: bogus",
            ]
        );
        assert_eq!(
            errors("action: CUSTOM"),
            ["spec.provider: the CUSTOM action requires a provider"]
        );
    }

    #[test]
    fn rejects_unknown_fields_and_values() {
        assert!(serde_yaml::from_str::<AuthorizationPolicy>("action: PERMIT").is_err());
        assert!(
            serde_yaml::from_str::<AuthorizationPolicy>(
                "rules: [{from: [{source: {principal: [a]}}]}]"
            )
            .is_err()
        );
    }
}
