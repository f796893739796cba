//! Whole Kubernetes-style objects (`apiVersion`/`kind`/`metadata`/`spec`) and parsing of multi-document YAML into them.

use std::fmt;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::networking;
use crate::ratelimit;
use crate::security;
use crate::telemetry;
use crate::validation::{FieldError, Path, Validate, ValidationErrors};

/// The API group of the kinds modelled here.
pub const NETWORKING_GROUP: &str = "networking.istio.io";

/// API versions of `networking.istio.io` accepted by [`parse_documents`].
pub const SUPPORTED_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// The API group of PeerAuthentication, AuthorizationPolicy and RequestAuthentication.
pub const SECURITY_GROUP: &str = "security.istio.io";

/// API versions of `security.istio.io` accepted by [`parse_documents`].
pub const SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The API group of Telemetry.
pub const TELEMETRY_GROUP: &str = "telemetry.istio.io";

/// API versions of `telemetry.istio.io` accepted by [`parse_documents`].
pub const TELEMETRY_VERSIONS: &[&str] = &["v1", "v1alpha1"];

/// The API group of Weft's own LocalRateLimit.
pub const RATELIMIT_GROUP: &str = "ratelimit.weft.io";

/// API versions of `ratelimit.weft.io` accepted by [`parse_documents`].
pub const RATELIMIT_VERSIONS: &[&str] = &["v1alpha1"];

/// A Kubernetes-style object: `apiVersion`, `kind`, `metadata`, `spec`. A `status` field is
/// accepted and ignored; any other top-level field is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    from = "ResourceRepr<T>",
    bound(deserialize = "T: Deserialize<'de>")
)]
pub struct Resource<T> {
    /// e.g. `networking.istio.io/v1`.
    pub api_version: String,
    /// e.g. `VirtualService`.
    pub kind: String,
    /// Name, namespace, labels, ...
    pub metadata: ObjectMeta,
    /// The kind-specific spec.
    pub spec: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceRepr<T> {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: T,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

impl<T> From<ResourceRepr<T>> for Resource<T> {
    fn from(r: ResourceRepr<T>) -> Self {
        Resource {
            api_version: r.api_version,
            kind: r.kind,
            metadata: r.metadata,
            spec: r.spec,
        }
    }
}

impl<T> Resource<T> {
    /// A `<group of kind>/<its first version>` (`v1` for Istio's kinds) object of `kind` with
    /// this metadata and spec.
    pub fn new(kind: Kind, metadata: ObjectMeta, spec: T) -> Self {
        Resource {
            api_version: format!("{}/{}", kind.group(), kind.versions()[0]),
            kind: kind.to_string(),
            metadata,
            spec,
        }
    }
}

/// The kinds modelled here (`networking.istio.io`, `security.istio.io`, `telemetry.istio.io`,
/// and Weft's `ratelimit.weft.io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `VirtualService`
    VirtualService,
    /// `DestinationRule`
    DestinationRule,
    /// `ServiceEntry`
    ServiceEntry,
    /// `WorkloadEntry`
    WorkloadEntry,
    /// `WorkloadGroup`
    WorkloadGroup,
    /// `Gateway`
    Gateway,
    /// `Sidecar`
    Sidecar,
    /// `PeerAuthentication` (`security.istio.io`)
    PeerAuthentication,
    /// `AuthorizationPolicy` (`security.istio.io`)
    AuthorizationPolicy,
    /// `RequestAuthentication` (`security.istio.io`)
    RequestAuthentication,
    /// `Telemetry` (`telemetry.istio.io`)
    Telemetry,
    /// `LocalRateLimit` (`ratelimit.weft.io`, Weft's own)
    LocalRateLimit,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 12] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::WorkloadGroup,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::Telemetry,
        Kind::LocalRateLimit,
    ];

    /// The kind name as written in YAML.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::WorkloadGroup => "WorkloadGroup",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Telemetry => "Telemetry",
            Kind::LocalRateLimit => "LocalRateLimit",
        }
    }

    /// The kind's API group.
    pub fn group(&self) -> &'static str {
        match self {
            Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::WorkloadEntry
            | Kind::WorkloadGroup
            | Kind::Gateway
            | Kind::Sidecar => NETWORKING_GROUP,
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                SECURITY_GROUP
            }
            Kind::Telemetry => TELEMETRY_GROUP,
            Kind::LocalRateLimit => RATELIMIT_GROUP,
        }
    }

    /// The API versions of the kind's group that Istio serves (and [`parse_documents`] accepts).
    pub fn versions(&self) -> &'static [&'static str] {
        match self.group() {
            SECURITY_GROUP => SECURITY_VERSIONS,
            TELEMETRY_GROUP => TELEMETRY_VERSIONS,
            RATELIMIT_GROUP => RATELIMIT_VERSIONS,
            _ => SUPPORTED_VERSIONS,
        }
    }

    /// The kind with this exact name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed Istio networking object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
// The variants are part of the public API (callers match on `Resource<T>` directly), so they are not boxed.
#[allow(clippy::large_enum_variant)]
pub enum ConfigObject {
    /// A VirtualService.
    VirtualService(Resource<networking::VirtualService>),
    /// A DestinationRule.
    DestinationRule(Resource<networking::DestinationRule>),
    /// A ServiceEntry.
    ServiceEntry(Resource<networking::ServiceEntry>),
    /// A WorkloadEntry.
    WorkloadEntry(Resource<networking::WorkloadEntry>),
    /// A WorkloadGroup.
    WorkloadGroup(Resource<networking::WorkloadGroup>),
    /// A Gateway.
    Gateway(Resource<networking::Gateway>),
    /// A Sidecar.
    Sidecar(Resource<networking::Sidecar>),
    /// A PeerAuthentication.
    PeerAuthentication(Resource<security::PeerAuthentication>),
    /// An AuthorizationPolicy.
    AuthorizationPolicy(Resource<security::AuthorizationPolicy>),
    /// A RequestAuthentication.
    RequestAuthentication(Resource<security::RequestAuthentication>),
    /// A Telemetry.
    Telemetry(Resource<telemetry::Telemetry>),
    /// A LocalRateLimit (Weft's).
    LocalRateLimit(Resource<ratelimit::LocalRateLimit>),
}

impl ConfigObject {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            ConfigObject::VirtualService(_) => Kind::VirtualService,
            ConfigObject::DestinationRule(_) => Kind::DestinationRule,
            ConfigObject::ServiceEntry(_) => Kind::ServiceEntry,
            ConfigObject::WorkloadEntry(_) => Kind::WorkloadEntry,
            ConfigObject::WorkloadGroup(_) => Kind::WorkloadGroup,
            ConfigObject::Gateway(_) => Kind::Gateway,
            ConfigObject::Sidecar(_) => Kind::Sidecar,
            ConfigObject::PeerAuthentication(_) => Kind::PeerAuthentication,
            ConfigObject::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            ConfigObject::RequestAuthentication(_) => Kind::RequestAuthentication,
            ConfigObject::Telemetry(_) => Kind::Telemetry,
            ConfigObject::LocalRateLimit(_) => Kind::LocalRateLimit,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            ConfigObject::VirtualService(r) => &r.metadata,
            ConfigObject::DestinationRule(r) => &r.metadata,
            ConfigObject::ServiceEntry(r) => &r.metadata,
            ConfigObject::WorkloadEntry(r) => &r.metadata,
            ConfigObject::WorkloadGroup(r) => &r.metadata,
            ConfigObject::Gateway(r) => &r.metadata,
            ConfigObject::Sidecar(r) => &r.metadata,
            ConfigObject::PeerAuthentication(r) => &r.metadata,
            ConfigObject::AuthorizationPolicy(r) => &r.metadata,
            ConfigObject::RequestAuthentication(r) => &r.metadata,
            ConfigObject::Telemetry(r) => &r.metadata,
            ConfigObject::LocalRateLimit(r) => &r.metadata,
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(&self) -> &str {
        match self {
            ConfigObject::VirtualService(r) => &r.api_version,
            ConfigObject::DestinationRule(r) => &r.api_version,
            ConfigObject::ServiceEntry(r) => &r.api_version,
            ConfigObject::WorkloadEntry(r) => &r.api_version,
            ConfigObject::WorkloadGroup(r) => &r.api_version,
            ConfigObject::Gateway(r) => &r.api_version,
            ConfigObject::Sidecar(r) => &r.api_version,
            ConfigObject::PeerAuthentication(r) => &r.api_version,
            ConfigObject::AuthorizationPolicy(r) => &r.api_version,
            ConfigObject::RequestAuthentication(r) => &r.api_version,
            ConfigObject::Telemetry(r) => &r.api_version,
            ConfigObject::LocalRateLimit(r) => &r.api_version,
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// Checks metadata and spec with Istio's rules; every error carries its path
    /// (`metadata.name`, `spec.http[0].route`, ...).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let meta = self.metadata();
        meta.validate(&Path::root("metadata"), &mut errors);
        self.validate_annotations(&mut errors);
        let ns = meta.namespace.as_deref();
        let spec = Path::root("spec");
        match self {
            ConfigObject::VirtualService(r) => r.spec.validate_in_namespace(ns, &spec, &mut errors),
            ConfigObject::DestinationRule(r) => {
                r.spec.validate_in_namespace(ns, &spec, &mut errors)
            }
            ConfigObject::ServiceEntry(r) => r.spec.validate_in_namespace(ns, &spec, &mut errors),
            ConfigObject::WorkloadEntry(r) => r.spec.validate(&spec, &mut errors),
            ConfigObject::WorkloadGroup(r) => r.spec.validate(&spec, &mut errors),
            ConfigObject::Gateway(r) => {
                if !crate::validation::is_istio_dns1123_label(&meta.name) && !meta.name.is_empty() {
                    Path::root("metadata").field("name").push(
                        &mut errors,
                        format!(
                            "invalid gateway name {}: must be a DNS-1123 label (no dots)",
                            crate::quoted(&meta.name)
                        ),
                    );
                }
                r.spec.validate(&spec, &mut errors)
            }
            ConfigObject::Sidecar(r) => r.spec.validate_in_namespace(ns, &spec, &mut errors),
            ConfigObject::PeerAuthentication(r) => r.spec.validate(&spec, &mut errors),
            ConfigObject::AuthorizationPolicy(r) => r.spec.validate(&spec, &mut errors),
            ConfigObject::RequestAuthentication(r) => r.spec.validate(&spec, &mut errors),
            ConfigObject::Telemetry(r) => r.spec.validate(&spec, &mut errors),
            ConfigObject::LocalRateLimit(r) => r.spec.validate(&spec, &mut errors),
        }
        ValidationErrors::into_result(errors)
    }
}

/// `istio.io/dry-run`: an AuthorizationPolicy's only (Istio's `checkDryRunAnnotation`).
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Annotations Istio's webhook refuses on every object: internal ones, which only istiod
/// sets on what it generates (`validateMetadata`).
const INTERNAL_ANNOTATIONS: &[&str] = &[
    "internal.istio.io/webhook-always-reject",
    "internal.istio.io/parents",
];

/// Go's `strconv.ParseBool`, which Istio reads `istio.io/dry-run` with.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl ConfigObject {
    /// The annotations Istio's webhook checks on every object (`validateMetadata`).
    fn validate_annotations(&self, errors: &mut Vec<FieldError>) {
        let annotations = &self.metadata().annotations;
        let at = |name: &str| Path::root("metadata").field("annotations").key(name);
        for name in INTERNAL_ANNOTATIONS {
            if annotations.contains_key(*name) {
                at(name).push(errors, "an internal annotation; it may not be set by users");
            }
        }
        let Some(value) = annotations.get(DRY_RUN_ANNOTATION) else {
            return;
        };
        let ConfigObject::AuthorizationPolicy(policy) = self else {
            at(DRY_RUN_ANNOTATION).push(
                errors,
                format!(
                    "unsupported on a {}: only an AuthorizationPolicy can be in dry-run mode; remove the annotation",
                    self.kind()
                ),
            );
            return;
        };
        use crate::security::AuthorizationAction;
        match policy.spec.action.unwrap_or(AuthorizationAction::Allow) {
            AuthorizationAction::Allow | AuthorizationAction::Deny => {
                if parse_go_bool(value).is_none() {
                    at(DRY_RUN_ANNOTATION).push(
                        errors,
                        format!("{} is not a boolean (true or false)", crate::quoted(value)),
                    );
                }
            }
            other => at(DRY_RUN_ANNOTATION).push(
                errors,
                format!(
                    "only an ALLOW or DENY policy can be in dry-run mode, not {}",
                    serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            ),
        }
    }
}

/// Why one YAML document did not produce a valid object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocumentError {
    /// Not an Istio networking kind modelled here (e.g. a Deployment or a Service): callers
    /// skip it quietly.
    #[error("unsupported object {kind} ({api_version})")]
    Unsupported {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
    },
    /// Bad YAML, a modelled kind whose fields do not deserialize, or an object that fails
    /// validation. Every error carries a field path.
    #[error("invalid {}:\n{errors}", describe(kind, name, namespace))]
    Invalid {
        /// The document's kind, if it could be read.
        kind: Option<String>,
        /// `metadata.name`, if it could be read.
        name: Option<String>,
        /// `metadata.namespace`, if it could be read.
        namespace: Option<String>,
        /// What is wrong, with paths.
        errors: ValidationErrors,
    },
}

impl DocumentError {
    /// True for documents of kinds not modelled here (callers skip them quietly).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, DocumentError::Unsupported { .. })
    }

    /// The field errors of an `Invalid` document (empty for `Unsupported`).
    pub fn errors(&self) -> &[FieldError] {
        match self {
            DocumentError::Unsupported { .. } => &[],
            DocumentError::Invalid { errors, .. } => &errors.0,
        }
    }
}

macro_rules! impl_from_resource {
    ($module:ident: $($variant:ident),*) => {$(
        impl From<Resource<$module::$variant>> for ConfigObject {
            fn from(r: Resource<$module::$variant>) -> Self {
                ConfigObject::$variant(r)
            }
        }
    )*};
}

impl_from_resource!(
    networking: VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    WorkloadGroup,
    Gateway,
    Sidecar
);
impl_from_resource!(
    security: PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication
);
impl_from_resource!(telemetry: Telemetry);
impl_from_resource!(ratelimit: LocalRateLimit);

fn describe(kind: &Option<String>, name: &Option<String>, namespace: &Option<String>) -> String {
    let kind = kind.as_deref().unwrap_or("document");
    match (namespace, name) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => kind.to_string(),
    }
}

pub use crate::documents::{ParsedDocument, parse_documents};

fn get_str<'a>(map: &'a serde_yaml::Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(serde_yaml::Value::as_str)
}

/// The kinds whose schema requires `spec` (Istio's `required: [spec]`).
pub const SPEC_REQUIRED: &[&str] = &["ServiceEntry", "WorkloadEntry", "WorkloadGroup"];

/// Parses one already-loaded YAML document.
pub fn parse_value(mut value: serde_yaml::Value) -> Result<ConfigObject, DocumentError> {
    let invalid = |kind: Option<&str>, name: Option<&str>, ns: Option<&str>, e: Vec<FieldError>| {
        DocumentError::Invalid {
            kind: kind.map(str::to_string),
            name: name.map(str::to_string),
            namespace: ns.map(str::to_string),
            errors: ValidationErrors(e),
        }
    };
    if let Err(e) = value.apply_merge() {
        return Err(invalid(
            None,
            None,
            None,
            vec![FieldError::new("", format!("invalid YAML merge key: {e}"))],
        ));
    }
    let Some(map) = value.as_mapping() else {
        return Err(invalid(
            None,
            None,
            None,
            vec![FieldError::new(
                "",
                "document is not a mapping (expected an object with apiVersion and kind)",
            )],
        ));
    };
    let meta = map.get("metadata").and_then(serde_yaml::Value::as_mapping);
    let name = meta.and_then(|m| get_str(m, "name")).map(str::to_string);
    let namespace = meta
        .and_then(|m| get_str(m, "namespace"))
        .map(str::to_string);
    let api_version = get_str(map, "apiVersion").map(str::to_string);
    let kind = get_str(map, "kind").map(str::to_string);

    let mut missing = Vec::new();
    if api_version.is_none() {
        missing.push(FieldError::new(
            "apiVersion",
            "apiVersion is required and must be a string",
        ));
    }
    if kind.is_none() {
        missing.push(FieldError::new(
            "kind",
            "kind is required and must be a string",
        ));
    }
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Err(invalid(
            None,
            name.as_deref(),
            namespace.as_deref(),
            missing,
        ));
    };
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let Some(k) = Kind::parse(&kind).filter(|k| k.group() == group) else {
        return Err(DocumentError::Unsupported { api_version, kind });
    };
    if !k.versions().contains(&version) {
        return Err(invalid(
            Some(&kind),
            name.as_deref(),
            namespace.as_deref(),
            vec![FieldError::new(
                "apiVersion",
                format!(
                    "unsupported version {} of {}; use one of {}",
                    crate::quoted(version),
                    k.group(),
                    k.versions().join(", ")
                ),
            )],
        ));
    }

    // As in Istio's CRDs, only the kinds whose schema requires `spec` refuse an object
    // without one; the others are validated as an empty spec (where Istio's validation then
    // names what is missing, such as a VirtualService's hosts).
    if let Some(map) = value.as_mapping_mut()
        && map.get("spec").is_none_or(serde_yaml::Value::is_null)
    {
        if SPEC_REQUIRED.contains(&k.as_str()) {
            return Err(invalid(
                Some(&kind),
                name.as_deref(),
                namespace.as_deref(),
                vec![FieldError::new(
                    "spec",
                    format!("required: a {kind} must have a spec"),
                )],
            ));
        }
        map.insert("spec".into(), serde_yaml::Mapping::new().into());
    }

    // The schema first, as the API server checks it before any webhook: every error at once.
    if let Some(spec) = value.get("spec")
        && let Ok(spec) = serde_json::to_value(spec)
    {
        let errors = crate::crd::check_spec(k, &spec);
        if !errors.is_empty() {
            return Err(invalid(
                Some(&kind),
                name.as_deref(),
                namespace.as_deref(),
                errors,
            ));
        }
    }

    fn load<T: DeserializeOwned>(value: serde_yaml::Value) -> Result<Resource<T>, FieldError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            FieldError::new(path, crate::de::plain_message(&e.into_inner().to_string()))
        })
    }

    let object = match k {
        Kind::VirtualService => load(value).map(ConfigObject::VirtualService),
        Kind::DestinationRule => load(value).map(ConfigObject::DestinationRule),
        Kind::ServiceEntry => load(value).map(ConfigObject::ServiceEntry),
        Kind::WorkloadEntry => load(value).map(ConfigObject::WorkloadEntry),
        Kind::WorkloadGroup => load(value).map(ConfigObject::WorkloadGroup),
        Kind::Gateway => load(value).map(ConfigObject::Gateway),
        Kind::Sidecar => load(value).map(ConfigObject::Sidecar),
        Kind::PeerAuthentication => load(value).map(ConfigObject::PeerAuthentication),
        Kind::AuthorizationPolicy => load(value).map(ConfigObject::AuthorizationPolicy),
        Kind::RequestAuthentication => load(value).map(ConfigObject::RequestAuthentication),
        Kind::Telemetry => load(value).map(ConfigObject::Telemetry),
        Kind::LocalRateLimit => load(value).map(ConfigObject::LocalRateLimit),
    }
    .map_err(|e| invalid(Some(&kind), name.as_deref(), namespace.as_deref(), vec![e]))?;

    match object.validate() {
        Ok(()) => Ok(object),
        Err(errors) => Err(invalid(
            Some(&kind),
            name.as_deref(),
            namespace.as_deref(),
            errors.0,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_errors(doc: &ParsedDocument) -> Vec<String> {
        match &doc.result {
            Err(DocumentError::Invalid { errors, .. }) => {
                errors.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn multi_document() {
        let text = "
# leading comment only
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec: {replicas: 1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
status: {anything: goes}
---
";
        let docs = parse_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [0, 1, 2]);
        let vs = docs[0].result.as_ref().unwrap();
        assert_eq!(vs.kind(), Kind::VirtualService);
        assert_eq!(vs.metadata().namespace.as_deref(), Some("default"));
        assert_eq!(
            docs[1].result,
            Err(DocumentError::Unsupported {
                api_version: "apps/v1".into(),
                kind: "Deployment".into()
            })
        );
        assert_eq!(
            docs[2].result.as_ref().unwrap().kind(),
            Kind::DestinationRule
        );
    }

    #[test]
    fn unknown_field_has_path() {
        let text = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {hots: reviews}
";
        let docs = parse_documents(text);
        assert_eq!(
            invalid_errors(&docs[0]),
            [
                "spec.http[0].route[0].destination.hots: unknown field \"hots\"; known fields: host, port, subset"
            ]
        );
        match &docs[0].result {
            Err(DocumentError::Invalid {
                kind,
                name,
                namespace,
                ..
            }) => {
                assert_eq!(kind.as_deref(), Some("VirtualService"));
                assert_eq!(name.as_deref(), Some("r"));
                assert_eq!(namespace.as_deref(), None);
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn validation_errors_reported() {
        let text = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
      weight: 0
";
        let docs = parse_documents(text);
        assert_eq!(
            invalid_errors(&docs[0]),
            ["spec.http[0].route: total destination weight = 0"]
        );
    }

    #[test]
    fn bad_documents() {
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [a]\n",
        );
        assert_eq!(docs.len(), 1);
        assert!(invalid_errors(&docs[0])[0].contains("invalid YAML"));
        let docs = parse_documents("- a\n- b\n");
        assert!(invalid_errors(&docs[0])[0].contains("not a mapping"));
        let docs = parse_documents("kind: VirtualService\n");
        assert_eq!(
            invalid_errors(&docs[0]),
            ["apiVersion: apiVersion is required and must be a string"]
        );
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: r}\nspec: {}\n",
        );
        assert!(invalid_errors(&docs[0])[0].starts_with("apiVersion: unsupported version"));
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: r}\nspec: {}\n",
        );
        assert!(matches!(
            docs[0].result,
            Err(DocumentError::Unsupported { .. })
        ));
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetdata: {name: r}\nspec: {}\n",
        );
        assert!(invalid_errors(&docs[0])[0].starts_with("metdata: unknown field"));
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [a], http: [{timeout: 5, route: [{destination: {host: a}}]}]}\n",
        );
        let e = invalid_errors(&docs[0]);
        assert!(e[0].starts_with("spec.http[0].timeout: "), "{e:?}");
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [a], http: [{timeout: 5x, route: [{destination: {host: a}}]}]}\n",
        );
        let e = invalid_errors(&docs[0]);
        assert!(e[0].contains("unknown unit"), "{e:?}");
        assert!(parse_documents("").is_empty());
        assert!(parse_documents("---\n---\n").is_empty());
    }

    #[test]
    fn aliases_and_nulls() {
        let text = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
  labels:
spec:
  host: reviews
  subsets:
  - &v1 {name: v1, labels: {version: v1}}
  exportTo:
";
        let docs = parse_documents(text);
        let obj = docs[0].result.as_ref().unwrap();
        let ConfigObject::DestinationRule(dr) = obj else {
            panic!("{obj:?}")
        };
        assert_eq!(dr.spec.subsets.len(), 1);
        assert!(dr.spec.export_to.is_empty());
    }

    #[test]
    fn collects_all_errors() {
        let text = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: Bad_Name}
spec:
  host: ''
  subsets: [{name: v1}, {name: v1}]
  trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}
";
        let docs = parse_documents(text);
        let e = invalid_errors(&docs[0]);
        assert_eq!(e.len(), 4, "{e:?}");
        let err = docs[0].result.clone().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid DestinationRule Bad_Name:\nmetadata.name: "),
            "{err}"
        );
    }
}
