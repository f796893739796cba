//! SPIFFE IDs of workloads: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.

use std::fmt;
use std::str::FromStr;

/// Why a text is not a workload SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("{0:?} does not start with spiffe://")]
    Scheme(String),
    #[error("{0:?} is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>")]
    Shape(String),
    #[error(
        "{id:?}: {part} {value:?} is not a valid name (lower-case letters, digits, '-', '.', 1 to 253 characters)"
    )]
    Name {
        id: String,
        part: &'static str,
        value: String,
    },
}

/// A workload identity, as Istio's CA issues it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    /// Builds an identity, checking each part is a DNS-label-like name (Kubernetes namespace
    /// and ServiceAccount names; trust domains are host names).
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        let id = Self {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        };
        for (part, value) in [
            ("trust domain", trust_domain),
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if !valid_name(value) {
                return Err(SpiffeIdError::Name {
                    id: id.to_string(),
                    part,
                    value: value.to_string(),
                });
            }
        }
        Ok(id)
    }

    /// The URI, `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

fn valid_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(text: &str) -> Result<Self, SpiffeIdError> {
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeIdError::Scheme(text.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [td, "ns", ns, "sa", sa] = parts.as_slice() else {
            return Err(SpiffeIdError::Shape(text.to_string()));
        };
        Self::new(td, ns, sa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/reviews"
            .parse()
            .expect("valid");
        assert_eq!(id.trust_domain, "cluster.local");
        assert_eq!(id.namespace, "default");
        assert_eq!(id.service_account, "reviews");
        assert_eq!(id.uri(), "spiffe://cluster.local/ns/default/sa/reviews");
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "http://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/sa/a/ns/b",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/A/sa/b",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} accepted");
        }
        let err = "spiffe://td/ns/a/sa/B_1"
            .parse::<SpiffeId>()
            .expect_err("upper case");
        assert!(err.to_string().contains("service account"), "{err}");
    }
}
