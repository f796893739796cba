//! The label values of Istio's standard metrics: one side's workload ([`Peer`]), the
//! destination service ([`Service`]), who reports ([`Reporter`]) and how the connection was
//! secured ([`Security`]).
//!
//! A request's series is found by hashing its labels; workloads and services are hashed once,
//! when they are made, so that a lookup hashes a few words, not their strings.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, OnceLock};

/// Istio's value for a label nothing is known about.
pub const UNKNOWN: &str = "unknown";

/// Which proxy of the request reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client's sidecar, or a gateway.
    Source,
    /// The server's sidecar.
    Destination,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// Istio's `connection_security_policy`: what the server's sidecar saw (the client's cannot
/// tell, and says `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    MutualTls,
    None,
    Unknown,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutualTls => "mutual_tls",
            Self::None => "none",
            Self::Unknown => UNKNOWN,
        }
    }
}

/// How a request or connection was secured, as its reporter sees it: the peer's identity,
/// whether this proxy presented its own (mutual TLS), and `connection_security_policy`.
#[derive(Debug, Clone)]
pub struct Secured {
    pub peer_principal: Option<Arc<str>>,
    pub mtls: bool,
    pub security: Security,
}

impl Secured {
    /// The destination's view: the client's certificate, if it presented one, decides.
    pub fn inbound(client: Option<&Arc<str>>) -> Self {
        Self {
            peer_principal: client.cloned(),
            mtls: client.is_some(),
            security: if client.is_some() {
                Security::MutualTls
            } else {
                Security::None
            },
        }
    }

    /// The source's view: whether the upstream connection was mesh mutual TLS, and the
    /// server's identity when known; the policy is the server's to tell (`unknown`).
    pub fn outbound(upstream_mtls: bool, server: Option<Arc<str>>) -> Self {
        Self {
            peer_principal: server,
            mtls: upstream_mtls,
            security: Security::Unknown,
        }
    }
}

/// The labels of one side's workload (Istio's `source_*` / `destination_*` workload labels).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct WorkloadLabels {
    /// The workload (Deployment, …) name, not the pod's.
    pub workload: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
    /// The workload's ServiceAccount (for its SPIFFE identity), when known.
    pub service_account: String,
}

impl WorkloadLabels {
    /// A workload's labels the way Istio derives them from its pod labels: the canonical
    /// service is `service.istio.io/canonical-name`, else `app.kubernetes.io/name`, else
    /// `app`, else the workload name; the canonical revision is
    /// `service.istio.io/canonical-revision`, else `app.kubernetes.io/version`, else
    /// `version`, else `latest`.
    pub fn from_pod(
        workload: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        cluster: &str,
        service_account: &str,
    ) -> Self {
        let first = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
                .cloned()
        };
        Self {
            workload: workload.to_string(),
            namespace: namespace.to_string(),
            app: first(&["app"]).unwrap_or_default(),
            version: first(&["version"]).unwrap_or_default(),
            canonical_service: first(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| workload.to_string()),
            canonical_revision: first(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".to_string()),
            cluster: cluster.to_string(),
            service_account: service_account.to_string(),
        }
    }
}

/// A workload's labels, shared and hashed once. Equal labels are one series whichever `Peer`
/// holds them; the common comparison (the same `Peer` again) is a pointer test.
#[derive(Clone)]
pub struct Peer(Arc<Interned<WorkloadLabels>>);

impl Peer {
    pub fn new(labels: WorkloadLabels) -> Self {
        Self(Arc::new(Interned::new(labels)))
    }

    /// The peer nothing is known about: every label `unknown`.
    pub fn unknown() -> Self {
        static UNKNOWN_PEER: LazyLock<Peer> =
            LazyLock::new(|| Peer::new(WorkloadLabels::default()));
        UNKNOWN_PEER.clone()
    }

    pub fn labels(&self) -> &WorkloadLabels {
        &self.0.value
    }

    /// Whether both are the same shared value (not merely equal labels).
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The peer's SPIFFE identity in `trust_domain`, when its ServiceAccount is known. Made
    /// once per peer (a proxy has one trust domain), then shared: no allocation per request.
    pub fn spiffe_id(&self, trust_domain: &str) -> Option<Arc<str>> {
        self.0
            .spiffe
            .get_or_init(|| {
                let l = self.labels();
                (!l.service_account.is_empty() && !l.namespace.is_empty()).then(|| {
                    Arc::from(format!(
                        "spiffe://{trust_domain}/ns/{}/sa/{}",
                        l.namespace, l.service_account
                    ))
                })
            })
            .clone()
    }
}

/// The destination service's labels (`destination_service`, `_name`, `_namespace`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ServiceLabels {
    /// The service's host name (`reviews.default.svc.cluster.local`).
    pub host: String,
    pub name: String,
    pub namespace: String,
}

impl ServiceLabels {
    /// The labels of a service known only by its host: a Kubernetes service's host
    /// (`<name>.<namespace>.svc.<domain>`) gives its name and namespace; any other host is
    /// its own name, in no known namespace.
    pub fn from_host(host: &str) -> Self {
        let mut parts = host.splitn(4, '.');
        let (name, namespace, svc) = (parts.next(), parts.next(), parts.next());
        match (name, namespace, svc) {
            (Some(name), Some(namespace), Some("svc")) => Self {
                host: host.to_string(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            },
            _ => Self {
                host: host.to_string(),
                name: host.to_string(),
                namespace: String::new(),
            },
        }
    }
}

/// A destination service's labels, shared and hashed once (see [`Peer`]).
#[derive(Clone)]
pub struct Service(Arc<Interned<ServiceLabels>>);

impl Service {
    pub fn new(labels: ServiceLabels) -> Self {
        Self(Arc::new(Interned::new(labels)))
    }

    /// No known service: every label `unknown`.
    pub fn unknown() -> Self {
        static UNKNOWN_SERVICE: LazyLock<Service> =
            LazyLock::new(|| Service::new(ServiceLabels::default()));
        UNKNOWN_SERVICE.clone()
    }

    pub fn labels(&self) -> &ServiceLabels {
        &self.0.value
    }
}

/// A value with its hash computed once (and, for a workload, its SPIFFE ID once asked).
struct Interned<T> {
    hash: u64,
    value: T,
    spiffe: OnceLock<Option<Arc<str>>>,
}

impl<T: Hash> Interned<T> {
    fn new(value: T) -> Self {
        static STATE: LazyLock<foldhash::fast::FixedState> =
            LazyLock::new(foldhash::fast::FixedState::default);
        let hash = STATE.hash_one(&value);
        Self {
            hash,
            value,
            spiffe: OnceLock::new(),
        }
    }
}

macro_rules! interned_identity {
    ($name:ident, $labels:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
                    || (self.0.hash == other.0.hash && self.0.value == other.0.value)
            }
        }

        impl Eq for $name {}

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                state.write_u64(self.0.hash);
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.value.fmt(f)
            }
        }

        impl From<$labels> for $name {
            fn from(labels: $labels) -> Self {
                Self::new(labels)
            }
        }
    };
}

interned_identity!(Peer, WorkloadLabels);
interned_identity!(Service, ServiceLabels);

/// A label value: Istio's `unknown` for nothing.
pub fn or_unknown(value: &str) -> &str {
    if value.is_empty() { UNKNOWN } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_follow_istios_precedence() {
        let labels: BTreeMap<String, String> = [("app", "reviews"), ("version", "v2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let w = WorkloadLabels::from_pod("reviews-v2", "default", &labels, "Kubernetes", "sa");
        assert_eq!(w.canonical_service, "reviews");
        assert_eq!(w.canonical_revision, "v2");
        assert_eq!((w.app.as_str(), w.version.as_str()), ("reviews", "v2"));

        let mut labels = labels;
        labels.insert("service.istio.io/canonical-name".into(), "rev".into());
        labels.insert("service.istio.io/canonical-revision".into(), "r1".into());
        let w = WorkloadLabels::from_pod("reviews-v2", "default", &labels, "Kubernetes", "sa");
        assert_eq!(
            (w.canonical_service.as_str(), w.canonical_revision.as_str()),
            ("rev", "r1")
        );

        let bare = WorkloadLabels::from_pod("job-x", "ns", &BTreeMap::new(), "Kubernetes", "");
        assert_eq!(bare.canonical_service, "job-x");
        assert_eq!(bare.canonical_revision, "latest");
        assert_eq!(or_unknown(&bare.app), UNKNOWN);
    }

    #[test]
    fn equal_labels_are_one_key_whoever_holds_them() {
        let labels = WorkloadLabels {
            workload: "a".into(),
            ..Default::default()
        };
        let (one, two) = (Peer::new(labels.clone()), Peer::new(labels));
        assert_eq!(one, two);
        let hash = |p: &Peer| foldhash::fast::FixedState::default().hash_one(p);
        assert_eq!(hash(&one), hash(&two));
        assert_ne!(one, Peer::unknown());
    }

    #[test]
    fn kubernetes_hosts_give_name_and_namespace() {
        let s = ServiceLabels::from_host("reviews.default.svc.cluster.local");
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str()),
            ("reviews", "default")
        );
        let s = ServiceLabels::from_host("httpbin.org");
        assert_eq!((s.name.as_str(), s.namespace.as_str()), ("httpbin.org", ""));
    }
}
