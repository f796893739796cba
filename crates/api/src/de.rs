//! Serde helpers shared by the API types.

use serde::{Deserialize, Deserializer};

/// Deserializes an optional collection, treating an explicit YAML `null` (e.g. `subsets:` with
/// nothing after it) as the empty default, as Kubernetes and Istio do.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `skip_serializing_if` helper for `bool` fields that default to false.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
