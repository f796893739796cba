//! Types shared by several networking kinds: string matches, destinations, percentages, selectors, header operations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::de::null_default;
use crate::validation::{
    FieldError, Path, Validate, check, check_selector_labels, validate_header_op_name,
    validate_header_value, validate_port, validate_regex, validate_request_header_op_name,
    validate_subset_name, validate_wildcard_domain,
};

/// How a string is matched. In YAML: `{exact: x}`, `{prefix: x}` or `{regex: x}`.
///
/// `Present` is the empty object `{}`: Istio accepts it in `headers`, `withoutHeaders` and
/// `queryParams`, where it means "the header/parameter is present"; everywhere else it is a
/// validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StringMatchRepr", into = "StringMatchRepr")]
pub enum StringMatch {
    /// Exact string match.
    Exact(String),
    /// Prefix match.
    Prefix(String),
    /// RE2-style regular expression match (whole string).
    Regex(String),
    /// `{}`: no match type (presence only, see the type's documentation).
    Present,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StringMatchRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl TryFrom<StringMatchRepr> for StringMatch {
    type Error = String;
    fn try_from(r: StringMatchRepr) -> Result<Self, String> {
        match (r.exact, r.prefix, r.regex) {
            (Some(e), None, None) => Ok(StringMatch::Exact(e)),
            (None, Some(p), None) => Ok(StringMatch::Prefix(p)),
            (None, None, Some(x)) => Ok(StringMatch::Regex(x)),
            (None, None, None) => Ok(StringMatch::Present),
            _ => Err("only one of `exact`, `prefix`, `regex` may be set in a string match".into()),
        }
    }
}

impl From<StringMatch> for StringMatchRepr {
    fn from(m: StringMatch) -> Self {
        let mut r = StringMatchRepr::default();
        match m {
            StringMatch::Exact(s) => r.exact = Some(s),
            StringMatch::Prefix(s) => r.prefix = Some(s),
            StringMatch::Regex(s) => r.regex = Some(s),
            StringMatch::Present => {}
        }
        r
    }
}

impl JsonSchema for StringMatch {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StringMatch".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// An object with at most one of `exact`, `prefix`, `regex` (`{}` is allowed: where Istio
    /// does not accept it, validation says so).
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "maxProperties": 1,
            "properties": {
                "exact": {"type": "string"},
                "prefix": {"type": "string"},
                "regex": {"type": "string"}
            },
            "additionalProperties": false
        })
    }
}

impl StringMatch {
    /// True for `{}`.
    pub fn is_present_only(&self) -> bool {
        matches!(self, StringMatch::Present)
    }

    /// Checks a match that must specify a match type (`uri`, `method`, ...): not `{}`, regex compiles.
    pub fn validate_required(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if self.is_present_only() {
            path.push(
                errors,
                "string match must set one of `exact`, `prefix` or `regex`",
            );
        }
        self.validate_optional(path, errors);
    }

    /// Checks a match where `{}` means presence (headers, query parameters): regex compiles.
    pub fn validate_optional(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let StringMatch::Regex(re) = self {
            check(&path.field("regex"), errors, validate_regex(re));
        }
    }
}

/// A port selected by number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// Port number.
    #[serde(default)]
    pub number: u32,
}

impl Validate for PortSelector {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check(&path.field("number"), errors, validate_port(self.number));
    }
}

/// Where traffic goes: a service host, optionally a subset and a port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service host (short name, FQDN, or a ServiceEntry host).
    #[serde(default)]
    pub host: String,
    /// Subset name declared in a DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Port on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

impl Validate for Destination {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let hp = path.field("host");
        if self.host.is_empty() {
            hp.push(errors, "destination host is required");
        } else if self.host == "*" {
            hp.push(errors, "invalid destination host *");
        } else {
            check(&hp, errors, validate_wildcard_domain(&self.host));
        }
        if let Some(s) = &self.subset {
            check(&path.field("subset"), errors, validate_subset_name(s));
        }
        self.port.validate(&path.field("port"), errors);
    }
}

/// A percentage in 0.0..=100.0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// The percentage.
    #[serde(default)]
    pub value: f64,
}

impl Validate for Percent {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let v = self.value;
        if !(0.0..=100.0).contains(&v) || v.is_nan() {
            path.field("value")
                .push(errors, format!("percentage {v} is not in range 0..100"));
        } else if v > 0.0 && v < 0.0001 {
            path.field("value").push(
                errors,
                format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"),
            );
        }
    }
}

/// Workload selector of ServiceEntry and Sidecar (`workloadSelector.labels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels the workloads must carry.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// Istio's `ValidateAlphaWorkloadSelector` and the CRDs' rules on `labels`: at most 256
/// labels, no empty key, no `*` in a key or a value (the CEL rule's message), values of at
/// most 63 characters. Label syntax is not checked further, as in Istio.
impl Validate for WorkloadSelector {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let labels = path.field("labels");
        if self.labels.len() > 256 {
            labels.push(errors, "must have at most 256 labels");
        }
        for (k, v) in &self.labels {
            let p = labels.key(k);
            let pair = crate::de::quoted(&format!("{k}={v}"));
            if k.is_empty() {
                p.push(
                    errors,
                    format!("empty key is not supported in selector: {pair}"),
                );
            }
            if k.contains('*') || v.contains('*') {
                p.push(
                    errors,
                    format!("wildcard is not supported in selector: {pair}"),
                );
            }
            check_label_value_length(&p, v, errors);
        }
    }
}

/// The bound both of Istio's selector checks put on a label value (at `path`).
fn check_label_value_length(path: &Path, value: &str, errors: &mut Vec<FieldError>) {
    if value.chars().count() > 63 {
        path.push(
            errors,
            format!(
                "label value {} is longer than 63 characters",
                crate::de::quoted(value)
            ),
        );
    }
}

/// Workload selector of DestinationRule (the `istio.type.v1beta1` form: `workloadSelector.matchLabels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyWorkloadSelector {
    /// Labels the workloads must carry.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
}

/// Weft's own kinds (LocalRateLimit): Kubernetes label syntax.
impl Validate for PolicyWorkloadSelector {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        check_selector_labels(&path.field("matchLabels"), errors, &self.match_labels);
    }
}

impl PolicyWorkloadSelector {
    /// The selector (at `path`) as Istio checks it for its kinds (Go `validateWorkloadSelector`
    /// and the CRDs' CEL rules, whose messages these carry): at most 4096 labels, no empty
    /// key, no `*` in a key or a value, values of at most 63 characters. Label syntax is not
    /// checked further, as in Istio.
    pub(crate) fn validate_as_istio(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let labels = path.field("matchLabels");
        if self.match_labels.len() > 4096 {
            labels.push(errors, "must have at most 4096 labels");
        }
        for (k, v) in &self.match_labels {
            let p = labels.key(k);
            let pair = crate::de::quoted(&format!("{k}={v}"));
            if k.is_empty() {
                p.push(errors, format!("key must not be empty (found in {pair})"));
            }
            if k.contains('*') {
                p.push(
                    errors,
                    format!("wildcard not allowed in label key match (found in {pair})"),
                );
            }
            if v.contains('*') {
                p.push(
                    errors,
                    format!("wildcard not allowed in label value match (found in {pair})"),
                );
            }
            check_label_value_length(&p, v, errors);
        }
    }
}

/// Header manipulation for requests and responses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Operations on the request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Operations on the response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Set, add or remove headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub set: BTreeMap<String, String>,
    /// Append these headers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub remove: Vec<String>,
}

/// Which header names an operation list may target.
#[derive(Clone, Copy)]
enum HeaderOpsScope {
    /// Request headers of a route or of one of its destinations: the authority
    /// (`:authority`/`host`) may be set (Istio's `ValidateHTTPHeaderWithAuthorityOperationName`).
    Request,
    /// Response headers: neither.
    Response,
}

impl HeaderOperations {
    fn validate_ops(&self, path: &Path, errors: &mut Vec<FieldError>, scope: HeaderOpsScope) {
        let name_check = |n: &str| match scope {
            HeaderOpsScope::Request => validate_request_header_op_name(n),
            HeaderOpsScope::Response => validate_header_op_name(n),
        };
        for (field, map) in [("set", &self.set), ("add", &self.add)] {
            let fp = path.field(field);
            for (k, v) in map {
                let p = fp.key(k);
                check(&p, errors, name_check(k));
                check(&p, errors, validate_header_value(v));
            }
        }
        for (i, n) in self.remove.iter().enumerate() {
            check(
                &path.field("remove").index(i),
                errors,
                validate_header_op_name(n),
            );
        }
    }
}

impl Headers {
    fn validate_scoped(&self, path: &Path, errors: &mut Vec<FieldError>, request: HeaderOpsScope) {
        if let Some(r) = &self.request {
            r.validate_ops(&path.field("request"), errors, request);
        }
        if let Some(r) = &self.response {
            r.validate_ops(&path.field("response"), errors, HeaderOpsScope::Response);
        }
    }
}

/// Validates the header operations of a route (`http[].headers`) or of one of its
/// destinations (`http[].route[].headers`). Names must be valid HTTP header
/// names; values may use the `%COMMAND%` formatters Weft's proxy implements
/// ([`crate::header_format::SUPPORTED`]).
impl Validate for Headers {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        self.validate_scoped(path, errors, HeaderOpsScope::Request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_match_forms() {
        let m: StringMatch = serde_yaml::from_str("exact: /a").unwrap();
        assert_eq!(m, StringMatch::Exact("/a".into()));
        let m: StringMatch = serde_yaml::from_str("{}").unwrap();
        assert_eq!(m, StringMatch::Present);
        assert!(serde_yaml::from_str::<StringMatch>("{exact: a, prefix: b}").is_err());
        assert!(serde_yaml::from_str::<StringMatch>("{suffix: a}").is_err());
        let y = serde_yaml::to_string(&StringMatch::Regex("a.*".into())).unwrap();
        assert_eq!(y.trim(), "regex: a.*");
    }

    #[test]
    fn destination_rules() {
        let mut errs = Vec::new();
        let d = Destination {
            host: "*".into(),
            subset: Some("v_1".into()),
            port: Some(PortSelector { number: 0 }),
        };
        d.validate(&Path::root("d"), &mut errs);
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d.host", "d.subset", "d.port.number"]);
        errs.clear();
        Destination {
            host: "reviews".into(),
            subset: Some("v1".into()),
            port: Some(PortSelector { number: 9080 }),
        }
        .validate(&Path::root("d"), &mut errs);
        assert!(errs.is_empty());
    }

    #[test]
    fn percent_range() {
        let mut errs = Vec::new();
        Percent { value: 101.0 }.validate(&Path::root("p"), &mut errs);
        Percent { value: -1.0 }.validate(&Path::root("p"), &mut errs);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path, "p.value");
        errs.clear();
        Percent { value: 50.5 }.validate(&Path::root("p"), &mut errs);
        assert!(errs.is_empty());
    }

    #[test]
    fn header_ops() {
        let mut errs = Vec::new();
        let h: Headers = serde_yaml::from_str(
            "request: {set: {':path': x, host: y}, remove: [host]}\nresponse: {add: {x-a: '50%'}}",
        )
        .unwrap();
        h.validate(&Path::root("h"), &mut errs);
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "h.request.set[:path]",
                "h.request.remove[0]",
                "h.response.add[x-a]"
            ]
        );
    }
}
