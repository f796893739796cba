//! Validation errors with field paths, the `Validate` trait, and the shared checks Istio applies to many fields.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::duration::Duration;

/// One problem found in one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is, e.g. `spec.http[1].route[0].weight`. Empty when the problem concerns the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`. Rust's `\u{…}` escapes in the message (from a value formatted
    /// with `{:?}`) become JSON's, so a value reads as a user wrote it in YAML; prefer
    /// [`crate::quoted`] for values in new messages.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: crate::de::unescape_rust(&message.into()),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Every problem found in one object. Displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// True when there is no error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// `Ok(())` if `errors` is empty, else the errors.
    pub fn into_result(errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl From<Vec<FieldError>> for ValidationErrors {
    fn from(v: Vec<FieldError>) -> Self {
        ValidationErrors(v)
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        ValidationErrors(vec![e])
    }
}

impl IntoIterator for ValidationErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A field path being built while walking an object: `spec`, `spec.http[0]`, `spec.subsets[1].labels[app]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(String);

impl Path {
    /// A path starting at `name` (usually `"spec"`).
    pub fn root(name: &str) -> Path {
        Path(name.to_string())
    }

    /// `self.name`.
    pub fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }

    /// `self[index]`.
    pub fn index(&self, index: usize) -> Path {
        Path(format!("{}[{}]", self.0, index))
    }

    /// `self[key]`, for map entries.
    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{}]", self.0, key))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An error at this path.
    pub fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(self.0.clone(), message)
    }

    /// Pushes an error at this path onto `errors`.
    pub fn push(&self, errors: &mut Vec<FieldError>, message: impl Into<String>) {
        errors.push(self.error(message));
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A spec type that can check itself. Implementations collect every error (never stop at the first),
/// each with the full path of the offending field.
pub trait Validate {
    /// Appends every problem found in `self` (located at `path`) to `errors`.
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>);

    /// Validates `self` as a top-level `spec`.
    fn validate_spec(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        self.validate(&Path::root("spec"), &mut errors);
        ValidationErrors::into_result(errors)
    }
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, path: &Path, errors: &mut Vec<FieldError>) {
        if let Some(v) = self {
            v.validate(path, errors);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks. Each returns `Err(message)`; callers attach the path.
// ---------------------------------------------------------------------------------------------

/// Result of a single check: the error message on failure.
pub type Check = Result<(), String>;

/// Pushes the message of a failed check at `path`.
pub fn check(path: &Path, errors: &mut Vec<FieldError>, result: Check) {
    if let Err(m) = result {
        errors.push(path.error(m));
    }
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label as Kubernetes defines it: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| is_alnum(c) || c == b'-')
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
}

/// A DNS-1123 label as Istio checks it (`labels.IsDNS1123Label`): like Kubernetes' but upper-case
/// letters are allowed. Used for subset names, port names, gateway and namespace references.
pub fn is_istio_dns1123_label(s: &str) -> bool {
    is_host_label(s)
}

/// RFC 1123 subdomain as Kubernetes defines it: at most 253 characters of dot-separated labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A host-name label, which unlike Kubernetes object names may contain upper case letters.
fn is_host_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| ok(c) || c == b'-')
        && ok(b[0])
        && ok(b[b.len() - 1])
}

fn dns_preconditions(name: &str) -> Check {
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    Ok(())
}

fn dns_labels(domain: &str, whole: &str) -> Check {
    let parts: Vec<&str> = domain.split('.').collect();
    if let Some(top) = parts.last()
        && !top.is_empty()
        && top.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(format!(
            "domain name {whole:?} invalid (top level domain {top:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        // A trailing dot (`istio.io.`) is allowed.
        if i == parts.len() - 1 && label.is_empty() && i > 0 {
            return Ok(());
        }
        if !is_host_label(label) {
            return Err(format!(
                "domain name {whole:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// A fully qualified or short host name without wildcards (Istio's `ValidateFQDN`).
pub fn validate_fqdn(name: &str) -> Check {
    dns_preconditions(name)?;
    dns_labels(name, name)
}

/// A host name whose first label may be a wildcard: `*`, `*.example.com`, `reviews`, `a.b.c`
/// (Istio's `ValidateWildcardDomain`).
pub fn validate_wildcard_domain(name: &str) -> Check {
    dns_preconditions(name)?;
    let (first, rest) = match name.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    let first_ok = first == "*" || is_host_label(first) || {
        // Partial wildcards such as `*foo` are accepted (Istio only warns).
        first.strip_prefix('*').is_some_and(|r| {
            !r.is_empty()
                && r.len() < 63
                && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && r.as_bytes()[r.len() - 1].is_ascii_alphanumeric()
        })
    };
    if !first_ok {
        return Err(format!(
            "domain name {name:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => dns_labels(r, name),
        None => Ok(()),
    }
}

/// True if `s` parses as an IPv4 or IPv6 address.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address or a CIDR block.
pub fn validate_ip_subnet(s: &str) -> Check {
    if let Some((addr, bits)) = s.split_once('/') {
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a valid CIDR block"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match bits.parse::<u8>() {
            Ok(b) if b <= max && bits.bytes().all(|c| c.is_ascii_digit()) => Ok(()),
            _ => Err(format!("{s:?} is not a valid CIDR block")),
        }
    } else if is_ip(s) {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid IP address or CIDR block"))
    }
}

/// A port number in 1..=65535.
pub fn validate_port(port: u32) -> Check {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// Istio's duration rule: at least 1ms and a whole number of milliseconds.
pub fn validate_duration(d: &Duration) -> Check {
    let d = d.0;
    if d < std::time::Duration::from_millis(1) {
        return Err(format!(
            "duration must be at least 1ms, got {}",
            Duration(d)
        ));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "only durations to ms precision are supported, got {}",
            Duration(d)
        ));
    }
    Ok(())
}

/// Validates a duration field if present.
pub fn check_duration(path: &Path, errors: &mut Vec<FieldError>, d: &Option<Duration>) {
    if let Some(d) = d {
        check(path, errors, validate_duration(d));
    }
}

/// Percent as an integer in 0..=100.
pub fn validate_percent_int(v: i64) -> Check {
    if (0..=100).contains(&v) {
        Ok(())
    } else {
        Err(format!("percentage {v} is not in range 0..100"))
    }
}

fn is_label_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
pub fn validate_label_key(key: &str) -> Check {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(is_host_label)
                && is_label_name_part(name)
        }
        None => is_label_name_part(key),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label key: {key:?}"))
    }
}

/// A Kubernetes label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn validate_label_value(value: &str) -> Check {
    if value.is_empty() || is_label_name_part(value) {
        Ok(())
    } else {
        Err(format!("invalid label value: {value:?}"))
    }
}

/// Validates every key and value of a label map; errors are reported on `path[key]`.
pub fn check_labels(path: &Path, errors: &mut Vec<FieldError>, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let p = path.key(k);
        check(&p, errors, validate_label_key(k));
        check(&p, errors, validate_label_value(v));
    }
}

/// Validates a workload-selector label map (no empty keys, no wildcards, valid labels).
pub fn check_selector_labels(
    path: &Path,
    errors: &mut Vec<FieldError>,
    labels: &BTreeMap<String, String>,
) {
    for (k, v) in labels {
        let p = path.key(k);
        if k.is_empty() {
            p.push(
                errors,
                format!("empty key is not supported in selector: \"{k}={v}\""),
            );
            continue;
        }
        if k.contains('*') || v.contains('*') {
            p.push(
                errors,
                format!("wildcard is not supported in selector: \"{k}={v}\""),
            );
            continue;
        }
        check(&p, errors, validate_label_key(k));
        check(&p, errors, validate_label_value(v));
    }
}

/// A regular expression as used in matches: at most 1024 characters and compilable.
pub fn validate_regex(re: &str) -> Check {
    if re.is_empty() {
        return Err("regex must not be empty".into());
    }
    if re.len() > 1024 {
        return Err("regex is too large, max length allowed is 1024".into());
    }
    match regex::Regex::new(re) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "invalid regex {re:?}: {}; Istio uses RE2 syntax",
            e.to_string().lines().last().unwrap_or("parse error").trim()
        )),
    }
}

/// A header name used in a match: not empty, only `[-_A-Za-z0-9]`, and lower case.
pub fn validate_match_header_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(format!("header name {name:?} is not a valid header name"));
    }
    if name.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("header name {name:?} must be lowercase"));
    }
    Ok(())
}

/// A header name for CORS lists: `*` or a valid header name (any case).
pub fn validate_cors_header_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name == "*"
        || name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        Ok(())
    } else {
        Err(format!("header name {name:?} is not a valid header name"))
    }
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// An HTTP field name (RFC 9110 token), which the proxy needs to build the header.
fn check_token(name: &str) -> Check {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.bytes().all(token) {
        Ok(())
    } else {
        Err(format!(
            "invalid header {name:?}: not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
        ))
    }
}

/// A header name in a route's request `set`/`add`: may target the authority, not other
/// pseudo-headers.
pub fn validate_request_header_op_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_authority_header(name) {
        return Ok(());
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    check_token(name)
}

/// A header name in a destination's request `set`/`add`: may target `host`, not pseudo-headers
/// (Istio's `ValidateHTTPHeaderWithHostOperationName`).
pub fn validate_destination_request_header_op_name(name: &str) -> Check {
    if name.eq_ignore_ascii_case("host") {
        return Ok(());
    }
    validate_header_op_name(name)
}

/// A header name in a `remove` list or a response operation: no pseudo-headers, no Host.
pub fn validate_header_op_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    check_token(name)
}

/// A header value in a `set`/`add` operation, as Weft's proxy parses it: no control characters,
/// and every `%` either `%%` or a supported `%COMMAND%` (see [`crate::header_format`]).
pub fn validate_header_value(value: &str) -> Check {
    crate::header_format::check_header_value(value)
}

/// Validates `exportTo`: `.`, `*`, `~` (service entries only) or namespace names, no duplicates,
/// `*` and `~` alone.
pub fn check_export_to(
    path: &Path,
    errors: &mut Vec<FieldError>,
    namespace: Option<&str>,
    export_to: &[String],
    is_service_entry: bool,
) {
    let mut seen = BTreeSet::new();
    for (i, e) in export_to.iter().enumerate() {
        let p = path.index(i);
        let key = if e == "." {
            namespace.unwrap_or(".").to_string()
        } else {
            e.clone()
        };
        if seen.contains(&key) {
            if key != *e {
                p.push(
                    errors,
                    format!("duplicate entries in exportTo: . and current namespace {key}"),
                );
            } else {
                p.push(
                    errors,
                    format!("duplicate entries in exportTo for entry {e}"),
                );
            }
            continue;
        }
        let valid =
            e == "." || e == "*" || (e == "~" && is_service_entry) || is_istio_dns1123_label(e);
        if !valid {
            p.push(
                errors,
                format!(
                    "invalid exportTo value {e:?}: must be \".\", \"*\"{} or a namespace name",
                    if is_service_entry { ", \"~\"" } else { "" }
                ),
            );
        } else {
            seen.insert(key);
        }
    }
    if export_to.len() > 1 && export_to.iter().any(|e| e == "*") {
        path.push(
            errors,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if export_to.len() > 1 && export_to.iter().any(|e| e == "~") {
        path.push(
            errors,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// `subset` names: non-empty DNS-1123 labels.
pub fn validate_subset_name(name: &str) -> Check {
    if name.is_empty() {
        return Err("subset name cannot be empty".into());
    }
    if !is_istio_dns1123_label(name) {
        return Err(format!(
            "subset name is invalid: {name:?} (must be a DNS-1123 label)"
        ));
    }
    Ok(())
}

/// A port name: a DNS-1123 label.
pub fn validate_port_name(name: &str) -> Check {
    if is_istio_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid port name: {name:?} (must be a DNS-1123 label)"
        ))
    }
}

/// A gateway reference in a VirtualService: `mesh`, `name`, `namespace/name` or a legacy FQDN.
pub fn validate_gateway_name(name: &str) -> Check {
    match name.split_once('/') {
        None => validate_fqdn(name),
        Some((ns, gw)) => {
            if ns.is_empty() || gw.is_empty() {
                return Err("config namespace and gateway name cannot be empty".into());
            }
            if !is_istio_dns1123_label(ns) {
                return Err(format!("invalid value for namespace: {ns:?}"));
            }
            if !is_istio_dns1123_label(gw) {
                return Err(format!("invalid value for gateway name: {gw:?}"));
            }
            Ok(())
        }
    }
}

/// A unix domain socket path (after `unix://`): absolute, not ending in `/`, or an abstract `@name`.
pub fn validate_unix_address(addr: &str) -> Check {
    if addr.is_empty() {
        return Err("unix address must not be empty".into());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let e = FieldError::new("spec.http[1].route", "weights must sum to 100, got 90");
        assert_eq!(
            e.to_string(),
            "spec.http[1].route: weights must sum to 100, got 90"
        );
        let all = ValidationErrors(vec![e.clone(), FieldError::new("spec.hosts", "x")]);
        assert_eq!(
            all.to_string(),
            "spec.http[1].route: weights must sum to 100, got 90\nspec.hosts: x"
        );
    }

    #[test]
    fn paths() {
        let p = Path::root("spec").field("http").index(1).field("route");
        assert_eq!(p.as_str(), "spec.http[1].route");
        assert_eq!(p.key("a").as_str(), "spec.http[1].route[a]");
    }

    #[test]
    fn domains() {
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*.example.com").is_ok());
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("Reviews.Default.svc.cluster.local").is_ok());
        assert!(validate_wildcard_domain("istio.io.").is_ok());
        assert!(validate_wildcard_domain("").is_err());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_wildcard_domain("foo..com").is_err());
        assert!(validate_wildcard_domain("foo.123").is_err());
        assert!(validate_wildcard_domain("-foo.com").is_err());
        assert!(validate_fqdn("*.foo.com").is_err());
        assert!(validate_fqdn("foo.com").is_ok());
    }

    #[test]
    fn labels() {
        assert!(validate_label_key("app").is_ok());
        assert!(validate_label_key("app.kubernetes.io/name").is_ok());
        assert!(validate_label_key("").is_err());
        assert!(validate_label_key("a b").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1.2_3").is_ok());
        assert!(validate_label_value("-v1").is_err());
    }

    #[test]
    fn header_values() {
        assert!(validate_header_value("foo").is_ok());
        assert!(validate_header_value("%HOSTNAME%").is_ok());
        assert!(validate_header_value("100%%").is_ok());
        assert!(validate_header_value("prefix %HOSTNAME% suffix").is_ok());
        assert!(validate_header_value("abc%123").is_err());
        assert!(validate_header_value("%START_TIME%%").is_err());
        assert!(validate_header_value("a\nb").is_err());
        assert!(validate_header_value("%FOO%").is_err());
    }

    #[test]
    fn header_names() {
        assert!(validate_request_header_op_name(":authority").is_ok());
        assert!(validate_request_header_op_name("Host").is_ok());
        assert!(validate_request_header_op_name("X-Custom_1").is_ok());
        assert!(validate_request_header_op_name(":path").is_err());
        assert!(validate_request_header_op_name("x client").is_err());
        assert!(validate_destination_request_header_op_name("host").is_ok());
        assert!(validate_destination_request_header_op_name(":authority").is_err());
        assert!(validate_header_op_name("host").is_err());
        assert!(validate_header_op_name("x-caf\u{e9}").is_err());
        assert!(validate_header_op_name("x-ok").is_ok());
    }

    #[test]
    fn subnets_and_ports() {
        assert!(validate_ip_subnet("10.0.0.0/8").is_ok());
        assert!(validate_ip_subnet("10.0.0.1").is_ok());
        assert!(validate_ip_subnet("::1/128").is_ok());
        assert!(validate_ip_subnet("10.0.0.0/33").is_err());
        assert!(validate_ip_subnet("foo").is_err());
        assert!(validate_port(0).is_err());
        assert!(validate_port(65536).is_err());
        assert!(validate_port(80).is_ok());
    }

    #[test]
    fn regexes() {
        assert!(validate_regex("^(.*?;)?(user=dev-123)(;.*)?").is_ok());
        let e = validate_regex("a(b").unwrap_err();
        assert!(e.contains("invalid regex"), "{e}");
        assert!(validate_regex("").is_err());
    }

    #[test]
    fn export_to() {
        let mut errs = Vec::new();
        let p = Path::root("spec").field("exportTo");
        check_export_to(&p, &mut errs, Some("ns"), &[".".into(), "ns".into()], false);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "spec.exportTo[1]");
        errs.clear();
        check_export_to(&p, &mut errs, Some("ns"), &["~".into()], false);
        assert_eq!(errs.len(), 1);
        errs.clear();
        check_export_to(&p, &mut errs, Some("ns"), &["~".into()], true);
        assert!(errs.is_empty());
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn values_read_as_written_in_yaml() {
        let e = FieldError::new(
            "spec.ports[0].protocol",
            format!("unknown protocol {:?}", "hTPp\u{8}lah"),
        );
        assert_eq!(
            e.to_string(),
            "spec.ports[0].protocol: unknown protocol \"hTPp\\blah\""
        );
    }
}
