//! The identity of one config object ([`ObjectKey`]) and the problems reported about
//! one ([`Warning`]): the vocabulary shared by the sources, the model builder and the
//! unsupported-field checks. Depends on nothing else in the crate.

use std::fmt;

use weft_api::ConfigObject;

/// The namespace of objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Identity of one object: kind, namespace ("default" when unset) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: impl Into<String>, namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_string(),
            name: name.into(),
        }
    }

    /// The key of a parsed Istio object.
    pub fn of(object: &ConfigObject) -> Self {
        let meta = object.metadata();
        Self::new(
            object.kind().to_string(),
            meta.namespace.as_deref(),
            meta.name.clone(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A problem found while building the model that does not stop it: an unsupported
/// field, a conflict, a destination that does not exist, an endpoint that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Warning {
    pub object: ObjectKey,
    /// Field path inside the object (`spec.http[0].retries`), empty for the whole object.
    pub path: String,
    pub message: String,
}

impl Warning {
    pub fn new(object: &ObjectKey, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            object: object.clone(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.path, self.message)
        }
    }
}

/// An object's `metadata.creationTimestamp`, parsed (Istio ranks several objects of one level
/// by age). An unreadable one is warned, saying that the object then counts as the oldest
/// (`what`: "policy", "Sidecar"), and is `None`, as in local mode.
pub fn creation_time(
    key: &ObjectKey,
    timestamp: Option<&str>,
    what: &str,
    warnings: &mut Vec<Warning>,
) -> Option<k8s_openapi::jiff::Timestamp> {
    let text = timestamp?;
    match text.parse() {
        Ok(time) => Some(time),
        Err(err) => {
            warnings.push(Warning::new(
                key,
                "metadata.creationTimestamp",
                format!(
                    "{text:?} is not an RFC 3339 time ({err}); the {what} counts as the oldest of its level"
                ),
            ));
            None
        }
    }
}

/// Istio's rule for several namespace-wide objects of one kind in one namespace: the oldest
/// (then by name) wins. Returns a warning for each loser, `field` and `message(winner)` saying
/// why it is ignored. `age` orders them (creation time, namespace, name).
pub fn warn_shadowed<'a, T, A: Ord>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> &ObjectKey,
    age: impl Fn(&T) -> A,
    field: &str,
    message: impl Fn(&ObjectKey) -> String,
) -> Vec<Warning>
where
    T: 'a,
{
    let mut by_namespace: std::collections::BTreeMap<&str, Vec<&T>> = Default::default();
    for item in items {
        by_namespace
            .entry(key(item).namespace.as_str())
            .or_default()
            .push(item);
    }
    let mut warnings = Vec::new();
    for mut level in by_namespace.into_values() {
        level.sort_by_key(|item| age(item));
        let Some((winner, losers)) = level.split_first() else {
            continue;
        };
        for loser in losers {
            warnings.push(Warning::new(key(loser), field, message(key(winner))));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_default_the_namespace_and_warnings_name_the_field() {
        let key = ObjectKey::new("WorkloadEntry", None, "foo");
        assert_eq!(key.to_string(), "WorkloadEntry default/foo");
        assert_eq!(ObjectKey::new("X", Some(""), "a").namespace, "default");
        let warning = Warning::new(&key, "spec.address", "unix sockets are not supported");
        assert_eq!(
            warning.to_string(),
            "WorkloadEntry default/foo: spec.address: unix sockets are not supported"
        );
        assert_eq!(
            Warning::new(&key, "", "ignored").to_string(),
            "WorkloadEntry default/foo: ignored"
        );
    }
}
